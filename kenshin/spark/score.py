"""Annual scoring on Spark: the pandas scoring code per group of residents, results streamed back.

What runs where:

* **Driver**: eligibility (:func:`scoring.score.eligible_residents` over the index candidates,
  one small row per resident) and, afterwards, everything that is a global decision or a
  single output file: the scores table is streamed back group by group (never held whole) and
  written, checked and counted chunk by chunk exactly as the pandas engine does; the selection
  runs on the small per-resident table (see :func:`scoring.selection.select`: ranking, budget
  and the seeded stratified control arm are global, so they run once, on the driver, over the
  same table the pandas engine uses — same seed, same residents).
* **Executors**: features, risk, value forecasts, what-if and the drift bin counts; after the
  selection, the SHAP explanations of the residents in an arm (:func:`spark_explain_chunks`,
  the same ranges of residents through :func:`scoring.score.explain_chunk`). The eligible
  residents, sorted by pseudonym, are cut into contiguous ranges of ``residents_per_group``
  (one Spark group each); each resident's stored checkups up to the scoring year are read by
  Spark from the store as it is and joined to its range; ``cogroup(...).applyInPandas`` hands
  each range's checkups and index rows to exactly :func:`scoring.score.score_chunk`, the
  function the pandas engine calls per chunk (features, what-if rebuilt from the history, the
  engine's predictions). Its results do not depend on how residents are chunked, so the two
  engines give the same numbers, and Spark's partitioning cannot change them.
* **The model**: loaded once on the driver from the registry (the feature schema checked
  there), shipped as a broadcast and unpickled once per executor Python worker (cached in the
  worker for every later group): executors never need to reach the MLflow tracking store.

Not ``mapInPandas`` over feature rows: the what-if scenarios rebuild each resident's edited
history into features, so the scoring code needs the resident's checkups, not only the index
feature row; a range of residents with their checkups is a ``cogroup``.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.declarations import DECLARATIONS
from kenshin.spark.features import BUCKET, _stored, checkups_frame
from kenshin.spark.frames import from_spark, spark_schema, stored_dtypes, to_spark, to_stored
from kenshin.spark.session import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["spark_explain_chunks", "spark_score_chunks"]

DRIFT = "_kenshin_drift"
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
        _ENGINES[token] = pickle.loads(broadcast.value)
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
) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray]]]:
    """(scores, drift bin counts) in chunks of ``config.chunk_size`` residents, in ``index``
    order: the same chunks :func:`kenshin.annual.score_chunks` yields, computed on Spark.

    ``index``: the eligible residents (eligibility's index, sorted by pseudonym). ``scratch``:
    a folder Spark's executors write the scored groups into (on a cluster: shared storage);
    removed when the chunks have been read.
    """
    from data.store import read_checkup_history
    from kenshin.annual import store_readable
    from scoring.contracts import INDEX_VALUE_COLUMNS
    from scoring.score import score_chunk

    settings = settings or SparkSettings()
    store, fy = Path(store), int(fiscal_year)
    index = index.sort_values("pseudonym", ignore_index=True)
    n = len(index)
    # Whole chunks per group, each scored on its own: score_chunk sees exactly the batches of
    # the pandas engine (the same rows in each call), so even the last bit of every float is
    # the same, whatever the group size or Spark's partitioning.
    cs = config.chunk_size
    per_group = max(1, round(settings.residents_per_group / cs)) * cs
    groups = max(1, math.ceil(n / per_group))
    ref = getattr(engine, "feature_reference", None)

    # Output types from the same code on a few residents, on the driver.
    sample_index = index.iloc[: min(n, 20)].reset_index(drop=True)
    with store_readable(store):
        sample_history = read_checkup_history(store, sample_index["pseudonym"], fy)
    sample, _ = score_chunk(engine, sample_history, sample_index, config, feature_config)
    # The index checkup's coded values are numpy ints in a chunk without missing values and
    # objects (<NA>) in one with: they cross as their nullable feature dtype and are turned
    # back per chunk the same way (``Series.to_numpy``).
    declared = {d.name: d.dtype for d in DECLARATIONS}
    coded = {c: declared[c] for c in INDEX_VALUE_COLUMNS if declared.get(c, "float64")[0] == "I"}
    ddl, dtypes = spark_schema(sample.astype(coded))
    ddl += f", `{BUCKET}` bigint, `{DRIFT}` array<double>"
    names = list(ref.names) if ref is not None else []
    sizes = [len(ref.edges[name]) + 2 for name in names]
    grouped = _ranges(spark, store, fy, index, per_group)
    index_dtypes, checkup_dtypes = grouped.index_dtypes, grouped.checkup_dtypes
    shipped = spark.sparkContext.broadcast(pickle.dumps((engine, feature_config)))
    columns = list(dtypes)
    token = uuid.uuid4().hex

    def score_group(key, hist: pd.DataFrame, idx: pd.DataFrame) -> pd.DataFrame:
        if idx.empty:
            return pd.DataFrame(columns=[*columns, BUCKET, DRIFT])
        eng, fcfg = _engine(token, shipped)
        checkups = _stored(hist, checkup_dtypes, store)
        chunk = to_stored(idx, index_dtypes).sort_values("pseudonym", ignore_index=True)
        parts, drift = [], [None] * len(chunk)
        counts: dict[str, np.ndarray] = {}
        for start in range(0, len(chunk), cs):  # the pandas engine's chunks
            sub = chunk.iloc[start : start + cs].reset_index(drop=True)
            rows = checkups["pseudonym"].isin(sub["pseudonym"]).to_numpy()
            scores, X = score_chunk(eng, checkups[rows].reset_index(drop=True), sub, config, fcfg)
            parts.append(scores[columns].astype(coded))
            for name, c in (eng.feature_reference.counts(X) if names else {}).items():
                counts[name] = counts[name] + c if name in counts else c
        out = to_spark(pd.concat(parts, ignore_index=True))
        out[BUCKET] = int(key[0])
        if names:
            drift[0] = np.concatenate([counts[name] for name in names]).tolist()
        out[DRIFT] = drift
        return out

    folder = Path(scratch).resolve() / f"spark-scores-{uuid.uuid4().hex[:8]}"
    try:
        scored = grouped.apply(score_group, ddl)
        scored.write.partitionBy(BUCKET).parquet(folder.as_uri())
        yield from _read_back(
            folder, groups, dtypes, names, sizes, config.chunk_size, n, list(coded)
        )
    finally:
        shipped.unpersist()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class _Ranges:
    """Residents cut into contiguous ranges (one Spark group each), with their checkups."""

    history: DataFrame  # stored checkups up to the scoring year, with the range of the person
    index: DataFrame  # the residents' index rows, with their range
    index_dtypes: dict[str, str]
    checkup_dtypes: dict[str, str]

    def apply(self, fn, ddl: str) -> DataFrame:
        """``fn(key, checkups, index rows)`` per range: one pandas call per range."""
        return (
            self.history.groupBy(BUCKET).cogroup(self.index.groupBy(BUCKET)).applyInPandas(fn, ddl)
        )


def _ranges(
    spark: SparkSession, store: Path, fiscal_year: int, index: pd.DataFrame, per_group: int
) -> _Ranges:
    """``index`` (sorted by pseudonym) in ranges of ``per_group`` residents."""
    from pyspark.sql import functions as F

    n = len(index)
    index_ddl, index_dtypes = spark_schema(index)
    keyed = to_spark(index).assign(**{BUCKET: np.arange(n, dtype="int64") // per_group})
    index_df = spark.createDataFrame(keyed, f"{index_ddl}, `{BUCKET}` bigint")
    # Its own frame (not a select of index_df): the cogroup joins both again.
    ranges = spark.createDataFrame(
        keyed[["pseudonym", BUCKET]], f"pseudonym string, `{BUCKET}` bigint"
    )
    history = checkups_frame(spark, store, fiscal_year).join(
        F.broadcast(ranges) if n <= 1_000_000 else ranges, on="pseudonym"
    )
    return _Ranges(history, index_df, index_dtypes, stored_dtypes(store))


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
    """(explanations, factors) per range of ``who`` (index rows sorted by pseudonym): the
    chunks of :func:`kenshin.annual.explain_chunks` (``config.explain_chunk_size`` residents),
    each explained on an executor by exactly :func:`scoring.score.explain_chunk`.

    Each range's tables are written by the executor itself as Parquet files into ``scratch``
    (shared storage on a cluster; written to a temp name and renamed, so a retried task
    rewrites the same file), not returned through Spark: a resident's explanation is ≈ 90
    rows, and a range's millions of rows through the JVM's Parquet writer stopped the Spark
    context of a 1M-resident run (every see-doctor resident explained). Only a row count per
    range comes back; the driver reads the files in order.
    """
    from scoring.score import explain_chunk

    settings = settings or SparkSettings()
    store, fy = Path(store), int(fiscal_year)
    n, cs, top = len(who), config.explain_chunk_size, config.explain_top
    per_group = max(1, round(settings.residents_per_group / cs)) * cs
    groups = max(1, math.ceil(n / per_group))
    grouped = _ranges(spark, store, fy, who, per_group)
    index_dtypes, checkup_dtypes = grouped.index_dtypes, grouped.checkup_dtypes
    shipped = spark.sparkContext.broadcast(pickle.dumps((engine, feature_config)))
    token = uuid.uuid4().hex
    folder = Path(scratch).resolve() / f"spark-explain-{token[:8]}"
    folder.mkdir(parents=True)

    def files(g: int) -> tuple[Path, Path]:
        return folder / f"explanations-{g:06d}.parquet", folder / f"factors-{g:06d}.parquet"

    def explain_group(key, hist: pd.DataFrame, idx: pd.DataFrame) -> pd.DataFrame:
        g = int(key[0])
        if idx.empty:
            return pd.DataFrame({BUCKET: [g], "rows": [0]})
        eng, fcfg = _engine(token, shipped)
        checkups = _stored(hist, checkup_dtypes, store)
        chunk = to_stored(idx, index_dtypes).sort_values("pseudonym", ignore_index=True)
        parts, factor_parts = [], []
        for start in range(0, len(chunk), cs):  # the pandas engine's chunks
            sub = chunk.iloc[start : start + cs].reset_index(drop=True)
            rows = checkups["pseudonym"].isin(sub["pseudonym"]).to_numpy()
            expl, factors = explain_chunk(
                eng, checkups[rows].reset_index(drop=True), sub, fcfg, top=top
            )
            parts.append(expl)
            factor_parts.append(factors)
        for frame, path in zip(
            (pd.concat(parts, ignore_index=True), pd.concat(factor_parts, ignore_index=True)),
            files(g),
            strict=True,
        ):
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
            frame.to_parquet(tmp, index=False)
            tmp.chmod(0o600)
            os.replace(tmp, path)
        return pd.DataFrame({BUCKET: [g], "rows": [len(chunk)]})

    try:
        spark.sparkContext.setJobDescription(f"kenshin score: explain {n:,} residents")
        done = grouped.apply(explain_group, f"`{BUCKET}` bigint, rows bigint").collect()
        explained = sum(int(r["rows"]) for r in done)
        if explained != n:
            raise RuntimeError(f"Spark explained {explained:,} of {n:,} residents")
        for g in range(groups):
            expl_path, factors_path = files(g)
            if expl_path.exists():
                yield pd.read_parquet(expl_path), pd.read_parquet(factors_path)
    finally:
        shipped.unpersist()
        shutil.rmtree(folder, ignore_errors=True)


def _read_back(
    folder: Path,
    groups: int,
    dtypes: dict[str, str],
    names: list[str],
    sizes: list[int],
    chunk_size: int,
    n: int,
    coded: list[str],
) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray]]]:
    """The scored groups in order, re-cut into chunks of ``chunk_size`` (one group at a time
    in memory); each group's drift counts go with the next chunk yielded."""
    import pyarrow.parquet as pq

    buffer: list[pd.DataFrame] = []
    buffered = 0
    counts: dict[str, np.ndarray] = {}
    read = 0

    def add(flat) -> None:
        at = 0
        for name, size in zip(names, sizes, strict=True):
            part = np.asarray(flat[at : at + size], dtype="float64")
            counts[name] = counts[name] + part if name in counts else part
            at += size

    def take(rows: int) -> pd.DataFrame:
        nonlocal buffer, buffered
        whole = pd.concat(buffer, ignore_index=True) if len(buffer) > 1 else buffer[0]
        head, rest = whole.iloc[:rows].reset_index(drop=True), whole.iloc[rows:]
        buffer, buffered = ([rest] if len(rest) else []), len(rest)
        for c in coded:
            head[c] = head[c].to_numpy()
        return head

    for g in range(groups):
        part = folder / f"{BUCKET}={g}"
        if not part.exists():
            continue
        frame = pq.read_table(part).to_pandas()
        for flat in frame[DRIFT].dropna():
            add(flat)
        frame = from_spark(frame, dtypes).sort_values("pseudonym", ignore_index=True)
        buffer.append(frame)
        buffered += len(frame)
        read += len(frame)
        while buffered >= chunk_size or (buffered and read == n and g == groups - 1):
            chunk = take(min(chunk_size, buffered))
            yield chunk, counts
            counts = {}
    if buffered:
        yield take(buffered), counts
    if read != n:
        raise RuntimeError(f"Spark scored {read:,} of {n:,} eligible residents")
