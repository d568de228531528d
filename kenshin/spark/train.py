"""Training on Spark: the independent fits of an engine as Spark tasks.

``kenshin train --engine spark`` trains as the pandas engine does, except that the independent
fits of :func:`models.train.train_engine` — one per outcome (LightGBM + calibrator + logistic
baseline + member choice, or the small-ward fallback), one per forecast item (three quantile
boosters + the conformal offset), the same for the outcomes of each glucose pattern engine —
run as Spark tasks, one task each, in one job: ``sc.parallelize(tasks, len(tasks))``. Each
task is a normal single-node fit on its own training set with the same LightGBM parameters
(``num_threads`` = ``n_jobs``, 1 by default; deterministic, row-wise), so the boosters are
the pandas engine's, model string for model string. The rows are prepared on the driver and
shipped with the task (cloudpickle); the results come back pickled (LightGBM boosters as
their model string, which holds every number exactly) and the engines are assembled, anchored
and evaluated on the driver as today.

One task holds its outcome's training and validation matrix (≈ 0.8 KB per index row:
≈ 100 float64 features) plus LightGBM's binned copy of it; the driver holds every task's rows
at once while they are shipped (README §Running on Spark).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SparkRunner"]


class SparkRunner:
    """A :class:`models.train.Runner`: ``fn`` of each item as its own Spark task, the results
    in the items' order."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def map(self, fn: Callable[[Any], Any], items: list) -> list:
        items = list(items)
        if not items:
            return []
        sc = self.spark.sparkContext
        sc.setJobDescription(f"kenshin train: {len(items)} independent fits")
        return sc.parallelize(items, len(items)).map(fn).collect()
