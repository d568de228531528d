"""MHLW XML as real systems write it: several values per observation, items
outside section 01010, old code lists, the facility's own judgements, the archive's other files
and stray XML that must never crash ingest."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree
from typer.testing import CliRunner

from data.ingest import IngestConfig, ingest
from data.judgements import facility_agreement, guidance_code, metabolic_syndrome, stratify
from data.mhlw_xml import (
    ArchiveSpec,
    read_checkup_xml,
    read_xml,
    write_checkup_xml,
    write_exchange_archive,
)
from data.mhlw_xml.reader import MAC_METADATA, MHLW_NS
from data.store import read_checkups, read_manifest, read_rejects
from kenshin.cli import app
from tests.conftest import checkup_row, write_bundle

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"h": HL7}
OID = "1.2.392.200119.6."
INTERPRETATION = "2.16.840.1.113883.5.83"


def _config() -> IngestConfig:
    return IngestConfig(today="2026-11-27", accept_rejects=True)


def _row(**overrides) -> dict:
    row = checkup_row(exam_date="20240610", birth_date="19700501", **overrides)
    return {k: (None if v == "" else v) for k, v in row.items()}


def _doc(**overrides) -> bytes:
    return write_checkup_xml(_row(**overrides))


def _values(doc: bytes, code: str, *values: str, negated: bool = False) -> bytes:
    """Replace the ``<value>`` elements of the observation of item ``code`` by ``values``
    (XML snippets without namespace declarations)."""
    tree = etree.fromstring(doc)
    obs = tree.xpath(f"//h:observation[h:code/@code='{code}']", namespaces=NS)[0]
    for v in obs.findall("h:value", NS):
        obs.remove(v)
    at = list(obs).index(obs.find("h:code", NS)) + 1
    for i, snippet in enumerate(values):
        el = etree.fromstring(f'<wrap xmlns="{HL7}" xmlns:xsi="{XSI}">{snippet}</wrap>')[0]
        obs.insert(at + i, el)
    if negated:
        obs.set("negationInd", "true")
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def _add_entries(doc: bytes, entries: str, section: str | None = None) -> bytes:
    """Append observations to section 01010, or in a new section ``section`` (e.g. 01990)."""
    if section is None:
        return doc.replace(b"</section>", entries.encode() + b"</section>", 1)
    new = (
        f'</section></component><component><section><code code="{section}" '
        f'codeSystem="{OID}1010"/><title>任意追加項目</title>{entries}</section>'
    )
    return doc.replace(b"</section>", new.encode(), 1)


def _entry(code: str, value: str) -> str:
    return (
        f'<entry><observation classCode="OBS" moodCode="EVN"><code code="{code}" '
        f'codeSystem="{OID}1005"/>{value}</observation></entry>'
    )


def _notes(row: dict) -> list[str]:
    return (row["_xml_notes"] or "").split(";")


# ------------------------------------------------------------------------------------------
# Several <value> elements: the measured value, and the input-range flag beside it
# ------------------------------------------------------------------------------------------


def test_range_flag_beside_the_value_is_a_flag_never_the_value():
    # DBP "other": CD "H" (at or above the input range) and the measured PQ 150, as the
    # published FY2024 sample writes it. Before, the first <value> (the flag) was taken: DBP
    # "other" came out missing and the mean of the 1st and 2nd readings stood in silently.
    doc = _values(
        _doc(),
        "9A765000000000001",
        f'<value xsi:type="CD" code="H" codeSystem="{INTERPRETATION}" displayName="以上"/>',
        '<value xsi:type="PQ" value="150" unit="mm[Hg]"/>',
    )
    doc = _add_entries(
        doc,
        _entry("9A761000000000001", '<value xsi:type="PQ" value="90" unit="mm[Hg]"/>')
        + _entry("9A762000000000001", '<value xsi:type="PQ" value="95" unit="mm[Hg]"/>'),
    )
    got = read_checkup_xml(doc)
    assert got["dbp"] == "150" and got["_reject_reason"] is None
    assert got["_reader_flags"] == "dbp_above_range" and "dbp_above_range" in _notes(got)

    # The other order, and "L" (at or below the input minimum) on a lab value.
    low = _values(
        _doc(),
        "3F070000002327101",
        '<value xsi:type="PQ" value="5" unit="mg/dL"/>',
        f'<value xsi:type="CD" code="L" codeSystem="{INTERPRETATION}"/>',
    )
    got = read_checkup_xml(low)
    assert (got["hdl"], got["_reader_flags"]) == ("5", "hdl_below_range")

    # Before FY2013 only the flag was written: no measured value, the flag stays.
    flag_only = _values(
        _doc(),
        "9A755000000000001",
        f'<value xsi:type="CD" code="H" codeSystem="{INTERPRETATION}"/>',
    )
    got = read_checkup_xml(flag_only)
    assert got["sbp"] is None and got["_reader_flags"] == "sbp_above_range"

    # A flag on a reading that is not used (the "other" DBP is there) is not the column's.
    unused = _add_entries(
        _doc(),
        _entry(
            "9A761000000000001",
            f'<value xsi:type="CD" code="H" codeSystem="{INTERPRETATION}"/>'
            '<value xsi:type="PQ" value="150" unit="mm[Hg]"/>',
        ),
    )
    got = read_checkup_xml(unused)
    assert got["dbp"] == "84" and got["_reader_flags"] is None


def test_reference_range_interpretation_is_not_a_range_flag():
    # interpretationCode H = above the facility's reference range (abnormal), a different thing.
    doc = _doc().replace(
        b'unit="mg/dL"/></observation>',
        b'unit="mg/dL"/><interpretationCode code="H"/><referenceRange><observationRange '
        b'classCode="OBS" moodCode="EVN.CRT"><value xsi:type="IVL_PQ"><low value="30" '
        b'unit="mg/dL"/><high value="149" unit="mg/dL"/></value></observationRange>'
        b"</referenceRange></observation>",
        1,
    )
    assert b"interpretationCode" in doc
    got = read_checkup_xml(doc)
    assert got["tg"] == "140" and got["_reader_flags"] is None


def test_negated_observation_is_missing():
    doc = _values(_doc(), "1A010000000191111", negated=True)
    assert read_checkup_xml(doc)["urine_protein"] is None
    doc = _values(_doc(), "1A010000000191111", '<value xsi:type="CO" code="3"/>', negated=True)
    assert read_checkup_xml(doc)["urine_protein"] is None


# ------------------------------------------------------------------------------------------
# Items wherever they sit: section 01990 (任意追加項目)
# ------------------------------------------------------------------------------------------


def test_uric_acid_and_haemoglobin_in_section_01990_are_read_and_01010_wins():
    doc = _add_entries(
        _doc(),
        _entry("3C020000002327101", '<value xsi:type="PQ" value="6.1" unit="mg/dL"/>')
        + _entry("2A030000001930101", '<value xsi:type="PQ" value="13.5" unit="g/dL"/>')
        + _entry("3D046000001906202", '<value xsi:type="PQ" value="9.9" unit="%"/>'),
        section="01990",
    )
    got = read_checkup_xml(doc)
    assert (got["uric_acid"], got["hemoglobin"]) == ("6.1", "13.5")
    assert got["hba1c"] == "5.7"  # given in 01010 too: the 特定健診 section's value wins
    notes = _notes(got)
    assert notes.count("read_from_section:01990") == 2 and "repeated_item:3D046" in notes


def test_writer_puts_uric_acid_in_section_01990_and_it_reads_back():
    doc = _doc(uric_acid="5.4")
    sec = etree.fromstring(doc).xpath(
        "//h:section[h:code/@code='01990']//h:observation/h:code/@code", namespaces=NS
    )
    assert list(sec) == ["3C020000002327101"]
    assert read_checkup_xml(doc)["uric_acid"] == "5.4"


# ------------------------------------------------------------------------------------------
# Codes by their code system: old and new code lists
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "oid", "want", "note"),
    [
        ("2", OID + "2202", "2", None),  # the current list
        ("2", OID + "2201", "2", "old_code_converted:blood_draw_timing"),  # old ≥10 h = 2
        ("1", OID + "2201", None, "old_code_unrecoverable:blood_draw_timing"),  # old <10 h: 3|4
        ("1", OID + "2202", None, "old_code_unrecoverable:blood_draw_timing"),  # old code, new OID
        ("1", None, None, "old_code_unrecoverable:blood_draw_timing"),  # FY2013 sample style
        ("3", OID + "9999", None, f"unknown_code_system:blood_draw_timing:{OID}9999"),
    ],
)
def test_blood_draw_timing_is_read_by_its_code_list(code, oid, want, note):
    system = f' codeSystem="{oid}"' if oid else ""
    doc = _values(_doc(), "9N141000000000011", f'<value xsi:type="CD" code="{code}"{system}/>')
    got = read_checkup_xml(doc)
    assert got["blood_draw_timing"] == want and got["_reject_reason"] is None
    assert got["tg"] == "140" and got["hba1c"] == "5.7"  # the rest of the document is intact
    if note:
        assert note in _notes(got)


def test_old_blood_draw_code_never_loses_the_document(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    doc = _values(
        _doc(), "9N141000000000011", f'<value xsi:type="CD" code="1" codeSystem="{OID}2201"/>'
    )
    (bundle / "h_fy2013_style.xml").write_bytes(doc)
    result = ingest(bundle, tmp_path / "s", _config())
    acct = result.accounting["checkups"]
    assert (acct.read, acct.loaded, acct.rejected) == (2, 2, 0)
    stored = read_checkups(tmp_path / "s").set_index("_source_file").loc["h_fy2013_style.xml"]
    assert pd.isna(stored["blood_draw_timing"]) and stored["tg"] == 140.0
    notes = read_manifest(tmp_path / "s")["reader_notes"]["checkups"]["xml"]
    assert notes["old_code_unrecoverable:blood_draw_timing"] == 1


def test_questionnaire_answer_in_an_unknown_code_list_is_missing_not_misread():
    # Smoking coded with the eating-speed list (…2004): its "1" is not "smokes".
    doc = _values(
        _doc(), "9N736000000000011", f'<value xsi:type="CD" code="1" codeSystem="{OID}2004"/>'
    )
    got = read_checkup_xml(doc)
    assert got["q_smoking"] is None and got["q_med_bp"] == "2"
    assert f"unknown_code_system:q_smoking:{OID}2004" in _notes(got)
    # A yes/no item with a foreign list, likewise.
    doc = _values(
        _doc(), "9N701000000000011", f'<value xsi:type="CD" code="1" codeSystem="{OID}2202"/>'
    )
    assert read_checkup_xml(doc)["q_med_bp"] is None


# ------------------------------------------------------------------------------------------
# The facility's own judgements (9N501, 9N506, 9N511 where coded)
# ------------------------------------------------------------------------------------------


def test_facility_judgements_are_read_stored_and_compared_with_kenshins(tmp_path):
    # The default row: male 54, waist 86, SBP 132, FPG 102, TG 140, HDL 55 → kenshin says
    # MetS 2 予備群該当 (waist + BP) and level 1 積極的支援 (waist + BP + glucose risks).
    bundle = write_bundle(
        tmp_path / "b",
        [checkup_row(person_id="99-000009", facility_mets="2", facility_guidance_level="1")],
    )
    agree = write_checkup_xml(_row(facility_mets="2", facility_guidance_level="1"))
    assert b"9N501000000000011" in agree and f'codeSystem="{OID}3001"'.encode() in agree
    (bundle / "h_agree.xml").write_bytes(agree)
    disagree = _doc(person_id="12-000002", facility_mets="2", facility_guidance_level="2")
    coded = _add_entries(
        disagree,
        _entry("9N511000000000049", f'<value xsi:type="CD" code="3" codeSystem="{OID}99999"/>'),
    )
    (bundle / "h_disagree.xml").write_bytes(coded)
    text = _add_entries(
        _doc(person_id="12-000003"),
        _entry("9N511000000000049", '<value xsi:type="ST">異常なし</value>'),
    )
    (bundle / "h_text.xml").write_bytes(text)
    ingest(bundle, tmp_path / "s", _config())
    stored = read_checkups(tmp_path / "s").set_index("_source_file")
    assert str(stored["facility_mets"].dtype) == "Int8"
    assert stored.loc["h_disagree.xml", "facility_doctor_judgement"] == 3
    assert pd.isna(stored.loc["h_text.xml", "facility_doctor_judgement"])  # free text: not kept
    assert pd.isna(stored.loc["h_text.xml", "facility_mets"])
    assert list(metabolic_syndrome(stored)) == [2, 2, 2, 2]
    assert list(guidance_code(stratify(stored))) == [1, 1, 1, 1]

    found = read_manifest(tmp_path / "s")["facility_agreement"]
    assert found == facility_agreement(stored)
    assert found["metabolic_syndrome"] == {
        "compared": 3,
        "agree": 3,
        "disagree": 0,
        "pairs": [{"facility": 2, "kenshin": 2, "rows": 3}],
    }
    assert found["guidance_level"] == {
        "compared": 3,
        "agree": 2,
        "disagree": 1,
        "pairs": [
            {"facility": 1, "kenshin": 1, "rows": 2},
            {"facility": 2, "kenshin": 1, "rows": 1},
        ],
    }


def test_facility_code_outside_its_list_is_missing_not_a_reject(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(facility_mets="7")])
    result = ingest(bundle, tmp_path / "s", _config())
    assert result.accounting["checkups"].loaded == 1
    assert pd.isna(read_checkups(tmp_path / "s")["facility_mets"].iat[0])


def test_synthetic_ward_with_facility_codes_round_trips_through_xml(small_ward, tmp_path):
    from data.synth import write_bundle as synth_write

    chk = small_ward.checkups.iloc[::20].copy()
    chk["facility_mets"] = pd.array((chk.index % 4) + 1, dtype="Int64")
    chk["facility_guidance_level"] = pd.array((chk.index % 3) + 1, dtype="Int64")
    chk.loc[chk.index[::5], "facility_mets"] = pd.NA
    ward = dataclasses.replace(small_ward, checkups=chk)
    synth_write(ward, tmp_path / "csv")
    synth_write(ward, tmp_path / "xml")
    (tmp_path / "xml" / "checkups.csv").unlink()
    write_exchange_archive(chk, small_ward.contacts, tmp_path / "xml", workers=1)
    a = ingest(tmp_path / "csv", tmp_path / "s_csv", _config())
    b = ingest(tmp_path / "xml", tmp_path / "s_xml", _config())
    assert a.rejects.empty and b.rejects.empty
    prov = ["_source_file", "_source_row"]
    got = read_checkups(tmp_path / "s_xml").drop(columns=prov)
    pd.testing.assert_frame_equal(read_checkups(tmp_path / "s_csv").drop(columns=prov), got)
    assert got["facility_mets"].notna().sum() == chk["facility_mets"].notna().sum()
    assert a.manifest["facility_agreement"] == b.manifest["facility_agreement"]


# ------------------------------------------------------------------------------------------
# The archive's other files: index, summary, settlement, guidance
# ------------------------------------------------------------------------------------------


def _claim(root: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{MHLW_NS}"/>'.encode()


def _guidance_doc() -> bytes:
    """A 特定保健指導 document (hg08): a CDA of report category 21."""
    return _doc().replace(
        f'<code code="10" codeSystem="{OID}1001"/>'.encode(),
        f'<code code="21" codeSystem="{OID}1001"/>'.encode(),
    )


def _full_archive(folder: Path) -> tuple[Path, int]:
    """A writer's archive (with su08) plus CLAIMS, GUIDANCE and settlement members."""
    rows = pd.DataFrame([checkup_row(person_id=f"12-00000{i}") for i in range(3)])
    (archive,) = write_exchange_archive(
        _typed(rows), None, folder, spec=ArchiveSpec(summary=True), workers=1
    )
    root = archive.stem
    with zipfile.ZipFile(archive, "a") as zf:
        for i in range(3):
            zf.writestr(f"{root}/CLAIMS/c{'1' * 25}{i}.xml", _claim("checkupClaim"))
        zf.writestr(f"{root}/GUIDANCE/g{'2' * 26}.xml", _guidance_doc())
        zf.writestr(f"{root}/GUIDANCE/p{'3' * 26}.xml", _claim("healthGuidanceClaim"))
    return archive, 3


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    from data.columns import CHECKUP_COLUMNS

    out = pd.DataFrame(index=rows.index)
    for col, kind in CHECKUP_COLUMNS.items():
        s = rows[col] if col in rows else pd.Series(None, index=rows.index, dtype=object)
        if kind == "date":
            out[col] = pd.to_datetime(s)
        elif kind in ("int", "float"):
            out[col] = pd.to_numeric(s)
        else:
            out[col] = s
    return out


def test_index_summary_settlement_and_guidance_files_are_counted_not_checkups(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    archive, n_docs = _full_archive(bundle)
    # The same archive unpacked beside it (other person IDs would clash: use a copy folder).
    unpacked = tmp_path / "u"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(unpacked)
    result = ingest(bundle, tmp_path / "s", _config())
    acct = result.accounting["checkups"]
    assert (acct.read, acct.loaded, acct.rejected) == (1 + n_docs, 1 + n_docs, 0)
    notes = read_manifest(tmp_path / "s")["reader_notes"]["checkups"]["xml"]
    kinds = {"cc08": 3, "gc08": 1, "hg08": 1, "ix08": 1, "su08": 1}
    assert notes["non_checkup_files"] == kinds and notes["documents"] == n_docs

    frame, notes = read_xml(unpacked)
    assert len(frame) == n_docs and frame["_reject_reason"].isna().all()
    assert notes["xml"]["non_checkup_files"] == kinds


def test_exchange_files_in_another_namespace_or_broken_are_still_not_checkups(tmp_path):
    folder = tmp_path / "d"
    (folder / "CLAIMS").mkdir(parents=True)
    (folder / "ix08_V08.xml").write_bytes(b'<index xmlns="urn:hl7-org:v3"/>')  # kenshin's old one
    (folder / "su08_V08.xml").write_bytes(b"<summary")  # truncated
    (folder / "CLAIMS" / "c1.xml").write_bytes(b"")  # empty
    frame, notes = read_xml(folder)
    assert frame.empty and list(frame.columns)[:2] == ["person_id", "exam_date"]
    xml = notes["xml"]
    assert xml["non_checkup_files"] == {"cc08": 1, "ix08": 1, "su08": 1}
    assert xml["exchange_file_namespace:ix08:urn:hl7-org:v3"] == 1
    assert xml["unreadable_exchange_file:su08"] == 1 and xml["unreadable_exchange_file:cc08"] == 1


# ------------------------------------------------------------------------------------------
# Stray XML never crashes ingest
# ------------------------------------------------------------------------------------------


def _cli_ingest(bundle: Path, store: Path):
    args = ["ingest", str(bundle), "--store", str(store), "--today", "2026-11-27"]
    args.append("--accept-rejects")  # these bundles are mostly strays by design
    return CliRunner().invoke(app, args)


def test_stray_xml_files_are_reasoned_rejects_or_notes_never_a_crash(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    (bundle / "empty.xml").write_bytes(b"")
    (bundle / "notes").mkdir()
    (bundle / "notes" / "settings.xml").write_bytes(b'<?xml version="1.0"?><settings/>')
    (bundle / "ix08_V08.xml").write_bytes(_claim("index"))
    res = _cli_ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    rej = read_rejects(tmp_path / "s").set_index("source_file")["reason"]
    assert rej["empty.xml"].startswith("malformed XML")
    assert rej["settings.xml"] == "not a checkup document (root element <settings>)"
    notes = read_manifest(tmp_path / "s")["reader_notes"]["checkups"]["xml"]
    assert notes["non_checkup_files"] == {"ix08": 1}


def test_xml_bundle_without_enrollment_or_contacts_ingests(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "h1.xml").write_bytes(_doc())
    (bundle / "stray.xml").write_bytes(b"")
    res = _cli_ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert read_checkups(tmp_path / "s")["_source_file"].tolist() == ["h1.xml"]


def test_bundle_of_only_non_checkup_xml_stops_with_one_line_not_a_traceback(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    (bundle / "checkups.csv").unlink()
    (bundle / "CLAIMS").mkdir()
    (bundle / "CLAIMS" / "c1.xml").write_bytes(_claim("checkupClaim"))
    (bundle / "ix08_V08.xml").write_bytes(_claim("index"))
    frame, _ = read_xml(bundle)
    assert frame.empty  # zero checkup rows, with every column the validator reads
    res = _cli_ingest(bundle, tmp_path / "s")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "KeyError" not in res.output


def test_unpacked_archive_folder_ingests_like_the_zip(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(person_id="99-000009")])
    archive, n_docs = _full_archive(tmp_path / "z")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(bundle)
    shutil.rmtree(tmp_path / "z")
    result = ingest(bundle, tmp_path / "s", _config())
    assert result.accounting["checkups"].loaded == 1 + n_docs and result.rejects.empty
    files = read_checkups(tmp_path / "s")["_source_file"]
    assert files.str.match(rf"^{archive.stem}/DATA/h\d{{26}}\.xml$").sum() == n_docs


def test_store_schema_declares_the_facility_columns():
    from data.schemas import StoredCheckups

    for col, codes in (("facility_mets", 4), ("facility_guidance_level", 4)):
        column = StoredCheckups.columns[col]
        assert str(column.dtype) == "Int8" and column.nullable
        ok = pd.DataFrame({col: pd.array(list(range(1, codes + 1)), dtype="Int8")})
        column.validate(ok)
        with pytest.raises(Exception, match="isin"):
            column.validate(pd.DataFrame({col: pd.array([codes + 1], dtype="Int8")}))
    assert "facility_doctor_judgement" in StoredCheckups.columns


def test_item_missing_in_01010_is_taken_from_another_section():
    doc = _values(_doc(), "3F070000002327101", '<value xsi:type="PQ" nullFlavor="NI"/>')
    doc = _add_entries(
        doc,
        _entry("3F070000002327101", '<value xsi:type="PQ" value="61" unit="mg/dL"/>'),
        section="01990",
    )
    got = read_checkup_xml(doc)
    assert got["hdl"] == "61" and "repeated_item:3F070" not in _notes(got)


# ------------------------------------------------------------------------------------------
# What a Mac, a timestamped date and a single document bring
# ------------------------------------------------------------------------------------------


def test_mac_metadata_beside_or_inside_an_archive_is_skipped_not_a_reject(tmp_path):
    """A Mac copies ``._NAME`` resource forks beside every file and zips them under
    ``__MACOSX/``; parsed as documents they were rejected (and tripped the reject guard)."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    archive, n_docs = _full_archive(tmp_path / "z")
    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    with zipfile.ZipFile(archive, "a") as zf:
        names = [n for n in zf.namelist() if n.endswith(".xml")]
        for name in names:
            head, _, tail = name.rpartition("/")
            zf.writestr(f"__MACOSX/{head}/._{tail}", fork)
    shutil.copy(archive, bundle / archive.name)
    (bundle / "h1.xml").write_bytes(_doc(person_id="99-000009"))
    (bundle / "._h1.xml").write_bytes(fork)
    (bundle / "CLAIMS").mkdir()
    (bundle / "CLAIMS" / "._c1.xml").write_bytes(fork)
    res = _cli_ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    manifest = read_manifest(tmp_path / "s")
    assert manifest["accounting"]["checkups"]["rejected"] == 0
    assert manifest["accounting"]["checkups"]["loaded"] == 1 + n_docs
    xml = manifest["reader_notes"]["checkups"]["xml"]
    assert xml["non_checkup_files"]["cc08"] == 3  # the forks of the claims are not claims
    assert xml["skipped_files"]["count"] == 2 + len(names)
    assert set(xml["skipped_files"]["files"].values()) == {MAC_METADATA}
    assert "macOS metadata" in res.output


@pytest.mark.parametrize(
    "stamp", ["20240610093000+0900", "202406100930", "20240610093000.123-0500", "2024061009"]
)
def test_dates_written_with_a_time_of_day_keep_their_date(tmp_path, stamp):
    """HL7 TS allows a time of day after the date (the schema accepts it); the document was lost
    as "exam_date is not a date"."""
    doc = _doc().replace(b'value="20240610"', f'value="{stamp}"'.encode())
    assert f'value="{stamp}"'.encode() in doc
    (tmp_path / "h1.xml").write_bytes(doc.replace(b'value="19700501"', b'value="19700501000000"'))
    result = ingest(tmp_path / "h1.xml", tmp_path / "s", _config())
    assert result.accounting["checkups"].loaded == 1 and result.rejects.empty
    row = read_checkups(tmp_path / "s").iloc[0]
    assert row["exam_date"] == pd.Timestamp("2024-06-10") and row["fiscal_year"] == 2024
    assert row["age"] == 54  # born 1970-05-01: the birth date's time of day is dropped too


def test_a_single_document_or_archive_is_a_bundle(tmp_path):
    """The contract accepts single XML files and exchange archives, not only folders."""
    (tmp_path / "h1.xml").write_bytes(_doc())
    res = _cli_ingest(tmp_path / "h1.xml", tmp_path / "s1")
    assert res.exit_code == 0, res.output
    assert read_checkups(tmp_path / "s1")["_source_file"].tolist() == ["h1.xml"]
    archive, n_docs = _full_archive(tmp_path / "z")
    res = _cli_ingest(archive, tmp_path / "s2")
    assert res.exit_code == 0, res.output
    assert len(read_checkups(tmp_path / "s2")) == n_docs
    (tmp_path / "notes.txt").write_text("x")
    res = _cli_ingest(tmp_path / "notes.txt", tmp_path / "s3")
    assert res.exit_code == 2 and "not a bundle folder" in res.output


def test_a_birth_date_given_to_the_month_gives_the_exact_age(tmp_path):
    """HL7 TS allows ``197005``; every day of May 1970 gives the same age on 31 March 2025."""
    doc = _doc().replace(b'value="19700501"', b'value="197005"')
    assert b'value="197005"' in doc
    (tmp_path / "h1.xml").write_bytes(doc)
    result = ingest(tmp_path / "h1.xml", tmp_path / "s", _config())
    assert result.accounting["checkups"].loaded == 1
    assert read_checkups(tmp_path / "s").iloc[0]["age"] == 54
