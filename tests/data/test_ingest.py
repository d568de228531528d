"""Ingest: normalisation, rejects with reasons, row accounting, pseudonyms, idempotence."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat

import pandas as pd
import pytest

from data.dirty import make_dirty, write_dirty
from data.ingest import IngestConfig, ingest
from data.pseudonym import pseudonymise
from data.store import read_checkups, read_contacts, read_enrollment, read_manifest, read_rejects
from kenshin.errors import BadInputError
from tests.conftest import TEST_KEY, checkup_row, write_bundle

TODAY = "2026-11-27"


def write_synth_bundle(bundle, out, fmt="csv"):
    from data.synth import write_bundle

    return write_bundle(bundle, out, fmt=fmt)


def _pseudonym(pid: str) -> str:
    return hmac.new(TEST_KEY.encode(), pid.encode(), hashlib.sha256).hexdigest()[:16]


def test_clean_rows_load_normalised_and_pseudonymised(tmp_path):
    rows = [
        checkup_row(),
        # Same person next year: compact date, full-width digits, era birth date.
        checkup_row(exam_date="20250612", weight_kg="７４．０", birth_date="S45.5.1"),
        # Another person: kanji era date, no BMI given (derived), woman.
        checkup_row(person_id="12-000002", exam_date="令和6年7月1日", sex="2", waist_cm="80"),
    ]
    bundle = write_bundle(tmp_path / "b", rows)
    result = ingest(bundle, tmp_path / "store")
    assert result.rejects.empty
    chk = read_checkups(tmp_path / "store")
    assert len(chk) == 3
    assert "person_id" not in chk.columns and "birth_date" not in chk.columns
    p1 = chk[chk["pseudonym"] == _pseudonym("12-000001")].sort_values("exam_date")
    assert list(p1["exam_date"].dt.strftime("%Y-%m-%d")) == ["2024-06-10", "2025-06-12"]
    assert list(p1["fiscal_year"]) == [2024, 2025]
    # Born 1970-05-01: 54 on 31 March 2025, 55 on 31 March 2026 (年度末年齢).
    assert list(p1["age"]) == [54, 55]
    assert p1["weight_kg"].iloc[1] == 74.0
    assert p1["bmi"].iloc[0] == pytest.approx(25.1)  # 72.5 / 1.70²
    # JSN eGFR: man, Cr 0.86, age 54 -> 194 * 0.86^-1.094 * 54^-0.287
    expected = 194 * 0.86**-1.094 * 54**-0.287
    assert p1["egfr"].iloc[0] == pytest.approx(expected, abs=0.06)
    p2 = chk[chk["pseudonym"] == _pseudonym("12-000002")]
    assert p2["exam_date"].iloc[0] == pd.Timestamp("2024-07-01") and p2["sex"].iloc[0] == 2


@pytest.mark.parametrize(
    ("override", "column", "reason_part"),
    [
        ({"exam_date": "不明"}, "exam_date", "not a date"),
        ({"exam_date": ""}, "exam_date", "missing"),
        ({"sex": "3"}, "sex", "code not allowed"),
        ({"hba1c": "48"}, "hba1c", "mmol/mol"),
        ({"weight_kg": "-60"}, "weight_kg", "hard range"),
        ({"ldl": "abc"}, "ldl", "not a number"),
        ({"exam_date": "2030-01-01"}, "exam_date", "future"),
        ({"person_id": ""}, "person_id", "missing"),
    ],
)
def test_row_faults_are_rejected_with_file_row_column_and_reason(
    tmp_path, override, column, reason_part
):
    rows = [checkup_row(person_id="A1"), checkup_row(**{"person_id": "B2", **override})]
    bundle = write_bundle(tmp_path / "b", rows)
    result = ingest(bundle, tmp_path / "store", _config())
    rej = read_rejects(tmp_path / "store")
    assert len(rej) == 1, rej
    r = rej.iloc[0]
    assert (r["table"], r["source_file"], r["source_row"], r["column"]) == (
        "checkups",
        "checkups.csv",
        2,
        column,
    )
    assert reason_part in r["reason"]
    a = result.accounting["checkups"]
    assert (a.read, a.loaded, a.rejected, a.merged_duplicates) == (2, 1, 1, 0)


def _config():
    from data.ingest import IngestConfig

    return IngestConfig(today=TODAY, accept_rejects=True)  # tests of reject reasons


def test_two_birth_dates_reject_the_odd_row(tmp_path):
    rows = [
        checkup_row(exam_date="2024-06-01"),
        checkup_row(exam_date="2025-06-01", birth_date="1971-05-01"),
        checkup_row(exam_date="2026-06-01"),
    ]
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    assert list(result.rejects["column"]) == ["birth_date"]
    assert result.rejects["source_row"].tolist() == [2]
    assert "conflicts" in result.rejects["reason"].iloc[0]


def test_duplicates_merge_first_non_missing_value(tmp_path):
    rows = [
        checkup_row(ldl=""),
        checkup_row(ldl="150", hdl="60"),  # same person and date: merged, not rejected
    ]
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    a = result.accounting["checkups"]
    assert (a.read, a.loaded, a.rejected, a.merged_duplicates) == (2, 1, 0, 1)
    chk = read_checkups(tmp_path / "s")
    assert chk["ldl"].iloc[0] == 150 and chk["hdl"].iloc[0] == 55


def test_enrollment_ending_before_it_starts_is_rejected(tmp_path):
    enr = [
        {"person_id": "12-000001", "enrolled_from": "2015-04-01"},
        {"person_id": "12-000009", "enrolled_from": "2020-04-01", "enrolled_until": "2019-03-31"},
    ]
    bundle = write_bundle(tmp_path / "b", [checkup_row()], enrollment=enr)
    result = ingest(bundle, tmp_path / "s", _config())
    rej = result.rejects
    assert rej[["table", "source_row", "column"]].values.tolist() == [
        ["enrollment", 2, "enrolled_until"]
    ]
    assert len(read_enrollment(tmp_path / "s")) == 1


def _coding_rows():
    return [
        # FY2022 file rows: smoking 1 yes / 2 no; alcohol 1 daily / 2 sometimes / 3 hardly.
        checkup_row(exam_date="2022-06-01", q_smoking="2", q_alcohol_freq="3"),
        checkup_row(exam_date="2024-06-01", q_smoking="2", q_alcohol_freq="3"),
        checkup_row(exam_date="2023-06-01", q_smoking="3", q_alcohol_freq="2"),  # 3: 2024 coding
    ]


def test_questionnaire_coding_by_year_reads_old_codes_and_never_rejects_a_row(tmp_path):
    config = IngestConfig(today=TODAY, questionnaire_coding="by-year")
    result = ingest(write_bundle(tmp_path / "b", _coding_rows()), tmp_path / "s", config)
    assert result.rejects.empty
    chk = read_checkups(tmp_path / "s").set_index("fiscal_year")
    assert (chk.loc[2022, "q_smoking"], chk.loc[2022, "q_alcohol_freq"]) == (3, 8)
    assert (chk.loc[2024, "q_smoking"], chk.loc[2024, "q_alcohol_freq"]) == (2, 3)
    # Smoking 3 is no code of the FY2023 form: the answer is missing and flagged, the row kept.
    assert pd.isna(chk.loc[2023, "q_smoking"]) and chk.loc[2023, "ldl"] == 130
    assert "q_smoking_invalid" in chk.loc[2023, "soft_flags"].split(";")
    assert result.manifest["invalid_codes"] == [
        {"item": "q_smoking", "coding": "by-year", "rows": 1}
    ]
    decisions = result.manifest["questionnaire_coding"]["decisions"]
    assert {(d["fiscal_year"], d["coding"], d["basis"]) for d in decisions} == {
        (2022, "by-year", "configured"),
        (2023, "by-year", "configured"),
    }


def test_questionnaire_coding_auto_decides_per_file_and_year(tmp_path):
    result = ingest(write_bundle(tmp_path / "b", _coding_rows()), tmp_path / "s", _config())
    assert result.rejects.empty and result.manifest["invalid_codes"] == []
    chk = read_checkups(tmp_path / "s").set_index("fiscal_year")
    assert chk.loc[2022, "q_smoking"] == 3  # ambiguous year: old coding assumed, 2 no → 3
    assert chk.loc[2023, "q_smoking"] == 3  # smoking 3 proves the 2024 coding
    decisions = result.manifest["questionnaire_coding"]["decisions"]
    assert [(d["source_file"], d["fiscal_year"], d["coding"], d["basis"]) for d in decisions] == [
        ("checkups.csv", 2022, "by-year", "assumed"),
        ("checkups.csv", 2023, "current", "detected"),
    ]


def test_questionnaire_coding_current_keeps_2024_codes_in_every_year(tmp_path):
    config = IngestConfig(today=TODAY, questionnaire_coding="current")
    result = ingest(write_bundle(tmp_path / "b", _coding_rows()), tmp_path / "s", config)
    chk = read_checkups(tmp_path / "s").set_index("fiscal_year")
    assert (chk.loc[2022, "q_smoking"], chk.loc[2022, "q_alcohol_freq"]) == (2, 3)
    assert result.manifest["questionnaire_coding"]["setting"] == "current"


def test_unknown_codes_become_missing_flagged_and_counted(tmp_path):
    rows = [
        checkup_row(person_id="A1", q_smoking="7", urine_protein="6", q_sleep="x"),
        checkup_row(person_id="B2"),
    ]
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    assert result.rejects.empty and result.accounting["checkups"].loaded == 2
    chk = read_checkups(tmp_path / "s").set_index("pseudonym").loc[_pseudonym("A1")]
    assert pd.isna(chk["q_smoking"]) and pd.isna(chk["urine_protein"]) and pd.isna(chk["q_sleep"])
    assert chk["sbp"] == 132  # the measurements stay
    assert set(chk["soft_flags"].split(";")) >= {
        "q_smoking_invalid",
        "urine_protein_invalid",
        "q_sleep_invalid",
    }
    counts = {(c["item"], c["coding"]): c["rows"] for c in result.manifest["invalid_codes"]}
    assert counts == {("q_smoking", "current"): 1, ("urine_protein", "current"): 1,
                      ("q_sleep", "current"): 1}  # fmt: skip


def test_derived_egfr_outside_its_range_is_missing_and_flagged(tmp_path):
    # A real creatinine of 0.1 mg/dL gives an eGFR of about 800: never stored, never a crash.
    rows = [checkup_row(person_id="A1", creatinine="0.1"), checkup_row(person_id="B2")]
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    assert result.rejects.empty
    chk = read_checkups(tmp_path / "s").set_index("pseudonym").loc[_pseudonym("A1")]
    assert pd.isna(chk["egfr"]) and chk["creatinine"] == 0.1
    assert "egfr_derived_out_of_range" in chk["soft_flags"].split(";")
    assert result.manifest["derived_out_of_range"] == {"bmi": 0, "egfr": 1}


def test_reject_guard_stops_before_writing_unless_accepted(tmp_path):
    rows = [checkup_row(person_id=f"P{i}", exam_date="不明" if i < 3 else "2024-06-10")
            for i in range(10)]  # fmt: skip
    bundle = write_bundle(tmp_path / "b", rows)
    with pytest.raises(BadInputError) as err:
        ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY))
    message = str(err.value)
    assert "3 of 10 rows rejected (30% > 20%)" in message and "exam_date is not a date" in message
    assert "checkups.csv row 1" in message and "\n" not in message
    assert not (tmp_path / "s").exists()
    ok = ingest(bundle, tmp_path / "s", IngestConfig(today=TODAY, max_reject_share=0.5))
    assert ok.accounting["checkups"].loaded == 7
    accepted = IngestConfig(today=TODAY, accept_rejects=True, force=True)
    assert ingest(bundle, tmp_path / "s", accepted).manifest["reject_guard"]["accepted"]


def test_no_loadable_checkup_is_bad_input_even_when_rejects_are_accepted(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(exam_date="不明")])
    with pytest.raises(BadInputError, match="no checkup row could be loaded"):
        ingest(bundle, tmp_path / "s", _config())


def test_soft_outliers_are_kept_and_flagged(tmp_path):
    rows = [checkup_row(ggt="1500", sbp="230", dbp="95")]
    ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s")
    chk = read_checkups(tmp_path / "s")
    assert len(chk) == 1
    assert set(chk["soft_flags"].iloc[0].split(";")) >= {"ggt", "sbp"}


def test_dirty_synthetic_bundle_accounting_adds_up(tmp_path, small_ward):
    tables, report = make_dirty(small_ward.checkups, small_ward.enrollment, small_ward.contacts)
    bundle = tmp_path / "dirty"
    write_dirty(tables, bundle)
    result = ingest(bundle, tmp_path / "store", _config())
    man = read_manifest(tmp_path / "store")
    for name, a in result.accounting.items():
        assert a.balanced, (name, a)
        assert man["accounting"][name] == {
            "read": a.read,
            "loaded": a.loaded,
            "rejected": a.rejected,
            "merged_duplicates": a.merged_duplicates,
        }
        assert a.read == len(tables[name])
    got = result.rejects.groupby(["table", "column"]).size().to_dict()
    assert got == report.rejected
    assert {k: result.accounting[k].merged_duplicates for k in report.merged_duplicates} == (
        report.merged_duplicates
    )
    assert result.extra_columns == {"checkups": ["memo"]}
    assert man["encodings"]["checkups.csv"] == "cp932"
    chk = read_checkups(tmp_path / "store")
    assert chk["soft_flags"].str.contains("ggt").sum() >= report.soft_flagged
    assert chk["soft_flags"].str.contains("sbp_not_above_dbp").sum() == report.bp_pairs_dropped
    # The reformatted and full-width rows all loaded: clean rows = read - faults - duplicates.
    clean = len(small_ward.checkups) - sum(
        n for (t, _), n in report.rejected.items() if t == "checkups"
    )
    assert len(chk) == clean


def test_reingest_is_idempotent_and_byte_identical(tmp_path, small_ward):
    bundle = tmp_path / "bundle"
    write_synth_bundle(small_ward, bundle)
    store = tmp_path / "store"
    first = ingest(bundle, store)
    files = {p.relative_to(store): p.read_bytes() for p in store.rglob("*.parquet")}
    again = ingest(bundle, store)
    assert again.unchanged and not first.unchanged
    from data.ingest import IngestConfig

    forced = ingest(bundle, store, IngestConfig(force=True))
    assert not forced.unchanged
    assert {p.relative_to(store): p.read_bytes() for p in store.rglob("*.parquet")} == files
    assert read_manifest(store)["store_fingerprint"] == first.manifest["store_fingerprint"]


def test_parquet_bundle_gives_the_same_store_as_csv(tmp_path, small_ward):
    write_synth_bundle(small_ward, tmp_path / "csv", fmt="csv")
    write_synth_bundle(small_ward, tmp_path / "pq", fmt="parquet")
    ingest(tmp_path / "csv", tmp_path / "s1")
    ingest(tmp_path / "pq", tmp_path / "s2")
    a = read_checkups(tmp_path / "s1").drop(columns=["_source_file"])
    b = read_checkups(tmp_path / "s2").drop(columns=["_source_file"])
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(small_ward.checkups)


def test_private_side_is_owner_only_and_the_rest_has_no_raw_ids(tmp_path, small_ward):
    write_synth_bundle(small_ward, tmp_path / "b")
    store = tmp_path / "s"
    ingest(tmp_path / "b", store)
    private = store / "private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "contacts.parquet").stat().st_mode) == 0o600
    contacts = read_contacts(store)
    assert set(contacts["person_id"]) == set(small_ward.contacts["person_id"])
    # No raw ID, name or address anywhere outside private/ (Parquet text is stored plainly
    # with zstd, so scan decoded values, not bytes).
    secrets = set(small_ward.contacts["person_id"]) | set(small_ward.contacts["name"])
    for p in store.rglob("*.parquet"):
        if "private" in p.parts:
            continue
        frame = pd.read_parquet(p)
        for col in frame.columns:
            if frame[col].dtype == object or str(frame[col].dtype) == "string":
                assert not set(frame[col].dropna().astype(str)) & secrets, (p, col)
    text = (store / "manifest.json").read_text()
    assert not any(s in text for s in list(secrets)[:500])


def test_cohort_reaching_back_before_fy2013_round_trips_hba1c(tmp_path):
    """Exports before FY2013 carry HbA1c in JDS units; ingest must give back NGSP values."""
    from data.synth import SynthConfig, generate

    ward = generate(SynthConfig(residents=400, years=3, last_fiscal_year=2013, seed=3))
    write_synth_bundle(ward, tmp_path / "b")
    ingest(tmp_path / "b", tmp_path / "s")
    chk = read_checkups(tmp_path / "s").set_index(["pseudonym", "exam_date"])["hba1c"]
    want = ward.checkups.assign(
        pseudonym=[_pseudonym(p) for p in ward.checkups["person_id"]]
    ).set_index(["pseudonym", "exam_date"])["hba1c"]
    got = chk.reindex(want.index)
    assert (ward.checkups["exam_date"] < "2012-04-01").any()
    assert ((got - want.astype(float)).abs().dropna() < 0.051).all()


@pytest.mark.parametrize("coding", ["by-year", "current"])
def test_synthetic_ward_round_trips_in_either_questionnaire_coding(tmp_path, small_ward, coding):
    """The generator writes either coding; ingest (auto) detects it and recovers the answers."""
    from data.normalise import fiscal_year, harmonise_questionnaire, to_legacy_questionnaire
    from data.synth import write_bundle as write_synth

    write_synth(small_ward, tmp_path / "b", legacy_codes=coding == "by-year")
    result = ingest(tmp_path / "b", tmp_path / "s", IngestConfig(today=TODAY))
    assert result.rejects.empty and result.manifest["invalid_codes"] == []
    decisions = result.manifest["questionnaire_coding"]["decisions"]
    assert decisions and {d["coding"] for d in decisions} == {coding}
    assert {d["basis"] for d in decisions} == {"assumed" if coding == "by-year" else "detected"}

    truth = small_ward.checkups.assign(fiscal_year=fiscal_year(small_ward.checkups["exam_date"]))
    if coding == "by-year":  # what the old forms can say: ex-smokers and ≥5 合 are lost
        truth = harmonise_questionnaire(to_legacy_questionnaire(truth))
    truth = truth.assign(
        pseudonym=pseudonymise(truth["person_id"].astype("string"), TEST_KEY.encode())
    )
    stored = read_checkups(tmp_path / "s")
    items = ["q_smoking", "q_alcohol_freq", "q_alcohol_amount", "q_guidance_received", "q_sleep"]
    both = stored.merge(truth, on=["pseudonym", "exam_date"], suffixes=("", "_true"))
    assert len(both) == len(stored) == len(truth)
    for item in items:
        got = both[item].astype("Int64")
        want = both[f"{item}_true"].astype("Int64")
        assert got.equals(want), item


def test_bundle_without_enrollment_or_contacts_loads_checkups_and_says_so(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    (bundle / "enrollment.csv").unlink()
    (bundle / "contacts.csv").unlink()
    result = ingest(bundle, tmp_path / "s", _config())
    assert result.manifest["missing_tables"] == ["enrollment", "contacts"]
    assert result.accounting["checkups"].loaded == 1
    assert result.accounting["enrollment"].read == 0 and result.accounting["contacts"].read == 0
    assert read_enrollment(tmp_path / "s").empty and read_contacts(tmp_path / "s").empty


def test_headers_match_ignoring_case_and_width(tmp_path):
    row = checkup_row()
    renamed = {"sbp": "SBP", "hba1c": "HbA1c", "ldl": "ｌｄｌ", "exam_date": "Exam_Date"}
    bundle = write_bundle(tmp_path / "b", [{renamed.get(k, k): v for k, v in row.items()}])
    result = ingest(bundle, tmp_path / "s", _config())
    chk = read_checkups(tmp_path / "s")
    assert (chk["sbp"].iloc[0], chk["hba1c"].iloc[0], chk["ldl"].iloc[0]) == (132, 5.7, 130)
    assert result.extra_columns == {}


@pytest.mark.parametrize(
    ("header", "message"),
    [("LDL-C", "no column 'ldl', but 'LDL-C' looks like it"), ("sbp_", "looks like it")],
)
def test_a_near_miss_header_for_an_absent_item_stops_the_ingest(tmp_path, header, message):
    row = checkup_row()
    column = "ldl" if header == "LDL-C" else "sbp"
    row[header] = row.pop(column)
    with pytest.raises(BadInputError, match=message):
        ingest(write_bundle(tmp_path / "b", [row]), tmp_path / "s", _config())


def test_duplicate_column_names_are_a_file_error(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    text = (bundle / "checkups.csv").read_text()
    header, rest = text.split("\n", 1)
    lines = [line + ",140" for line in rest.strip().split("\n")]
    (bundle / "checkups.csv").write_text(header + ",SBP\n" + "\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match="duplicate column 'SBP'"):
        ingest(bundle, tmp_path / "s", _config())


@pytest.mark.parametrize("table", ["checkups", "contacts"])
def test_exactly_repeated_column_names_are_a_file_error(tmp_path, table):
    """pandas renamed the second ``sbp`` to ``sbp.1``, which was then set aside as unknown."""
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    column = {"checkups": "sbp", "contacts": "name"}[table]
    frame = pd.read_csv(bundle / f"{table}.csv", dtype=str)
    text = frame.to_csv(index=False).replace(",address", f",{column}", 1)
    if table == "checkups":
        text = text.replace(",dbp", ",sbp", 1)
    (bundle / f"{table}.csv").write_text(text)
    with pytest.raises(BadInputError, match=rf"{table}.csv: duplicate column '{column}'"):
        ingest(bundle, tmp_path / "s", _config())


def test_nul_byte_anywhere_rejects_the_row_with_a_reason(tmp_path):
    rows = [checkup_row(person_id=f"P{i:02d}") for i in range(40)]
    bundle = write_bundle(tmp_path / "b", rows)
    text = (bundle / "checkups.csv").read_text()
    at = text.index("P39,")
    assert at > 4096  # past the first 4 kB, where binary files are caught
    (bundle / "checkups.csv").write_text(text.replace("P39,", "P3\x009,", 1))
    result = ingest(bundle, tmp_path / "s", _config())
    rej = result.rejects
    assert rej[["column", "reason"]].values.tolist() == [
        ["person_id", "NUL byte inside a field (a binary or damaged export?)"]
    ]
    assert result.accounting["checkups"].loaded == 39
    assert result.rejects["value"].isna().all()  # person_id is never copied to the rejects


def test_a_nul_byte_in_the_first_rows_rejects_the_row_not_the_file(tmp_path):
    """A NUL in the first 4 kB made the whole file "UTF-16 or binary"; a few NULs are damaged
    fields, many (UTF-16, binary) are not text."""
    rows = [checkup_row(person_id=f"P{i:02d}") for i in range(40)]
    bundle = write_bundle(tmp_path / "b", rows)
    text = (bundle / "checkups.csv").read_text()
    assert text.index("P01,") < 4096
    (bundle / "checkups.csv").write_text(text.replace("P01,", "P0\x001,", 1))
    result = ingest(bundle, tmp_path / "s", _config())
    assert result.rejects["reason"].tolist() == [
        "NUL byte inside a field (a binary or damaged export?)"
    ]
    assert result.accounting["checkups"].loaded == 39


def test_a_giant_row_is_rejected_with_its_size_and_the_rest_loads(tmp_path):
    """A pasted 3 MB name (one line) or a field with quoted newlines (many short lines) is cut
    out before parsing: a reject naming its size, not a whole-file stop or 3 MB stored."""
    rows = [checkup_row(person_id=f"P{i:02d}") for i in range(10)]
    bundle = write_bundle(tmp_path / "b", rows)
    contacts = pd.read_csv(bundle / "contacts.csv", dtype=str)
    contacts.loc[2, "name"] = "山" * 1_000_000
    contacts.loc[5, "address"] = "東京都\n" * 400_000  # quoted: 400,000 short lines
    contacts.to_csv(bundle / "contacts.csv", index=False)
    result = ingest(bundle, tmp_path / "s", _config())
    rej = result.rejects.sort_values("source_row")
    assert rej["source_row"].tolist() == [3, 6] and (rej["table"] == "contacts").all()
    assert rej["reason"].str.match(r"row is [\d,]+ bytes long \(limit 1,048,576\)").all()
    assert rej["value"].isna().all()
    assert result.accounting["contacts"].loaded == 8
    stored = pd.read_parquet(tmp_path / "s" / "private" / "contacts.parquet")
    assert stored["address"].str.len().max() < 100


def test_exam_dates_before_fy2008_are_rejected_unless_the_floor_is_moved(tmp_path):
    rows = [checkup_row(person_id="A1"), checkup_row(person_id="B2", exam_date="1900-06-01",
                                                     birth_date="1850-01-01")]  # fmt: skip
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    assert result.rejects["reason"].str.contains("before FY2008").tolist() == [True]
    assert result.manifest["fiscal_years"] == [2024]


def test_sbp_not_above_dbp_loses_the_pair_not_the_row(tmp_path):
    rows = [checkup_row(person_id="A1", sbp="70", dbp="90"), checkup_row(person_id="B2")]
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    assert result.rejects.empty
    chk = read_checkups(tmp_path / "s").set_index("pseudonym").loc[_pseudonym("A1")]
    assert pd.isna(chk["sbp"]) and pd.isna(chk["dbp"]) and chk["ldl"] == 130
    assert "sbp_not_above_dbp" in chk["soft_flags"].split(";")


@pytest.mark.parametrize(
    ("override", "column", "reason"),
    [({"sex": ""}, "sex", "sex is missing"), ({"sbp": "99999"}, "sbp", "hard range")],
)
def test_rows_the_fuzzer_found_are_rejected_not_crashing(tmp_path, override, column, reason):
    rows = [checkup_row(person_id=f"P{i}") for i in range(6)]
    rows.append(checkup_row(person_id="X", **override))
    result = ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", _config())
    assert result.rejects[["column"]].values.tolist() == [[column]]
    assert reason in result.rejects["reason"].iloc[0]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"encoding": "no-such-codec"}, "unknown encoding"),
        ({"today": "R8.4.1"}, "YYYY-MM-DD"),
        ({"today": "2026-02-30"}, "not a valid date"),
        ({"questionnaire_coding": "sometimes"}, "questionnaire coding"),
    ],
)
def test_bad_settings_are_bad_input(config, message):
    with pytest.raises(BadInputError, match=message):
        IngestConfig(**config)


def test_a_bare_cr_in_the_header_is_a_malformed_file(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    (bundle / "checkups.csv").write_bytes(
        b"person_id,exam_date,sex,birth_date,memo\r0\n12-000000,2024-06-10,1,1970-05-01,x\n"
    )
    with pytest.raises(BadInputError, match="malformed CSV"):
        ingest(bundle, tmp_path / "s", _config())


def test_checkups_are_stored_by_pseudonym_in_row_groups_a_chunk_reads_a_slice_of(
    tmp_path, small_ward, monkeypatch
):
    """Each fiscal year's checkups sorted by pseudonym in row groups of CHECKUP_ROW_GROUP rows:
    read_checkup_history decodes only the groups whose pseudonym range (their statistics)
    holds one of the residents (a scoring chunk: one or two a year; residents spread over the
    store: the groups holding them), and gives exactly the rows of the residents asked for."""
    import pyarrow.parquet as pq

    import data.store as store_mod
    from data.store import MANIFEST, fingerprint, read_checkup_history

    monkeypatch.setattr(store_mod, "CHECKUP_ROW_GROUP", 200)
    write_synth_bundle(small_ward, tmp_path / "bundle")
    store = tmp_path / "store"
    ingest(tmp_path / "bundle", store)
    files = sorted((store / "checkups").rglob("*.parquet"))
    for f in files:
        meta = pq.ParquetFile(f).metadata
        assert meta.num_row_groups > 3 and all(
            meta.row_group(i).num_rows <= 200 for i in range(meta.num_row_groups)
        )
        who = pq.read_table(f, columns=["pseudonym"]).column("pseudonym").to_pylist()
        assert who == sorted(who), f
    everyone = read_checkups(store)
    people = everyone["pseudonym"].drop_duplicates().sort_values(ignore_index=True)
    decoded = []
    real = pq.ParquetFile.read_row_group

    def counted(self, i, *args, **kwargs):
        decoded.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    total = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
    chunk = people.iloc[len(people) // 3 : len(people) // 3 + 100]
    spread = people.iloc[:: len(people) // 5][:5]
    for who, most in ((chunk, 2 * len(files)), (spread, 5 * len(files))):
        decoded.clear()
        got = read_checkup_history(store, who)
        want = everyone[everyone["pseudonym"].isin(set(who))].reset_index(drop=True)
        assert len(got) == len(want) > 0
        pd.testing.assert_frame_equal(got, want[got.columns])
        assert 0 < len(decoded) <= most < total  # one or two groups a year, of many
    # a file written without statistics (another writer's) is read whole, and still right
    before = read_checkup_history(store, chunk)
    year = files[-1]
    pq.write_table(pq.read_table(year), year, row_group_size=200, write_statistics=False)
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["store_fingerprint"] = fingerprint(store)
    (store / MANIFEST).write_text(json.dumps(manifest))
    decoded.clear()
    after = read_checkup_history(store, chunk)
    assert len(decoded) > pq.ParquetFile(year).metadata.num_row_groups
    pd.testing.assert_frame_equal(after, before)
