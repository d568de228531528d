"""Real data we did not write: the Korean NHIS checkup sample, mapped onto the contract
(docs/contract.md §Checkups).

The mapping lives in the test on purpose: it is what a municipality's analyst would do with a
foreign export, and the reader must take the result as it comes (2024 questionnaire codes in a
FY2023 file, sentinel values such as waist 999, a 6-level urine dipstick). Skips when
``../shared/data/external/knhis/`` is not beside the checkout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.store import read_checkups, read_manifest, read_rejects
from tests.data.external_samples import SHARED, ingest_foreign_export

KNHIS = SHARED / "knhis"
SAMPLE = KNHIS / "smoking_drinking_nhis_head28k.csv"
EXAM_DATE = pd.Timestamp("2023-06-01")  # FY2023: the answers below are in the 2024 coding

pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason="no ../shared knhis sample")


def knhis_as_spec_checkups(raw: pd.DataFrame) -> pd.DataFrame:
    """The sample's rows as contract checkups (one checkup each; ages 20-85, all kept so that
    the sample's sentinel values, which sit outside ages 40-74, are in)."""
    # 5-year age bands: put each person in the middle of the band at the exam.
    birth = EXAM_DATE - pd.to_timedelta((raw["age"] + 2) * 365.25, unit="D")
    smoking = raw["SMK_stat_type_cd"].map({1.0: 3, 2.0: 2, 3.0: 1})  # never/former/current
    return pd.DataFrame(
        {
            "person_id": [f"KR-{i:06d}" for i in range(len(raw))],
            "exam_date": EXAM_DATE.strftime("%Y-%m-%d"),
            "sex": raw["sex"].map({"Male": 1, "Female": 2}),
            "birth_date": birth.dt.strftime("%Y-%m-%d"),
            "height_cm": raw["height"],
            "weight_kg": raw["weight"],
            "waist_cm": raw["waistline"],
            "sbp": raw["SBP"],
            "dbp": raw["DBP"],
            "blood_draw_timing": 2,  # NHIS draws blood fasting
            "fpg": raw["BLDS"],
            "tg": raw["triglyceride"],
            "hdl": raw["HDL_chole"],
            "ldl": raw["LDL_chole"],
            "ast": raw["SGOT_AST"],
            "alt": raw["SGOT_ALT"],
            "ggt": raw["gamma_GTP"],
            "creatinine": raw["serum_creatinine"],
            "hemoglobin": raw["hemoglobin"],
            "urine_protein": raw["urine_protein"],  # 1-6: NHIS has one more band than 特定健診
            "q_smoking": smoking,
            "q_alcohol_freq": np.where(raw["DRK_YN"] == "N", 8, pd.NA),  # Y: how often unknown
        }
    )


def knhis_ages() -> np.ndarray:
    return pd.read_csv(SAMPLE, usecols=["age"])["age"].to_numpy()


@pytest.fixture(scope="module")
def knhis_store(tmp_path_factory):
    checkups = knhis_as_spec_checkups(pd.read_csv(SAMPLE))
    result, store = ingest_foreign_export(checkups, tmp_path_factory.mktemp("knhis"))
    return checkups, result, store


def test_knhis_rows_load_with_accounting_that_adds_up(knhis_store):
    checkups, result, store = knhis_store
    assert len(checkups) == 28_460
    in_age = result.manifest["accounting"]["checkups"]
    assert in_age["read"] == 28_460
    a = result.accounting["checkups"]
    assert a.read == len(checkups) and a.balanced
    assert a.loaded >= 0.99 * a.read, (a, result.manifest["reject_reasons"])
    assert read_manifest(store)["accounting"]["checkups"]["loaded"] == a.loaded
    # The 20,087 rows of ages 40-70 (0 of them loaded before questionnaire codings existed).
    age = pd.Series(knhis_ages(), index=checkups.index)
    source_40_70 = int(age.between(40, 70).sum())
    assert source_40_70 == 20_087
    stored = read_checkups(store)
    assert stored["age"].between(42, 73).sum() >= 0.99 * source_40_70


def test_knhis_2024_codes_in_a_fy2023_file_are_detected(knhis_store):
    checkups, result, store = knhis_store
    decisions = result.manifest["questionnaire_coding"]["decisions"]
    assert [(d["fiscal_year"], d["coding"], d["basis"]) for d in decisions] == [
        (2023, "current", "detected")
    ]
    stored = read_checkups(store)
    # Former smokers stay former smokers (2), never-smokers 3, as the source says.
    source = checkups["q_smoking"].value_counts()
    got = stored["q_smoking"].value_counts()
    for code in (1, 2, 3):
        assert abs(got[code] - source[code]) <= 0.01 * len(checkups), code


def test_knhis_sentinels_are_rejected_or_flagged_with_a_reason(knhis_store):
    checkups, result, store = knhis_store
    rejects = read_rejects(store)
    stored = read_checkups(store)
    assert len(rejects) == result.accounting["checkups"].rejected
    assert rejects["reason"].notna().all() and rejects["column"].notna().all()
    by_column = rejects.groupby("column").size()
    # waist 999, HDL 8110, TG 9490 are outside the hard ranges: the rows are quarantined.
    for column, sentinel in (("waist_cm", 999), ("hdl", 8110), ("tg", 9490)):
        assert (checkups[column] == sentinel).any(), column
        assert by_column.get(column, 0) >= 1, column
        assert not (stored[column] == sentinel).any(), column
    # Urine protein 6 is no 特定健診 code: missing and flagged, the row's measurements kept.
    n6 = int((checkups["urine_protein"] == 6).sum())
    assert n6 > 0
    flagged = stored["soft_flags"].fillna("").str.contains("urine_protein_invalid")
    assert flagged.sum() >= n6 - by_column.sum()
    assert stored.loc[flagged, "urine_protein"].isna().all()
    assert stored.loc[flagged, "sbp"].notna().all()
    counts = {(c["item"], c["coding"]): c["rows"] for c in result.manifest["invalid_codes"]}
    assert counts[("urine_protein", "current")] == int(flagged.sum())


def test_knhis_derived_values_stay_in_range(knhis_store):
    """Creatinine 0.1 mg/dL is real here; its eGFR (~800) is set aside, never a crash."""
    checkups, result, store = knhis_store
    stored = read_checkups(store)
    assert stored["egfr"].dropna().between(1, 250).all()
    low_cr = stored["creatinine"] <= 0.1
    assert low_cr.any()  # the sample holds such rows: the check below is never vacuous
    assert stored.loc[low_cr, "egfr"].isna().all()
    assert result.manifest["derived_out_of_range"]["egfr"] >= int(low_cr.sum())
