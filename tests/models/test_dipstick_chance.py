"""The urine dipstick's chance of reaching CKD's cut next year (models.dipstick_chance), and
CKD's chance and what-if read through it with the eGFR forecast (models.forecast_chance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from models.dipstick_chance import (
    DIPSTICK_TERMS,
    MIN_EVENTS,
    MOVED_DIRECTION,
    fit_dipstick_chance,
)
from models.forecast_chance import chance, exceedance, forecast_outcomes, item_cut, moved_items
from models.forecast_distribution import quantile_columns

NAMES = ["age", "sex", "bmi", "sbp", "dbp", "fpg", "hba1c", "egfr", "urine_protein",
         "urine_protein_max3", "other"]  # fmt: skip
CUT = 3.0
LEVELS = (0.1, 0.5, 0.9)


def _ward(n: int, sbp_effect: float = 0.04, seed: int = 0):
    """Checkups and next year's dipstick: a latent proteinuria that rises with SBP and HbA1c
    and falls with eGFR (``sbp_effect`` per mmHg), read as (+) over a threshold."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "age": rng.uniform(40, 75, n), "sex": rng.integers(1, 3, n).astype(float),
        "bmi": rng.normal(23, 3, n), "sbp": rng.normal(128, 16, n), "dbp": rng.normal(78, 10, n),
        "fpg": rng.normal(100, 15, n), "hba1c": rng.normal(5.7, 0.5, n),
        "egfr": rng.normal(75, 14, n), "urine_protein": rng.choice([1.0, 2.0], n, p=[0.9, 0.1]),
        "other": rng.normal(0, 1, n),
    })  # fmt: skip
    X["urine_protein_max3"] = X["urine_protein"]
    eta = (-4.0 + sbp_effect * (X["sbp"] - 128) + 0.9 * (X["hba1c"] - 5.7)
           - 0.03 * (X["egfr"] - 75) + 1.5 * (X["urine_protein"] == 2))  # fmt: skip
    nxt = np.where(rng.uniform(size=n) < expit(eta), 3.0, 1.0)
    return X, nxt, eta.to_numpy()


def _fit(X: pd.DataFrame, nxt: np.ndarray):
    return fit_dipstick_chance(X[NAMES].to_numpy("float64"), NAMES, nxt, np.ones(len(X), bool),
                               CUT)  # fmt: skip


def test_the_fit_finds_the_items_that_drive_proteinuria_and_ranks_it():
    X, nxt, eta = _ward(40_000)
    model = _fit(X, nxt)
    coef = dict(zip([f"{f}:{t}" for f, t in DIPSTICK_TERMS], model.coef, strict=True))
    assert coef["sbp:value"] == pytest.approx(0.04, rel=0.35)
    assert coef["hba1c:value"] == pytest.approx(0.9, rel=0.35)
    assert coef["egfr:value"] + coef["egfr:below_60"] < 0
    assert coef["urine_protein:at_least_2"] == pytest.approx(1.5, rel=0.35)
    test, nxt_test, eta_test = _ward(20_000, seed=1)
    p = expit(model.log_odds(test))
    assert roc_auc_score(nxt_test >= CUT, p) > 0.97 * roc_auc_score(nxt_test >= CUT, eta_test)
    assert p.mean() == pytest.approx((nxt_test >= CUT).mean(), rel=0.1)


def test_moved_items_keep_their_declared_direction_even_where_the_data_say_otherwise():
    """A ward where higher SBP comes with *less* proteinuria: its coefficient stays at 0, so a
    lower SBP can never raise the chance, and no move of the moved items raises it."""
    X, nxt, _ = _ward(30_000, sbp_effect=-0.03)
    model = _fit(X, nxt)
    assert model.coef[[f for f, _ in DIPSTICK_TERMS].index("sbp")] == 0.0
    for (feature, _), c in zip(DIPSTICK_TERMS, model.coef, strict=True):
        assert c * MOVED_DIRECTION.get(feature, 0) >= 0, feature
    rows = X.head(500)
    before = model.log_odds(rows)
    towards_lower_risk = {i: np.full(len(rows), -5.0 * s) for i, s in MOVED_DIRECTION.items()}
    assert (model.log_odds(rows, towards_lower_risk) <= before + 1e-12).all()


def test_a_missing_value_counts_as_the_median_and_a_move_does_not_move_it():
    X, nxt, _ = _ward(20_000)
    model = _fit(X, nxt)
    rows = X.head(3).copy()
    rows.loc[rows.index[0], "sbp"] = np.nan
    rows = rows.drop(columns="other")
    moved = model.log_odds(rows, {"sbp": np.full(3, -10.0)})
    still = model.log_odds(rows)
    assert moved[0] == still[0] and (moved[1:] < still[1:]).all()
    filled = rows.copy()
    filled.loc[filled.index[0], "sbp"] = model.fill[[f for f, _ in DIPSTICK_TERMS].index("sbp")]
    assert model.log_odds(filled)[0] == pytest.approx(still[0])


def test_too_few_events_or_missing_features_give_no_model():
    X, nxt, _ = _ward(2_000)
    few = np.where(np.cumsum(nxt >= CUT) <= MIN_EVENTS - 1, nxt, 1.0)
    assert _fit(X, few) is None
    names = [n for n in NAMES if n != "urine_protein_max3"]
    Xm = X[names].to_numpy("float64")
    assert fit_dipstick_chance(Xm, names, nxt, np.ones(len(X), bool), CUT) is None


def test_rows_at_or_over_the_cut_now_are_not_fitted_on():
    X, nxt, _ = _ward(20_000)
    over = X.copy()
    over["urine_protein"] = 4.0  # every row already (++): none is at risk of reaching (+)
    assert _fit(over, nxt) is None


def test_ckd_is_read_through_the_egfr_forecast_and_the_dipstick_chance():
    """CKD's chance is 1 − (1 − P(eGFR < 60))·(1 − P(protein ≥ (+))), its cuts those of the
    outcome's declaration; only an engine with a dipstick model reads CKD this way, and its
    what-if reads the moves of the items the dipstick model reads."""
    from data.columns import OUTCOMES
    from models.config import FORECAST_ITEMS

    assert item_cut("urine_protein") == CUT
    assert "ckd" not in forecast_outcomes(OUTCOMES, FORECAST_ITEMS, joint=True)
    assert set(forecast_outcomes(OUTCOMES, FORECAST_ITEMS, True, ("urine_protein",))) == set(
        OUTCOMES
    )
    assert moved_items("ckd", ("urine_protein",)) == ("egfr", "sbp", "dbp", "hba1c", "fpg")
    assert set(MOVED_DIRECTION) == {"egfr", "sbp", "dbp", "hba1c", "fpg"}
    assert moved_items("ckd") == ("egfr", "urine_protein")

    X, nxt, _ = _ward(20_000)
    model = _fit(X, nxt)
    rows = X.head(4).reset_index(drop=True)
    q = np.array([[55.0, 62.0, 69.0], [70.0, 78.0, 86.0], [58.0, 61.0, 64.0], [np.nan] * 3])
    forecast = pd.DataFrame(q, columns=quantile_columns("egfr", LEVELS))
    p_egfr = exceedance(q, LEVELS, 60.0, below=True)
    p_protein = expit(model.log_odds(rows))
    got = chance(forecast, "ckd", LEVELS, None, rows, model)
    want = 1 - (1 - np.nan_to_num(p_egfr)) * (1 - p_protein)
    np.testing.assert_allclose(got, want)
    # a move that raises eGFR and lowers SBP lowers the chance on every row
    moves = {"egfr": np.full(4, 2.0), "sbp": np.full(4, -5.0)}
    moved = chance(forecast, "ckd", LEVELS, moves, rows, model)
    assert (moved < got).all()
    assert logit(moved[3]) - logit(got[3]) == pytest.approx(
        logit(expit(model.log_odds(rows, moves)[3])) - logit(p_protein[3])
    )
    # without the dipstick model, only the eGFR forecast is read (rows without it: NaN)
    alone = chance(forecast, "ckd", LEVELS, None, rows, None)
    np.testing.assert_allclose(alone[:3], p_egfr[:3])
    assert np.isnan(alone[3])
