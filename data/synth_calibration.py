"""Compare a synthetic bundle with its NDB FY2021 targets (厚生労働省 第9回NDBオープンデータ).

:func:`calibration_report` evaluates all attended checkups of a bundle by sex × 5-year age band
(年度末年齢) and lines them up with the national means and threshold prevalences of
``data/reference/ndb_japan/``. :func:`incidence_report` gives the year-to-year incidence
of outcomes among people free of them (for the anchors of docs/domain.md §Calibration anchors).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from data.columns import OUTCOMES
from data.judgements import outcomes_met
from data.normalise import age_at_fiscal_year_end, fiscal_year
from data.synth import ndb

__all__ = ["MEAN_ITEMS", "PREVALENCE_ITEMS", "calibration_report", "incidence_report"]

#: NDB means item (table set) → canonical column
MEAN_ITEMS: dict[tuple[str, str], str] = {
    ("BMI", "A"): "bmi",
    ("waist", "A"): "waist_cm",
    ("sbp", "A"): "sbp",
    ("dbp", "A"): "dbp",
    ("triglycerides", "A"): "tg",
    ("hdl", "A"): "hdl",
    ("ldl", "A"): "ldl",
    ("ast", "A"): "ast",
    ("alt", "A"): "alt",
    ("ggt", "A"): "ggt",
    ("fasting_glucose", "A"): "fpg",
    ("hba1c", "A"): "hba1c",
    ("egfr", "B"): "egfr",
}

Cond = Callable[[pd.Series], pd.Series]


def _ge(x: float) -> Cond:
    return lambda s: s >= x


def _lt(x: float) -> Cond:
    return lambda s: s < x


def _eq(x: float) -> Cond:
    return lambda s: s == x


#: NDB threshold indicator → (canonical column, condition)
PREVALENCE_ITEMS: dict[str, tuple[str, Cond]] = {
    "BMI>=25": ("bmi", _ge(25)),
    "BMI>=30": ("bmi", _ge(30)),
    "BMI<18.5": ("bmi", _lt(18.5)),
    "waist>=85": ("waist_cm", _ge(85)),
    "waist>=90": ("waist_cm", _ge(90)),
    "SBP>=130": ("sbp", _ge(130)),
    "SBP>=140": ("sbp", _ge(140)),
    "SBP>=160": ("sbp", _ge(160)),
    "DBP>=85": ("dbp", _ge(85)),
    "DBP>=90": ("dbp", _ge(90)),
    "TG>=150": ("tg", _ge(150)),
    "HDL<40": ("hdl", _lt(40)),
    "LDL>=140": ("ldl", _ge(140)),
    "LDL>=160": ("ldl", _ge(160)),
    "FPG>=100": ("fpg", _ge(100)),
    "FPG>=110": ("fpg", _ge(110)),
    "FPG>=126": ("fpg", _ge(126)),
    "HbA1c>=5.6": ("hba1c", _ge(5.6)),
    "HbA1c>=6.0": ("hba1c", _ge(6.0)),
    "HbA1c>=6.5": ("hba1c", _ge(6.5)),
    "HbA1c>=8.0": ("hba1c", _ge(8.0)),
    "AST>=31": ("ast", _ge(31)),
    "ALT>=31": ("alt", _ge(31)),
    "GGT>=51": ("ggt", _ge(51)),
    "urine_protein>=+-": ("urine_protein", _ge(2)),
    "urine_protein>=1+": ("urine_protein", _ge(3)),
    "eGFR<60 (set B)": ("egfr", _lt(60)),
    "eGFR<45 (set B)": ("egfr", _lt(45)),
    "on_antihypertensive_med": ("q_med_bp", _eq(1)),
    "on_glucose_lowering_med_or_insulin": ("q_med_glucose", _eq(1)),
    "on_lipid_lowering_med": ("q_med_lipid", _eq(1)),
    "current_smoker": ("q_smoking", _eq(1)),
    "drinks_daily": ("q_alcohol_freq", _eq(1)),
}


def _with_band(checkups: pd.DataFrame) -> pd.DataFrame:
    df = checkups.copy()
    df["fiscal_year"] = fiscal_year(df["exam_date"])
    age = age_at_fiscal_year_end(df["birth_date"], df["fiscal_year"]).to_numpy(dtype=float)
    band = np.clip((age - 40) // 5, 0, 6).astype(int)
    df["age_band"] = np.asarray(ndb.BANDS, dtype=object)[band]
    df["sexl"] = np.where(df["sex"].to_numpy(dtype=float) == 1, "M", "F")
    return df


def calibration_report(bundle) -> pd.DataFrame:
    """Synthetic vs NDB per sex × age band: columns ``item, kind, sex, age_band, target,
    synthetic, diff, n`` (``kind`` = ``mean`` or ``prevalence``; ``diff`` = synthetic − target;
    ``n`` = checkups with the item measured). Accepts a bundle or a checkups DataFrame."""
    checkups = bundle if isinstance(bundle, pd.DataFrame) else bundle.checkups
    df = _with_band(checkups)
    rows = []
    means = ndb.means()
    for (item, tset), col in MEAN_ITEMS.items():
        vals = pd.to_numeric(df[col], errors="coerce").astype(float)
        g = vals.groupby([df["sexl"], df["age_band"]])
        mean, cnt = g.mean(), g.count()
        m = means[(means["item"] == item) & (means["table_set"] == tset)]
        for s_code, s in ((1, "M"), (2, "F")):
            for band in ndb.BANDS:
                t = m[(m["sex"] == s_code) & (m["age_band"] == band)]["weighted_mean"]
                rows.append(
                    (
                        col,
                        "mean",
                        s,
                        band,
                        float(t.iloc[0]),
                        mean.get((s, band), np.nan),
                        int(cnt.get((s, band), 0)),
                    )
                )
    prev = ndb.prevalences()
    for ind, (col, cond) in PREVALENCE_ITEMS.items():
        vals = pd.to_numeric(df[col], errors="coerce").astype(float)
        ok = vals.notna()
        hit = cond(vals) & ok
        g = pd.DataFrame({"hit": hit, "ok": ok}).groupby([df["sexl"], df["age_band"]]).sum()
        p = prev[prev["indicator"] == ind]
        for s_code, s in ((1, "M"), (2, "F")):
            for band in ndb.BANDS:
                t = float(p[(p["sex"] == s_code) & (p["age_band"] == band)]["prevalence"].iloc[0])
                n = int(g["ok"].get((s, band), 0))
                syn = g["hit"].get((s, band), 0) / n if n else np.nan
                rows.append((ind, "prevalence", s, band, t, float(syn), n))
    out = pd.DataFrame(
        rows, columns=["item", "kind", "sex", "age_band", "target", "synthetic", "n"]
    )
    out["diff"] = out["synthetic"] - out["target"]
    return out[["item", "kind", "sex", "age_band", "target", "synthetic", "diff", "n"]]


def incidence_report(bundle) -> pd.DataFrame:
    """Year-to-year incidence among attendees free of each outcome who attend the next year.

    Rows: outcome × group (``all``, ``M``/``F`` × ``40-49``/``50-59``/``60-74``); columns
    ``outcome, group, at_risk, incident, rate``.
    """
    df = _with_band(bundle.checkups)
    df["age"] = age_at_fiscal_year_end(df["birth_date"], df["fiscal_year"]).astype(float)
    met = outcomes_met(df)
    met["person_id"] = df["person_id"].to_numpy()
    met["fiscal_year"] = df["fiscal_year"].astype(int).to_numpy()
    met["sexl"], met["age"] = df["sexl"].to_numpy(), df["age"].to_numpy()
    nxt = met[["person_id", "fiscal_year", *OUTCOMES]].copy()
    nxt["fiscal_year"] -= 1
    pair = met.merge(nxt, on=["person_id", "fiscal_year"], suffixes=("", "_next"))
    ages = pd.cut(pair["age"], [39, 49, 59, 74], labels=["40-49", "50-59", "60-74"])
    rows = []
    for o in OUTCOMES:
        free = ~pair[o]
        y = pair.loc[free, o + "_next"]
        rows.append((o, "all", int(free.sum()), int(y.sum()), float(y.mean())))
        grp = pair.loc[free].groupby([pair.loc[free, "sexl"], ages[free]], observed=True)
        for (s, a), g in grp[o + "_next"]:
            rows.append((o, f"{s} {a}", len(g), int(g.sum()), float(g.mean())))
    return pd.DataFrame(rows, columns=["outcome", "group", "at_risk", "incident", "rate"])
