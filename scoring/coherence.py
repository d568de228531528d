"""Whether a resident's risk and value forecasts tell the same story (数字の整合性).

A letter prints the risk of its outcome and a table of next-year value forecasts (p10-p90).
Both come from separate models (a calibrated classifier; quantile regressions), so they can
disagree. Two disagreements a reader would notice, per resident and outcome:

* ``risk_high_values_below``: risk ≥ ``high`` while every defining item's forecast p90 stays
  on the normal side of its 受診勧奨判定値 — the table says "you will not get there", the
  sentence says "you probably will". Only checked for outcomes whose every defining item
  (data.outcomes) has a forecast in the scores (diabetes: HbA1c, FPG; hypertension: SBP, DBP;
  liver: ALT, γ-GT); where an unforecast item can meet the outcome (dyslipidemia: non-HDL;
  CKD: urine protein; metabolic syndrome: a combination) the table cannot contradict a high
  risk.
* ``risk_low_values_above``: risk < ``low`` while some defining item's forecast p10 is already
  beyond its cut — the table says "almost surely", the sentence says "unlikely".

The risk is the validated figure that chose the resident (discrimination and calibration are
measured on the test year); the forecast is context. So where they disagree the letter keeps
the risk and withholds the forecast table (kenshin.annual sets ``forecast_withheld``; the
renderer obeys and notes it in the manifest), and every run counts the disagreements over all
scored residents (``run.json`` ``forecast_conflicts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.judgements import JudgementValue, criterion_cut
from data.outcomes import OUTCOME_DECLARATIONS

__all__ = ["CONFLICT_KINDS", "DEFINING_ITEMS", "DefiningItem", "conflict_counts", "conflicts"]

CONFLICT_KINDS = ("risk_high_values_below", "risk_low_values_above")


@dataclass(frozen=True)
class DefiningItem:
    """A forecast item whose crossing of ``cut`` (in ``judgement``'s direction) meets an outcome."""

    item: str
    judgement: JudgementValue
    cut: float


#: Outcome → its defining items, as the outcome declarations (data.outcomes) define them;
#: TG uses the fasting cut (the higher). Rule-based outcomes (MetS) have none.
DEFINING_ITEMS: dict[str, tuple[DefiningItem, ...]] = {
    o.name: tuple(DefiningItem(c.item, *criterion_cut(c)) for c in o.criteria)
    for o in OUTCOME_DECLARATIONS
    if o.criteria
}


def _quantile(scores: pd.DataFrame, item: str, q: str) -> np.ndarray:
    col = f"{item}_{q}"
    if col not in scores:
        return np.full(len(scores), np.nan)
    return pd.to_numeric(scores[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def conflicts(scores: pd.DataFrame, high: float = 0.40, low: float = 0.10) -> pd.DataFrame:
    """Per scored resident (rows of ``scores``) and outcome with a ``risk_<outcome>`` column:
    ``""`` or the kind of disagreement (:data:`CONFLICT_KINDS`), one column per outcome.

    An item's likely-worst forecast is its p90 where high is bad and its p10 where low is bad
    (eGFR); its likely-best forecast is the other end.
    """
    out = {}
    for outcome, items in DEFINING_ITEMS.items():
        if f"risk_{outcome}" not in scores:
            continue
        # "High risk, but no forecast reaches it" only when every defining item is forecast.
        complete = all(f"{d.item}_p10" in scores and f"{d.item}_p90" in scores for d in items)
        risk = pd.to_numeric(scores[f"risk_{outcome}"], errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
        reach = np.zeros(len(scores), dtype=bool)  # some item's likely-worst value meets it
        sure = np.zeros(len(scores), dtype=bool)  # some item's likely-best value meets it
        known = np.zeros(len(scores), dtype=bool)
        for d in items:
            worst, best = ("p90", "p10") if d.judgement.op == ">=" else ("p10", "p90")
            w, b = _quantile(scores, d.item, worst), _quantile(scores, d.item, best)
            known |= ~np.isnan(w)
            reach |= d.judgement.meets(w, d.cut)
            sure |= d.judgement.meets(b, d.cut)
        kind = np.full(len(scores), "", dtype=object)
        if complete:
            kind[(risk >= high) & known & ~reach] = CONFLICT_KINDS[0]
        kind[(risk < low) & sure] = CONFLICT_KINDS[1]
        out[outcome] = kind
    return pd.DataFrame(out, index=scores.index)


def conflict_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{outcome: {kind: residents}}`` of a :func:`conflicts` table (every kind listed)."""
    return {o: {k: int((table[o] == k).sum()) for k in CONFLICT_KINDS} for o in table.columns}
