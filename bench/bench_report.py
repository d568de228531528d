"""Benchmark the staff explanation report: N scored / M explained residents → HTML (+ PDF).

Usage: ``.venv/bin/python bench/bench_report.py [--scored 100000] [--explained 2000]
[--pdf-residents 200] [--no-pdf] [--out DIR]``.

Inputs are seeded synthetic frames that follow scoring.contracts (scoring.report.synthetic;
the selection is made by scoring.select). Prints the time of each step (validation, resident
pages, HTML, PDF), the HTML size (total and per resident), PDF pages/size/seconds, and the peak
RSS of this process (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--pdf-residents", type=int, default=200)
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
    cfg = ReportConfig(pdf_residents=args.pdf_residents)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report"
        r = build_report(inputs, out, pdf=not args.no_pdf, config=cfg)
        s = r.seconds
        print(f"validate inputs     : {s['validate']:.2f} s")
        print(f"resident pages      : {s['residents']:.2f} s ({r.residents:,} residents)")
        print(f"HTML render + write : {s['html']:.2f} s")
        print(
            f"HTML size           : {r.html_bytes / 1e6:.1f} MB "
            f"({r.html_bytes / max(r.residents, 1) / 1e3:.1f} kB per resident)"
        )
        if r.pdf is not None:
            print(
                f"PDF                 : {r.pdf_pages} pages, {r.pdf_residents} resident pages, "
                f"{r.pdf_bytes / 1e6:.1f} MB in {s['pdf']:.1f} s "
                f"({s['pdf'] / max(r.pdf_pages or 1, 1):.2f} s/page)"
            )
        print(f"total build_report  : {s['total']:.1f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS            : {rss:.0f} MB (of which synthetic inputs {rss0:.0f} MB)")


if __name__ == "__main__":
    main()
