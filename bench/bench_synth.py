"""Benchmark the synthetic ward generator: 100k residents × 6 fiscal years, then the CSV bundle.

Usage: ``.venv/bin/python bench/bench_synth.py [--residents N] [--years Y] [--seed S]``.
Prints generation wall/CPU time, checkup rows per second, CSV writing time and peak RSS
(``resource.getrusage(...).ru_maxrss``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.synth import SynthConfig, generate, write_bundle
from data.synth.model import calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--residents", type=int, default=100_000)
    ap.add_argument("--years", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = SynthConfig(residents=args.residents, years=args.years, seed=args.seed)

    t0, c0 = time.perf_counter(), time.process_time()
    calibration()
    t_cal = time.perf_counter() - t0
    bundle = generate(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = len(bundle.checkups)
    print(f"config              : {cfg}")
    print(f"calibration (pilot) : {t_cal:.1f} s (once per process, included below)")
    print(f"generate            : {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"checkups            : {rows:,} rows  → {rows / wall:,.0f} rows/s")
    print(
        f"other tables        : enrollment {len(bundle.enrollment):,}, contacts "
        f"{len(bundle.contacts):,}, truth {len(bundle.truth):,}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        paths = write_bundle(bundle, Path(tmp), fmt="csv")
        t_csv = time.perf_counter() - t1
        size = sum(p.stat().st_size for p in paths.values())
    print(f"write CSV bundle    : {t_csv:.1f} s ({size / 1e6:.1f} MB)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS            : {rss:,.0f} MB")


if __name__ == "__main__":
    main()
