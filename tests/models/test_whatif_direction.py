"""The declared medical direction is enforced, and what-if never raises risk.

One demo-sized ward (3,000 residents × 6 years), LightGBM on every outcome (``min_events=0``,
so the boosters' monotone constraints are what is tested, blends and the logistic member
included where validation picks them) and forecast stacks where validation picks them
(models.forecast_stack: a what-if reads them as a move of the resident's forecasts), scored in
its last fiscal year with the shipped scenarios of ``scoring/scoring.toml``.
"""

from __future__ import annotations

import numpy as np
import pytest

from features.declarations import DECLARATIONS

pytestmark = pytest.mark.xdist_group("whatif_ward")

#: Calibrators are monotone non-decreasing (sigmoid b ≥ 0, isotonic), so the calibrated risk
#: keeps the booster's order; the tolerance only absorbs ties and float noise (0.1 point).
TOLERANCE = 0.001


@pytest.fixture(scope="module")
def ward_engine(tmp_path_factory):
    from data.store import read_checkups
    from models.config import ModelConfig
    from models.lab_response import fit_response_tables
    from models.train import train_engine
    from tests.models.ward_helpers import make_ward

    ward = make_ward(tmp_path_factory.mktemp("whatif"), residents=3_000, years=6, seed=7)
    config = ModelConfig(min_events=0)
    engine, _ = train_engine(ward.features, ward.labels, config)
    assert engine.forecast_stacks  # the what-if below reads some outcome through a stack
    # as run_train does: the labs follow the levers in every what-if below
    engine.lab_response, engine.lab_scale = fit_response_tables(
        read_checkups(ward.store), engine.test_year
    )
    assert (engine.lab_response["coef"] != 0).sum() >= 3
    return ward, engine


def test_no_scenario_raises_any_outcome_risk(ward_engine):
    from features.build import FeatureConfig
    from scoring.score import load_scoring_config, whatif_direction

    ward, engine = ward_engine
    assert set(engine.boosters) == set(engine.outcomes)  # LightGBM for every outcome
    table = whatif_direction(
        engine, ward.history, ward.index, load_scoring_config(), FeatureConfig(), TOLERANCE
    )
    assert set(table["scenario"]) == set(load_scoring_config().scenario_keys)
    assert (table.groupby("scenario")["n"].first() > 20).all(), table  # each applies to many
    bad = table[table["raised_over_tolerance"] > 0]
    assert bad.empty, bad.to_string()
    assert table["max_rise"].max() <= TOLERANCE
    # …and the scenarios do lower risk for many: the models did not go flat.
    lowered = table.groupby("scenario")["lowered"].max()
    assert lowered["weight_loss_3kg"] > 0.5 and (lowered > 0.2).sum() >= 3, lowered


def test_boosters_are_monotone_in_every_declared_feature(ward_engine):
    """Every member on any row; each forecast stack on a resident's row moved along the
    grid (moved_from)."""

    ward, stacked = ward_engine
    engine = stacked.without_stacks()
    names = engine.feature_names
    X = ward.features[names].head(150).to_numpy(dtype="float64", na_value=np.nan)
    for d in DECLARATIONS:
        if not d.monotone:
            continue
        j = names.index(d.name)
        col = X[:, j][~np.isnan(X[:, j])]
        grid = (
            np.asarray(d.allowed, dtype=float)
            if d.allowed
            else np.quantile(col, np.linspace(0, 1, 9)) if len(col) else np.array([0.0, 1.0])
        )  # fmt: skip
        rows = np.repeat(X, len(grid), axis=0)
        rows[:, j] = np.tile(grid, len(X))
        before = np.repeat(X, len(grid), axis=0)
        for o in engine.outcomes:
            raw = engine.predict_raw(rows, o).reshape(len(X), len(grid))
            step = np.diff(raw, axis=1) * d.monotone
            assert (step >= -1e-9).all(), (d.name, o, step.min())
        for o in stacked.forecast_stacks:
            raw = stacked.predict_raw(rows, o, moved_from=before).reshape(len(X), len(grid))
            step = np.diff(raw, axis=1) * d.monotone
            assert (step >= -1e-9).all(), (d.name, o, "stack", step.min())


def test_scores_offer_only_scenarios_that_lower_the_risk(ward_engine):
    from features.build import FeatureConfig
    from scoring.score import load_scoring_config, score_chunk

    ward, engine = ward_engine
    config = load_scoring_config()
    scores, _ = score_chunk(engine, ward.history, ward.index, config, FeatureConfig())
    shown = 0
    for o in engine.outcomes:
        risk = scores[f"risk_{o}"].to_numpy()
        for key in config.scenario_keys:
            v = scores[f"risk_{o}__{key}"].to_numpy()
            ok = ~np.isnan(v)
            shown += int(ok.sum())
            assert (v[ok] <= risk[ok] - config.scenario_min_drop + 1e-12).all(), (o, key)
        after = scores[f"risk_after_{o}"].to_numpy()
        best = scores[f"best_scenario_{o}"]
        assert (after <= risk).all()
        has = best.notna().to_numpy()
        assert (after[has] <= risk[has] - config.scenario_min_drop + 1e-12).all()
        assert (after[~has] == risk[~has]).all()
    assert shown > 0
    # A scenario with no minimum drop still never shows a raised risk.
    loose = config.model_copy(update={"scenario_min_drop": 0.0})
    again, _ = score_chunk(engine, ward.history, ward.index, loose, FeatureConfig())
    for o in engine.outcomes:
        for key in config.scenario_keys:
            v = again[f"risk_{o}__{key}"].to_numpy()
            ok = ~np.isnan(v)
            assert (v[ok] < again[f"risk_{o}"].to_numpy()[ok]).all(), (o, key)


def test_scenarios_move_every_feature_towards_lower_risk(ward_engine):
    """The edits of each shipped scenario, rebuilt into features (BMI, changes, slopes, flags,
    メタボ判定, 階層化 and the derived drinking/smoking features follow), move only features with
    a declared direction, and each only in its risk-lowering direction — in both recorded
    HbA1c values where the labs follow the lever (models.lab_response.grid_split)."""
    from features.build import FeatureConfig
    from scoring.score import index_features, load_scoring_config, scenario_features

    ward, engine = ward_engine
    fc = FeatureConfig()
    base = index_features(ward.history, ward.index, fc)
    names = engine.feature_names
    mixed = 0
    for sc, table in [(sc, t) for sc in load_scoring_config().scenarios
                      for t in (None, engine.lab_response)]:  # fmt: skip
        built = scenario_features(ward.history, ward.index, base, sc, fc, table, engine.lab_scale)
        applies, feats = built
        assert applies.any(), sc.key
        before = base.loc[applies, names].reset_index(drop=True)
        _assert_moves_towards_lower_risk(sc.key, before, feats[names].reset_index(drop=True))
        if built.down is not None:
            assert table is not None  # only the labs' move falls between grid values
            pos, w, low = built.down
            assert ((w > 0) & (w < 1)).all() and len(low) == len(pos)
            assert np.allclose(
                low["hba1c"].to_numpy("float64") + 0.1, feats["hba1c"].to_numpy("float64")[pos]
            )  # one recorded step below
            _assert_moves_towards_lower_risk(
                sc.key, before.iloc[pos].reset_index(drop=True), low[names].reset_index(drop=True)
            )
            mixed += len(pos)
    assert mixed > 0  # habits move HbA1c by less than its 0.1 % resolution


def test_a_shorter_slope_window_still_rebuilds_every_history_feature(ward_engine):
    """The scenario rebuilds features from the last checkups only; with a 2-checkup slope the
    history levels still read three (FeatureConfig.lookback), so nothing undeclared moves."""
    from features.build import FeatureConfig
    from scoring.score import index_features, load_scoring_config, scenario_features

    ward, engine = ward_engine
    fc = FeatureConfig(slope_window=2)
    base = index_features(ward.history, ward.index, fc)
    sc = {s.key: s for s in load_scoring_config().scenarios}["exercise"]
    applies, feats = scenario_features(ward.history, ward.index, base, sc, fc)
    before = base.loc[applies, engine.feature_names].reset_index(drop=True)
    after = feats[engine.feature_names].reset_index(drop=True)
    assert before["urine_protein_max3"].notna().any()
    _assert_moves_towards_lower_risk(sc.key, before, after)


def test_a_lever_moves_an_items_mean_of_three_as_much_as_the_item(ward_engine):
    """A what-if moves the resident's level: where the lab response moves a lipid by δ, its
    mean over the last three checkups moves by δ too, not δ/3 (the trees read the mean as the
    level; docs/models.md §The lipids' mean of three)."""
    from features.build import FeatureConfig, as_float
    from features.declarations import HISTORY_LEVELS
    from scoring.score import index_features, load_scoring_config, scenario_features

    ward, engine = ward_engine
    fc = FeatureConfig()
    base = index_features(ward.history, ward.index, fc)
    checked = 0
    for sc in load_scoring_config().scenarios:
        built = scenario_features(
            ward.history, ward.index, base, sc, fc, engine.lab_response, engine.lab_scale
        )
        before = base.loc[built.applies]
        for name, item, how in HISTORY_LEVELS:
            if how != "mean" or item == "egfr":  # no risk model reads a moved eGFR
                continue
            moved = as_float(built.features[item]) - as_float(before[item])
            shift = as_float(built.features[name]) - as_float(before[name])
            on = np.abs(moved) > 1e-9
            np.testing.assert_allclose(shift[on], moved[on], atol=1e-9, err_msg=(sc.key, name))
            assert (shift[~on & ~np.isnan(shift)] == 0).all(), (sc.key, name)
            checked += int(on.sum())
    assert checked > 100


def test_a_moved_egfr_reaches_the_ckd_what_if_but_not_the_risk_models(ward_engine):
    """eGFR follows the body's move (a lab of the lab response, higher = lower CKD risk), but it
    has no declared direction as a feature: the rebuilt features hold it at its value, so no
    risk model reads it moved, and the moved value is handed on (ScenarioRows.held) for CKD's
    what-if through the eGFR forecast (docs/models.md §CKD through the forecasts)."""
    from features.build import FeatureConfig, as_float
    from scoring.score import (
        _scenario_predict,
        index_features,
        load_scoring_config,
        scenario_features,
    )

    ward, engine = ward_engine
    fc = FeatureConfig()
    base = index_features(ward.history, ward.index, fc)
    table = engine.lab_response.copy()
    on = (table["lab"] == "egfr") & (table["term"] == "weight_kg")
    table.loc[on, ["coef", "kept"]] = [-0.05, True]  # 3 kg less: eGFR up by 0.15 SD
    sc = {s.key: s for s in load_scoring_config().scenarios}["weight_loss_3kg"]
    built = scenario_features(ward.history, ward.index, base, sc, fc, table, engine.lab_scale)
    before = as_float(base.loc[built.applies, "egfr"])
    np.testing.assert_array_equal(as_float(built.features["egfr"]), before)
    moved = as_float(built.held["egfr"])
    known = ~np.isnan(before)
    assert (moved[known] >= before[known]).all() and (moved[known] > before[known]).mean() > 0.9
    assert np.isnan(moved[~known]).all()
    X = built.features[engine.feature_names].to_numpy("float64")
    read = _scenario_predict(engine, built, X, values=("egfr", "sbp"))
    np.testing.assert_array_equal(read["value_egfr"].to_numpy(), moved)
    np.testing.assert_array_equal(read["value_sbp"].to_numpy(), as_float(built.features["sbp"]))


def _assert_moves_towards_lower_risk(key, before, after):
    direction = {d.name: d.monotone for d in DECLARATIONS}
    for name in before.columns:
        a = before[name].to_numpy(dtype="float64", na_value=np.nan)
        b = after[name].to_numpy(dtype="float64", na_value=np.nan)
        moved = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if not moved.any():
            continue
        assert direction[name] != 0, (key, name)
        assert not (np.isnan(a) | np.isnan(b))[moved].any(), (key, name, "missingness")
        assert ((b - a)[moved] * direction[name] < 0).all(), (key, name)


def test_scenario_risk_mixes_the_two_recorded_hba1c_values(ward_engine):
    """Where the what-if moves HbA1c between two recorded values, its risk is the mix of the
    model read at both, (1 − w)·f(upper) + w·f(lower): between the two, never outside (each
    read as a move from the resident's own row, as a forecast stack reads a what-if)."""
    from features.build import FeatureConfig, to_matrix
    from scoring.score import index_features, load_scoring_config, scenario_features, scenario_risks

    ward, engine = ward_engine
    fc = FeatureConfig()
    base = index_features(ward.history, ward.index, fc)
    sc = {s.key: s for s in load_scoring_config().scenarios}["exercise"]
    built = scenario_features(
        ward.history, ward.index, base, sc, fc, engine.lab_response, engine.lab_scale
    )
    pos, w, low = built.down
    before = to_matrix(base.loc[built.applies], engine.feature_names)
    up = engine.predict_proba(to_matrix(built.features, engine.feature_names), moved_from=before)
    down = engine.predict_proba(to_matrix(low, engine.feature_names), moved_from=before[pos])
    ((_, rows, p),) = scenario_risks(engine, ward.history, ward.index, base, (sc,), fc)
    np.testing.assert_array_equal(rows, np.flatnonzero(built.applies))
    for o in engine.outcomes:
        u, d = up[f"risk_{o}"].to_numpy()[pos], down[f"risk_{o}"].to_numpy()
        got = p[f"risk_{o}"].to_numpy()
        np.testing.assert_allclose(got[pos], (1 - w) * u + w * d, rtol=0, atol=1e-15)
        assert (got[pos] <= u + 1e-15).all() and (got[pos] >= d - 1e-15).all()
        rest = np.setdiff1d(np.arange(len(got)), pos)
        np.testing.assert_array_equal(got[rest], up[f"risk_{o}"].to_numpy()[rest])
    diabetes = p["risk_diabetes"].to_numpy()[pos] - up["risk_diabetes"].to_numpy()[pos]
    assert (diabetes < 0).any()  # the sub-step HbA1c move is seen


def test_set_scenarios_apply_only_where_they_lower_risk(ward_engine):
    """A ``set`` without ``when`` applies only to residents it moves towards lower risk: "quit
    smoking" never turns a never-smoker into an ex-smoker."""
    from features.build import FeatureConfig
    from scoring.score import WhatIfScenario, index_features, scenario_features

    ward, _ = ward_engine
    fc = FeatureConfig()
    base = index_features(ward.history, ward.index, fc)
    sc = WhatIfScenario(key="q", label_ja="q", set={"q_smoking": 2})
    applies, _ = scenario_features(ward.history, ward.index, base, sc, fc)
    smoking = base["q_smoking"].to_numpy(dtype="float64", na_value=np.nan)
    np.testing.assert_array_equal(applies, smoking == 1)


def test_lab_response_lowers_risk_at_least_as_much(ward_engine):
    """With the labs following the lever the risk falls at least as far as with the lever
    alone (the labs move only the risk-lowering way), and further for some residents."""
    from features.build import FeatureConfig
    from scoring.score import index_features, load_scoring_config, scenario_risks

    ward, engine = ward_engine
    fc = FeatureConfig()
    base = index_features(ward.history, ward.index, fc)
    scenarios = load_scoring_config().scenarios
    args = (engine, ward.history, ward.index, base, scenarios, fc)
    further = 0
    for (sc, rows, p), (_, rows0, p0) in zip(
        scenario_risks(*args, lab_response=True), scenario_risks(*args, lab_response=False),
        strict=True,
    ):  # fmt: skip
        np.testing.assert_array_equal(rows, rows0)
        if p is None:
            continue
        for o in engine.outcomes:
            a, b = p[f"risk_{o}"].to_numpy(), p0[f"risk_{o}"].to_numpy()
            assert (a <= b + 1e-12).all(), (sc.key, o, float((a - b).max()))
            further += int((a < b - 1e-6).sum())
    assert further > 0
