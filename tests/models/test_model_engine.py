"""Behavioural tests of the trained engine on one synthetic cohort (see conftest.trained)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from data.columns import OUTCOMES
from models.config import FORECAST_ITEMS
from models.split import assign_split

# One worker trains the shared engine once (pytest-xdist --dist loadgroup).
pytestmark = pytest.mark.xdist_group("trained_engine")

# Stated bounds (synthetic cohort, 12k residents, test year ≈ 600-1100 rows per outcome).
CAL_SLOPE_TOL = 0.45  # |calibration slope − 1|
ECE_MAX = 0.05
ORACLE_RATIO_MIN = 0.85  # each outcome's AUC / oracle AUC (ckd: 0.80, see below)
DRIVER_ANY_MIN = 0.35  # share of rows with ≥1 of the model's top-3 items among the true 3
#: The same among the high-risk rows (top decile of predicted risk), per outcome. Measured on
#: this cohort: diabetes 0.99, hypertension 0.88, dyslipidemia 0.77, MetS 0.83, CKD 0.99,
#: liver 0.99 (constant guess 1.00, 0.99, 0.92, 1.00, 0.97, 0.97).
DRIVER_HIGH_MIN = 0.7
COVERAGE = (0.70, 0.90)


def _auc(report, outcome, model):
    m = report.metrics
    row = m[(m.outcome == outcome) & (m.model == model) & (m.slice == "all")]
    return float(row["auc"].iloc[0])


def test_split_has_no_person_or_year_leakage(trained):
    T = trained.data.test_year
    sets = [(o, s.keys, s.split) for o, s in trained.data.outcomes.items()]
    sets.append(("forecast", trained.data.forecast.keys, trained.data.forecast.split))
    for name, keys, split in sets:
        fy = keys["fiscal_year"].astype("int64").to_numpy()
        assert (fy[split == "train"] <= T - 2).all(), name
        assert (fy[split == "val"] == T - 1).all(), name
        assert (fy[split == "test"] == T).all(), name
        test_persons = set(keys.loc[split == "test", "pseudonym"])
        dev_persons = set(keys.loc[np.isin(split, ["train", "val"]), "pseudonym"])
        assert test_persons and dev_persons and not test_persons & dev_persons, name
        again = assign_split(keys.sample(frac=1.0, random_state=1), T)
        shuffled = pd.Series(again, index=keys.sample(frac=1.0, random_state=1).index)
        assert (shuffled.sort_index().to_numpy() == split).all(), name


def _grid_risk(engine, X, col, grid, outcome, moved_from=None):
    rows = np.repeat(X, len(grid), axis=0)
    rows[:, engine.feature_names.index(col)] = np.tile(grid, len(X))
    before = None if moved_from is None else np.repeat(moved_from, len(grid), axis=0)
    p = engine.predict_outcome(rows, outcome, moved_from=before).reshape(len(X), len(grid))
    raw = engine.predict_raw(rows, outcome, moved_from=before).reshape(len(X), len(grid))
    return p, raw


@pytest.mark.parametrize(
    ("outcome", "col", "grid"),
    [
        ("diabetes", "hba1c", np.linspace(4.5, 6.4, 20)),
        ("diabetes", "fpg", np.linspace(70, 125, 20)),
        ("hypertension", "sbp", np.linspace(90, 139, 20)),
        ("hypertension", "dbp", np.linspace(55, 89, 20)),
        ("metabolic_syndrome", "waist_cm", np.linspace(65, 110, 20)),
    ],
)
def test_risk_never_falls_as_item_rises(trained, outcome, col, grid):
    """The member, on any row; a forecast stack, on a resident's row with the item moved
    (the forecasts re-run on an edited row carry no constraint, so a stack reads the edit as a
    move of the resident's own forecasts: models.forecast_stack)."""

    s = trained.data.outcomes[outcome]
    X = s.X[:600]
    member = trained.engine.without_stacks()
    for engine, moved_from in ((member, None), (trained.engine, X)):
        p, raw = _grid_risk(engine, X, col, grid, outcome, moved_from)
        assert (np.diff(raw, axis=1) >= -1e-12).all()
        assert (np.diff(p, axis=1) >= -1e-12).all()
        assert (p[:, -1] > p[:, 0]).mean() > 0.5  # and it does rise for most people


def test_calibration_holds_on_test(trained):
    m = trained.report.metrics
    gbm = m[(m.model == "lightgbm") & (m.slice == "all")].set_index("outcome")
    assert (gbm["ece"] <= ECE_MAX).all(), gbm["ece"]
    assert ((gbm["cal_slope"] - 1).abs() <= CAL_SLOPE_TOL).all(), gbm["cal_slope"]


@pytest.mark.parametrize("outcome", ["diabetes", "metabolic_syndrome", "hypertension"])
def test_the_member_is_calibrated_on_the_rows_it_scores(trained, outcome):
    """Rows lacking a glucose item go to a pattern sub-model (diabetes, MetS), so the main
    member's calibrator holds on the fully measured rows it scores, not on a mix with rows it
    never scores; without sub-models (hypertension) on every row. The level of a routed
    outcome is then the ward's: over the rows that calibrate it, every glucose pattern
    scored by its own engine, the mean risk is their rate (models.train.match_ward_rate)."""
    from features.masking import glucose_pattern
    from models.train import _shifted

    engine = trained.engine
    s = trained.data.outcomes[outcome]
    X, y = s.part("val", copies=True)
    names = engine.feature_names
    both = glucose_pattern(X[:, names.index("fpg")], X[:, names.index("hba1c")]) == "both"
    routed = outcome != "hypertension"
    assert 0.3 < both.mean() < 0.95  # the ward has both kinds of rows
    scored = s.scored(X, y)
    np.testing.assert_array_equal(scored, both if routed else np.ones(len(X), bool))
    p = engine.predict_outcome(X[scored], outcome, route=False)
    shift = engine.risk_shift.get(outcome, 0.0)
    assert (shift != 0.0) == routed
    member = _shifted(p, -shift)  # the calibrator's own risk
    assert member.mean() == pytest.approx(y[scored].mean(), rel=0.01)
    if routed:
        subs = [e for e in engine.pattern_engines.values() if outcome in e.outcomes]
        logistic = all(e.member(outcome) == "logistic" for e in (engine, *subs))
        rows = np.isin(s.split, ("train", "val") if logistic else ("val",))
        ward = engine.predict_outcome(s.X[rows], outcome)
        assert ward.mean() == pytest.approx(s.y[rows].mean(), rel=1e-9)
    if outcome == "diabetes":
        # calibrated over every row, as before, it would be 0.81 × the rate here (MetS 0.95:
        # its member misjudges the other rows less since their latest HbA1c stands in)
        from models.calibration import fit_calibrator

        raw = trained.engine.predict_raw(X, outcome, route=False)
        mixed = fit_calibrator(raw, y, "sigmoid")(raw[scored]).mean()
        assert abs(mixed / y[scored].mean() - 1) > 0.1


@pytest.mark.parametrize("outcome", ["diabetes", "hypertension"])
def test_lightgbm_matches_or_beats_baselines(trained, outcome):
    gbm = _auc(trained.report, outcome, "lightgbm")
    assert gbm >= _auc(trained.report, outcome, "logistic") - 0.01
    assert gbm >= _auc(trained.report, outcome, "points") - 0.02


def test_auc_close_to_oracle(trained):
    s = trained.report.synthetic.set_index("outcome")
    assert set(s.index) == set(OUTCOMES)
    bounds = pd.Series(ORACLE_RATIO_MIN, index=s.index)
    bounds["ckd"] = 0.80  # eGFR/proteinuria onset is the noisiest outcome of the generator
    assert (s["auc_ratio"] >= bounds).all(), s["auc_ratio"]
    assert s["auc_ratio"].mean() >= 0.9
    assert (s["mae_p_true"] < 0.1).all()


def test_driver_agreement(trained):
    s = trained.report.synthetic.set_index("outcome")
    assert (s["driver_any"] >= DRIVER_ANY_MIN).all(), s["driver_any"]
    assert (s["driver_mean_overlap"] >= 0.4).all(), s["driver_mean_overlap"]
    # High-risk residents (top decile): ≥1 true driver among the top-3 items for most of them,
    # more often than among all rows (where small contributions rank the items).
    assert (s["driver_high_n"] >= 50).all(), s["driver_high_n"]
    assert (s["driver_high_any"] >= DRIVER_HIGH_MIN).all(), s["driver_high_any"]
    assert s["driver_high_any"].median() >= 0.85, s["driver_high_any"]
    assert (s["driver_high_any"] > s["driver_any"]).all()
    # Not asserted: beating the constant guess. The generator credits an item's level to its
    # upstream causes (age, sex, habits, adiposity), the model to the measured item they act
    # through; among high-risk rows a constant "the outcome's own item + adiposity + age or
    # sex" is right for 0.92-1.00 of them (README, "Explanations by clinical item").


def test_grouped_contributions_add_up_for_every_member(trained):
    """Items + bias = the raw score of every row, for LightGBM, blend and logistic members."""
    from models.explain import grouped_contributions

    e = trained.engine
    for o, s in trained.data.outcomes.items():
        X = s.part("test")[0][:1500]
        g = grouped_contributions(e, X, o)
        np.testing.assert_allclose(g.raw, e.predict_raw(X, o), rtol=0, atol=1e-9)
        assert g.values.shape == (len(X), len(g.items)) and "hba1c" in g.items


def test_engine_contributions_are_shaps_tree_explainer(trained):
    """The trained boosters' native contributions (bulk scoring) = shap's own TreeSHAP."""
    import warnings

    from models.forecast_stack import players

    shap = pytest.importorskip("shap")
    e = trained.engine
    assert e.boosters
    for o, b in e.boosters.items():
        X = trained.data.outcomes[o].part("test")[0][:300]
        it = e.best_iteration[o]
        native = b.predict(X, pred_contrib=True, num_iteration=it)
        ex = shap.TreeExplainer(b)
        ex.model.model_type = "internal"  # shap's C++ TreeSHAP, not its pred_contrib shortcut
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = ex.shap_values(X, tree_limit=it, check_additivity=False)
        np.testing.assert_allclose(values, native[:, :-1], rtol=0, atol=1e-6)
        # the member's contributions are these numbers (rows the engine scores itself: HbA1c
        # and fasting glucose measured; others may go to a glucose-pattern model), and a
        # forecast stack's are (1 − weight) × them plus its items' shares of the forecasts
        names = e.feature_names
        own = ~np.isnan(X[:, [names.index("hba1c"), names.index("fpg")]]).any(axis=1)
        if e.member(o) == "lightgbm":
            c = e.without_stacks().contributions(X[own], o).to_numpy()
            np.testing.assert_allclose(c[:, :-1], values[own], rtol=0, atol=1e-6)
            if o in e.forecast_stacks:
                w = e.forecast_stacks[o].weight
                item_features = [f for f, _ in players(o)]
                rest = [j for j, f in enumerate(names) if f not in item_features]
                stacked = e.contributions(X[own], o).to_numpy()[:, rest]
                np.testing.assert_allclose(stacked, (1 - w) * values[own][:, rest], atol=1e-6)


def test_forecast_interval_coverage(trained):
    f = trained.report.forecasts.set_index("item")
    assert list(f.index) == list(FORECAST_ITEMS)
    lo, hi = COVERAGE
    assert f["coverage_80"].between(lo, hi).all(), f["coverage_80"]
    X = trained.features.head(200)
    vals = trained.engine.predict_values(X)
    for item in FORECAST_ITEMS:
        q = vals[[f"{item}_p10", f"{item}_p50", f"{item}_p90"]].to_numpy()
        # The engine forecasts the change: no forecast exactly where this year's value is missing.
        missing = X[item].isna().to_numpy()
        assert (np.isnan(q).all(axis=1) == missing).all()
        assert (np.diff(q[~missing], axis=1) >= 0).all()
    # The median forecast is at least as good as carrying this year's value forward.
    assert (f["mae_p50"] <= f["mae_persistence"] * 1.02).all(), f[["mae_p50", "mae_persistence"]]


def test_engine_outputs_and_pickle(trained):
    eng = trained.engine
    X = trained.features.head(300)
    risk = eng.predict_proba(X)
    assert list(risk.columns) == [f"risk_{o}" for o in OUTCOMES]
    assert risk.index.equals(X.index) and risk.to_numpy().min() > 0 and risk.to_numpy().max() < 1
    c = eng.contributions(X, "diabetes")
    assert list(c.columns) == [*eng.feature_names, "bias"]
    np.testing.assert_allclose(c.sum(axis=1), eng.predict_raw(X, "diabetes"), atol=1e-6)
    back = pickle.loads(pickle.dumps(eng))
    pd.testing.assert_frame_equal(back.predict_proba(X), risk)
    pd.testing.assert_frame_equal(back.predict_values(X), eng.predict_values(X))
    assert back.feature_set_version == eng.feature_set_version


def test_report_is_tidy(trained):
    r = trained.report
    assert {"lightgbm", "logistic", "points", "oracle"} <= set(r.metrics["model"])
    groups = set(r.metrics["group"])
    assert {"all", "male", "female", "40-49", "50-59", "60-64", "65-74"} <= groups
    assert not r.metrics.duplicated(["outcome", "model", "slice", "group"]).any()
    summary = r.summary()
    assert set(summary["outcome"]) == set(OUTCOMES)
    assert summary[["lightgbm_auc", "logistic_auc", "points_auc", "ece"]].notna().all().all()


def test_same_seed_same_predictions(trained):
    from dataclasses import replace

    from models.train import train_engine

    cfg = replace(trained.config, outcomes=("hypertension",), forecasts=False)
    a, _ = train_engine(trained.features, trained.labels, cfg)
    X = trained.data.outcomes["hypertension"].X
    member = trained.engine.without_stacks()  # no forecasts here: no stack
    np.testing.assert_array_equal(
        a.predict_outcome(X, "hypertension"), member.predict_outcome(X, "hypertension")
    )
