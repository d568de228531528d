"""MLflow tracking, registry and promotion on a small synthetic ward (2,000 residents × 5 years).

One module fixture runs the demo path once — synth → ingest → ``run_train`` (with truth) →
``kenshin promote`` — then a deliberately weak challenger is trained, logged and refused.
Everything lives in ``tmp_path`` with ``MLFLOW_TRACKING_URI`` pointing at a temporary SQLite
store.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_KEY, temporary_env

pytestmark = pytest.mark.xdist_group("mlflow")

RESIDENTS, YEARS, SEED = 2_000, 5, 21
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Registry:
    tmp: Path
    uri: str
    mlflow_dir: Path
    store: Path
    contacts: pd.DataFrame
    features: pd.DataFrame
    engine: object
    report: object
    run: object
    first: object  # PromotionDecision of the first model
    first_cli: str
    weak_version: str
    second: object  # PromotionDecision of the weak challenger


def _weak_config():
    """A much weaker engine: one stump per outcome, no forecasts, no member selection."""
    from models.config import LGBMParams, ModelConfig

    fields = ModelConfig.__dataclass_fields__
    extra = {"select": False} if "select" in fields else {}
    extra |= {"min_events": 0} if "min_events" in fields else {}  # stumps on every outcome
    return ModelConfig(
        lgbm=LGBMParams(n_estimators=1, num_leaves=2, max_depth=1, early_stopping_rounds=1),
        forecasts=False, baselines=False, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    from typer.testing import CliRunner

    from data.ingest import ingest
    from data.synth import SynthConfig, generate, write_bundle
    from kenshin.cli import app
    from kenshin.commands import run_train
    from models.registry import promote

    tmp = tmp_path_factory.mktemp("registry")
    mlflow_dir = tmp / "mlflow"
    mlflow_dir.mkdir()
    uri = "sqlite:///" + (mlflow_dir / "mlflow.db").resolve().as_posix()
    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY, MLFLOW_TRACKING_URI=uri):
        bundle = generate(SynthConfig(residents=RESIDENTS, years=YEARS, seed=SEED))
        write_bundle(bundle, tmp / "bundle", fmt="csv")
        ingest(tmp / "bundle", tmp / "store")
        # LightGBM on every outcome of this 2,000-resident ward (registry mechanics, not the
        # small-ward fallback of tests/models/test_small_ward.py).
        from models.config import ModelConfig

        engine, report, run = run_train(
            tmp / "store", tmp / "work", tmp / "bundle" / "truth.csv",
            config=ModelConfig(min_events=0),
        )  # fmt: skip
        res = CliRunner().invoke(app, ["promote", "--workdir", str(tmp / "work")])
        assert res.exit_code == 0, res.output
        from mlflow import MlflowClient

        first = promote(tmp / "work")  # idempotent: already the champion
        from features import build_training_tables

        features, labels = build_training_tables(tmp / "store")
        from models.registry import log_training_run
        from models.run import train_and_evaluate

        weak, weak_report = train_and_evaluate(features, labels, _weak_config())
        weak_run = log_training_run(
            weak, weak_report, features, labels, tmp / "store", tmp / "work"
        )
        second = promote(tmp / "work")
        assert MlflowClient().get_model_version_by_alias("kenshin-risk", "champion").version
    return Registry(tmp, uri, mlflow_dir, tmp / "store", bundle.contacts, features, engine,
                    report, run, first, res.output, weak_run.version, second)  # fmt: skip


@pytest.fixture
def tracking(registry, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    mlflow.set_tracking_uri(registry.uri)
    mlflow.set_registry_uri(registry.uri)
    return registry


def test_tracking_uri_is_absolute_sqlite_in_workdir(tmp_path, monkeypatch):
    from models.registry import tracking_uri

    monkeypatch.chdir(tmp_path)
    uri = tracking_uri("work")
    assert uri == f"sqlite:////{(tmp_path / 'work' / 'mlflow.db').resolve().as_posix()[1:]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert tracking_uri("work") == "http://example.invalid:5000"


def test_first_model_is_promoted_and_logged(tracking):
    import mlflow
    from mlflow import MlflowClient

    r = tracking
    assert "promoted" in r.first_cli and "first model" in r.first_cli
    # a second promote of the same version changes nothing
    assert not r.first.promoted and "already the champion" in r.first.reason
    client = MlflowClient()
    assert (
        str(client.get_model_version_by_alias("kenshin-risk", "champion").version) == r.run.version
    )
    mv = client.get_model_version("kenshin-risk", r.run.version)
    assert mv.tags["feature_set_version"] == r.engine.feature_set_version
    run = client.get_run(r.run.run_id)
    assert run.data.params["feature_set_version"] == r.engine.feature_set_version
    assert (
        run.data.params["store.sha256"]
        == json.loads((r.store / "manifest.json").read_text())["store_fingerprint"]["sha256"]
    )
    assert int(run.data.params["store.rows.checkups"]) > 0
    assert run.data.tags["git_commit"]
    m = run.data.metrics
    for o in r.engine.outcomes:
        assert 0.5 < m[f"{o}.auc"] <= 1 and f"{o}.ece" in m and f"{o}.logistic.auc" in m
        assert f"{o}.auc_ratio" in m and f"{o}.sex.female.auc" in m
    assert "forecast.hba1c.coverage_80" in m
    arts = {a.path for a in client.list_artifacts(r.run.run_id)}
    assert {"model_card.md", "plots", "evaluation", "features", "data"} <= arts
    plots = {Path(a.path).name for a in client.list_artifacts(r.run.run_id, "plots")}
    assert {"roc.png", "calibration.png"} | {f"shap_{o}.png" for o in r.engine.outcomes} <= plots
    text = mlflow.artifacts.load_text(f"runs:/{r.run.run_id}/model_card.md")
    assert "Intended use" in text and "Limitations" in text and "Synthetic-truth" in text
    # a synthetic ward's run judges the what-if against the true counterfactual
    assert "What-if against the true counterfactual" in text
    assert "whatif.cells_judged" in m and m["whatif.cells_judged"] > 0
    evaluation = {Path(a.path).name for a in client.list_artifacts(r.run.run_id, "evaluation")}
    assert "whatif_truth.csv" in evaluation
    # the forecasts' dependence metabolic syndrome's what-if reads (items × items, unit diagonal)
    assert "forecast_dependence.csv" in evaluation
    assert "Value forecasts: correlation of their errors" in text
    dep = pd.read_csv(
        io.StringIO(mlflow.artifacts.load_text(
            f"runs:/{r.run.run_id}/evaluation/forecast_dependence.csv"
        ))
    ).set_index("item")  # fmt: skip
    assert list(dep.index) == list(dep.columns) == list(r.engine.forecast_items)
    np.testing.assert_allclose(np.diag(dep.to_numpy()), 1.0)


def test_weaker_challenger_is_not_promoted_and_decision_is_logged(tracking):
    import mlflow
    from mlflow import MlflowClient

    r = tracking
    d = r.second
    assert not d.promoted
    assert d.champion_version == r.run.version and d.challenger_version == r.weak_version
    assert "AUC drops" in d.reason
    assert (d.figures["auc_drop"] > 0.01).any()
    client = MlflowClient()
    assert (
        str(client.get_model_version_by_alias("kenshin-risk", "champion").version) == r.run.version
    )
    assert (
        str(client.get_model_version_by_alias("kenshin-risk", "challenger").version)
        == d.challenger_version
    )
    tags = client.get_model_version("kenshin-risk", d.challenger_version).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.run_id"] == d.run_id
    run = client.get_run(d.run_id)
    assert run.data.tags["decision"] == "rejected"
    assert "diabetes.auc_drop" in run.data.metrics
    logged = mlflow.artifacts.load_dict(f"runs:/{d.run_id}/promotion.json")
    assert logged["promoted"] is False and logged["figures"]


def test_gate_rescoring_matches_the_logged_test_metrics(tracking):
    """The gate's challenger figures are the same test rows as the training run's metrics."""
    from mlflow import MlflowClient

    r = tracking
    m = MlflowClient().get_run(r.run.run_id).data.metrics
    fig = r.first.figures.set_index("outcome")
    for o in r.engine.outcomes:
        assert fig.loc[o, "challenger_auc"] == pytest.approx(m[f"{o}.auc"], abs=1e-9)
        assert fig.loc[o, "n"] == m[f"{o}.n"]


_LOAD = """
import sys
from pathlib import Path
root = Path(sys.argv[1]).resolve()
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != root]
import mlflow, pandas as pd
m = mlflow.pyfunc.load_model("models:/kenshin-risk@champion")
import models
assert root not in Path(models.__file__).resolve().parents, models.__file__
m.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])
"""


def test_registered_model_loads_in_a_fresh_process(tracking, tmp_path):
    r = tracking
    X = r.features.iloc[:300]
    X.to_parquet(tmp_path / "x.parquet")
    env = {**os.environ, "MLFLOW_TRACKING_URI": r.uri}
    env.pop("PYTHONPATH", None)
    res = subprocess.run(
        [sys.executable, "-c", _LOAD, str(ROOT), str(tmp_path / "x.parquet"),
         str(tmp_path / "y.parquet")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    got = pd.read_parquet(tmp_path / "y.parquet")
    want = pd.concat([r.engine.predict_proba(X), r.engine.predict_values(X)], axis=1)
    assert list(got.columns) == list(want.columns)
    assert {f"risk_{o}" for o in r.engine.outcomes} <= set(got.columns)
    assert {"hba1c_p10", "hba1c_p50", "hba1c_p90"} <= set(got.columns)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-12)


def test_loaded_model_gives_shap_and_refuses_mismatched_features(tracking):
    import mlflow

    from models.engine import FeatureSchemaError

    r = tracking
    m = mlflow.pyfunc.load_model("models:/kenshin-risk@champion")
    X = r.features.iloc[:50]
    wrapper = m.unwrap_python_model()
    assert wrapper.feature_set_version == r.engine.feature_set_version
    c = wrapper.engine.contributions(X, "diabetes")
    pd.testing.assert_frame_equal(c, r.engine.contributions(X, "diabetes"))
    with pytest.raises(FeatureSchemaError, match=r"missing 1 declared column.*'hba1c'"):
        m.predict(X.drop(columns="hba1c"))
    with pytest.raises(FeatureSchemaError, match=r"unexpected column.*'shoe_size'"):
        wrapper.predict(None, X.assign(shoe_size=27.0))
    sig = m.metadata.get_input_schema().input_names()
    assert sig == wrapper.feature_names  # no key columns, no pseudonyms in the signature


def test_no_raw_id_name_address_or_key_reaches_mlflow(registry):
    from data.pseudonym import pseudonymise
    from tests.pii_scan import find_pii, sqlite_blobs

    r = registry
    pseudonyms = set(pseudonymise(r.contacts["person_id"], TEST_KEY.encode()).astype(str))
    blobs = sqlite_blobs(r.mlflow_dir / "mlflow.db")
    files = [p for p in r.mlflow_dir.rglob("*") if p.is_file()]
    assert any(p.name == "python_model.pkl" for p in files)  # the pickled engine is scanned
    for p in files:
        blobs[str(p.relative_to(r.mlflow_dir))] = p.read_bytes()
    leaks = find_pii(blobs, r.contacts, TEST_KEY, pseudonyms)
    assert not leaks, leaks[:10]
    assert len(blobs) > 20  # the scan saw the store and the artifacts


def test_promote_without_challenger_is_a_clear_error(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from kenshin.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + (tmp_path / "m.db").as_posix())
    res = CliRunner().invoke(app, ["promote", "--workdir", str(tmp_path)])
    assert res.exit_code == 2
    assert "run 'kenshin train' first" in res.output


def test_train_summary_prints_every_outcome(registry):
    from io import StringIO

    from rich.console import Console

    from kenshin.commands import print_train_summary

    buf = StringIO()
    print_train_summary(Console(file=buf, width=80), registry.report, registry.run)
    out = buf.getvalue()
    for o in registry.engine.outcomes:
        assert o in out
    assert "coverage" in out and registry.run.run_id in out
    assert "driver agreement" in out and "…" not in out  # every figure fits 80 columns whole


def test_the_gate_is_a_pure_function_of_figures_and_policy():
    from models.registry import PromotionPolicy, promotion_gate

    ok = {"outcome": "diabetes", "auc_drop": 0.0, "challenger_ece": 0.01,
          "challenger_cal_slope": 1.0, "auc_ok": True, "ece_ok": True, "slope_ok": True}  # fmt: skip
    policy = PromotionPolicy()
    assert promotion_gate(pd.DataFrame([ok]), policy) == []
    worse = {**ok, "outcome": "liver", "auc_drop": 0.05, "auc_ok": False}
    assert promotion_gate(pd.DataFrame([ok, worse]), policy) == ["liver AUC drops 0.050 > 0.01"]
    # A challenger that switched off an outcome the champion scores never passes quietly.
    dropped = {"ckd": "ckd: 12 training events < min_events 100: switched off for this run"}
    fails = promotion_gate(pd.DataFrame([ok]), policy, dropped)
    assert len(fails) == 1 and fails[0].startswith("ckd is scored by the champion but not")
    assert "12 training events" in fails[0]
