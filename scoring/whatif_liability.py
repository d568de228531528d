"""The what-if read through the value forecasts (閾値モデルによる効果): the chance that next
year's value crosses the outcome's cut, before and after the habit moves it.

An outcome is met when a measured item is at or beyond its cut at next year's checkup
(data.outcomes; metabolic syndrome: waist over its cut and two of three components). The engine
forecasts each item's next-year value (p10/p50/p90, quantile LightGBM trained on every checkup),
and the lab response (models.lab_response) says how far a change of habit moves the item within
a year. So under a scenario next year's distribution of item k moves by the same δ_k, and the
chance of the outcome goes from P to P′. Its log-odds change ``logit(P′) − logit(P)`` is the
what-if of a threshold outcome, learned from the items' values over every checkup, where the
classifier's response to a moved lab is learned from its events only (a few hundred on a small
ward) and flattened by the trees (docs/models.md §The what-if through the forecasts).

A forecast's distribution is the piecewise normal through its three quantiles (each side of
the middle one its own spread), so the quantiles are reproduced exactly. The items of one
outcome are taken as independent given this year's checkup: their joint spread is not
forecast, and the figure used is the change of log-odds, not the level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logit, ndtr, ndtri

from data.judgements import criterion_cut
from data.outcomes import OUTCOME_DECLARATIONS

__all__ = [
    "Cut",
    "chance",
    "exceedance",
    "forecast_outcomes",
    "liability_items",
    "log_odds_change",
]

_EPS = 1e-12


@dataclass(frozen=True)
class Cut:
    """Next year's ``item`` at or beyond ``value`` (below it where ``below``)."""

    item: str
    value: float
    below: bool = False


#: Outcome → its criteria as cuts, from the outcome declarations. Metabolic syndrome (waist
#: and two of three components) is not read this way: through the forecasts, taken as
#: independent, its what-if came out 1.4-2.6 × the true change on the demo ward
#: (docs/models.md §The what-if through the forecasts).
_ANY_CUTS: dict[str, tuple[Cut, ...]] = {}
for _o in OUTCOME_DECLARATIONS:
    if _o.rule == "any":
        _ANY_CUTS[_o.name] = tuple(
            Cut(c.item, cut, jv.op != ">=") for c in _o.criteria for jv, cut in [criterion_cut(c)]
        )


def liability_items(outcome: str) -> tuple[str, ...]:
    """The items whose forecasts :func:`chance` reads for ``outcome`` (none if it cannot)."""
    return tuple(dict.fromkeys(c.item for c in _ANY_CUTS.get(outcome, ())))


def forecast_outcomes(outcomes: Sequence[str], forecast_items: Sequence[str]) -> tuple[str, ...]:
    """The outcomes whose every defining item has a value forecast (the others keep the trees'
    what-if: CKD's urine protein, for one, is not forecast)."""
    have = set(forecast_items)
    return tuple(o for o in outcomes if liability_items(o) and set(liability_items(o)) <= have)


def exceedance(
    q: np.ndarray, levels: Sequence[float], cut: float | np.ndarray, below: bool = False
) -> np.ndarray:
    """P(next value ≥ ``cut``) (``below``: P(next value < ``cut``)) under the piecewise normal
    through the forecast quantiles ``q`` (rows × 3, at ``levels``); NaN where ``q`` is."""
    z_lo, z_mid, z_hi = ndtri(np.asarray(levels, dtype="float64"))
    lo, mid, hi = q[:, 0], q[:, 1], q[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.maximum(hi - mid, 1e-9) / (z_hi - z_mid)
        down = np.maximum(mid - lo, 1e-9) / (z_mid - z_lo)
        z = z_mid + (cut - mid) / np.where(cut >= mid, up, down)
    p = ndtr(z)
    return p if below else 1.0 - p


def _forecast(forecast: pd.DataFrame, item: str, levels, move: np.ndarray | None) -> np.ndarray:
    cols = [f"{item}_p{round(a * 100):02d}" for a in levels]
    q = forecast[cols].to_numpy(dtype="float64", na_value=np.nan)
    return q if move is None else q + np.nan_to_num(np.asarray(move, dtype="float64"))[:, None]


def chance(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    moves: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The chance that next year's checkup meets ``outcome`` from the value forecasts
    (``forecast``: ``<item>_pNN`` at ``levels``), each item moved by ``moves[item]``; NaN
    where none of its items is forecast."""
    moves = moves or {}

    def p(item: str, cut, below: bool = False) -> np.ndarray:
        return exceedance(_forecast(forecast, item, levels, moves.get(item)), levels, cut, below)

    miss = np.ones(len(forecast))
    known = np.zeros(len(forecast), dtype=bool)
    for c in _ANY_CUTS[outcome]:
        pc = p(c.item, c.value, c.below)
        ok = ~np.isnan(pc)
        miss = np.where(ok, miss * (1.0 - pc), miss)
        known |= ok
    return np.where(known, 1.0 - miss, np.nan)


def log_odds_change(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    moves: Mapping[str, np.ndarray],
) -> np.ndarray:
    """Per row: ``logit(P′) − logit(P)`` of :func:`chance` with and without ``moves``; NaN where
    it cannot be read (no defining item forecast, or a chance of 0 either way)."""
    before = chance(forecast, outcome, levels)
    after = chance(forecast, outcome, levels, moves)
    change = logit(np.clip(after, _EPS, 1 - _EPS)) - logit(np.clip(before, _EPS, 1 - _EPS))
    return np.where((before > _EPS) & ~np.isnan(after), change, np.nan)
