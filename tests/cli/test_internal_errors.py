"""Nothing ends in a traceback (docs/contract.md §Exit codes): bad input → exit 2 and one
line; a bug → exit 3, one line naming a log file in the work folder, the traceback only in
that log (no locals, no data)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from kenshin.cli import app
from kenshin.errors import BadInputError
from tests.conftest import assert_one_line_error, checkup_row, write_bundle

runner = CliRunner()
LINE = re.compile(
    r"^internal error: (?P<kind>[\w.]+): (?P<msg>.*) — details in (?P<log>\S+); please report it$"
)


def _internal(result) -> tuple[re.Match, Path, str]:
    """Exit 3 with exactly one stderr line naming an existing log; (match, log path, log text)."""
    assert result.exit_code == 3, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    m = LINE.match(lines[0])
    assert m, lines[0]
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    log = Path(m["log"])
    assert log.is_file() and re.fullmatch(r"kenshin-error-\d{8}-\d{6}(-\d+)?\.log", log.name)
    assert log.stat().st_mode & 0o077 == 0  # owner-only
    return m, log, log.read_text(encoding="utf-8")


#: A resident's row (fictional): defined here so that no traceback source line quotes it.
_ROW = {"name": ["架空 太郎さん"], "sbp": [-98765]}


def _ingest(bundle: Path, store: Path):
    return runner.invoke(app, ["ingest", str(bundle), "--store", str(store)])


def _boom(*args, **kwargs):
    person_id = "12-345678"  # a local holding a raw ID: must not reach the log  # noqa: F841
    raise RuntimeError("boom [/] [bold]not markup[/bold]")


def test_a_bug_in_ingest_exits_3_with_one_line_and_a_log_next_to_the_store(tmp_path, monkeypatch):
    import kenshin.commands

    monkeypatch.setattr(kenshin.commands, "run_ingest", _boom)
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    res = _ingest(bundle, tmp_path / "s")
    m, log, text = _internal(res)
    assert m["kind"] == "RuntimeError"
    assert m["msg"] == "boom [/] [bold]not markup[/bold]"  # printed literally
    assert log.parent == tmp_path  # the store's parent
    assert "Traceback (most recent call last)" in text and "_boom" in text
    assert "RuntimeError: boom" in text and "command: kenshin ingest" in text
    assert "12-345678" not in text  # source lines yes, local values never


def test_the_log_goes_into_the_work_folder_or_else_the_current_folder(tmp_path, monkeypatch):
    import kenshin.commands

    monkeypatch.setattr(kenshin.commands, "run_promote", _boom)
    work = tmp_path / "work"
    work.mkdir()
    _, log, _ = _internal(runner.invoke(app, ["promote", "--workdir", str(work)]))
    assert log.parent == work
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    _, log, _ = _internal(runner.invoke(app, ["promote", "--workdir", str(tmp_path / "nope")]))
    assert log.parent == here


def test_data_in_error_messages_is_summarised_not_logged(tmp_path, monkeypatch):
    """pandera errors quote the failing values (names, IDs): the line and the log name schema,
    column and check only."""
    import pandera.pandas as pa

    import kenshin.commands

    schema = pa.DataFrameSchema(
        {"name": pa.Column(str, pa.Check.str_length(1, 3)), "sbp": pa.Column(int, pa.Check.ge(0))},
        name="Contacts",
    )

    def bad(*args, **kwargs):
        schema.validate(pd.DataFrame(_ROW), lazy=True)

    monkeypatch.setattr(kenshin.commands, "run_ingest", bad)
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    m, _, text = _internal(_ingest(bundle, tmp_path / "s"))
    assert m["kind"] == "SchemaErrors"
    assert "Contacts" in m["msg"] and "'name'" in m["msg"] and "'sbp'" in m["msg"]
    for secret in ("架空", "太郎", "98765"):
        assert secret not in m["msg"] and secret not in text
    # Also on a single (non-lazy) SchemaError.
    monkeypatch.setattr(
        kenshin.commands,
        "run_ingest",
        lambda *a, **k: schema.validate(pd.DataFrame(_ROW).assign(sbp=1)),
    )
    m, _, text = _internal(_ingest(bundle, tmp_path / "s"))
    assert m["kind"] == "SchemaError" and "'name'" in m["msg"]
    assert "架空" not in text and "架空" not in m["msg"]


def test_chained_errors_are_all_in_the_log(tmp_path, monkeypatch):
    import kenshin.commands

    def chained(*args, **kwargs):
        try:
            {}["missing"]
        except KeyError as e:
            raise ValueError("while reading something") from e

    monkeypatch.setattr(kenshin.commands, "run_ingest", chained)
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    _, _, text = _internal(_ingest(bundle, tmp_path / "s"))
    assert "KeyError: 'missing'" in text and "direct cause" in text
    assert "ValueError: while reading something" in text


def test_bad_input_messages_print_literally(tmp_path, monkeypatch):
    import kenshin.commands

    def bad(*args, **kwargs):
        raise BadInputError("checkups.csv row 3: value '[/]' is not a [bold]number[/bold]\nsecond")

    monkeypatch.setattr(kenshin.commands, "run_ingest", bad)
    bundle = write_bundle(tmp_path / "b", [checkup_row()])
    res = _ingest(bundle, tmp_path / "s")
    assert_one_line_error(res, "value '[/]' is not a [bold]number[/bold] second")
    assert not list(tmp_path.glob("kenshin-error-*.log"))  # bad input is not a bug: no log


def test_paths_with_markup_characters_are_printed_literally(tmp_path):
    out = tmp_path / "[/]odd [bold]"
    res = runner.invoke(app, ["synth", "--out", str(out), "--residents", "100", "--years", "2"])
    assert res.exit_code == 0, (res.output, res.stderr)
    assert "[/]odd[bold]" in re.sub(r"[\s│]", "", res.output)  # the title may wrap


def test_usage_errors_stay_click_errors():
    res = runner.invoke(app, ["score", "--year", "not-a-year"])
    assert res.exit_code == 2
    assert "internal error" not in res.stderr


def test_every_command_is_wrapped():
    from kenshin import cli

    wrapper_code = cli.handles_bad_input(lambda: None).__code__
    assert len(app.registered_commands) >= 8
    for info in app.registered_commands:
        assert info.callback.__code__ is wrapper_code, info.callback.__name__
    assert app.pretty_exceptions_show_locals is False


@pytest.mark.parametrize("command", ["train", "features"])
def test_a_bug_deep_in_a_stage_ends_in_one_line(tmp_path, monkeypatch, command):
    import kenshin.commands

    name = {"train": "run_train", "features": "run_features"}[command]
    monkeypatch.setattr(kenshin.commands, name, _boom)
    args = {
        "train": ["train", "--store", str(tmp_path / "s"), "--workdir", str(tmp_path)],
        "features": ["features", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "f")],
    }[command]
    _, log, _ = _internal(runner.invoke(app, args))
    assert log.parent == tmp_path
