"""The distribution a value forecast stands for (予測分布), and how its items' errors go together.

A forecast gives next year's value at three quantiles (p10 / p50 / p90). Read as a distribution
it is the piecewise normal through them, each side of the middle one its own spread, so the
three quantiles are reproduced exactly (:func:`normal_score`, :func:`quantile_value`). Items of
one checkup move together beyond what their forecasts say (waist, glycaemia and lipids share
adiposity): :func:`forecast_dependence` measures that as the correlations of their forecast
errors' normal scores on held-out rows, the Gaussian copula a joint chance is drawn from
(models.forecast_chance).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri

__all__ = [
    "MIN_PAIR_ROWS",
    "forecast_dependence",
    "forecast_quantiles",
    "normal_score",
    "quantile_columns",
    "quantile_value",
]

#: Fewest held-out rows with both values for a pair's correlation (else it is taken as 0).
MIN_PAIR_ROWS = 200


def quantile_columns(item: str, levels: Sequence[float]) -> list[str]:
    """The forecast columns of ``item`` at ``levels``: ``<item>_p10`` …"""
    return [f"{item}_p{round(a * 100):02d}" for a in levels]


def forecast_quantiles(forecast: pd.DataFrame, item: str, levels: Sequence[float]) -> np.ndarray:
    """``item``'s forecast quantiles (:func:`quantile_columns` at ``levels``) as rows × 3."""
    return forecast[quantile_columns(item, levels)].to_numpy(dtype="float64", na_value=np.nan)


def _spreads(q: np.ndarray, levels: Sequence[float]) -> tuple[float, np.ndarray, np.ndarray]:
    z_lo, z_mid, z_hi = ndtri(np.asarray(levels, dtype="float64"))
    with np.errstate(invalid="ignore"):
        up = np.maximum(q[:, 2] - q[:, 1], 1e-9) / (z_hi - z_mid)
        down = np.maximum(q[:, 1] - q[:, 0], 1e-9) / (z_mid - z_lo)
    return z_mid, up, down


def normal_score(q: np.ndarray, levels: Sequence[float], value: np.ndarray) -> np.ndarray:
    """Where ``value`` falls in the piecewise normal through the quantiles ``q`` (rows × 3, at
    ``levels``), as a standard normal score; NaN where either is."""
    z_mid, up, down = _spreads(q, levels)
    mid = q[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return z_mid + (value - mid) / np.where(value >= mid, up, down)


def quantile_value(q: np.ndarray, levels: Sequence[float], z: np.ndarray) -> np.ndarray:
    """The value at standard normal score ``z`` (rows × draws) of each row's piecewise normal:
    :func:`normal_score`'s inverse."""
    z_mid, up, down = _spreads(q, levels)
    dz = z - z_mid
    return q[:, 1:2] + dz * np.where(dz >= 0, up[:, None], down[:, None])


def forecast_dependence(
    forecast: pd.DataFrame, actual: pd.DataFrame, items: Sequence[str], levels: Sequence[float]
) -> pd.DataFrame:
    """The correlations of the items' forecast errors as normal scores (:func:`normal_score` of
    each next-year value in ``actual`` against its forecast, clipped to ±4), pairwise over the
    rows with both; a pair with fewer than :data:`MIN_PAIR_ROWS` such rows is taken as 0. Made
    positive definite (eigenvalues at least 1e-3), unit diagonal."""
    z = {}
    for i in items:
        v = pd.to_numeric(actual[i], errors="coerce").to_numpy("float64")
        z[i] = np.clip(normal_score(forecast_quantiles(forecast, i, levels), levels, v), -4, 4)
    r = pd.DataFrame(z).corr(min_periods=MIN_PAIR_ROWS).fillna(0.0).to_numpy()
    np.fill_diagonal(r, 1.0)
    w, v = np.linalg.eigh(r)
    r = (v * np.maximum(w, 1e-3)) @ v.T
    d = np.sqrt(np.diag(r))
    return pd.DataFrame(r / np.outer(d, d), index=list(items), columns=list(items))
