"""Framingham teaching dataset: the engine against its logistic-regression baseline.

    .venv/bin/python bench/framingham.py [--csv PATH] [--seed 0]

Adapts ``frmgham2.csv`` to the checkup contract (data.framingham), ingests it into a temporary
store, builds features and labels and trains next-exam hypertension and diabetes models with
selection on validation. Prints test AUCs of the engine, LightGBM alone, logistic regression
and the points score, and the member chosen per outcome.

Licence: the NHLBI teaching dataset is "inappropriate for publication purposes" — these
figures are for validating the pipeline inside the project only.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", type=Path, default=None, help="frmgham2.csv (default: shared)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import pandas as pd

    from data.framingham import default_path
    from models.framingham import framingham_benchmark

    pd.set_option("display.width", 200)
    t0 = time.perf_counter()
    res = framingham_benchmark(args.csv, seed=args.seed)
    print(f"Framingham teaching dataset ({args.csv or default_path()}), not for publication")
    print(res.splits.pivot(index="outcome", columns="split", values=["rows", "events"]))
    print("validation AUC of the candidates:")
    print(res.selection.round(4).to_string(index=False))
    print("test AUC:")
    print(res.table().round(4).to_string())
    print(f"wall {time.perf_counter() - t0:.1f} s, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
