"""Labels on hand-made histories, training sets, the follow-up report (docs/domain.md §Labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.columns import MEASUREMENT_COLUMNS, OUTCOMES, QUESTIONNAIRE_COLUMNS
from features import LabelConfig, build_features, build_labels, follow_up_report, training_set
from features.declarations import feature_names
from tests.features.feature_helpers import fake_checkups, pseudonym

HEALTHY = {
    "height_cm": 170.0, "weight_kg": 62.0, "bmi": 21.5, "waist_cm": 80.0, "sbp": 118,
    "dbp": 72, "blood_draw_timing": 2, "tg": 100.0, "hdl": 60.0, "ldl": 110.0,
    "non_hdl": 130.0, "ast": 20.0, "alt": 20.0, "ggt": 25.0, "fpg": 90.0, "hba1c": 5.4,
    "urine_glucose": 1, "urine_protein": 1, "creatinine": 0.8, "egfr": 80.0, "uric_acid": 5.0,
    "q_med_bp": 2, "q_med_glucose": 2, "q_med_lipid": 2, "q_smoking": 3,
}  # fmt: skip


def history(person: int, *visits: tuple[int, dict]) -> list[dict]:
    """Checkups of one person: (fiscal year, overrides of the healthy template) each."""
    rows = []
    for fy, over in visits:
        r = {c: np.nan for c in (*MEASUREMENT_COLUMNS, "blood_draw_timing")}
        r |= {c: np.nan for c in ("urine_glucose", "urine_protein", *QUESTIONNAIRE_COLUMNS)}
        r |= HEALTHY | over
        r |= {
            "pseudonym": pseudonym(person),
            "exam_date": pd.Timestamp(f"{fy}-06-01"),
            "fiscal_year": fy,
            "age": 50 + fy - 2020,
            "sex": 1,
        }
        rows.append(r)
    return rows


def frame(*people: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame([r for p in people for r in p])
    ints = {"fiscal_year": "Int16", "age": "Int16", "sex": "Int8", "sbp": "Int16", "dbp": "Int16"}
    for c in ("blood_draw_timing", "urine_glucose", "urine_protein", *QUESTIONNAIRE_COLUMNS):
        ints[c] = "Int8"
    for c, t in ints.items():
        df[c] = pd.array(df[c].astype("Float64"), dtype="Float64").astype(t)
    df["pseudonym"] = df["pseudonym"].astype("string")
    return df


def label(labels: pd.DataFrame, person: int, fy: int, col: str):
    row = labels[(labels["pseudonym"] == pseudonym(person)) & (labels["fiscal_year"] == fy)]
    assert len(row) == 1
    return row.iloc[0][col]


# Every history ends in 2024 so that 2022 (h=1,2) and 2021 (h≤3) are inside the data window.
END = (2024, {})
END_PERSON = 99


@pytest.fixture
def hand_made():
    return frame(
        history(1, (2022, {}), (2023, {"hba1c": 6.7})),  # met next year
        history(2, (2022, {}), (2023, {})),  # not met, followed up
        history(3, (2022, {}), (2024, {"hba1c": 6.8})),  # skips 2023, event in 2024
        history(4, (2022, {"q_med_glucose": 1}), (2023, {})),  # already met at index
        history(5, (2022, {}), (2023, {"hba1c": np.nan, "fpg": np.nan})),  # not evaluable
        history(6, (2022, {}), (2023, {"hba1c": np.nan, "fpg": 130.0})),  # FPG ≥126 alone
        history(7, (2022, {"hba1c": np.nan, "fpg": np.nan}), (2023, {})),  # index not judgeable
        history(END_PERSON, (2021, {}), END),
    )


def test_met_next_year_is_one(hand_made):
    lab = build_labels(hand_made)
    assert label(lab, 1, 2022, "y_diabetes") == 1
    assert label(lab, 1, 2022, "y_hypertension") == 0
    assert label(lab, 6, 2022, "y_diabetes") == 1
    assert bool(label(lab, 1, 2022, "at_risk_diabetes"))


def test_not_met_with_follow_up_is_zero(hand_made):
    lab = build_labels(hand_made)
    for o in OUTCOMES:
        assert label(lab, 2, 2022, f"y_{o}") == 0, o
        assert bool(label(lab, 2, 2022, f"at_risk_{o}")), o


def test_no_follow_up_is_na(hand_made):
    lab = build_labels(hand_made)
    assert pd.isna(label(lab, 3, 2022, "y_diabetes"))
    assert not label(lab, 3, 2022, "follow_up")
    assert label(lab, 3, 2022, "in_window")
    # the last year in the data: censored by the data, not by the resident
    assert pd.isna(label(lab, 3, 2024, "y_diabetes"))
    assert not label(lab, 3, 2024, "in_window")


def test_already_met_at_index_is_not_at_risk(hand_made):
    lab = build_labels(hand_made)
    assert not label(lab, 4, 2022, "at_risk_diabetes")
    assert label(lab, 4, 2022, "at_risk_hypertension")
    # the label itself is still judged (0 here: medication stopped) but never used for training
    assert label(lab, 4, 2022, "y_diabetes") == 0


def test_horizon_two_catches_year_t_plus_2(hand_made):
    lab1 = build_labels(hand_made, LabelConfig(horizon_years=1))
    lab2 = build_labels(hand_made, LabelConfig(horizon_years=2))
    assert pd.isna(label(lab1, 3, 2022, "y_diabetes"))
    assert label(lab2, 3, 2022, "y_diabetes") == 1
    assert label(lab2, 3, 2022, "follow_up")
    # horizon 2 from 2023 reaches 2025, beyond the data
    assert not label(lab2, 2, 2023, "in_window")
    lab3 = build_labels(hand_made, LabelConfig(horizon_years=3))
    assert label(lab3, END_PERSON, 2021, "y_diabetes") == 0  # 2024 = t+3


def test_unevaluable_follow_up_is_na(hand_made):
    lab = build_labels(hand_made)
    assert pd.isna(label(lab, 5, 2022, "y_diabetes"))
    assert label(lab, 5, 2022, "follow_up")
    assert label(lab, 5, 2022, "y_hypertension") == 0  # other outcomes still judged


def test_index_that_cannot_judge_is_not_at_risk(hand_made):
    lab = build_labels(hand_made)
    assert not label(lab, 7, 2022, "at_risk_diabetes")
    lax = build_labels(hand_made, LabelConfig(at_risk_requires_evaluable=False))
    assert label(lax, 7, 2022, "at_risk_diabetes")


def test_an_outcome_met_only_by_an_implausible_value_is_not_an_event():
    """γ-GT 1500 flagged at ingest (outside its plausible range, data.validate RANGES) is the
    only liver criterion met: unknown, not an event and not a non-event. Met also by a
    plausible value, or an implausible value that meets nothing, changes nothing; without the
    flag the same value is an event."""
    people = frame(
        history(1, (2022, {}), (2023, {"ggt": 1500.0})),
        history(2, (2022, {}), (2023, {"ggt": 1500.0, "alt": 60.0})),
        history(3, (2022, {}), (2023, {"hdl": 140.0})),
        history(4, (2022, {}), (2023, {"ggt": 1500.0})),
        history(END_PERSON, (2021, {}), END),
    )
    flags = [None] * len(people)
    for person, flag in ((1, "ggt"), (2, "ggt"), (3, "hdl")):
        row = (people["pseudonym"] == pseudonym(person)) & (people["fiscal_year"] == 2023)
        flags[int(np.flatnonzero(row.to_numpy())[0])] = f"age_outside_40_74;{flag}"
    people["soft_flags"] = pd.array(flags, dtype="string")
    lab = build_labels(people)
    assert pd.isna(label(lab, 1, 2022, "y_liver"))
    assert label(lab, 1, 2022, "y_diabetes") == 0  # the checkup still judges the others
    assert label(lab, 2, 2022, "y_liver") == 1  # ALT 60 meets it too
    assert label(lab, 3, 2022, "y_dyslipidemia") == 0  # a high HDL meets nothing
    assert label(lab, 4, 2022, "y_liver") == 1  # not flagged: kept as measured
    assert not label(lab, 1, 2023, "at_risk_liver")  # met (if it is) at the index: excluded


def test_require_full_follow_up():
    df = frame(history(1, (2021, {}), (2022, {}), END), history(2, (2021, {}), END))
    lax = build_labels(df, LabelConfig(horizon_years=2))
    strict = build_labels(df, LabelConfig(horizon_years=2, require_full_follow_up=True))
    assert label(lax, 1, 2021, "y_diabetes") == 0
    assert pd.isna(label(strict, 1, 2021, "y_diabetes"))  # no checkup in 2023
    assert label(strict, 1, 2022, "y_diabetes") == 0


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="horizon_years"):
        LabelConfig(horizon_years=4)


def test_training_set_and_report(hand_made):
    feats = build_features(hand_made)
    lab = build_labels(hand_made)
    X, y, keys = training_set(feats, lab, "diabetes")
    assert list(X.columns) == feature_names()
    assert len(X) == len(y) == len(keys)
    got = set(zip(keys["pseudonym"], keys["fiscal_year"], y, strict=True))
    assert (pseudonym(1), 2022, 1) in got and (pseudonym(2), 2022, 0) in got
    assert not {pseudonym(3), pseudonym(4), pseudonym(5), pseudonym(7)} & {
        p for p, fy, _ in got if fy == 2022
    }
    with pytest.raises(ValueError, match="unknown outcome"):
        training_set(feats, lab, "gout")
    with pytest.raises(ValueError, match="not built from the same"):
        training_set(feats.iloc[1:], lab, "diabetes")

    report = follow_up_report(lab).set_index("outcome")
    r = report.loc["diabetes"]
    assert r["without_follow_up"] >= 1 and r["not_evaluable"] == 1
    assert r["with_follow_up"] + r["without_follow_up"] + r["not_evaluable"] == r["at_risk"]

    truth = lab[["pseudonym", "fiscal_year"]].assign(**{f"p_true_{o}": 0.1 for o in OUTCOMES})
    truth.loc[truth["pseudonym"] == pseudonym(3), "p_true_diabetes"] = 0.5
    enrollment = pd.DataFrame(
        {
            "pseudonym": [pseudonym(i) for i in (1, 2, 3, 4, 5, 6, 7, END_PERSON)],
            "enrolled_from": pd.Timestamp("2000-04-01"),
            "enrolled_until": pd.NaT,
        }
    )
    r = follow_up_report(lab, truth, enrollment).set_index("outcome").loc["diabetes"]
    assert r["p_true_with_follow_up"] == pytest.approx(0.1)
    assert r["p_true_without_follow_up"] > 0.1
    assert r["without_follow_up_skipped"] == r["without_follow_up"]
    # person 3 leaves NHI in January of fiscal 2023: no longer "skipped"
    enrollment.loc[2, "enrolled_until"] = pd.Timestamp("2024-01-31")
    r = follow_up_report(lab, truth, enrollment).set_index("outcome").loc["diabetes"]
    assert r["without_follow_up_left_nhi"] == 1
    assert r["without_follow_up_skipped"] == r["without_follow_up"] - 1


def test_labels_align_with_features_on_random_cohort():
    checkups = fake_checkups(300, years=5, seed=2)
    feats = build_features(checkups)
    lab = build_labels(checkups.sample(frac=1.0, random_state=1))
    pd.testing.assert_frame_equal(
        feats[["pseudonym", "fiscal_year", "exam_date"]],
        lab[["pseudonym", "fiscal_year", "exam_date"]],
    )
    for o in OUTCOMES:
        X, y, _ = training_set(feats, lab, o)
        assert set(np.unique(y)) <= {0, 1}
