"""The command line reads well at 80 columns and helps with a common slip (two-digit years)."""

from __future__ import annotations

import unicodedata

import pytest
import typer
from typer.testing import CliRunner

from kenshin.cli import app

runner = CliRunner()
COMMANDS = ["ingest", "features", "train", "promote", "score", "evaluate", "synth", "demo"]


def width(line: str) -> int:
    """Columns a terminal uses for ``line`` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_without_truncating(command):
    res = runner.invoke(app, [*([command] if command else []), "--help"], terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert [line for line in lines if width(line) > 80] == []
    assert "…" not in res.output  # no option name or default cut short
    click_command = typer.main.get_command(app)
    if command:
        click_command = click_command.commands[command]
    for param in click_command.params:
        for flag in (*param.opts, *param.secondary_opts):
            assert flag in res.output, flag  # printed whole, never cut short


def test_every_command_is_listed():
    res = runner.invoke(app, ["--help"], terminal_width=80)
    for command in COMMANDS:
        assert f"  {command} " in res.output, command


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["score", "--store", "s", "--out", "o", "--year", "25"], "did you mean 2025?"),
        (["evaluate", "--store", "s", "--scores", "o", "--year", "24"], "did you mean 2024?"),
        (["synth", "--out", "o", "--last-fiscal-year", "7"], "2008-2100"),
        (["score", "--store", "s", "--out", "o", "--year", "1900"], "2008-2100"),
    ],
)
def test_a_year_that_is_not_four_digits_is_refused_with_a_suggestion(args, suggestion):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")  # bad input: one line
    assert suggestion in " ".join(res.stderr.split())
