"""The MLproject entry points run as an analyst runs them (``./run mlflow run . -e NAME``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_synth_entry_point_runs_in_the_project_environment(tmp_path):
    bin_dir = Path(sys.executable).parent
    # Only this run's MLflow settings: an experiment or run id another test left in the
    # environment would point into another tracking store.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # what ./run mlflow does
        "MLFLOW_TRACKING_URI": "sqlite:///" + (tmp_path / "mlflow.db").as_posix(),
    }
    out = tmp_path / "bundle"
    done = subprocess.run(
        [str(bin_dir / "mlflow"), "run", str(ROOT), "-e", "synth", "--env-manager", "local",
         "-P", f"out={out}", "-P", "residents=300", "-P", "years=2"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    checkups = pd.read_csv(out / "checkups.csv")
    assert len(checkups) > 100 and checkups["person_id"].nunique() > 50
    assert "succeeded" in done.stderr


def test_run_mlflow_records_in_the_work_store_and_writes_nothing_into_the_checkout(tmp_path):
    """`./run mlflow run` uses the tracking store `kenshin --workdir work` uses (so `./run mlflow
    ui` shows the same runs), in the kenshin experiment, with artifacts beside the store."""
    import mlflow

    strays = ("mlartifacts", "mlruns", "mlflow.db")
    before = {name: (ROOT / name).exists() for name in strays}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [str(ROOT / "run"), "mlflow", "run", str(ROOT), "-e", "synth", "--env-manager", "local",
         "-P", f"out={tmp_path / 'bundle'}", "-P", "residents=200", "-P", "years=2"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert {name: (ROOT / name).exists() for name in strays} == before
    client = mlflow.MlflowClient("sqlite:///" + (tmp_path / "work" / "mlflow.db").as_posix())
    exp = client.get_experiment_by_name("kenshin")
    assert exp.artifact_location == (tmp_path / "work" / "mlartifacts").as_uri()
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
