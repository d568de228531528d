"""Per-outcome LightGBM risk models, calibration and quantile value forecasts (学習).

* One binary LightGBM classifier per outcome on the at-risk index rows with a known label
  (features.training_set), monotone constraints from the declarations (the medical direction
  of the key lab values, of body size and its change, and of every lifestyle answer: see
  features.declarations), nominal integer codes as LightGBM categoricals, early stopping on the
  validation year (models.split).
* Honest small wards: an outcome with fewer than ``ModelConfig.min_events`` training events
  gets no LightGBM model — a regularised logistic regression on its clinical items instead, or
  it is switched off for the run (:func:`small_outcome_plan`; ``TrainedEngine.small_outcomes``).
* Items a facility did not measure (未測定項目; ``ModelConfig.masking``), two mechanisms:

  - *glucose pattern sub-models* (:func:`train_pattern_engines`): for diabetes and MetS, the
    whole member is trained again per pattern (no HbA1c / no fasting glucose / neither) on
    every row with the pattern's items masked as the feature builder would build such a
    checkup (features.masking), and scores the rows of that pattern
    (``TrainedEngine.pattern_engines``). One model with missing values did worse: LightGBM
    sends a missing value down one side of each split (with monotone constraints it cannot
    sit in between), and the few rows that lack an item naturally come from facilities that
    also measure less next year, so masking fasting glucose cut the mean diabetes risk of
    fully measured residents by a third, even with masked copies in training;
  - *optional-item copies* (:func:`missing_item_copies`): a share of the training and
    validation rows is added once more with some optional item groups (urine dipsticks,
    creatinine, uric acid, haemoglobin, medication answers, the questionnaire) not measured,
    so their absence reads as "not known" rather than as a signal (without them, a missing
    medication answer lowered the demo ward's diabetes log-odds by 2, and the Korean NHIS
    sample — no questionnaire, no HbA1c — got a median diabetes risk of 0.02 %).

  models.run reports AUC and calibration-in-the-large per glucose pattern on the test year.
* A monotone calibrator (models.calibration) fitted on the validation year's raw log-odds.
* Model selection on the validation year (models.member_choice): LightGBM alone, the logistic
  regression baseline (fitted here once on the training rows and reused by the evaluation) or a
  blend of their log-odds — the engine's risk is the chosen member's, recorded in
  ``TrainedEngine.selection``.
* Per key item three LightGBM quantile models (10/50/90%) of next year's value
  (models.targets), early-stopped on the validation year; the outer interval is then widened
  (or narrowed) by a conformal offset fitted on the validation year (conformalised quantile
  regression, Romano et al. 2019), because early-stopped quantile boosters under-cover.

* The fits are independent — one :class:`OutcomeTask` per outcome (of the main engine and of
  each pattern engine), one :class:`ForecastTask` per forecast item — so :func:`train_engine`
  prepares every task's rows, maps the tasks through a :class:`Runner` (default
  :class:`LocalRunner`: here, in order; ``kenshin train --engine spark``: one Spark task
  each, kenshin.spark.train) and assembles the engines from the results. Each task is a normal
  single-node fit with the same parameters wherever it runs, so every runner gives the same
  engine, booster for booster.

Everything ends up in :class:`TrainedEngine`, a picklable bundle a pyfunc wrapper can serve.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from data.errors import BadInputError
from features.build import as_float, to_matrix
from features.declarations import (
    FEATURE_SET_VERSION,
    categorical_features,
    feature_names,
    monotone_constraints,
)
from features.labels import training_set
from features.masking import GLUCOSE_PATTERNS, affected_features, glucose_pattern, masked_columns
from models.baselines import POINT_ITEMS, fit_logistic
from models.calibration import Calibrator, fit_calibrator, shift_to_mean
from models.compiled import compiled_for
from models.config import MaskingConfig, ModelConfig, SplitConfig
from models.dipstick_chance import DIPSTICK_ITEM, DipstickChance, fit_dipstick_chance
from models.drift import FeatureReference
from models.forecast_chance import forecast_outcomes, item_cut, liability_items
from models.forecast_distribution import forecast_dependence, quantile_columns
from models.forecast_stack import (
    ForecastStack,
    chance_log_odds,
    fit_forecast_stack,
    item_shares,
    players,
    reference_forecast,
    row_context,
)
from models.member_choice import Member, linear_score, select_member
from models.split import assign_split, last_labelled_year, person_hash
from models.targets import next_year_values

__all__ = [
    "CALIBRATION_FOLDS",
    "EnginePlan",
    "ForecastSet",
    "ForecastTask",
    "LocalRunner",
    "NotEnoughDataError",
    "OutcomeFit",
    "OutcomeSet",
    "OutcomeTask",
    "Runner",
    "TrainedEngine",
    "add_missing_item_copies",
    "anchor_pattern_engines",
    "background",
    "booster_predict",
    "build_engine",
    "clip_to_physical_range",
    "fit_forecast_stacks",
    "fit_task",
    "masked_matrix",
    "match_ward_rate",
    "missing_item_copies",
    "out_of_fold_raw",
    "parallel_map",
    "plan_engine",
    "prepare_forecasts",
    "prepare_outcome",
    "small_outcome_plan",
    "to_matrix",
    "train_engine",
]


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: Worker threads for prediction and SHAP (``KENSHIN_PREDICT_THREADS``; default the usable
#: cores, at most 8). The workers run *different* boosters at once (the outcomes of
#: :meth:`TrainedEngine.predict_proba`, the quantile boosters of ``predict_values``), each
#: call on one OpenMP thread: LightGBM releases the GIL, no OpenMP barrier spins on a busy
#: machine (2 OpenMP threads per call scored 1.7× slower on the shared machine,
#: bench/README.md). Every call is the same call whatever the thread count, so the results are
#: bit-identical (tests/scoring/test_annual.py). ``1``: everything in the calling thread.
PREDICT_THREADS = int(os.environ.get("KENSHIN_PREDICT_THREADS") or min(8, usable_cores()))
_POOL: dict[str, object] = {}
_BOOSTER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()
_WORKER = "kenshin-predict"


def _forget_threads() -> None:  # a forked child has none of its parent's threads
    global _GUARD
    _GUARD = threading.Lock()
    _POOL.clear()
    _BOOSTER_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_threads)


def parallel_map(fn: Callable, items: Iterable) -> list:
    """``[fn(x) for x in items]`` on :data:`PREDICT_THREADS` worker threads, in order.

    ``fn`` must not run one booster on two items (:func:`booster_predict` serialises that
    anyway). Called from a worker (nested), it runs in the calling thread."""
    items = list(items)
    n = PREDICT_THREADS
    if n <= 1 or len(items) <= 1 or threading.current_thread().name.startswith(_WORKER):
        return [fn(x) for x in items]
    with _GUARD:
        if _POOL.get("n") != n:
            if "pool" in _POOL:
                _POOL["pool"].shutdown(wait=False)
            _POOL.update(n=n, pool=ThreadPoolExecutor(n, thread_name_prefix=_WORKER))
        pool = _POOL["pool"]
    return list(pool.map(fn, items))


@contextmanager
def background() -> Iterator[Callable[..., Future]]:
    """``submit(fn, *args)``: ``fn(*args)`` on background threads while the caller goes on
    (builds the next what-if's features while the last ones are predicted); run at once when
    :data:`PREDICT_THREADS` is 1. ``.result()`` of what it returns gives the value.

    :data:`PREDICT_THREADS` threads, each running a job whole (its :func:`parallel_map` in
    that thread): the next job starts as soon as a thread is free, where one thread running
    the jobs in turn left a core idle at the end of each job's outcomes. Every call is the
    same call, so the results are the same."""
    if PREDICT_THREADS <= 1 or threading.current_thread().name.startswith(_WORKER):

        def now(fn: Callable, *args) -> Future:
            done: Future = Future()
            done.set_result(fn(*args))
            return done

        yield now
        return
    with ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix=_WORKER) as ex:
        yield ex.submit


def booster_predict(booster: lgb.Booster, X: np.ndarray, **kwargs) -> np.ndarray:
    """``booster.predict(X, **kwargs)`` on one OpenMP thread, never twice at once on one
    booster: LightGBM keeps the number of trees to predict with in the booster itself, so two
    concurrent calls could use each other's."""
    if not kwargs.get("pred_contrib"):
        compiled = compiled_for(
            booster, kwargs.get("num_iteration"), kwargs.get("raw_score", False)
        )
        if compiled is not None:  # LightGBM's bits (models.compiled), no shared state
            return compiled.predict(np.ascontiguousarray(X, dtype="float64"), n_jobs=1)
    with _GUARD:
        lock = _BOOSTER_LOCKS.get(booster)
        if lock is None:
            lock = _BOOSTER_LOCKS[booster] = threading.Lock()
    with lock:
        return booster.predict(X, num_threads=1, **kwargs)


@dataclass
class OutcomeSet:
    """Rows of one outcome: matrix, labels, keys (+age, sex) and split names.

    ``rows``: each row's position in the features frame it was prepared from. ``copies``:
    masked copies of training / validation rows (X, y, split; :func:`add_missing_item_copies`),
    used by ``part(name, copies=True)`` — every fit and calibration, never the test year.
    ``routed``: the glucose patterns whose rows a pattern sub-model scores instead of this
    set's member, and the matrix columns of fasting glucose and HbA1c (:meth:`scored`).
    """

    outcome: str
    X: np.ndarray
    y: np.ndarray
    keys: pd.DataFrame
    split: np.ndarray
    rows: np.ndarray | None = None
    copies: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    routed: tuple[tuple[str, ...], int, int] | None = None

    def part(self, name: str, copies: bool = False) -> tuple[np.ndarray, np.ndarray]:
        m = self.split == name
        if not copies or self.copies is None:
            return self.X[m], self.y[m]
        Xc, yc, sc = self.copies
        c = sc == name
        return np.vstack([self.X[m], Xc[c]]), np.concatenate([self.y[m], yc[c]])

    def scored(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rows of ``X`` (labels ``y``) to calibrate this set's member on: those it scores.

        A row whose glucose pattern has a sub-model is scored by that one, so the member is
        calibrated without it: the member reads a missing HbA1c as the median and misjudges
        such rows, and a calibrator fitted over them moved the rows it does score (and the
        sub-models anchored to them). Every row if the scored ones lack an outcome class.
        """
        if self.routed is None:
            return np.ones(len(X), dtype=bool)
        patterns, fpg, hba1c = self.routed
        keep = ~np.isin(glucose_pattern(X[:, fpg], X[:, hba1c]), patterns)
        return keep if 0 < y[keep].sum() < keep.sum() else np.ones(len(X), dtype=bool)


@dataclass
class ForecastSet:
    """Rows with next-year values: matrix, targets per item, keys and split names."""

    X: np.ndarray
    targets: pd.DataFrame
    keys: pd.DataFrame
    split: np.ndarray
    #: Next year's urine dipstick reading per row (models.dipstick_chance), NaN where unknown.
    dipstick: np.ndarray | None = None


def _split(keys: pd.DataFrame, test_year: int, horizon: int, config: SplitConfig) -> np.ndarray:
    """models.split.assign_split, or the person-only split (``group == "person"``).

    ``"person"``: no temporal order — every labelled index row up to ``test_year`` goes to
    test / val / train by the person's hash (shares ``test_person_share``, ``val_person_share``).
    For cohorts with too few index years for a temporal split (the Framingham adapter: two
    exam-to-exam transitions).
    """
    if config.group != "person":
        return assign_split(keys, test_year, horizon, config)
    fy = keys["fiscal_year"].to_numpy(dtype="float64", na_value=np.nan)
    u = person_hash(keys["pseudonym"])
    out = np.where(
        u < config.test_person_share,
        "test",
        np.where(u < config.test_person_share + config.val_person_share, "val", "train"),
    ).astype(object)
    out[~(fy <= test_year)] = ""
    return out


def prepare_outcome(
    features: pd.DataFrame, labels: pd.DataFrame, outcome: str, test_year: int, config: ModelConfig
) -> OutcomeSet:
    """Training rows of ``outcome`` with their temporal, person-grouped split."""
    X, y, keys = training_set(features, labels, outcome)
    keys = keys.assign(age=X["age"].to_numpy(dtype="float64", na_value=np.nan),
                       sex=X["sex"].to_numpy(dtype="float64", na_value=np.nan))  # fmt: skip
    split = _split(keys, test_year, config.horizon_years, config.split)
    rows = _positions(features, keys)
    return OutcomeSet(
        outcome, to_matrix(X, feature_names()), y.to_numpy("float64"), keys, split, rows
    )


def _positions(features: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """Position in ``features`` of each (pseudonym, fiscal_year) of ``keys``."""
    on = ["pseudonym", "fiscal_year"]
    pos = features[on].reset_index(drop=True).assign(_pos=np.arange(len(features)))
    return keys[on].merge(pos, on=on, how="left", validate="m:1")["_pos"].to_numpy("int64")


def missing_item_copies(
    features: pd.DataFrame, config: MaskingConfig, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Which index rows get a masked copy, and the copy's masked feature columns.

    Each row of ``features`` is drawn with probability ``config.share`` (generator seeded with
    ``seed``: deterministic). A drawn row's copy lacks every group of
    ``config.optional_items`` with probability ``config.joint_share`` (a foreign export: no
    questionnaire, no dipstick, …), else one group chosen uniformly — and is kept only if it
    lost a measured value (else it would merely duplicate the row). Single groups teach the
    trees each item's absence; the joint copies keep the logistic member's missing indicators
    from fitting the few events of one group's copies (on the 10,000-resident demo ward, copies
    lacking a few groups each gave a missing urine dipstick −0.3 log-odds). The masked columns
    are exactly what the feature builder gives for such a checkup
    (features.masking.masked_columns) — the copy's values on copied rows, the row's own
    elsewhere. Returns (copied: bool per row, masked columns aligned with ``features``).
    """
    n = len(features)
    groups = [items for _, items in config.optional_items]
    rng = np.random.default_rng([seed, 0x6D61736B])  # its own stream ("mask")
    drawn = (rng.random(n) < config.share) & (len(groups) > 0)
    joint = rng.random(n) < config.joint_share
    group = np.where(joint, -1, rng.integers(0, max(len(groups), 1), size=n))
    everything = tuple(i for g in groups for i in g)
    out = pd.DataFrame({c: as_float(features[c]) for c in affected_features(everything)},
                       index=features.index)  # fmt: skip
    copied = np.zeros(n, dtype=bool)
    for j, items in [(-1, everything), *enumerate(groups)]:
        measured = np.zeros(n, dtype=bool)
        for item in items:
            measured |= ~np.isnan(as_float(features[item]))
        r = drawn & (group == j) & measured
        if r.any():
            m = masked_columns(features, items, r)
            out.loc[r, m.columns] = m.loc[r].to_numpy()
            copied |= r
    return copied, out


def add_missing_item_copies(
    data: OutcomeSet, copied: np.ndarray, masked: pd.DataFrame, names: list[str]
) -> None:
    """Attach to ``data`` the masked copies of its copied training rows.

    Training rows only: early stopping, model selection and calibration stay on the
    validation year as measured (copies there doubled a third of its ~20 events on a
    10,000-resident ward and moved the calibration of complete rows by a quarter).
    """
    use = (data.split == "train") & copied[data.rows]
    X = data.X[use].copy()
    X[:, [names.index(c) for c in masked.columns]] = masked.to_numpy()[data.rows[use]]
    data.copies = (X, data.y[use].copy(), data.split[use].copy())


def masked_matrix(X: np.ndarray, rows: np.ndarray, masked: pd.DataFrame, names: list[str]):
    """``X`` (rows ``rows`` of the features frame) with the columns of ``masked`` replaced."""
    out = X.copy()
    out[:, [names.index(c) for c in masked.columns]] = masked.to_numpy()[rows]
    return out


def prepare_forecasts(features: pd.DataFrame, test_year: int, config: ModelConfig) -> ForecastSet:
    """Index rows with a checkup in the next fiscal year (targets), split like the outcomes."""
    items = config.forecast.items
    targets = next_year_values(features, items)
    use = targets.notna().any(axis=1).to_numpy()
    keys = features.loc[use, ["pseudonym", "fiscal_year", "exam_date"]].reset_index(drop=True)
    split = _split(keys, test_year, 1, config.split)
    X = to_matrix(features.loc[use], feature_names())
    dipstick = None
    if DIPSTICK_ITEM in features:
        dipstick = next_year_values(features, (DIPSTICK_ITEM,))[DIPSTICK_ITEM].to_numpy()[use]
    return ForecastSet(X, targets.loc[use].reset_index(drop=True), keys, split, dipstick)


class NotEnoughDataError(BadInputError, ValueError):
    """The store holds too few rows or events to train a model: bad input (exit code 2)."""


def clip_to_physical_range(item: str, values: np.ndarray) -> np.ndarray:
    """``values`` of ``item`` clipped to its hard range (data.validate.RANGES), NaN kept.

    Clipping is monotone, so quantiles that were ordered (p10 ≤ p50 ≤ p90) stay ordered. Items
    without a declared range are returned unchanged.
    """
    from data.validate import RANGES

    if item not in RANGES:
        return values
    lo, hi = RANGES[item][:2]
    return np.clip(values, lo, hi)


@dataclass
class TrainedEngine:
    """All fitted models of one run; picklable (LightGBM boosters pickle as model strings)."""

    feature_names: list[str]
    categorical: list[str]
    monotone: list[int]
    outcomes: tuple[str, ...]
    boosters: dict[str, lgb.Booster]
    best_iteration: dict[str, int]
    calibrators: dict[str, Calibrator]
    forecast_items: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    forecasts: dict[str, list[lgb.Booster]] = field(default_factory=dict)
    forecast_iteration: dict[str, list[int]] = field(default_factory=dict)
    forecast_offsets: dict[str, float] = field(default_factory=dict)
    test_year: int = 0
    feature_set_version: str = FEATURE_SET_VERSION
    config: ModelConfig = field(default_factory=ModelConfig)
    #: Member behind each outcome's risk (models.member_choice); absent = LightGBM alone.
    members: dict[str, Member] = field(default_factory=dict)
    #: Validation AUC of every candidate per outcome and which one was chosen.
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Decile bins of the training rows' features (models.drift), for PSI at scoring time.
    feature_reference: FeatureReference | None = None
    #: ``change``: the forecasts predict next year's value minus this year's (added back in
    #: predict_values; no forecast without this year's value); ``level`` (older engines).
    forecast_target: str = "level"
    #: Outcomes with too few training events (models.config ``min_events``): outcome → the
    #: message (fallback member, or switched off: then not in ``outcomes``).
    small_outcomes: dict[str, str] = field(default_factory=dict)
    #: Glucose pattern (features.masking.GLUCOSE_PATTERNS) → the engine trained on rows with
    #: that pattern's items masked (``MaskingConfig.submodels``): it scores the rows whose
    #: checkup has the pattern, for its outcomes (every predict method routes them).
    pattern_engines: dict[str, TrainedEngine] = field(default_factory=dict)
    #: Log-odds added to the calibrated risk of an outcome (a pattern sub-model's anchor to
    #: the main member: :func:`anchor_pattern_engines`; plus, on the main engine and its
    #: pattern engines alike, the shift to the ward's rate: :func:`match_ward_rate`); absent = 0.
    risk_shift: dict[str, float] = field(default_factory=dict)
    #: Correlations of the forecast items' errors on the validation year, as normal scores
    #: (models.forecast_distribution.forecast_dependence): metabolic syndrome's what-if reads its
    #: items jointly through them. None: not estimated (older engines; MetS keeps the trees').
    forecast_dependence: pd.DataFrame | None = None
    #: Next year's urine protein (+) chance (models.dipstick_chance): CKD's what-if reads it
    #: with the eGFR forecast. None: not fitted (older engines; CKD keeps the trees').
    dipstick_chance: DipstickChance | None = None
    #: Outcome → its forecast stack (models.forecast_stack): the member's log-odds and the
    #: forecasts' chance of the outcome together; absent = the member alone.
    forecast_stacks: dict[str, ForecastStack] = field(default_factory=dict)
    #: The stack's fit per forecast-read outcome, chosen or not (evaluation/forecast_stack.csv).
    forecast_stack_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The shift to the ward's rate per routed outcome (:func:`match_ward_rate`:
    #: evaluation/ward_rate.csv).
    ward_rate_table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def switched_off(self) -> tuple[str, ...]:
        """Outcomes the run was configured for but does not score (too few events)."""
        small = getattr(self, "small_outcomes", None) or {}
        return tuple(o for o in small if o not in self.outcomes)

    @property
    def notes(self) -> list[str]:
        """One line per small outcome (fallback or switched off), for the console and cards."""
        return list((getattr(self, "small_outcomes", None) or {}).values())

    def _matrix(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(features, np.ndarray):
            if features.shape[1] != len(self.feature_names):
                raise ValueError(f"expected {len(self.feature_names)} feature columns")
            return features
        return to_matrix(features, self.feature_names)

    def _scored(self, outcome: str) -> None:
        if outcome not in self.outcomes:
            why = (getattr(self, "small_outcomes", None) or {}).get(outcome)
            raise KeyError(
                why or f"{outcome!r} is not an outcome of this engine ({', '.join(self.outcomes)})"
            )

    def member(self, outcome: str) -> str:
        """``lightgbm``, ``blend`` or ``logistic``: what the risk of ``outcome`` comes from."""
        m = self.members.get(outcome)
        return "lightgbm" if m is None else m.name

    def _routed(
        self,
        X: np.ndarray,
        outcome: str,
        method: str,
        moved_from: np.ndarray | None = None,
        forecast: pd.DataFrame | None = None,
    ) -> np.ndarray | None:
        """``method`` per row by the engine of its glucose pattern; None if no row is routed.

        Rows whose checkup lacks HbA1c and/or fasting glucose go to the pattern's sub-model
        when it scores ``outcome``; every other row to this engine's own member
        (``moved_from``, ``forecast``: as :meth:`predict_outcome`, passed on by row).
        """
        subs = getattr(self, "pattern_engines", None) or {}
        subs = {p: e for p, e in subs.items() if outcome in e.outcomes}
        if method == "predict_lightgbm":  # LightGBM alone: only where the sub-model has one
            subs = {p: e for p, e in subs.items() if outcome in e.boosters}
        if not subs or not len(X):
            return None
        names = self.feature_names
        pattern = glucose_pattern(X[:, names.index("fpg")], X[:, names.index("hba1c")])
        parts = [(e, pattern == p) for p, e in subs.items() if (pattern == p).any()]
        if not parts:
            return None
        own = ~np.logical_or.reduce([m for _, m in parts])
        out = None
        for engine, m in [(self, own), *parts]:
            if m.any():
                kw = {} if moved_from is None else {"moved_from": moved_from[m]}
                if forecast is not None:
                    kw["forecast"] = forecast.iloc[np.flatnonzero(m)]
                v = getattr(engine, method)(X[m], outcome, route=False, **kw)
                v = v.to_numpy() if isinstance(v, pd.DataFrame) else np.asarray(v)
                if out is None:
                    out = np.full((len(X), *v.shape[1:]), np.nan)
                out[m] = v
        return out

    def _gbm_raw(self, X: np.ndarray, outcome: str) -> np.ndarray:
        return booster_predict(
            self.boosters[outcome], X, raw_score=True, num_iteration=self.best_iteration[outcome]
        )

    def predict_raw(
        self,
        features: pd.DataFrame | np.ndarray,
        outcome: str,
        route: bool = True,
        moved_from: np.ndarray | None = None,
        forecast: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """Uncalibrated log-odds of ``outcome``: the selected member's (models.member_choice),
        or its forecast stack's where it has one (models.forecast_stack).

        ``route``: rows of a glucose pattern with a sub-model get its member (``False``: this
        engine's own member for every row). ``moved_from``, ``forecast``: as
        :meth:`predict_outcome`."""
        self._scored(outcome)
        X = self._matrix(features)
        r = self._routed(X, outcome, "predict_raw", moved_from, forecast) if route else None
        if r is not None:
            return r
        z, stacked = self._own_scores(X, outcome, moved_from, forecast)
        if stacked is None:
            return z
        _, s, ok = stacked
        return np.where(ok, s, z)

    def _own_scores(
        self,
        X: np.ndarray,
        outcome: str,
        moved_from: np.ndarray | None,
        forecast: pd.DataFrame | None,
    ) -> tuple[np.ndarray, tuple[ForecastStack, np.ndarray, np.ndarray] | None]:
        """This engine's member log-odds ``z`` of the rows, and where the outcome has a
        forecast stack (the stack, its score ``(1 − w)·z + w·ℓ``, the rows ``ℓ`` is read for)."""
        z = self._member_raw(X, outcome)
        stacked = self._stack_term(X, outcome, moved_from, forecast)
        if stacked is None:
            return z, None
        stack, ell, ok = stacked
        return z, (stack, (1 - stack.weight) * z + stack.weight * ell, ok)

    def _stack_term(
        self,
        X: np.ndarray,
        outcome: str,
        moved_from: np.ndarray | None = None,
        forecast: pd.DataFrame | None = None,
    ) -> tuple[ForecastStack, np.ndarray, np.ndarray] | None:
        """(the outcome's stack, ℓ, rows where ℓ is read) or None without a stack.

        ``moved_from``: the rows before a what-if; ℓ is then read from their forecasts, each of
        the outcome's items moved by its change between the two rows (monotone, where the
        forecasts re-run on an edited row need not be). ``forecast``: those forecasts
        (:meth:`predict_values` of ``moved_from``, else of ``X``), when the caller has them."""
        stack = (getattr(self, "forecast_stacks", None) or {}).get(outcome)
        if stack is None or not len(X):
            return None
        items = liability_items(outcome)
        fe = self._forecaster()
        cols = [c for i in items for c in quantile_columns(i, fe.quantiles)]
        if forecast is None or not set(cols) <= set(forecast.columns):
            forecast = fe.predict_values(X if moved_from is None else moved_from, items)
        moves = None
        if moved_from is not None:
            names = self.feature_names
            moves = {i: np.nan_to_num(X[:, names.index(i)] - moved_from[:, names.index(i)])
                     for i in items}  # fmt: skip
        ell = chance_log_odds(forecast, outcome, fe.quantiles,
                              row_context(X, self.feature_names), fe.forecast_dependence,
                              moves)  # fmt: skip
        return stack, ell, ~np.isnan(ell)

    def stack_items(self) -> tuple[str, ...]:
        """The items every forecast stack of this engine and its sub-engines reads (none: no
        stack)."""
        engines = [self, *(getattr(self, "pattern_engines", None) or {}).values()]
        stacked = [o for e in engines for o in (getattr(e, "forecast_stacks", None) or {})]
        return tuple(dict.fromkeys(i for o in stacked for i in liability_items(o)))

    def _forecaster(self) -> TrainedEngine:
        """The engine whose value forecasts this one's stacks read: its own, or for a glucose
        pattern's sub-engine its main engine's (``forecast_source``, set by
        :func:`train_engine`; not a field, so no copy, comparison or repr walks back up)."""
        return getattr(self, "forecast_source", None) or self

    def without_stacks(self) -> TrainedEngine:
        """This engine with every forecast stack off (its own and its sub-engines'): the
        members alone."""
        subs = getattr(self, "pattern_engines", None) or {}
        return replace(self, forecast_stacks={},
                       pattern_engines={p: e.without_stacks() for p, e in subs.items()})  # fmt: skip

    def _member_raw(self, X: np.ndarray, outcome: str) -> np.ndarray:
        m = self.members.get(outcome)
        if m is None or m.weight == 1.0 or m.linear is None:
            return self._gbm_raw(X, outcome)
        z = (1 - m.weight) * m.linear.raw(X)
        return z if m.weight == 0.0 else z + m.weight * self._gbm_raw(X, outcome)

    def predict_outcome(
        self,
        features: pd.DataFrame | np.ndarray,
        outcome: str,
        route: bool = True,
        moved_from: np.ndarray | None = None,
        forecast: pd.DataFrame | None = None,
    ) -> np.ndarray:
        """Calibrated probability of ``outcome`` next year (the selected member, or its
        forecast stack; ``route``: as :meth:`predict_raw`). ``moved_from``: where ``features``
        are rows with a what-if applied, the same rows without it (a forecast stack reads the
        scenario as a move of the unchanged rows' forecasts). ``forecast``: the caller's
        :meth:`predict_values` of those rows (of ``moved_from``, else of ``features``) with
        at least the stack's items, so that they are not predicted again."""
        self._scored(outcome)
        X = self._matrix(features)
        r = self._routed(X, outcome, "predict_outcome", moved_from, forecast) if route else None
        if r is not None:
            return r
        m = self.members.get(outcome)
        cal = self.calibrators[outcome] if m is None else m.calibrator
        z, stacked = self._own_scores(X, outcome, moved_from, forecast)
        p = cal(z)
        if stacked is not None:
            stack, s, ok = stacked
            p[ok] = stack.calibrator(s[ok])
        shift = (getattr(self, "risk_shift", None) or {}).get(outcome, 0.0)
        return _shifted(p, shift) if shift else p

    def predict_lightgbm(
        self, features: pd.DataFrame | np.ndarray, outcome: str, route: bool = True
    ) -> np.ndarray:
        """Calibrated probability of ``outcome`` from LightGBM alone (whatever was selected);
        NaN for an outcome without a LightGBM model (too few events: a fallback member).
        ``route``: as :meth:`predict_raw`."""
        X = self._matrix(features)
        if route and outcome in self.outcomes:
            if (r := self._routed(X, outcome, "predict_lightgbm")) is not None:
                return r
        if outcome not in self.boosters:
            return np.full(len(X), np.nan)
        return self.calibrators[outcome](self._gbm_raw(X, outcome))

    def predict_proba(
        self,
        features: pd.DataFrame | np.ndarray,
        moved_from: np.ndarray | None = None,
        forecast: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """``risk_<outcome>`` for every outcome (calibrated), same index as ``features``; the
        outcomes on :data:`PREDICT_THREADS` workers (each its own boosters). ``moved_from``,
        ``forecast``: as :meth:`predict_outcome` (the forecast stacks' items are predicted
        once for all outcomes when not given)."""
        X = self._matrix(features)
        index = features.index if isinstance(features, pd.DataFrame) else None
        items = self.stack_items()
        if items and forecast is None and len(X):
            forecast = self.predict_values(X if moved_from is None else moved_from, items)
        if forecast is not None:
            forecast = forecast.reset_index(drop=True)
        risks = parallel_map(
            lambda o: self.predict_outcome(X, o, moved_from=moved_from, forecast=forecast),
            self.outcomes,
        )
        return pd.DataFrame(
            {f"risk_{o}": r for o, r in zip(self.outcomes, risks, strict=True)}, index=index
        )

    def predict_values(
        self, features: pd.DataFrame | np.ndarray, items: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """``<item>_p10/_p50/_p90``: next year's value with an 80% interval (non-crossing), for
        every forecast item or those of ``items``.

        NaN where this year's value is missing and the engine forecasts the change. Every
        quantile lies inside the item's hard range (:func:`clip_to_physical_range`): a change
        forecast added to a low value can otherwise fall below zero (γ-GT −3 U/L).
        """
        X = self._matrix(features)
        index = features.index if isinstance(features, pd.DataFrame) else None
        cols: dict[str, np.ndarray] = {}
        wanted = self.forecast_items if items is None else tuple(items)
        calls = [(b, it) for item in wanted
                 for b, it in zip(self.forecasts[item], self.forecast_iteration[item],
                                  strict=True)]  # fmt: skip
        preds = iter(parallel_map(lambda c: booster_predict(c[0], X, num_iteration=c[1]), calls))
        for item in wanted:
            q = np.column_stack([next(preds) for _ in self.forecasts[item]])
            if getattr(self, "forecast_target", "level") == "change":
                q += X[:, self.feature_names.index(item)][:, None]
            q.sort(axis=1)
            off = self.forecast_offsets.get(item, 0.0)
            q[:, 0] -= off
            q[:, -1] += off
            q.sort(axis=1)
            q = clip_to_physical_range(item, q)
            for j, col in enumerate(quantile_columns(item, self.quantiles)):
                cols[col] = q[:, j]
        return pd.DataFrame(cols, index=index)

    def contributions(
        self, features: pd.DataFrame | np.ndarray, outcome: str, route: bool = True
    ) -> pd.DataFrame:
        """Per-feature contributions to :meth:`predict_raw` (log-odds), plus ``bias``.

        LightGBM: its native SHAP values (``pred_contrib``). Blend with weight w:
        w·SHAP + (1 − w)·the logistic member's exact linear contributions; logistic member:
        the linear contributions alone (models.member_choice). A forecast stack's rows: its
        ``1 − weight`` × those, plus ``weight`` × each clinical item's share of the forecasts'
        log-odds credited to the item's first feature and the reference's log-odds to the bias
        (models.forecast_stack.item_shares). Rows add up to :meth:`predict_raw` (``route``:
        each row from the member of its glucose pattern, as there).
        """
        self._scored(outcome)
        X = self._matrix(features)
        index = features.index if isinstance(features, pd.DataFrame) else None
        if route and (r := self._routed(X, outcome, "contributions")) is not None:
            return pd.DataFrame(r, columns=[*self.feature_names, "bias"], index=index)
        m = self.members.get(outcome)
        w = 1.0 if m is None or m.linear is None else m.weight
        c = 0.0
        if w > 0:
            c = w * booster_predict(
                self.boosters[outcome], X, pred_contrib=True,
                num_iteration=self.best_iteration[outcome],
            )  # fmt: skip
        if w < 1:
            assert m is not None and m.linear is not None
            c = c + (1 - w) * m.linear.contributions(X)
        stack = (getattr(self, "forecast_stacks", None) or {}).get(outcome)
        if stack is not None and len(X):
            c = self._stacked_contributions(X, outcome, stack, c)
        return pd.DataFrame(c, columns=[*self.feature_names, "bias"], index=index)

    def _stacked_contributions(
        self, X: np.ndarray, outcome: str, stack: ForecastStack, member: np.ndarray
    ) -> np.ndarray:
        fe = self._forecaster()
        forecast = fe.predict_values(X, liability_items(outcome))
        ell, ref, shares = item_shares(forecast, outcome, fe.quantiles, stack.reference,
                                       row_context(X, self.feature_names),
                                       fe.forecast_dependence)  # fmt: skip
        ok = ~np.isnan(ell)
        w = stack.weight
        c = np.array(member, dtype="float64", copy=True)
        c[ok] *= 1 - w
        for k, (feature, _) in enumerate(players(outcome)):
            c[ok, self.feature_names.index(feature)] += w * shares[ok, k]
        c[ok, -1] += w * ref[ok]
        return c


def _shifted(p: np.ndarray, shift: float) -> np.ndarray:
    """Probabilities ``p`` with ``shift`` added to their log-odds."""
    p = np.clip(np.asarray(p, dtype="float64"), 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + shift)))


def _dataset(X: np.ndarray, y: np.ndarray, names: list[str], cats: list[str], ref=None):
    return lgb.Dataset(X, label=y, feature_name=names, categorical_feature=cats,
                       reference=ref, free_raw_data=True)  # fmt: skip


def fit_outcome(
    data: OutcomeSet, config: ModelConfig, names: list[str], cats: list[str], mono: list[int]
) -> tuple[lgb.Booster, int, Calibrator, np.ndarray]:
    """Booster (early-stopped on ``val``), its calibrator and raw log-odds on ``val``.

    Training, early stopping and calibration include the masked copies (``data.copies``).
    """
    Xtr, ytr = data.part("train", copies=True)
    Xva, yva = data.part("val", copies=True)
    for part, yy in (("train", ytr), ("val", yva)):
        if len(yy) == 0 or yy.min() == yy.max():
            raise NotEnoughDataError(
                f"{data.outcome}: the {part} split needs residents with and without the "
                f"outcome, has {len(yy)} rows; the store is too small to train on (more "
                "residents or fiscal years are needed)"
            )
    p = config.lgbm
    params = p.native("binary", metric="binary_logloss")
    if config.monotone:
        params["monotone_constraints"] = mono
    dtr = _dataset(Xtr, ytr, names, cats)
    dva = _dataset(Xva, yva, names, cats, ref=dtr)
    booster = lgb.train(
        params, dtr, num_boost_round=p.n_estimators, valid_sets=[dva],
        callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)],
    )  # fmt: skip
    best = booster.best_iteration or booster.current_iteration()
    raw = booster.predict(Xva, raw_score=True, num_iteration=best)
    k = data.scored(Xva, yva)
    return booster, best, fit_calibrator(raw[k], yva[k], config.calibration), raw


def _conformal_offset(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float) -> float:
    """CQR offset: the ⌈level·(n+1)⌉-th smallest of max(lo − y, y − hi) on held-out rows."""
    if len(y) == 0:
        return 0.0
    score = np.sort(np.maximum(lo - y, y - hi))
    k = min(len(score) - 1, int(np.ceil(level * (len(score) + 1))) - 1)
    return float(score[k])


@dataclass
class ForecastBins:
    """The forecast rows' feature matrix binned once (train, val ``lgb.Dataset``), shared by
    every item's task: built on first use in a process and not pickled, so the tasks of one
    process (the local runner) bin once and a Spark task bins again — to the same bins."""

    data: ForecastSet
    max_bin: int
    names: list[str]
    cats: list[str]
    _built: tuple[lgb.Dataset, lgb.Dataset] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_built": None}

    def get(self) -> tuple[lgb.Dataset, lgb.Dataset]:
        if self._built is None:
            d, names, cats = self.data, self.names, self.cats
            tr, va = d.split == "train", d.split == "val"
            dparams = {"max_bin": self.max_bin, "verbosity": -1}
            base_tr = lgb.Dataset(d.X[tr], label=np.zeros(tr.sum()), feature_name=names,
                                  categorical_feature=cats, free_raw_data=False,
                                  params=dparams).construct()  # fmt: skip
            base_va = lgb.Dataset(d.X[va], label=np.zeros(va.sum()), reference=base_tr,
                                  feature_name=names, categorical_feature=cats,
                                  free_raw_data=False, params=dparams).construct()  # fmt: skip
            self._built = (base_tr, base_va)
        return self._built


@dataclass
class ForecastTask:
    """One item's value forecast: everything :meth:`fit` needs (a runner may ship it)."""

    bins: ForecastBins
    item: str
    config: ModelConfig

    def fit(self) -> tuple[list[lgb.Booster], list[int], float]:
        """Three quantile boosters of the item's change (early-stopped on ``val``), their best
        iterations and the CQR offset of the outer interval."""
        fc, data, names = self.config.forecast, self.bins.data, self.bins.names
        tr, va = data.split == "train", data.split == "val"
        base_tr, base_va = self.bins.get()
        # Change from this year's value: persistence is the natural baseline of a level, and
        # trees approximate "same as now" only in steps (the level model lost to persistence).
        y = data.targets[self.item].to_numpy("float64") - data.X[:, names.index(self.item)]
        ok = ~np.isnan(y)
        ok_tr, ok_va = ok[tr], ok[va]
        dtr = base_tr.subset(np.flatnonzero(ok_tr)).construct()
        dtr.set_label(y[tr][ok_tr])
        dva = base_va.subset(np.flatnonzero(ok_va)).construct()
        dva.set_label(y[va][ok_va])
        models, iters = [], []
        for a in fc.quantiles:
            params = fc.lgbm.native("quantile", alpha=a, metric="quantile")
            b = lgb.train(
                params, dtr, num_boost_round=fc.lgbm.n_estimators, valid_sets=[dva],
                callbacks=[lgb.early_stopping(fc.lgbm.early_stopping_rounds, verbose=False)],
            )  # fmt: skip
            models.append(b)
            iters.append(b.best_iteration or b.current_iteration())
        Xv, yv = data.X[va & ok], y[va & ok]
        lo = models[0].predict(Xv, num_iteration=iters[0])
        hi = models[-1].predict(Xv, num_iteration=iters[-1])
        level = fc.quantiles[-1] - fc.quantiles[0]
        return models, iters, _conformal_offset(yv, np.minimum(lo, hi), np.maximum(lo, hi), level)


def forecast_tasks(
    data: ForecastSet, config: ModelConfig, names: list[str], cats: list[str]
) -> list[ForecastTask]:
    """One task per forecast item (their rows are subsets of one binned matrix)."""
    bins = ForecastBins(data, config.forecast.lgbm.max_bin, names, cats)
    return [ForecastTask(bins, item, config) for item in config.forecast.items]


@dataclass
class TrainingData:
    """The prepared rows of a run (for evaluation and baselines on the same split)."""

    test_year: int
    outcomes: dict[str, OutcomeSet]
    forecast: ForecastSet | None
    #: LR baseline per outcome fitted on the training rows (reused by the evaluation).
    logistic: dict[str, object] = field(default_factory=dict)
    #: Glucose pattern (features.masking.GLUCOSE_PATTERNS) → its masked feature columns for
    #: every index row (as the builder gives them had the pattern's items not been measured).
    pattern_masks: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: The same for each named optional item group of ``MaskingConfig.optional_items``.
    item_masks: dict[str, pd.DataFrame] = field(default_factory=dict)


def drift_reference(features: pd.DataFrame, names: list[str], test_year: int) -> FeatureReference:
    """PSI reference bins from the training rows of the latest training fiscal year
    (``test_year − 2``; see :mod:`models.drift` for why not every training year)."""
    fy = features["fiscal_year"].to_numpy(dtype="float64", na_value=np.nan)
    train = fy <= test_year - 2
    year = int(np.nanmax(fy[train] if train.any() else fy))
    rows = fy == year
    return FeatureReference.fit(to_matrix(features[rows], names), names, fiscal_year=year)


def _events(data: OutcomeSet, part: str) -> tuple[int, int]:
    """(rows, events) of one split of an outcome."""
    m = data.split == part
    return int(m.sum()), int(data.y[m].sum())


def small_outcome_plan(data: OutcomeSet, config: ModelConfig) -> tuple[str, str]:
    """``("lightgbm" | "logistic" | "off", message)`` for one outcome (small wards).

    LightGBM needs ≥ ``min_events`` training events; below that the fallback logistic member
    needs ≥ ``min_events_fallback`` of them; every member needs training rows without the
    outcome and validation rows with and without it (early stopping, calibration). The
    message is '' for LightGBM.
    """
    n_tr, e_tr = _events(data, "train")
    n_va, e_va = _events(data, "val")
    usable = 0 < e_va < n_va and e_tr < n_tr
    if e_tr >= config.min_events and usable:
        return "lightgbm", ""
    why = []
    if e_tr < config.min_events:
        why.append(f"{e_tr} training events < min_events {config.min_events}")
    if not 0 < e_va < n_va:
        why.append(f"the validation year has {e_va} events in {n_va} rows")
    if e_tr >= n_tr:
        why.append("no training rows without the outcome")
    if config.small_outcome == "logistic" and usable and e_tr >= config.min_events_fallback:
        return "logistic", (
            f"{data.outcome}: {'; '.join(why)}: no LightGBM model, scored by a regularised "
            "logistic regression"
        )
    if config.small_outcome == "logistic" and e_tr < config.min_events_fallback:
        why.append(f"too few for the fallback model too (< {config.min_events_fallback})")
    return "off", (
        f"{data.outcome}: {'; '.join(why)}: switched off for this run (no risk, no what-if, "
        "no letter)"
    )


#: Person-grouped folds of the small-ward member's out-of-fold scores (:func:`out_of_fold_raw`).
CALIBRATION_FOLDS = 5


def out_of_fold_raw(
    data: OutcomeSet,
    config: ModelConfig,
    names: list[str],
    cats: list[str],
    mono: list[int],
    items: tuple[str, ...] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The fallback's raw scores (log-odds) of the training and validation years' rows, each
    from the same logistic fit (``items``, ``fallback_c``, monotone clipping) on the other
    folds: :data:`CALIBRATION_FOLDS` folds of persons, so a person's years stay together.
    Returns (the rows of ``data`` used, their scores; NaN where no fold could score them).

    Why: fitted on the validation year alone, a small ward's calibration slope rests on 7-16
    events. On eight 10k wards, diabetes's mean risk over the fully measured test rows went
    from 0.66-1.18 × the true risk to 0.79-1.17
    (docs/models.md §Calibrated on the rows a member scores). Measured rows only: the masked
    copies have no person to group them by.
    """
    pool = np.isin(data.split, ["train", "val"])
    X, y = data.X[pool], data.y[pool]
    # a hash of its own: the split's person hash sends whole ranges of it to the test group
    u = person_hash(data.keys["pseudonym"][pool].astype("string") + "#calibration-fold")
    fold = np.minimum((u * CALIBRATION_FOLDS).astype(np.int64), CALIBRATION_FOLDS - 1)
    raw = np.full(len(y), np.nan)
    for f in range(CALIBRATION_FOLDS):
        out, fit = fold == f, fold != f
        if not out.any() or not 0 < y[fit].sum() < fit.sum():
            continue  # nothing to score, or one class only to fit: those rows stay NaN
        pipe = fit_logistic(X[fit], y[fit], names, cats, config.lgbm.seed, C=config.fallback_c,
                            items=items)  # fmt: skip
        raw[out] = linear_score(pipe, X[fit], names, mono).raw(X[out])
    return pool, raw


def fit_fallback(
    data: OutcomeSet, config: ModelConfig, names: list[str], cats: list[str], mono: list[int]
) -> tuple[Member, float, str]:
    """The small outcome's member: monotone-clipped L2 logistic regression, calibrated over the
    training and validation years together (a small ward's validation year has a few events):
    its slope fitted on out-of-fold scores (:func:`out_of_fold_raw`), its mean risk matched to
    those years' rate; its val AUC and which inputs it uses.

    Two candidates, the better validation AUC wins: the outcome's clinical items
    (models.baselines.POINT_ITEMS) and every feature. The clinical items are steadier where
    the ward measures them; a cohort that lacks some of them (no HbA1c, no waist) does better
    on every feature, as the Framingham benchmark shows. Masked copies included (``copies``).
    """
    Xtr, ytr = data.part("train", copies=True)
    Xva, yva = data.part("val", copies=True)
    best = None
    for label, items in (
        (f"{len(POINT_ITEMS[data.outcome])} clinical items", POINT_ITEMS[data.outcome]),
        ("every feature", None),
    ):
        pipe = fit_logistic(Xtr, ytr, names, cats, config.lgbm.seed, C=config.fallback_c,
                            items=items)  # fmt: skip
        linear = linear_score(pipe, Xtr, names, mono)
        z = linear.raw(Xva)
        auc = float(roc_auc_score(yva, z))  # small_outcome_plan: val has both classes
        if best is None or auc > best[1]:
            best = (linear, auc, label, z, items)
    linear, auc, label, z, items = best
    k, ktr = data.scored(Xva, yva), data.scored(Xtr, ytr)
    pool, oof = out_of_fold_raw(data, config, names, cats, mono, items)
    kp = data.scored(data.X[pool], data.y[pool]) & ~np.isnan(oof)
    raw, y = (
        (oof[kp], data.y[pool][kp]) if 0 < data.y[pool][kp].sum() < kp.sum() else (z[k], yva[k])
    )
    cal = fit_calibrator(raw, y, config.calibration).matching_mean(
        np.concatenate([linear.raw(Xtr)[ktr], z[k]]), np.concatenate([ytr[ktr], yva[k]])
    )
    member = Member("logistic", 0.0, cal, linear)
    return member, auc, label


class Runner(Protocol):
    """Runs the independent fits of :func:`train_engine`: ``map(fn, items)`` must return
    ``[fn(x) for x in items]``, in order, wherever the calls run (:class:`LocalRunner`: here;
    kenshin.spark.train: one Spark task per item, ``fn`` and the items pickled)."""

    def map(self, fn: Callable[[Any], Any], items: list) -> list: ...


class LocalRunner:
    """In this process, one item after the other (the default)."""

    def map(self, fn: Callable[[Any], Any], items: list) -> list:
        return [fn(x) for x in items]


@dataclass
class OutcomeFit:
    """What one outcome's task fitted (absent parts: None)."""

    #: Member choice rows with train events and the small-ward note (None: no selection).
    table: pd.DataFrame | None
    booster: lgb.Booster | None = None
    best_iteration: int = 0
    calibrator: Calibrator | None = None
    #: The member behind the risk when it is not LightGBM alone.
    member: Member | None = None
    logistic: object | None = None  # the logistic baseline (reused by the evaluation)
    note: str | None = None  # small-ward note (fallback member)


@dataclass
class OutcomeTask:
    """One outcome's fit by its small-ward plan (``lightgbm`` or ``logistic``, with its note):
    everything :meth:`fit` needs (a runner may ship it)."""

    data: OutcomeSet
    plan: str
    note: str
    config: ModelConfig
    names: list[str]
    cats: list[str]
    mono: list[int]
    #: BLAS threads of the logistic fits: the sums of a BLAS product depend on its thread
    #: count, so every fit uses one, wherever it runs and however many cores the machine has
    #: (same data and seed, same coefficients; one thread was also 3-4x faster on a busy
    #: 2-core machine than two).
    blas_threads: int = 1

    def fit(self) -> OutcomeFit:
        """The fallback member, or LightGBM + calibrator, the logistic baseline and the member
        choice (a LightGBM member is the engine's default and is not returned)."""
        with threadpool_limits(self.blas_threads, user_api="blas"):
            return self._fit()

    def _fit(self) -> OutcomeFit:
        data, config, names, cats, mono = self.data, self.config, self.names, self.cats, self.mono
        events = _events(data, "train")[1]
        lr = None
        if self.plan == "logistic":
            member, auc, inputs = fit_fallback(data, config, names, cats, mono)
            note = f"{self.note} ({inputs})"
            if config.baselines:
                Xtr, ytr = data.part("train", copies=True)
                lr = fit_logistic(Xtr, ytr, names, cats, config.lgbm.seed)
            table = pd.DataFrame([{"outcome": data.outcome, "member": "logistic", "weight": 0.0,
                                   "val_auc": auc, "chosen": True, "train_events": events,
                                   "note": note}])  # fmt: skip
            return OutcomeFit(table, member=member, logistic=lr, note=note)
        booster, best, cal, z_val = fit_outcome(data, config, names, cats, mono)
        linear = member = table = None
        if config.baselines or config.select:
            Xtr, ytr = data.part("train", copies=True)
            lr = fit_logistic(Xtr, ytr, names, cats, config.lgbm.seed)
            if config.select:
                linear = linear_score(lr, Xtr, names, mono)
        if config.select:
            Xva, yva = data.part("val", copies=True)
            member, table = select_member(
                data.outcome, z_val, yva, cal, linear, Xva, config.calibration,
                config.blend_weights, config.select_margin, data.scored(Xva, yva),
            )  # fmt: skip
            member = None if member.name == "lightgbm" else member
            table = table.assign(train_events=events, note="")
        return OutcomeFit(table, booster, best, cal, member, lr)


def fit_task(task: OutcomeTask | ForecastTask):
    """``task.fit()``; a :class:`NotEnoughDataError` is returned, not raised (the driver
    raises it: from a Spark task it would come back as Spark's error, not as bad input)."""
    try:
        return task.fit()
    except NotEnoughDataError as e:
        return e


@dataclass
class EnginePlan:
    """One engine's prepared rows and its independent fits (``tasks``: an
    :class:`OutcomeTask` per outcome of ``sets``, in order, then a :class:`ForecastTask` per
    forecast item), before they run."""

    config: ModelConfig
    test_year: int
    names: list[str]
    cats: list[str]
    mono: list[int]
    sets: dict[str, OutcomeSet]
    #: Switched-off outcomes (too few events): outcome → (note, training events).
    off: dict[str, tuple[str, int]]
    fset: ForecastSet | None
    tasks: list[OutcomeTask | ForecastTask]


def plan_engine(
    features: pd.DataFrame, labels: pd.DataFrame, config: ModelConfig, test_year: int
) -> EnginePlan:
    """Each outcome's table (plus the missing-item copies) and its small-ward plan —
    switched off, the fallback member or LightGBM — and the forecast rows, as tasks.

    :class:`NotEnoughDataError` if every outcome is switched off."""
    names = feature_names()
    cats = categorical_features()
    mono = monotone_constraints(names) if config.monotone else [0] * len(names)
    copied = None
    if config.masking.enabled and config.masking.share > 0:
        copied, masked = missing_item_copies(features, config.masking, config.lgbm.seed)
    sets: dict[str, OutcomeSet] = {}
    off: dict[str, tuple[str, int]] = {}
    tasks: list[OutcomeTask | ForecastTask] = []
    for o in config.outcomes:
        data = prepare_outcome(features, labels, o, test_year, config)
        plan, note = small_outcome_plan(data, config)  # on the measured rows, not the copies
        if config.masking.enabled and o in config.masking.submodels and config.masking.patterns:
            data.routed = (tuple(config.masking.patterns), names.index("fpg"),
                           names.index("hba1c"))  # fmt: skip
        if copied is not None:
            add_missing_item_copies(data, copied, masked, names)
        if plan == "off":
            off[o] = (note, _events(data, "train")[1])
            continue
        sets[o] = data
        tasks.append(OutcomeTask(data, plan, note, config, names, cats, mono))
    if not sets:
        raise NotEnoughDataError(
            "no outcome has enough events to train on: "
            + "; ".join(note for note, _ in off.values())
        )
    fset = None
    if config.forecasts:
        fset = prepare_forecasts(features, test_year, config)
        tasks += forecast_tasks(fset, config, names, cats)
    return EnginePlan(config, test_year, names, cats, mono, sets, off, fset, tasks)


def build_engine(plan: EnginePlan, results: list) -> tuple[TrainedEngine, dict[str, object]]:
    """The engine from its plan and the results of its tasks (in the tasks' order), and the
    logistic baselines; a task's :class:`NotEnoughDataError` is raised here. No drift
    reference and no pattern engines (:func:`train_engine` adds them)."""
    for r in results:
        if isinstance(r, NotEnoughDataError):
            raise r
    fits: dict[str, OutcomeFit] = dict(zip(plan.sets, results[: len(plan.sets)], strict=True))
    boosters, best, cals, members, lrs, small, tables = {}, {}, {}, {}, {}, {}, []
    for o in plan.config.outcomes:
        if o in plan.off:
            small[o], events = plan.off[o]
            tables.append(pd.DataFrame([{"outcome": o, "member": "off", "weight": np.nan,
                                         "val_auc": np.nan, "chosen": True,
                                         "train_events": events, "note": small[o]}]))  # fmt: skip
            continue
        f = fits[o]
        if f.note is not None:
            small[o] = f.note
        if f.booster is not None:
            boosters[o], best[o], cals[o] = f.booster, f.best_iteration, f.calibrator
        if f.member is not None:
            members[o] = f.member
        if f.logistic is not None:
            lrs[o] = f.logistic
        if f.table is not None:
            tables.append(f.table)
    config = plan.config
    engine = TrainedEngine(
        feature_names=plan.names, categorical=plan.cats, monotone=plan.mono,
        outcomes=tuple(plan.sets), boosters=boosters, best_iteration=best, calibrators=cals,
        test_year=plan.test_year, config=config, members=members,
        selection=pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(),
        small_outcomes=small,
    )  # fmt: skip
    if plan.fset is not None:
        items = tuple(config.forecast.items)
        forecasts = results[len(plan.sets) :]
        engine.forecasts = {i: r[0] for i, r in zip(items, forecasts, strict=True)}
        engine.forecast_iteration = {i: r[1] for i, r in zip(items, forecasts, strict=True)}
        engine.forecast_offsets = {i: r[2] for i, r in zip(items, forecasts, strict=True)}
        engine.forecast_items = items
        engine.forecast_target = "change"
        engine.quantiles = tuple(config.forecast.quantiles)
        engine.forecast_dependence = _forecast_dependence(engine, plan.fset)
        engine.dipstick_chance = dipstick_model(plan.fset, config.min_events_fallback)
    return engine, lrs


def dipstick_model(data: ForecastSet, min_events: int) -> DipstickChance | None:
    """The urine dipstick model on the forecasts' training rows (None with fewer than
    ``min_events`` events: CKD's what-if then keeps the trees')."""
    cut = item_cut(DIPSTICK_ITEM)
    if data.dipstick is None or cut is None:
        return None
    return fit_dipstick_chance(data.X, feature_names(), data.dipstick, data.split == "train",
                               cut, min_events=min_events)  # fmt: skip


def _forecast_dependence(engine: TrainedEngine, data: ForecastSet) -> pd.DataFrame | None:
    """The forecast errors' correlations on the validation rows (None without any)."""
    va = data.split == "val"
    if not va.any():
        return None
    forecast = engine.predict_values(data.X[va])
    actual = data.targets.loc[va, list(engine.forecast_items)].reset_index(drop=True)
    return forecast_dependence(forecast, actual, engine.forecast_items, engine.quantiles)


def train_engine(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    config: ModelConfig | None = None,
    runner: Runner | None = None,
) -> tuple[TrainedEngine, TrainingData]:
    """Fit every outcome model, calibrator and forecast; return the engine and its data.

    Outcomes with too few training events get the fallback member or are switched off
    (:func:`small_outcome_plan`); they are listed in ``TrainedEngine.small_outcomes`` and in
    the selection table (``note``). Switched-off outcomes are not in ``engine.outcomes`` nor in
    the returned data; if every outcome is switched off, :class:`NotEnoughDataError`.

    The independent fits — each outcome of this engine and of its glucose pattern engines
    (:func:`train_pattern_engines`), each forecast item — run through ``runner`` in one
    ``map`` (default :class:`LocalRunner`: here, in order); the rows are prepared before and
    the engines assembled after, here. Every runner gives the same engine.
    """
    config = config or ModelConfig()
    runner = runner or LocalRunner()
    T = config.split.test_year or last_labelled_year(labels)
    plan = plan_engine(features, labels, config, T)
    subs = plan_pattern_engines(features, labels, config, T)
    tasks = [*plan.tasks, *(t for sub in subs.values() for t in sub.tasks)]
    results = runner.map(fit_task, tasks)
    n = len(plan.tasks)
    engine, lrs = build_engine(plan, results[:n])
    engine.feature_reference = drift_reference(features, plan.names, T)
    engine.pattern_engines = _pattern_engines(subs, results[n:])
    patterns = {p: masked_columns(features, items) for p, items in GLUCOSE_PATTERNS.items()
                if items}  # fmt: skip
    if config.masking.anchor:
        anchor_pattern_engines(engine, plan.sets, patterns)
    if config.forecast_stack and engine.forecast_items:
        # after the anchors: a sub-model keeps the member's mean risk, the stack's concern is
        # who is at risk (and on the training rows its forecasts are in-sample)
        tables = [fit_forecast_stacks(engine, plan.sets)]
        for p, sub in engine.pattern_engines.items():
            sub.forecast_source = engine  # its rows' forecasts are the main engine's
            tables.append(fit_forecast_stacks(sub, subs[p].sets, label=p))
        tables = [t for t in tables if len(t)]
        engine.forecast_stack_table = (pd.concat(tables, ignore_index=True) if tables
                                       else pd.DataFrame())  # fmt: skip
    if config.masking.ward_rate:
        # last: the level of the risks as scored, stacks and anchors included
        engine.ward_rate_table = match_ward_rate(engine, plan.sets)
    items = {name: masked_columns(features, g) for name, g in config.masking.optional_items}
    return engine, TrainingData(T, plan.sets, plan.fset, lrs, patterns, items)


def fit_forecast_stacks(
    engine: TrainedEngine, sets: dict[str, OutcomeSet], label: str = "main"
) -> pd.DataFrame:
    """Fit each forecast-read outcome's stack on the validation rows its member scores
    (models.forecast_stack) and keep those that beat the member; the table of every fit
    (``engine``: ``label``, ``main`` or a sub-engine's glucose pattern)."""
    config, rows = engine.config, []
    fe = engine._forecaster()
    joint = fe.forecast_dependence is not None
    for o in forecast_outcomes(engine.outcomes, fe.forecast_items, joint=joint):
        s = sets.get(o)
        if s is None:
            continue
        Xva, yva = s.part("val")
        k = s.scored(Xva, yva)
        X, y = Xva[k], yva[k]
        if not len(y):
            continue
        forecast = fe.predict_values(X, liability_items(o))
        ell = chance_log_odds(forecast, o, fe.quantiles, row_context(X, engine.feature_names),
                              fe.forecast_dependence)  # fmt: skip
        z = engine._member_raw(X, o)
        m = engine.members.get(o)
        # the member's risk before a sub-engine's anchor shift, which applies after the stack
        member_risk = (engine.calibrators[o] if m is None else m.calibrator)(z)
        stack, row = fit_forecast_stack(
            z, ell, y, member_risk, reference_forecast(forecast, liability_items(o), fe.quantiles),
            config.calibration, config.select_margin, config.forecast_stack_max_weight,
            config.min_events_fallback,
        )  # fmt: skip
        rows.append({"outcome": o, "engine": label, **row})
        if stack is not None:
            engine.forecast_stacks[o] = stack
    return pd.DataFrame(rows)


def anchor_pattern_engines(
    engine: TrainedEngine, sets: dict[str, OutcomeSet], masks: dict[str, pd.DataFrame]
) -> None:
    """Anchor each pattern sub-model's calibration-in-the-large to the main member.

    On the training and validation rows measured with both glucose items the sub-model,
    scoring them with its pattern's items masked, gets the log-odds shift (``risk_shift``)
    that makes its mean risk equal the main member's mean risk as measured: what an item adds
    is who is at risk, not how many — the mean over a population stays (law of total
    expectation). The shift needs no labels, so it replaces the noise of a second
    calibration-in-the-large on the same few validation events (a 10,000-resident ward has
    about 20) by the main one's. Training rows are included because a mean risk rests on its
    few high-risk residents: the validation year alone gave shifts that did not hold a year
    later.
    """
    names = engine.feature_names
    for p, sub in engine.pattern_engines.items():
        for o in sub.outcomes:
            s = sets.get(o)
            if s is None or s.rows is None or o not in engine.outcomes:
                continue
            fit = np.isin(s.split, ("train", "val"))
            X = s.X[fit]
            full = ~np.isnan(X[:, names.index("fpg")]) & ~np.isnan(X[:, names.index("hba1c")])
            if not full.any():
                continue
            rows = s.rows[fit][full]
            target = engine.predict_outcome(X[full], o, route=False).mean()
            p_sub = np.clip(sub.predict_outcome(masked_matrix(X[full], rows, masks[p], names), o),
                            1e-12, 1 - 1e-12)  # fmt: skip
            sub.risk_shift[o] = shift_to_mean(np.log(p_sub / (1 - p_sub)), target)


def match_ward_rate(engine: TrainedEngine, sets: dict[str, OutcomeSet]) -> pd.DataFrame:
    """Shift each outcome that glucose pattern engines also score to the ward's rate: one
    log-odds shift, added to the main engine and to every pattern engine of the outcome, makes
    its risk over the labelled rows that calibrate it — every glucose pattern, each row scored
    by the engine it is routed to — average their observed rate. Returns one row per shifted
    outcome: ``shift``, the ``years`` and the ``rows`` and ``events`` it rests on, and the
    ``events_fully_measured`` among them (what the level rested on before).

    Why: the main member is calibrated on the fully measured rows and the pattern engines are
    anchored to it, so the level of every risk rested on the events of those rows alone (on a
    10,000-resident ward 22-48 diabetes events over the training and validation years, a
    level off by ±20-30 % by chance). The rows of the other patterns carry as many events
    again; the sub-models still say who is at risk within a pattern, this says how many.

    Rows: the validation year; also the training years where every engine scoring the
    outcome uses the small-ward logistic member, whose calibration already rests on both
    (:func:`fit_fallback`): a tree member has seen its training rows.
    """
    subs = getattr(engine, "pattern_engines", None) or {}
    names = engine.feature_names
    out = []
    for o in engine.outcomes:
        scorers = [e for e in subs.values() if o in e.outcomes]
        s = sets.get(o)
        if not scorers or s is None:
            continue
        logistic = all(e.member(o) == "logistic" for e in (engine, *scorers))
        years = ("train", "val") if logistic else ("val",)
        rows = np.isin(s.split, years)
        X, y = s.X[rows], s.y[rows]
        if not 0 < y.sum() < len(y):
            continue
        p = np.clip(engine.predict_outcome(X, o), 1e-12, 1 - 1e-12)
        shift = shift_to_mean(np.log(p / (1 - p)), float(y.mean()))
        for e in (engine, *scorers):
            e.risk_shift[o] = e.risk_shift.get(o, 0.0) + shift
        full = glucose_pattern(X[:, names.index("fpg")], X[:, names.index("hba1c")]) == "both"
        out.append({"outcome": o, "shift": shift, "years": "+".join(years), "rows": len(y),
                    "events": int(y.sum()), "events_fully_measured": int(y[full].sum())})  # fmt: skip
    return pd.DataFrame(out)


def train_pattern_engines(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    config: ModelConfig,
    test_year: int,
    runner: Runner | None = None,
) -> dict[str, TrainedEngine]:
    """One engine per glucose pattern of ``config.masking.patterns`` for the outcomes of
    ``config.masking.submodels`` (pattern sub-models; models.config.MaskingConfig).

    The engine of a pattern is trained — members, selection, calibration, small-outcome
    rules as for the main engine, no forecasts — on every index row that measured the items
    the pattern keeps, with the items it lacks masked (features.masking.masked_columns:
    exactly the feature row of a checkup without them; the history before it is kept). So it
    learns the risk given what such a checkup measures from the whole ward, labels as they
    are, instead of from the few rows that happen to lack an item. A pattern without enough
    events for any outcome gets no engine (its rows keep the main one). :func:`train_engine`
    runs their fits in its own ``runner.map``, with the main engine's.
    """
    plans = plan_pattern_engines(features, labels, config, test_year)
    tasks = [t for plan in plans.values() for t in plan.tasks]
    return _pattern_engines(plans, (runner or LocalRunner()).map(fit_task, tasks))


def plan_pattern_engines(
    features: pd.DataFrame, labels: pd.DataFrame, config: ModelConfig, test_year: int
) -> dict[str, EnginePlan]:
    """The :class:`EnginePlan` of each pattern engine of :func:`train_pattern_engines`."""
    m = config.masking
    outcomes = tuple(o for o in config.outcomes if o in m.submodels)
    if not (m.enabled and outcomes and m.patterns):
        return {}
    sub_config = replace(
        config, outcomes=outcomes, forecasts=False,
        split=replace(config.split, test_year=test_year), masking=replace(m, submodels=()),
    )  # fmt: skip
    measured = {i: ~np.isnan(as_float(features[i])) for i in ("fpg", "hba1c")}
    out: dict[str, EnginePlan] = {}
    for p in m.patterns:
        lacks = GLUCOSE_PATTERNS[p]
        keep = np.ones(len(features), dtype=bool)
        for item, has in measured.items():
            if item not in lacks:
                keep &= has
        masked = masked_columns(features, lacks).loc[keep]
        f = features.loc[keep].copy()
        for c in masked.columns:
            f[c] = masked[c].to_numpy()
        try:
            out[p] = plan_engine(f, labels.loc[keep], sub_config, test_year)
        except NotEnoughDataError:
            continue
    return out


def _pattern_engines(plans: dict[str, EnginePlan], results: list) -> dict[str, TrainedEngine]:
    """The pattern engines from their plans and their tasks' results (all plans' tasks in
    order); a pattern whose fits lack data gets no engine."""
    out: dict[str, TrainedEngine] = {}
    results = iter(results)
    for p, plan in plans.items():
        part = [next(results) for _ in plan.tasks]
        try:
            out[p], _ = build_engine(plan, part)
        except NotEnoughDataError:
            continue
    return out
