"""Letters on Spark: the PDFs typeset and written by the executors, the rest on the driver.

``--engine spark`` renders the letters where the work is spread: :func:`render_letters
<scoring.letters.render.render_letters>` runs as with the pandas engine (checks, plan and
reuse, journal, print files, manifest: on the driver, the same code), with a
:class:`SparkLetterRunner` as its runner. The chunks of letters to render become Spark tasks;
each executor Python worker builds the renderer once (:func:`scoring.letters.render
._init_worker`: catalogue, templates, one Typst compiler and the font), cached for every later
task of the run, and writes each letter's PDF itself, atomically and owner-only (0600, into the
0700 letters folder the driver made), exactly as a worker of the local pool does; only the
manifest fields (pseudonym, pages, sha256, notes …) come back. Same code, same inputs: the
same bytes as the pandas engine.

Streamed (:func:`kenshin.spark.tasks.stream_partitions`): each task's results reach the
driver as soon as it finishes, so the journal and the progress bar follow the letters.

Typst never runs on the driver. Executor Python workers are forked by PySpark's daemon (a
process of its own, started by the JVM, that never typesets) or started by the JVM; a worker
that has typeset is reused for later tasks as it is, never forked again. So the rule of
:class:`scoring.letters.render.ProcessRunner` (no fork of a process that has typeset) holds.

On a cluster the letters folder (``--out``) must be on storage every executor writes to and
the driver reads (a shared mount), and the executors must run as the driver's user: the
folder is the driver's and owner-only (0700), each letter is owned by the user that wrote it
(0600). Keep speculative execution off (Spark's default) for this job: two attempts of a task
would render the same letters twice (same bytes, wasted work). Every executor needs kenshin
and its letter dependencies installed (``typst``, ``matplotlib-fontja``: README §Running on
Spark).
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kenshin.spark.tasks import stream_partitions, task_error

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from scoring.letters.render import Chunk

__all__ = ["SparkLetterRunner", "letter_runner"]

#: Chunks per Spark task at most, once there are enough letters (a task's results reach the
#: driver, and its journal, when the task ends: 4 chunks are at most 64 letters).
CHUNKS_PER_TASK = 4
#: Tasks per core at least (load balance across executors).
TASKS_PER_CORE = 4
#: The run whose renderer this executor Python worker holds (one run at a time).
_READY: dict[str, bool] = {}


def _render_partition(
    token: str,
    fn: Callable[[Chunk], list[dict]],
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    chunks: Iterable[Chunk],
) -> Iterator[list[dict]]:
    """On an executor: the renderer built once per Python worker and run, then ``fn`` on each
    chunk of this partition."""
    if token not in _READY:
        initializer(*initargs)
        _READY.clear()
        _READY[token] = True
    for chunk in chunks:
        yield fn(chunk)


class SparkLetterRunner:
    """A :class:`scoring.letters.render.LetterRunner`: the chunks of letters as Spark tasks
    (see the module docstring); ``workers`` is the session's default parallelism."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    @property
    def workers(self) -> int:
        return max(1, int(self.spark.sparkContext.defaultParallelism))

    def map(
        self,
        fn: Callable[[Chunk], list[dict]],
        chunks: list[Chunk],
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
    ) -> Iterator[list[dict]]:
        chunks = list(chunks)
        workers = self.workers
        n_slices = min(
            len(chunks), max(TASKS_PER_CORE * workers, math.ceil(len(chunks) / CHUNKS_PER_TASK))
        )
        render = functools.partial(_render_partition, uuid.uuid4().hex, fn, initializer, initargs)
        letters = sum(len(c) for c in chunks)
        description = f"kenshin letters: {letters:,} letters in {n_slices:,} tasks"
        try:
            yield from stream_partitions(self.spark, chunks, n_slices, render, description)
        except Exception as e:  # a failed task, or a journal write failed
            from scoring.letters.render import LetterRenderError

            # as the pandas engine raises it (its message names the pseudonym, never a name)
            err = task_error(e, LetterRenderError)
            if err is not None:
                raise err from None
            raise


def letter_runner(master: str | None = None, config: Path | None = None) -> SparkLetterRunner:
    """The runner of ``render_letters`` for ``--engine spark`` (``--spark-master``,
    ``--spark-config``): the run's session (the active one when scoring opened it)."""
    from kenshin.spark import open_session

    session, _settings = open_session(master, config)
    return SparkLetterRunner(session)
