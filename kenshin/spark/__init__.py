"""``--engine spark``: the same annual run on Apache Spark, with the same code and results.

pyspark is an optional extra (``kenshin[spark]``); nothing here imports it before it is used,
and a missing pyspark or Java is bad input (exit 2, one line: :mod:`kenshin.spark.session`).

What runs where (README §Running on Spark):

* :mod:`kenshin.spark.ingest` — XML ingest: the batches of exchange-archive documents parsed
  by Spark tasks (the same reader, the same order); the rest of the ingest on the driver.
* :mod:`kenshin.spark.features` — features and labels: the store read by Spark as it is,
  grouped by hash bucket of the pseudonym, ``applyInPandas`` calling the pandas feature code.
* :mod:`kenshin.spark.train` — training: the independent fits of an engine (each outcome,
  each forecast item, each pattern engine's outcome) as Spark tasks, one normal single-node
  LightGBM fit each, through the runner seam of :func:`models.train.train_engine`.
* :mod:`kenshin.spark.score` — scoring: ranges of eligible residents as Spark tasks, each
  running what a pandas worker process runs on a chunk (:func:`kenshin.annual.score_range`,
  reading its residents' checkups from the store), the model broadcast once; the finished
  ranges are streamed back to the driver (:mod:`kenshin.spark.tasks`), which writes the
  outputs and runs the selection, explanations, letters and report as the pandas engine does.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from kenshin.spark.session import ENGINES, SparkSettings, load_spark_settings

__all__ = ["ENGINES", "SparkSettings", "load_spark_settings", "open_session", "start_session"]


def start_session(master: str | None = None, config: Path | None = None) -> Future:
    """:func:`open_session` and its executors' Python workers started in a background thread
    (the future's result is the session): a run starts Spark while the driver loads the model
    and finds who is eligible, single-threaded work that leaves the other cores idle. Each
    Python worker imports the scoring code once (≈ 6 s on 2 cores, on its first task);
    workers are reused for every later task."""
    from concurrent.futures import ThreadPoolExecutor

    from kenshin.spark.tasks import stream_partitions

    def start():
        session, _settings = open_session(master, config)
        cores = max(1, int(session.sparkContext.defaultParallelism))
        list(stream_partitions(session, list(range(cores)), cores, _import_scoring,
                               "kenshin: start the Python workers"))  # fmt: skip
        return session

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kenshin-spark-start")
    try:
        return pool.submit(start)
    finally:
        pool.shutdown(wait=False)


def _import_scoring(part):
    """On an executor: import what every scoring task runs (once per Python worker)."""
    import kenshin.annual  # noqa: F401
    import scoring.score  # noqa: F401

    for _ in part:
        yield None


def open_session(master: str | None = None, config: Path | None = None):
    """(SparkSession, settings) for ``--spark-master`` / ``--spark-config``; exit 2 when
    pyspark or Java is missing or the config is bad (checked before Spark starts)."""
    from kenshin.spark.session import check_prerequisites, get_session

    settings = load_spark_settings(config)
    check_prerequisites()
    return get_session(settings, master), settings
