"""The published FY2024 sample 健診結果情報 (社会保険診療報酬支払基金, V08), read value by value.

Every expected value below was read by hand from the document (not from the reader), with the
element it comes from. The file stays in ``../shared`` (never copied here); the test skips
without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from data.ingest import IngestConfig, ingest
from data.mhlw_xml import read_checkup_xml
from data.mhlw_xml.items import xsd_dir
from data.store import read_checkups, read_manifest, read_rejects
from tests.conftest import checkup_row, write_bundle

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (
    REPO
    / ".."
    / "shared"
    / "data"
    / "external"
    / "mhlw_samples"
    / "kensin_kihon_tokutei_FY2024.xml"
)
pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason="no ../shared sample document")

#: The canonical row of the sample, by hand. Comments: where in the document.
EXPECTED = {
    "person_id": "131-123123123",  # 記号 "１３１" (full-width → 131), 番号 123123123
    "exam_date": "20240415",  # serviceEvent/effectiveTime (健診実施年月日)
    "sex": "1",  # administrativeGenderCode
    "birth_date": "19700516",
    "height_cm": "162.3",  # 9N001
    "weight_kg": "65.5",  # 9N006
    "bmi": "24.9",  # 9N011
    "waist_cm": "70",  # 9N016 1601 (measured)
    # SBP: 1st nullFlavor NI, 2nd 149 (its interpretationCode H is the reference range), "other"
    # negationInd=true → the 2nd reading alone.
    "sbp": "149",
    # DBP "other" 9A765: CD H (2.16.840.1.113883.5.83, 以上) + PQ 150: 150 and a flag; the 1st
    # and 2nd readings (90, 95) give way to the "other" one.
    "dbp": "150",
    "blood_draw_timing": "3",  # 9N141 code 3 (OID …2202): 3.5-10 h after a meal
    "tg": "60",  # 3F015 1299 (random TG), consistent with 9N141 = 3
    "hdl": "45",  # 3F070
    "ldl": "88",  # 3F077
    "non_hdl": None,
    "ast": "32",  # 3B035
    "alt": "16",  # 3B045
    "ggt": "55",  # 3B090
    "fpg": None,
    "random_glucose": None,
    "hba1c": "7",  # 3D046 (NGSP), FY2024
    "urine_glucose": "1",  # 1A020 CO code 1 (−)
    "urine_protein": None,  # 1A010 negationInd=true (9N512: reason 3 その他)
    "creatinine": "16.00",  # group 3C015…: COMP 3C015000002327101
    "egfr": "16",  # COMP 8A065000002391901
    "uric_acid": None,  # not in the document (01990 holds 3F050, 1A100, 9N026)
    "hemoglobin": "12.9",  # anaemia group 2A020…: COMP 2A030000001930101
    "facility_mets": "3",  # 9N501 code 3 非該当 (OID …1008)
    "facility_guidance_level": "3",  # 9N506 code 3 なし (OID …3001)
    "facility_doctor_judgement": None,  # 9N511 is free text (ST): not stored
    "q_med_bp": "2",  # 9N701
    "q_med_glucose": "2",  # 9N706
    "q_med_lipid": "2",  # 9N711
    "q_hist_stroke": "2",  # 9N716
    "q_hist_heart": "2",  # 9N721
    "q_hist_kidney": "1",  # 9N726
    "q_anemia": "2",  # 9N731
    "q_smoking": "2",  # 9N736 code 2 (OID …24060: quit, not in the last month)
    "q_weight_gain": "1",  # 9N741
    "q_exercise": "2",  # 9N746
    "q_walking": "2",  # 9N751
    "q_walk_fast": "1",  # 9N756
    "q_chewing": "1",  # 9N872 (…18030)
    "q_eating_speed": "2",  # 9N766 (…2004)
    "q_late_dinner": "2",  # 9N771
    "q_snacks": "2",  # 9N782 (…18040)
    "q_skip_breakfast": "1",  # 9N781
    "q_alcohol_freq": "3",  # 9N786 code 3 (…24040: 3-4 days a week)
    "q_alcohol_amount": "1",  # 9N791 CO code 1 (…24050: under 1 合)
    "q_sleep": "2",  # 9N796
    "q_intention": "1",  # 9N801 (…2007)
    "q_guidance_received": "1",  # 9N808
}


def test_the_sample_is_valid_against_the_shipped_official_schema():
    schema = etree.XMLSchema(etree.parse(str(xsd_dir() / "hc08_V08.xsd")))
    assert schema.validate(etree.parse(str(SAMPLE))), schema.error_log


def test_every_value_of_the_sample_as_read_by_hand():
    got = read_checkup_xml(SAMPLE)
    assert got["_reject_reason"] is None
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert got["_reader_flags"] == "dbp_above_range"
    notes = got["_xml_notes"].split(";")
    assert "dbp_above_range" in notes
    # Items of the table kenshin does not use (既往歴, Ht, RBC, ECG, fundus, 9N512, 9N950,
    # 9N807, the 01990 items …) are counted, never unknown, and nothing else is noted.
    assert not [n for n in notes if n.startswith("unknown_item")]
    assert set(notes) == {"known_item_not_mapped", "dbp_above_range"}


def test_the_sample_through_ingest_is_read_and_accounted_for(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    (bundle / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
    result = ingest(bundle, tmp_path / "s", IngestConfig(today="2026-11-27", accept_rejects=True))
    acct = result.accounting["checkups"]
    assert acct.read == 2 and acct.balanced
    notes = read_manifest(tmp_path / "s")["reader_notes"]["checkups"]["xml"]
    assert notes["documents"] == 1 and notes["documents_rejected"] == 0
    assert notes["dbp_above_range"] == 1
    # Read faithfully, the sample pairs SBP 149 (2nd reading) with DBP ≥150 ("other"): that
    # pair cannot be one reading, so the pair is set aside and flagged; the checkup loads.
    assert read_rejects(tmp_path / "s").empty and acct.loaded == 2
    chk = read_checkups(tmp_path / "s")
    sample = chk.loc[chk["soft_flags"].fillna("").str.contains("dbp_above_range")]
    assert len(sample) == 1
    assert set(sample["soft_flags"].iloc[0].split(";")) >= {"sbp_not_above_dbp", "dbp_above_range"}
    assert sample["sbp"].isna().all() and sample["dbp"].isna().all()
