"""The chance that next year's urine dipstick reaches a cut (尿蛋白の見込み), and how the items
a habit moves move it.

A dipstick result is an ordinal reading (− ± + ++ +++), not a value with a spread, so it gets
no quantile forecast. Its chance of reaching the outcome's cut next year (CKD: protein (+)) is a
logistic model of this year's checkup, fitted on the training rows that are below the cut now
(the rows a CKD risk is asked of): the reading itself and its recent maximum, blood pressure,
glycaemia, eGFR, age, sex and BMI. Proteinuria follows blood pressure and glycaemia and falls
with kidney function (日本腎臓学会 CKD診療ガイド), so the coefficients of the items a what-if
moves (SBP, DBP, HbA1c, fasting glucose; eGFR) are bounded to that direction: a habit that
lowers blood pressure or raises eGFR never raises the chance. A what-if moves the model's
log-odds by Σ β·move (:meth:`DipstickChance.log_odds`), the same liability reading as an
item's forecast moved by the lab response (models.forecast_chance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

__all__ = [
    "DIPSTICK_ITEM",
    "DIPSTICK_TERMS",
    "MOVED_DIRECTION",
    "DipstickChance",
    "fit_dipstick_chance",
]

#: The dipstick reading with a chance model (an ordinal code: 1 −, 2 ±, 3 +, 4 ++, 5 +++).
DIPSTICK_ITEM = "urine_protein"

#: Feature terms of the model: (feature, transform). ``at_least_k``: the reading ≥ k;
#: ``below_k``: min(value − k, 0) (eGFR under 60 counts more per unit).
DIPSTICK_TERMS: tuple[tuple[str, str], ...] = (
    ("urine_protein", "at_least_2"),
    ("urine_protein_max3", "at_least_3"),
    ("sbp", "value"),
    ("dbp", "value"),
    ("hba1c", "value"),
    ("fpg", "value"),
    ("egfr", "value"),
    ("egfr", "below_60"),
    ("age", "value"),
    ("sex", "male"),
    ("bmi", "value"),
)
#: The items a what-if moves and the sign their coefficients are bounded to (+1: more of the
#: item, more proteinuria; −1: less).
MOVED_DIRECTION: dict[str, int] = {"sbp": 1, "dbp": 1, "hba1c": 1, "fpg": 1, "egfr": -1}
#: Fewest events (next year at or over the cut) to fit the model on by default; fewer: no
#: model (training passes models.config ``min_events_fallback``, also 20).
MIN_EVENTS = 20
#: Ridge penalty on the standardised coefficients (the intercept is free).
_RIDGE = 1.0


def _term(x: np.ndarray, transform: str) -> np.ndarray:
    if transform == "value":
        return x
    if transform == "male":
        return np.where(np.isnan(x), np.nan, (x == 1).astype("float64"))
    kind, k = transform.rsplit("_", 1)
    if kind == "at_least":
        return np.where(np.isnan(x), np.nan, (x >= float(k)).astype("float64"))
    return np.minimum(x - float(k), 0.0)  # below_k


def _design(column) -> np.ndarray:
    """The terms' matrix, ``column(feature)`` giving a feature's values as floats."""
    return np.column_stack([_term(column(f), t) for f, t in DIPSTICK_TERMS])


def _frame_column(frame: pd.DataFrame):
    def column(f: str) -> np.ndarray:
        if f not in frame:
            return np.full(len(frame), np.nan)
        return pd.to_numeric(frame[f], errors="coerce").to_numpy("float64", na_value=np.nan)

    return column


@dataclass(frozen=True)
class DipstickChance:
    """A fitted dipstick model: next year's ``item`` ≥ ``cut`` given this year's checkup."""

    item: str
    cut: float
    intercept: float
    coef: np.ndarray  # per DIPSTICK_TERMS, in the terms' own units
    fill: np.ndarray  # per term: the training median, for a missing value
    events: int
    rows: int

    def log_odds(
        self, context: pd.DataFrame, moves: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Log-odds of reaching the cut next year for the rows of ``context`` (this year's
        features), with each item of :data:`MOVED_DIRECTION` moved by ``moves[item]`` (a move
        changes every term of its item: eGFR's value and its part under 60). A missing value
        counts as the training median, and a move does not move it."""
        column = _frame_column(context)
        moves = moves or {}

        def moved(f: str) -> np.ndarray:
            x = column(f)
            if f in MOVED_DIRECTION and f in moves:
                x = x + np.nan_to_num(np.asarray(moves[f], "float64"))
            return x

        D = _design(moved)
        return self.intercept + np.where(np.isnan(D), self.fill[None, :], D) @ self.coef

    def table(self) -> list[dict]:
        """One row per term (feature, transform, coefficient), for the model card."""
        return [{"feature": f, "transform": t, "coef": float(c)}
                for (f, t), c in zip(DIPSTICK_TERMS, self.coef, strict=True)]  # fmt: skip


def fit_dipstick_chance(
    X: np.ndarray,
    names: Sequence[str],
    next_reading: np.ndarray,
    rows: np.ndarray,
    cut: float,
    item: str = DIPSTICK_ITEM,
    min_events: int = MIN_EVENTS,
) -> DipstickChance | None:
    """Fit on ``rows`` (a boolean mask of ``X``: the training rows) whose reading is below
    ``cut`` now and known next year (``next_reading``); None with fewer than ``min_events``
    events or without the features. Ridge-penalised maximum likelihood on
    standardised terms, the moved items' coefficients bounded to :data:`MOVED_DIRECTION`."""
    if any(f not in names for f, _ in DIPSTICK_TERMS):
        return None
    now = np.asarray(X[:, list(names).index(item)], "float64")
    nxt = np.asarray(next_reading, "float64")
    use = np.asarray(rows, bool) & ~np.isnan(nxt) & ~(now >= cut)
    y = (nxt[use] >= cut).astype("float64")
    events = int(y.sum())
    if events < min_events:
        return None
    rows_used = np.asarray(X[use], "float64")
    D = _design(lambda f: rows_used[:, list(names).index(f)])
    fill = np.array([np.nanmedian(c) if np.isfinite(c).any() else 0.0 for c in D.T])
    D = np.where(np.isnan(D), fill[None, :], D)
    mu, sd = D.mean(axis=0), D.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = (D - mu) / sd

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = w[0] + Z @ w[1:]
        nll = -(y * log_expit(eta) + (1 - y) * log_expit(-eta)).sum()
        grad_eta = expit(eta) - y
        g = np.r_[grad_eta.sum(), Z.T @ grad_eta + _RIDGE * w[1:]]
        return float(nll + 0.5 * _RIDGE * (w[1:] ** 2).sum()), g

    bounds = [(None, None)]
    for f, _ in DIPSTICK_TERMS:
        sign = MOVED_DIRECTION.get(f, 0)
        bounds.append((0.0, None) if sign > 0 else (None, 0.0) if sign < 0 else (None, None))
    start = np.zeros(Z.shape[1] + 1)
    start[0] = np.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6))
    fit = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    coef = fit.x[1:] / sd
    intercept = float(fit.x[0] - (coef * mu).sum())
    return DipstickChance(item, float(cut), intercept, coef, fill, events, int(use.sum()))
