"""Benchmark the advice letters: N LetterRequest rows → PDFs, print files, manifest.

Usage: ``.venv/bin/python bench/bench_letters.py [--letters 400] [--workers 2] [--out DIR]``.
Requests are made from the test fixture's six residents (ja, やさしい日本語, en, see_doctor, …)
with seeded variation of values and risks. Prints letters/s for rendering (process pool) and
for the whole call (incl. validation, print-file merge and manifest), a resume rerun, and peak
RSS of this process and of the worker processes (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.letters import LetterConfig, render_letters
from tests.scoring.letter_helpers import requests


def make_requests(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = requests()
    df = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    df["pseudonym"] = [f"{i:016x}" for i in rng.choice(2**60, size=n, replace=False)]
    df["person_id"] = [f"12-{i:06d}" for i in range(n)]
    df["postal_code"] = [f"100-{rng.integers(0, 10000):04d}" for _ in range(n)]
    adv = df["letter_type"] == "advice"
    risk = rng.uniform(0.1, 0.45, size=n).round(3)
    df.loc[adv, "risk"] = risk[adv]
    df.loc[adv, "whatif_risk_before"] = risk[adv]
    df.loc[adv, "whatif_risk_after"] = (risk[adv] * rng.uniform(0.5, 0.9, size=adv.sum())).round(3)
    df["hba1c"] = np.where(adv, rng.uniform(5.2, 6.4, size=n).round(1), df["hba1c"])
    df["sbp"] = np.where(adv, rng.integers(110, 140, size=n), df["sbp"]).astype(float)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--letters", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    df = make_requests(args.letters)
    cfg = LetterConfig(issue_date=date(2025, 4, 1), workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "letters"
        m = render_letters(df, out, cfg)
        pages = int(m.frame["pages"].sum())
        print(
            f"letters             : {m.rendered} rendered ({pages} pages), {args.workers} workers"
        )
        print(
            f"render              : {m.render_seconds:.1f} s → {m.letters_per_second:.1f} letters/s"
        )
        cpu = m.render_cpu_seconds / max(m.rendered, 1)
        print(
            f"CPU per letter      : {cpu * 1000:.0f} ms → {args.workers / cpu:.1f} letters/s on "
            f"{args.workers} idle cores (other load on this machine does not count)"
        )
        print(
            f"whole call          : {m.total_seconds:.1f} s → {m.rendered / m.total_seconds:.1f} "
            "letters/s (validation, render, print merge, manifest)"
        )
        sizes = [(out / f).stat().st_size for f in m.frame["file"]]
        print(f"letter size         : {np.mean(sizes) / 1024:.0f} KiB mean; print files "
              f"{sum(p.stat().st_size for p in m.print_files) / 2**20:.1f} MiB")  # fmt: skip
        t0 = time.perf_counter()
        m2 = render_letters(df, out, cfg)
        print(f"resume (all done)   : {time.perf_counter() - t0:.1f} s, skipped {m2.skipped}")
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS            : {self_mb:.0f} MiB main, {child_mb:.0f} MiB largest worker")


if __name__ == "__main__":
    main()
