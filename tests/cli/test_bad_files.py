"""File-level problems stop a command with exit code 2 and a one-line reason naming the file."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from kenshin.cli import app
from tests.conftest import assert_one_line_error, checkup_row, write_bundle

runner = CliRunner()


def _ingest(bundle, store):
    return runner.invoke(app, ["ingest", str(bundle), "--store", str(store)])


def test_missing_required_column(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    frame = pd.read_csv(bundle / "checkups.csv").drop(columns="exam_date")
    frame.to_csv(bundle / "checkups.csv", index=False)
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), "checkups.csv", "exam_date", "missing")


def test_truncated_file(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row(), checkup_row(exam_date="2025-06-01")])
    text = (bundle / "checkups.csv").read_text()
    (bundle / "checkups.csv").write_text(text[: text.rfind("\n") - 1][:-40])
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), "checkups.csv", "truncated")


@pytest.mark.parametrize("encoding", ["utf-16", "euc_jp"])
def test_wrong_encoding(tmp_path, encoding):
    rows = [checkup_row(memo="再検査のため後日郵送予定です"), checkup_row(exam_date="2025-06-01")]
    bundle = write_bundle(tmp_path / "b", rows, encoding=encoding)
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), "checkups.csv", "decode")


def test_cp932_export_reads(tmp_path):
    rows = [checkup_row(memo="再検査"), checkup_row(exam_date="R7.6.1", memo="髙﨑")]
    bundle = write_bundle(tmp_path / "b", rows, encoding="cp932")
    result = _ingest(bundle, tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "memo" in result.output


def test_unreadable_parquet(tmp_path):
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    (bundle / "checkups.csv").unlink()
    (bundle / "checkups.parquet").write_bytes(b"PAR1 this is not parquet")
    assert_one_line_error(_ingest(bundle, tmp_path / "s"), "checkups.parquet", "unreadable")


def test_no_bundle_folder(tmp_path):
    assert_one_line_error(_ingest(tmp_path / "nope", tmp_path / "s"), "does not exist")


def test_no_checkups_table(tmp_path):
    (tmp_path / "b").mkdir()
    assert_one_line_error(_ingest(tmp_path / "b", tmp_path / "s"), "no checkups")


def test_help_for_every_command():
    for cmd in ("synth", "ingest", "demo"):
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output
