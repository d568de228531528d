"""Features of an index checkup at which some items were not measured (未測定項目).

Municipalities differ in what they measure: some facilities take fasting glucose only, some
HbA1c only, non-fasting draws have no fasting glucose, detailed items (creatinine, …) are taken
only when triggered. :func:`masked_columns` answers "what would the feature row look like had
these items not been measured at the index checkup?" exactly as
:func:`features.build.build_features` would build it from such a checkup:

* the latest value, ``<item>_change`` and its history levels (``urine_protein_max3`` …) are
  missing; ``<item>_recent`` is the latest value measured before (the previous index row's
  ``<item>_recent``, when that row is the checkup just before);
* ``<item>_slope`` is the slope over the earlier checkups of the window only: with the default
  3-checkup window, the previous index row's change divided by its ``years_since_previous``
  (when that row is the checkup just before; otherwise — two checkups in the index year, or a
  2-checkup window — missing);
* judgements that read the item (``mets_level``, ``guidance_intensity``, ``flag_*``) are judged
  again (data.judgements) on the index checkup's remaining values, which the feature row holds
  under their canonical names; so are the answers' derived features (alcohol g/day, risky
  drinking, current smoker).

Models use it to learn the risk given what is measured (models.train masking augmentation) and
to evaluate every glucose pattern on the same residents (models.run).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from data import judgements as jd
from data.columns import MEASUREMENT_COLUMNS, QUESTIONNAIRE_COLUMNS
from features.build import (
    DAYS_PER_YEAR,
    GUIDANCE_LEVEL_CODES,
    METS_LEVELS,
    FeatureConfig,
    _derived,  # the builder's own derivation, so a masked row is derived exactly alike
    as_float,
)
from features.declarations import (
    CHANGE_ITEMS,
    DECLARATIONS,
    HISTORY_LEVELS,
    RECENT_ITEMS,
    feature_names,
)

__all__ = [
    "GLUCOSE_PATTERNS",
    "MASKABLE_ITEMS",
    "affected_features",
    "glucose_pattern",
    "masked_columns",
]

#: Glucose measurement patterns of an index checkup → the items a pattern lacks.
GLUCOSE_PATTERNS: dict[str, tuple[str, ...]] = {
    "both": (),
    "fpg_only": ("hba1c",),
    "hba1c_only": ("fpg",),
    "neither": ("fpg", "hba1c"),
}

#: Items :func:`masked_columns` can mask: measured values, dipsticks, questionnaire answers.
MASKABLE_ITEMS = (*MEASUREMENT_COLUMNS, "urine_glucose", "urine_protein", *QUESTIONNAIRE_COLUMNS)
_JUDGED = ("mets_level", "guidance_intensity")
_DERIVED = ("alcohol_g_per_day", "risky_drinking", "current_smoker")


def glucose_pattern(fpg: np.ndarray, hba1c: np.ndarray) -> np.ndarray:
    """Each row's glucose pattern (a key of :data:`GLUCOSE_PATTERNS`) from its values."""
    f, a = ~np.isnan(np.asarray(fpg, "float64")), ~np.isnan(np.asarray(hba1c, "float64"))
    return np.where(f & a, "both", np.where(f, "fpg_only", np.where(a, "hba1c_only", "neither")))


def affected_features(items: Iterable[str]) -> list[str]:
    """Declared features computed from any of ``items`` (their ``sources``), in feature order."""
    items = set(items)
    return [d.name for d in DECLARATIONS if items & set(d.sources)]


def _previous_rows(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows sorted by person and exam date (``order``), each sorted row's previous one
    (``prev``), whether that previous index row is the checkup just before this one (``ok``:
    same person, dated ``years_since_previous`` earlier; not an earlier same-year checkup) and
    each sorted row's ``years_since_previous`` (``gap``)."""
    pid = pd.factorize(features["pseudonym"].astype("string"), sort=False)[0]
    years = features["exam_date"].to_numpy("datetime64[ns]").astype("int64") / (
        86_400e9 * DAYS_PER_YEAR
    )
    order = np.lexsort((years, pid))
    p, y = pid[order], years[order]
    gap = as_float(features["years_since_previous"])[order]
    prev = np.r_[0, np.arange(len(order) - 1)]
    ok = np.r_[False, p[1:] == p[:-1]] & (np.abs((y - gap) - y[prev]) < 1e-6)
    return order, prev, ok, gap


def _previous_slopes(features: pd.DataFrame, items: list[str], window: int) -> pd.DataFrame:
    """``<item>_slope`` per row as the builder gives it when the index value is missing."""
    out = pd.DataFrame(np.nan, index=features.index, columns=[f"{i}_slope" for i in items])
    if window < 3 or not items or not len(features):
        return out
    order, prev, ok, gap = _previous_rows(features)
    prev_gap = gap[prev]
    for item in items:
        change = as_float(features[f"{item}_change"])[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = change[prev] / prev_gap
        slope = np.where(ok & (prev_gap > 1e-12), slope, np.nan)
        col = np.empty(len(order))
        col[order] = slope
        out[f"{item}_slope"] = col
    return out


def _previous_values(features: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    """Each row's columns ``items`` at the checkup just before it (the previous index row, when
    it is that checkup): its ``<item>_recent`` is what this row's reads when the index value is
    missing."""
    out = pd.DataFrame(np.nan, index=features.index, columns=items)
    if not items or not len(features):
        return out
    order, prev, ok, _ = _previous_rows(features)
    for item in items:
        value = as_float(features[item])[order]
        col = np.empty(len(order))
        col[order] = np.where(ok, value[prev], np.nan)
        out[item] = col
    return out


def masked_columns(
    features: pd.DataFrame,
    items: Iterable[str],
    rows: np.ndarray | None = None,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """The features computed from ``items`` (float64, NaN = missing) for every row of
    ``features``, as the builder gives them had ``items`` not been measured at the index
    checkup of ``rows`` (bool mask, default every row); other rows keep their values.

    ``features``: a whole build_features frame (every index row of the persons concerned: the
    slope reads the previous index row). ``config``: the FeatureConfig the frame was built with.
    """
    config = config or FeatureConfig()
    items = list(dict.fromkeys(items))
    bad = [i for i in items if i not in MASKABLE_ITEMS]
    if bad:
        raise ValueError(f"cannot mask {bad}; maskable: {MASKABLE_ITEMS}")
    cols = affected_features(items)
    out = pd.DataFrame({c: as_float(features[c]) for c in cols}, index=features.index)
    r = np.ones(len(features), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if not r.any():
        return out
    names = set(feature_names())
    for item in items:
        if item in names:
            out.loc[r, item] = np.nan
    history = [i for i in items if i in CHANGE_ITEMS]
    slopes = _previous_slopes(features, history, config.slope_window)
    for item in history:
        out.loc[r, f"{item}_change"] = np.nan
        out.loc[r, f"{item}_slope"] = slopes.loc[r, f"{item}_slope"]
    for name, item, _ in HISTORY_LEVELS:
        if item in items:
            out.loc[r, name] = np.nan
    recent = [i for i in items if i in RECENT_ITEMS]
    if recent:
        before = _previous_values(features, [f"{i}_recent" for i in recent])
        for item in recent:
            out.loc[r, f"{item}_recent"] = before.loc[r, f"{item}_recent"]
    judged = [c for c in cols if c in _JUDGED or c in _DERIVED or c.startswith("flag_")]
    if judged:
        checkup = features.loc[r, [c for c in features.columns if c in names]].copy()
        checkup[[i for i in items if i in checkup.columns]] = np.nan
        if "mets_level" in judged:
            mets = as_float(
                jd.metabolic_syndrome(checkup, nonfasting_tg_cut=config.nonfasting_tg_cut)
            )
            out.loc[r, "mets_level"] = pd.Series(mets).map(METS_LEVELS).to_numpy("float64")
        if "guidance_intensity" in judged:
            level = jd.stratify(checkup, config.glucose_rule).astype("object")
            out.loc[r, "guidance_intensity"] = level.map(GUIDANCE_LEVEL_CODES).to_numpy("float64")
        flags = [c for c in judged if c.startswith("flag_")]
        if flags:
            f = jd.threshold_flags(checkup)
            for c in flags:
                out.loc[r, c] = as_float(f[c])
        if any(c in _DERIVED for c in judged):
            d = _derived(checkup)
            for c in judged:
                if c in _DERIVED:
                    out.loc[r, c] = d[c]
    return out
