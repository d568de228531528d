"""Synthetic wards for the benchmarks, generated in a child process (its memory is not ours).

Not a benchmark itself (``./run bench`` runs ``bench_*.py`` only).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def make_ward(
    folder: Path,
    residents: int,
    years: int = 6,
    seed: int = 0,
    *,
    fmt: str = "parquet",
    dirty: bool = False,
    ingest: bool = True,
    last_fiscal_year: int = 2025,
    env: dict | None = None,
) -> float:
    """``folder/bundle`` (a dirty CSV export when ``dirty``) and, if ``ingest``, ``folder/store``.

    Returns the peak RSS in MB of the child processes so far.
    """
    bundle, store = Path(folder) / "bundle", Path(folder) / "store"
    code = (
        "from pathlib import Path; from kenshin.commands import run_synth; "
        f"run_synth(Path({str(bundle)!r}), {residents}, {years}, {seed}, {last_fiscal_year}, "
        f"{fmt!r}, dirty={dirty})"
    )
    if ingest:
        code += (
            f"; from data.ingest import ingest; ingest(Path({str(bundle)!r}), Path({str(store)!r}))"
        )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@dataclass
class TrainedWard:
    """A synthetic ward with a training run: its engine and what judging a what-if needs."""

    workdir: Path
    engine: object
    config: object  # models.train_config.TrainConfig
    checkups: object  # pandas.DataFrame
    labels: object  # pandas.DataFrame
    truth: object  # pandas.DataFrame


def trained_ward(description: str) -> TrainedWard:
    """The ward named on the command line (``--workdir W --store W/store --truth
    W/bundle/truth.csv [--model URI]``), for the what-if benchmarks."""
    from data.store import read_checkups
    from features import build_training_tables
    from kenshin.annual import load_model
    from kenshin.commands import read_truth
    from models.train_config import load_train_config

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--model", default="models:/kenshin-risk@challenger")
    args = parser.parse_args()
    config = load_train_config(None)
    _, labels = build_training_tables(args.store, config.tables)
    truth = read_truth(args.truth, args.store)
    return TrainedWard(args.workdir, load_model(args.model, args.workdir).engine, config,
                       read_checkups(args.store), labels, truth)  # fmt: skip
