"""Exports as other vendors write them, and store paths a user may mistype: each loads, or stops
with one line, and never destroys a file (found trying kenshin as a new user on outside data)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from data.store import read_checkups, read_manifest, read_rejects
from kenshin.cli import app
from tests.conftest import assert_one_line_error, checkup_row, write_bundle

runner = CliRunner()


def _ingest(bundle, store, *extra):
    args = ["ingest", str(bundle), "--store", str(store), "--today", "2026-11-27", *extra]
    return runner.invoke(app, args)


def _people(n: int, **overrides) -> list[dict]:
    return [checkup_row(person_id=f"12-{i:06d}", **overrides) for i in range(n)]


# --------------------------------------------------------------------------------------------
# The store path: writing a store replaces the folder, so only a store or an empty folder may be
# replaced
# --------------------------------------------------------------------------------------------


def test_store_in_the_current_folder_is_refused_and_nothing_is_deleted(tmp_path, monkeypatch):
    bundle = write_bundle(tmp_path / "b", _people(3))
    work = tmp_path / "work"
    work.mkdir()
    (work / "letters_2024.csv").write_text("keep me")
    monkeypatch.chdir(work)
    assert_one_line_error(_ingest(bundle, "."), "current folder")
    assert_one_line_error(_ingest(bundle, ".."), "--store")  # it also holds the bundle
    assert (work / "letters_2024.csv").read_text() == "keep me"
    assert (bundle / "checkups.csv").is_file()


@pytest.mark.parametrize("where", ["bundle", "inside", "holds"])
def test_store_that_is_holds_or_lies_in_the_bundle_is_refused(tmp_path, where):
    bundle = write_bundle(tmp_path / "x" / "b", _people(3))
    store = {"bundle": bundle, "inside": bundle / "store", "holds": tmp_path / "x"}[where]
    assert_one_line_error(_ingest(bundle, store), "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == [
        "checkups.csv", "contacts.csv", "enrollment.csv"
    ]  # fmt: skip


def test_store_that_is_a_file_or_a_folder_of_other_files_is_refused(tmp_path):
    bundle = write_bundle(tmp_path / "b", _people(3))
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(_ingest(bundle, tmp_path / "notes.txt"), "not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".notes.txt*"))
    other = tmp_path / "documents"
    other.mkdir()
    (other / "report.docx").write_bytes(b"x")
    assert_one_line_error(_ingest(bundle, other), "not a kenshin store")
    assert (other / "report.docx").exists()


def test_an_empty_folder_or_an_earlier_store_is_written(tmp_path):
    bundle = write_bundle(tmp_path / "b", _people(3))
    (tmp_path / "s").mkdir()
    assert _ingest(bundle, tmp_path / "s").exit_code == 0
    assert _ingest(bundle, tmp_path / "s", "--force").exit_code == 0
    assert len(read_checkups(tmp_path / "s")) == 3


# --------------------------------------------------------------------------------------------
# CSV as vendors write it
# --------------------------------------------------------------------------------------------


def _rewrite(path, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


@pytest.mark.parametrize("header_too", [False, True])
def test_a_comma_after_the_last_field_of_every_row_shifts_nothing(tmp_path, header_too):
    """pandas took the first column as an index and shifted every value one column left."""
    bundle = write_bundle(tmp_path / "b", _people(3, sbp="141", dbp="88"))
    _rewrite(
        bundle / "checkups.csv",
        lambda ls: [ls[0] + ("," if header_too else "")] + [line + "," for line in ls[1:]],
    )
    res = _ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    stored = read_checkups(tmp_path / "s")
    assert len(stored) == 3 and (stored["sbp"] == 141).all() and (stored["dbp"] == 88).all()
    assert stored["exam_date"].eq(pd.Timestamp("2024-06-10")).all()
    assert read_manifest(tmp_path / "s")["extra_columns"] == {}  # no "Unnamed: 27"


def test_a_value_past_the_last_column_is_one_line_not_a_silent_loss(tmp_path):
    bundle = write_bundle(tmp_path / "b", _people(3))
    _rewrite(bundle / "checkups.csv", lambda ls: [ls[0]] + [line + ",999" for line in ls[1:]])
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), "checkups.csv", "more fields")


def test_not_measured_marks_are_missing_and_counted_not_rejects(tmp_path):
    marks = ["-", "－", "NULL", "N/A", "未実施", "未測定", "欠測", "na"]
    rows = [checkup_row(person_id=f"12-{i:06d}", ldl=m) for i, m in enumerate(marks)]
    rows += [checkup_row(person_id="12-999999", ldl="*")]  # not a known mark: a reject
    rows += [checkup_row(person_id=f"13-{i:06d}") for i in range(8)]
    res = _ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s")
    assert res.exit_code == 0, res.output
    stored = read_checkups(tmp_path / "s")
    assert len(stored) == len(marks) + 8
    assert stored["ldl"].isna().sum() == len(marks)
    assert read_manifest(tmp_path / "s")["read_as_missing"]["checkups"] == {"ldl": len(marks)}
    rejects = read_rejects(tmp_path / "s")
    assert rejects[["column", "value"]].values.tolist() == [["ldl", "*"]]
    assert "'not measured' marks read as missing: ldl 8" in res.output


def test_open_ended_membership_and_japanese_end_reasons_load(tmp_path):
    enrollment = [
        {"person_id": "12-000000", "enrolled_from": "2015-04-01", "enrolled_until": "9999-12-31"},
        {"person_id": "12-000001", "enrolled_from": "2015-04-01", "enrolled_until": "99991231"},
        {"person_id": "12-000002", "enrolled_from": "2015-04-01", "enrolled_until": "2023-03-31",
         "end_reason": "転出"},
        {"person_id": "12-000003", "enrolled_from": "2015-04-01", "enrolled_until": "2023-03-31",
         "end_reason": "後期高齢者医療"},
    ]  # fmt: skip
    bundle = write_bundle(tmp_path / "b", _people(4), enrollment=enrollment)
    res = _ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    enr = pd.read_parquet(tmp_path / "s" / "enrollment.parquet")
    assert enr["enrolled_until"].isna().sum() == 2
    assert sorted(enr["end_reason"].dropna()) == ["moved_out", "turned_75"]
    manifest = read_manifest(tmp_path / "s")
    assert manifest["read_as_missing"]["enrollment"] == {"enrolled_until": 2}
    assert manifest["accounting"]["enrollment"]["rejected"] == 0


def test_empty_texts_in_parquet_are_missing_as_in_csv(tmp_path):
    bundle = write_bundle(tmp_path / "b", _people(3))
    enr = pd.read_csv(bundle / "enrollment.csv", dtype=str)
    enr["enrolled_until"], enr["end_reason"] = "", " "
    enr.to_parquet(bundle / "enrollment.parquet", index=False)
    (bundle / "enrollment.csv").unlink()
    res = _ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "s")["accounting"]["enrollment"]["loaded"] == 3


@pytest.mark.parametrize("birth", ["1900-01-01", "1890-12-31"])
def test_a_placeholder_birth_date_rejects_its_row_with_the_reason(tmp_path, birth):
    """Once an internal error (exit 3): the store's age range (18-120) refused the row after
    validation had let it through."""
    rows = _people(9) + [checkup_row(person_id="12-999999", birth_date=birth)]
    res = _ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s")
    assert res.exit_code == 0, res.output
    (reject,) = read_rejects(tmp_path / "s").to_dict(orient="records")
    assert reject["column"] == "birth_date" and "over 120" in reject["reason"]
    assert reject["value"] is None or pd.isna(reject["value"])  # a birth date is withheld


# --------------------------------------------------------------------------------------------
# The questionnaire coding from the command line and the settings file
# --------------------------------------------------------------------------------------------


def test_questionnaire_coding_from_the_command_line_and_from_ingest_toml(tmp_path):
    """A FY2022 file holding only codes both forms share is read in the old form unless told."""
    rows = _people(5, exam_date="2022-06-10", q_smoking="1", q_alcohol_freq="1")
    bundle = write_bundle(tmp_path / "b", rows)

    def decisions(store):
        coding = json.loads((store / "manifest.json").read_text())["questionnaire_coding"]
        return {(d["coding"], d["basis"]) for d in coding["decisions"]}

    assert _ingest(bundle, tmp_path / "auto").exit_code == 0
    assert decisions(tmp_path / "auto") == {("by-year", "assumed")}
    res = _ingest(bundle, tmp_path / "cli", "--questionnaire-coding", "current")
    assert res.exit_code == 0, res.output
    assert {r for r, _ in decisions(tmp_path / "cli")} == {"current"}
    toml = tmp_path / "ingest.toml"
    toml.write_text('questionnaire_coding = "current"\n')
    assert _ingest(bundle, tmp_path / "toml", "--config", str(toml)).exit_code == 0
    assert {r for r, _ in decisions(tmp_path / "toml")} == {"current"}
    toml.write_text('questionnaire_coding = "sometimes"\n')
    assert_one_line_error(_ingest(bundle, tmp_path / "bad", "--config", str(toml)), "ingest.toml")


@pytest.mark.parametrize("coding", ["by-year", "current"])
def test_synth_writes_either_coding_from_the_command_line(tmp_path, coding):
    out = tmp_path / "ward"
    res = runner.invoke(
        app,
        ["synth", "--out", str(out), "--residents", "150", "--years", "3",
         "--last-fiscal-year", "2024", "--questionnaire-coding", coding],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    res = _ingest(out, tmp_path / "s")
    assert res.exit_code == 0, res.output
    manifest = read_manifest(tmp_path / "s")
    assert manifest["accounting"]["checkups"]["rejected"] == 0
    read_as = {d["coding"] for d in manifest["questionnaire_coding"]["decisions"]}
    assert read_as == {"by-year" if coding == "by-year" else "current"}


# --------------------------------------------------------------------------------------------
# Headers: Japanese item names, and a measurement's name with a unit beside it
# --------------------------------------------------------------------------------------------


def test_japanese_item_names_as_headers_are_read_as_their_columns(tmp_path):
    names = {"exam_date": "受診日", "sbp": "収縮期血圧", "dbp": "拡張期血圧", "tg": "中性脂肪",
             "hdl": "HDL コレステロール", "ldl": "ＬＤＬコレステロール", "ast": "AST(GOT)",
             "alt": "ALT（GPT）", "ggt": "γ-GTP", "fpg": "空腹時血糖", "waist_cm": "腹囲"}  # fmt: skip
    bundle = write_bundle(tmp_path / "b", _people(3, sbp="141"))
    frame = pd.read_csv(bundle / "checkups.csv", dtype=str).rename(columns=names)
    frame.to_csv(bundle / "checkups.csv", index=False)
    res = _ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    stored = read_checkups(tmp_path / "s")
    assert (stored["sbp"] == 141).all() and stored[list(names)].notna().all().all()
    assert read_manifest(tmp_path / "s")["extra_columns"] == {}


@pytest.mark.parametrize(
    ("rename", "column"),
    [({"sbp": "sbp_mmhg", "dbp": "dbp_mmhg"}, "sbp"), ({"hba1c": "HbA1c_NGSP"}, "hba1c"),
     ({"tg": "TG(mg/dL)"}, "tg")],
)  # fmt: skip
def test_a_measurement_named_with_its_unit_or_method_stops_the_ingest(tmp_path, rename, column):
    """``sbp_mmhg`` was set aside as unknown and the store had no blood pressure at all."""
    bundle = write_bundle(tmp_path / "b", _people(3))
    frame = pd.read_csv(bundle / "checkups.csv", dtype=str).rename(columns=rename)
    frame.to_csv(bundle / "checkups.csv", index=False)
    header = next(iter(rename.values()))
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), f"no column {column!r}", header)


# --------------------------------------------------------------------------------------------
# Tables with a header and no row; rejected contact values
# --------------------------------------------------------------------------------------------


def test_header_only_enrollment_or_contacts_are_named_at_ingest(tmp_path):
    bundle = write_bundle(tmp_path / "b", _people(3))
    for table in ("enrollment", "contacts"):
        header = (bundle / f"{table}.csv").read_text().split("\n", 1)[0]
        (bundle / f"{table}.csv").write_text(header + "\n")
    res = _ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert "warning: the enrollment table has no rows" in res.output
    assert "warning: the contacts table has no rows" in res.output
    manifest = read_manifest(tmp_path / "s")
    assert manifest["missing_tables"] == manifest["empty_tables"] == ["enrollment", "contacts"]


def test_rejected_contact_values_never_reach_the_rejects_and_the_file_is_owner_only(tmp_path):
    rows = _people(6)
    contacts = [
        {"person_id": r["person_id"], "name": "架空 太郎", "address": "東京都架空区1-2-3",
         "opt_out": "山田花子様" if i == 0 else "0"}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    res = _ingest(write_bundle(tmp_path / "b", rows, contacts=contacts), tmp_path / "s")
    assert res.exit_code == 0, res.output
    path = tmp_path / "s" / "rejects.parquet"
    rejects = read_rejects(tmp_path / "s")
    assert rejects["column"].tolist() == ["opt_out"] and rejects["value"].isna().all()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert "山田" not in res.output


# --------------------------------------------------------------------------------------------
# Sex as a word, classic Mac line ends, upper-case file names, other separators
# --------------------------------------------------------------------------------------------


def test_sex_written_as_a_word_is_read_as_its_code(tmp_path):
    words = {"男": 1, "女": 2, "M": 1, "F": 2, "male": 1, "Female": 2, "男性": 1, "女性": 2}
    rows = [checkup_row(person_id=f"12-{i:06d}", sex=w) for i, w in enumerate(words)]
    rows.append(checkup_row(person_id="12-999999", sex="X"))  # no such word: still a reject
    res = _ingest(write_bundle(tmp_path / "b", rows), tmp_path / "s", "--accept-rejects")
    assert res.exit_code == 0, res.output
    stored = read_checkups(tmp_path / "s").sort_values("_source_row")
    assert stored["sex"].tolist() == list(words.values())
    assert read_rejects(tmp_path / "s")["column"].tolist() == ["sex"]


def test_classic_mac_line_ends_and_upper_case_file_names_load(tmp_path):
    bundle = write_bundle(tmp_path / "b", _people(3))
    text = (bundle / "checkups.csv").read_text()
    (bundle / "checkups.csv").unlink()
    (bundle / "CHECKUPS.CSV").write_text(text.replace("\n", "\r"))
    res = _ingest(bundle, tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert len(read_checkups(tmp_path / "s")) == 3
    (bundle / "checkups.csv").write_text(text)
    assert_one_line_error(_ingest(bundle, tmp_path / "s2"), "CHECKUPS.CSV and checkups.csv")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_file_separated_otherwise_than_by_commas_says_so(tmp_path, sep):
    bundle = write_bundle(tmp_path / "b", _people(3))
    frame = pd.read_csv(bundle / "checkups.csv", dtype=str)
    frame.to_csv(bundle / "checkups.csv", index=False, sep=sep)
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), "checkups.csv", "comma-separated")
