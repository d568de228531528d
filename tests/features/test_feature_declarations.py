"""Declarations: one table describes every built column, and it is complete and stable."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

import features.declarations as decl
from features import build_features
from features.declarations import (
    DECLARATIONS,
    FEATURE_SET_VERSION,
    KEYS,
    declarations_frame,
    feature_names,
    monotone_constraints,
)
from tests.features.feature_helpers import fake_checkups

#: Lab values with a medically clear direction (not levers).
LAB_MONOTONE = {"hba1c", "fpg", "sbp", "dbp", "tg", "ldl"}
#: The declared direction of every lifestyle answer, in its 2024 code order.
CODE_DIRECTION = {
    "q_smoking": -1,  # 1 smokes, 2 quit, 3 never
    "q_alcohol_freq": -1,  # 1 daily … 6 <1 day/month, 7 quit, 8 never
    "q_alcohol_amount": 1,  # 1 <1 合 … 5 ≥5 合
    "q_late_dinner": -1,  # 1 yes
    "q_snacks": -1,  # 1 daily, 2 sometimes, 3 hardly ever
    "q_skip_breakfast": -1,  # 1 yes
    "q_eating_speed": -1,  # 1 fast, 2 normal, 3 slow
    "q_exercise": 1,  # 2 no
    "q_walking": 1,
    "q_walk_fast": 1,
    "q_sleep": 1,  # 2 not rested
}


def test_every_built_column_is_declared_and_every_declaration_built():
    out = build_features(fake_checkups(50, years=3, seed=1))
    assert list(out.columns) == [*KEYS, *feature_names()]
    for d in DECLARATIONS:
        assert str(out[d.name].dtype) == d.dtype, d.name
        assert d.kind != "numeric" or d.dtype in ("float64", "Int16"), d.name


def test_every_modifiable_feature_declares_its_medical_direction():
    names = set(feature_names())
    mono = {d.name: d.monotone for d in DECLARATIONS if d.monotone != 0}
    assert set(mono) <= names
    assert len(monotone_constraints()) == len(names)
    for d in DECLARATIONS:
        if d.modifiable:
            assert d.monotone != 0, f"{d.name} is a lever without a declared direction"
    for name, direction in CODE_DIRECTION.items():
        assert mono[name] == direction, name
    for name in ("weight_kg", "bmi", "waist_cm", "alcohol_g_per_day", "risky_drinking",
                 "current_smoker", *LAB_MONOTONE):  # fmt: skip
        assert mono[name] == 1, name
    # Derived features of the body-size items move with them (weight-loss scenario): same sign.
    for item in ("weight_kg", "bmi", "waist_cm"):
        assert mono[f"{item}_change"] == mono[f"{item}_slope"] == 1, item
    for name in ("flag_bmi", "flag_waist_cm", "mets_level", "guidance_intensity"):
        assert mono[name] == 1, name
    # The labs a what-if moves with the lever (models.lab_response), and their 判定 flags.
    assert mono["hdl"] == -1  # low HDL is the abnormal side
    for name in ("non_hdl", "ast", "alt", "ggt", "uric_acid", "flag_hba1c", "flag_hdl",
                 "flag_ggt", "flag_glucose"):  # fmt: skip
        assert mono[name] == 1, name
    # Nothing without a clear direction is constrained (age, history, medication, kidney, the
    # labs' changes and slopes, which a what-if keeps).
    for name in ("age", "sex", "egfr", "creatinine", "flag_egfr", "q_med_bp", "hba1c_change",
                 "hdl_slope", "n_prior_checkups"):  # fmt: skip
        assert name not in mono, name


def test_directed_codes_are_ordinal_never_categorical():
    for d in DECLARATIONS:
        if d.monotone:
            assert d.kind != "categorical", d.name
    # The order of the codes is the declared order: every allowed code is on the scale.
    assert decl.get("q_smoking").allowed == (1, 2, 3)
    assert decl.get("q_alcohol_freq").allowed == (1, 2, 3, 4, 5, 6, 7, 8)
    assert decl.get("mets_level").allowed == (0, 1, 2)
    assert decl.get("guidance_intensity").allowed == (0, 1, 2)
    with pytest.raises(ValueError, match="no order"):
        decl.FeatureDecl("x", "x", "x", "code", "categorical", False, ("x",), monotone=1)


def test_judgement_levels_are_ordered_with_undeterminable_missing():
    import numpy as np

    rows = fake_checkups(400, years=2, seed=3)
    out = build_features(rows)
    mets = out["mets_level"].astype("Float64")
    assert set(mets.dropna().unique()) <= {0, 1, 2}
    from data.judgements import metabolic_syndrome, stratify
    from features.build import sort_checkups

    df = sort_checkups(rows)
    last = df.groupby(["pseudonym", "fiscal_year"]).tail(1)
    code = metabolic_syndrome(last).to_numpy(dtype="float64", na_value=np.nan)
    level = (
        out.set_index(["pseudonym", "fiscal_year"])
        .loc[list(zip(last["pseudonym"], last["fiscal_year"], strict=True)), "mets_level"]
        .to_numpy(dtype="float64", na_value=np.nan)
    )
    expect = np.select([code == 1, code == 2, code == 3], [2.0, 1.0, 0.0], np.nan)
    np.testing.assert_array_equal(level, expect)
    strat = stratify(last).astype("object").to_numpy()
    g = (
        out.set_index(["pseudonym", "fiscal_year"])
        .loc[list(zip(last["pseudonym"], last["fiscal_year"], strict=True)), "guidance_intensity"]
        .to_numpy(dtype="float64", na_value=np.nan)
    )
    want = pd.Series(strat).map({"active": 2.0, "motivational": 1.0, "information": 0.0})
    np.testing.assert_array_equal(g, want.to_numpy(dtype="float64"))


def test_labels_units_and_modifiability():
    for d in DECLARATIONS:
        assert d.ja.strip() and d.description.strip() and d.unit.strip(), d.name
        assert d.sources, d.name
    get = decl.get
    assert get("hba1c").ja == "HbA1c" and get("sbp").ja == "収縮期血圧"
    assert get("waist_cm").ja == "腹囲" and get("q_smoking").ja == "喫煙"
    assert get("q_exercise").ja == "運動習慣" and get("q_alcohol_freq").ja == "飲酒頻度"
    assert get("q_late_dinner").ja == "就寝前2時間以内の夕食"
    for n in ("weight_kg", "waist_cm", "bmi", "q_smoking", "q_exercise", "q_walking",
              "q_late_dinner", "q_alcohol_freq", "q_sleep", "alcohol_g_per_day"):  # fmt: skip
        assert get(n).modifiable, n
    for n in ("age", "sex", "q_hist_stroke", "q_med_bp", "n_prior_checkups", "hba1c", "ldl"):
        assert not get(n).modifiable, n
    assert all(get(n).scenario_tags for n in decl.modifiable_features())


def test_version_is_stable_and_frame_is_loggable():
    assert FEATURE_SET_VERSION.startswith("fs-")
    assert importlib.reload(decl).FEATURE_SET_VERSION == FEATURE_SET_VERSION
    frame = declarations_frame()
    assert list(frame["name"]) == feature_names()
    assert frame["name"].is_unique
    assert {"ja", "unit", "kind", "modifiable", "monotone", "sources", "scenario_tags"} <= set(
        frame.columns
    )
