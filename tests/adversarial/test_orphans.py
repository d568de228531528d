"""Workers die with their parent: a kill -9 of a command leaves no worker behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.adversarial.processes import alive

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from data.workers import die_with_parent

    def pid(_):
        time.sleep(0.2)
        return os.getpid()

    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork"),
                             initializer=die_with_parent) as pool:
        pids = set(pool.map(pid, range(4)))
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(600)  # killed here
    """
)


def test_pool_workers_exit_when_their_parent_is_killed():
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers and all(alive(p) for p in workers)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
