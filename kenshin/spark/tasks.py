"""Spark tasks whose results reach the driver as each task ends, not when the last one does.

:func:`stream_partitions` runs every partition of a small RDD (the work items: chunks of
letters, ranges of residents) as its own single-partition job, as many jobs at once as Spark
has cores, and hands back each partition's results as soon as its job ends, in completion
order or in partition order. The driver then writes, journals and counts while the executors
go on. Not ``toLocalIterator``: it runs one job per partition, one after the other (two with
prefetch), so the partitions would not run in parallel. Not one ``collect()``: its results
come back only when every task has ended, and the driver's part would wait for the slowest.

A failed task cancels the others (one job group) and its exception is raised on the driver;
:func:`task_error` finds a kenshin error type in it (bad input stays bad input, exit 2).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["stream_partitions", "task_error"]

R = TypeVar("R")


def stream_partitions(
    spark: SparkSession,
    items: Sequence[Any],
    slices: int,
    fn: Callable[[Iterable[Any]], Iterator[R]],
    description: str,
    ordered: bool = False,
) -> Iterator[R]:
    """``fn`` over each of ``slices`` partitions of ``items`` (on the executors), yielding
    what it yields: partition by partition as their jobs end (``ordered``: in partition
    order, a later partition's results held until the ones before have come)."""
    if not len(items):
        return
    sc = spark.sparkContext
    cores = max(1, int(sc.defaultParallelism))
    slices = max(1, min(int(slices), len(items)))
    rdd = sc.parallelize(items, slices)
    group = f"kenshin-{uuid.uuid4().hex[:12]}"

    def run(partition: int) -> list[R]:
        # Job group and description are properties of the submitting (JVM) thread.
        sc.setJobGroup(group, description, interruptOnCancel=True)
        return sc.runJob(rdd, fn, [partition])

    # Twice as many jobs at once as Spark has cores, each a task, queued in partition order:
    # when a task ends the next one is already waiting in Spark's scheduler (with only as many
    # jobs as cores, a core waited ≈ 0.4 s for the driver to submit the next, each time), and
    # each task's results come back as it ends.
    pool = ThreadPoolExecutor(max_workers=min(slices, 2 * cores), thread_name_prefix=group)
    futures = [pool.submit(run, p) for p in range(slices)]
    try:
        if ordered:
            for future in futures:
                yield from future.result()
        else:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
    except BaseException:  # a failed task, or the caller stopped
        for future in futures:
            future.cancel()
        sc.cancelJobGroup(group)
        raise
    finally:
        pool.shutdown(wait=True)


def task_error(e: BaseException, *kinds: type[Exception]) -> Exception | None:
    """The first of ``kinds`` (by class name) a failed task raised, rebuilt with its message
    (which names pseudonyms, never contact details), or None."""
    for kind in kinds:
        m = re.search(rf"\b{kind.__name__}: (.+)", str(e))
        if m:
            return kind(m.group(1).strip())
    return None
