"""Benchmark the staff explanation report: N scored / M explained residents → HTML (+ PDF).

Usage: ``.venv/bin/python bench/bench_report.py [--scored 100000] [--explained 2000]
[--pdf-residents 2000] [--pdf-chunk 100] [--pdf-workers 2] [--no-pdf] [--out DIR]`` (PDF
defaults: those of ``ReportConfig``).

Inputs are seeded synthetic frames that follow scoring.contracts (scoring.report.synthetic;
the selection is made by scoring.selection). Prints the time of each step (validation, resident
pages, HTML, PDF), the HTML size (total and per resident), and the PDF figures: pages, resident
pages, bytes, seconds (per resident page, and CPU seconds of the Typst workers per resident
page), the parts typeset and the most memory one part's worker added; then the peak RSS of this
process and of the largest worker (``ru_maxrss``; a forked worker's figure includes the pages it
shares with this process).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.report import ReportConfig, build_report
from scoring.report.synthetic import make_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scored", type=int, default=100_000)
    ap.add_argument("--explained", type=int, default=2_000)
    ap.add_argument("--pdf-residents", type=int, default=ReportConfig.pdf_residents)
    ap.add_argument("--pdf-chunk", type=int, default=ReportConfig.pdf_chunk)
    ap.add_argument("--pdf-workers", type=int, default=ReportConfig.pdf_workers)
    ap.add_argument("--no-pdf", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    inputs = make_inputs(args.scored, args.explained, seed=1)
    t_in = time.perf_counter() - t0
    n_expl = inputs.explanations["pseudonym"].nunique()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"synthetic inputs    : {args.scored:,} scored, {n_expl:,} explained "
          f"({len(inputs.explanations):,} SHAP rows) in {t_in:.1f} s, peak RSS {rss0:.0f} MB")  # fmt: skip
    cfg = ReportConfig(
        pdf_residents=args.pdf_residents, pdf_chunk=args.pdf_chunk, pdf_workers=args.pdf_workers
    )
    print(f"load average        : {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report"
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = build_report(inputs, out, pdf=not args.no_pdf, config=cfg)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s = r.seconds
        print(f"validate inputs     : {s['validate']:.2f} s")
        print(f"resident pages      : {s['residents']:.2f} s ({r.residents:,} residents)")
        print(f"HTML render + write : {s['html']:.2f} s")
        print(
            f"HTML size           : {r.html_bytes / 1e6:.1f} MB "
            f"({r.html_bytes / max(r.residents, 1) / 1e3:.1f} kB per resident)"
        )
        if r.pdf is not None:
            k = max(r.pdf_residents, 1)
            cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
            print(
                f"PDF                 : {r.pdf_pages:,} pages ({r.pdf_residents:,} resident pages), "
                f"{r.pdf_bytes / 1e6:.1f} MB ({r.pdf_bytes / r.pdf_pages / 1e3:.1f} kB per page) "
                f"in {s['pdf']:.1f} s (joining the parts {s['pdf_join']:.1f} s)"
            )
            print(
                f"PDF per resident pg : {s['pdf'] / k * 1000:.0f} ms wall, "
                f"{cpu / k * 1000:.0f} ms CPU in the workers "
                f"({cfg.pdf_workers} worker(s), {r.pdf_parts} parts of ≤ {cfg.pdf_chunk})"
            )
            print(f"PDF worker memory   : at most {r.pdf_part_mb:.0f} MB added by one part")
        print(f"total build_report  : {s['total']:.1f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS            : {rss:.0f} MB this process (of which synthetic inputs "
          f"{rss0:.0f} MB); largest PDF worker {kids:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
