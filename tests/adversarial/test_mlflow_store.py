"""The MLflow store under faults: a work folder that cannot be written is
refused before any work; a run left RUNNING by a killed process is marked FAILED by the next
command, and a run interrupted by SIGTERM / SIGINT ends KILLED."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kenshin.cli import app
from models import registry
from tests.conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
as_root = hasattr(os, "geteuid") and os.geteuid() == 0


def _never(*_args, **_kwargs):
    raise AssertionError("the command started working although it cannot write its results")


@pytest.fixture
def no_work(monkeypatch):
    """Every command's working stage fails the test if it is reached."""
    import kenshin.annual
    import kenshin.commands

    for name in ("run_train", "run_promote", "run_synth", "run_ingest"):
        monkeypatch.setattr(kenshin.commands, name, _never)
    monkeypatch.setattr(kenshin.annual, "run_scoring_command", _never)


def _args(command: str, workdir: Path, tmp: Path) -> list[str]:
    store = str(tmp / "store")
    return {
        "train": ["train", "--store", store, "--workdir", str(workdir)],
        "promote": ["promote", "--workdir", str(workdir)],
        "score": ["score", "--store", store, "--year", "2025", "--out", str(tmp / "o"),
                  "--workdir", str(workdir)],
        "demo": ["demo", "--workdir", str(workdir)],
    }[command]  # fmt: skip


@pytest.mark.parametrize("command", ["train", "promote", "score", "demo"])
def test_mlflow_work_folder_under_a_file_is_exit_2_before_any_work(tmp_path, no_work, command):
    (tmp_path / "somefile").write_text("not a folder\n")
    res = runner.invoke(app, _args(command, tmp_path / "somefile" / "sub", tmp_path))
    assert_one_line_error(res, "somefile/sub", "cannot write the work folder")
    assert "Traceback" not in res.output + res.stderr


def test_mlflow_artifact_folder_that_is_a_file_is_exit_2(tmp_path, no_work):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mlartifacts").write_text("")
    res = runner.invoke(app, _args("train", tmp_path / "w", tmp_path))
    assert_one_line_error(res, "mlartifacts", "cannot write the MLflow artifact folder")


@pytest.mark.skipif(as_root, reason="root writes into read-only folders")
@pytest.mark.parametrize("what", ["workdir", "database"])
def test_mlflow_read_only_work_folder_or_store_is_exit_2(tmp_path, no_work, what):
    work = tmp_path / "w"
    work.mkdir()
    if what == "database":
        (work / "mlflow.db").write_bytes(b"")
        (work / "mlflow.db").chmod(0o400)
    else:
        work.chmod(0o500)
    try:
        res = runner.invoke(app, _args("train", work, tmp_path))
    finally:
        work.chmod(0o700)
    expected = "cannot write the MLflow tracking store" if what == "database" else "cannot write"
    assert_one_line_error(res, expected)


def _can_mount_read_only(folder: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}'"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(not (as_root and shutil.which("unshare")), reason="needs root and unshare")
def test_mlflow_read_only_mount_is_exit_2_even_for_root(tmp_path):
    """Root may write anywhere but a read-only file system: kenshin train stops first."""
    work = tmp_path / "w"
    work.mkdir()
    if not _can_mount_read_only(work):
        pytest.skip("cannot make a private read-only mount here")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = (
        f"mount --bind '{work}' '{work}' && mount -o remount,bind,ro '{work}' && exec "
        f"'{sys.executable}' -m kenshin train --store '{tmp_path / 'store'}' --workdir '{work}'"
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write the work folder (Read-only file system)" in lines[0]


def test_mlflow_check_writable_tries_a_file_rather_than_trusting_os_access(tmp_path, monkeypatch):
    """``os.access`` says yes to root; the check must not rely on it."""
    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    (tmp_path / "f").write_text("")
    from kenshin.errors import BadInputError

    with pytest.raises(BadInputError, match="cannot write the work folder"):
        registry.check_writable(tmp_path / "f" / "w")
    registry.check_writable(tmp_path / "ok" / "w")  # a fine folder passes, nothing is created
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    (tmp_path / "w").mkdir()
    registry.check_writable(tmp_path / "w")
    assert not list((tmp_path / "w").iterdir())


# --------------------------------------------------------------------------- stale runs

_VICTIM = """
import signal, sys, time
# Ctrl-C as in a terminal: a test runner's worker may start its children with SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
from models.registry import configure_tracking, _own_run
exp = configure_tracking(sys.argv[1])
with _own_run(exp, "victim") as run:
    print(run.info.run_id, flush=True)
    time.sleep(600)
"""


def _start_victim(workdir: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _VICTIM, str(workdir)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise AssertionError(proc.stderr.read()[-3000:])
    return proc, line


def _status(workdir: Path, run_id: str):
    from mlflow import MlflowClient

    uri = registry.tracking_uri(workdir)
    return MlflowClient(tracking_uri=uri).get_run(run_id)


def test_mlflow_run_of_a_killed_process_is_marked_failed_by_the_next_command(tmp_path):
    work = tmp_path / "w"
    proc, run_id = _start_victim(work)
    try:
        run = _status(work, run_id)
        assert run.info.status == "RUNNING"
        assert run.data.tags["kenshin.pid"] == str(proc.pid)
        assert run.data.tags["kenshin.host"] == socket.gethostname()
        assert registry.sweep_stale_runs(work) == []  # alive: left alone
        assert _status(work, run_id).info.status == "RUNNING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert _status(work, run_id).info.status == "RUNNING"  # kill -9 leaves it so
    res = runner.invoke(app, ["promote", "--workdir", str(work)])  # the next kenshin command
    assert res.exit_code == 2  # nothing to promote, but the store was tidied first
    assert f"MLflow run {run_id} (victim) was left RUNNING by process {proc.pid}" in res.stderr
    run = _status(work, run_id)
    assert run.info.status == "FAILED"
    assert "ended without closing the run" in run.data.tags["kenshin.ended"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_mlflow_run_interrupted_by_a_signal_ends_killed(tmp_path, sig):
    work = tmp_path / "w"
    proc, run_id = _start_victim(work)
    proc.send_signal(getattr(signal, sig))
    try:
        code = proc.wait(60)
    finally:
        proc.kill()
    if sig == "SIGTERM":
        assert code == 128 + signal.SIGTERM, proc.stderr.read()[-2000:]
    run = _status(work, run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["kenshin.ended"] == "interrupted by a signal"
    assert "Traceback" not in proc.stderr.read() or sig == "SIGINT"


def test_mlflow_process_gone_judges_only_this_hosts_processes():
    host = socket.gethostname()
    me = registry._process_tags()
    assert registry._process_gone(me) is False  # this very process
    assert registry._process_gone({**me, "kenshin.host": host + "-other"}) is False
    assert registry._process_gone({**me, "kenshin.pid": "not a pid"}) is False
    # A pid that no process has (beyond pid_max on Linux).
    assert registry._process_gone({"kenshin.pid": str(2**22 + 1), "kenshin.host": host})
    if "kenshin.process" in me:  # Linux: the pid reused by another process, or a reboot
        assert registry._process_gone({**me, "kenshin.process": me["kenshin.process"] + "0"})
        start = me["kenshin.process"].split("/")[1]
        assert registry._process_gone({**me, "kenshin.process": f"other-boot/{start}"})


# --------------------------------------------------------------------------- a full disk

_DISK_FULL = """
import sqlite3, sys
from sqlalchemy.engine import default

import kenshin.commands
from models import registry

real = default.DefaultDialect.do_execute


def do_execute(self, cursor, statement, parameters, context=None):
    if statement.startswith("UPDATE runs SET status"):  # the run being marked FAILED
        raise sqlite3.OperationalError("database or disk is full")
    return real(self, cursor, statement, parameters, context)


def run_train(store, workdir, *args, **kwargs):  # the artifacts filled the disk
    exp = registry.configure_tracking(workdir)
    default.DefaultDialect.do_execute = do_execute
    with registry._own_run(exp, "train"):
        raise OSError(28, "No space left on device")


kenshin.commands.run_train = run_train
from kenshin.cli import app

app(["train", "--store", sys.argv[1], "--workdir", sys.argv[2]])
"""


def test_mlflow_store_failing_while_the_run_is_marked_failed_prints_one_line(tmp_path):
    """A full disk: the run's artifacts fail, then "database or disk is full" while MLflow
    marks the run FAILED; MLflow's own logger printed that error with three tracebacks on
    stderr. Only the command's one line may remain (the traceback is in the error log)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tmp_path / "store"), str(tmp_path / "w")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("internal error: ") and "database or disk is full" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    log = Path(lines[0].split("details in ", 1)[1].split("; please report", 1)[0])
    text = log.read_text()
    assert "No space left on device" in text and "database or disk is full" in text
