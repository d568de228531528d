"""The forecast stack: its fit on validation rows, its items' shares, and the engine's use."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pandas as pd
import pytest

from models.forecast_chance import METS_ITEMS
from models.forecast_stack import (
    chance_log_odds,
    fit_forecast_stack,
    item_shares,
    players,
    reference_forecast,
)

LEVELS = (0.1, 0.5, 0.9)


def _forecast(rng, items: dict[str, tuple[float, float]], n: int) -> pd.DataFrame:
    """Forecast quantiles per item: a median around ``centre`` ± ``spread`` and a spread."""
    cols = {}
    for item, (centre, spread) in items.items():
        mid = centre + spread * rng.standard_normal(n)
        lo = mid - spread * rng.uniform(0.5, 1.5, n)
        hi = mid + spread * rng.uniform(0.5, 1.5, n)
        for a, q in zip(LEVELS, (lo, mid, hi), strict=True):
            cols[f"{item}_p{round(a * 100):02d}"] = q
    return pd.DataFrame(cols)


def _with(forecast, reference, items):
    f = forecast.copy()
    for i in items:
        for a, v in zip(LEVELS, reference[i], strict=True):
            f[f"{i}_p{round(a * 100):02d}"] = v
    return f


def test_shares_are_the_shapley_values_of_a_two_item_outcome_and_add_up():
    """Diabetes (HbA1c, fasting glucose): each item's share is its exact Shapley value of the
    forecasts' log-odds against the reference, and the shares add up to ℓ − ℓ_ref."""
    rng = np.random.default_rng(0)
    f = _forecast(rng, {"hba1c": (5.9, 0.4), "fpg": (105, 12)}, 400)
    ref = reference_forecast(f, ("hba1c", "fpg"), LEVELS)
    ctx = pd.DataFrame(index=f.index)
    now, ref_ell, shares = item_shares(f, "diabetes", LEVELS, ref, ctx, None)
    assert [p for p, _ in players("diabetes")] == ["hba1c", "fpg"]
    np.testing.assert_allclose(shares.sum(axis=1), now - ref_ell, rtol=0, atol=1e-9)
    v = {s: chance_log_odds(_with(f, ref, [i for i in ("hba1c", "fpg") if i not in s]),
                            "diabetes", LEVELS, ctx, None)
         for s in [(), ("hba1c",), ("fpg",), ("hba1c", "fpg")]}  # fmt: skip
    shapley_hba1c = 0.5 * ((v[("hba1c",)] - v[()]) + (v[("hba1c", "fpg")] - v[("fpg",)]))
    np.testing.assert_allclose(shares[:, 0], shapley_hba1c, rtol=0, atol=1e-9)
    assert np.corrcoef(shares[:, 0], f["hba1c_p50"])[0, 1] > 0.5  # a higher HbA1c, more share


def _shapley(value, n_players: int, rows: int) -> np.ndarray:
    out = np.zeros((rows, n_players))
    for k in range(n_players):
        others = [j for j in range(n_players) if j != k]
        for r in range(len(others) + 1):
            for s in itertools.combinations(others, r):
                weight = factorial(r) * factorial(n_players - r - 1) / factorial(n_players)
                out[:, k] += weight * (value(set(s) | {k}) - value(set(s)))
    return out


def test_metabolic_syndrome_shares_add_up_and_follow_the_items():
    """The joint chance's six clinical items: shares add up exactly, an item at its reference
    gets none, and they are near the exact Shapley values (2^6 chances), in the same order."""
    rng = np.random.default_rng(1)
    spec = {"waist_cm": (88, 5), "sbp": (128, 10), "dbp": (80, 7), "tg": (140, 40),
            "hdl": (55, 10), "fpg": (100, 10), "hba1c": (5.7, 0.3)}  # fmt: skip
    n = 300
    f = _forecast(rng, spec, n)
    ref = reference_forecast(f, METS_ITEMS, LEVELS)
    f.iloc[:50, [f.columns.get_loc(f"tg_p{round(a * 100):02d}") for a in LEVELS]] = ref["tg"]
    dep = pd.DataFrame(np.eye(len(METS_ITEMS)), index=list(METS_ITEMS), columns=list(METS_ITEMS))
    ctx = pd.DataFrame({"sex": rng.choice([1.0, 2.0], n), "q_med_bp": 2.0, "q_med_glucose": 2.0,
                        "q_med_lipid": 2.0})  # fmt: skip
    now, ref_ell, shares = item_shares(f, "metabolic_syndrome", LEVELS, ref, ctx, dep)
    groups = players("metabolic_syndrome")
    assert [p for p, _ in groups] == ["waist_cm", "sbp", "tg", "hdl", "fpg", "hba1c"]
    np.testing.assert_allclose(shares.sum(axis=1), now - ref_ell, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(shares[:50, 2], 0.0)  # TG at its reference: no share

    def value(s: set) -> np.ndarray:
        keep = [i for k in s for i in groups[k][1]]
        return chance_log_odds(_with(f, ref, [i for i in METS_ITEMS if i not in keep]),
                               "metabolic_syndrome", LEVELS, ctx, dep)  # fmt: skip

    exact = _shapley(value, len(groups), n)
    np.testing.assert_allclose(exact.sum(axis=1), now - ref_ell, atol=1e-9)
    big = np.abs(now - ref_ell) > 0.5
    err = np.abs(shares - exact)[big].sum(axis=1) / np.abs(exact)[big].sum(axis=1)
    assert np.median(err) < 0.05 and np.quantile(err, 0.9) < 0.1, err  # 0.012 and 0.034
    # and the item a nurse reads first is the exact values' first
    first = np.abs(shares).argmax(axis=1) == np.abs(exact).argmax(axis=1)
    assert first[big].mean() > 0.95


def _validation(rng, n=4000, forecasts=1.0):
    """Rows whose outcome needs two signals: the member sees one, the forecasts the other
    (``forecasts``: 1 as it is, 0 noise, −1 the wrong way round)."""
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(-3 + a + b)))).astype(float)
    z = -3 + a + 0.3 * rng.standard_normal(n)  # the member: one signal
    seen = b if forecasts else rng.standard_normal(n)
    ell = 3 * np.sign(forecasts or 1) * seen - 4  # overconfident, as the chance is
    return z, ell, y


def _member_risk(z, y):
    from models.calibration import fit_calibrator

    return fit_calibrator(z, y, "sigmoid")(z)  # the member's risk is calibrated


def test_the_stack_is_kept_where_the_forecasts_add_who_is_at_risk():
    rng = np.random.default_rng(2)
    z, ell, y = _validation(rng)
    member_risk = _member_risk(z, y)
    stack, row = fit_forecast_stack(z, ell, y, member_risk, {}, "sigmoid")
    assert stack is not None and row["chosen"]
    assert 0 < stack.weight < 1 and row["val_auc_stack"] > row["val_auc_member"] + 0.05
    s = (1 - stack.weight) * z + stack.weight * ell
    # its mean risk is the member's on the same rows: the forecasts say who, not how many
    assert stack.calibrator(s).mean() == pytest.approx(member_risk.mean(), rel=1e-6)
    # and it is calibrated in slope as well (logistic truth: Platt on the stacked score)
    p = stack.calibrator(s)
    hi = p > np.quantile(p, 0.9)
    assert y[hi].mean() == pytest.approx(p[hi].mean(), rel=0.25)


@pytest.mark.parametrize("sign", [1, -1])
def test_no_stack_from_forecasts_that_carry_nothing_or_point_the_other_way(sign):
    """Noise is not kept; a chance that ranks the wrong way gets weight 0 (a negative weight
    would turn the member's medical direction around), so nothing is kept either."""
    rng = np.random.default_rng(3)
    z, ell, y = _validation(rng, forecasts=0 if sign > 0 else -1)
    stack, row = fit_forecast_stack(z, ell, y, _member_risk(z, y), {}, "sigmoid")
    assert stack is None and not row["chosen"] and row["lr_chi2"] < 3.84
    if sign < 0:
        assert row["weight"] == 0.0


def test_rows_without_the_forecasts_are_left_out_of_the_fit():
    rng = np.random.default_rng(4)
    z, ell, y = _validation(rng)
    ell[:500] = np.nan
    stack, row = fit_forecast_stack(z, ell, y, _member_risk(z, y), {}, "sigmoid")
    assert stack is not None and row["val_rows"] == stack.val_rows == len(y) - 500


# --------------------------------------------------------------------------------------------
# The engine (the 12k session ward of tests/models/conftest.py)
# --------------------------------------------------------------------------------------------


def test_the_engine_stacks_outcomes_and_reports_them(trained):
    e = trained.engine
    assert e.forecast_stacks, e.forecast_stack_table
    assert "ckd" not in set(e.forecast_stack_table["outcome"])  # urine protein: no forecast
    t = trained.report.extra["forecast_stack"].table
    chosen = t[t["chosen"]]
    main = chosen[chosen["engine"] == "main"].set_index("outcome")
    assert set(main.index) == set(e.forecast_stacks)
    assert main[["test_auc_member", "test_auc_engine"]].notna().all().all()
    assert (chosen["val_auc_stack"] > chosen["val_auc_member"]).all()
    assert ((chosen["weight"] > 0) & (chosen["weight"] <= 0.75)).all()  # the member keeps 1/4
    # the glucose patterns' sub-engines (rows without fasting glucose or HbA1c) have theirs,
    # read from the main engine's forecasts
    subs = chosen[chosen["engine"] != "main"]
    for p, o in zip(subs["engine"], subs["outcome"], strict=True):
        sub = e.pattern_engines[p]
        assert o in sub.forecast_stacks and sub._forecaster() is e and not sub.forecast_items
    assert set(t["engine"]) - {"main"} <= set(e.pattern_engines)


def test_a_row_moved_from_itself_is_scored_as_it_is(trained):
    """``moved_from`` with no move reads the same forecasts: the same risks, bit for bit, as
    do the caller's own forecasts of the rows (the annual run's); a stacked outcome's risk
    differs from its member's."""

    e = trained.engine
    X = trained.features.head(500)
    M = X[e.feature_names].to_numpy("float64", na_value=np.nan)
    pd.testing.assert_frame_equal(e.predict_proba(M, moved_from=M), e.predict_proba(M))
    given = e.predict_values(X)  # every item, indexed as the features
    pd.testing.assert_frame_equal(e.predict_proba(M, forecast=given), e.predict_proba(M))
    member = e.without_stacks().predict_proba(M)
    for o in e.forecast_stacks:
        assert not np.allclose(member[f"risk_{o}"], e.predict_proba(M)[f"risk_{o}"])


def test_the_member_keeps_its_share_where_the_forecasts_say_it_all():
    """Forecasts that see both signals leave the member nothing on the validation year (its
    weight 0): the stack still gives it ``1 − max_weight``."""
    rng = np.random.default_rng(5)
    n = 4000
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(-3 + a + b)))).astype(float)
    z = -3 + rng.standard_normal(n)  # a member that learned nothing
    ell = a + b - 3
    free, _ = fit_forecast_stack(z, ell, y, _member_risk(z, y), {}, "sigmoid")
    capped, row = fit_forecast_stack(z, ell, y, _member_risk(z, y), {}, "sigmoid", 0.0, 0.75)
    assert free is not None and free.weight > 0.85  # above the cap
    assert capped is not None and capped.weight == row["weight"] == 0.75


def test_a_sub_engine_stack_reads_its_items_where_the_main_engine_has_none(trained):
    """A ward where only the glucose patterns' sub-engines kept a MetS stack (worlds 3, 5 and 7
    of docs/models.md): the forecasts predicted once for the call must include its items."""
    from dataclasses import replace

    e = trained.engine
    subs = [p for p, s in e.pattern_engines.items() if "metabolic_syndrome" in s.forecast_stacks]
    assert subs, "the session ward's sub-engines keep a MetS stack"
    main_off = replace(e, forecast_stacks={o: s for o, s in e.forecast_stacks.items()
                                           if o != "metabolic_syndrome"})  # fmt: skip
    X = trained.features.head(800)
    M = X[e.feature_names].to_numpy("float64", na_value=np.nan)
    got = main_off.predict_proba(M)["risk_metabolic_syndrome"].to_numpy()
    member = e.without_stacks().predict_proba(M)["risk_metabolic_syndrome"].to_numpy()
    routed = main_off.predict_proba(M, forecast=e.predict_values(X, ("hba1c",)))
    np.testing.assert_array_equal(routed["risk_metabolic_syndrome"].to_numpy(), got)
    assert not np.allclose(got, member)  # the routed rows are stacked
    # and a what-if read as a move of those rows' forecasts keeps the direction there too
    grid = np.linspace(70, 110, 9)
    rows = np.repeat(M, len(grid), axis=0)
    rows[:, e.feature_names.index("waist_cm")] = np.tile(grid, len(M))
    risk = main_off.predict_proba(rows, moved_from=np.repeat(M, len(grid), axis=0))
    step = np.diff(risk["risk_metabolic_syndrome"].to_numpy().reshape(len(M), len(grid)), axis=1)
    assert (step >= -1e-12).all(), step.min()


def test_no_stack_on_too_few_events():
    rng = np.random.default_rng(6)
    z, ell, y = _validation(rng)
    assert 0 < y.sum() < 400  # a stack on these rows is kept above
    stack, row = fit_forecast_stack(z, ell, y, _member_risk(z, y), {}, "sigmoid", 0.0, 0.75,
                                    min_events=int(y.sum()) + 1)  # fmt: skip
    assert stack is None and not row["chosen"] and np.isnan(row["weight"])
