"""The what-if as the engine's pooled odds ratio (scoring.whatif_effect).

The pooling on constructed changes (weights, doses, the never-rising guarantee), the guard
that a pooled effect applies only to the scenario it was fitted for, and on a small trained
ward: the table a training run fits, and scoring applying exactly that odds ratio without
re-scoring the scenario.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecast_chance import JOINT_OUTCOMES, forecast_outcomes
from scoring.score import WhatIfScenario, load_scoring_config
from scoring.whatif_effect import (
    ALL_DOSES,
    COLUMNS,
    MIN_DOSE_ROWS,
    PooledChange,
    pool_effects,
    pooled_change,
    scenario_definition,
    scenario_dose,
)


def _logit(p):
    return np.log(p / (1 - p))


def test_pool_is_the_information_weighted_mean_log_odds_change():
    risk = np.array([0.5, 0.1, 0.01])
    delta = np.array([-0.2, -0.4, -1.0])
    new = 1 / (1 + np.exp(-(_logit(risk) + delta)))
    (row,) = pool_effects(risk, new, np.array(["", "", ""], dtype=object))
    w = risk * (1 - risk)
    assert row["dose"] == ALL_DOSES and row["n"] == 3
    assert row["log_odds_change"] == pytest.approx((w * delta).sum() / w.sum())
    assert row["se"] > 0


def test_a_pool_matching_the_mean_risk_holds_where_the_changes_are_large():
    """Residents whose log-odds move far (a joint chance moved from near 0): the weighted mean
    overshoots the mean risk change, the matching pool reproduces it; for small changes the
    two agree (the weighted mean is the first-order solution)."""
    rng = np.random.default_rng(0)
    risk = rng.uniform(0.02, 0.4, 500)
    big = -rng.exponential(2.0, 500)
    new = 1 / (1 + np.exp(-(_logit(risk) + big)))
    dose = np.full(500, "", dtype=object)
    (weighted,) = pool_effects(risk, new, dose)
    (matched,) = pool_effects(risk, new, dose, match_mean=True)

    def mean_after(delta):
        return (1 / (1 + np.exp(-(_logit(risk) + delta)))).mean()

    assert mean_after(matched["log_odds_change"]) == pytest.approx(new.mean(), rel=1e-6)
    assert mean_after(weighted["log_odds_change"]) < new.mean() - 0.01  # overshoots
    assert matched["se"] > 0
    small = 1 / (1 + np.exp(-(_logit(risk) + big / 50)))
    (w,) = pool_effects(risk, small, dose)
    (m,) = pool_effects(risk, small, dose, match_mean=True)
    assert m["log_odds_change"] == pytest.approx(w["log_odds_change"], rel=0.05)
    (none,) = pool_effects(risk, risk + 1e-9, dose, match_mean=True)
    assert none["log_odds_change"] == 0.0


def test_a_dose_gets_its_own_row_only_with_enough_residents():
    n_big, n_small = MIN_DOSE_ROWS, MIN_DOSE_ROWS - 1
    risk = np.full(n_big + n_small, 0.2)
    delta = np.r_[np.full(n_big, -0.1), np.full(n_small, -0.5)]
    new = 1 / (1 + np.exp(-(_logit(risk) + delta)))
    dose = np.array(["a=2"] * n_big + ["a=4"] * n_small, dtype=object)
    rows = {r["dose"]: r for r in pool_effects(risk, new, dose)}
    assert set(rows) == {ALL_DOSES, "a=2"}
    assert rows["a=2"]["log_odds_change"] == pytest.approx(-0.1)
    assert rows[ALL_DOSES]["log_odds_change"] == pytest.approx(delta.mean())


def test_a_rise_never_enters_the_pool():
    """Monotone models never raise a risk; a rounding rise must not make the pool positive."""
    risk = np.array([0.3, 0.3])
    (row,) = pool_effects(risk, risk + 1e-9, np.array(["", ""], dtype=object))
    assert row["log_odds_change"] == 0.0


def _table(scenario: WhatIfScenario, outcome: str, rows: dict[str, float]) -> pd.DataFrame:
    d = scenario_definition(scenario, True)
    t = pd.DataFrame(
        [
            {
                "scenario": scenario.key,
                "definition": d,
                "outcome": outcome,
                "dose": k,
                "n": 100,
                "log_odds_change": v,
                "se": 0.01,
            }
            for k, v in rows.items()
        ]  # fmt: skip
    )
    t["odds_ratio"] = np.exp(t["log_odds_change"])
    return t.reindex(columns=list(COLUMNS))


def _alcohol() -> WhatIfScenario:
    return next(s for s in load_scoring_config().scenarios if s.key == "less_alcohol")


def test_pooled_change_uses_the_dose_row_and_falls_back_to_all_doses():
    sc = _alcohol()
    table = _table(sc, "liver", {ALL_DOSES: -0.3, "q_alcohol_amount=3": -0.6})
    base = pd.DataFrame({"q_alcohol_amount": pd.array([3, 2, 4], dtype="Int8")})
    assert list(scenario_dose(sc, base)) == [f"q_alcohol_amount={v}" for v in (3, 2, 4)]
    pooled = pooled_change(table, sc, True, ("liver",), base)
    assert pooled is not None
    np.testing.assert_allclose(pooled.change["liver"], [-0.6, -0.3, -0.3])
    risk = np.array([0.2, 0.2, 0.0])
    new = pooled.risks("liver", risk)
    np.testing.assert_allclose(_logit(new[:2]) - _logit(risk[:2]), [-0.6, -0.3])
    assert new[2] == 0.0  # a zero risk stays zero


def test_a_pooled_effect_applies_only_to_the_scenario_it_was_fitted_for():
    sc = _alcohol()
    base = pd.DataFrame({"q_alcohol_amount": pd.array([3], dtype="Int8")})
    table = _table(sc, "liver", {ALL_DOSES: -0.3})
    assert pooled_change(table, sc, True, ("liver",), base) is not None
    # another outcome of the engine without a row, the lab-response switch off, an edit
    assert pooled_change(table, sc, True, ("liver", "ckd"), base) is None
    assert pooled_change(table, sc, False, ("liver",), base) is None
    edited = sc.model_copy(update={"when": sc.when[:1]})
    assert pooled_change(table, edited, True, ("liver",), base) is None
    relabelled = sc.model_copy(update={"label_ja": "お酒を控える"})
    assert pooled_change(table, relabelled, True, ("liver",), base) is not None
    assert pooled_change(None, sc, True, ("liver",), base) is None


def test_pooled_risks_never_rise():
    rng = np.random.default_rng(0)
    risk = rng.uniform(0, 1, 1000)
    change = {"x": -rng.exponential(0.3, 1000)}
    assert (PooledChange(change).risks("x", risk) <= risk).all()


@pytest.fixture(scope="module")
def pooled_ward(tmp_path_factory):
    """A small trained ward with the engine's pooled what-if table, fitted as run_train fits
    it (the year before the test year)."""
    from data.store import read_checkups
    from features.build import FeatureConfig
    from models.config import ModelConfig
    from models.lab_response import fit_response_tables
    from models.train import train_engine
    from scoring.whatif_effect import fit_training_effects
    from tests.models.ward_helpers import make_ward

    ward = make_ward(tmp_path_factory.mktemp("pooled"), residents=2_000, years=5, seed=3)
    engine, _ = train_engine(ward.features, ward.labels, ModelConfig())  # with value forecasts
    checkups = read_checkups(ward.store)
    engine.lab_response, engine.lab_scale = fit_response_tables(checkups, engine.test_year)
    engine.whatif_effect = fit_training_effects(
        engine, checkups, ward.labels, engine.test_year - 1, FeatureConfig()
    )
    return ward, engine, checkups


def test_training_fits_every_scenario_and_outcome(pooled_ward):
    _, engine, _ = pooled_ward
    t = engine.whatif_effect
    assert tuple(t.columns) == COLUMNS
    every = t[t["dose"] == ALL_DOSES]
    keys = load_scoring_config().scenario_keys
    assert {(s, o) for s, o in zip(every["scenario"], every["outcome"], strict=True)} == {
        (s, o) for s in keys for o in engine.outcomes
    }
    assert (t["log_odds_change"] <= 0).all() and (t["n"] > 0).all()
    assert (t["odds_ratio"] <= 1).all()
    assert (every["log_odds_change"] < 0).sum() >= len(every) // 2  # most scenarios do lower
    # read through the value forecasts where every defining item is forecast (CKD's urine
    # protein through a dipstick model, which this 2,000-resident ward has too few events
    # for: its CKD keeps the trees'); metabolic syndrome jointly, through the forecasts'
    # dependence the engine carries
    method = dict(zip(t["outcome"], t["method"], strict=True))
    assert engine.forecast_dependence is not None and engine.dipstick_chance is None
    read = forecast_outcomes(engine.outcomes, engine.forecast_items, joint=True)
    assert {"hypertension", "dyslipidemia", "metabolic_syndrome"} <= set(read)
    assert method == {
        o: "joint" if o in JOINT_OUTCOMES else "forecasts" if o in read else "trees"
        for o in engine.outcomes
    }


def test_scoring_applies_the_pooled_odds_ratio(pooled_ward):
    """score_chunk: where a scenario is offered, its risk is exactly the pooled odds ratio
    applied to the resident's risk; per_resident re-scores the trees as before."""
    from features.build import FeatureConfig
    from scoring.score import index_features, scenario_applies, score_chunk

    ward, engine, checkups = pooled_ward
    fc = FeatureConfig()
    index = ward.index.head(600).reset_index(drop=True)
    history = checkups[checkups["pseudonym"].isin(index["pseudonym"])]
    cfg = load_scoring_config()
    pooled, _ = score_chunk(engine, history, index, cfg, fc)
    per_res, _ = score_chunk(
        engine, history, index, cfg.model_copy(update={"scenario_effect": "per_resident"}), fc
    )
    base = index_features(history, index, fc)
    checked = 0
    for sc in cfg.scenarios:
        applies = scenario_applies(base, sc)
        change = pooled_change(engine.whatif_effect, sc, True, engine.outcomes, base[applies])
        for o in engine.outcomes:
            col, now = f"risk_{o}__{sc.key}", pooled[f"risk_{o}"].to_numpy()
            got = pooled[col].to_numpy()
            assert np.isnan(got[~applies]).all() and np.isnan(per_res[col][~applies]).all()
            want = change.risks(o, now[applies])
            offered = now[applies] - want >= cfg.scenario_min_drop
            np.testing.assert_allclose(got[applies][offered], want[offered], rtol=1e-12)
            assert np.isnan(got[applies][~offered]).all()
            checked += int(offered.sum())
    assert checked > 100
    risks = [f"risk_{o}" for o in engine.outcomes]
    assert pooled[risks].equals(per_res[risks])  # only the what-if differs
    differs = [c for c in pooled.columns if "__" in c and not pooled[c].equals(per_res[c])]
    assert differs
