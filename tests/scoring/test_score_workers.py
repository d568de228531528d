"""kenshin.workers: chunks computed in forked processes, handed back in order."""

from __future__ import annotations

import os
import signal
import time

import pytest

from kenshin.workers import WorkerDied, chunk_bounds, ordered_map


@pytest.mark.parametrize(
    ("n", "size", "workers"),
    [(0, 10, 2), (1, 10, 2), (7, 10, 1), (124_557, 50_000, 2), (1_037_975, 50_000, 2),
     (1_200, 250, 3), (5, 1, 8), (100, 7, 4)],
)  # fmt: skip
def test_chunks_cover_every_row_once_within_the_size(n, size, workers):
    bounds = chunk_bounds(n, size, workers)
    rows = [r for start, stop in bounds for r in range(start, stop)]
    assert rows == list(range(n))
    assert all(0 < stop - start <= max(1, size // workers) for start, stop in bounds)
    if n >= workers:  # a multiple of the workers, unless there are fewer rows than workers
        assert len(bounds) % workers == 0 or len(bounds) == n
    if bounds:  # as equal as they can be
        lengths = [stop - start for start, stop in bounds]
        assert max(lengths) - min(lengths) <= 1


def test_results_come_back_in_order_from_other_processes():
    items = list(range(23))

    def slow_square(x: int) -> tuple[int, int]:
        time.sleep(0.02 * (x % 3))  # later items often finish first
        return x * x, os.getpid()

    got = list(ordered_map(slow_square, items, workers=3))
    assert [v for v, _ in got] == [x * x for x in items]
    assert os.getpid() not in {p for _, p in got}
    assert len({p for _, p in got}) > 1


def test_one_worker_runs_everything_here():
    got = list(ordered_map(lambda x: (x, os.getpid()), [1, 2, 3], workers=1))
    assert got == [(1, os.getpid()), (2, os.getpid()), (3, os.getpid())]


def test_at_most_workers_plus_ahead_items_are_handed_out_beyond_the_consumed(tmp_path):
    started = tmp_path / "started"
    started.mkdir()

    def mark(x: int) -> int:
        (started / str(x)).touch()
        return x

    seen = []
    for x in ordered_map(mark, list(range(20)), workers=2, ahead=1):
        time.sleep(0.2)  # the workers would run ahead if nothing held them
        seen.append((x, len(list(started.iterdir()))))
    # consumed x: items 0..x handed out, plus at most workers + ahead - 1 = 2 more
    assert all(count <= x + 1 + 2 for x, count in seen), seen


class _Refused(ValueError):
    pass


def test_an_error_in_a_worker_is_raised_here_with_its_type():
    def failing(x: int) -> int:
        if x == 5:
            raise _Refused(f"item {x} refused")
        return x

    got = []
    with pytest.raises(_Refused, match="item 5 refused"):
        for x in ordered_map(failing, list(range(10)), workers=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_a_worker_that_dies_is_a_clear_error_not_a_hang():
    def dying(x: int) -> int:
        if x == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
        return x

    with pytest.raises(WorkerDied, match="worker process ended"):
        list(ordered_map(dying, list(range(8)), workers=2))
