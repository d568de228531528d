"""What-if against the true counterfactual (scoring.whatif_truth).

The metric definitions on constructed changes, then one small ward (3,000 residents × 6
years, LightGBM on every outcome) judged on its test year: the table's shape, the sign
target (met), a stated floor for the size of the change, the change read through the value
forecasts against the trees', and the size target (not met: see the xfail reason).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from scoring.whatif_truth import (
    COLUMNS,
    LETTER_COLUMNS,
    TARGETS,
    JudgedCell,
    _cell,
    letters_table,
    whatif_truth_metrics,
)

pytestmark = pytest.mark.xdist_group("whatif_truth_ward")

K = 64


def test_sign_agreement_counts_only_material_true_changes():
    true = np.array([-1, -2, 2, -3, 0, 0]) / K  # −1/64 and 0 are below the truth's resolution
    model = np.full(6, -0.01)
    c = _cell(model, true, 2 / K)
    assert c["n_material"] == 3
    assert c["sign_agreement"] == pytest.approx(2 / 3)
    assert c["true_rise_share"] == pytest.approx(1 / 6)
    assert c["mean_true_change"] == pytest.approx(true.mean())


def test_a_perfect_model_has_no_error_and_an_offset_shows_in_both_maes():
    rng = np.random.default_rng(0)
    true = -rng.integers(0, 10, 1000) / K
    c = _cell(true.copy(), true, 2 / K)
    assert c["mae_change"] == 0 and c["mae_ratio"] == 0 and c["mae_ratio_binned"] == 0
    c = _cell(true - 0.01, true, 2 / K)
    assert c["mae_ratio"] == pytest.approx(0.01 / abs(true.mean()))
    assert c["mae_ratio_binned"] == pytest.approx(0.01 / abs(true.mean()))


def test_monte_carlo_noise_inflates_the_per_resident_error_not_the_binned_one():
    """A model that knows every resident's true change exactly (0.5 point), judged against a
    truth counted over 64 futures: per resident the error is larger than the change itself,
    over groups it is small — why the size target is judged on the binned ratio."""
    rng = np.random.default_rng(1)
    p = np.full(5000, 0.005)
    true = -rng.binomial(K, p) / K
    c = _cell(-p, true, 2 / K)
    assert c["mae_ratio"] > 1.0
    assert c["mae_ratio_binned"] < TARGETS["mae_ratio_binned"]


def test_a_letter_is_judged_on_the_scenario_it_prints():
    """Per resident, the offered scenario with the largest drop (the first on a tie), judged
    against that scenario's own true change; a drop under the offer threshold, a resident
    not at risk, or a printed scenario without truth is not judged."""
    rows = np.arange(5)
    ok = np.array([True, True, True, False, True])
    judged = [
        JudgedCell("a", "diabetes", rows, np.array([-0.03, -0.01, -0.02, -0.05, -0.0001]),
                   np.array([-0.02, -0.01, -0.04, -0.05, 0.0]), ok),
        JudgedCell("b", "diabetes", rows[:3], np.array([-0.01, -0.04, -0.02]),
                   np.array([-0.5, -0.03, -0.9]), np.array([True, True, True])),
        JudgedCell("a", "liver", rows, np.zeros(5), np.zeros(5), ok),
    ]  # fmt: skip
    t = letters_table(judged, 5, ("diabetes", "liver"), min_drop=0.001).set_index("outcome")
    assert tuple(t.reset_index().columns) == LETTER_COLUMNS
    d = t.loc["diabetes"]
    # resident 0 → a (−0.03, true −0.02); 1 → b (−0.04, true −0.03); 2 → a on the tie
    # (−0.02, true −0.04); 3 → a, not at risk; 4 → nothing offered
    assert d["n_letters"] == 3
    assert d["mean_model_change"] == pytest.approx(-0.03)
    assert d["mean_true_change"] == pytest.approx(-0.03)
    assert d["scenarios"] == "a 67%, b 33%"
    assert t.loc["liver", "n_letters"] == 0 and not t.loc["liver", "meets_targets"]
    m = whatif_truth_metrics(pd.DataFrame(columns=list(COLUMNS)), t.reset_index())
    assert m["whatif_letter.outcomes_judged"] == 1
    assert m["whatif_letter.diabetes.mae_ratio_binned"] == pytest.approx(d["mae_ratio_binned"])


class WardTables(NamedTuple):
    """The small ward's judgement: the shipped engine's cells, their MLflow scalars and its
    letters' table; the cells of the same engine without its value forecasts (trees); the
    engine."""

    cells: pd.DataFrame
    metrics: dict[str, float]
    trees: pd.DataFrame
    letters: pd.DataFrame
    engine: object = None


@pytest.fixture(scope="module")
def whatif_table(tmp_path_factory) -> WardTables:
    from data.store import read_checkups
    from features.build import FeatureConfig
    from kenshin.commands import read_truth
    from models.config import ModelConfig
    from models.lab_response import fit_response_tables
    from models.train import dipstick_model, prepare_forecasts, train_engine
    from scoring.whatif_effect import fit_training_effects
    from scoring.whatif_truth import whatif_truth_report
    from tests.conftest import TEST_KEY, temporary_env
    from tests.models.ward_helpers import make_ward

    tmp = tmp_path_factory.mktemp("whatif_truth")
    ward = make_ward(tmp, residents=3_000, years=6, seed=7)
    config = ModelConfig(min_events=0)  # with the value forecasts, as the shipped engine
    engine, _ = train_engine(ward.features, ward.labels, config)
    # this ward's training rows hold 17 dipstick events, under the floor of 20
    # (min_events_fallback): fitted on 10 so that CKD's what-if is read as on a larger ward
    assert engine.dipstick_chance is None
    fset = prepare_forecasts(ward.features, engine.test_year, config)
    engine.dipstick_chance = dipstick_model(fset, 10)
    checkups = read_checkups(ward.store)
    engine.lab_response, engine.lab_scale = fit_response_tables(
        checkups, engine.test_year
    )  # as run_train does
    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY):
        truth = read_truth(tmp / "bundle" / "truth.csv")
    tables = {}
    # the trees' what-if for every outcome: the same engine without its forecasts
    trees = copy.copy(engine)
    trees.forecast_items = ()
    for name, e in [("trees", trees), ("shipped", engine)]:
        e.whatif_effect = fit_training_effects(
            e, checkups, ward.labels, e.test_year - 1, FeatureConfig()
        )
        report = whatif_truth_report(
            e, checkups, ward.labels, truth, e.test_year, config, FeatureConfig()
        )
        assert report is not None
        tables[name] = report
    shipped, trees = tables["shipped"], tables["trees"]
    return WardTables(
        shipped.table.table, shipped.metrics, trees.table.table, shipped.letters.table, engine
    )


def test_table_has_every_scenario_and_outcome(whatif_table):
    from data.columns import OUTCOMES
    from scoring.score import load_scoring_config

    table, metrics, letters = whatif_table.cells, whatif_table.metrics, whatif_table.letters
    assert tuple(table.columns) == COLUMNS
    keys = load_scoring_config().scenario_keys
    assert len(table) == len(keys) * len(OUTCOMES)
    assert set(zip(table["scenario"], table["outcome"], strict=True)) == {
        (s, o) for s in keys for o in OUTCOMES
    }
    assert (table["n_offered"] <= table["n_applicable"]).all()
    assert (table.groupby("scenario")["n_applicable"].max() > 20).all()  # truth found for all
    offered = table[table["n_offered"] > 0]
    assert len(offered) >= 10
    assert (offered["mean_model_change"] <= -0.001).all()  # offered = lowered by ≥ min_drop
    assert metrics == whatif_truth_metrics(table, letters)
    assert metrics["whatif.cells_judged"] >= 5


def test_letters_table_judges_what_the_cells_offer(whatif_table):
    """Every outcome has a row; a letter's scenario is one of the offered cells, so its
    residents are at most the cells' offers together, and some wherever a cell offers any;
    the printed what-if lowers the risk and keeps the sign target."""
    from data.columns import OUTCOMES

    table, letters = whatif_table.cells, whatif_table.letters
    assert tuple(letters.columns) == LETTER_COLUMNS
    assert list(letters["outcome"]) == list(OUTCOMES)
    offers = table.groupby("outcome")["n_offered"].agg(["sum", "max"])
    n = letters.set_index("outcome")["n_letters"]
    offers = offers.reindex(n.index)
    assert (n <= offers["sum"]).all()
    assert (n[offers["max"] > 0] > 0).all()
    judged = letters[letters["n_letters"] >= 30]
    assert len(judged) >= 5
    assert (judged["sign_agreement"] >= TARGETS["sign_agreement"]).all()
    assert (judged["mean_model_change"] < 0).all()


#: Scenarios whose latent effects point both ways in the ward (medically so): drinking less
#: lowers HDL (MetS lipid criterion). The model, monotone by declaration, cannot say so.
#: (Quitting smoking is advised, and simulated, without the post-cessation weight gain.)
MIXED = ("less_alcohol",)


def test_sign_target_is_met_where_the_true_effect_points_one_way(whatif_table):
    """Sign agreement ≥ 0.95 in every cell with ≥ 10 material true changes, for every scenario
    whose latent effects all lower risk (not :data:`MIXED`; on a 40,000-resident ward
    less_alcohol × MetS misses it, 0.90)."""
    table = whatif_table.cells
    judged = table[(table["n_material"] >= 10) & ~table["scenario"].isin(MIXED)]
    assert len(judged) >= 5, table
    bad = judged[judged["sign_agreement"] < TARGETS["sign_agreement"]]
    assert bad.empty, bad.to_string()
    assert (judged["true_rise_share"] <= 0.05).all()


def test_size_floor_weight_loss_and_metabolic_syndrome(whatif_table):
    """A stated floor, not the target: where the lever is part of the outcome's definition
    (waist in メタボ) the model's change is of the right size — binned error below the mean
    true change itself — and every offered cell's mean true change is negative (the model
    never offers a change the truth says is harmful on average) outside :data:`MIXED`."""
    table = whatif_table.cells
    t = table.set_index(["scenario", "outcome"])
    assert t.loc[("weight_loss_3kg", "metabolic_syndrome"), "mae_ratio_binned"] <= 1.0
    offered = table[(table["n_offered"] >= 30) & ~table["scenario"].isin(MIXED)]
    assert len(offered) >= 5
    assert (offered["mean_true_change"] < 0).all(), offered.to_string()


def test_every_outcome_reads_its_what_if_through_the_forecasts(whatif_table):
    """Every outcome's what-if is read through the value forecasts (scoring.whatif_liability;
    metabolic syndrome jointly, with the forecasts' dependence; CKD through the eGFR forecast
    and the engine's urine dipstick model), not the trees; an engine without a dipstick model
    keeps the trees' for CKD.
    Which of the two comes nearer the true change is a figure over wards, not a property of
    each: the forecasts meet the size target in 125 cells of eight 10k wards, the trees in 103,
    but the trees meet it in more cells on two wards of nine
    (docs/models.md §The lipids' mean of three; per ward: bench/whatif_parts.py)."""
    from data.columns import OUTCOMES
    from models.config import FORECAST_ITEMS
    from models.forecast_chance import forecast_outcomes
    from scoring.whatif_effect import via_forecasts

    table, trees = whatif_table.cells, whatif_table.trees
    read = forecast_outcomes(OUTCOMES, FORECAST_ITEMS, True, ("urine_protein",))
    assert set(read) == set(OUTCOMES)
    assert set(forecast_outcomes(OUTCOMES, FORECAST_ITEMS, joint=True)) == set(OUTCOMES) - {"ckd"}
    cells = table[table["n_offered"] >= 30]
    both = cells.merge(trees, on=["scenario", "outcome"], suffixes=("", "_trees"))
    assert len(both) >= 10
    assert (both["mean_model_change"] != both["mean_model_change_trees"]).mean() > 0.9
    for outcome in ("metabolic_syndrome", "ckd"):
        mine = both[both["outcome"] == outcome]
        assert len(mine) and (mine["mean_model_change"] != mine["mean_model_change_trees"]).all()
    engine = whatif_table.engine
    assert "ckd" in via_forecasts(engine, True)
    older = copy.copy(engine)
    older.dipstick_chance = None
    assert "ckd" not in via_forecasts(older, True)
    assert set(via_forecasts(older, True)) == set(engine.outcomes) - {"ckd"}


@pytest.mark.xfail(
    strict=True,
    reason="known gap on small wards: the what-if is the engine's pooled odds ratio per "
    "scenario × outcome × dose (scoring.whatif_effect), read through the value forecasts "
    "(scoring.whatif_liability) where every item of the outcome is forecast, with weight, "
    "waist and every declared lab following the lever (models.lab_response). On this ward "
    "about a third of the judged cells meet mae_ratio_binned ≤ 0.30, on the demo's 10k ward "
    "26 of 46; at 100k 42 of 48 (88 %) do: on small wards the lab response's moves "
    "miss (a habit's effect on LDL, ALT or eGFR from a few thousand checkups)",
)
def test_size_target_is_met(whatif_table):
    table = whatif_table.cells
    judged = table.dropna(subset=["mae_ratio_binned"])
    judged = judged[judged["n_offered"] >= 30]
    share = (judged["mae_ratio_binned"] <= TARGETS["mae_ratio_binned"]).mean()
    assert share >= 0.8, pd.Series(judged["mae_ratio_binned"].to_numpy()).describe()
