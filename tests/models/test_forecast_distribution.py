"""The distribution a value forecast stands for (models.forecast_distribution): the piecewise
normal reproduces its quantiles both ways, and the forecast errors' dependence is measured as
it was made."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from models.forecast_distribution import (
    MIN_PAIR_ROWS,
    forecast_dependence,
    normal_score,
    quantile_value,
)

LEVELS = (0.1, 0.5, 0.9)


def test_the_normal_score_and_the_quantile_value_are_inverse_and_keep_the_quantiles():
    q = np.array([[5.0, 6.0, 8.0], [100.0, 110.0, 115.0]])  # skewed either way
    z_levels = norm.ppf(LEVELS)
    for j, z in enumerate(z_levels):
        np.testing.assert_allclose(normal_score(q, LEVELS, q[:, j]), z)
    z = np.array([[-2.0, -0.3, 0.0, 0.7, 2.5]] * 2)
    v = quantile_value(q, LEVELS, z)
    np.testing.assert_allclose(normal_score(q[[0]], LEVELS, v[0]), z[0])
    np.testing.assert_allclose(normal_score(q[[1]], LEVELS, v[1]), z[1])
    # each side its own spread: half way to p90 on the wide side of row 0
    assert quantile_value(q[[0]], LEVELS, np.array([[z_levels[2] / 2]]))[0, 0] == pytest.approx(7)


def _forecast(items: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    cols = {}
    for item, (mid, sd) in items.items():
        for a in LEVELS:
            cols[f"{item}_p{round(a * 100):02d}"] = mid + norm.ppf(a) * sd
    return pd.DataFrame(cols)


def test_the_dependence_is_the_correlation_of_the_errors_normal_scores():
    """Next-year values drawn around their forecasts with errors correlated 0.6 (a, b) and 0
    (a, c) give those correlations back, whatever each row's level and spread; an item
    measured on too few rows is taken as independent of the others."""
    rng = np.random.default_rng(0)
    n = 6_000
    z = rng.multivariate_normal(np.zeros(3), [[1, 0.6, 0], [0.6, 1, 0], [0, 0, 1]], size=n)
    mids = {i: rng.uniform(50, 150, n) for i in "abcd"}
    sds = {i: rng.uniform(2, 20, n) for i in "abcd"}
    forecast = _forecast({i: (mids[i], sds[i]) for i in "abcd"})
    actual = pd.DataFrame({i: mids[i] + sds[i] * z[:, k] for k, i in enumerate("abc")})
    d = np.full(n, np.nan)
    d[: MIN_PAIR_ROWS - 1] = mids["d"][: MIN_PAIR_ROWS - 1] + 0.9 * sds["d"][: MIN_PAIR_ROWS - 1]
    actual["d"] = d + sds["d"] * z[:, 0] * 0.1  # closely tied to a, but on too few rows
    r = forecast_dependence(forecast, actual, list("abcd"), LEVELS)
    assert list(r.index) == list("abcd") == list(r.columns)
    assert r.loc["a", "b"] == pytest.approx(0.6, abs=0.03)
    assert r.loc["a", "c"] == pytest.approx(0.0, abs=0.03)
    assert r.loc["a", "d"] == 0.0 and r.loc["c", "d"] == 0.0
    np.testing.assert_allclose(np.diag(r), 1.0)
    assert np.linalg.eigvalsh(r.to_numpy()).min() > 0
