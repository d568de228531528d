"""Typed configuration of the models step (ハイパーパラメータ): plain frozen dataclasses.

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

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from data.columns import AGE_BANDS, OUTCOMES, QUESTIONNAIRE_COLUMNS

__all__ = [
    "FORECAST_ITEMS",
    "ForecastConfig",
    "LGBMParams",
    "MaskingConfig",
    "ModelConfig",
    "SplitConfig",
]

#: Key checkup items with a next-year value forecast (feature name = canonical column).
FORECAST_ITEMS = (
    "hba1c", "fpg", "sbp", "dbp", "ldl", "tg", "weight_kg", "waist_cm", "alt", "ggt", "egfr",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LGBMParams:
    """LightGBM hyperparameters (native ``lgb.train`` names where they differ are mapped)."""

    num_leaves: int = 15
    max_depth: int = 5
    learning_rate: float = 0.05
    n_estimators: int = 600
    early_stopping_rounds: int = 50
    min_child_samples: int = 50
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    max_bin: int = 255
    n_jobs: int = 1  # see the module docstring: one OpenMP thread per booster
    deterministic: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_leaves < 2 or self.n_estimators < 1 or self.early_stopping_rounds < 1:
            raise ValueError("num_leaves ≥ 2, n_estimators ≥ 1 and early_stopping_rounds ≥ 1")
        if not (0 < self.learning_rate <= 1 and 0 < self.subsample <= 1):
            raise ValueError("learning_rate and subsample must be in (0, 1]")
        if not 0 < self.colsample_bytree <= 1:
            raise ValueError("colsample_bytree must be in (0, 1]")

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
            "verbosity": -1,
            **extra,
        }


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Quantile value forecasts: next fiscal year's value of each item, 80% interval."""

    items: tuple[str, ...] = FORECAST_ITEMS
    quantiles: tuple[float, float, float] = (0.1, 0.5, 0.9)
    lgbm: LGBMParams = field(
        default_factory=lambda: LGBMParams(
            learning_rate=0.15, n_estimators=200, early_stopping_rounds=20, min_child_samples=200
        )
    )

    def __post_init__(self) -> None:
        lo, mid, hi = self.quantiles
        if not 0 < lo < mid < hi < 1:
            raise ValueError(f"quantiles must be increasing in (0, 1), got {self.quantiles}")


@dataclass(frozen=True, slots=True)
class SplitConfig:
    """Temporal split by index fiscal year, grouped by person (see models.split).

    ``group``: ``"person_hash"`` puts a fixed hash-chosen share ``test_person_share`` of persons
    in the test group (only their test-year rows are used) and the rest in train/validation;
    ``"none"``: temporal split only. ``"person"``: no temporal order — all labelled index rows
    up to the test year split by person hash into test (``test_person_share``), val
    (``val_person_share``) and train; only for cohorts with too few index years for a temporal
    split (the Framingham adapter, data.framingham).
    """

    test_year: int | None = None  # default: last labelled index year
    group: Literal["person_hash", "none", "person"] = "person_hash"
    test_person_share: float = 0.5
    val_person_share: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.test_person_share < 1:
            raise ValueError(f"test_person_share must be in (0, 1), got {self.test_person_share}")
        if not 0 < self.val_person_share < 1 - self.test_person_share:
            raise ValueError("val_person_share must be in (0, 1 − test_person_share)")


@dataclass(frozen=True, slots=True)
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
      training and validation rows (models.train.anchor_pattern_engines).
    * **Optional-item copies.** A share ``share`` of the training rows (drawn with the run's
      seed) is added once more without every named group of ``optional_items`` (share
      ``joint_share`` of the copies: another insurer's export, a foreign sample) or without
      one of them, so a missing urine dipstick, creatinine, medication answer or questionnaire
      reads as "not known", not as a signal.

    ``enabled = False`` switches both off.
    """

    enabled: bool = True
    submodels: tuple[str, ...] = ("diabetes", "metabolic_syndrome")
    patterns: tuple[str, ...] = ("fpg_only", "hba1c_only", "neither")
    anchor: bool = True
    share: float = 0.4
    joint_share: float = 0.5
    optional_items: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("urine_glucose", ("urine_glucose",)), ("urine_protein", ("urine_protein",)),
        ("creatinine", ("creatinine", "egfr")), ("uric_acid", ("uric_acid",)),
        ("hemoglobin", ("hemoglobin",)),
        ("medication", ("q_med_bp", "q_med_glucose", "q_med_lipid")),
        ("questionnaire", tuple(q for q in QUESTIONNAIRE_COLUMNS if not q.startswith("q_med_"))),
    )  # fmt: skip

    def __post_init__(self) -> None:
        from features.masking import GLUCOSE_PATTERNS, MASKABLE_ITEMS

        if not (0 <= self.share <= 1 and 0 <= self.joint_share <= 1):
            raise ValueError("masking share and joint_share must lie in [0, 1]")
        bad = [p for p in self.patterns if p not in GLUCOSE_PATTERNS or p == "both"]
        if bad:
            raise ValueError(f"masking patterns must be among {tuple(GLUCOSE_PATTERNS)[1:]}")
        if any(o not in OUTCOMES for o in self.submodels):
            raise ValueError(f"masking submodels must be outcomes of {OUTCOMES}")
        odd = [i for _, g in self.optional_items for i in g if i not in MASKABLE_ITEMS]
        if odd or any(not g for _, g in self.optional_items):
            raise ValueError(f"masking cannot remove {odd or 'an empty group'}")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything the models step needs; ``horizon_years`` must match the labels' horizon."""

    outcomes: tuple[str, ...] = OUTCOMES
    lgbm: LGBMParams = field(default_factory=LGBMParams)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    calibration: Literal["isotonic", "sigmoid"] = "sigmoid"
    monotone: bool = True
    top_k: int = 1000
    horizon_years: int = 1
    age_bands: tuple[tuple[int, int], ...] = AGE_BANDS
    slices: tuple[str, ...] = ("sex", "age_band")
    baselines: bool = True
    forecasts: bool = True
    #: Choose LightGBM / blend / LR per outcome on the validation year (models.member_choice).
    select: bool = True
    blend_weights: tuple[float, ...] = (0.75, 0.5, 0.25)
    select_margin: float = 0.0  # validation-AUC gain a challenger needs over LightGBM
    #: Test rows per outcome on which driver agreement is computed (0 = all rows).
    driver_sample: int = 20_000
    #: Honest small wards: an outcome with fewer training events (outcome met, ``train`` split)
    #: than ``min_events`` gets no LightGBM model. ``small_outcome = "logistic"``: it is scored
    #: by a simpler, stronger-regularised member — an L2 logistic regression (``C =
    #: fallback_c``) on the outcome's clinical items (models.baselines.POINT_ITEMS) or on every
    #: feature, whichever has the better validation AUC (models.train.fit_fallback) — when
    #: it has ≥ ``min_events_fallback`` training events and validation rows with and without
    #: the outcome; otherwise, or with ``"off"``, the outcome is switched off for the run (no
    #: risk, no what-if, no letter), with the reason in the training report and model card.
    min_events: int = 100
    small_outcome: Literal["logistic", "off"] = "logistic"
    min_events_fallback: int = 20
    fallback_c: float = 0.1
    #: Robustness to items a facility did not measure (``MaskingConfig(enabled=False)``: off).
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def __post_init__(self) -> None:
        bad = [o for o in self.outcomes if o not in OUTCOMES]
        if bad:
            raise ValueError(f"unknown outcomes {bad}; expected a subset of {OUTCOMES}")
        if self.calibration not in ("isotonic", "sigmoid"):
            raise ValueError(f"calibration must be 'isotonic' or 'sigmoid': {self.calibration!r}")
        if self.horizon_years not in (1, 2, 3):
            raise ValueError(f"horizon_years must be 1-3, got {self.horizon_years}")
        if self.top_k < 1:
            raise ValueError("top_k (letter budget) must be ≥ 1")
        if not all(0 < w < 1 for w in self.blend_weights) or self.select_margin < 0:
            raise ValueError("blend_weights must lie in (0, 1) and select_margin be ≥ 0")
        if self.min_events < 0 or self.min_events_fallback < 1:
            raise ValueError("min_events must be ≥ 0 and min_events_fallback ≥ 1")
        if self.small_outcome not in ("logistic", "off"):
            raise ValueError(f"small_outcome must be 'logistic' or 'off': {self.small_outcome!r}")
        if not self.fallback_c > 0:
            raise ValueError("fallback_c (inverse L2 strength) must be > 0")

    def with_seed(self, seed: int) -> ModelConfig:
        """The same config with every LightGBM seed set to ``seed``."""
        fc = replace(self.forecast, lgbm=replace(self.forecast.lgbm, seed=seed))
        return replace(self, lgbm=replace(self.lgbm, seed=seed), forecast=fc)
