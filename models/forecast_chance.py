"""The chance that next year's checkup meets an outcome, read through the value forecasts
(予測値からみた該当の見込み).

An outcome is met when a measured item is at or beyond its cut at next year's checkup
(data.outcomes; metabolic syndrome: waist over its cut and two of three components). The engine
forecasts each item's next-year value (p10/p50/p90, quantile LightGBM trained on every checkup).
A forecast's distribution is the piecewise normal through its three quantiles
(models.forecast_distribution), so the quantiles are reproduced exactly. For an outcome met by
any one of its items the items are taken as independent given this year's checkup
(:func:`chance`). Metabolic syndrome needs the waist *and* two of three components, which share
adiposity: its chance is read through the items' joint spread (:func:`joint_chance`): the
normal scores of next year's values against their forecasts are correlated (a Gaussian copula),
with the correlations of the validation year's forecast errors
(models.forecast_distribution.forecast_dependence), over a fixed set of quasi-random draws
shared by every resident and scenario, each draw judged by the checkup's own rule
(data.judgements.metabolic_syndrome), the waist's chance over its cut taken exactly given
each draw of the others.

Two readers use it: the what-if (scoring.whatif_liability: the chance before and after a habit
moves the items) and the forecast stack of an outcome's risk (models.forecast_stack).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri
from scipy.stats import qmc

from data.judgements import MHLW_R6, JudgementValues, criterion_cut, metabolic_syndrome
from data.outcomes import OUTCOME_DECLARATIONS
from models.dipstick_chance import MOVED_DIRECTION, DipstickChance
from models.forecast_distribution import (
    forecast_quantiles,
    normal_score,
    quantile_columns,
    quantile_value,
)

__all__ = [
    "JOINT_DRAWS",
    "JOINT_OUTCOMES",
    "METS_ITEMS",
    "Cut",
    "chance",
    "exceedance",
    "forecast_outcomes",
    "item_cut",
    "joint_chance",
    "liability_items",
    "moved_items",
    "outcome_chance",
]

#: Metabolic syndrome's measured items (data.judgements.metabolic_syndrome), read jointly.
METS_ITEMS = ("waist_cm", "sbp", "dbp", "tg", "hdl", "fpg", "hba1c")
#: This year's answers the MetS rule reads beside the items (sex; medication meets a component).
METS_CONTEXT = ("sex", "q_med_bp", "q_med_glucose", "q_med_lipid")
#: Quasi-random draws of the items beside the waist per resident for a joint chance.
JOINT_DRAWS = 256


@dataclass(frozen=True)
class Cut:
    """Next year's ``item`` at or beyond ``value`` (below it where ``below``)."""

    item: str
    value: float
    below: bool = False


#: Outcome → its criteria as cuts, from the outcome declarations. Metabolic syndrome (waist
#: and two of three components) is not read this way but jointly (:func:`joint_chance`):
#: through its items' cuts taken as independent its what-if came out 1.4-2.6 × the true change
#: on the demo ward (docs/models.md §The what-if through the forecasts).
_ANY_CUTS: dict[str, tuple[Cut, ...]] = {}
for _o in OUTCOME_DECLARATIONS:
    if _o.rule == "any":
        _ANY_CUTS[_o.name] = tuple(
            Cut(c.item, cut, jv.op != ">=") for c in _o.criteria for jv, cut in [criterion_cut(c)]
        )


#: Outcomes whose chance is read jointly (:func:`joint_chance`).
JOINT_OUTCOMES = frozenset(o.name for o in OUTCOME_DECLARATIONS if o.rule == "metabolic_syndrome")


def liability_items(outcome: str) -> tuple[str, ...]:
    """The items whose forecasts :func:`chance` reads for ``outcome`` (none if it cannot)."""
    if outcome in JOINT_OUTCOMES:
        return METS_ITEMS
    return tuple(dict.fromkeys(c.item for c in _ANY_CUTS.get(outcome, ())))


def item_cut(item: str) -> float | None:
    """The first cut an outcome of the rule "any" puts on ``item`` (None: none)."""
    return next((c.value for cuts in _ANY_CUTS.values() for c in cuts if c.item == item), None)


def moved_items(outcome: str, chance_items: Sequence[str] = ()) -> tuple[str, ...]:
    """The items whose moves a what-if of ``outcome`` reads: its forecast items, and for one
    read through a dipstick model instead (``chance_items``), the items that model moves with
    (models.dipstick_chance.MOVED_DIRECTION)."""
    items = liability_items(outcome)
    if not set(items) & set(chance_items):
        return items
    return tuple(dict.fromkeys([*(i for i in items if i not in chance_items), *MOVED_DIRECTION]))


def forecast_outcomes(
    outcomes: Sequence[str],
    forecast_items: Sequence[str],
    joint: bool = False,
    chance_items: Sequence[str] = (),
) -> tuple[str, ...]:
    """The outcomes whose every defining item has a value forecast, or a chance model of its
    own (``chance_items``: CKD's urine protein, models.dipstick_chance); the others keep the
    trees' what-if. Metabolic syndrome only with ``joint`` (the engine carries its forecasts'
    dependence)."""
    have = set(forecast_items) | set(chance_items)
    readable = [o for o in outcomes if liability_items(o) and set(liability_items(o)) <= have]
    return tuple(o for o in readable if joint or o not in JOINT_OUTCOMES)


def exceedance(
    q: np.ndarray, levels: Sequence[float], cut: float | np.ndarray, below: bool = False
) -> np.ndarray:
    """P(next value ≥ ``cut``) (``below``: P(next value < ``cut``)) under the piecewise normal
    through the forecast quantiles ``q`` (rows × 3, at ``levels``); NaN where ``q`` is."""
    p = ndtr(normal_score(q, levels, np.broadcast_to(np.asarray(cut, "float64"), q[:, 1].shape)))
    return p if below else 1.0 - p


def _forecast(forecast: pd.DataFrame, item: str, levels, move: np.ndarray | None) -> np.ndarray:
    q = forecast_quantiles(forecast, item, levels)
    return q if move is None else q + np.nan_to_num(np.asarray(move, dtype="float64"))[:, None]


#: The rule's gate, taken exactly given the other items' draws (conditional Monte Carlo): no
#: resident's chance rests on how many draws happen to cross the waist's cut.
_GATE = "waist_cm"
_OTHERS = tuple(i for i in METS_ITEMS if i != _GATE)


def _draws(dependence: pd.DataFrame, n: int = JOINT_DRAWS) -> tuple[np.ndarray, np.ndarray, float]:
    """``n`` fixed quasi-random draws (n × :data:`_OTHERS`) of the other items' correlated
    normal scores; the waist's score given each draw is normal with the returned means (n)
    and standard deviation."""
    r = dependence.loc[list(METS_ITEMS), list(METS_ITEMS)].to_numpy(dtype="float64")
    rest = [METS_ITEMS.index(i) for i in _OTHERS]
    gate = METS_ITEMS.index(_GATE)
    r_rest, r_gate = r[np.ix_(rest, rest)], r[gate, rest]
    weights = np.linalg.solve(r_rest, r_gate)
    sd = float(np.sqrt(max(1.0 - r_gate @ weights, 1e-6)))
    u = qmc.Sobol(len(rest), scramble=True, seed=0).random(n)
    z = ndtri(np.clip(u, 1e-9, 1 - 1e-9)) @ np.linalg.cholesky(r_rest).T
    return z, z @ weights, sd


def joint_chance(
    forecast: pd.DataFrame,
    context: pd.DataFrame,
    levels: Sequence[float],
    dependence: pd.DataFrame,
    moves: Mapping[str, np.ndarray] | None = None,
    chunk: int = 4096,
    values: JudgementValues = MHLW_R6,
) -> np.ndarray:
    """The chance that next year's checkup meets metabolic syndrome (its items correlated by
    ``dependence``, each moved by ``moves[item]``), with this year's sex and medication answers
    (``context``, the rows of ``forecast``): over :data:`JOINT_DRAWS` draws of the other six
    items, the chance that the waist is over its cut given the draw, times whether
    data.judgements.metabolic_syndrome finds two components in it (the waist set over its
    cut). An item without a forecast is missing in every draw, as in a checkup without it;
    NaN without a waist forecast."""
    moves = moves or {}
    z, gate_mean, gate_sd = _draws(dependence)
    n, s = len(forecast), len(z)
    out = np.full(n, np.nan)
    ctx = {c: pd.to_numeric(context[c], errors="coerce").to_numpy("float64") if c in context
           else np.full(n, np.nan) for c in METS_CONTEXT}  # fmt: skip
    # a sex not recorded: the waist counts only over both sexes' cuts (the rule's own reading)
    male, female = values.waist_male.guidance, values.waist_female.guidance
    cut = np.select([ctx["sex"] == 1, ctx["sex"] == 2], [male, female], max(male, female))

    def moved(item: str, rows: slice) -> np.ndarray:
        move = np.asarray(moves[item])[rows] if item in moves else None
        return _forecast(forecast.iloc[rows], item, levels, move)

    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        draws = {c: np.repeat(v[rows], s) for c, v in ctx.items()}
        for k, item in enumerate(_OTHERS):
            q = moved(item, rows)
            draws[item] = quantile_value(q, levels, np.broadcast_to(z[:, k], (len(q), s))).ravel()
        draws[_GATE] = np.full(len(draws["sex"]), np.inf)  # over any cut: the components decide
        two = (metabolic_syndrome(pd.DataFrame(draws)) == 1).to_numpy(bool, na_value=False)
        z_cut = normal_score(moved(_GATE, rows), levels, cut[rows])
        over = ndtr((gate_mean[None, :] - z_cut[:, None]) / gate_sd)
        out[rows] = (over * two.reshape(-1, s)).mean(axis=1)
    return out


def chance(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    moves: Mapping[str, np.ndarray] | None = None,
    context: pd.DataFrame | None = None,
    dipstick: DipstickChance | None = None,
) -> np.ndarray:
    """The chance that next year's checkup meets ``outcome`` from the value forecasts
    (``forecast``: ``<item>_pNN`` at ``levels``), each item moved by ``moves[item]``; NaN
    where none of its items is forecast. A dipstick cut (CKD's urine protein) is read through
    ``dipstick`` (models.dipstick_chance) on this year's features ``context``, moved by the
    moves of the items it reads."""
    moves = moves or {}

    def p(item: str, cut, below: bool = False) -> np.ndarray:
        if dipstick is not None and item == dipstick.item and context is not None:
            return expit(dipstick.log_odds(context, moves))
        if not any(c in forecast for c in quantile_columns(item, levels)):
            return np.full(len(forecast), np.nan)
        return exceedance(_forecast(forecast, item, levels, moves.get(item)), levels, cut, below)

    miss = np.ones(len(forecast))
    known = np.zeros(len(forecast), dtype=bool)
    for c in _ANY_CUTS[outcome]:
        pc = p(c.item, c.value, c.below)
        ok = ~np.isnan(pc)
        miss = np.where(ok, miss * (1.0 - pc), miss)
        known |= ok
    return np.where(known, 1.0 - miss, np.nan)


def outcome_chance(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    moves: Mapping[str, np.ndarray] | None = None,
    context: pd.DataFrame | None = None,
    dependence: pd.DataFrame | None = None,
    dipstick: DipstickChance | None = None,
) -> np.ndarray:
    """:func:`chance` (a dipstick cut through ``dipstick`` on ``context``), or for metabolic
    syndrome :func:`joint_chance` (with ``context`` and ``dependence``)."""
    if outcome in JOINT_OUTCOMES:
        return joint_chance(forecast, context, levels, dependence, moves)
    return chance(forecast, outcome, levels, moves, context, dipstick)
