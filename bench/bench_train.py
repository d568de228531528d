"""Training wall time and peak memory on a 100k-resident × 6-year synthetic store.

    .venv/bin/python bench/bench_train.py [--residents 100000] [--years 6]

Generation and ingest run in a child process; this process builds the features, then runs
models.run.train_and_evaluate (all outcomes + forecasts + baselines + evaluation with truth).
Target (bench/README.md): ≤ 5 min for all outcomes and forecasts, ≤ 4 GB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from wards import make_ward


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("KENSHIN_PSEUDONYM_KEY", "bench-key-0123456789")
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        make_ward(tmp, args.residents, args.years)
        print(f"synth + ingest (child process): {time.perf_counter() - t0:.1f} s")

        from data.pseudonym import load_key, pseudonymise
        from features import build_training_tables
        from models.run import train_and_evaluate

        t1 = time.perf_counter()
        features, labels = build_training_tables(tmp / "store")
        print(f"features + labels: {time.perf_counter() - t1:.1f} s, {len(features):,} index rows,"
              f" peak RSS so far {_peak_mb():,.0f} MB")  # fmt: skip
        truth = pd.read_csv(tmp / "bundle" / "truth.csv")
        truth["pseudonym"] = pseudonymise(truth["person_id"].astype(str), load_key())
        truth = truth.drop(columns="person_id")

        t2, c2 = time.perf_counter(), time.process_time()
        engine, report = train_and_evaluate(features, labels, truth=truth)
        wall, cpu = time.perf_counter() - t2, time.process_time() - c2
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(report.splits.pivot(index="outcome", columns="split", values="rows"))
    print(report.summary().round(3).to_string(index=False))
    print(report.forecasts.round(3).to_string(index=False))
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
    print(f"trees per outcome: {engine.best_iteration}")
    members = {o: engine.member(o) for o in engine.outcomes}
    print(f"member chosen on validation: {members}")
    print(f"steps: {steps}")
    print(f"training wall time (train_and_evaluate, all outcomes + forecasts): {wall:.1f} s"
          f" ({cpu:.1f} CPU-s)")  # fmt: skip
    print(f"peak RSS (features + training): {_peak_mb():,.0f} MB")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
