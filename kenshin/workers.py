"""Chunks of a step computed in forked worker processes and handed back in order.

Scoring a chunk is mostly pandas and NumPy work that holds Python's GIL (features, what-if
edits, forecasts' tables); only LightGBM's predictions release it. Threads therefore leave
the second core mostly idle; worker processes use it (bench/README.md, "Scoring in worker
processes"). Each worker is a fork of the run: it inherits the model, the eligibility index
and the function to run, so nothing large is pickled on the way in; only each chunk's result
comes back. Every chunk is computed by the same call whichever process runs it, and results
are yielded in the items' order, so the outputs are byte-identical to computing them in the
run's own process (tests/scoring/test_score_workers.py).

``KENSHIN_SCORE_WORKERS``: how many worker processes (default the usable cores, at most 8;
``1``: everything in the run's own process, no fork).
"""

from __future__ import annotations

import ctypes
import itertools
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import models.train
from data.workers import die_with_parent
from models.train import usable_cores

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["SCORE_WORKERS", "WorkerDied", "chunk_bounds", "ordered_map"]


SCORE_WORKERS = max(1, int(os.environ.get("KENSHIN_SCORE_WORKERS") or min(8, usable_cores())))


class WorkerDied(RuntimeError):
    """A worker process ended without handing its chunk back (killed, or out of memory)."""


#: What the forked workers run, by task number: set before the pool forks, so the workers
#: inherit it and only an item's position crosses the pipe.
_TASKS: dict[int, tuple[Callable, Sequence, Callable[[], None] | None]] = {}
_NUMBERS = itertools.count()


def _in_worker(threads: int) -> None:
    """A worker's start: it dies with the run (:func:`data.workers.die_with_parent`: a
    ``kill -9`` of the run leaves no worker behind), its share of the prediction threads, and
    LightGBM's OpenMP held to one thread. GNU OpenMP's thread pool does not survive a fork: a
    parallel region with more than one thread in a forked child can wait forever for threads
    that are not there."""
    die_with_parent()
    models.train.PREDICT_THREADS = threads
    try:
        import lightgbm.basic

        lightgbm.basic._LIB.LGBM_SetMaxThreads(ctypes.c_int(1))
    except (AttributeError, OSError):  # pragma: no cover - a LightGBM without the call
        pass


def _run(task: int, position: int):
    fn, items, after_each = _TASKS[task]
    result = fn(items[position])
    if after_each is not None:
        after_each()
    return result


def chunk_bounds(n: int, chunk_size: int, workers: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of the chunks of ``n`` rows: ``chunk_size`` rows at most in all the
    workers at once (at most ``chunk_size // workers`` a chunk: the memory of the run stays
    that of ``chunk_size`` rows however many workers share them), as equal as they can be,
    and a multiple of ``workers`` of them (no worker idle while the last one finishes a lone
    chunk)."""
    if n <= 0:
        return []
    count = math.ceil(n / max(1, chunk_size // workers))
    count = min(n, math.ceil(count / workers) * workers)
    cuts = [n * i // count for i in range(count + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def ordered_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = SCORE_WORKERS,
    ahead: int | None = None,
    after_each: Callable[[], None] | None = None,
) -> Iterator[R]:
    """``fn(item)`` for each item, computed in ``workers`` forked processes, yielded in order.

    At most ``workers + ahead - 1`` items (``ahead`` defaults to ``workers``) are handed out
    beyond the one being consumed, which bounds the results waiting in this process. A worker
    calls ``after_each()`` after each item (e.g. to give memory back before the next). With
    one worker or one item everything runs in this process, without ``after_each``. An
    exception raised by ``fn`` is raised here, of the same type; a worker that dies raises
    :class:`WorkerDied`.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    workers = min(workers, len(items))
    ahead = max(1, ahead if ahead is not None else workers)
    task = next(_NUMBERS)
    _TASKS[task] = (fn, items, after_each)
    threads = max(1, models.train.PREDICT_THREADS // workers)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_in_worker,
        initargs=(threads,),
    )
    try:
        pending: deque = deque()
        upcoming = iter(range(len(items)))
        for position in itertools.islice(upcoming, workers + ahead - 1):
            pending.append(pool.submit(_run, task, position))
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool:
                raise WorkerDied(
                    "a worker process ended without handing its chunk back (killed, or out of "
                    "memory?); KENSHIN_SCORE_WORKERS=1 computes every chunk in the run's own "
                    "process"
                ) from None
            for position in itertools.islice(upcoming, 1):
                pending.append(pool.submit(_run, task, position))
            yield result
            del result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _TASKS.pop(task, None)
