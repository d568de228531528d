"""Real data we did not write: NHANES 2013-2014 (US adults), mapped onto the contract
(docs/contract.md §Checkups).

The one external sample with both HbA1c and fasting glucose measured on the same people, and
with a fasting subsample: the rest were drawn without fasting and carry a random (serum)
glucose instead, as a non-fasting 特定健診 draw does. The mapping lives in the test on purpose:
it is what an analyst would do with a foreign export (survey codes, three blood pressure
readings, "don't know" answers). Skips when ``../shared/data/external/nhanes/`` is not beside
the checkout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.store import read_checkups, read_rejects
from tests.data.external_samples import SHARED, ingest_foreign_export

SAMPLE = SHARED / "nhanes" / "nhanes_2013_2014_adults_checkup_vars.csv"
# A date in FY2024: the answers below are in the 2024 coding; HbA1c is NGSP (no JDS rows).
EXAM_DATE = pd.Timestamp("2024-06-01")

pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason="no ../shared nhanes sample")


def _yes_no(yes: pd.Series, asked: pd.Series) -> np.ndarray:
    """1 where ``yes``, 2 where only ``asked``, missing otherwise ("don't know", not asked)."""
    return np.where(yes, 1, np.where(asked, 2, np.nan))


def _mean_reading(raw: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The mean of the readings taken, rounded (a 0 is a reading the examiner did not hear)."""
    return raw[columns].replace(0, np.nan).mean(axis=1).round()


def nhanes_as_spec_checkups(raw: pd.DataFrame) -> pd.DataFrame:
    """The sample's rows as contract checkups (one checkup each, ages 20-80 as they come).

    Blood pressure: the mean of the readings taken. Fasting
    (≥ 10 h since the last meal, 採血時間 2) rows give fasting glucose, the others their
    biochemistry panel's glucose as random glucose; TG from the fasting panel where there is
    one. Medication: diabetes pills or insulin, the BP and cholesterol medicine questions.
    """
    birth = EXAM_DATE - pd.to_timedelta((raw["RIDAGEYR"] + 0.5) * 365.25, unit="D")
    hours = raw["PHAFSTHR"]
    fasting = hours >= 10
    smoked = raw["SMQ020"] == 1
    smoking = np.where(
        raw["SMQ020"] == 2, 3, np.where(smoked & raw["SMQ040"].isin([1, 2]), 1,
                                        np.where(smoked & (raw["SMQ040"] == 3), 2, np.nan)),
    )  # fmt: skip
    glucose_med = (raw["DIQ050"] == 1) | (raw["DIQ070"] == 1)
    return pd.DataFrame(
        {
            "person_id": [f"US-{int(s)}" for s in raw["SEQN"]],
            "exam_date": EXAM_DATE.strftime("%Y-%m-%d"),
            "sex": raw["RIAGENDR"],
            "birth_date": birth.dt.strftime("%Y-%m-%d"),
            "height_cm": raw["BMXHT"],
            "weight_kg": raw["BMXWT"],
            "waist_cm": raw["BMXWAIST"],
            "sbp": _mean_reading(raw, ["BPXSY1", "BPXSY2", "BPXSY3"]),
            "dbp": _mean_reading(raw, ["BPXDI1", "BPXDI2", "BPXDI3"]),
            "blood_draw_timing": np.where(fasting, 2, np.where(hours >= 3.5, 3, 4)),
            "fpg": raw["LBXGLU"].where(fasting),
            "random_glucose": raw["LBXSGL"].where(~fasting),
            "hba1c": raw["LBXGH"],
            "tg": raw["LBXTR"].where(fasting & raw["LBXTR"].notna(), raw["LBXSTR"]),
            "hdl": raw["LBDHDD"],
            "ldl": raw["LBDLDL"],
            "ast": raw["LBXSASSI"],
            "alt": raw["LBXSATSI"],
            "ggt": raw["LBXSGTSI"],
            "creatinine": raw["LBXSCR"],
            "uric_acid": raw["LBXSUA"],
            "q_med_glucose": _yes_no(glucose_med, raw["DIQ010"].isin([1, 2, 3])),
            "q_med_bp": _yes_no(raw["BPQ050A"] == 1, raw["BPQ020"].isin([1, 2])),
            "q_med_lipid": _yes_no(raw["BPQ100D"] == 1, raw["BPQ080"].isin([1, 2])),
            "q_smoking": smoking,
        }
    )


def ingest_nhanes(folder: Path):
    """(the mapped checkups, the ingest result, the store) of the sample in ``folder``."""
    checkups = nhanes_as_spec_checkups(pd.read_csv(SAMPLE))
    result, store = ingest_foreign_export(checkups, folder)
    return checkups, result, store


@pytest.fixture(scope="module")
def nhanes_store(tmp_path_factory):
    return ingest_nhanes(tmp_path_factory.mktemp("nhanes"))


def test_nhanes_rows_load_with_accounting_that_adds_up(nhanes_store):
    checkups, result, store = nhanes_store
    assert len(checkups) == 5_588
    a = result.accounting["checkups"]
    assert a.read == len(checkups) and a.balanced
    assert a.loaded >= 0.99 * a.read, (a, result.manifest["reject_reasons"])
    rejects = read_rejects(store)
    assert len(rejects) == a.rejected
    assert rejects["reason"].notna().all() and rejects["column"].notna().all()
    stored = read_checkups(store)
    assert stored["age"].between(40, 74).sum() >= 3_100  # the 特定健診 ages are all there
    assert stored["soft_flags"].fillna("").str.contains("age_outside_40_74").any()


def test_nhanes_glucose_panels_arrive_as_measured(nhanes_store):
    """Fasting draws keep fasting glucose, the others random glucose; HbA1c (NGSP, FY2024) and
    the other values arrive unchanged: nothing converted, nothing invented."""
    checkups, _, store = nhanes_store
    stored = read_checkups(store)
    fasting = stored["blood_draw_timing"] == 2
    assert fasting.sum() >= 2_000 and (~fasting).sum() >= 2_000
    assert stored.loc[stored["fpg"].notna(), "blood_draw_timing"].eq(2).all()
    assert stored.loc[stored["random_glucose"].notna(), "blood_draw_timing"].isin([3, 4]).all()
    both = stored["hba1c"].notna() & stored["fpg"].notna()
    assert both.sum() >= 2_000
    for column in ("hba1c", "waist_cm", "fpg", "ldl"):
        # the store keeps pseudonyms, not the source's IDs: compare the values themselves
        want = checkups[column].dropna().to_numpy(dtype="float64")
        got = stored[column].dropna().to_numpy(dtype="float64")
        assert len(got) >= 0.99 * len(want), column
        assert np.isin(got, want).all(), column
