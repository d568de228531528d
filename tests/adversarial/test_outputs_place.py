"""Where ``kenshin score`` writes: checked, locked and on one file system, before any work.

* An output folder in a read-only place was exit 3 (``OSError: Read-only file system``) after
  the model was loaded; ``kenshin synth --out`` there too. Both are exit 2 with one line now,
  before any work (a probe file, since ``os.access`` says yes to root on a read-only mount).
* An output folder that is a mount point (another file system than its parent) did all the
  work, then failed with ``Invalid cross-device link`` moving the staging folder beside it into
  it: the staging folder goes inside it then.
* Two runs into one output folder at once both failed with exit 3 (each removed the other's
  staging files): the second is exit 2 naming the first's process.
* A hostile ``--out`` (ESC sequences, BEL, ``[/]``) reached the terminal raw in the summary.
* A path option that is a symbolic link loop was exit 3 (``RuntimeError: Symlink loop``).

Hostile names and mounts are made at test time (mounts in a private mount namespace).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kenshin.cli import app
from scoring.outputs import AnnualOutputs
from tests.conftest import (
    CHAMPION,
    TEST_KEY,
    assert_one_line_error,
    serve_as_champion,
    small_scoring_ward,
)

ROOT = Path(__file__).resolve().parents[2]
FY = 2025
MODEL = CHAMPION
runner = CliRunner()
as_root = hasattr(os, "geteuid") and os.geteuid() == 0

#: What must never reach the terminal: C0 (but newline), DEL, C1.
FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


# ------------------------------------------------------------------------ a ward to score


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    """A small ward to score and its engine (:func:`tests.conftest.small_scoring_ward`)."""
    return small_scoring_ward(tmp_path_factory.mktemp("outputs_place"), FY, ("hba1c",), 10)


@pytest.fixture
def champion(ward, monkeypatch):
    """``models:/kenshin-risk@champion`` is the ward's engine."""
    serve_as_champion(monkeypatch, ward[1])
    return ward[0] / "store"


def _score(store: Path, out: Path, tmp: Path, *extra: str):
    args = ["score", "--store", str(store), "--year", str(FY), "--out", str(out),
            "--workdir", str(tmp / "work"), "--no-report", *extra]  # fmt: skip
    return runner.invoke(app, args)


def _never(*_args, **_kwargs):
    raise AssertionError("the run started working although it cannot write its results")


# ------------------------------------------------------------------ a hostile --out path


def test_score_prints_a_hostile_out_path_without_control_characters(champion, tmp_path):
    out = tmp_path / "lt" / "o[/]ut\x1b[31m\x07[bold]\x1b]0;pwn\x07"
    res = _score(champion, out, tmp_path)
    assert res.exit_code == 0, (res.output, res.stderr)
    for stream in (res.stdout, res.stderr):
        bad = FORBIDDEN.findall(stream.replace("\n", " "))
        assert not bad, f"control characters reached the terminal: {bad!r}"
    assert "o[/]ut" in res.stdout and "annual run → " in res.stdout
    assert "run.json" in res.stdout and "letters" in res.stdout
    assert AnnualOutputs(out).run.is_file()


# ------------------------------------------------------------- --out in a read-only place


def test_score_into_a_read_only_place_is_exit_2_before_any_work(tmp_path, monkeypatch):
    """The probe fails as a read-only file system does (EROFS), whoever runs the command."""
    import kenshin.annual

    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(ro):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(kenshin.annual, "read_store_manifest", _never)
    monkeypatch.setattr(kenshin.annual, "load_model", _never)
    for out in (ro / "out", ro):  # a new folder in it, or the folder itself
        res = _score(tmp_path / "store", out, tmp_path)
        assert_one_line_error(res, f"--out {out}: cannot write there (Read-only file system)")
    res = runner.invoke(app, ["synth", "--out", str(ro / "bundle"), "--residents", "100"])
    assert_one_line_error(res, "--out", "cannot write there (Read-only file system)")
    assert list(ro.iterdir()) == []


def _private_mounts(shell: str, tmp: Path) -> subprocess.CompletedProcess:
    """``shell`` in a private mount namespace (mounts vanish with it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KENSHIN_PSEUDONYM_KEY": TEST_KEY}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell], cwd=tmp, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


needs_mounts = pytest.mark.skipif(
    not (as_root and shutil.which("unshare")), reason="needs root and unshare"
)


@needs_mounts
@pytest.mark.parametrize("command", ["score", "synth"])
def test_out_on_a_read_only_mount_is_exit_2_even_for_root(tmp_path, command):
    ro = tmp_path / "ro"
    (ro / "existing").mkdir(parents=True)
    mount = f"mount --bind '{ro}' '{ro}' && mount -o remount,bind,ro '{ro}'"
    if _private_mounts(f"{mount} && true", tmp_path).returncode:
        pytest.skip("cannot make a private read-only mount here")
    for out in (ro / "new", ro / "existing"):
        kenshin = f"'{sys.executable}' -m kenshin"
        cmd = (
            f"{kenshin} score --store '{tmp_path / 'store'}' --year {FY} --out '{out}' "
            f"--workdir '{tmp_path / 'work'}'"
            if command == "score"
            else f"{kenshin} synth --out '{out}' --residents 100"
        )
        proc = _private_mounts(f"{mount} && exec {cmd}", tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr[-3000:]
        assert f"--out {out}: cannot write there (Read-only file system)" in lines[0]


# ------------------------------------------------------- --out on another file system


_MOUNT_POINT = """
import os, sys
from pathlib import Path
from kenshin.annual import INSIDE_STAGING, output_place, staging_folder, swap_in

out = Path(sys.argv[1])
place = output_place(out)
assert place.stage == out / INSIDE_STAGING, place  # on the mount, not beside it
assert place.lock == out.parent / f".{out.name}.lock", place
stage = staging_folder(out, stage=place.stage)
assert os.stat(stage).st_dev == os.stat(out).st_dev != os.stat(out.parent).st_dev
(stage / "run.json").write_text("{}")
(stage / "letters").mkdir()
(stage / "letters" / "a.pdf").write_text("pdf")
swap_in(stage, out, {"run.json", "letters"})  # renames: EXDEV if it crossed devices
assert (out / "run.json").read_text() == "{}" and (out / "letters" / "a.pdf").is_file()
assert sorted(p.name for p in out.iterdir()) == ["letters", "run.json"]
print("swapped in", flush=True)
"""


@needs_mounts
def test_out_that_is_a_mount_point_stages_on_its_own_file_system(tmp_path):
    out = tmp_path / "mnt"
    out.mkdir()
    shell = (
        f"mount -t tmpfs -o size=4m tmpfs '{out}' && exec '{sys.executable}' -c "
        f"'{_MOUNT_POINT}' '{out}'"
    )
    proc = _private_mounts(shell, tmp_path)
    if proc.returncode and "mount" in proc.stderr and "swapped" not in proc.stdout:
        if "Traceback" not in proc.stderr:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0 and "swapped in" in proc.stdout, proc.stderr[-3000:]


def test_a_run_into_a_mount_point_stages_inside_it_and_leaves_nothing(
    champion, tmp_path, monkeypatch
):
    """The whole run with ``--out`` on another device (the device check says so): staged
    inside the output folder, moved into place, the staging folder gone."""
    import kenshin.paths

    out = tmp_path / "mnt"
    out.mkdir()
    (out / "keep.txt").write_text("not kenshin's")
    monkeypatch.setattr(kenshin.paths, "same_device", lambda a, b: False)
    staged = []
    import kenshin.annual as annual

    real = annual.staging_folder

    def spy(*args, **kwargs):
        staged.append(real(*args, **kwargs))
        return staged[-1]

    monkeypatch.setattr(annual, "staging_folder", spy)
    res = _score(champion, out, tmp_path)
    assert res.exit_code == 0, (res.output, res.stderr)
    assert staged == [out.resolve() / annual.INSIDE_STAGING]
    outs = AnnualOutputs(out)
    assert outs.run.is_file() and outs.scores.is_file()
    assert set(outs.undeclared()) == {"keep.txt"}
    assert not staged[0].exists() and not (tmp_path / ".mnt.partial").exists()


# --------------------------------------------------------- two runs into one --out at once


_HOLDER = """
import sys, time
from pathlib import Path
from kenshin.annual import output_lock, output_place

out = Path(sys.argv[1])
with output_lock(output_place(out), out):
    print("locked", flush=True)
    time.sleep(600)  # killed here
"""


def test_a_second_run_into_the_same_out_is_exit_2_naming_the_first(champion, tmp_path, monkeypatch):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_HOLDER), str(out)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = _score(champion, out, tmp_path)
        assert_one_line_error(
            res, f"--out {out}", f"another kenshin run is writing this output folder "
            f"(process {holder.pid})",
        )  # fmt: skip
        assert not out.exists() and not (tmp_path / ".out.partial").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    res = _score(champion, out, tmp_path)  # the kernel let the lock go with its holder
    assert res.exit_code == 0, (res.output, res.stderr)
    assert AnnualOutputs(out).run.is_file()


def test_the_output_lock_is_held_for_the_whole_run(champion, tmp_path, monkeypatch):
    """While a run writes (here: while its letters are made) another run into the same
    folder is refused."""
    import kenshin.annual as annual

    out = tmp_path / "out"
    seen = []
    real = annual.write_letters

    def second_run_meanwhile(*args, **kwargs):
        with pytest.raises(annual.BadInputError, match=f"process {os.getpid()}"):
            annual.output_lock(annual.output_place(out), out).__enter__()
        seen.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(annual, "write_letters", second_run_meanwhile)
    res = _score(champion, out, tmp_path)
    assert res.exit_code == 0, (res.output, res.stderr)
    assert seen


# ------------------------------------------------------------------------- symlink loops


def _loop(tmp: Path) -> Path:
    (tmp / "b").symlink_to(tmp / "a")
    (tmp / "a").symlink_to(tmp / "b")
    return tmp / "a"


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("ingest", "BUNDLE"), ("ingest", "--store"), ("train", "--store"), ("train", "--workdir"),
        ("score", "--store"), ("score", "--out"), ("score", "--workdir"), ("features", "--out"),
        ("features", "--store"), ("synth", "--out"), ("promote", "--workdir"),
        ("evaluate", "--scores"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("below", [False, True])
def test_a_path_option_that_is_a_symlink_loop_is_exit_2(tmp_path, command, option, below):
    loop = _loop(tmp_path)
    bad = str(loop / "sub" if below else loop)
    good = {
        "BUNDLE": str(tmp_path / "bundle"), "--store": str(tmp_path / "store"),
        "--workdir": str(tmp_path / "work"), "--out": str(tmp_path / "out"),
        "--scores": str(tmp_path / "scores"),
    }  # fmt: skip
    good[option] = bad
    args = {
        "ingest": ["ingest", good["BUNDLE"], "--store", good["--store"]],
        "train": ["train", "--store", good["--store"], "--workdir", good["--workdir"]],
        "score": ["score", "--store", good["--store"], "--year", str(FY), "--out", good["--out"],
                  "--workdir", good["--workdir"]],
        "features": ["features", "--store", good["--store"], "--out", good["--out"]],
        "synth": ["synth", "--out", good["--out"]],
        "promote": ["promote", "--workdir", good["--workdir"]],
        "evaluate": ["evaluate", "--store", good["--store"], "--year", str(FY), "--scores",
                     good["--scores"]],
    }[command]  # fmt: skip
    res = runner.invoke(app, args)
    assert_one_line_error(res, f"{option} {bad}: ", "(symlink loop)")
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
