"""XML ingest on Spark: the exchange archives' documents parsed by Spark tasks.

``kenshin ingest --engine spark`` runs the ingest as the pandas engine does, except that the
batches of XML documents (members of the exchange archives, or loose files) are parsed by
Spark tasks instead of this machine's worker processes: the same lxml reader
(:func:`data.mhlw_xml.reader._parse_batch`) on the same batches, the results in the same
order, so the rejects, the accounting and the store are byte-identical. Validation,
normalisation, pseudonymisation and writing the store stay on the driver (they need every
row: duplicates across files, person-level conflicts). The bundle must be on storage the
executors see (a shared mount), as must the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["spark_batch_map"]

#: Batches per Spark task at most (a batch is data.mhlw_xml.reader.BATCH documents).
BATCHES_PER_TASK = 4


def spark_batch_map(spark: SparkSession) -> Callable[[Callable, list], list]:
    """A ``mapper(fn, batches)`` for :func:`data.mhlw_xml.reader.batch_map`: ``fn`` of each
    batch on Spark, the results in the batches' order."""

    def mapper(fn: Callable, batches: list) -> list:
        slices = max(1, -(-len(batches) // BATCHES_PER_TASK))
        return spark.sparkContext.parallelize(batches, slices).map(fn).collect()

    return mapper
