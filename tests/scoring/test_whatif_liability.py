"""The what-if read through the value forecasts (scoring.whatif_liability, over the chance of
models.forecast_chance): the forecast's distribution reproduces its quantiles, a move of the
item is the threshold model's change, and only outcomes whose every item is forecast are read
this way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from models.config import FORECAST_ITEMS
from models.forecast_chance import (
    METS_ITEMS,
    chance,
    exceedance,
    forecast_outcomes,
    joint_chance,
)
from scoring.whatif_liability import log_odds_change

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
    # CKD's urine protein is not forecast; metabolic syndrome is a rule, not a cut per item:
    # read only jointly, with the forecasts' dependence
    assert shipped == ("diabetes", "hypertension", "dyslipidemia", "liver", "hyperuricemia")
    joint = forecast_outcomes(OUTCOMES, FORECAST_ITEMS, joint=True)
    assert set(joint) == {*shipped, "metabolic_syndrome"}
    without_hdl = tuple(i for i in FORECAST_ITEMS if i != "hdl")
    assert "metabolic_syndrome" not in forecast_outcomes(OUTCOMES, without_hdl, joint=True)
    without_non_hdl = tuple(i for i in FORECAST_ITEMS if i != "non_hdl")
    assert "dyslipidemia" not in forecast_outcomes(OUTCOMES, without_non_hdl)
    assert forecast_outcomes(OUTCOMES, ()) == ()


# --- metabolic syndrome, read jointly ----------------------------------------------------------

#: (middle, spread) of each MetS item's forecast for one man: every criterion about even.
_EVEN = {"waist_cm": (85.0, 3.0), "sbp": (130.0, 10.0), "dbp": (80.0, 6.0),
         "tg": (150.0, 40.0), "hdl": (55.0, 8.0), "fpg": (110.0, 8.0), "hba1c": (5.8, 0.2)}  # fmt: skip


def _mets_forecast(n: int = 1, **spec) -> pd.DataFrame:
    items = {**_EVEN, **spec}
    return pd.concat(
        [_forecast(i, np.full(n, m), np.full(n, s), np.full(n, s)) for i, (m, s) in items.items()],
        axis=1,
    )


def _independent(items: list[str]) -> pd.DataFrame:
    return pd.DataFrame(np.eye(len(items)), index=items, columns=items)


def _men(n: int = 1, **answers) -> pd.DataFrame:
    return pd.DataFrame({"sex": np.ones(n), **{k: np.full(n, v) for k, v in answers.items()}})


def _sf(item, cut, below=False):
    m, s = _EVEN[item]
    return norm.cdf((cut - m) / s) if below else norm.sf((cut - m) / s)


def test_the_joint_chance_is_the_rule_over_the_draws():
    """Independent items: waist ≥ 85 (a man) and ≥ 2 of glucose (FPG ≥ 110), lipids (TG ≥ 150
    or HDL < 40) and blood pressure (SBP ≥ 130 or DBP ≥ 85), as the checkup's own rule judges
    them; medication meets its component; without a fasting glucose, HbA1c ≥ 6.0 stands in."""
    dep = _independent(list(METS_ITEMS))
    waist = _sf("waist_cm", 85.0)
    glu = _sf("fpg", 110.0)
    lip = 1 - (1 - _sf("tg", 150.0)) * (1 - _sf("hdl", 40.0, below=True))
    bp = 1 - (1 - _sf("sbp", 130.0)) * (1 - _sf("dbp", 85.0))

    def two_of(a, b, c):
        return a * b + a * c + b * c - 2 * a * b * c

    got = joint_chance(_mets_forecast(), _men(), LEVELS, dep)[0]
    assert got == pytest.approx(waist * two_of(glu, lip, bp), abs=0.02)
    on_bp_medication = joint_chance(_mets_forecast(), _men(q_med_bp=1.0), LEVELS, dep)[0]
    assert on_bp_medication == pytest.approx(waist * two_of(glu, lip, 1.0), abs=0.02)
    no_fpg = _mets_forecast(fpg=(np.nan, np.nan))
    a1c = _sf("hba1c", 6.0)
    got = joint_chance(no_fpg, _men(), LEVELS, dep)[0]
    assert got == pytest.approx(waist * two_of(a1c, lip, bp), abs=0.02)
    assert np.isnan(joint_chance(_mets_forecast(waist_cm=(np.nan, np.nan)), _men(), LEVELS, dep))
    # the waist's chance is exact given the other draws: a waist far under its cut still
    # gives its small chance, not 0 draws in 256
    far = joint_chance(_mets_forecast(waist_cm=(75.0, 3.0)), _men(), LEVELS, dep)[0]
    assert far == pytest.approx(norm.sf(10 / 3) * two_of(glu, lip, bp), rel=0.1)
    # a woman's cut is 90 cm; a sex not recorded counts only over both cuts
    women = joint_chance(_mets_forecast(), _men(sex=2.0), LEVELS, dep)[0]
    unknown = joint_chance(_mets_forecast(), _men(sex=np.nan), LEVELS, dep)[0]
    assert women == pytest.approx(norm.sf(5 / 3) * two_of(glu, lip, bp), abs=0.02)
    assert unknown == pytest.approx(women)


def test_items_that_go_together_raise_the_joint_chance():
    """A conjunction of criteria is likelier when their errors go together (a waist over its
    forecast comes with a higher BP and glucose)."""
    items = list(METS_ITEMS)
    together = pd.DataFrame(np.full((7, 7), 0.5) + 0.5 * np.eye(7), index=items, columns=items)
    f, men = _mets_forecast(), _men()
    assert (
        joint_chance(f, men, LEVELS, together)[0]
        > joint_chance(f, men, LEVELS, _independent(items))[0] + 0.05
    )


def test_a_joint_what_if_moves_the_chance_by_the_items_moves_only():
    """The same draws before and after: no move, no change; a smaller waist or blood pressure
    lowers the chance, a larger move more."""
    dep = _independent(list(METS_ITEMS))
    f, men = _mets_forecast(3), _men(3)
    none = log_odds_change(f, "metabolic_syndrome", LEVELS, {}, context=men, dependence=dep)
    np.testing.assert_array_equal(none, 0.0)
    waist = np.array([-0.5, -1.0, -3.0])
    change = log_odds_change(f, "metabolic_syndrome", LEVELS, {"waist_cm": waist}, context=men,
                             dependence=dep)  # fmt: skip
    assert (change < 0).all() and change[0] > change[1] > change[2]
    both = log_odds_change(f, "metabolic_syndrome", LEVELS, {"waist_cm": waist,
                           "sbp": np.full(3, -3.0)}, context=men, dependence=dep)  # fmt: skip
    assert (both < change).all()
