"""MHLW checkup XML (HL7 CDA R2): schema validity, round trip through ingest, bad documents."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree

from data.ingest import IngestConfig, ingest
from data.mhlw_xml import (
    ArchiveSpec,
    read_checkup_xml,
    read_xml,
    write_checkup_xml,
    write_exchange_archive,
)
from data.mhlw_xml import reader as xml_reader
from data.mhlw_xml.items import xsd_dir
from data.mhlw_xml.writer import MHLW_NS
from data.store import read_checkups, read_manifest, read_rejects
from tests.conftest import checkup_row, write_bundle

TODAY = "2026-11-27"
CONTACT = {
    "name_kana": "ケンシン タロウ",
    "postal_code": "166-0000",
    "address": "東京都架空区1-2-3",
}


def _config() -> IngestConfig:
    return IngestConfig(today=TODAY, accept_rejects=True)  # tests of reject reasons


def _row(**overrides) -> dict:
    """A checkup as the text a CSV export carries, dates as YYYYMMDD."""
    row = checkup_row(exam_date="20240610", birth_date="19700501", **overrides)
    return {k: (None if v == "" else v) for k, v in row.items()}


def _doc(**overrides) -> bytes:
    return write_checkup_xml(_row(**overrides), CONTACT)


@pytest.fixture(scope="module")
def schemas():
    """The official V08 schemas of the checkup document, the index and the summary."""
    return tuple(
        etree.XMLSchema(etree.parse(str(xsd_dir() / f"{name}_V08.xsd")))
        for name in ("hc08", "ix08", "su08")
    )


@pytest.fixture(scope="module")
def bundles(small_ward, tmp_path_factory):
    """The small ward as a CSV bundle and as an XML bundle (same enrollment/contacts CSVs)."""
    from data.synth import write_bundle as synth_write

    root = tmp_path_factory.mktemp("xml_bundles")
    synth_write(small_ward, root / "csv")
    synth_write(small_ward, root / "xml")
    (root / "xml" / "checkups.csv").unlink()
    archives = write_exchange_archive(small_ward.checkups, small_ward.contacts, root / "xml")
    return root / "csv", root / "xml", archives


def _stored(store: Path) -> pd.DataFrame:
    return read_checkups(store).drop(columns=["_source_file", "_source_row"])


# ------------------------------------------------------------------------------------------
# Writer: schema validity and archive layout
# ------------------------------------------------------------------------------------------


def test_every_written_file_validates_against_the_official_schemas(bundles, schemas):
    hc, ix, _ = schemas
    _, _, archives = bundles
    assert len(archives) == 4  # one archive per fiscal year FY2022-2025
    for archive in archives:
        root = archive.stem
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            assert f"{root}/ix08_V08.xml" in names
            official = {p.relative_to(xsd_dir()).as_posix() for p in xsd_dir().rglob("*.xsd")}
            assert {n.split("/XSD/", 1)[1] for n in names if "/XSD/" in n} == official
            index = etree.fromstring(zf.read(f"{root}/ix08_V08.xml"))
            assert etree.QName(index).namespace == MHLW_NS  # its own namespace, not HL7's
            assert ix.validate(index), ix.error_log
            data = sorted(n for n in names if "/DATA/" in n)
            assert int(index.find(f"{{{MHLW_NS}}}totalRecordCount").get("value")) == len(data)
            assert all(Path(n).name.startswith("h") and len(Path(n).stem) == 27 for n in data)
            assert set(names) == {*data, f"{root}/ix08_V08.xml"} | {
                n for n in names if "/XSD/" in n
            }
            for name in data:  # every document, not a sample
                doc = etree.fromstring(zf.read(name))
                assert hc.validate(doc), (name, hc.error_log)


def test_summary_file_on_request_validates_and_counts_the_documents(small_ward, tmp_path, schemas):
    _, ix, su = schemas
    one_year = small_ward.checkups.iloc[:50]
    (archive,) = write_exchange_archive(
        one_year, None, tmp_path, spec=ArchiveSpec(summary=True), workers=1
    )
    with zipfile.ZipFile(archive) as zf:
        summary = etree.fromstring(zf.read(f"{archive.stem}/su08_V08.xml"))
        index = etree.fromstring(zf.read(f"{archive.stem}/ix08_V08.xml"))
    assert su.validate(summary), su.error_log
    assert ix.validate(index), ix.error_log
    assert summary.find(f"{{{MHLW_NS}}}totalSubjectCount").get("value") == "50"


def test_hand_written_documents_validate_in_every_questionnaire_version(schemas):
    hc, _, _ = schemas
    for exam in ("20240610", "20220610", "20120610"):
        doc = write_checkup_xml(
            {
                **_row(egfr="70.1", hemoglobin="14.2", q_guidance_received="2", uric_acid="5.9"),
                **{"facility_mets": "1", "facility_guidance_level": "2", "exam_date": exam},
            },
            CONTACT,
        )
        assert hc.validate(etree.fromstring(doc)), hc.error_log


def test_old_fiscal_years_carry_old_answer_versions():
    new = _doc(q_smoking="3", q_guidance_received="2").decode()
    old = write_checkup_xml({**_row(q_smoking="2"), "exam_date": "20230610"}).decode()
    assert 'codeSystem="1.2.392.200119.6.24060"' in new and "9N808000000000011" in new
    assert 'code="2" codeSystem="1.2.392.200119.6.2003"' in old  # smoking, 2-option version
    assert "1.2.392.200119.6.24060" not in old and "1.2.392.200119.6.2005" in old


# ------------------------------------------------------------------------------------------
# Reader: one document
# ------------------------------------------------------------------------------------------


def test_one_document_reads_back_as_the_csv_row():
    row = _row(egfr="70.1", hemoglobin="14.2", random_glucose="110")
    got = read_checkup_xml(write_checkup_xml(row, CONTACT), "h1.xml")
    assert got["_reject_reason"] is None
    assert {k: got[k] for k in row} == row


def test_full_width_card_symbol_and_branch_parse_to_the_person_id():
    doc = _doc().decode()
    assert 'extension="１２"' in doc  # the writer's full-width symbol
    assert read_checkup_xml(doc.encode())["person_id"] == "12-000001"
    doc = doc.replace('extension="１２"', 'extension="国保１２"').replace(
        'extension="000001"/>',
        'extension="０００００１"/><id root="1.2.392.200119.6.211" extension="０１"/>',
    )
    assert read_checkup_xml(doc.encode())["person_id"] == "国保12-000001-01"


def _replace_entry(doc: bytes, code: str, new_value_xml: str, new_code: str | None = None) -> bytes:
    tree = etree.fromstring(doc)
    ns = {"h": "urn:hl7-org:v3"}
    obs = tree.xpath(f"//h:observation[h:code/@code='{code}']", namespaces=ns)[0]
    value = obs.find("h:value", ns)
    obs.replace(value, etree.fromstring(new_value_xml.replace("<value ", _VALUE_NS)))
    if new_code:
        obs.find("h:code", ns).set("code", new_code)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


_VALUE_NS = '<value xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '


def test_bp_readings_waist_methods_fasting_and_hba1c_variants():
    doc = _doc(sbp=None, dbp=None)
    # 1st and 2nd readings only (no "other" value): their mean, rounded half up.
    doc = _replace_entry(
        doc,
        "9A755000000000001",
        '<value xsi:type="PQ" value="131" unit="mm[Hg]"/>',
        "9A751000000000001",
    )
    doc = _replace_entry(
        doc,
        "9A765000000000001",
        '<value xsi:type="PQ" value="80" unit="mm[Hg]"/>',
        "9A761000000000001",
    )
    doc = doc.replace(
        b"</section>",
        b'<entry><observation classCode="OBS" moodCode="EVN"><code code="9A752000000000001"/>'
        b'<value xsi:type="PQ" value="134" unit="mm[Hg]"/></observation></entry>'
        b'<entry><observation classCode="OBS" moodCode="EVN"><code code="9A762000000000001"/>'
        b'<value xsi:type="PQ" value="83" unit="mm[Hg]"/></observation></entry>'
        # self-reported waist loses to the measured one; an unlisted lab method still maps
        b'<entry><observation classCode="OBS" moodCode="EVN"><code code="9N016160300000001"/>'
        b'<value xsi:type="PQ" value="99" unit="cm"/></observation></entry>'
        b"</section>",
    )
    got = read_checkup_xml(doc)
    assert (got["sbp"], got["dbp"], got["waist_cm"]) == ("133", "82", "86.0")
    # Random TG (1299) → tg; its timing comes from 9N141.
    rnd = _doc(blood_draw_timing="3")
    assert b"3F015129902327101" in rnd
    got = read_checkup_xml(rnd)
    assert (got["tg"], got["blood_draw_timing"]) == ("140", "3")
    # Legacy JDS HbA1c (3D045) in FY2024 → NGSP + 0.4; NGSP in FY2012 → JDS, as CSV exports.
    jds = _replace_entry(
        _doc(),
        "3D046000001906202",
        '<value xsi:type="PQ" value="5.3" unit="%"/>',
        "3D045000001906202",
    )
    assert read_checkup_xml(jds)["hba1c"] == "5.7"
    old = write_checkup_xml({**_row(), "exam_date": "20120610"})
    assert b"3D045000001906202" in old and read_checkup_xml(old)["hba1c"] == "5.7"


def test_answer_versions_follow_the_fiscal_year_by_result_oid():
    # FY2024 document with the old 2-option smoking answer "no" (OID 2003) → 2024 code 3.
    doc = _replace_entry(
        _doc(),
        "9N736000000000011",
        '<value xsi:type="CD" code="2" codeSystem="1.2.392.200119.6.2003"/>',
    )
    got = read_checkup_xml(doc)
    assert got["q_smoking"] == "3" and "answer_version_converted:q_smoking" in got["_xml_notes"]
    # FY2022 document with the 2024 alcohol answer 4 (1-2 days/week, OID 24040) → old code 2.
    old = write_checkup_xml({**_row(), "exam_date": "20220610"})
    old = _replace_entry(
        old,
        "9N786000000000011",
        '<value xsi:type="CD" code="4" codeSystem="1.2.392.200119.6.24040"/>',
    )
    assert read_checkup_xml(old)["q_alcohol_freq"] == "2"
    # Old item 22 (9N806, wish for guidance) in FY2024 is a different question: ignored, noted.
    doc = _replace_entry(
        _doc(q_guidance_received="1"),
        "9N808000000000011",
        '<value xsi:type="CD" code="1" codeSystem="1.2.392.200119.6.2003"/>',
        "9N806000000000011",
    )
    got = read_checkup_xml(doc)
    assert got["q_guidance_received"] is None and "legacy_item_ignored:9N806" in got["_xml_notes"]


# ------------------------------------------------------------------------------------------
# Round trip and mixed bundles through ingest
# ------------------------------------------------------------------------------------------


def test_xml_bundle_ingests_to_the_same_store_as_the_csv_bundle(bundles, tmp_path):
    csv_bundle, xml_bundle, _ = bundles
    r_csv = ingest(csv_bundle, tmp_path / "s_csv", _config())
    r_xml = ingest(xml_bundle, tmp_path / "s_xml", _config())
    assert r_xml.rejects.empty and r_csv.rejects.empty
    assert r_xml.accounting == r_csv.accounting
    pd.testing.assert_frame_equal(_stored(tmp_path / "s_csv"), _stored(tmp_path / "s_xml"))
    notes = read_manifest(tmp_path / "s_xml")["reader_notes"]["checkups"]["xml"]
    assert notes["documents"] == r_xml.accounting["checkups"].read
    assert notes["unknown_item_codes"] == {}
    stored = read_checkups(tmp_path / "s_xml")
    assert (
        stored["_source_file"].str.match(r"^\d{10}_\d{8}_\d{9}_1\.zip:.+/DATA/h\d{26}\.xml$").all()
    )


def test_parallel_and_serial_reads_agree(bundles, monkeypatch):
    _, _, archives = bundles
    serial, _ = read_xml(archives, workers=1)
    monkeypatch.setattr(xml_reader, "PARALLEL_MIN_DOCS", 0)
    monkeypatch.setattr(xml_reader, "BATCH", 97)
    parallel, notes = read_xml(archives, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert notes["xml"]["documents"] == len(serial)


def test_mixed_bundle_of_csv_and_xml_checkups_loads_everything(bundles, small_ward, tmp_path):
    csv_bundle, _, _ = bundles
    mixed = tmp_path / "mixed"
    shutil.copytree(csv_bundle, mixed)
    chk = pd.read_csv(mixed / "checkups.csv", dtype=str, keep_default_na=False)
    as_xml = chk.index % 3 == 0
    chk.loc[~as_xml].to_csv(mixed / "checkups.csv", index=False)
    write_exchange_archive(small_ward.checkups.loc[as_xml], small_ward.contacts, mixed / "xml")
    ingest(csv_bundle, tmp_path / "s_csv", _config())
    result = ingest(mixed, tmp_path / "s_mixed", _config())
    assert result.rejects.empty
    assert result.accounting["checkups"].loaded == len(chk)
    pd.testing.assert_frame_equal(_stored(tmp_path / "s_csv"), _stored(tmp_path / "s_mixed"))
    files = read_checkups(tmp_path / "s_mixed")["_source_file"]
    assert (files == "checkups.csv").sum() == (~as_xml).sum()


# ------------------------------------------------------------------------------------------
# Bad documents: rejects with file name and reason, accounting adds up
# ------------------------------------------------------------------------------------------


def _bad_bundle(folder: Path) -> Path:
    """A CSV bundle (one row) plus loose XML files, good and bad."""
    write_bundle(folder, [checkup_row(person_id="99-000009")])
    good = _doc()
    docs = {
        "h_good.xml": good,
        "h_good_copy.xml": good,  # the same document twice
        "h_malformed.xml": good[: len(good) // 2],
        "h_namespace.xml": good.replace(b'xmlns="urn:hl7-org:v3"', b'xmlns="urn:example:other"'),
        "h_unknown.xml": _doc(person_id="12-000002").replace(
            b"</section>",
            b'<entry><observation classCode="OBS" moodCode="EVN"><code code="9Z999000000000001"/>'
            b'<value xsi:type="PQ" value="1" unit="cm"/></observation></entry></section>',
        ),
        "h_unit.xml": _replace_entry(
            _doc(person_id="12-000003"),
            "9N001000000000001",
            '<value xsi:type="PQ" value="1.70" unit="m"/>',
        ),
        "h_nodate.xml": _doc(person_id="12-000004").replace(
            b'<effectiveTime value="20240610"/>', b'<effectiveTime nullFlavor="NI"/>'
        ),
    }
    for name, data in docs.items():
        (folder / name).write_bytes(data)
    return folder


def test_bad_documents_end_in_rejects_with_file_and_reason(tmp_path):
    bundle = _bad_bundle(tmp_path / "b")
    result = ingest(bundle, tmp_path / "store", _config())
    acct = result.accounting["checkups"]
    assert acct.read == 8 and acct.balanced
    # the CSV row, the good document, the one with an unknown item, the one with a height in
    # metres (that value is set aside, not the checkup)
    assert acct.loaded == 4
    rej = read_rejects(tmp_path / "store").set_index("source_file")
    assert set(rej.index) == {
        "h_good_copy.xml",
        "h_malformed.xml",
        "h_namespace.xml",
        "h_nodate.xml",
    }
    reason = rej["reason"]
    assert (
        reason["h_good_copy.xml"].startswith("duplicate document")
        and "h_good.xml" in reason["h_good_copy.xml"]
    )
    assert reason["h_malformed.xml"].startswith("malformed XML")
    assert "wrong XML namespace urn:example:other" in reason["h_namespace.xml"]
    assert reason["h_nodate.xml"].startswith("checkup date missing")
    assert rej.loc["h_nodate.xml", "column"] == "exam_date"
    assert (rej["table"] == "checkups").all() and rej["pseudonym"].notna().sum() >= 2
    notes = read_manifest(tmp_path / "store")["reader_notes"]["checkups"]["xml"]
    assert notes["unknown_item_codes"] == {"9Z999000000000001": 1}
    assert notes["documents"] == 7 and notes["documents_rejected"] == 4
    assert notes["duplicate_documents"] == 1 and notes["unit_unexpected:9N001:m"] == 1
    stored = read_checkups(tmp_path / "store").set_index("_source_file")
    assert "h_unknown.xml" in stored.index
    metres = stored.loc["h_unit.xml"]
    assert pd.isna(metres["height_cm"]) and metres["sbp"] == 132  # the rest of it loads
    assert "height_cm_unit_unexpected" in metres["soft_flags"].split(";")


def test_exchange_archive_with_a_bad_member_and_index_files(tmp_path):
    """Index files are not documents; a broken member rejects only itself."""
    bundle = tmp_path / "b"
    write_bundle(bundle, [checkup_row(person_id="99-000009")])
    archive = bundle / "1399999999_00139999_202506011_1.zip"
    root = archive.stem
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{root}/ix08_V08.xml", b"<index/>")
        zf.writestr(f"{root}/DATA/h1.xml", _doc())
        zf.writestr(f"{root}/DATA/h2.xml", b"<ClinicalDocument")
    (bundle / "ix08_V08.xml").write_bytes(b"<index/>")  # an unpacked index next to it
    result = ingest(bundle, tmp_path / "store", _config())
    acct = result.accounting["checkups"]
    assert (acct.read, acct.loaded, acct.rejected) == (3, 2, 1)
    rej = read_rejects(tmp_path / "store")
    assert list(rej["source_file"]) == [f"{archive.name}:{root}/DATA/h2.xml"]


def test_single_file_and_folder_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"h{i}.xml").write_bytes(_doc(person_id=f"12-00000{i}"))
    frame, notes = read_xml(tmp_path / "d")
    assert sorted(frame["person_id"]) == ["12-000000", "12-000001", "12-000002"]
    assert frame["_reject_reason"].isna().all() and notes["xml"]["documents"] == 3
    one, _ = read_xml(tmp_path / "d" / "h1.xml")
    assert list(one["person_id"]) == ["12-000001"] and list(one["_source_file"]) == ["h1.xml"]


def test_zip_with_two_members_of_one_name_keeps_rows_apart(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("r/DATA/h1.xml", _doc())
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("r/DATA/h1.xml", _doc(person_id="12-000002"))
    frame, notes = read_xml(archive)
    full = f"{archive}:r/DATA/h1.xml"  # clashing short names fall back to full paths
    assert list(frame["_source_file"]) == [full, f"{full}#2"]
    assert notes["xml"]["documents"] == 2


def test_cli_synth_format_xml_writes_archives_that_ingest(tmp_path):
    from typer.testing import CliRunner

    from kenshin.cli import app

    out = tmp_path / "bundle"
    args = ["synth", "--out", str(out), "--residents", "300", "--years", "2", "--format", "xml"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert not (out / "checkups.csv").exists()
    assert {"enrollment.csv", "contacts.csv", "truth.csv"} <= {p.name for p in out.iterdir()}
    archives = sorted(out.glob("*.zip"))
    assert len(archives) == 2 and "checkups FY2025" in res.output
    res = CliRunner().invoke(app, ["ingest", str(out), "--store", str(tmp_path / "store")])
    assert res.exit_code == 0, res.output
    assert "checkups from xml" in res.output
