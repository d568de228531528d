"""The annual run's output folder (年次処理の出力), declared once.

Every producer (:mod:`kenshin.annual`, :mod:`scoring.report`) and consumer (``kenshin
evaluate`` / ``kenshin synth --letters`` read the selection; tests; benches) names a file of the
folder through :class:`AnnualOutputs`, never by a string of its own::

    OUT/scores.parquet, scores.csv           AnnualOutputs.scores, .scores_csv
    OUT/selection.parquet, selection.csv     .selection, .selection_csv
    OUT/explanations.parquet                 .explanations
    OUT/drift.csv                            .drift
    OUT/letters_sent.csv                     .letters_sent     (letters on)
    OUT/run.json                             .run              (written last)
    OUT/letters/                             .letters          (names and addresses: 0700)
        manifest.csv                         .letters_manifest
        letters/<pseudonym>.pdf              .letter_pdf(pseudonym)
        print/print_0001.pdf                 .print_file(1)
    OUT/report/report.html, report.pdf       .report_html, .report_pdf
    OUT/evaluation_FY<year>.csv, .json       .evaluation_csv(year), .evaluation_json(year)
                                             (written later by ``kenshin evaluate``)

What each table holds: :mod:`scoring.contracts`. The letters folder's inside is what
:func:`scoring.letters.render_letters` writes into the folder it is given (its names are those
below: :data:`LETTERS_MANIFEST`, :data:`LETTER_PDFS`, :data:`PRINT_FILES`). A run writes into
:func:`staging_for` and moves its outputs into ``OUT`` when all are made (kenshin.annual).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: File names of the tables at the top of the output folder.
SCORES = "scores.parquet"
SCORES_CSV = "scores.csv"
SELECTION = "selection.parquet"
SELECTION_CSV = "selection.csv"
EXPLANATIONS = "explanations.parquet"
DRIFT = "drift.csv"
LETTERS_SENT = "letters_sent.csv"
RUN = "run.json"

#: The letters folder (the only one with names and addresses) and its inside.
LETTERS = "letters"
LETTERS_MANIFEST = "manifest.csv"
#: A killed letter run's journal (scoring.letters.render): gone once the manifest is written.
LETTERS_JOURNAL = "manifest.journal.jsonl"
LETTER_PDFS = "letters"
PRINT_FILES = "print"

#: The staff report folder and its files (scoring.report.build writes them).
REPORT = "report"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"

#: Suffix of the staging folder next to the output folder (``.<name>.partial``).
STAGING_SUFFIX = ".partial"

#: Every file a finished annual run may leave in its output folder (relative, as patterns), and
#: the files ``kenshin evaluate`` adds later.
_DECLARED = (
    re.escape(SCORES),
    re.escape(SCORES_CSV),
    re.escape(SELECTION),
    re.escape(SELECTION_CSV),
    re.escape(EXPLANATIONS),
    re.escape(DRIFT),
    re.escape(LETTERS_SENT),
    re.escape(RUN),
    rf"{LETTERS}/{re.escape(LETTERS_MANIFEST)}",
    rf"{LETTERS}/{LETTER_PDFS}/[0-9a-f]+\.pdf",
    rf"{LETTERS}/{PRINT_FILES}/print_[0-9]{{4}}\.pdf",
    rf"{REPORT}/{re.escape(REPORT_HTML)}",
    rf"{REPORT}/{re.escape(REPORT_PDF)}",
    r"evaluation_FY[0-9]{4}\.(csv|json)",
)
_DECLARED_RE = re.compile("|".join(f"(?:{p})" for p in _DECLARED))


@dataclass(frozen=True)
class AnnualOutputs:
    """The paths of one annual run's output folder ``root`` (or of its staging folder)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- tables --------------------------------------------------------------------------
    @property
    def scores(self) -> Path:
        return self.root / SCORES

    @property
    def scores_csv(self) -> Path:
        return self.root / SCORES_CSV

    @property
    def selection(self) -> Path:
        return self.root / SELECTION

    @property
    def selection_csv(self) -> Path:
        return self.root / SELECTION_CSV

    @property
    def explanations(self) -> Path:
        return self.root / EXPLANATIONS

    @property
    def drift(self) -> Path:
        return self.root / DRIFT

    @property
    def letters_sent(self) -> Path:
        return self.root / LETTERS_SENT

    @property
    def run(self) -> Path:
        return self.root / RUN

    # --- letters (names and addresses) ----------------------------------------------------
    @property
    def letters(self) -> Path:
        return self.root / LETTERS

    @property
    def letters_manifest(self) -> Path:
        return self.letters / LETTERS_MANIFEST

    @property
    def letters_journal(self) -> Path:
        return self.letters / LETTERS_JOURNAL

    @property
    def letter_pdfs(self) -> Path:
        return self.letters / LETTER_PDFS

    def letter_pdf(self, pseudonym: str) -> Path:
        return self.letter_pdfs / f"{pseudonym}.pdf"

    def print_file(self, batch: int) -> Path:
        return self.letters / PRINT_FILES / f"print_{batch:04d}.pdf"

    # --- staff report ----------------------------------------------------------------------
    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def report_html(self) -> Path:
        return self.report / REPORT_HTML

    @property
    def report_pdf(self) -> Path:
        return self.report / REPORT_PDF

    # --- written later, by ``kenshin evaluate`` --------------------------------------------
    def evaluation_csv(self, fiscal_year: int) -> Path:
        return self.root / f"evaluation_FY{int(fiscal_year)}.csv"

    def evaluation_json(self, fiscal_year: int) -> Path:
        return self.root / f"evaluation_FY{int(fiscal_year)}.json"

    # --- the layout as a whole -------------------------------------------------------------
    @staticmethod
    def is_declared(relative: str | Path) -> bool:
        """Whether ``relative`` (a file path inside the folder) is part of the layout."""
        return _DECLARED_RE.fullmatch(PurePosixPath(relative).as_posix()) is not None

    def undeclared(self) -> list[str]:
        """Files under ``root`` that the layout does not declare (sorted, relative)."""
        files = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(f for f in files if not self.is_declared(f))


def staging_for(out: Path) -> Path:
    """The staging folder of the output folder ``out``: ``.<name>.partial`` beside it."""
    target = Path(out).resolve()
    return target.parent / f".{target.name}{STAGING_SUFFIX}"
