"""Data never reaches the terminal as console markup or control characters.

File names, ZIP member names, XML item codes, CSV headers and paths are data: a ``[/]`` in
one crashed the command with rich's MarkupError after the store was written (and on every
re-run), and an ESC sequence in a ZIP member name reached the terminal. Everything printed goes
through :mod:`kenshin.printable`; hostile strings are generated here, never committed.
"""

from __future__ import annotations

import io
import re
import zipfile
from types import SimpleNamespace

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from data.ingest import IngestResult, TableAccounting
from data.mhlw_xml import write_checkup_xml
from kenshin import commands
from kenshin.annual import print_annual
from kenshin.cli import app
from kenshin.printable import REPLACEMENT, data_text, printable
from tests.conftest import checkup_row, write_bundle

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TODAY = "2026-11-27"
runner = CliRunner()

#: Pieces a hostile name is made of: markup, escape sequences, C0/C1 controls, bidi overrides,
#: line breaks, an undecodable file-name byte (a lone surrogate), and ordinary text.
PIECES = [
    "[/]", "[bold]", "[/bold]", "[link=https://example.invalid]", "]", "[", "\\", ":",
    "\x1b[2J", "\x1b[31m", "\x1b]0;pwned\x07", "\x1b]8;;https://x\x1b\\", "\x1bP1$r\x1b\\",
    "\x9b2J", "\x9d0;x\x9c", "\x1b", "\x07", "\x00", "\x08", "\x7f", "\x85", "\r", "\n", "\t",
    "\u202e", "\u2066", "\u200f", "\u2028", "\udcff", "a", "Z", "9", " ", "日本", "ｶﾅ", "健診",
]  # fmt: skip
hostile = st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join)

#: What must never be printed: C0 (but newline), DEL, C1, bidi controls, separators, surrogates.
FORBIDDEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
    "\ud800-\udfff]"
)


def _console() -> tuple[Console, io.BytesIO]:
    """A console writing strict UTF-8 (as a real terminal does: a surrogate would raise)."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    return Console(file=out, width=400, color_system=None, force_terminal=False), raw


def _clean(output: str) -> None:
    bad = FORBIDDEN.findall(output)
    assert not bad, f"control characters reached the terminal: {bad!r}"


# ------------------------------------------------------------------------------ the helper


@FUZZ
@given(st.text(max_size=60))
def test_printable_is_identity_on_printable_text_and_safe_on_any(text):
    safe = printable(text)
    _clean(safe)
    if text.isprintable():
        assert safe == text
    if not re.search("[\x1b\x90\x98\x9b\x9d-\x9f]", text):  # no escape sequence in it
        # then only controls are replaced: every printable character survives, in order
        def kept(s: str) -> list[str]:
            return [c for c in s if c.isprintable() and c not in (REPLACEMENT, " ")]

        assert kept(safe) == kept(text)


@FUZZ
@given(hostile)
def test_console_markup_in_data_is_printed_literally_without_controls(text):
    console, raw = _console()
    console.print(data_text(text), highlight=False)
    out = raw.getvalue().decode("utf-8")
    _clean(out)
    assert out.rstrip() == printable(text).rstrip()
    for markup in ("[/]", "[bold]", "[link=https://example.invalid]"):
        if markup in text and markup in printable(text):
            assert markup in out


def test_escape_sequences_are_removed_whole():
    assert printable("a\x1b[2Jb") == f"a{REPLACEMENT}b"
    assert printable("a\x1b]0;title\x07b") == f"a{REPLACEMENT}b"
    assert printable("a\x9b31mb") == f"a{REPLACEMENT}b"
    assert printable("line\nbreak\ttab") == "line break tab"
    assert printable("名前[/]") == "名前[/]"


# ------------------------------------------------------------- every print_* of the pipeline


def _ingest_result(name: str) -> IngestResult:
    reasons = [{"table": name, "column": name, "reason": f"reason {name}", "rows": 1}]
    rejects = pd.DataFrame(
        {"source_file": [name], "source_row": [1], "column": [name], "reason": [name]}
    )
    manifest = {
        "reject_reasons": reasons,
        "reader_notes": {
            "checkups": {
                "xml": {
                    "unknown_item_codes": {name: 1},
                    "skipped_files": {"count": 1, "files": {name: "FIFO"}},
                }
            }
        },
        "questionnaire_coding": {
            "setting": name,
            "decisions": [
                {
                    "source_file": name,
                    "fiscal_year": 2020,
                    "rows": 3,
                    "coding": name,
                    "basis": f"assumed {name}",
                }
            ],
        },  # fmt: skip
        "invalid_codes": [{"item": name, "rows": 2, "coding": name}],
        "derived_out_of_range": {name: 1},
        "missing_tables": ["contacts"],
    }
    acct = {name: TableAccounting(2, 1, 1, 0), "checkups": TableAccounting(3, 1, 1, 0)}
    return IngestResult(acct, rejects, {"checkups": [name]}, manifest)


def _print_all(console: Console, name: str) -> None:
    commands.print_ingest_summary(console, _ingest_result(name), name)
    summary = pd.DataFrame(
        {"outcome": [name], "engine_auc": [0.8], "member": [name], "member_weight": [0.5]}
    )
    report = SimpleNamespace(
        summary=lambda: summary,
        test_year=name,
        forecasts=pd.DataFrame(
            {"item": [name], "coverage_80": [0.8], "mean_width": [1.0], "mae_p50": [1.0],
             "mae_persistence": [1.0]}
        ),
    )  # fmt: skip
    run = SimpleNamespace(version=name, run_id=name, tracking_uri=f"sqlite:///{name}/mlflow.db")
    commands.print_train_summary(console, report, run)
    figures = pd.DataFrame(
        [{"outcome": name, "n": 1, "challenger_auc": 0.8, "champion_auc": 0.7, "auc_drop": -0.1,
          "challenger_ece": 0.01, "challenger_cal_slope": 1.0, "auc_ok": True, "ece_ok": False,
          "slope_ok": True}]
    )  # fmt: skip
    for promoted in (True, False):
        decision = SimpleNamespace(
            figures=figures, champion_version=name, challenger_version=name,
            promoted=promoted, reason=name,
        )  # fmt: skip
        commands.print_promotion(console, decision)
    follow = pd.DataFrame(
        [{"outcome": name, "at_risk": 1, "with_follow_up": 1, "without_follow_up": 0,
          "share_without_follow_up": 0.0, "event_rate": 0.1, "p_true_ratio_without_vs_with": 1.0}]
    )  # fmt: skip
    commands.print_follow_up(console, follow)
    comparisons = pd.DataFrame(
        [{"group": name, "measure": name, "method": "Welch t", "letter": 1.0, "n_letter": 3,
          "control": 0.5, "n_control": 4, "difference": 0.5, "ci_low": 0.1, "ci_high": 0.9}]
    )  # fmt: skip
    result = SimpleNamespace(
        fiscal_year=name, follow_up_year=name, config=SimpleNamespace(confidence=0.95),
        comparisons=comparisons,
    )  # fmt: skip
    commands.print_evaluation(console, result)
    keys = ("scores", "selection", "explanations", "drift", "report_html", "report_pdf", "run",
            "letters")  # fmt: skip
    annual = SimpleNamespace(
        counts={"scored": 3, f"reason_{name}": 1, "letters_rendered": 1}, out=name,
        seconds={"score": 1.0, "total": 2.0}, model=SimpleNamespace(uri=name, version=name),
        paths={k: f"{name}/{k}" for k in keys},
    )  # fmt: skip
    print_annual(console, annual)


@settings(FUZZ, max_examples=40)
@given(hostile)
def test_every_pipeline_summary_prints_hostile_data_literally(name):
    console, raw = _console()
    _print_all(console, name)  # no MarkupError, no UnicodeEncodeError
    out = raw.getvalue().decode("utf-8")
    _clean(out)
    if "[/]" in name:
        assert "[/]" in out
    assert "skipped 1 XML/ZIP entries that are not checkup files" in out


# --------------------------------------------------------------- the real commands, end to end


def _doc(person_id: str, extra_code: str | None = None) -> bytes:
    row = checkup_row(person_id=person_id, exam_date="20240610", birth_date="19700501")
    doc = write_checkup_xml(row, {"address": "東京都架空区1-2-3"})
    if extra_code is None:
        return doc
    code = extra_code.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return doc.replace(
        b"</section>",
        b'<entry><observation classCode="OBS" moodCode="EVN"><code code="'
        + code.encode()
        + b'"/><value xsi:type="PQ" value="1" unit="cm"/></observation></entry></section>',
        1,
    )


_xml_char = st.sampled_from(["[/]", "[bold]", "\x9b2J", "\x85", "\u202e", "x", "9", "日"])
xml_safe = st.lists(_xml_char, min_size=1, max_size=5).map("".join)  # characters XML allows
member_name = hostile.filter(lambda s: "\x00" not in s and "\udcff" not in s)


@settings(FUZZ, max_examples=6)
@given(member=member_name, code=xml_safe, header=member_name)
def test_ingest_with_hostile_member_names_codes_and_headers_exits_0_every_time(
    tmp_path_factory, member, code, header
):
    """The run that crashed after writing the store, and again on every re-run."""
    tmp = tmp_path_factory.mktemp("hostile")
    row = checkup_row(person_id="99-000009")
    row[f"x{header}".replace("\n", " ").replace("\r", " ")] = "v"
    bundle = write_bundle(tmp / "b", [row])
    with zipfile.ZipFile(bundle / "exchange.zip", "w") as zf:
        zf.writestr(f"r/DATA/{member}.xml", _doc("12-000001", extra_code=f"9Z{code}"))
        zf.writestr(f"r/DATA/{member}-bad.xml", b"<broken")  # a reject naming the member
    for attempt in range(2):  # the second run finds the bundle unchanged
        res = runner.invoke(
            app,
            ["ingest", str(bundle), "--store", str(tmp / "s"), "--today", TODAY,
             "--accept-rejects"],
        )  # fmt: skip
        assert res.exit_code == 0, (attempt, res.output, res.stderr, res.exception)
        _clean(res.stdout.replace("\n", " "))
        _clean(res.stderr.replace("\n", " "))
        assert "exchange.zip" in res.stdout


def test_bad_input_errors_quoting_a_path_are_printed_without_controls(tmp_path):
    odd = tmp_path / "[/]\x1b[2Jgone\x9b31m"
    res = runner.invoke(app, ["ingest", str(odd), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2
    _clean(res.stderr.replace("\n", " "))
    assert "[/]" in res.stderr and "bundle folder does not exist" in res.stderr


@pytest.mark.parametrize("command", ["synth", "features"])
def test_output_paths_with_markup_and_escapes_print_literally(tmp_path, command):
    out = tmp_path / "[/]\x1b]0;pwn\x07[bold]"
    if command == "synth":
        args = ["synth", "--out", str(out), "--residents", "100", "--years", "2"]
    else:
        bundle = tmp_path / "bundle"
        assert runner.invoke(app, ["synth", "--out", str(bundle), "--residents", "200",
                                   "--years", "3"]).exit_code == 0  # fmt: skip
        store = tmp_path / "[/]store"
        ing = runner.invoke(app, ["ingest", str(bundle), "--store", str(store), "--today", TODAY])
        assert ing.exit_code == 0, ing.output
        args = ["features", "--store", str(store), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (res.output, res.stderr)
    _clean(res.stdout.replace("\n", " "))
    assert "[/]" in res.stdout
