"""As-of feature rows (時点特徴量): one row per person and index checkup, from the past only.

For the index checkup of person *p* in fiscal year *t* every feature is computed from *p*'s
checkups with ``exam_date`` ≤ the index exam date — never from anything later — so a model
trained on these rows sees exactly what a scorer would see on the day of the checkup.

* latest values: the value measured *at the index checkup* (no carry-forward of older values:
  an item not measured this time is missing, and LightGBM handles missing);
* history: ``<item>_change`` = index value − value at the previous checkup; ``<item>_slope`` =
  least-squares slope per year over the last ``slope_window`` (≤3) checkups' non-missing values,
  against ``exam_date`` in years (≥2 points with distinct dates, else missing); history levels
  of noisy items (urine protein at the previous checkup and the highest of the last 3, eGFR's
  and the lipids' mean of the last 3: features.declarations ``HISTORY_LEVELS``);
  ``<item>_recent`` of HbA1c, fasting glucose and eGFR: the index value, else the latest
  measured before it (``RECENT_ITEMS``); ``n_prior_checkups``, ``years_since_previous``;
* judgements (data.judgements): メタボ判定 and 階層化 as ordered levels, 判定値 flags;
* derived: 純アルコール g/day (docs/domain.md §Alcohol and smoking), risky drinking, current smoker.

Index rows: when a person has two checkups in one fiscal year, both enter the history but only
the last one is an index row, so rows are unique on (pseudonym, fiscal_year).

Fully vectorised: rows are sorted by (pseudonym, exam_date) and history is read by shifting whole
arrays and masking where the person changes — no loop over persons or rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data import judgements as jd
from data.columns import MEASUREMENT_COLUMNS, QUESTIONNAIRE_COLUMNS
from features.declarations import (
    CHANGE_ITEMS,
    DECLARATIONS,
    HISTORY_LEVELS,
    KEYS,
    RECENT_ITEMS,
    feature_names,
)

__all__ = [
    "ALCOHOL_AMOUNT_GO",
    "ALCOHOL_DAYS_PER_WEEK",
    "FeatureConfig",
    "GUIDANCE_LEVEL_CODES",
    "METS_LEVELS",
    "alcohol_g_per_day",
    "as_float",
    "build_features",
    "index_row_mask",
    "sort_checkups",
    "to_matrix",
]

DAYS_PER_YEAR = 365.25

#: Q18 飲酒頻度 code → drinking days per week (band midpoints; quit / never → 0).
ALCOHOL_DAYS_PER_WEEK: dict[int, float] = {
    1: 7.0,  # 毎日
    2: 5.5,  # 週5-6日
    3: 3.5,  # 週3-4日
    4: 1.5,  # 週1-2日
    5: 2.0 * 7 / 30.4,  # 月1-3日
    6: 0.5 * 7 / 30.4,  # 月1日未満
    7: 0.0,  # やめた
    8: 0.0,  # 飲まない(飲めない)
}
#: Q19 飲酒量 code → 合 per drinking day (band midpoints; ≥5 合 taken as 5.5).
ALCOHOL_AMOUNT_GO: dict[int, float] = {1: 0.5, 2: 1.5, 3: 2.5, 4: 4.0, 5: 5.5}
GRAMS_PER_GO = 20.0
#: Health Japan 21 risky drinking, g pure alcohol per day (men, women).
RISKY_G_PER_DAY = {1: 40.0, 2: 20.0}

#: data.judgements.stratify level → feature level (`guidance_intensity`): ordered by the
#: intensity of the support; excluded (on medication) and undeterminable are not on that scale
#: and stay missing (features.declarations: a monotone feature needs an order).
GUIDANCE_LEVEL_CODES: dict[str, float] = {
    "active": 2.0,  # 積極的支援
    "motivational": 1.0,  # 動機付け支援
    "information": 0.0,  # 情報提供
    "excluded_medication": np.nan,  # 服薬中のため対象外
    "undeterminable": np.nan,  # 判定不能
}
#: メタボ判定 9N501 code → feature level (`mets_level`); 4 判定不能 stays missing.
METS_LEVELS: dict[int, float] = {1: 2.0, 2: 1.0, 3: 0.0, 4: np.nan}

_CODED_INPUTS = ("blood_draw_timing", "urine_glucose", "urine_protein", *QUESTIONNAIRE_COLUMNS)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Parameters of the feature builder (they change values, never the columns).

    ``slope_window``: checkups (index included) the slope is fitted over, 2-3.
    ``glucose_rule`` / ``nonfasting_tg_cut``: passed to data.judgements (階層化 / メタボ判定).
    ``validate``: check the output against features.schemas (the contract for models).
    """

    slope_window: int = 3
    glucose_rule: jd.GlucoseRule = "precedence"
    nonfasting_tg_cut: float = 175.0
    validate: bool = True

    def __post_init__(self) -> None:
        if self.slope_window not in (2, 3):
            raise ValueError(f"slope_window must be 2 or 3 checkups, got {self.slope_window}")

    @property
    def lookback(self) -> int:
        """Checkups (index included) a feature reads: the slope's window, and the three of the
        history levels (features.declarations ``HISTORY_LEVELS``); not ``<item>_recent``, which
        reaches back to the latest reading (scoring.score keeps it from the unchanged row)."""
        return max(self.slope_window, HISTORY_WINDOW)


def as_float(s: pd.Series) -> np.ndarray:
    """Series (nullable int, float, object) as float64 with NaN for missing."""
    if not pd.api.types.is_numeric_dtype(s.dtype):
        s = pd.to_numeric(s.astype("object"), errors="coerce")
    return s.to_numpy(dtype="float64", na_value=np.nan)


def _int_array(x: np.ndarray, dtype: str) -> pd.arrays.IntegerArray:
    """Float array with NaN → nullable integer array."""
    mask = np.isnan(x)
    values = np.where(mask, 0, x).astype(dtype.lower())
    return pd.arrays.IntegerArray(values, mask)


def sort_checkups(checkups: pd.DataFrame) -> pd.DataFrame:
    """Checkups sorted by (pseudonym, exam_date) with a fresh index; rejects duplicate keys.

    The order depends only on the keys, so shuffled input gives the same frame.
    """
    missing = [c for c in ("pseudonym", "exam_date", "fiscal_year") if c not in checkups.columns]
    if missing:
        raise ValueError(f"checkups lack key columns {missing}; expected the stored checkups")
    if checkups[["pseudonym", "exam_date"]].isna().any().any():
        raise ValueError("checkups have missing pseudonym or exam_date")
    order = np.lexsort(
        (
            checkups["exam_date"].to_numpy(dtype="datetime64[ns]"),
            pd.factorize(checkups["pseudonym"], sort=True)[0],
        )
    )
    out = checkups.iloc[order].reset_index(drop=True)
    pid = out["pseudonym"].to_numpy(dtype=object)
    dates = out["exam_date"].to_numpy(dtype="datetime64[ns]")
    dup = (pid[1:] == pid[:-1]) & (dates[1:] == dates[:-1])
    if dup.any():
        raise ValueError(
            f"{int(dup.sum())} duplicate (pseudonym, exam_date) rows; the store keeps one per day"
        )
    return out


def _person_ids(sorted_checkups: pd.DataFrame) -> np.ndarray:
    """Integer person codes, increasing along the sorted frame."""
    pid = sorted_checkups["pseudonym"].to_numpy(dtype=object)
    new = np.ones(len(pid), dtype=bool)
    new[1:] = pid[1:] != pid[:-1]
    return np.cumsum(new) - 1


def index_row_mask(sorted_checkups: pd.DataFrame, person: np.ndarray | None = None) -> np.ndarray:
    """True for the last checkup of each (person, fiscal year): the index rows."""
    person = _person_ids(sorted_checkups) if person is None else person
    fy = as_float(sorted_checkups["fiscal_year"])
    last = np.ones(len(person), dtype=bool)
    last[:-1] = (person[1:] != person[:-1]) | (fy[1:] != fy[:-1])
    return last


def _lag(x: np.ndarray, k: int, same: np.ndarray) -> np.ndarray:
    """``x`` shifted down by ``k`` rows, NaN where the row k above is another person."""
    out = np.full_like(x, np.nan, dtype="float64")
    out[k:] = x[:-k]
    out[~same] = np.nan
    return out


#: Checkups (index included) a history level reads.
HISTORY_WINDOW = 3


def _history_level(y: np.ndarray, same: dict[int, np.ndarray], how: str) -> np.ndarray:
    """``how`` ("previous", "max", "mean") of ``y`` over the index checkup and the two before it
    (measured values only), missing where ``y`` is (features.declarations HISTORY_LEVELS)."""
    lags = np.vstack([y] + [_lag(y, k, same[k]) for k in range(1, HISTORY_WINDOW)])
    if how == "previous":
        out = lags[1]
    elif how == "max":
        out = np.fmax.reduce(lags, axis=0)
    elif how == "mean":
        measured = ~np.isnan(lags)
        out = np.where(measured, lags, 0.0).sum(axis=0) / np.maximum(measured.sum(axis=0), 1)
    else:  # pragma: no cover - a declaration bug
        raise ValueError(f"unknown history level {how!r}")
    return np.where(np.isnan(y), np.nan, out)


def _latest_measured(y: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Each row's ``y`` if measured, else the person's latest measured value before it (rows
    sorted by person and date; features.declarations RECENT_ITEMS)."""
    at = np.maximum.accumulate(np.where(np.isnan(y), -1, np.arange(len(y))))
    seen = at >= 0
    out = np.full(len(y), np.nan)
    out[seen] = y[at[seen]]
    out[seen & (person[np.maximum(at, 0)] != person)] = np.nan
    return out


def _same_person(person: np.ndarray, k: int) -> np.ndarray:
    same = np.zeros(len(person), dtype=bool)
    same[k:] = person[k:] == person[:-k]
    return same


def _slope(ys: list[np.ndarray], xs: list[np.ndarray]) -> np.ndarray:
    """Least-squares slope of y on x over the non-missing points of each row (≥2 distinct x)."""
    n = np.zeros(len(ys[0]))
    sx = np.zeros_like(n)
    sy = np.zeros_like(n)
    sxx = np.zeros_like(n)
    sxy = np.zeros_like(n)
    for y, x in zip(ys, xs, strict=True):
        ok = ~np.isnan(y) & ~np.isnan(x)
        xo, yo = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
        n += ok
        sx += xo
        sy += yo
        sxx += xo * xo
        sxy += xo * yo
    with np.errstate(invalid="ignore", divide="ignore"):
        den = n * sxx - sx * sx
        slope = (n * sxy - sx * sy) / den
    return np.where((n >= 2) & (den > 1e-12), slope, np.nan)


def alcohol_g_per_day(freq: object, amount: object) -> np.ndarray:
    """純アルコール g/day from Q18 frequency and Q19 amount codes (docs/domain.md §Alcohol and smoking).

    days/week (band midpoint) × 合/day (band midpoint) × 20 g / 7. Quit (7) or never (8) → 0
    whatever the amount; a drinker with no amount answer → NaN.
    """
    f = np.asarray(pd.to_numeric(pd.Series(np.asarray(freq, dtype=object)), errors="coerce"))
    a = np.asarray(pd.to_numeric(pd.Series(np.asarray(amount, dtype=object)), errors="coerce"))
    days = pd.Series(f).map(ALCOHOL_DAYS_PER_WEEK).to_numpy(dtype="float64")
    go = pd.Series(a).map(ALCOHOL_AMOUNT_GO).to_numpy(dtype="float64")
    g = days * go * GRAMS_PER_GO / 7.0
    return np.where(days == 0.0, 0.0, g)


def _derived(df: pd.DataFrame) -> dict[str, np.ndarray]:
    g = alcohol_g_per_day(as_float(df["q_alcohol_freq"]), as_float(df["q_alcohol_amount"]))
    sex = as_float(df["sex"])
    cut = np.where(sex == 1, RISKY_G_PER_DAY[1], np.where(sex == 2, RISKY_G_PER_DAY[2], np.nan))
    with np.errstate(invalid="ignore"):
        risky = np.where(np.isnan(g) | np.isnan(cut), np.nan, (g >= cut).astype(float))
    smoke = as_float(df["q_smoking"])
    smoker = np.where(np.isnan(smoke), np.nan, (smoke == 1).astype(float))
    return {"alcohol_g_per_day": g, "risky_drinking": risky, "current_smoker": smoker}


def _assemble(df: pd.DataFrame, cols: dict, keep: np.ndarray) -> pd.DataFrame:
    """Index rows of the computed columns as one frame: keys, then declared features in order.

    Float features go into one preallocated 2-D block (no per-column consolidation copies).
    """
    floats = [d.name for d in DECLARATIONS if d.dtype == "float64"]
    block = np.empty((len(floats), int(keep.sum())))
    for i, name in enumerate(floats):
        block[i] = np.asarray(cols[name], dtype="float64")[keep]
    parts = [
        pd.DataFrame(
            {
                "pseudonym": df["pseudonym"].array[keep].astype("string"),
                "fiscal_year": df["fiscal_year"].array[keep].astype("Int16"),
                "exam_date": df["exam_date"].to_numpy(dtype="datetime64[ns]")[keep],
            }
        ),
        pd.DataFrame(block.T, columns=floats, copy=False),
        pd.DataFrame(
            {
                d.name: _int_array(np.asarray(cols[d.name], dtype="float64")[keep], d.dtype)
                for d in DECLARATIONS
                if d.dtype != "float64"
            }
        ),
    ]
    frame = pd.concat(parts, axis=1, copy=False)
    return frame[[*KEYS, *feature_names()]]


def build_features(
    checkups: pd.DataFrame, config: FeatureConfig | None = None, *, last_only: bool = False
) -> pd.DataFrame:
    """As-of feature rows, one per person and fiscal year (index checkup = last of that year).

    ``checkups``: the stored checkups (data.store.read_checkups), any row order.
    Returns the keys (pseudonym, fiscal_year, exam_date) then exactly the declared features
    (features.declarations), sorted by pseudonym and exam date; missing stays missing.
    ``last_only``: only each person's last row (scoring: the earlier years' rows, built and
    checked only to be dropped, were two thirds of a chunk's feature table); its values are
    the same as in the full table.
    """
    config = config or FeatureConfig()
    absent = [c for c in ("age", "sex", *MEASUREMENT_COLUMNS, *_CODED_INPUTS) if c not in checkups]
    if absent:
        raise ValueError(f"checkups lack columns {absent}; expected the stored checkup columns")
    df = sort_checkups(checkups)
    person = _person_ids(df)
    same = {k: _same_person(person, k) for k in (1, 2)}
    years = df["exam_date"].to_numpy(dtype="datetime64[ns]").astype("int64") / (
        86_400e9 * DAYS_PER_YEAR
    )

    cols: dict[str, np.ndarray | pd.api.extensions.ExtensionArray] = {}
    starts = np.flatnonzero(np.r_[True, person[1:] != person[:-1]])
    cols["age"] = as_float(df["age"])
    cols["sex"] = as_float(df["sex"])
    cols["n_prior_checkups"] = (np.arange(len(df)) - starts[person]).astype("float64")
    cols["years_since_previous"] = years - _lag(years, 1, same[1])

    values = {c: as_float(df[c]) for c in (*MEASUREMENT_COLUMNS, *_CODED_INPUTS)}
    cols.update(values)

    x_lags = [np.zeros(len(df))] + [
        _lag(years, k, same[k]) - years for k in range(1, config.slope_window)
    ]
    for item in CHANGE_ITEMS:
        y = values[item]
        y_lags = [y] + [_lag(y, k, same[k]) for k in range(1, config.slope_window)]
        cols[f"{item}_change"] = y - _lag(y, 1, same[1])
        cols[f"{item}_slope"] = _slope(y_lags, x_lags)
    for item in RECENT_ITEMS:
        y = values[item]
        cols[f"{item}_recent"] = _latest_measured(y, person)
    for name, item, how in HISTORY_LEVELS:
        cols[name] = _history_level(values[item], same, how)

    mets = as_float(jd.metabolic_syndrome(df, nonfasting_tg_cut=config.nonfasting_tg_cut))
    cols["mets_level"] = pd.Series(mets).map(METS_LEVELS).to_numpy(dtype="float64")
    level = jd.stratify(df, config.glucose_rule)
    cols["guidance_intensity"] = (
        level.astype("object").map(GUIDANCE_LEVEL_CODES).to_numpy(dtype="float64")
    )
    flags = jd.threshold_flags(df)
    for c in flags.columns:
        cols[c] = as_float(flags[c])
    cols.update(_derived(df))

    keep = index_row_mask(df, person)
    if last_only:
        keep &= np.r_[person[1:] != person[:-1], True]
    frame = _assemble(df, cols, keep)
    if config.validate:
        from data.schema_check import validated
        from features.schemas import FEATURES_SCHEMA

        frame = validated(FEATURES_SCHEMA, frame)
    return frame


def to_matrix(features: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Declared features as a float64 matrix (NaN = missing; codes stay integer-valued): what
    every model is fitted on and scores."""
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise ValueError(f"features lack declared columns {missing[:5]}…; rebuild the features")
    return np.column_stack([features[n].to_numpy(dtype="float64", na_value=np.nan) for n in names])
