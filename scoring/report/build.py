"""Build the staff explanation report (保健師向け説明資料): one self-contained HTML and its PDF.

Pure core: the input is a :class:`ReportInputs` (validated against scoring.contracts); nothing
here reads the store, the model registry or the contacts. Layout: ``templates/report.html.j2``
+ ``templates/report.css`` (inlined in the HTML). The PDF is the same template through
WeasyPrint with ``templates/pdf.css`` and the IPAex font bundled by ``matplotlib-fontja``
(:func:`scoring.letters.render.font_path`), embedded: no system font is used.

Output (``out_dir``, written atomically: temp file + rename)::

    report.html   cohort summary, model card summary, calibration, drift, and a page for every
                  resident in ``explanations`` (searchable by pseudonym; index of anchors
                  without JavaScript). No external files, no network.
    report.pdf    the same, with at most ``ReportConfig.pdf_residents`` resident pages
                  (said so in the PDF; bookmarks lead to each resident). Laid out in parts of
                  ``ReportConfig.pdf_chunk`` resident pages joined with pypdf, which bounds
                  WeasyPrint's memory. Removed when ``pdf=False`` so that it never goes stale.

Deterministic: the same inputs give a byte-identical HTML (the only date in it is the given
scoring date; input row order does not matter) and PDF (metadata dates and the embedded font's
timestamp are pinned to the scoring date; neither WeasyPrint nor pypdf writes a file
identifier).

No names, addresses, person IDs or birth dates: every input is cut to an allow-list of columns
before validation (see :mod:`scoring.report.inputs`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from data.files import atomic_write
from scoring.letters.render import font_path

from . import sections
from .inputs import Prepared, ReportConfig, ReportInputs, ReportPaths, prepare
from .residents import Residents, build_residents

__all__ = ["build_report", "render_html", "render_pdf"]

TEMPLATES = Path(__file__).with_name("templates")
HTML_NAME = "report.html"
PDF_NAME = "report.pdf"
PDF_FONT = "KenshinIPAex"
#: Fonts a reader's browser likely has for Japanese (names only: nothing is downloaded).
BROWSER_FONTS = (
    '"Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic UI", "Yu Gothic", Meiryo, '
    '"Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", sans-serif'
)
#: Replacements for characters the IPAex font lacks (PDF only; anything else becomes 〓).
_PDF_CHARS = {"≥": ">=", "≤": "<=", "⩾": ">=", "⩽": "<=", "∼": "~"}


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


def _css(pdf: bool) -> str:
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    if pdf:
        return (
            f'@font-face {{ font-family: "{PDF_FONT}"; src: url("{font_path().as_uri()}"); }}\n'
            + css
            + (TEMPLATES / "pdf.css").read_text(encoding="utf-8")
        )
    return f"html {{ font-family: {BROWSER_FONTS}; }}\n" + css


_LINK = re.compile(r"<a href=#p-([0-9a-f]+)>\1</a>")


def render_html(
    p: Prepared,
    cfg: ReportConfig,
    res: Residents,
    *,
    pdf: bool = False,
    residents: tuple[int, int] | None = None,
    head: bool = True,
    first_page: int = 1,
) -> str:
    """The report's HTML text.

    ``pdf=True`` gives the variant fed to WeasyPrint: resident pages ``residents`` = (start,
    stop) only, no search box or script, index without links; ``head=False`` leaves out the
    summary sections (a later PDF part), whose page numbers start at ``first_page``.
    """
    total = len(res.pages)
    a, b = residents if residents is not None else (0, total)
    shown = min(cfg.pdf_residents, total) if pdf else total
    font = PDF_FONT if pdf else BROWSER_FONTS.replace('"', "'")
    index = "\n".join(res.index_rows[:shown])
    ctx = {
        "title": cfg.title,
        "fiscal_year": p.fiscal_year,
        "scoring_date": p.scoring_date.isoformat(),
        "css": Markup(_css(pdf)),
        "pdf": pdf,
        "head": head,
        "first_page": first_page,
        "page_title": Markup(json.dumps(f"{cfg.title} {p.fiscal_year}年度", ensure_ascii=False)),
        "residents_total": total,
        "residents_shown": shown,
        "index_rows": Markup(_LINK.sub(r"\1", index) if pdf else index),
        "pages": Markup("\n".join(res.pages[a:b])),
    }
    if head:
        ctx |= {
            "cohort": sections.cohort(p, cfg, font),
            "model": sections.model(p, cfg),
            "calibration": sections.calibration(p, font),
            "drift": sections.drift(p),
        }
    return _env().get_template("report.html.j2").render(**ctx)


@cache
def _cmap() -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(str(font_path()), lazy=True).getBestCmap())


def pdf_safe(text: str) -> str:
    """``text`` with every character outside the IPAex font replaced (≥ → >=, else 〓)."""
    cmap = _cmap()
    table = {
        ord(c): _PDF_CHARS.get(c, "〓")
        for c in set(text)
        if ord(c) not in cmap and not c.isspace() and c.isprintable()
    }
    for k, v in list(table.items()):
        if any(ord(ch) not in cmap for ch in v):
            table[k] = "〓"
    return text.translate(table) if table else text


class _DropSubsetNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "HarfBuzz-Subset" not in record.getMessage()


def _quiet_weasyprint() -> None:
    """WeasyPrint says once per document that it subsets fonts with fontTools: drop that."""
    from weasyprint import LOGGER

    if not any(isinstance(f, _DropSubsetNotice) for f in LOGGER.filters):
        LOGGER.addFilter(_DropSubsetNotice())


@contextlib.contextmanager
def _source_date(epoch: int):
    """fontTools stamps the subset font with "now" unless SOURCE_DATE_EPOCH is set."""
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def render_pdf(p: Prepared, cfg: ReportConfig, res: Residents) -> tuple[bytes, int]:
    """PDF bytes and page count: the summary and the first ``cfg.pdf_residents`` resident pages.

    WeasyPrint keeps every laid-out page in memory (≈10 MB per resident page), so the resident
    pages are laid out ``cfg.pdf_chunk`` at a time, each part written to PDF and the parts
    joined with pypdf (bookmarks kept; page numbers continue across parts).
    """
    from pypdf import PdfReader, PdfWriter
    from weasyprint import HTML
    from weasyprint.text.fonts import FontConfiguration

    _quiet_weasyprint()
    fc = FontConfiguration()
    d = p.scoring_date
    epoch = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
    n = min(cfg.pdf_residents, len(res.pages))
    step = cfg.pdf_chunk
    parts = [(0, min(step, n))] + [(a, min(a + step, n)) for a in range(step, n, step)]
    pdfs: list[bytes] = []
    pages = 0
    for i, span in enumerate(parts):
        html = render_html(p, cfg, res, pdf=True, residents=span, head=i == 0, first_page=pages + 1)
        doc = HTML(string=pdf_safe(html), base_url=str(TEMPLATES)).render(font_config=fc)
        pages += len(doc.pages)
        # fontTools stamps the subset font with "now" unless SOURCE_DATE_EPOCH is set.
        with _source_date(epoch):
            pdfs.append(doc.write_pdf())
        del doc
    if len(pdfs) == 1:
        return pdfs[0], pages
    writer = PdfWriter()
    parent = None  # the outline item of section 5: later parts' residents go under it
    offset = 0
    for i, data in enumerate(pdfs):
        reader = PdfReader(io.BytesIO(data))
        writer.append(reader, import_outline=False)
        parent = _copy_outline(writer, reader, reader.outline, offset, None if i == 0 else parent)
        if i == 0:
            writer.add_metadata({k: v for k, v in (reader.metadata or {}).items()})
        offset += len(reader.pages)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue(), pages


def _copy_outline(writer, reader, items, offset: int, parent):
    """Re-create ``reader``'s bookmarks in ``writer`` (pages shifted by ``offset``) under
    ``parent``; returns the last top-level item created."""
    last = None
    for item in items:
        if isinstance(item, list):
            _copy_outline(writer, reader, item, offset, last)
            continue
        page = offset + reader.get_destination_page_number(item)
        last = writer.add_outline_item(item.title, page, parent=parent)
    return last if parent is None else parent


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
    res = build_residents(p)
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
    n_pdf = min(cfg.pdf_residents, len(res.pages)) if pdf else 0
    pdf_bytes = pages = None
    if pdf:
        data, pages = render_pdf(p, cfg, res)
        _atomic_write(pdf_path, data)
        pdf_bytes = len(data)
        seconds["pdf"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    return ReportPaths(
        html=html_path,
        pdf=pdf_path if pdf else None,
        residents=len(res.pages),
        pdf_residents=n_pdf,
        html_bytes=len(html),
        pdf_bytes=pdf_bytes,
        pdf_pages=pages,
        seconds=seconds,
    )
