"""Scoring core on hand-made frames: config validation, eligibility, scenarios, risk bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from scoring.score import (
    RiskBands,
    ScoringConfig,
    WhatIfScenario,
    apply_scenario,
    eligible_residents,
    load_scoring_config,
)


def test_shipped_config_is_valid_and_known_to_the_letter_catalogue():
    from scoring.letters import load_catalogue

    cfg = load_scoring_config()
    assert len(cfg.scenarios) >= 5
    assert set(cfg.scenario_keys) <= set(load_catalogue().whatif)
    assert cfg.digest() == load_scoring_config().digest()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"key": "x", "label_ja": "x", "set": {"favourite_colour": 1}}, "unknown checkup columns"),
        ({"key": "x", "label_ja": "x", "set": {"q_smoking": 9}}, "not an allowed code"),
        ({"key": "x", "label_ja": "x"}, "changes nothing"),
        ({"key": "X y", "label_ja": "x", "set": {"q_smoking": 2}}, "pattern"),
    ],
)
def test_bad_scenarios_are_refused_with_a_reason(bad, message):
    with pytest.raises(ValidationError, match=message):
        WhatIfScenario.model_validate(bad)


def test_duplicate_scenarios_and_unknown_keys_are_refused():
    s = {"key": "a", "label_ja": "a", "set": {"q_smoking": 2}}
    with pytest.raises(ValidationError, match="duplicate"):
        ScoringConfig.model_validate({"scenario": [s, s]})
    with pytest.raises(ValidationError, match="chunksize"):
        ScoringConfig.model_validate({"chunksize": 10})


def test_weight_scenario_moves_waist_and_recomputes_bmi():
    sc = WhatIfScenario(key="w", label_ja="w", add={"weight_kg": -3.0, "waist_cm": -3.0})
    rows = pd.DataFrame(
        {"height_cm": [170.0, np.nan], "weight_kg": [80.0, 70.0], "waist_cm": [92.0, 88.0],
         "bmi": [27.7, 24.0]}
    )  # fmt: skip
    out = apply_scenario(rows, sc)
    assert out["weight_kg"].tolist() == [77.0, 67.0]
    assert out["waist_cm"].tolist() == [89.0, 85.0]
    assert out["bmi"].iloc[0] == pytest.approx(77 / 1.7**2, abs=0.05)
    assert out["bmi"].iloc[1] == 24.0  # no height: BMI kept as measured
    assert rows["weight_kg"].tolist() == [80.0, 70.0]  # input untouched


def test_risk_bands():
    bands = RiskBands()
    got = bands.band(np.array([0.05, 0.1, 0.25, 0.5, np.nan]))
    assert got.tolist() == ["low", "moderate", "high", "very_high", None]
    with pytest.raises(ValidationError, match="increase"):
        RiskBands(moderate=0.3, high=0.2, very_high=0.4)


def _candidates():
    return pd.DataFrame(
        {
            "pseudonym": ["a", "a", "b", "c", "d", "e"],
            "fiscal_year": [2024, 2025, 2024, 2025, 2025, 2025],
            "exam_date": pd.to_datetime(
                ["2024-06-01", "2025-06-01", "2024-07-01", "2025-05-01", "2025-05-01", "2025-08-01"]
            ),
            "age": [60, 61, 74, 39, 50, 45],
            "sex": [1, 1, 2, 1, 2, 2],
        }
    )


def _enrollment():
    return pd.DataFrame(
        {
            "pseudonym": ["a", "b", "c", "d", "e", "z"],
            "enrolled_from": pd.to_datetime(["2010-04-01"] * 5 + ["2020-04-01"]),
            "enrolled_until": pd.to_datetime([None, None, None, "2025-12-31", None, None]),
        }
    )


def test_eligibility_rules_and_counts():
    cfg = ScoringConfig()
    el = eligible_residents(_candidates(), _enrollment(), 2025, pd.Timestamp("2026-04-01"), cfg)
    idx = el.index.set_index("pseudonym")
    # a: FY checkup (latest); b: 74 in FY2024 → 75 at the end of FY2025: out; c: 39: out;
    # d: left the NHI before the scoring date; e: fine.
    assert list(idx.index) == ["a", "e"]
    assert idx.loc["a", "index_fiscal_year"] == 2025 and idx.loc["a", "age"] == 61
    c = el.counts
    assert c["not_enrolled"] == 1 and c["age_out_of_range"] == 2
    assert c["enrolled_without_recent_checkup"] == 1  # z
    assert c["with_checkup"] == c["eligible"] + c["not_enrolled"] + c["age_out_of_range"]


def test_fallback_to_the_previous_year_is_configurable():
    cands = _candidates()
    cands.loc[2, "age"] = 70  # b: FY2024 only
    day = pd.Timestamp("2026-04-01")
    with_fb = eligible_residents(cands, _enrollment(), 2025, day, ScoringConfig())
    assert "b" in set(with_fb.index["pseudonym"])
    b = with_fb.index.set_index("pseudonym").loc["b"]
    assert b["index_fiscal_year"] == 2024 and b["age"] == 71
    no_fb = eligible_residents(
        cands, _enrollment(), 2025, day, ScoringConfig(fallback_previous_year=False)
    )
    assert "b" not in set(no_fb.index["pseudonym"])


def test_every_modifiable_feature_has_an_advice_rule():
    from features.declarations import modifiable_features
    from scoring.score import FACTOR_RULES

    assert set(modifiable_features()) <= set(FACTOR_RULES)


def test_factors_are_only_advised_where_there_is_something_to_change():
    from scoring.score import advisable

    feats = pd.DataFrame(
        {"bmi": [20.0, 26.0, np.nan], "q_sleep": [1, 2, np.nan], "alcohol_g_per_day": [0.0, 40.0, 10.0],
         "age": [50, 50, 50]}
    )  # fmt: skip
    names = ["bmi", "q_sleep", "alcohol_g_per_day", "age"]
    got = advisable(feats, names)
    assert got.tolist() == [
        [False, False, False, False],  # thin, rested, non-drinker: nothing to advise
        [True, True, True, False],  # age is never advised on
        [False, False, False, False],  # missing values never qualify
    ]
