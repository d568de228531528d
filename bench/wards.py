"""Synthetic wards for the benchmarks, generated in a child process (its memory is not ours).

Not a benchmark itself (``./run bench`` runs ``bench_*.py`` only).
"""

from __future__ import annotations

import resource
import subprocess
import sys
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
