"""Ingest throughput and peak memory on a dirty 100k-resident × 6-year CSV bundle.

    .venv/bin/python bench/bench_ingest.py [--residents 100000] [--years 6]

Generation runs in a child process first, so the peak RSS printed is ingest's alone.
Target (bench/README.md): ≤ 30 s and ≤ 2 GB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from wards import make_ward


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("KENSHIN_PSEUDONYM_KEY", "bench-key-0123456789")
    with tempfile.TemporaryDirectory() as tmp:
        bundle, store = Path(tmp) / "bundle", Path(tmp) / "store"
        make_ward(Path(tmp), args.residents, args.years, fmt="csv", dirty=True, ingest=False)
        size = sum(p.stat().st_size for p in bundle.glob("*.csv")) / 1e6
        from data.ingest import ingest

        start = time.perf_counter()
        result = ingest(bundle, store)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows = sum(a.read for a in result.accounting.values())
        print(f"bundle: {args.residents:,} residents × {args.years} years, {size:.0f} MB of CSV")
        for name, a in result.accounting.items():
            print(
                f"  {name:<10} read {a.read:>9,}  loaded {a.loaded:>9,}  rejected {a.rejected:>6,}"
                f"  merged {a.merged_duplicates:>5,}  adds up: {a.balanced}"
            )
        print(f"ingest wall time: {wall:.1f} s  ({rows / wall:,.0f} rows/s over all tables)")
        print(f"ingest peak RSS: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
