"""models.compare: the helpers of notebooks/02_compare_models on hand-made inputs.

Pure helpers run on small frames and a fake engine. The MLflow helpers read a small hand-made
tracking store (three training runs logged through an explicit client, three registered
versions; no model is trained): the end-to-end path with real runs is the notebook test.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.columns import OUTCOMES
from data.store import fingerprint
from features.declarations import feature_names
from features.declarations import get as declaration
from models.evaluate import binary_metrics

# ------------------------------------------------------------------------------ pure helpers


def test_side_by_side_keeps_order_and_adds_difference():
    from models.compare import side_by_side

    long = pd.DataFrame({
        "model": ["v1 champion"] * 2 + ["v2 challenger"] * 2,
        "outcome": ["liver", "diabetes", "diabetes", "liver"],
        "auc": [0.70, 0.80, 0.85, 0.60],
        "ece": [0.01, 0.02, 0.03, 0.04],
    })  # fmt: skip
    out = side_by_side(long, ["outcome"], ["auc", "ece"])
    assert list(out["outcome"]) == ["liver", "diabetes"]  # first appearance, not sorted
    assert list(out.columns) == [
        "outcome", "auc v1 champion", "auc v2 challenger", "auc Δ",
        "ece v1 champion", "ece v2 challenger", "ece Δ",
    ]  # fmt: skip
    row = out.set_index("outcome").loc["diabetes"]
    assert row["auc v1 champion"] == 0.80 and row["auc v2 challenger"] == 0.85
    assert row["auc Δ"] == pytest.approx(0.05)
    three = pd.concat([long, long[long["model"] == "v1 champion"].assign(model="v3")])
    assert not any(c.endswith("Δ") for c in side_by_side(three, ["outcome"], ["auc"]).columns)
    missing = long.iloc[:3]  # the challenger has no liver row
    got = side_by_side(missing, ["outcome"], ["auc"]).set_index("outcome")
    assert np.isnan(got.loc["liver", "auc v2 challenger"]) and np.isnan(got.loc["liver", "auc Δ"])


def _scored(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Two models on the same rows: one calibrated (y ~ p), one overconfident (p²)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.6, n)
    y = (rng.uniform(size=n) < p).astype("float64")
    sex = rng.choice([1.0, 2.0], n)
    age = rng.integers(38, 76, n).astype("float64")
    base = pd.DataFrame({"outcome": "diabetes", "y": y, "sex": sex, "age": age})
    return pd.concat(
        [base.assign(model="good", p=p), base.assign(model="sharp", p=p**2)], ignore_index=True
    )[["model", "outcome", "y", "p", "sex", "age"]]


def test_reliability_bins_cover_every_row_and_follow_the_diagonal():
    from models.compare import reliability

    scored = _scored()
    curves = reliability(scored, bins=10)
    assert set(curves.columns) == {"model", "outcome", "bin", "n", "mean_p", "observed"}
    for model, g in curves.groupby("model"):
        assert g["n"].sum() == (scored["model"] == model).sum()
        assert len(g) == 10 and g["mean_p"].is_monotonic_increasing
    good = curves[curves["model"] == "good"]
    assert np.abs(good["observed"] - good["mean_p"]).max() < 0.06
    sharp = curves[curves["model"] == "sharp"]  # p² under-predicts: observed above the diagonal
    assert (sharp["observed"] > sharp["mean_p"]).all()
    tied = reliability(scored.assign(p=0.2), bins=10)  # all edges tie: one bin per model
    assert list(tied["n"]) == [len(scored) // 2] * 2


def test_sex_age_metrics_cross_and_drop_rows_outside_the_bands():
    from models.compare import recomputed_metrics, sex_age_metrics

    scored = _scored()
    bands = ((40, 49), (50, 59), (60, 64), (65, 74))
    cross = sex_age_metrics(scored, bands)
    assert len(cross) == 2 * 2 * 4  # model × sex × age band
    assert set(cross["sex"]) == {"male", "female"}
    assert set(cross["age_band"]) == {"40-49", "50-59", "60-64", "65-74"}
    inside = scored["age"].between(40, 74)
    assert cross.groupby("model")["n"].sum().tolist() == [inside.sum() // 2] * 2
    g = scored[(scored["model"] == "good") & (scored["sex"] == 2) & scored["age"].between(50, 59)]
    row = cross[(cross["model"] == "good") & (cross["sex"] == "female")
                & (cross["age_band"] == "50-59")].iloc[0]  # fmt: skip
    assert row["auc"] == pytest.approx(binary_metrics(g["y"], g["p"])["auc"])
    assert list(cross["model"].iloc[:2]) == ["good", "sharp"]  # models next to each other
    overall = recomputed_metrics(scored).set_index("model")
    assert overall.loc["good", "n"] == len(scored) // 2
    assert overall.loc["good", "ece"] < overall.loc["sharp", "ece"]
    assert overall.loc["good", "auc"] == pytest.approx(overall.loc["sharp", "auc"])  # same ranks


class FakeEngine:
    """Enough of models.train.TrainedEngine: risk from the first feature, contributions."""

    def __init__(self, scale: float, names: list[str] | None = None, outcomes=("diabetes",)):
        self.feature_names = names or feature_names()
        self.feature_set_version = "fs-test"
        self.outcomes = tuple(outcomes)
        self.scale = scale

    def predict_outcome(self, X, outcome):
        return 1 / (1 + np.exp(-self.scale * X[:, 0]))

    def contributions(self, X, outcome):
        c = np.zeros((len(X), len(self.feature_names) + 1))
        c[:, 0] = self.scale * X[:, 0]  # first feature drives everything
        c[:, 1] = 0.1 * self.scale
        return pd.DataFrame(c, columns=[*self.feature_names, "bias"])


def _rows(n: int = 50) -> dict:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, len(feature_names())))
    y = (X[:, 0] > 0).astype("float64")
    keys = pd.DataFrame({"pseudonym": [f"{i:016x}" for i in range(n)], "fiscal_year": 2024,
                         "sex": rng.choice([1.0, 2.0], n), "age": 60.0})  # fmt: skip
    return {"diabetes": (X, y, keys), "liver": (X[:0], y[:0], keys.iloc[:0])}


def test_score_test_rows_scores_every_engine_on_the_same_rows_without_pseudonyms():
    from models.compare import score_test_rows

    rows = _rows()
    other = FakeEngine(1.0, names=feature_names()[::-1])
    with pytest.warns(UserWarning, match="other: feature set fs-test differs"):
        scored = score_test_rows({"a": FakeEngine(1.0), "b": FakeEngine(3.0), "other": other},
                                 rows)  # fmt: skip
    assert list(scored.columns) == ["model", "outcome", "y", "p", "sex", "age"]
    assert set(scored["model"]) == {"a", "b"} and set(scored["outcome"]) == {"diabetes"}
    a, b = (scored[scored["model"] == m].reset_index(drop=True) for m in ("a", "b"))
    pd.testing.assert_series_equal(a["y"], b["y"])  # the same rows for both
    X = rows["diabetes"][0]
    np.testing.assert_allclose(b["p"], 1 / (1 + np.exp(-3 * X[:, 0])))
    assert not scored.isin(set(rows["diabetes"][2]["pseudonym"])).any().any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = score_test_rows({"a": FakeEngine(1.0, outcomes=("ckd",))}, rows)
    assert empty.empty and list(empty.columns) == list(scored.columns)


def test_mean_abs_shap_and_top_features_with_japanese_labels():
    from models.compare import mean_abs_shap, top_features

    rows = _rows()
    first, second = feature_names()[:2]
    frames = []
    for label, scale in (("v1 champion", 1.0), ("v2 challenger", 2.0)):
        s = mean_abs_shap(FakeEngine(scale), rows, sample=20)
        assert list(s.columns) == ["outcome", "feature", "mean_abs_shap"]
        assert set(s["outcome"]) == {"diabetes"} and len(s) == len(feature_names())
        X = rows["diabetes"][0][:20]
        assert s["mean_abs_shap"].iloc[0] == pytest.approx(scale * np.abs(X[:, 0]).mean())
        assert s["feature"].iloc[0] == first  # sorted, largest first
        frames.append(s.assign(model=label))
    shap = pd.concat(frames, ignore_index=True)
    # the challenger ranks a third feature second: the union of both top-2 lists is shown
    third = feature_names()[5]
    shap.loc[(shap["model"] == "v2 challenger") & (shap["feature"] == third), "mean_abs_shap"] = 1.0
    top = top_features(shap, n=2)
    assert list(top.columns[:3]) == ["outcome", "feature", "ja"]
    assert list(top["feature"]) == [first, second, third]
    assert list(top["ja"]) == [declaration(f).ja for f in (first, second, third)]
    t = top.set_index("feature")
    assert t.loc[first, "rank v1 champion"] == 1 and t.loc[third, "rank v2 challenger"] == 2
    assert t.loc[first, "mean_abs_shap Δ"] == pytest.approx(
        t.loc[first, "mean_abs_shap v1 champion"]
    )


# --------------------------------------------------------------------------- MLflow helpers

in_mlflow_group = pytest.mark.xdist_group("mlflow")


@dataclass
class Store:
    client: object
    runs: list[str]  # training run ids, oldest first (versions 1, 2, 3)
    promote_run: str
    store: Path


def _slice_table(auc: float) -> pd.DataFrame:
    rows = []
    for model, shift in (("engine", 0.0), ("logistic", -0.1)):
        for sl, grp in (("all", "all"), ("sex", "male"), ("sex", "female"), ("age_band", "40-49")):
            rows.append({"slice": sl, "group": grp, "n": 100, "events": 10, "auc": auc + shift,
                         "ece": 0.02, "outcome": "diabetes", "model": model})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory) -> Store:
    """Three training runs + one promotion run; v1 champion, v3 challenger (explicit client)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from models.registry import EXPERIMENT, MODEL_NAME

    tmp = tmp_path_factory.mktemp("compare")
    uri = "sqlite:///" + (tmp / "mlflow.db").as_posix()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment(EXPERIMENT, artifact_location=(tmp / "art").as_uri())
    client.create_registered_model(MODEL_NAME)
    store = tmp / "store"  # a store of one data file, with its real fingerprint
    (store / "private").mkdir(parents=True)
    pd.DataFrame({"x": [1]}).to_parquet(store / "enrollment.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(store / "private" / "contacts.parquet")
    stamp = fingerprint(store)
    (store / "manifest.json").write_text(json.dumps({"store_fingerprint": stamp}))
    runs = []
    for i in range(3):
        run = client.create_run(exp, run_name="train FY2024", tags={"kenshin.kind": "train"},
                                start_time=1_700_000_000_000 + i * 1000)  # fmt: skip
        rid = run.info.run_id
        params = {"test_year": "2024", "feature_set_version": "fs-x", "model.lgbm.seed": str(i),
                  "store.sha256": stamp["sha256"] if i < 2 else "other", "git_commit": f"c{i}",
                  "store.path": str(store), "n_features": "96"}  # fmt: skip
        metrics = {"diabetes.auc": 0.80 + i / 100, "diabetes.pr_auc": 0.3, "diabetes.brier": 0.05,
                   "diabetes.ece": 0.02, "diabetes.cal_slope": 1.1, "diabetes.n": 100,
                   "diabetes.events": 10, "diabetes.logistic.auc": 0.7,
                   "diabetes.sex.male.auc": 0.5,  # a slice: not an outcome row
                   "liver.auc": 0.9, "liver.ece": 0.01}  # fmt: skip
        client.log_batch(
            rid,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        if i < 2:  # the third run logged no evaluation tables
            ev = tmp / f"ev{i}" / "evaluation"
            ev.mkdir(parents=True)
            _slice_table(0.8 + i / 10).to_csv(ev / "metrics_by_slice.csv", index=False)
            client.log_artifacts(rid, str(ev.parent))
        client.set_terminated(rid)
        client.create_model_version(MODEL_NAME, source=f"runs:/{rid}/model", run_id=rid)
        runs.append(rid)
    promo = client.create_run(exp, run_name="promote", tags={"kenshin.kind": "promote"})
    client.set_terminated(promo.info.run_id)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")
    client.set_registered_model_alias(MODEL_NAME, "challenger", "3")
    return Store(client, runs, promo.info.run_id, store)


@in_mlflow_group
def test_training_runs_lists_train_runs_newest_first(tracking_store):
    from models.compare import RUN_PARAMS, training_runs

    s = tracking_store
    runs = training_runs(s.client)
    assert list(runs["run_id"]) == s.runs[::-1]  # the promotion run is left out
    assert list(runs["version"]) == ["3", "2", "1"]
    assert list(runs["aliases"]) == ["challenger", "", "champion"]
    assert list(runs["seed"]) == ["2", "1", "0"] and set(runs["test_year"]) == {"2024"}
    assert set(RUN_PARAMS.values()) <= set(runs.columns)
    assert runs["started"].is_monotonic_decreasing
    none = training_runs(s.client, experiment="no-such-experiment")
    assert none.empty and list(none.columns) == list(runs.columns)


@in_mlflow_group
def test_resolve_models_by_alias_version_or_run_id(tracking_store):
    from models.compare import ModelRef, resolve_models

    s = tracking_store
    default = resolve_models(None, s.client)
    assert [m.label for m in default] == ["v1 champion", "v3 challenger"]
    assert default[0] == ModelRef("1", s.runs[0], ("champion",))
    assert default[1].uri == "models:/kenshin-risk/3"
    got = resolve_models(["v2", 3, s.runs[0]], s.client)
    assert [m.version for m in got] == ["2", "3", "1"]
    assert [m.label for m in got] == ["v2", "v3 challenger", "v1 champion"]
    with pytest.raises(ValueError, match="'staging' is no alias"):
        resolve_models(["champion", "staging"], s.client)
    with pytest.raises(ValueError, match="no version 9"):
        resolve_models(["champion", "9"], s.client)
    with pytest.raises(ValueError, match="two different registered versions"):
        resolve_models(["champion", "1"], s.client)
    s.client.set_registered_model_alias("kenshin-risk", "challenger", "1")
    try:  # champion == challenger: the two latest versions, older first
        assert [m.version for m in resolve_models([], s.client)] == ["2", "3"]
    finally:
        s.client.set_registered_model_alias("kenshin-risk", "challenger", "3")


@in_mlflow_group
def test_logged_metrics_per_outcome_side_by_side(tracking_store):
    from models.compare import compare_metrics, resolve_models, run_metrics, side_by_side

    s = tracking_store
    m = run_metrics(s.runs[0], s.client)
    assert list(m["outcome"]) == [o for o in OUTCOMES if o in ("diabetes", "liver")]
    d = m.set_index("outcome")
    assert d.loc["diabetes", "auc"] == pytest.approx(0.80)
    assert d.loc["diabetes", "logistic_auc"] == pytest.approx(0.7)
    assert np.isnan(d.loc["diabetes", "points_auc"]) and np.isnan(d.loc["liver", "brier"])
    models = resolve_models(None, s.client)
    both = compare_metrics(models, s.client)
    assert list(both.columns[:3]) == ["model", "version", "outcome"]
    assert len(both) == 4 and set(both["model"]) == {"v1 champion", "v3 challenger"}
    wide = side_by_side(both, ["outcome"], ["auc"]).set_index("outcome")
    assert wide.loc["diabetes", "auc Δ"] == pytest.approx(0.02)


@in_mlflow_group
def test_slice_tables_and_store_fingerprint(tracking_store):
    from models.compare import (
        ModelRef,
        resolve_models,
        run_table,
        shap_importance,
        slice_metrics,
        store_matches,
    )

    s = tracking_store
    assert run_table(s.runs[2], "metrics_by_slice", s.client).empty  # not logged
    assert shap_importance(s.runs[0], s.client).empty
    full = run_table(s.runs[0], "metrics_by_slice", s.client)
    assert len(full) == 8 and set(full["model"]) == {"engine", "logistic"}
    models = [*resolve_models(["1", "2"], s.client), ModelRef("3", s.runs[2])]
    sl = slice_metrics(models, s.client)
    assert list(sl.columns[:4]) == ["model", "outcome", "slice", "group"]
    assert len(sl) == 2 * 3  # engine rows only, no "all" row, nothing from the third run
    assert set(sl["slice"]) == {"sex", "age_band"}
    assert sl.groupby("model")["auc"].first().to_dict() == pytest.approx(
        {"v1 champion": 0.8, "v2": 0.9}
    )
    assert store_matches(s.store, s.runs[0], s.client)
    assert not store_matches(s.store, s.runs[2], s.client)  # logged another fingerprint
