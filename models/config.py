"""Typed configuration of the models step (ハイパーパラメータ): frozen pydantic dataclasses.

Validated like every configuration of the project (pydantic): building one with a bad value
raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field. Analysts set them in
``models/train.toml`` (``kenshin train --config``; models.train_config reads the file).

Defaults are sized for 2 cores and 10⁴-10⁵ training rows: shallow trees (15 leaves, depth 5)
keep training and native SHAP cheap, and early stopping picks the number of trees on the
validation year.

Threads: one OpenMP thread per booster (``n_jobs=1``). The boosters are small (10⁴-10⁵ rows,
15 leaves), so a round is a few milliseconds and extra threads mostly spin-wait at OpenMP
barriers whenever another process holds a core; the trees are the same with any thread count.
Value forecasts (33 quantile boosters, most of the training time) use a higher learning rate
than the outcome models (0.15, ≤ 200 rounds, patience 20, ≥ 200 rows per leaf instead of
0.1 / 300 / 30 / 100): less CPU for the same 80 % interval coverage, which the conformal offset
restores anyway. Measured figures for both choices: bench/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from data.columns import AGE_BANDS, MEASUREMENT_COLUMNS, OUTCOMES, QUESTIONNAIRE_COLUMNS

__all__ = [
    "FORECAST_ITEMS",
    "ForecastConfig",
    "LGBMParams",
    "MaskingConfig",
    "ModelConfig",
    "SplitConfig",
]

#: Unknown keyword arguments (keys of train.toml) are an error, never silently ignored.
_STRICT = ConfigDict(extra="forbid")
Share = Annotated[float, Field(gt=0, lt=1)]  # a share strictly between 0 and 1
Fraction = Annotated[float, Field(ge=0, le=1)]
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]  # one of data.columns.OUTCOMES

#: Key checkup items with a next-year value forecast (feature name = canonical column).
FORECAST_ITEMS = (
    "hba1c", "fpg", "sbp", "dbp", "ldl", "tg", "hdl", "non_hdl", "weight_kg", "waist_cm", "alt",
    "ggt", "egfr", "uric_acid",
)  # fmt: skip


@dataclass(frozen=True, slots=True, config=_STRICT)
class LGBMParams:
    """LightGBM hyperparameters (native ``lgb.train`` names where they differ are mapped)."""

    num_leaves: Annotated[int, Field(ge=2)] = 15
    max_depth: Annotated[int, Field(ge=-1)] = 5  # -1: no limit
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05
    n_estimators: Annotated[int, Field(ge=1)] = 600
    early_stopping_rounds: Annotated[int, Field(ge=1)] = 50
    min_child_samples: Annotated[int, Field(ge=0)] = 50
    subsample: Annotated[float, Field(gt=0, le=1)] = 0.8
    subsample_freq: Annotated[int, Field(ge=0)] = 1
    colsample_bytree: Annotated[float, Field(gt=0, le=1)] = 0.8
    reg_lambda: Annotated[float, Field(ge=0)] = 1.0
    max_bin: Annotated[int, Field(ge=2)] = 255
    n_jobs: Annotated[int, Field(ge=1)] = 1  # see the module docstring: one thread per booster
    deterministic: bool = True
    seed: int = 0
    #: How LightGBM enforces the declared directions (``monotone_constraints_method``).
    #: "basic" over-constrains (LightGBM's own word): below a split on a constrained feature,
    #: every leaf stays on its side of the two children's midpoint, which flattens the model in
    #: those features, and its what-if change came out too small. "intermediate" bounds a leaf
    #: only by the leaves it must not cross: still monotone, +8 what-if cells over five wards,
    #: AUC-to-oracle unchanged on average
    #: (docs/models.md §Monotone constraints that do not flatten).
    monotone_method: Literal["basic", "intermediate", "advanced"] = "intermediate"

    def native(self, objective: str, **extra: Any) -> dict[str, Any]:
        """Parameters for ``lightgbm.train`` (n_estimators / early stopping passed separately)."""
        return {
            "objective": objective,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": self.subsample_freq,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "max_bin": self.max_bin,
            "num_threads": self.n_jobs,
            "deterministic": self.deterministic,
            "force_row_wise": True,
            "seed": self.seed,
            "monotone_constraints_method": self.monotone_method,
            "verbosity": -1,
            **extra,
        }


@dataclass(frozen=True, slots=True, config=_STRICT)
class ForecastConfig:
    """Quantile value forecasts: next fiscal year's value of each item, 80% interval."""

    items: tuple[str, ...] = FORECAST_ITEMS
    quantiles: tuple[Share, Share, Share] = (0.1, 0.5, 0.9)
    lgbm: LGBMParams = field(
        default_factory=lambda: LGBMParams(
            learning_rate=0.15, n_estimators=200, early_stopping_rounds=20, min_child_samples=200
        )
    )

    def __post_init__(self) -> None:
        lo, mid, hi = self.quantiles
        if not 0 < lo < mid < hi < 1:
            raise ValueError(f"quantiles must be increasing in (0, 1), got {self.quantiles}")
        odd = [i for i in self.items if i not in MEASUREMENT_COLUMNS]
        if odd or not self.items or len(set(self.items)) < len(self.items):
            raise ValueError(
                f"forecast items must be distinct checkup measurements "
                f"(data.columns.MEASUREMENT_COLUMNS), got {list(self.items)}"
            )


@dataclass(frozen=True, slots=True, config=_STRICT)
class SplitConfig:
    """Temporal split by index fiscal year, grouped by person (see models.split).

    ``group``: ``"person_hash"`` puts a fixed hash-chosen share ``test_person_share`` of persons
    in the test group (only their test-year rows are used) and the rest in train/validation;
    ``"none"``: temporal split only. ``"person"``: no temporal order — all labelled index rows
    up to the test year split by person hash into test (``test_person_share``), val
    (``val_person_share``) and train; only for cohorts with too few index years for a temporal
    split (the Framingham adapter, data.framingham).
    """

    #: Index fiscal year held out for testing; None: the last labelled index year.
    test_year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    group: Literal["person_hash", "none", "person"] = "person_hash"
    test_person_share: Share = 0.5
    val_person_share: Share = 0.2

    def __post_init__(self) -> None:
        if not self.val_person_share < 1 - self.test_person_share:
            raise ValueError(
                f"val_person_share ({self.val_person_share}) must be below 1 − "
                f"test_person_share ({self.test_person_share})"
            )


@dataclass(frozen=True, slots=True, config=_STRICT)
class MaskingConfig:
    """Robustness to items a facility did not measure (未測定項目): models.train.

    * **Glucose pattern sub-models.** For each outcome of ``submodels`` and each glucose
      pattern of ``patterns`` (features.masking.GLUCOSE_PATTERNS: ``fpg_only`` lacks HbA1c,
      ``hba1c_only`` lacks fasting glucose, ``neither`` lacks both) the outcome's whole member
      (LightGBM / blend / logistic, calibrator) is trained again on every index row that can
      be brought to that pattern, with the pattern's items masked as the feature builder
      would build such a checkup. A scored row whose checkup has the pattern gets the
      pattern's member; a row with both items the main one. ``anchor``: each pattern
      member's calibration-in-the-large is anchored to the main member on the fully measured
      training and validation rows (models.train.anchor_pattern_engines). ``ward_rate``:
      then one log-odds shift per outcome, the same for the main and every pattern engine,
      makes the outcome's mean risk over its calibration rows of every pattern, each row
      scored by the engine it is routed to, equal their observed rate
      (models.train.match_ward_rate): the level rests on every pattern's events, not on the
      fully measured rows' alone.
    * **Optional-item copies.** A share ``share`` of the training rows (drawn with the run's
      seed) is added once more without every named group of ``optional_items`` (share
      ``joint_share`` of the copies: another insurer's export, a foreign sample) or without
      one of them, so a missing urine dipstick, creatinine, medication answer or questionnaire
      reads as "not known", not as a signal.

    ``enabled = False`` switches both off.
    """

    enabled: bool = True
    submodels: tuple[Outcome, ...] = ("diabetes", "metabolic_syndrome")
    patterns: tuple[str, ...] = ("fpg_only", "hba1c_only", "neither")
    anchor: bool = True
    ward_rate: bool = True
    share: Fraction = 0.4
    joint_share: Fraction = 0.5
    optional_items: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("urine_glucose", ("urine_glucose",)), ("urine_protein", ("urine_protein",)),
        ("creatinine", ("creatinine", "egfr")), ("uric_acid", ("uric_acid",)),
        ("hemoglobin", ("hemoglobin",)),
        ("medication", ("q_med_bp", "q_med_glucose", "q_med_lipid")),
        ("questionnaire", tuple(q for q in QUESTIONNAIRE_COLUMNS if not q.startswith("q_med_"))),
    )  # fmt: skip

    @field_validator("optional_items", mode="before")
    @classmethod
    def _from_table(cls, v: Any) -> Any:
        """A TOML table ``name = [items]`` (order kept) is the same as ``((name, items), …)``."""
        return tuple((k, tuple(g)) for k, g in v.items()) if isinstance(v, Mapping) else v

    def __post_init__(self) -> None:
        from features.masking import GLUCOSE_PATTERNS, MASKABLE_ITEMS

        bad = [p for p in self.patterns if p not in GLUCOSE_PATTERNS or p == "both"]
        if bad:
            raise ValueError(
                f"masking patterns must be among {tuple(GLUCOSE_PATTERNS)[1:]}, got {bad}"
            )
        odd = [i for _, g in self.optional_items for i in g if i not in MASKABLE_ITEMS]
        if odd or any(not g for _, g in self.optional_items):
            raise ValueError(f"masking cannot remove {odd or 'an empty group'}")


@dataclass(frozen=True, slots=True, config=_STRICT)
class ModelConfig:
    """Everything the models step needs; ``horizon_years`` must match the labels' horizon."""

    outcomes: tuple[Outcome, ...] = OUTCOMES
    lgbm: LGBMParams = field(default_factory=LGBMParams)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    calibration: Literal["isotonic", "sigmoid"] = "sigmoid"
    monotone: bool = True
    top_k: Annotated[int, Field(ge=1)] = 1000  # letter budget of the top-k metrics
    horizon_years: Annotated[int, Field(ge=1, le=3)] = 1
    age_bands: tuple[tuple[int, int], ...] = AGE_BANDS
    slices: tuple[str, ...] = ("sex", "age_band")
    baselines: bool = True
    forecasts: bool = True
    #: Choose LightGBM / blend / LR per outcome on the validation year (models.member_choice).
    select: bool = True
    blend_weights: tuple[Share, ...] = (0.75, 0.5, 0.25)
    #: Validation-AUC gain a challenger needs over LightGBM (and a forecast stack over the
    #: member).
    select_margin: Annotated[float, Field(ge=0)] = 0.0
    #: Stack each outcome read through the forecasts with the forecasts' chance of it, where
    #: that beats the member on the validation year (models.forecast_stack; needs forecasts and
    #: ``min_events_fallback`` validation events).
    forecast_stack: bool = True
    #: The largest weight the forecasts get in a stack (the member keeps the rest).
    forecast_stack_max_weight: Annotated[float, Field(ge=0, le=1)] = 0.75
    #: Test rows per outcome on which driver agreement is computed (0 = all rows).
    driver_sample: Annotated[int, Field(ge=0)] = 20_000
    #: Honest small wards: an outcome with fewer training events (outcome met, ``train`` split)
    #: than ``min_events`` gets no LightGBM model. ``small_outcome = "logistic"``: it is scored
    #: by a simpler, stronger-regularised member — an L2 logistic regression (``C =
    #: fallback_c``) on the outcome's clinical items (models.baselines.POINT_ITEMS) or on every
    #: feature, whichever has the better validation AUC (models.train.fit_fallback) — when
    #: it has ≥ ``min_events_fallback`` training events and validation rows with and without
    #: the outcome; otherwise, or with ``"off"``, the outcome is switched off for the run (no
    #: risk, no what-if, no letter), with the reason in the training report and model card.
    min_events: Annotated[int, Field(ge=0)] = 100
    small_outcome: Literal["logistic", "off"] = "logistic"
    min_events_fallback: Annotated[int, Field(ge=1)] = 20
    fallback_c: Annotated[float, Field(gt=0)] = 0.1
    #: Robustness to items a facility did not measure (``MaskingConfig(enabled=False)``: off).
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def __post_init__(self) -> None:
        if not self.outcomes or len(set(self.outcomes)) < len(self.outcomes):
            raise ValueError(f"outcomes must be distinct and at least one: {list(self.outcomes)}")
        if any(lo > hi for lo, hi in self.age_bands):
            raise ValueError(f"age_bands must be (low, high) pairs: {list(self.age_bands)}")

    def with_seed(self, seed: int) -> ModelConfig:
        """The same config with every LightGBM seed set to ``seed``."""
        fc = replace(self.forecast, lgbm=replace(self.forecast.lgbm, seed=seed))
        return replace(self, lgbm=replace(self.lgbm, seed=seed), forecast=fc)
