"""Build the staff explanation report (保健師向け説明資料): one self-contained HTML and its PDF.

Pure core: the input is a :class:`ReportInputs` (validated against scoring.contracts); nothing
here reads the store, the model registry or the contacts. The contents of the resident pages
are computed once, column-wise (:func:`scoring.report.residents.resident_tables`), and laid out
twice:

- HTML: ``templates/report.html.j2`` + ``templates/report.css`` (inlined), autoescaped.
- PDF: Typst (:mod:`scoring.report.pdf`): ``templates/report.typ.j2`` (Jinja2 writes Typst, every
  value escaped as plain text) + ``templates/report-style.typ`` (the look), with only the IPAex
  font bundled by ``matplotlib-fontja`` (:func:`scoring.typeset.font_path`), embedded.
  Time per resident page, and against WeasyPrint used before: bench/README.md.

Output (``out_dir``, written atomically: temp file + rename)::

    report.html   cohort summary, model summary, calibration, drift, and a page for every
                  resident in ``explanations`` (searchable by pseudonym; index of anchors
                  without JavaScript); the training run's model card (English, for model
                  staff) folded at the end of the model summary. No external files, no network.
    report.pdf    the same for printing (A4) but the model card, with at most
                  ``ReportConfig.pdf_residents`` resident pages (said so in the PDF when
                  capped), one page each; bookmarks
                  lead to each section and resident, pages are numbered. Typeset in parts of
                  ``ReportConfig.pdf_chunk`` resident pages, each in a short-lived worker
                  process (memory bounded by the part, not the report; Typst never runs in the
                  calling process), joined with pypdf. Removed when ``pdf=False`` so that it
                  never goes stale.

Japanese throughout (the model card aside): every key, code and figure name the inputs carry is
printed by its label (:mod:`scoring.report.labels`), questionnaire answers as words, and a
resident page prints each fact once.

Deterministic: the same inputs give a byte-identical HTML (the only date in it is the given
scoring date; input row order does not matter) and PDF (its date is the scoring date; Typst
writes no clock time and pypdf no file identifier).

No names, addresses, person IDs or birth dates: every input is cut to an allow-list of columns
before validation (see :mod:`scoring.report.inputs`).
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from data.files import atomic_write
from scoring.outputs import REPORT_HTML as HTML_NAME
from scoring.outputs import REPORT_PDF as PDF_NAME

from . import sections
from .inputs import Prepared, ReportConfig, ReportInputs, ReportPaths, prepare
from .pdf import render_pdf
from .residents import Residents, build_residents, resident_tables

__all__ = ["build_report", "render_html", "render_pdf"]

TEMPLATES = Path(__file__).with_name("templates")
#: Fonts a reader's browser likely has for Japanese (names only: nothing is downloaded).
BROWSER_FONTS = (
    '"Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic UI", "Yu Gothic", Meiryo, '
    '"Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", sans-serif'
)


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _css() -> str:
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return f"html {{ font-family: {BROWSER_FONTS}; }}\n" + css


def render_html(p: Prepared, cfg: ReportConfig, res: Residents) -> str:
    """The report's HTML text."""
    total = len(res.pages)
    font = BROWSER_FONTS.replace('"', "'")
    ctx = {
        "title": cfg.title,
        "fiscal_year": p.fiscal_year,
        "scoring_date": p.scoring_date.isoformat(),
        "css": Markup(_css()),
        "residents_total": total,
        "residents_shown": total,
        "index_rows": Markup("\n".join(res.index_rows)),
        "pages": Markup("\n".join(res.pages)),
        "cohort": sections.cohort(p, cfg, font),
        "model": sections.model(p, cfg),
        "calibration": sections.calibration(p, font),
        "drift": sections.drift(p),
    }
    return _env().get_template("report.html.j2").render(**ctx)


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, data, 0o644)  # no personal data in the report


def build_report(
    inputs: ReportInputs, out_dir: Path, *, pdf: bool = True, config: ReportConfig | None = None
) -> ReportPaths:
    """Validate ``inputs`` and write ``report.html`` (and ``report.pdf``) into ``out_dir``.

    Raises :class:`scoring.report.ReportInputError` (before anything is written) when an input
    breaks its contract. ``ReportPaths.seconds`` has the time of each step.
    """
    cfg = config or ReportConfig()
    t0 = time.perf_counter()
    p = prepare(inputs)
    t1 = time.perf_counter()
    tables = resident_tables(p)
    res = build_residents(p, tables)
    t2 = time.perf_counter()
    html = render_html(p, cfg, res).encode("utf-8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / HTML_NAME
    _atomic_write(html_path, html)
    t3 = time.perf_counter()
    seconds = {"validate": t1 - t0, "residents": t2 - t1, "html": t3 - t2}
    # An old PDF next to the new HTML would describe another run: gone before rendering.
    pdf_path = out_dir / PDF_NAME
    pdf_path.unlink(missing_ok=True)
    made = None
    if pdf:
        made = render_pdf(p, cfg, tables)
        _atomic_write(pdf_path, made.data)
        seconds["pdf"] = time.perf_counter() - t3
        seconds["pdf_join"] = made.join_seconds
    seconds["total"] = time.perf_counter() - t0
    return ReportPaths(
        html=html_path,
        pdf=pdf_path if pdf else None,
        residents=len(res.pages),
        pdf_residents=made.residents if made else 0,
        html_bytes=len(html),
        pdf_bytes=len(made.data) if made else None,
        pdf_pages=made.pages if made else None,
        pdf_parts=made.parts if made else None,
        pdf_part_mb=made.part_mb if made else None,
        seconds=seconds,
    )
