"""Annual scoring on Spark: ranges of residents scored by the executors with the pandas code.

What runs where:

* **Driver**: eligibility (:func:`scoring.score.eligible_residents` over the index candidates,
  one small row per resident) and, afterwards, everything that is a global decision or a
  single output file: the scored ranges are read back one at a time, in order (never held
  whole), and appended to the outputs; the selection runs on the small per-resident table
  (see :func:`scoring.selection.select`: ranking, budget and the seeded stratified control arm
  are global, so they run once, on the driver, over the same table the pandas engine uses —
  same seed, same residents).
* **Executors**: everything else of a resident, by exactly the functions the pandas engine's
  worker processes run: :func:`kenshin.annual.score_range` (reading the residents' checkups
  from the store, features, risk, value forecasts, what-if, drift bin counts, then the
  chunk's finish: stamps, the scores contract, its CSV rows, its letter decisions and counts)
  and, after the selection, :func:`kenshin.annual.explain_range` (SHAP of the residents in an
  arm). The eligible residents, sorted by pseudonym, are cut into contiguous ranges of at most
  ``residents_per_group`` (as equal as possible, a multiple of Spark's cores in number), one
  Spark task each (:func:`kenshin.spark.tasks.stream_partitions`): a range's results reach
  the driver as soon as its task ends, so the driver writes while the executors score.
* **The store** is read by each task as it is, with the pandas engine's own reader
  (:func:`data.store.read_checkup_history`): the store keeps each year's checkups sorted by
  pseudonym in row groups, so a range of residents decodes only the row groups its range
  meets, and no checkup crosses the network or a shuffle. On a cluster the store must be on
  storage every executor reads (a shared mount), as must ``scratch``.
* **The model**: loaded once on the driver from the registry (the feature schema checked
  there), shipped as a broadcast and unpickled once per executor Python worker (cached in the
  worker for every later range): executors never need to reach the MLflow tracking store.

A range's index rows reach its task through a Parquet file in ``scratch`` (one row group per
range), its results come back as a file the task writes there (owner-only, written to a temp
name and renamed, so a retried task rewrites the same file): only a row count per range goes
through Spark itself. A scored range's CSV text and contract-checked scores are tens of MB; a
1M-resident run's explanations through the JVM's Parquet writer once stopped the Spark
context. Results do not depend on how residents are cut into ranges (scoring and SHAP are per
resident: tests/spark), so both engines give the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kenshin.spark.session import SparkSettings
from kenshin.spark.tasks import stream_partitions, task_error

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["spark_explain_chunks", "spark_score_chunks"]

#: Engines unpickled in this (executor) Python worker, by broadcast id.
_ENGINES: dict[str, tuple] = {}


def _engine(token: str, broadcast) -> tuple:
    """(engine, feature config), unpickled once per Python worker (``token``: this run's)."""
    if token not in _ENGINES:
        import models.train

        # Spark runs one task per core: a task predicting on more threads would oversubscribe
        # them (the results are the same whatever the thread count).
        models.train.PREDICT_THREADS = 1
        _ENGINES.clear()  # one run's engine at a time
        model, compiled = pickle.loads(broadcast.value)
        if compiled is not None:  # the driver's compiled boosters, from the shared cache
            from models.compiled import attach

            # an executor that does not see the driver's folder compiles them there once;
            # one that cannot write it predicts with LightGBM: the same bits either way
            with contextlib.suppress(OSError):
                attach(model[0], Path(compiled))
        _ENGINES[token] = model
    return _ENGINES[token]


def spark_score_chunks(
    spark: SparkSession,
    store: Path,
    fiscal_year: int,
    index: pd.DataFrame,
    engine,
    config,
    feature_config,
    scratch: Path,
    settings: SparkSettings | None = None,
    finish: Callable[[pd.DataFrame, Any], object] | None = None,
) -> Iterator:
    """What :func:`kenshin.annual.score_chunks` yields, computed on Spark: (scores, drift bin
    counts), or ``finish`` of them, per chunk of at most ``config.chunk_size`` residents of
    ``index`` (the eligible residents, sorted by pseudonym), in its order. ``scratch``: a
    folder the executors write into (on a cluster: shared storage); emptied at the end."""
    from kenshin.annual import score_range

    store, fy, cs = Path(store), int(fiscal_year), config.chunk_size

    def score(eng, fcfg, rows: pd.DataFrame) -> list:
        return [
            score_range(
                store, fy, rows.iloc[s : s + cs].reset_index(drop=True), eng, config, fcfg, finish
            )  # fmt: skip
            for s in range(0, len(rows), cs)
        ]

    yield from _on_ranges(
        spark, index, (engine, feature_config), score, Path(scratch), settings or SparkSettings(),
        f"kenshin score: {len(index):,} residents",
    )  # fmt: skip


def spark_explain_chunks(
    spark: SparkSession,
    store: Path,
    fiscal_year: int,
    who: pd.DataFrame,
    engine,
    config,
    feature_config,
    scratch: Path,
    settings: SparkSettings | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(explanations, factors) per chunk of at most ``config.explain_chunk_size`` residents
    of ``who`` (index rows sorted by pseudonym), in its order: what
    :func:`kenshin.annual.explain_chunks` yields, each chunk explained on an executor."""
    from kenshin.annual import explain_range

    store, fy, cs = Path(store), int(fiscal_year), config.explain_chunk_size

    def explain(eng, fcfg, rows: pd.DataFrame) -> list:
        return [
            explain_range(
                store, fy, rows.iloc[s : s + cs].reset_index(drop=True), eng, config, fcfg
            )  # fmt: skip
            for s in range(0, len(rows), cs)
        ]

    # An explanations chunk's rows are ordered by outcome, then resident: ranges of whole
    # chunks of the pandas engine keep the file's row order the same.
    yield from _on_ranges(
        spark, who, (engine, feature_config), explain, Path(scratch), settings or SparkSettings(),
        f"kenshin score: explain {len(who):,} residents", aligned=cs,
    )  # fmt: skip


def _on_ranges(
    spark: SparkSession,
    rows: pd.DataFrame,
    model: tuple,
    work: Callable[[Any, Any, pd.DataFrame], list],
    scratch: Path,
    settings: SparkSettings,
    description: str,
    aligned: int | None = None,
) -> Iterator:
    """``work(engine, feature config, range's rows)`` on the executors for contiguous ranges
    of ``rows``, yielding the items of each range's list, ranges in order. Ranges: at most
    ``settings.residents_per_group`` rows, as equal as possible and a multiple of Spark's
    cores in number; or, with ``aligned``, whole blocks of ``aligned`` rows (at least one)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kenshin.errors import BadInputError
    from kenshin.workers import chunk_bounds

    n = len(rows)
    if not n:
        return
    cores = max(1, int(spark.sparkContext.defaultParallelism))
    if aligned:
        size = max(1, settings.residents_per_group // aligned) * aligned
        bounds = [(a, min(a + size, n)) for a in range(0, n, size)]
    else:
        bounds = chunk_bounds(n, settings.residents_per_group * cores, cores)
    token = uuid.uuid4().hex
    folder = scratch.resolve() / f"spark-{token[:8]}"
    folder.mkdir(parents=True, mode=0o700)
    index_file = folder / "ranges.parquet"
    shipped = None
    try:
        schema = pa.Schema.from_pandas(rows, preserve_index=False)
        with pq.ParquetWriter(index_file, schema) as writer:
            for a, b in bounds:  # one row group per range, read back by its number
                part = pa.Table.from_pandas(rows.iloc[a:b], schema=schema, preserve_index=False)
                writer.write_table(part, row_group_size=b - a)
        if pq.ParquetFile(index_file).num_row_groups != len(bounds):
            raise RuntimeError("ranges larger than a Parquet row group (residents_per_group)")
        from models.compiled import attached_cache

        compiled = attached_cache(model[0])
        shipped = spark.sparkContext.broadcast(
            pickle.dumps((model, None if compiled is None else str(compiled)))
        )

        def run(ranges) -> Iterator[int]:
            for g in ranges:
                eng, fcfg = _engine(token, shipped)
                chunk = pq.ParquetFile(index_file).read_row_group(g).to_pandas()
                done = work(eng, fcfg, chunk)
                path = folder / f"range-{g:06d}.pickle"
                tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                    pickle.dump(done, f, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(tmp, path)
                yield len(chunk)

        got = 0
        ranges = list(range(len(bounds)))
        counts = stream_partitions(spark, ranges, len(ranges), run, description, ordered=True)
        for g, count in enumerate(counts):
            path = folder / f"range-{g:06d}.pickle"
            with open(path, "rb") as f:
                done = pickle.load(f)
            path.unlink()
            got += count
            yield from done
            del done
        if got != n:
            raise RuntimeError(f"Spark handled {got:,} of {n:,} residents")
    except Exception as e:
        err = task_error(e, BadInputError)  # a damaged store read by a task: still bad input
        if err is not None:
            raise err from None
        raise
    finally:
        if shipped is not None:
            shipped.unpersist()
        shutil.rmtree(folder, ignore_errors=True)
