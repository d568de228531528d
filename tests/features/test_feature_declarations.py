"""Declarations: one table describes every built column, and it is complete and stable."""

from __future__ import annotations

import importlib

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

MONOTONE = {"hba1c", "fpg", "sbp", "dbp", "bmi", "waist_cm", "tg", "ldl"}


def test_every_built_column_is_declared_and_every_declaration_built():
    out = build_features(fake_checkups(50, years=3, seed=1))
    assert list(out.columns) == [*KEYS, *feature_names()]
    for d in DECLARATIONS:
        assert str(out[d.name].dtype) == d.dtype, d.name
        assert d.kind != "numeric" or d.dtype in ("float64", "Int16"), d.name


def test_monotone_features_are_the_medically_clear_latest_values():
    names = set(feature_names())
    mono = {d.name for d in DECLARATIONS if d.monotone != 0}
    assert mono == MONOTONE
    assert mono <= names
    assert all(d.monotone == 1 for d in DECLARATIONS if d.name in MONOTONE)
    assert len(monotone_constraints()) == len(names)


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
