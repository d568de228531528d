"""Worker processes that never outlive the command that started them.

A ``kill -9`` of the parent skips every clean-up, so pools of forked workers (XML parsing,
letters, the report PDF) would live on holding memory. Each worker asks the kernel to send it
SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``); elsewhere a watcher thread notices
the parent is gone.

Trap: the kernel ties the signal to the *thread* that forked the worker. A pool that forks
replacement workers from a helper thread (``multiprocessing.Pool(maxtasksperchild=…)``) gets
workers killed when that thread ends; fork workers from the calling thread (as
``ProcessPoolExecutor`` with a fork context does, all at start).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Call first thing in a worker process: it ends when the process that forked it ends."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def worker_initializer(then: Callable[..., None] | None = None) -> Callable[..., None]:
    """An initializer for a process pool: :func:`die_with_parent`, then ``then(*args)``."""
    return _Init(then)


class _Init:
    """Picklable (for spawn) initializer chaining :func:`die_with_parent` and another one."""

    def __init__(self, then: Callable[..., None] | None) -> None:
        self.then = then

    def __call__(self, *args) -> None:
        die_with_parent()
        if self.then is not None:
            self.then(*args)
