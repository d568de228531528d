"""The what-if read through the value forecasts (scoring.whatif_liability): the forecast's
distribution reproduces its quantiles, a move of the item is the threshold model's change, and
only outcomes whose every item is forecast are read this way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from models.config import FORECAST_ITEMS
from scoring.whatif_liability import chance, exceedance, forecast_outcomes, log_odds_change

LEVELS = (0.1, 0.5, 0.9)
Z90 = norm.ppf(0.9)


def _forecast(item: str, mid: np.ndarray, down: np.ndarray, up: np.ndarray) -> pd.DataFrame:
    """Forecast columns of ``item`` with the given middle and spreads below / above it."""
    return pd.DataFrame(
        {f"{item}_p10": mid - Z90 * down, f"{item}_p50": mid, f"{item}_p90": mid + Z90 * up}
    )


def _logit(p):
    return np.log(p / (1 - p))


def test_the_distribution_reproduces_the_quantiles_on_both_sides():
    q = np.array([[5.0, 6.0, 8.0]])  # skewed: spread 0.78 below, 1.56 above the middle
    for cut, above in [(5.0, 0.9), (6.0, 0.5), (8.0, 0.1)]:
        assert exceedance(q, LEVELS, cut)[0] == pytest.approx(above)
        assert exceedance(q, LEVELS, cut, below=True)[0] == pytest.approx(1 - above)
    # each side its own normal: 7.0 is half way to p90 on the wide side
    assert exceedance(q, LEVELS, 7.0)[0] == pytest.approx(norm.sf(Z90 / 2))
    assert np.isnan(exceedance(np.full((1, 3), np.nan), LEVELS, 7.0)[0])


def test_a_move_of_one_item_is_the_threshold_models_change():
    """Uric acid ≥ 7.0 (hyperuricaemia): next year ~ N(mid, σ²); a move δ changes the chance
    from Φ((mid − 7)/σ) to Φ((mid + δ − 7)/σ), whatever the resident's level."""
    mid, sd, move = np.array([5.0, 6.5, 7.5]), np.array([0.8, 0.8, 1.2]), np.full(3, -0.3)
    f = _forecast("uric_acid", mid, sd, sd)
    before = norm.cdf((mid - 7.0) / sd)
    after = norm.cdf((mid + move - 7.0) / sd)
    np.testing.assert_allclose(chance(f, "hyperuricemia", LEVELS), before)
    got = log_odds_change(f, "hyperuricemia", LEVELS, {"uric_acid": move})
    np.testing.assert_allclose(got, _logit(after) - _logit(before))
    assert (got < 0).all()


def test_any_criterion_meets_the_outcome_and_an_unforecast_item_is_left_out():
    """Diabetes: HbA1c ≥ 6.5 or FPG ≥ 126, taken as independent; a resident without a fasting
    glucose this year (its forecast NaN) is read on HbA1c alone; with neither, NaN."""
    hba1c = _forecast("hba1c", np.array([6.2, 6.2, np.nan]), np.full(3, 0.2), np.full(3, 0.2))
    fpg = _forecast("fpg", np.array([110.0, np.nan, np.nan]), np.full(3, 10.0), np.full(3, 10.0))
    f = pd.concat([hba1c, fpg], axis=1)
    p_a1c, p_fpg = norm.sf((6.5 - 6.2) / 0.2), norm.sf((126 - 110) / 10.0)
    got = chance(f, "diabetes", LEVELS)
    np.testing.assert_allclose(got[:2], [1 - (1 - p_a1c) * (1 - p_fpg), p_a1c])
    assert np.isnan(got[2])
    moves = {"hba1c": np.full(3, -0.05), "fpg": np.full(3, -2.0)}
    change = log_odds_change(f, "diabetes", LEVELS, moves)
    assert (change[:2] < 0).all() and np.isnan(change[2])
    # a move of one item only moves the chance less than both together
    one = log_odds_change(f, "diabetes", LEVELS, {"hba1c": moves["hba1c"]})
    assert change[0] < one[0] < 0


def test_an_unreadable_chance_gives_no_change():
    """A chance of 0 before the move (far below the cut) has no log-odds to move: NaN, so the
    caller keeps the trees' change."""
    f = _forecast("uric_acid", np.array([2.0]), np.array([0.1]), np.array([0.1]))
    change = log_odds_change(f, "hyperuricemia", LEVELS, {"uric_acid": np.array([-1.0])})
    assert np.isnan(change).all()


def test_only_outcomes_whose_every_item_is_forecast_are_read_through_the_forecasts():
    from data.columns import OUTCOMES

    shipped = forecast_outcomes(OUTCOMES, FORECAST_ITEMS)
    # CKD's urine protein is not forecast; metabolic syndrome is a rule, not a cut per item
    assert shipped == ("diabetes", "hypertension", "dyslipidemia", "liver", "hyperuricemia")
    without_non_hdl = tuple(i for i in FORECAST_ITEMS if i != "non_hdl")
    assert "dyslipidemia" not in forecast_outcomes(OUTCOMES, without_non_hdl)
    assert forecast_outcomes(OUTCOMES, ()) == ()
