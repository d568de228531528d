"""The staff report's PDF, typeset by Typst (the ``typst`` wheel: no system tool).

Layout: ``templates/report.typ.j2`` (Jinja2 writes a Typst document, every value escaped as plain
text by :mod:`scoring.typeset`) and ``templates/report-style.typ`` (the look). Typst sees only the
IPAex Gothic font bundled by ``matplotlib-fontja`` (:func:`scoring.typeset.font_path`;
no system or Typst-embedded font, no fallback): characters the font lacks are replaced before
typesetting (:func:`pdf_safe`).

The PDF is made in parts: the summary (sections 1-5 and the index of residents), then runs of
``ReportConfig.pdf_chunk`` resident pages, each part one Typst compilation in a forked worker
process that exits after it (``ReportConfig.pdf_workers`` at a time, each forked by the calling
thread and dying with it, data.workers: :func:`_run_parts`). A compilation keeps every page it lays
out in memory (per resident page: bench/README.md), so parts bound the memory whatever the number of
pages, and Typst never runs in the calling process (a process that has typeset holds Typst's
threads, and a child it forks later would hang: see :func:`scoring.letters.render._run`). The parts
are joined with pypdf, bookmarks kept (sections, and each resident under section 5) and page numbers
continuous: every part is typeset knowing the number of its first page (one page per resident is
assumed; a part after a resident whose page overflowed is typeset again).

The joined PDF is not tagged (pypdf cannot join structure trees, and the tags would make it
about 14 times larger); it is made for printing; the HTML is the accessible document.
Deterministic: the document date is the scoring date, Typst writes no clock time, pypdf no
file identifier.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from data.workers import worker_initializer
from scoring.typeset import environment, font_cmap, fonts, page_count

from . import sections
from .inputs import Prepared, ReportConfig
from .residents import Tables

__all__ = ["PdfResult", "pdf_safe", "render_pdf", "part_source"]

TEMPLATES = Path(__file__).with_name("templates")
#: Replacements for characters the IPAex font lacks (anything else becomes 〓).
_PDF_CHARS = {"≥": ">=", "≤": "<=", "⩾": ">=", "⩽": "<=", "∼": "~"}


@lru_cache(maxsize=65536)
def _safe(text: str) -> str:
    cmap = font_cmap()
    table = {
        ord(c): _PDF_CHARS.get(c, "〓")
        for c in set(text)
        if ord(c) not in cmap and not c.isspace() and c.isprintable()
    }
    for k, v in list(table.items()):
        if any(ord(ch) not in cmap for ch in v):
            table[k] = "〓"
    return text.translate(table) if table else text


def pdf_safe(text: str) -> str:
    """``text`` with every character outside the IPAex font replaced (≥ → >=, else 〓)."""
    return text if text.isascii() else _safe(text)


@cache
def _template():
    env = environment(TEMPLATES, clean=pdf_safe)
    return env.get_template("report.typ.j2")


def _residents(t: Tables, a: int, b: int) -> list[dict]:
    """Template context of resident pages ``a``…``b - 1`` (plain texts and numbers)."""
    h, w, g = t.head, t.wf, t.wf_table
    ends = np.r_[t.wf_starts[1:], len(w["label"])] if len(t.wf_starts) else t.wf_starts
    first = np.searchsorted(g["resident"], a) if t.n else 0
    left = np.round(w["left"], 1).tolist() if t.n else []
    width = np.round(w["width"], 1).tolist() if t.n else []
    final_left = np.round(g["final_left"], 1).tolist() if t.n else []
    out = []
    for i in range(a, b):
        cols = np.flatnonzero(t.scenario_shown[i]).tolist()
        risk = [
            (
                bool(t.topic[i, j]),
                t.outcome_ja[j],
                t.risk[i, j],
                [t.scenario[i, j, k] for k in cols],
                t.best[i, j],
            )
            for j in range(len(t.outcome_ja))
        ]
        values = [
            (int(t.value_level[i, k]), *t.value_cells[i, k].tolist())
            for k in np.flatnonzero(t.value_shown[i])
        ]
        wfs = []
        while first < len(g["resident"]) and g["resident"][first] == i:
            rows = range(t.wf_starts[first], ends[first])
            wfs.append(
                {
                    "outcome": g["outcome_ja"][first],
                    "topic": bool(g["topic"][first]),
                    "risk": g["risk"][first],
                    "raw": g["raw"][first],
                    "final": g["final"][first],
                    "final_left": final_left[first],
                    "rows": [
                        (
                            bool(w["lifestyle"][r]),
                            w["label"][r],
                            w["contrib"][r],
                            w["kind"][r],
                            left[r],
                            width[r],
                        )
                        for r in rows
                    ],  # fmt: skip
                }
            )
            first += 1
        out.append(
            {"pseudonym": t.pseudonym[i]}
            | {k: v[i] for k, v in h.items()}
            | {
                "scenarios": [t.scenario_ja[k] for k in cols],
                "risk": risk,
                "value_rows": values,
                "notes": t.notes[i],
                "answers": t.answers[i],
                "waterfalls": wfs,
            }
        )
    return out


def _title(p: Prepared, cfg: ReportConfig) -> str:
    return f"{cfg.title} {p.fiscal_year}年度"


def part_source(
    p: Prepared,
    cfg: ReportConfig,
    t: Tables,
    residents: tuple[int, int],
    *,
    head: bool,
    first_page: int = 1,
) -> str:
    """Typst source of one part: the summary (``head``) and resident pages ``residents`` =
    (start, stop), its first page numbered ``first_page``."""
    shown = min(cfg.pdf_residents, t.n)
    ctx: dict = {
        "doc_title": _title(p, cfg),
        "title": cfg.title,
        "fiscal_year": p.fiscal_year,
        "scoring_date": p.scoring_date.isoformat(),
        "date": p.scoring_date,
        "first_page": first_page,
        "head": head,
        "residents": _residents(t, *residents),
    }
    if head:
        ix = t.index
        ctx |= {
            "cohort": sections.cohort(p, cfg, "IPAexGothic"),
            "model": sections.model(p, cfg),
            "calibration": sections.calibration(p, "IPAexGothic"),
            "drift": sections.drift(p),
            "residents_total": t.n,
            "residents_shown": shown,
            "capped": shown < t.n,
            "index_rows": [
                (
                    t.pseudonym[i],
                    ix["letter"][i],
                    ix["arm"][i],
                    ix["topic"][i],
                    ix["risk"][i],
                    ix["rank"][i],
                )
                for i in range(shown)
            ],
        }
    return _template().render(**ctx)


# ------------------------------------------------------------------------------ compiling


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


_STATE: tuple[Prepared, ReportConfig, Tables] | None = None


def _init(state: tuple[Prepared, ReportConfig, Tables]) -> None:
    global _STATE
    _STATE = state


def _compile(task: tuple[int, int, bool, int]) -> tuple[bytes, int, float]:
    """In a worker: (PDF, pages, MB of memory the part added) of one part."""
    import typst

    assert _STATE is not None
    p, cfg, t = _STATE
    a, b, head, first_page = task
    try:
        rss0 = _rss_mb()
    except OSError:  # pragma: no cover - no /proc
        rss0 = float("nan")
    source = part_source(p, cfg, t, (a, b), head=head, first_page=first_page)
    compiler = typst.Compiler(root=str(TEMPLATES), font_paths=fonts())
    try:
        pdf = compiler.compile(input=source.encode("utf-8"), pdf_tags=False)
    except typst.TypstError as e:  # a plain error crosses the process boundary
        raise RuntimeError(
            f"Typst could not typeset the report: {e.message}\n{e.diagnostic}"
        ) from None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pdf, page_count(pdf), peak - rss0


@dataclass(frozen=True)
class PdfResult:
    """The joined PDF and how it was made."""

    data: bytes
    pages: int
    residents: int
    parts: int
    #: The most memory one part's worker added (MB): what a compilation costs.
    part_mb: float
    join_seconds: float


def _part_process(conn, task: tuple[int, int, bool, int], state) -> None:
    """A worker process: one part, its result (or its error) sent back, then exit."""
    worker_initializer(_init)(state)  # dies with the process that forked it
    try:
        result = ("ok", _compile(task))
    except BaseException as e:  # sent as text: it crosses the process boundary
        result = ("error", str(e) or type(e).__name__)
    try:
        conn.send(result)
    finally:
        conn.close()


def _run_parts(
    state: tuple[Prepared, ReportConfig, Tables], tasks: list[tuple], workers: int
) -> list[tuple[bytes, int, float]]:
    """Each part in a fresh worker process (Typst's memory goes with it), ``workers`` at a
    time, in the order of ``tasks``.

    Every worker is forked by the calling thread, never by a pool's helper thread: a worker
    asks to die with the thread that forked it (data.workers, ``PR_SET_PDEATHSIG``), and the
    workers a ``multiprocessing.Pool(maxtasksperchild=1)`` starts from its handler thread were
    killed when that thread ended at the pool's close — one holding the pool's queue lock, so
    the pool hung for ever.
    """
    from multiprocessing.connection import wait

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    results: list = [None] * len(tasks)
    pending = list(enumerate(tasks))
    running: dict = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                i, task = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_part_process, args=(send, task, state), daemon=True)
                proc.start()
                send.close()
                running[recv] = (i, proc)
            for conn in wait(list(running)):
                i, proc = running.pop(conn)
                try:
                    kind, value = conn.recv()
                except EOFError:
                    proc.join()
                    kind, value = "error", f"a report PDF worker died (exit code {proc.exitcode})"
                conn.close()
                proc.join()
                if kind != "ok":
                    raise RuntimeError(value)
                results[i] = value
    finally:
        for conn, (_, proc) in running.items():
            proc.kill()
            proc.join()
            conn.close()
    return results


def render_pdf(p: Prepared, cfg: ReportConfig, t: Tables) -> PdfResult:
    """The PDF: the summary and the first ``cfg.pdf_residents`` resident pages."""
    n = min(cfg.pdf_residents, t.n)
    step = cfg.pdf_chunk
    runs = [(a, min(a + step, n)) for a in range(0, n, step)]
    workers = max(1, min(cfg.pdf_workers, len(runs)))
    # One worker process per part: Typst's memory goes with it. Workers die with this process
    # (data.workers): a kill -9 of the run leaves none behind.
    state = (p, cfg, t)
    [(head, head_pages, head_mb)] = _run_parts(state, [(0, 0, True, 1)], 1)
    # Every resident fills one page, so each part knows its first page number …
    starts = [head_pages + 1 + a for a, _ in runs]
    tasks = [(a, b, False, s) for (a, b), s in zip(runs, starts, strict=True)]
    done = _run_parts(state, tasks, workers)
    counts = [pages for _, pages, _ in done]
    # … unless a page overflowed: the parts after it are typeset again, numbered right.
    actual = list(np.cumsum([head_pages + 1, *counts[:-1]])) if counts else []
    redo = [k for k, (s, a) in enumerate(zip(starts, actual, strict=True)) if s != a]
    if redo:
        again = _run_parts(state, [(*tasks[k][:3], int(actual[k])) for k in redo], workers)
        for k, res in zip(redo, again, strict=True):
            done[k] = res
    parts = [head] + [pdf for pdf, _, _ in done]
    t0 = time.perf_counter()
    data, pages = _join(parts)
    part_mb = max([head_mb] + [mb for _, _, mb in done])
    return PdfResult(data, pages, n, len(parts), part_mb, time.perf_counter() - t0)


def _join(parts: list[bytes]) -> tuple[bytes, int]:
    """One PDF of ``parts`` in order: bookmarks of later parts (residents) go under the last
    top-level bookmark of the first (section 5)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, TextStringObject

    writer = PdfWriter()
    parent = None
    offset = 0
    for i, data in enumerate(parts):
        reader = PdfReader(io.BytesIO(data))
        writer.append(reader, import_outline=False)
        parent = _copy_outline(writer, reader, reader.outline, offset, None if i == 0 else parent)
        if i == 0:
            writer.add_metadata(dict(reader.metadata or {}))
        offset += len(reader.pages)
    writer._root_object[NameObject("/Lang")] = TextStringObject("ja")
    writer.page_mode = "/UseOutlines"
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue(), offset


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
