"""A kill -9 of ``kenshin score`` leaves no letter renderer, report-PDF worker, scoring-chunk
worker or booster compiler behind; nor a kill -9 of ``kenshin synth --format xml`` an archive
writer.

Each test starts a process that runs the real pool (its real initializer) with the work itself
replaced by a long sleep, kills that process with SIGKILL once its workers are up, and waits
for every child it had to be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.adversarial.processes import alive

REPO = Path(__file__).resolve().parents[2]

HANG = """
import os, sys, time

def hang(*args):
    print(os.getpid(), flush=True)
    time.sleep(600)  # the parent is killed meanwhile
"""

LETTERS = (
    HANG
    + """
from pathlib import Path
import scoring.letters.render as render
from tests.scoring.letter_helpers import config, requests

render._render_chunk = hang
render.render_letters(requests(), Path(sys.argv[1]), config(workers=2))
"""
)

REPORT = (
    HANG
    + """
from types import SimpleNamespace
import scoring.report.pdf as pdf

pdf._compile = hang
pdf.render_pdf(None, SimpleNamespace(pdf_residents=400, pdf_chunk=100, pdf_workers=2),
               SimpleNamespace(n=400))
"""
)

CHUNKS = (
    HANG
    + """
from kenshin.workers import ordered_map

list(ordered_map(hang, list(range(8)), workers=2))
"""
)

COMPILER = (
    HANG
    + """
from pathlib import Path
import numpy as np
import models.compiled as compiled

cache = Path(sys.argv[1])
compiled._texts = lambda engine: []
compiled._plan = lambda texts, cache: (
    [("a", None, 9, "t", cache / "a.so"), ("b", None, 8, "t", cache / "b.so")], {}
)
compiled._new_pass_manager = lambda: None
compiled._compile_one = hang
compiled.attach(None, cache, workers=2, check=np.zeros((1, 1)))
"""
)

ARCHIVES = (
    HANG
    + """
from pathlib import Path
import data.mhlw_xml.writer as writer
from data.synth import SynthConfig, generate

ward = generate(SynthConfig(residents=100, years=2, seed=1))
writer._write_archive = hang
writer.write_exchange_archive(ward.checkups, ward.contacts, Path(sys.argv[1]), workers=2)
"""
)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _kill_parent_and_wait(script: str, tmp_path: Path, workers: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path / "out")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip().isdigit()  # a worker is at work
        deadline = time.monotonic() + 30
        children = _children(proc.pid)
        while len(children) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
            children = _children(proc.pid)
        assert len(children) >= workers, children
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in children if alive(p)]
        for p in left:  # clean up before failing: these are the orphans the test is about
            os.kill(p, signal.SIGKILL)
        assert not left, f"workers outlived their parent: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_letter_renderers_die_with_the_run(tmp_path):
    _kill_parent_and_wait(LETTERS, tmp_path, workers=2)


def test_report_pdf_workers_die_with_the_run(tmp_path):
    _kill_parent_and_wait(REPORT, tmp_path, workers=1)  # the summary part is typeset alone


def test_scoring_chunk_workers_die_with_the_run(tmp_path):
    """kenshin.workers.ordered_map's forked workers (the score step's chunks) outlived a
    kill -9 of the run with parent 1, holding the model's memory."""
    _kill_parent_and_wait(CHUNKS, tmp_path, workers=2)


def test_booster_compilers_die_with_the_run(tmp_path):
    _kill_parent_and_wait(COMPILER, tmp_path, workers=2)


def test_xml_archive_writers_die_with_synth(tmp_path):
    _kill_parent_and_wait(ARCHIVES, tmp_path, workers=2)


def test_report_pdf_workers_are_forked_by_the_calling_thread(monkeypatch):
    """A worker dies with the *thread* that forked it (PR_SET_PDEATHSIG): workers a pool forks
    from its helper thread were killed when the pool closed, one holding the pool's queue lock,
    and the report hung. Each part's worker is forked by the thread that typesets the report,
    and a worker that dies is an error, never a hang."""
    import multiprocessing
    import threading
    from types import SimpleNamespace

    import scoring.report.pdf as pdf

    forked_by = []
    real = multiprocessing.get_context

    class Spy:
        def __init__(self, ctx):
            self.ctx = ctx

        def __getattr__(self, name):
            return getattr(self.ctx, name)

        def Process(self, *args, **kwargs):  # the context's own name
            forked_by.append(threading.current_thread())
            return self.ctx.Process(*args, **kwargs)

    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: Spy(real(method)))
    monkeypatch.setattr(pdf, "_compile", lambda task: os._exit(3))  # the worker dies
    state = (None, SimpleNamespace(pdf_workers=2), SimpleNamespace(n=0))
    with pytest.raises(RuntimeError, match=r"worker died \(exit code 3\)"):
        pdf._run_parts(state, [(0, 0, True, 1), (0, 1, False, 2)], 2)
    assert forked_by and all(t is threading.current_thread() for t in forked_by)
