"""Outcome labels (発症ラベル) per index checkup, training sets, and the follow-up report.

For the index row of person *p* in fiscal year *t* and each outcome of docs/contract.md §Outcomes
(data.columns.OUTCOMES), with horizon *h* (1-3 fiscal years):

* ``y_<outcome>`` = 1 if the outcome is met at any checkup in fiscal years t+1 … t+h;
  0 if there is at least one checkup in the horizon at which the outcome is evaluable
  (data.judgements.outcome_evaluable) and the outcome is met at none
  (``require_full_follow_up``: also needs an evaluable checkup in year t+h);
  <NA> otherwise — no follow-up checkup, follow-up not evaluable, or the horizon reaches past
  the last fiscal year in the data (``in_window`` False: censored by the data, not by the
  resident, and kept out of the attendance count).
* ``at_risk_<outcome>`` = False when the index checkup already meets the outcome (excluded for
  that outcome); by default also when the index checkup cannot judge it (not known to be free).

Attendance bias (受診者バイアス): residents who skip next year's checkup are left out of training,
and they are not a random subset. :func:`follow_up_report` counts them per outcome and, on a
synthetic cohort, compares their true risk with that of the residents who came back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data import judgements as jd
from data.columns import OUTCOMES
from data.validate import RANGES
from features.build import as_float, index_row_mask, sort_checkups
from features.declarations import KEYS, feature_names

__all__ = [
    "LabelConfig",
    "build_labels",
    "follow_up_report",
    "label_columns",
    "training_set",
]


@dataclass(frozen=True, slots=True)
class LabelConfig:
    """How labels are judged.

    ``horizon_years``: fiscal years after the index year in which the outcome counts (1-3;
    default 1 = next year's checkup; docs/domain.md §Labels).
    ``require_full_follow_up``: a 0 needs an evaluable checkup in the horizon's last year.
    ``at_risk_requires_evaluable``: an index row that cannot judge the outcome is not at risk.
    ``nonfasting_tg_cut``: passed to data.judgements (MetS judgement).
    """

    horizon_years: int = 1
    require_full_follow_up: bool = False
    at_risk_requires_evaluable: bool = True
    nonfasting_tg_cut: float = 175.0

    def __post_init__(self) -> None:
        if self.horizon_years not in (1, 2, 3):
            raise ValueError(f"horizon_years must be 1, 2 or 3, got {self.horizon_years!r}")


def label_columns() -> list[str]:
    """Columns of :func:`build_labels` after the keys."""
    cols = ["in_window", "follow_up"]
    for o in OUTCOMES:
        cols += [f"y_{o}", f"at_risk_{o}"]
    return cols


def build_labels(
    checkups: pd.DataFrame,
    config: LabelConfig | None = None,
    last_fiscal_year: int | None = None,
) -> pd.DataFrame:
    """Labels per index row (same rows and order as features.build.build_features).

    Columns: pseudonym, fiscal_year, exam_date, ``in_window`` (t + h ≤ last fiscal year in
    ``checkups``), ``follow_up`` (any checkup in t+1 … t+h), then per outcome ``y_<outcome>``
    (nullable Int8: 1 / 0 / <NA>) and ``at_risk_<outcome>`` (bool).

    ``last_fiscal_year``: the data's last fiscal year when ``checkups`` are only some
    residents' (the Spark engine's groups); default: the last in ``checkups``.
    """
    config = config or LabelConfig()
    h = config.horizon_years
    df = sort_checkups(checkups)
    met = jd.outcomes_met(df, nonfasting_tg_cut=config.nonfasting_tg_cut)
    evaluable = jd.outcome_evaluable(df, nonfasting_tg_cut=config.nonfasting_tg_cut)
    implausible = met & ~_met_by_plausible_values(df, met, config)
    fy = as_float(df["fiscal_year"]).astype("int64")
    last_fy = int(fy.max()) if len(fy) else 0
    if last_fiscal_year is not None:
        last_fy = int(last_fiscal_year)

    # Per (person, fiscal year): any checkup met / evaluable.
    per_year = pd.DataFrame(
        {"pseudonym": df["pseudonym"].to_numpy(dtype=object), "fy": fy}
        | {f"m_{o}": (met[o] & ~implausible[o]).to_numpy() for o in OUTCOMES}
        | {f"u_{o}": implausible[o].to_numpy() for o in OUTCOMES}
        | {f"e_{o}": evaluable[o].to_numpy() for o in OUTCOMES}
    )
    per_year = per_year.groupby(["pseudonym", "fy"], sort=False).any().reset_index()

    keep = index_row_mask(df)
    idx = df.loc[keep, list(KEYS)].reset_index(drop=True)
    index = pd.DataFrame({"pseudonym": idx["pseudonym"].to_numpy(dtype=object), "fy": fy[keep]})
    n = len(index)
    any_met = {o: np.zeros(n, dtype=bool) for o in OUTCOMES}
    any_implausible = {o: np.zeros(n, dtype=bool) for o in OUTCOMES}
    any_eval = {o: np.zeros(n, dtype=bool) for o in OUTCOMES}
    last_eval = {o: np.zeros(n, dtype=bool) for o in OUTCOMES}
    follow_up = np.zeros(n, dtype=bool)
    for k in range(1, h + 1):
        ahead = index.assign(fy=index["fy"] + k).merge(
            per_year, on=["pseudonym", "fy"], how="left", indicator=True, validate="1:1"
        )
        follow_up |= (ahead["_merge"] == "both").to_numpy()
        for o in OUTCOMES:
            m = ahead[f"m_{o}"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            e = ahead[f"e_{o}"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            any_met[o] |= m
            any_implausible[o] |= ahead[f"u_{o}"].astype("boolean").fillna(False).to_numpy(bool)
            any_eval[o] |= e
            if k == h:
                last_eval[o] = e
    in_window = index["fy"].to_numpy() + h <= last_fy

    out: dict[str, object] = {k: idx[k] for k in KEYS}
    out["in_window"] = in_window
    out["follow_up"] = follow_up & in_window
    met_idx, eval_idx = met.loc[keep], evaluable.loc[keep]
    for o in OUTCOMES:
        negative = any_eval[o] & ~any_met[o] & ~any_implausible[o]
        if config.require_full_follow_up:
            negative &= last_eval[o]
        y = np.where(any_met[o], 1.0, np.where(negative, 0.0, np.nan))
        y[~in_window] = np.nan
        mask = np.isnan(y)
        out[f"y_{o}"] = pd.arrays.IntegerArray(np.where(mask, 0, y).astype("int8"), mask)
        at_risk = ~met_idx[o].to_numpy(dtype=bool)
        if config.at_risk_requires_evaluable:
            at_risk &= eval_idx[o].to_numpy(dtype=bool)
        out[f"at_risk_{o}"] = at_risk
    frame = pd.DataFrame(out)
    frame["pseudonym"] = frame["pseudonym"].astype("string")
    frame["fiscal_year"] = frame["fiscal_year"].astype("Int16")
    return frame[[*KEYS, *label_columns()]]


def _met_by_plausible_values(
    df: pd.DataFrame, met: pd.DataFrame, config: LabelConfig
) -> pd.DataFrame:
    """``met`` judged again without the values ingest flagged as outside their plausible
    range (``soft_flags``, data.validate ``RANGES``): a checkup met only through such a value
    (a γ-GT of 1500 keyed for 15.00) does not count as an event."""
    if "soft_flags" not in df:
        return met
    flags = df["soft_flags"].astype("string")
    rows = flags.notna().to_numpy()
    if not rows.any():
        return met
    flagged = flags[rows]
    sub = df.loc[rows].copy()
    for item in RANGES:
        if item in sub:
            out = flagged.str.contains(rf"(?:^|;){re.escape(item)}(?:;|$)").to_numpy(bool)
            if out.any():
                sub[item] = sub[item].mask(out)
    again = met.copy()
    again.loc[rows] = jd.outcomes_met(sub, nonfasting_tg_cut=config.nonfasting_tg_cut).to_numpy()
    return again


def _check_outcome(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")


def training_set(
    features: pd.DataFrame, labels: pd.DataFrame, outcome: str
) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """(X, y, keys) for one outcome: at-risk index rows with a known label.

    ``X`` holds exactly the declared features (declared dtypes), ``y`` is int8 0/1 and ``keys``
    (pseudonym, fiscal_year, exam_date) lines up row by row (for temporal / grouped splits).
    """
    _check_outcome(outcome)
    on = ["pseudonym", "fiscal_year"]
    lab = labels[[*on, f"y_{outcome}", f"at_risk_{outcome}"]]
    merged = features.merge(lab, on=on, how="inner", validate="1:1")
    if len(merged) != len(features) or len(merged) != len(labels):
        raise ValueError(
            f"features ({len(features)} rows) and labels ({len(labels)} rows) are not built "
            "from the same checkups: their index rows differ"
        )
    y_all = merged[f"y_{outcome}"]
    use = (merged[f"at_risk_{outcome}"] & y_all.notna()).to_numpy(dtype=bool)
    rows = merged.loc[use].reset_index(drop=True)
    X = rows[feature_names()]
    y = rows[f"y_{outcome}"].astype("int8").rename(f"y_{outcome}")
    return X, y, rows[list(KEYS)]


def _enrolled_next_year(lab: pd.DataFrame, enrollment: pd.DataFrame) -> np.ndarray:
    """True where the person was an NHI member for the whole fiscal year t+1 (資格継続)."""
    rows = pd.DataFrame(
        {
            "row": np.arange(len(lab)),
            "pseudonym": lab["pseudonym"].to_numpy(dtype=object),
            "start": pd.to_datetime(
                (lab["fiscal_year"].astype("int64") + 1).astype(str) + "-04-01"
            ),
        }
    )
    rows["end"] = rows["start"] + pd.DateOffset(years=1) - pd.Timedelta(days=1)
    enr = enrollment[["pseudonym", "enrolled_from", "enrolled_until"]].astype({"pseudonym": object})
    m = rows.merge(enr, on="pseudonym", how="inner")
    covers = (m["enrolled_from"] <= m["start"]) & (
        m["enrolled_until"].isna() | (m["enrolled_until"] >= m["end"])
    )
    out = np.zeros(len(lab), dtype=bool)
    out[m.loc[covers.to_numpy(), "row"].to_numpy()] = True
    return out


def follow_up_report(
    labels: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    enrollment: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per outcome, what happened to the index rows (受診継続と受診者バイアス).

    Counted over index rows whose horizon lies inside the data (``in_window``):
    ``index_rows``; ``at_risk``; ``with_follow_up`` (at risk, label known: used in training);
    ``without_follow_up`` (at risk, no checkup in the horizon: left out of training);
    ``not_evaluable`` (at risk, follow-up exists but cannot judge the outcome: left out);
    ``share_without_follow_up``; ``event_rate`` (mean label where known).

    ``truth`` (synthetic cohorts only): columns pseudonym, fiscal_year, ``p_true_<outcome>``
    (truth.csv with person_id pseudonymised). Adds ``p_true_with_follow_up`` and
    ``p_true_without_follow_up`` (mean true risk of the two at-risk groups) and their ratio —
    how much the training population understates (ratio > 1) or overstates the risk.

    ``enrollment`` (the store's, pseudonymised): splits ``without_follow_up`` into
    ``without_follow_up_left_nhi`` (not a member for the whole of fiscal year t+1: moved,
    turned 75, died…) and ``without_follow_up_skipped`` (still a member, did not attend) — only
    the latter is attendance in the strict sense; with truth, ``p_true_skipped`` is their mean
    true risk.
    """
    lab = labels.loc[labels["in_window"].to_numpy(dtype=bool)]
    if truth is not None:
        keep = ["pseudonym", "fiscal_year", *[c for c in truth if c.startswith("p_true_")]]
        t = truth[keep].astype({"pseudonym": "string", "fiscal_year": "Int16"})
        lab = lab.merge(t, on=["pseudonym", "fiscal_year"], how="left", validate="1:1")
    enrolled = None if enrollment is None else _enrolled_next_year(lab, enrollment)
    rows = []
    for o in OUTCOMES:
        at_risk = lab[f"at_risk_{o}"].to_numpy(dtype=bool)
        known = lab[f"y_{o}"].notna().to_numpy()
        fu = lab["follow_up"].to_numpy(dtype=bool)
        with_fu = at_risk & known
        without = at_risk & ~fu
        r = {
            "outcome": o,
            "index_rows": len(lab),
            "at_risk": int(at_risk.sum()),
            "with_follow_up": int(with_fu.sum()),
            "without_follow_up": int(without.sum()),
            "not_evaluable": int((at_risk & fu & ~known).sum()),
            "share_without_follow_up": float(without.sum() / max(at_risk.sum(), 1)),
            "event_rate": float(lab.loc[with_fu, f"y_{o}"].astype("float64").mean())
            if with_fu.any()
            else np.nan,
        }
        if enrolled is not None:
            r["without_follow_up_left_nhi"] = int((without & ~enrolled).sum())
            r["without_follow_up_skipped"] = int((without & enrolled).sum())
        col = f"p_true_{o}"
        if truth is not None and col in lab:
            p = lab[col].astype("float64").to_numpy()
            r["p_true_with_follow_up"] = float(np.nanmean(p[with_fu])) if with_fu.any() else np.nan
            r["p_true_without_follow_up"] = (
                float(np.nanmean(p[without])) if without.any() else np.nan
            )
            r["p_true_ratio_without_vs_with"] = (
                r["p_true_without_follow_up"] / r["p_true_with_follow_up"]
            )
            if enrolled is not None:
                skipped = without & enrolled
                r["p_true_skipped"] = float(np.nanmean(p[skipped])) if skipped.any() else np.nan
        rows.append(r)
    return pd.DataFrame(rows)
