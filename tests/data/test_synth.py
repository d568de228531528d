"""Synthetic ward generator (data.synth): API, contracts, realism and ground truth.

Cohorts here are small (≤ 20k residents) so the file runs in well under a minute; the
NDB calibration itself is checked on a 100k cohort in test_calibration.py.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from data.columns import (
    CHECKUP_COLUMNS,
    CONTACT_COLUMNS,
    DERIVED_COLUMNS,
    END_REASONS,
    ENROLLMENT_COLUMNS,
    OUTCOMES,
)
from data.judgements import egfr_jsn, outcome_evaluable, outcomes_met
from data.normalise import QUESTIONNAIRE_CODES, age_at_fiscal_year_end, fiscal_year
from data.synth import TRUTH_COLUMNS, SynthConfig, generate, write_bundle
from data.synth import model as synth_model
from data.synth import observe as synth_observe
from data.synth import truth as synth_truth
from data.synth.ward import Ward

N_MAIN = 20_000


@pytest.fixture(scope="module")
def bundle():
    return generate(SynthConfig(residents=N_MAIN, seed=0))


@pytest.fixture(scope="module")
def checkups(bundle):
    ch = bundle.checkups.copy()
    ch["fiscal_year"] = fiscal_year(ch["exam_date"]).astype(int)
    ch["age"] = age_at_fiscal_year_end(ch["birth_date"], ch["fiscal_year"]).astype(int)
    return ch


@pytest.fixture(scope="module")
def pairs(bundle, checkups):
    """Truth rows joined with this year's and next year's judged outcomes."""
    met = outcomes_met(checkups)
    judgeable = outcome_evaluable(checkups)
    met[[f"{o}_judgeable" for o in judgeable.columns]] = judgeable.to_numpy()
    met["person_id"] = checkups["person_id"].to_numpy()
    met["fiscal_year"] = checkups["fiscal_year"].to_numpy()
    nxt = met.copy()
    nxt["fiscal_year"] -= 1
    return bundle.truth.merge(met, on=["person_id", "fiscal_year"]).merge(
        nxt, on=["person_id", "fiscal_year"], suffixes=("_now", "_next")
    )


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_identical_frames_and_files(tmp_path):
    cfg = SynthConfig(residents=1500, years=3, seed=7)
    a, b = generate(cfg), generate(cfg)
    for name in ("checkups", "enrollment", "contacts", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    for fmt in ("csv", "parquet"):
        pa = write_bundle(a, tmp_path / f"a_{fmt}", fmt=fmt)
        pb = write_bundle(b, tmp_path / f"b_{fmt}", fmt=fmt)
        assert set(pa) == {"checkups", "enrollment", "contacts", "truth"}
        for key in pa:
            assert pa[key].read_bytes() == pb[key].read_bytes(), (fmt, key)
        assert pa["truth"].name == "truth.csv"
        assert pa["checkups"].suffix == f".{fmt}"


def test_different_seed_differs():
    a = generate(SynthConfig(residents=800, years=2, seed=1))
    b = generate(SynthConfig(residents=800, years=2, seed=2))
    assert not a.checkups["person_id"].equals(b.checkups["person_id"]) or not a.checkups.equals(
        b.checkups
    )
    assert a.checkups["sbp"].head(50).tolist() != b.checkups["sbp"].head(50).tolist()


def test_letter_effect_is_accepted():
    cfg = SynthConfig(residents=300, years=1, letter_effect=0.3)
    assert len(generate(cfg).checkups) > 0


# --- contracts ---------------------------------------------------------------------------------


def test_columns_and_types(bundle):
    assert list(bundle.checkups.columns) == list(CHECKUP_COLUMNS)
    assert list(bundle.enrollment.columns) == list(ENROLLMENT_COLUMNS)
    assert list(bundle.contacts.columns) == list(CONTACT_COLUMNS)
    assert list(bundle.truth.columns) == list(TRUTH_COLUMNS)
    ch = bundle.checkups
    for col, kind in CHECKUP_COLUMNS.items():
        if kind == "date":
            assert pd.api.types.is_datetime64_any_dtype(ch[col]), col
        elif kind in ("int", "float"):
            assert pd.api.types.is_numeric_dtype(ch[col]), col
    assert ch["person_id"].map(type).eq(str).all()
    assert ch["person_id"].str.fullmatch(r"\d{2}-\d{6}").all()
    assert ch[["person_id", "exam_date", "sex", "birth_date"]].notna().all().all()
    assert pd.api.types.is_datetime64_any_dtype(bundle.enrollment["enrolled_from"])


def test_codes_within_allowed_sets(bundle):
    ch = bundle.checkups
    assert set(ch["sex"].unique()) <= {1, 2}
    assert set(ch["blood_draw_timing"].dropna().unique()) <= {2, 3, 4}
    for col in ("urine_glucose", "urine_protein"):
        assert set(ch[col].dropna().unique()) <= {1, 2, 3, 4, 5}
    for col, codes in QUESTIONNAIRE_CODES.items():
        assert set(ch[col].dropna().astype(int).unique()) <= set(codes), col


def test_measurement_consistency(checkups):
    ch = checkups
    fasting = ch["blood_draw_timing"] == 2
    assert ch.loc[~fasting, "fpg"].isna().all()
    assert ch.loc[fasting, "random_glucose"].isna().all()
    assert (ch["fpg"].notna() | ch["hba1c"].notna()).mean() > 0.999
    assert 0.80 <= fasting.mean() <= 0.90
    assert 0.85 <= ch["hba1c"].notna().mean() <= 0.95
    bmi = ch["weight_kg"] / (ch["height_cm"] / 100) ** 2
    assert np.allclose(bmi, ch["bmi"], atol=0.051)
    # eGFR is the JSN equation of the reported creatinine at the age on the exam day
    has = ch["creatinine"].notna()
    assert has.equals(ch["egfr"].notna())
    assert 0.75 <= has.mean() <= 0.9
    exam_age = (
        ch["exam_date"].dt.year
        - ch["birth_date"].dt.year
        - (
            (ch["exam_date"].dt.month < ch["birth_date"].dt.month)
            | (
                (ch["exam_date"].dt.month == ch["birth_date"].dt.month)
                & (ch["exam_date"].dt.day < ch["birth_date"].dt.day)
            )
        )
    )
    e = egfr_jsn(ch.loc[has, "creatinine"], exam_age[has], ch.loc[has, "sex"])
    assert np.allclose(e, ch.loc[has, "egfr"], atol=0.051)
    # non-HDL replaces LDL when LDL is missing (and TG ≥ 400), and is sometimes reported besides
    no_ldl = ch["ldl"].isna() & ch["hdl"].notna()
    assert ch.loc[no_ldl, "non_hdl"].notna().all()
    assert 0.1 <= (ch["non_hdl"].notna() & ch["ldl"].notna()).mean() <= 0.3
    assert 0.5 <= ch["uric_acid"].notna().mean() <= 0.7
    assert 0.25 <= ch["hemoglobin"].notna().mean() <= 0.4
    assert ch["urine_protein"].notna().mean() > 0.93
    assert (ch["sbp"] > ch["dbp"]).all()
    for col in ("q_exercise", "q_sleep", "q_snacks"):
        assert 0.015 <= ch[col].isna().mean() <= 0.06
    assert ch["q_med_bp"].isna().mean() < 0.01


def test_egfr_copy_matches_judgements():
    cre = np.array([0.5, 0.86, 0.7, 1.0, 2.3])
    age = np.array([45.0, 60, 58, 70, 74])
    sex = np.array([1.0, 1, 2, 1, 2])
    sexf = np.where(sex == 2, 0.739, 1.0)
    assert np.allclose(synth_observe.egfr_jsn(cre, age, sexf), egfr_jsn(cre, age, sex))


def test_ages_and_one_checkup_per_year(checkups):
    assert checkups["age"].between(40, 74).all()
    assert not checkups.duplicated(["person_id", "fiscal_year"]).any()
    assert set(checkups["fiscal_year"].unique()) == set(range(2020, 2026))
    # NHI pool: older-skewed, slightly more women
    assert (checkups["age"] >= 65).mean() > 0.45
    assert 0.5 <= (checkups["sex"] == 2).mean() <= 0.58
    months = checkups["exam_date"].dt.month
    assert months.isin([6, 7, 8, 9, 10]).mean() > 0.55


# --- attendance --------------------------------------------------------------------------------


def test_attendance_rate_and_persistence(checkups, bundle):
    cfg = SynthConfig(residents=6000, years=4, seed=3)
    ward = Ward(cfg, synth_model.calibration())
    for i, fy in enumerate(cfg.fiscal_years):
        ward.run_year(fy, first=i == 0)
    elig = sum(e for _, e, _ in ward.attendance_log)
    att = sum(a for _, _, a in ward.attendance_log)
    assert 0.33 <= att / elig <= 0.41
    # repeat attendance among attendees still eligible the next year (member, age ≤ 74)
    en = bundle.enrollment
    rates = []
    for fy in range(2020, 2025):
        now = checkups[checkups["fiscal_year"] == fy]
        nxt = set(checkups.loc[checkups["fiscal_year"] == fy + 1, "person_id"])
        start, end = pd.Timestamp(f"{fy + 1}-04-01"), pd.Timestamp(f"{fy + 2}-03-31")
        open_next = en[
            (en["enrolled_from"] <= start)
            & (en["enrolled_until"].isna() | (en["enrolled_until"] >= end))
        ]["person_id"]
        stay = now[(now["age"] <= 73) & now["person_id"].isin(set(open_next))]
        rates.append(stay["person_id"].isin(nxt).mean())
    assert 0.74 <= np.mean(rates) <= 0.84


# --- enrollment and contacts -------------------------------------------------------------------


def test_enrollment_consistency(bundle, checkups):
    en = bundle.enrollment
    assert en["end_reason"].dropna().isin(END_REASONS).all()
    assert (en["end_reason"].isna() == en["enrolled_until"].isna()).all()
    closed = en.dropna(subset=["enrolled_until"])
    assert (closed["enrolled_until"] >= closed["enrolled_from"]).all()
    assert en.groupby("person_id")["enrolled_until"].apply(lambda s: s.isna().sum()).max() <= 1
    periods = en.groupby("person_id").size()
    assert (periods >= 2).sum() > 0.005 * len(periods)  # some leave and rejoin
    # every checkup falls inside a membership period
    m = checkups[["person_id", "exam_date"]].merge(en, on="person_id")
    inside = (m["enrolled_from"] <= m["exam_date"]) & (
        m["enrolled_until"].isna() | (m["exam_date"] <= m["enrolled_until"])
    )
    ok = inside.groupby([m["person_id"], m["exam_date"]]).any()
    assert ok.all() and len(ok) == len(checkups)
    # turned_75 ends the day before the 75th birthday
    birth = checkups.drop_duplicates("person_id").set_index("person_id")["birth_date"]
    t75 = en[en["end_reason"] == "turned_75"]
    t75 = t75[t75["person_id"].isin(birth.index)]
    assert len(t75) > 50
    b = birth.loc[t75["person_id"]].to_numpy()
    day_after = (t75["enrolled_until"] + pd.Timedelta(days=1)).to_numpy()
    years = pd.Series(day_after).dt.year - pd.Series(b).dt.year
    before_bday = (pd.Series(day_after).dt.month < pd.Series(b).dt.month) | (
        (pd.Series(day_after).dt.month == pd.Series(b).dt.month)
        & (pd.Series(day_after).dt.day < pd.Series(b).dt.day)
    )
    assert ((years - before_bday) == 75).all()
    reasons = en["end_reason"].value_counts()
    for r in ("moved_out", "deceased", "changed_insurer", "turned_75"):
        assert reasons.get(r, 0) > 0, r


def test_contacts(bundle):
    ct = bundle.contacts
    assert ct["person_id"].is_unique
    assert set(bundle.enrollment["person_id"]) == set(ct["person_id"])
    assert set(bundle.checkups["person_id"]) <= set(ct["person_id"])
    assert 0.02 <= (ct["language"] != "ja").mean() <= 0.05
    assert set(ct["language"]) <= {"ja", "en", "zh", "ko", "vi", "ja-easy"}
    assert 0.012 <= ct["opt_out"].mean() <= 0.03
    assert ct["postal_code"].str.fullmatch(r"\d{3}-\d{4}").all()
    assert ct["address"].str.startswith("東京都架空区").all()
    assert ct["name_kana"].str.fullmatch(r"[ァ-ヶー]+　[ァ-ヶー]+").all()
    assert ct["name"].str.len().ge(3).all()


def test_legacy_codes_written_for_old_years(tmp_path):
    b = generate(SynthConfig(residents=1500, years=6, seed=4))
    paths = write_bundle(b, tmp_path, legacy_codes=True)
    ch = pd.read_csv(paths["checkups"], dtype={"person_id": str})
    fy = fiscal_year(pd.to_datetime(ch["exam_date"]))
    old, new = ch[fy <= 2023], ch[fy >= 2024]
    assert set(old["q_smoking"].dropna().astype(int)) <= {1, 2}
    assert set(old["q_alcohol_freq"].dropna().astype(int)) <= {1, 2, 3}
    assert 3 in set(new["q_smoking"].dropna().astype(int))
    assert set(new["q_alcohol_freq"].dropna().astype(int)) > {1, 2, 3}
    canon = write_bundle(b, tmp_path / "canon", legacy_codes=False)
    ch2 = pd.read_csv(canon["checkups"], dtype={"person_id": str})
    assert 3 in set(ch2.loc[fy <= 2023, "q_smoking"].dropna().astype(int))


# --- truth -------------------------------------------------------------------------------------


def test_truth_rows_and_ranges(bundle, checkups):
    tr = bundle.truth
    assert len(tr) == len(checkups)
    keys = checkups[["person_id", "fiscal_year"]].merge(tr, on=["person_id", "fiscal_year"])
    assert len(keys) == len(tr)
    p = tr[[f"p_true_{o}" for o in OUTCOMES]]
    assert ((p >= 0) & (p <= 1)).all().all()
    allowed = set(CHECKUP_COLUMNS) | set(DERIVED_COLUMNS)
    for o in OUTCOMES:
        names = tr[f"drivers_{o}"].str.split(";")
        assert names.map(len).eq(3).all()
        assert set(names.explode()) <= allowed, o


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_p_true_predicts_next_year(pairs, outcome):
    """p_true is the risk of a checkup that can judge the outcome (labels: missing otherwise)."""
    pairs = pairs[pairs[f"{outcome}_judgeable_next"]]
    free = ~pairs[f"{outcome}_now"]
    y = pairs.loc[free, f"{outcome}_next"]
    p = pairs.loc[free, f"p_true_{outcome}"]
    inc = y.mean()
    se = np.sqrt(inc * (1 - inc) / len(y))
    assert abs(p.mean() - inc) <= max(4 * se, 0.1 * inc), (p.mean(), inc)
    auc = roc_auc_score(y, p)
    assert auc > (0.75 if outcome in ("diabetes", "hypertension") else 0.7), auc
    # the whole cohort too (people who already meet it)
    assert abs(pairs[f"p_true_{outcome}"].mean() - pairs[f"{outcome}_next"].mean()) < 0.01


def test_judge_next_matches_outcomes_met():
    """The Monte-Carlo judge (raw latent space) = observe + judgements.outcomes_met."""
    cal = synth_model.calibration()
    rng = np.random.default_rng(11)
    n = 40_000
    sex = np.where(rng.random(n) < 0.5, 1, 2).astype(np.int8)
    age = rng.integers(40, 74, n)
    st = synth_model.init_state(sex, age, rng, cal)
    nxt = synth_model.step(st, age + 1, rng, cal, k=2)
    exam = np.repeat(age + 1, 2)
    birth_year = np.repeat(2025 - age, 2)
    obs = synth_observe.observe(nxt, exam, exam, birth_year, rng, cal, outcomes_only=True)
    met = outcomes_met(pd.DataFrame(obs))
    # hyperuricaemia: given that uric acid (an optional item) is measured, as the labels judge it
    measured = ~np.isnan(obs["uric_acid"])
    assert 0.4 < measured.mean() < 0.8
    a = met.to_numpy().mean(axis=0)
    rows = np.full(len(a), 2.0 * n)
    ua = list(met.columns).index("hyperuricemia")
    a[ua], rows[ua] = met["hyperuricemia"][measured].mean(), measured.sum()
    b = synth_truth.judge_next(nxt, st, age + 1, age + 1, 2, rng, cal).mean(axis=0)
    se = np.sqrt(np.maximum(a * (1 - a), 1e-4) / rows)
    assert np.all(np.abs(a - b) < 5 * se + 0.002), (a, b)


def test_drivers_reflect_lifestyle_and_values(bundle, checkups):
    tr = bundle.truth.merge(checkups, on=["person_id", "fiscal_year"])
    # heavy daily drinkers: alcohol is a liver driver far more often than for abstainers
    heavy = (tr["q_alcohol_freq"] == 1) & (tr["q_alcohol_amount"] >= 3)
    never = tr["q_alcohol_freq"] == 8
    has_alc = tr["drivers_liver"].str.contains("q_alcohol")
    assert has_alc[heavy].mean() > 3 * has_alc[never].mean()
    # on BP medication → q_med_bp is the first hypertension driver
    on = tr["q_med_bp"] == 1
    assert (tr.loc[on, "drivers_hypertension"].str.split(";").str[0] == "q_med_bp").mean() > 0.95
    # high HbA1c without medication: hba1c among the diabetes drivers
    hi = (tr["hba1c"] >= 6.2) & (tr["q_med_glucose"] == 2)
    assert tr.loc[hi, "drivers_diabetes"].str.contains("hba1c").mean() > 0.8
    assert re.fullmatch(r"[a-z_0-9]+(;[a-z_0-9]+){2}", tr["drivers_ckd"].iloc[0])


def test_observed_drivers_credit_the_measured_item(bundle, checkups):
    """``drivers_observed_<outcome>`` (data.synth.truth): a measured item owns its level."""
    tr = bundle.truth.merge(checkups, on=["person_id", "fiscal_year"])
    hi = (tr["hba1c"] >= 6.2) & (tr["q_med_glucose"] == 2)
    first = tr.loc[hi, "drivers_observed_diabetes"].str.split(";").str[0]
    assert first.isin(["hba1c", "fpg"]).mean() > 0.9
    # the generator credits part of the same levels to age, sex, adiposity or habits
    gen_first = tr.loc[hi, "drivers_diabetes"].str.split(";").str[0]
    assert first.isin(["hba1c", "fpg"]).mean() > gen_first.isin(["hba1c", "fpg"]).mean()
    # sex owns nothing once the measured value is judged against its own cut
    names = pd.concat([tr[f"drivers_observed_{o}"].str.split(";") for o in OUTCOMES]).explode()
    assert "sex" not in set(names)
    on = tr["q_med_bp"] == 1
    first_bp = tr.loc[on, "drivers_observed_hypertension"].str.split(";").str[0]
    assert (first_bp == "q_med_bp").mean() > 0.95
