"""./run: paths relative to the caller's folder, and no reinstall on every call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "kenshin").exists(), reason="./run has not set up .venv"
)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    return subprocess.run(
        [str(REPO / "run"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_paths_are_relative_to_the_callers_folder_and_venv_is_kept(tmp_path):
    cfg = REPO / ".venv" / "pyvenv.cfg"
    before = cfg.stat().st_ino, cfg.stat().st_mtime_ns
    done = _run("kenshin", "synth", "--out", "bundle", "--residents", "100", "--years", "2",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bundle" / "checkups.csv").is_file()
    assert not (REPO / "bundle").exists()
    done = _run("kenshin", "ingest", "bundle", "--store", "store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "store" / "manifest.json").is_file()
    # A pyenv shim once made uv recreate .venv on every call.
    assert (cfg.stat().st_ino, cfg.stat().st_mtime_ns) == before
