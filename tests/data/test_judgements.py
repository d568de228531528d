"""Tests for data.judgements: 判定値, メタボリックシンドローム判定, 階層化, outcomes, eGFR.

Each hand-worked case is a one-row DataFrame with the reasoning in a comment. The last tests
compare the vectorised functions with a scalar reference that mirrors the steps of
docs/domain.md §Stratification on a random frame.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data.judgements import (
    GUIDANCE_LEVELS,
    MHLW_R6,
    OUTCOMES,
    egfr_jsn,
    guidance_code,
    metabolic_syndrome,
    outcome_evaluable,
    outcomes_met,
    stratify,
    threshold_flags,
)

NAN = np.nan


def row(**values: object) -> pd.DataFrame:
    """One checkup row; every canonical column not given is absent (→ missing)."""
    return pd.DataFrame([values])


def level(**values: object) -> str:
    return str(stratify(row(**values)).iloc[0])


def mets(**values: object) -> int:
    return int(metabolic_syndrome(row(**values)).iloc[0])


# A man, 50, waist over the cut (group 1), no risks, non-smoker, fasting draw.
BASE_G1 = dict(
    sex=1,
    age=50,
    waist_cm=90.0,
    bmi=24.0,
    sbp=120,
    dbp=70,
    blood_draw_timing=2,
    tg=100.0,
    hdl=60.0,
    fpg=90.0,
    hba1c=5.2,
    q_med_bp=2,
    q_med_glucose=2,
    q_med_lipid=2,
    q_smoking=2,
)
# Same man with waist under the cut but BMI 26 (group 2).
BASE_G2 = {**BASE_G1, "waist_cm": 80.0, "bmi": 26.0}


# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------


def test_constants_are_r6_values() -> None:
    v = MHLW_R6
    assert (v.sbp.guidance, v.sbp.referral) == (130, 140)
    assert (v.dbp.guidance, v.dbp.referral) == (85, 90)
    assert (v.tg_fasting.guidance, v.tg_nonfasting.guidance, v.tg_fasting.referral) == (
        150,
        175,
        300,
    )
    assert (v.hdl.guidance, v.hdl.referral, v.hdl.op) == (40, None, "<")
    assert (v.hba1c.guidance, v.hba1c.referral) == (5.6, 6.5)
    assert (v.egfr.guidance, v.egfr.referral, v.egfr.op) == (60, 45, "<")
    assert (v.waist_male.guidance, v.waist_female.guidance, v.bmi.guidance) == (85, 90, 25)
    assert (v.hemoglobin_male.guidance, v.hemoglobin_female.referral) == (13.0, 11.0)
    with pytest.raises(AttributeError):
        v.sbp.guidance = 120  # type: ignore[misc]  # frozen


# ---------------------------------------------------------------------------------------------
# 階層化 (stratify)
# ---------------------------------------------------------------------------------------------


def test_medication_excludes_before_anything_else() -> None:
    # Group 1 with BP + lipid + glucose risks would be active, but BP medication → excluded.
    case = {**BASE_G1, "sbp": 150, "tg": 200.0, "fpg": 110.0, "q_med_bp": 1}
    assert level(**case) == "excluded_medication"
    # Lipid medication alone, even with waist and BMI missing → still excluded (checked first).
    assert level(sex=2, q_med_lipid=1) == "excluded_medication"
    assert level(**{**BASE_G1, "q_med_glucose": 1}) == "excluded_medication"
    # Medication answer 2 (no) or missing does not exclude: group 1, 0 risks → information.
    assert level(**{**BASE_G1, "q_med_bp": pd.NA}) == "information"


def test_age_65_caps_active_to_motivational() -> None:
    # Group 1 (waist 90 ≥ 85, man); ① SBP 135 ≥130 and ② TG 160 ≥150 fasting → 2 risks.
    case = {**BASE_G1, "sbp": 135, "tg": 160.0}
    assert level(**{**case, "age": 64}) == "active"  # under 65: stays 積極的支援
    assert level(**{**case, "age": 65}) == "motivational"  # 65-74: delivered as 動機付け支援
    assert level(**{**case, "age": 74}) == "motivational"
    # Missing age: the cap cannot be applied → active.
    assert level(**{**case, "age": NAN}) == "active"
    # The cap never touches motivational: 1 risk at 70 → motivational.
    assert level(**{**BASE_G1, "sbp": 135, "age": 70}) == "motivational"


def test_group2_needs_three_risks_for_active() -> None:
    # Waist 80 < 85 but BMI 26 ≥ 25 → group (2).
    assert level(**BASE_G2) == "information"  # 0 risks
    one = {**BASE_G2, "dbp": 85}  # ① DBP 85 ≥85 (at the boundary)
    assert level(**one) == "motivational"
    two = {**one, "hdl": 39.0}  # ② HDL 39 <40
    assert level(**two) == "motivational"  # 2 risks: still motivational in group (2)
    three = {**two, "hba1c": 5.6, "fpg": NAN}  # ③ no FPG → HbA1c 5.6 ≥5.6
    assert level(**three) == "active"
    # The same two risks in group (1) (waist 85, man) would already be active.
    assert level(**{**two, "waist_cm": 85.0}) == "active"
    # BMI 24.9 and waist under the cut → information regardless of risks.
    assert level(**{**three, "bmi": 24.9}) == "information"


def test_smoking_counts_only_with_another_risk() -> None:
    smoker = {**BASE_G1, "q_smoking": 1}
    # Group 1, no ①-③ → smoking not counted → 0 → information.
    assert level(**smoker) == "information"
    # Group 1, ① only → 1 + smoking = 2 → active (non-smoker would be motivational).
    assert level(**{**smoker, "sbp": 130}) == "active"
    assert level(**{**BASE_G1, "sbp": 130}) == "motivational"
    # Group 2, ①+② + smoking = 3 → active; without smoking 2 → motivational.
    g2 = {**BASE_G2, "sbp": 130, "tg": 150.0}
    assert level(**{**g2, "q_smoking": 1}) == "active"
    assert level(**g2) == "motivational"
    # q_smoking 2/3 (not "1 yes") never counts.
    assert level(**{**BASE_G1, "sbp": 130, "q_smoking": 3}) == "motivational"


def test_glucose_precedence_vs_literal_or() -> None:
    # Group 1, no other risk; FPG 95 (<100) and HbA1c 5.8 (≥5.6).
    case = {**BASE_G1, "fpg": 95.0, "hba1c": 5.8}
    # precedence: FPG present → judged on FPG 95 → no risk → information.
    assert level(**case) == "information"
    assert str(stratify(row(**case), glucose_rule="precedence").iloc[0]) == "information"
    # literal_or: FPG 95 <100 but HbA1c 5.8 ≥5.6 → risk ③ → 1 → motivational.
    assert str(stratify(row(**case), glucose_rule="literal_or").iloc[0]) == "motivational"
    # No FPG, HbA1c 5.5, random glucose 110: precedence uses HbA1c (no risk);
    # literal_or uses random glucose 110 ≥100 (risk).
    case2 = {**BASE_G1, "fpg": NAN, "hba1c": 5.5, "random_glucose": 110.0}
    assert str(stratify(row(**case2)).iloc[0]) == "information"
    assert str(stratify(row(**case2), glucose_rule="literal_or").iloc[0]) == "motivational"
    # No FPG, no HbA1c: both rules fall back to random glucose 100 ≥100 → motivational.
    case3 = {**case2, "hba1c": NAN, "random_glucose": 100.0}
    assert str(stratify(row(**case3)).iloc[0]) == "motivational"
    assert str(stratify(row(**case3), glucose_rule="literal_or").iloc[0]) == "motivational"
    with pytest.raises(ValueError, match="glucose_rule"):
        stratify(row(**case), glucose_rule="fpg_only")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timing", "tg", "expected"),
    [
        (3, 160.0, "information"),  # non-fasting (3.5-10 h): 160 < 175 → no risk
        (3, 180.0, "motivational"),  # non-fasting: 180 ≥ 175 → risk ②
        (4, 174.0, "information"),  # <3.5 h is non-fasting too: 174 < 175
        (4, 175.0, "motivational"),  # boundary 175 counts
        (2, 160.0, "motivational"),  # fasting: 160 ≥ 150 → risk ②
        (NAN, 150.0, "motivational"),  # timing missing → fasting cut 150
    ],
)
def test_nonfasting_tg_cut(timing: float, tg: float, expected: str) -> None:
    assert level(**{**BASE_G1, "blood_draw_timing": timing, "tg": tg}) == expected


def test_missing_waist_and_bmi_is_undeterminable() -> None:
    # Not on medication, waist and BMI both missing → 判定不能 (code 4) even with risks.
    case = {**BASE_G1, "waist_cm": NAN, "bmi": NAN, "sbp": 160}
    assert level(**case) == "undeterminable"
    # Waist missing, BMI 22 → information (pseudo-code falls through to BMI).
    assert level(**{**case, "bmi": 22.0}) == "information"
    # Waist missing, BMI 25 → group 2, 1 risk → motivational.
    assert level(**{**case, "bmi": 25.0}) == "motivational"
    # Waist known and under the cut, BMI missing → information.
    assert level(**{**case, "waist_cm": 80.0}) == "information"


def test_waist_cut_is_sex_specific_and_unknown_sex() -> None:
    # Woman waist 89 < 90, BMI 24 → information; waist 90 → group 1 with ① → motivational.
    woman = {**BASE_G1, "sex": 2, "sbp": 130}
    assert level(**{**woman, "waist_cm": 89.0}) == "information"
    assert level(**{**woman, "waist_cm": 90.0}) == "motivational"
    # Unknown sex: waist 95 is over both cuts → group 1; waist 87 is ambiguous → treated as
    # missing, and with BMI missing too → undeterminable.
    unknown = {**BASE_G1, "sex": pd.NA, "sbp": 130, "bmi": NAN}
    assert level(**{**unknown, "waist_cm": 95.0}) == "motivational"
    assert level(**{**unknown, "waist_cm": 87.0}) == "undeterminable"


def test_guidance_code_mapping_and_categories() -> None:
    df = pd.concat(
        [
            row(**{**BASE_G1, "sbp": 135, "tg": 160.0}),  # active
            row(**{**BASE_G1, "sbp": 135}),  # motivational
            row(**BASE_G1),  # information
            row(**{**BASE_G1, "q_med_bp": 1}),  # excluded_medication
            row(sex=1, age=50),  # undeterminable
        ],
        ignore_index=True,
    )
    levels = stratify(df)
    assert list(levels.cat.categories) == list(GUIDANCE_LEVELS)
    assert list(levels) == [
        "active",
        "motivational",
        "information",
        "excluded_medication",
        "undeterminable",
    ]
    codes = guidance_code(levels)
    assert str(codes.dtype) == "Int64"
    assert codes.tolist() == [1, 2, 3, 3, 4]  # 9N506: excluded → 3 なし


# ---------------------------------------------------------------------------------------------
# メタボリックシンドローム判定
# ---------------------------------------------------------------------------------------------


def test_mets_codes() -> None:
    # Man, waist 85 (at the cut), SBP 130 (BP) + TG 150 fasting (lipids) → 2 → 基準該当 1.
    case = {**BASE_G1, "waist_cm": 85.0, "sbp": 130, "tg": 150.0}
    assert mets(**case) == 1
    assert mets(**{**case, "tg": 149.0}) == 2  # BP only → 予備群該当 2
    assert mets(**{**case, "tg": 149.0, "sbp": 129}) == 3  # no component → 非該当 3
    assert mets(**{**case, "waist_cm": 84.9}) == 3  # waist under cut → 3 regardless
    assert mets(**{**case, "waist_cm": NAN}) == 4  # waist missing → 判定不能 4
    # Woman: 89 < 90 → 3; 90 → 1.
    assert mets(**{**case, "sex": 2, "waist_cm": 89.0}) == 3
    assert mets(**{**case, "sex": 2, "waist_cm": 90.0}) == 1
    # HDL 39 <40 is the lipid component; DBP 85 is the BP component → 1.
    assert mets(**{**BASE_G1, "hdl": 39.0, "dbp": 85}) == 1


def test_mets_hba1c_only_when_no_fpg() -> None:
    # Waist over cut + BP (SBP 130). HbA1c 6.0 with no FPG → glucose component → 2 → code 1.
    case = {**BASE_G1, "sbp": 130, "fpg": NAN, "hba1c": 6.0}
    assert mets(**case) == 1
    # Same HbA1c but FPG 105 (<110) measured → FPG decides → no glucose component → code 2.
    assert mets(**{**case, "fpg": 105.0}) == 2
    # FPG 110 → glucose component → 1; HbA1c 5.9 without FPG → no component → 2.
    assert mets(**{**case, "fpg": 110.0, "hba1c": 5.0}) == 1
    assert mets(**{**case, "hba1c": 5.9}) == 2
    # Random glucose is not used for MetS: random 200, no FPG/HbA1c → 2.
    assert mets(**{**case, "hba1c": NAN, "random_glucose": 200.0}) == 2


def test_mets_medication_counts_as_component() -> None:
    # Waist over cut, all values normal. BP medication → BP component (1) → 予備群 2.
    assert mets(**{**BASE_G1, "q_med_bp": 1}) == 2
    # BP + lipid medication → 2 components → 基準該当 1.
    assert mets(**{**BASE_G1, "q_med_bp": 1, "q_med_lipid": 1}) == 1
    # Glucose medication + HDL 30 → 1.
    assert mets(**{**BASE_G1, "q_med_glucose": 1, "hdl": 30.0}) == 1
    # Medication without waist over cut → 3.
    assert mets(**{**BASE_G1, "waist_cm": 80.0, "q_med_bp": 1, "q_med_lipid": 1}) == 3


def test_mets_nonfasting_tg_parameter() -> None:
    # Waist + BP; TG 160 drawn non-fasting (timing 3).
    case = {**BASE_G1, "sbp": 130, "tg": 160.0, "blood_draw_timing": 3}
    assert mets(**case) == 2  # default cut 175: 160 is not a lipid component
    assert int(metabolic_syndrome(row(**case), nonfasting_tg_cut=150).iloc[0]) == 1
    assert mets(**{**case, "tg": 175.0}) == 1


# ---------------------------------------------------------------------------------------------
# Outcomes (docs/domain.md §Outcomes)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "column", "at", "below"),
    [
        ("diabetes", "hba1c", 6.5, 6.4),  # HbA1c ≥6.5
        ("diabetes", "fpg", 126.0, 125.0),  # FPG ≥126
        ("diabetes", "q_med_glucose", 1, 2),  # on glucose medication
        ("hypertension", "sbp", 140, 139),
        ("hypertension", "dbp", 90, 89),
        ("hypertension", "q_med_bp", 1, 2),
        ("dyslipidemia", "ldl", 140.0, 139.0),
        ("dyslipidemia", "tg", 300.0, 299.0),
        ("dyslipidemia", "non_hdl", 170.0, 169.0),
        ("dyslipidemia", "q_med_lipid", 1, 2),
        ("ckd", "egfr", 59.9, 60.0),  # eGFR <60: 59.9 meets, exactly 60 does not
        ("ckd", "urine_protein", 3, 2),  # (+) meets, (±) does not
        ("liver", "alt", 51.0, 50.0),
        ("liver", "ggt", 101.0, 100.0),
    ],
)
def test_outcome_boundaries(outcome: str, column: str, at: float, below: float) -> None:
    met = outcomes_met(pd.DataFrame({column: [at, below, NAN]}))
    assert list(met.columns) == list(OUTCOMES)
    assert met[outcome].tolist() == [True, False, False]
    # Nullable input gives the same answer.
    dtype = "Float64" if isinstance(at, float) else "Int64"
    met_nullable = outcomes_met(pd.DataFrame({column: pd.array([at, below, None], dtype=dtype)}))
    assert met_nullable[outcome].tolist() == [True, False, False]
    # The item never triggers any other outcome on its own.
    assert not met.drop(columns=outcome).to_numpy().any()


def test_outcome_metabolic_syndrome_boundary() -> None:
    # MetS outcome = code 1: man waist 85 + SBP 130 + TG 150 → met; waist 84.9 → not met.
    df = pd.concat(
        [
            row(**{**BASE_G1, "waist_cm": 85.0, "sbp": 130, "tg": 150.0}),
            row(**{**BASE_G1, "waist_cm": 84.9, "sbp": 130, "tg": 150.0}),
            row(**{**BASE_G1, "waist_cm": 85.0, "sbp": 130}),  # 予備群 2 → not met
        ],
        ignore_index=True,
    )
    assert outcomes_met(df)["metabolic_syndrome"].tolist() == [True, False, False]


def test_outcomes_all_missing_is_false_and_bool() -> None:
    df = pd.DataFrame({"sex": pd.array([1, None], dtype="Int64"), "hba1c": [NAN, NAN]})
    met = outcomes_met(df)
    assert all(pd.api.types.is_bool_dtype(t) for t in met.dtypes)
    assert not met.to_numpy().any()
    assert not outcome_evaluable(df).to_numpy().any()


def test_outcome_evaluable() -> None:
    df = pd.concat(
        [
            # 0: only HbA1c 5.0 → diabetes judgeable (not met); nothing else is.
            row(hba1c=5.0),
            # 1: only random glucose → diabetes NOT judgeable (not part of the definition).
            row(random_glucose=90.0),
            # 2: glucose medication with no labs → diabetes met → judgeable.
            row(q_med_glucose=1),
            # 3: glucose medication answered "no" alone → not judgeable.
            row(q_med_glucose=2),
            # 4: urine protein (−) only → ckd judgeable; waist 80 man → MetS judgeable (3).
            row(sex=1, urine_protein=1, waist_cm=80.0),
            # 5: waist 87 with unknown sex → MetS 判定不能 → not judgeable; sbp → hypertension.
            row(waist_cm=87.0, sbp=120, ggt=20.0, tg=100.0),
        ],
        ignore_index=True,
    )
    ev = outcome_evaluable(df)
    assert list(ev.columns) == list(OUTCOMES)
    assert ev["diabetes"].tolist() == [True, False, True, False, False, False]
    assert ev["ckd"].tolist() == [False, False, False, False, True, False]
    assert ev["metabolic_syndrome"].tolist() == [False] * 4 + [True, False]
    assert ev["hypertension"].tolist() == [False] * 5 + [True]
    assert ev["liver"].tolist() == [False] * 5 + [True]
    assert ev["dyslipidemia"].tolist() == [False] * 5 + [True]


# ---------------------------------------------------------------------------------------------
# threshold_flags
# ---------------------------------------------------------------------------------------------


def test_threshold_flags() -> None:
    df = pd.DataFrame(
        {
            "sex": [1, 2, 1, pd.NA],
            "sbp": [129, 130, 140, NAN],  # 0, 1 (≥130), 2 (≥140), NA
            "hdl": [40.0, 39.0, 20.0, NAN],  # 0, 1 (<40), 1 (no referral level), NA
            "egfr": [60.0, 59.9, 44.9, 45.0],  # 0, 1 (<60), 2 (<45), 1
            "tg": [160.0, 160.0, 300.0, 175.0],
            "blood_draw_timing": [2, 3, 3, 4],  # fasting 160→1; random 160→0; 300→2; 175→1
            "fpg": [NAN, 99.0, 126.0, NAN],
            "random_glucose": [100.0, 200.0, NAN, NAN],  # glucose: 1 (random), 0, 2, NA
            "hemoglobin": [13.0, 12.0, 12.1, 11.0],  # M ≤13.0→1; F ≤12.0→1; M 12.1→1; ?→2
            "waist_cm": [85.0, 89.0, 84.0, 87.0],  # M 1; F 0; M 0; unknown sex in [85,90)→NA
            "urine_protein": [1, 2, 3, 5],  # 0, 1 (±), 2 (+), 2
        }
    )
    flags = threshold_flags(df)
    assert (flags.dtypes == "Int8").all()
    assert flags.columns.str.startswith("flag_").all()

    def col(name: str) -> list[object]:
        return [None if pd.isna(x) else int(x) for x in flags[name]]

    assert col("flag_sbp") == [0, 1, 2, None]
    assert col("flag_hdl") == [0, 1, 1, None]
    assert col("flag_egfr") == [0, 1, 2, 1]
    assert col("flag_tg") == [1, 0, 2, 1]
    assert col("flag_glucose") == [1, 0, 2, None]
    assert col("flag_hemoglobin") == [1, 1, 1, 2]
    assert col("flag_waist_cm") == [1, 0, 0, None]
    assert col("flag_urine_protein") == [0, 1, 2, 2]
    assert col("flag_ldl") == [None] * 4  # absent column → all <NA>


# ---------------------------------------------------------------------------------------------
# eGFR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cr", "age", "sex", "expected"),
    [(0.86, 60, 1, 70.7), (0.70, 58, 2, 66.0), (1.00, 70, 1, 57.3)],
)
def test_egfr_worked_checks(cr: float, age: int, sex: int, expected: float) -> None:
    # 194 × Cr^-1.094 × age^-0.287 (× 0.739 for women), docs/domain.md §eGFR.
    assert round(float(egfr_jsn(cr, age, sex)), 1) == expected


def test_egfr_vectorised_and_missing() -> None:
    cr = pd.Series([0.86, 0.70, None, 0.0, 1.0], dtype="Float64", index=list("abcde"))
    age = pd.Series([60, 58, 60, 60, pd.NA], dtype="Int64", index=list("abcde"))
    sex = np.array([1, 2, 1, 1, 1])
    out = egfr_jsn(cr, age, sex)
    assert isinstance(out, pd.Series)
    assert list(out.index) == list("abcde")
    assert out.round(1).tolist()[:2] == [70.7, 66.0]
    assert out.iloc[2:].isna().all()  # missing Cr, Cr 0, missing age → NaN
    arr = egfr_jsn(np.array([1.0, 1.0]), 70, np.array([1, 3]))
    assert isinstance(arr, np.ndarray)
    assert round(arr[0], 1) == 57.3
    assert math.isnan(arr[1])  # sex code 3 → NaN


# ---------------------------------------------------------------------------------------------
# Vectorisation vs a scalar reference (docs/domain.md §MetS, §Stratification, §Outcomes)
# ---------------------------------------------------------------------------------------------


def _v(x: object) -> object:
    """NaN / pd.NA → None, like the pseudo-code's 'is not None'."""
    return None if pd.isna(x) else x


def _waist_over(sex: object, waist: object) -> bool | None:
    """Waist over the sex cut; None if waist missing or sex unknown and 85 <= waist < 90."""
    if waist is None:
        return None
    if sex == 1:
        return waist >= 85
    if sex == 2:
        return waist >= 90
    return True if waist >= 90 else (False if waist < 85 else None)


def ref_stratify(r: dict[str, object], literal_or: bool) -> str:
    g = {k: _v(r.get(k)) for k in r}
    if g["q_med_bp"] == 1 or g["q_med_glucose"] == 1 or g["q_med_lipid"] == 1:
        return "excluded_medication"
    waist_over = _waist_over(g["sex"], g["waist_cm"])
    bmi = g["bmi"]
    if waist_over is None and bmi is None:
        return "undeterminable"
    if waist_over:
        grp = 1
    elif bmi is not None and bmi >= 25:
        grp = 2
    else:
        return "information"
    sbp, dbp, tg, hdl = g["sbp"], g["dbp"], g["tg"], g["hdl"]
    fpg, rpg, hba1c = g["fpg"], g["random_glucose"], g["hba1c"]
    r_bp = (sbp is not None and sbp >= 130) or (dbp is not None and dbp >= 85)
    tg_cut = 175 if g["blood_draw_timing"] in (3, 4) else 150
    r_lip = (tg is not None and tg >= tg_cut) or (hdl is not None and hdl < 40)
    if literal_or:
        gl = fpg if fpg is not None else rpg
        r_glu = (gl is not None and gl >= 100) or (hba1c is not None and hba1c >= 5.6)
    elif fpg is not None:
        r_glu = fpg >= 100
    elif hba1c is not None:
        r_glu = hba1c >= 5.6
    else:
        r_glu = rpg is not None and rpg >= 100
    n = int(r_bp) + int(r_lip) + int(r_glu)
    if n >= 1 and g["q_smoking"] == 1:
        n += 1
    if grp == 1:
        lvl = "active" if n >= 2 else ("motivational" if n == 1 else "information")
    else:
        lvl = "active" if n >= 3 else ("motivational" if n >= 1 else "information")
    if lvl == "active" and g["age"] is not None and g["age"] >= 65:
        lvl = "motivational"
    return lvl


def ref_mets(r: dict[str, object]) -> int:
    g = {k: _v(r.get(k)) for k in r}
    over = _waist_over(g["sex"], g["waist_cm"])
    if over is None:
        return 4
    if not over:
        return 3
    fpg, hba1c = g["fpg"], g["hba1c"]
    if fpg is not None:
        glu = fpg >= 110
    else:
        glu = hba1c is not None and hba1c >= 6.0
    glu = glu or g["q_med_glucose"] == 1
    tg_cut = 175 if g["blood_draw_timing"] in (3, 4) else 150
    lip = (g["tg"] is not None and g["tg"] >= tg_cut) or (g["hdl"] is not None and g["hdl"] < 40)
    lip = lip or g["q_med_lipid"] == 1
    bp = (g["sbp"] is not None and g["sbp"] >= 130) or (g["dbp"] is not None and g["dbp"] >= 85)
    bp = bp or g["q_med_bp"] == 1
    n = int(glu) + int(lip) + int(bp)
    return 1 if n >= 2 else (2 if n == 1 else 3)


def ref_outcomes(r: dict[str, object]) -> dict[str, bool]:
    g = {k: _v(r.get(k)) for k in r}

    def ge(k: str, cut: float) -> bool:
        return g[k] is not None and g[k] >= cut

    return {
        "diabetes": ge("hba1c", 6.5) or ge("fpg", 126) or g["q_med_glucose"] == 1,
        "hypertension": ge("sbp", 140) or ge("dbp", 90) or g["q_med_bp"] == 1,
        "dyslipidemia": ge("ldl", 140)
        or ge("tg", 300)
        or ge("non_hdl", 170)
        or g["q_med_lipid"] == 1,
        "metabolic_syndrome": ref_mets(r) == 1,
        "ckd": (g["egfr"] is not None and g["egfr"] < 60) or ge("urine_protein", 3),
        "liver": ge("alt", 51) or ge("ggt", 101),
        "hyperuricemia": ge("uric_acid", 7.0),
    }


def random_checkups(n: int, seed: int = 20240401) -> pd.DataFrame:
    """Random rows straddling every threshold, with ~12% missing per column."""
    rng = np.random.default_rng(seed)

    def num(lo: float, hi: float, decimals: int = 0) -> np.ndarray:
        return np.round(rng.uniform(lo, hi, n), decimals)

    def code(choices: list[float], p: list[float]) -> np.ndarray:
        return rng.choice(np.array(choices, dtype=float), size=n, p=p)

    df = pd.DataFrame(
        {
            "sex": code([1, 2, NAN], [0.48, 0.48, 0.04]),
            "age": rng.integers(40, 75, n).astype(float),
            "waist_cm": num(70, 105),
            "bmi": num(19, 31, 1),
            "sbp": num(105, 160),
            "dbp": num(60, 100),
            "blood_draw_timing": code([2, 3, 4, NAN], [0.6, 0.2, 0.1, 0.1]),
            "tg": num(60, 400),
            "hdl": num(30, 80),
            "ldl": num(80, 180),
            "non_hdl": num(100, 200),
            "fpg": num(80, 140),
            "random_glucose": num(80, 160),
            "hba1c": num(4.8, 7.0, 1),
            "egfr": num(40, 100, 1),
            "urine_protein": code([1, 2, 3, 4, 5], [0.7, 0.1, 0.1, 0.05, 0.05]),
            "alt": num(10, 70),
            "ggt": num(10, 150),
            "q_med_bp": code([1, 2], [0.08, 0.92]),
            "q_med_glucose": code([1, 2], [0.04, 0.96]),
            "q_med_lipid": code([1, 2], [0.06, 0.94]),
            "q_smoking": code([1, 2, 3], [0.3, 0.5, 0.2]),
            "uric_acid": num(3, 10, 1),
        }
    )
    for c in df.columns:
        df.loc[rng.random(n) < 0.12, c] = NAN
    return df


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return random_checkups(100_000)


def test_vectorised_matches_scalar_reference(big: pd.DataFrame) -> None:
    # One call each over 100k rows.
    prec = stratify(big)
    lit = stratify(big, glucose_rule="literal_or")
    ms = metabolic_syndrome(big)
    met = outcomes_met(big)
    assert len(prec) == len(ms) == len(met) == len(big)
    # Every level and code occurs, so the comparison below is not vacuous.
    assert set(prec.unique()) == set(GUIDANCE_LEVELS)
    assert set(ms.unique()) == {1, 2, 3, 4}

    sample = np.random.default_rng(7).choice(len(big), size=500, replace=False)
    records = big.iloc[sample].to_dict("records")
    for i, rec in zip(sample, records, strict=True):
        assert prec.iloc[i] == ref_stratify(rec, literal_or=False), rec
        assert lit.iloc[i] == ref_stratify(rec, literal_or=True), rec
        assert ms.iloc[i] == ref_mets(rec), rec
        assert met.iloc[i].to_dict() == ref_outcomes(rec), rec


def test_nullable_dtypes_give_same_answers(big: pd.DataFrame) -> None:
    df = big.iloc[:20_000]
    ints = {"sex", "age", "sbp", "dbp", "blood_draw_timing", "urine_protein"}
    ints |= {c for c in df.columns if c.startswith("q_")}
    nullable = df.astype({c: ("Int64" if c in ints else "Float64") for c in df.columns})
    pd.testing.assert_series_equal(stratify(nullable), stratify(df))
    pd.testing.assert_series_equal(
        stratify(nullable, glucose_rule="literal_or"), stratify(df, glucose_rule="literal_or")
    )
    pd.testing.assert_series_equal(metabolic_syndrome(nullable), metabolic_syndrome(df))
    pd.testing.assert_frame_equal(outcomes_met(nullable), outcomes_met(df))
    pd.testing.assert_frame_equal(outcome_evaluable(nullable), outcome_evaluable(df))
    pd.testing.assert_frame_equal(threshold_flags(nullable), threshold_flags(df))


def test_index_is_preserved() -> None:
    df = pd.concat([row(**BASE_G1), row(**BASE_G2)], ignore_index=True)
    df.index = pd.Index([10, 3], name="checkup")
    for out in (stratify(df), metabolic_syndrome(df), outcomes_met(df), threshold_flags(df)):
        assert out.index.equals(df.index)
