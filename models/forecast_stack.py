"""An outcome's risk read together with its items' forecasts (予測値との統合: the forecast stack).

Every outcome but CKD is met when measured items cross their cuts at next year's checkup, and
the engine forecasts each of those items (models.forecast_chance: the chance ``P`` that next
year's checkup meets the outcome, read from the forecasts). The forecasts learn from every
checkup's values, the outcome's member from its events only (a few hundred on a small ward),
so on a 10,000-resident ward ``P`` ranks metabolic syndrome, liver and hypertension better than
the member does, while it is far too confident as a risk (docs/models.md §The forecast stack).

The stack scores ``s = (1 − w)·z + w·ℓ``: ``z`` the member's raw log-odds, ``ℓ = logit(P)``,
``w = g / (b + g)`` from a logistic fit ``σ(a + b·z + g·ℓ)`` on the validation year with
``b, g ≥ 0`` (a weight below zero would turn the member's medical direction around) and
``w ≤ forecast_stack_max_weight`` (0.75: the member keeps a quarter, and the habits it learned
stay in the explanations; a validation year of a few dozen events often gives it none, and
its ranking over the truth is no better for that). It is kept where the forecasts add to the
member beyond chance there (a likelihood-ratio test, χ²(1) at 0.05) and its validation AUC
beats the member's on the same rows (``select_margin``), and calibrated there like a member,
its mean risk then set to the member's on those rows: the forecasts add who is at risk, not
how many. It needs ``min_events_fallback`` (20) events on those rows, the fewest a small
outcome's member is fitted on (a dozen gave diabetes stacks that lost on the test year). A row
without the outcome's forecasts keeps the member. A glucose pattern's
sub-engine (a checkup without fasting glucose or HbA1c) gets its own stack the same way, on its
masked validation rows, reading the main engine's forecasts.

**Monotone.** ``P`` is not monotone in the declared features (the quantile forecasts carry no
constraints), so a what-if never re-runs the forecasts on the edited row: it reads the
unchanged row's forecasts moved by how far the scenario moved each item (``moved_from``), the
what-if through the forecasts (scoring.whatif_liability). A move towards lower risk cannot
raise ``P``, and ``w ≥ 0``, so the stack keeps the member's direction along any move from a
resident's own row. Two made-up rows scored on their own are not guaranteed that order.

**Explanations.** The stack's contributions are ``(1 − w)`` × the member's plus ``w`` × each
clinical item's share of ``ℓ − ℓ_ref`` (:func:`item_shares`; ``ℓ_ref``: the chance with every
item at its reference forecast, the validation year's median quantiles, into the bias), each
share credited to the item's first feature, so they still add up to the score by item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import chi2

from features.declarations import item_of
from models.calibration import Calibrator, fit_calibrator
from models.evaluate import auc_or_nan
from models.forecast_chance import METS_CONTEXT, liability_items, outcome_chance
from models.forecast_distribution import quantile_columns

__all__ = [
    "LR_CRITICAL",
    "ForecastStack",
    "chance_log_odds",
    "fit_forecast_stack",
    "item_shares",
    "players",
    "reference_forecast",
    "row_context",
]

_EPS = 1e-6  # the chance is clipped to [ε, 1 − ε] before its logit
#: The likelihood-ratio statistic the forecasts must add to the member: χ²(1) at 0.05.
LR_CRITICAL = float(chi2.ppf(0.95, 1))


@dataclass
class ForecastStack:
    """An outcome's stack: ``calibrator((1 − weight)·z + weight·ℓ)`` (module doc)."""

    weight: float
    calibrator: Calibrator
    #: item → its reference forecast (p10, p50, p90): the validation year's median quantiles
    reference: dict[str, tuple[float, ...]]
    val_auc: float
    member_val_auc: float
    val_rows: int


def row_context(X: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """This year's answers a joint chance reads beside the items (sex, medication), from the
    feature rows ``X``."""
    return pd.DataFrame({c: X[:, list(names).index(c)] for c in METS_CONTEXT if c in names})


def chance_log_odds(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    context: pd.DataFrame,
    dependence: pd.DataFrame | None,
    moves: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``logit`` of the forecasts' chance of ``outcome`` (clipped to [ε, 1 − ε]); NaN where
    it cannot be read."""
    p = outcome_chance(forecast, outcome, levels, moves, context, dependence)
    return logit(np.clip(p, _EPS, 1 - _EPS))


def players(outcome: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The outcome's forecast items by clinical item: (the feature a share is credited to,
    the items), in the order of :func:`models.forecast_chance.liability_items`."""
    groups: dict[str, list[str]] = {}
    for i in liability_items(outcome):
        groups.setdefault(item_of(i), []).append(i)
    return tuple((items[0], tuple(items)) for items in groups.values())


def reference_forecast(
    forecast: pd.DataFrame, items: Sequence[str], levels: Sequence[float]
) -> dict[str, tuple[float, ...]]:
    """Each item's median forecast quantiles over ``forecast``'s rows (sorted, so a piecewise
    normal)."""
    out = {}
    for i in items:
        cols = quantile_columns(i, levels)
        q = forecast[cols].to_numpy("float64")
        # an item a sub-engine's rows never have (masked): no reference, as the rows have none
        known = ~np.isnan(q).all(axis=0)
        med = np.full(len(cols), np.nan)
        med[known] = np.nanmedian(q[:, known], axis=0)
        out[i] = tuple(float(v) for v in np.sort(med))
    return out


def _with_reference(
    forecast: pd.DataFrame,
    reference: Mapping[str, tuple[float, ...]],
    items: Sequence[str],
    levels: Sequence[float],
) -> pd.DataFrame:
    f = forecast.copy()
    for i in items:
        for col, v in zip(quantile_columns(i, levels), reference[i], strict=True):
            # a row without the item stays without it: its reference is "not measured"
            f[col] = np.where(np.isnan(f[col].to_numpy("float64")), np.nan, v)
    return f


def item_shares(
    forecast: pd.DataFrame,
    outcome: str,
    levels: Sequence[float],
    reference: Mapping[str, tuple[float, ...]],
    context: pd.DataFrame,
    dependence: pd.DataFrame | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ℓ, ℓ_ref, shares (rows × :func:`players`)): each clinical item's share of
    ``ℓ − ℓ_ref`` (rows add up exactly).

    A share is the mean of the item's effect entering alone (every other item at its
    reference) and leaving last (every other item as forecast), which is its Shapley value
    when the outcome has one or two items; what the items do only together (metabolic
    syndrome's waist *and* two components) is then shared in proportion to those effects.
    ``2k + 2`` chances for ``k`` items, where exact Shapley values would need ``2^k``.
    """

    def ell(f: pd.DataFrame) -> np.ndarray:
        return chance_log_odds(f, outcome, levels, context, dependence)

    groups = players(outcome)
    every = [i for _, items in groups for i in items]
    now = ell(forecast)
    ref_all = _with_reference(forecast, reference, every, levels)
    ref = ell(ref_all)
    phi = np.zeros((len(forecast), len(groups)))
    for k, (_, items) in enumerate(groups):
        others = [i for i in every if i not in items]
        enter = ell(_with_reference(forecast, reference, others, levels)) - ref
        leave = now - ell(_with_reference(forecast, reference, items, levels))
        phi[:, k] = 0.5 * (enter + leave)
    phi = np.nan_to_num(phi)
    rest = (now - ref) - phi.sum(axis=1)
    size = np.abs(phi)
    total = size.sum(axis=1, keepdims=True)
    share = np.where(total > 0, size / np.where(total > 0, total, 1.0), 1.0 / len(groups))
    return now, ref, phi + share * rest[:, None]


def _fit_weights(
    z: np.ndarray, ell: np.ndarray, y: np.ndarray, with_forecasts: bool = True
) -> tuple[float, float, float]:
    """``(b, g, deviance)`` of the logistic fit ``σ(a + b·z + g·ℓ)``, ``b, g ≥ 0`` (maximum
    likelihood; ``g = 0`` without the forecasts)."""
    Z = np.column_stack([np.ones_like(z), z, ell])

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Z @ beta
        # log(1 + e^η) − y·η, and its gradient Zᵀ(σ(η) − y)
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta)), Z.T @ (expit(eta) - y)

    g_bound = (0, None) if with_forecasts else (0, 0)
    res = minimize(loss, np.array([logit(np.clip(y.mean(), 1e-6, 1 - 1e-6)), 0.5, 0.0]),
                   jac=True, method="L-BFGS-B", bounds=[(None, None), (0, None), g_bound])  # fmt: skip
    return float(res.x[1]), float(res.x[2]), 2.0 * float(res.fun)


def fit_forecast_stack(
    z: np.ndarray,
    ell: np.ndarray,
    y: np.ndarray,
    member_risk: np.ndarray,
    reference: dict[str, tuple[float, ...]],
    calibration: str,
    margin: float = 0.0,
    max_weight: float = 1.0,
    min_events: int = 0,
) -> tuple[ForecastStack | None, dict]:
    """The stack fitted on validation rows (``z`` the member's raw log-odds, ``ell`` the
    forecasts' log-odds, ``y`` the labels, ``member_risk`` the member's calibrated risk), its
    weight at most ``max_weight``, or None where it does not beat the member or the rows have
    fewer than ``min_events`` events; and its row of the run's table."""
    ok = ~np.isnan(ell) & ~np.isnan(z)
    z, ell, y, member_risk = z[ok], ell[ok], y[ok].astype("float64"), member_risk[ok]
    row = {"val_rows": int(ok.sum()), "val_events": int(y.sum()), "weight": np.nan,
           "val_auc_member": auc_or_nan(y, z), "val_auc_stack": np.nan, "lr_chi2": np.nan,
           "chosen": False}  # fmt: skip
    if not max(min_events, 1) <= y.sum() < len(y):
        return None, row
    b, g, deviance = _fit_weights(z, ell, y)
    if b + g <= 0:
        return None, row
    w = min(g / (b + g), max_weight)
    s = (1 - w) * z + w * ell
    lr = _fit_weights(z, ell, y, with_forecasts=False)[2] - deviance
    row.update(weight=w, val_auc_stack=auc_or_nan(y, s), lr_chi2=lr)
    # the forecasts must add to the member beyond chance (likelihood ratio, one parameter)
    # and rank the validation rows better
    if lr < LR_CRITICAL or not row["val_auc_stack"] > row["val_auc_member"] + margin:
        return None, row
    # the member's calibration-in-the-large is kept: it may rest on more years than this one
    cal = fit_calibrator(s, y, calibration).matching_mean(s, member_risk)
    row["chosen"] = True
    stack = ForecastStack(w, cal, reference, row["val_auc_stack"], row["val_auc_member"], len(y))
    return stack, row
