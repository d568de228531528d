"""The annual run's output folder, declared once (scoring.outputs.AnnualOutputs).

That a real run writes exactly this layout: tests/scoring/test_annual.py
(``test_the_output_folder_is_exactly_the_declared_layout``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scoring.outputs import AnnualOutputs, staging_for

PID = "0123456789abcdef"


def test_every_path_is_under_the_root():
    outs = AnnualOutputs("out")
    assert outs.root == Path("out")
    rel = {
        name: getattr(outs, name).relative_to(outs.root).as_posix()
        for name in ("scores", "scores_csv", "selection", "selection_csv", "explanations",
                     "drift", "letters_sent", "run", "letters", "letters_manifest", "report",
                     "report_html", "report_pdf")
    }  # fmt: skip
    assert rel == {
        "scores": "scores.parquet", "scores_csv": "scores.csv",
        "selection": "selection.parquet", "selection_csv": "selection.csv",
        "explanations": "explanations.parquet", "drift": "drift.csv",
        "letters_sent": "letters_sent.csv", "run": "run.json", "letters": "letters",
        "letters_manifest": "letters/manifest.csv", "report": "report",
        "report_html": "report/report.html", "report_pdf": "report/report.pdf",
    }  # fmt: skip
    assert outs.letter_pdf(PID) == Path("out/letters/letters") / f"{PID}.pdf"
    assert outs.print_file(3) == Path("out/letters/print/print_0003.pdf")
    assert outs.evaluation_csv(2025) == Path("out/evaluation_FY2025.csv")
    assert outs.evaluation_json(2025) == Path("out/evaluation_FY2025.json")


@pytest.mark.parametrize(
    ("rel", "declared"),
    [
        ("scores.parquet", True), ("run.json", True), ("letters/manifest.csv", True),
        (f"letters/letters/{PID}.pdf", True), ("letters/print/print_0001.pdf", True),
        ("report/report.pdf", True), ("evaluation_FY2025.json", True),
        ("letters/manifest.journal.jsonl", False),  # a killed letter run's: never in a result
        (".scores.parquet.tmp", False), ("scores.parquet.bak", False), ("notes.txt", False),
        ("letters/letters/山田.pdf", False), ("report/report.html.tmp", False),
        ("letters/selection.parquet", False),
    ],
)  # fmt: skip
def test_is_declared(rel, declared):
    assert AnnualOutputs.is_declared(rel) is declared


def test_undeclared_lists_the_stray_files(tmp_path):
    outs = AnnualOutputs(tmp_path)
    outs.letter_pdfs.mkdir(parents=True)
    for p in (outs.scores, outs.run, outs.letter_pdf(PID), outs.letters_journal):
        p.write_bytes(b"")
    (tmp_path / "keep.txt").write_text("not kenshin's")
    assert outs.undeclared() == ["keep.txt", "letters/manifest.journal.jsonl"]


def test_staging_folder_is_beside_the_output_folder(tmp_path):
    assert staging_for(tmp_path / "out") == tmp_path.resolve() / ".out.partial"


def test_producers_and_consumers_take_the_names_from_the_layout():
    import kenshin.annual as ka
    import scoring.outputs as o
    from scoring.report import build

    assert (build.HTML_NAME, build.PDF_NAME) == (o.REPORT_HTML, o.REPORT_PDF)
    assert ka.STAGING_SUFFIX == o.STAGING_SUFFIX


def test_the_steps_on_frames_read_and_write_nothing():
    """The pure steps of the annual run (reusable by another engine): frames in, frames out."""
    from kenshin.annual import letters_sent, run_counts, with_factors
    from scoring.score import Eligibility

    selection = pd.DataFrame(
        {"pseudonym": ["a", "b", "c"], "outcome": ["diabetes", "hypertension", None],
         "sent": [True, False, False], "reason": ["SELECTED", "CONTROL", "LOW_RISK"],
         "reason_detail": [None, None, "verify:ggt"]}
    )  # fmt: skip
    factors = pd.DataFrame(
        {"pseudonym": ["a", "b"], "outcome": ["diabetes", "diabetes"], "factor_1": ["hba1c", "x"],
         "factor_2": ["bmi", "y"], "factor_3": [None, "z"]}
    )  # fmt: skip
    with_f = with_factors(selection, factors)
    assert "factor_1" not in selection  # the input is left as it was
    assert with_f["factor_1"].iloc[0] == "hba1c"
    assert with_f["factor_1"].isna().tolist() == [False, True, True]
    sent = letters_sent(selection, pd.Timestamp("2026-04-01"))
    assert sent.to_dict("records") == [{"pseudonym": "a", "letter_date": "2026-04-01"}]
    elig = Eligibility(pd.DataFrame({"pseudonym": ["a", "b", "c"]}), {"eligible": 3})
    counts = run_counts(elig, selection, explained=2)
    keys = list(counts)
    assert keys[:2] == ["eligible", "scored"] and keys[-1] == "explained"
    assert set(keys[2:-1]) == {
        "reason_SELECTED", "reason_CONTROL", "reason_LOW_RISK", "values_to_verify"
    }  # fmt: skip
    assert counts["scored"] == 3 and counts["explained"] == 2 and counts["values_to_verify"] == 1
