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

How the chance is read (each forecast as a piecewise normal; the items of an outcome met by
any one of them as independent, metabolic syndrome's jointly): models.forecast_chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import logit

from models.dipstick_chance import DipstickChance
from models.forecast_chance import outcome_chance

__all__ = ["log_odds_change"]

_EPS = 1e-12


def log_odds_change(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    moves: Mapping[str, np.ndarray],
    context: pd.DataFrame | None = None,
    dependence: pd.DataFrame | None = None,
    before: np.ndarray | None = None,
    dipstick: DipstickChance | None = None,
) -> np.ndarray:
    """Per row: ``logit(P′) − logit(P)`` of :func:`outcome_chance` with and without ``moves``
    (``before``: P, when the caller has it for these rows already); NaN where it cannot be
    read (no defining item forecast, or a chance of 0 either way). ``dipstick``: the
    engine's urine dipstick model (models.dipstick_chance), for CKD."""
    if before is None:
        before = outcome_chance(forecast, outcome, levels, None, context, dependence, dipstick)
    after = outcome_chance(forecast, outcome, levels, moves, context, dependence, dipstick)
    change = logit(np.clip(after, _EPS, 1 - _EPS)) - logit(np.clip(before, _EPS, 1 - _EPS))
    return np.where((before > _EPS) & ~np.isnan(after), change, np.nan)
