"""Compare registered ``kenshin-risk`` models side by side (モデル比較).

The helpers behind ``notebooks/02_compare_models.ipynb``; every table is tidy (one row per
model × outcome [× slice / bin / feature]), with the model named by its :class:`ModelRef` label
(``v3 champion``)::

    configure_tracking("work")                        # models.registry
    runs = training_runs()                            # the kenshin experiment's training runs
    models = resolve_models(["champion", "challenger"])
    logged = compare_metrics(models)                  # logged test-year metrics per outcome
    side_by_side(logged, ["outcome"], ["auc", "ece"]) # auc v1 champion | auc v2 … | auc Δ

Logged figures come from what :func:`models.registry.log_training_run` recorded (metrics,
``evaluation/*.csv``). Recomputed figures score every model on ONE set of test rows, rebuilt from
the store with :func:`models.registry.outcome_test_rows` (:func:`score_test_rows`); from those
come reliability curves, metrics by sex × age band and, if a run has no SHAP table, mean |SHAP|.

Privacy: scored rows keep only outcome, label, risk, sex and age — no pseudonym.

This module imports MLflow (slow); ``import models`` does not import it.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from data.columns import AGE_BANDS, OUTCOMES
from data.store import read_manifest
from features.declarations import feature_names
from features.declarations import get as declaration
from models.evaluate import age_band, binary_metrics
from models.registry import CHALLENGER, CHAMPION, EXPERIMENT, MODEL_NAME, _lead_model

__all__ = [
    "BASELINES",
    "HEADLINE",
    "RUN_PARAMS",
    "ModelRef",
    "compare_metrics",
    "load_engines",
    "mean_abs_shap",
    "recomputed_metrics",
    "reliability",
    "resolve_models",
    "run_metrics",
    "run_table",
    "score_test_rows",
    "sex_age_metrics",
    "shap_importance",
    "side_by_side",
    "slice_metrics",
    "store_matches",
    "top_features",
    "training_runs",
]

#: Headline metrics of a model per outcome (test year), as logged by the training run.
HEADLINE = ("auc", "pr_auc", "brier", "ece", "cal_slope")
#: Baselines whose AUC is logged beside the engine's (``<outcome>.<baseline>.auc``).
BASELINES = ("logistic", "points")
#: Logged parameter → column of :func:`training_runs`.
RUN_PARAMS = {
    "test_year": "test_year",
    "feature_set_version": "feature_set_version",
    "store.sha256": "store_sha256",
    "git_commit": "git_commit",
    "model.lgbm.seed": "seed",
    "n_features": "n_features",
    "store.path": "store_path",
}
_SEX = {1.0: "male", 2.0: "female"}


def _client(client: MlflowClient | None) -> MlflowClient:
    return client or MlflowClient()


def _aliases(client: MlflowClient) -> dict[str, str]:
    """alias → version (str) of the registered model; {} if it is not registered yet."""
    try:
        rm = client.get_registered_model(MODEL_NAME)
    except MlflowException:
        return {}
    return {a: str(v) for a, v in (rm.aliases or {}).items()}


def _versions(client: MlflowClient) -> list:
    try:
        return list(client.search_model_versions(f"name='{MODEL_NAME}'"))
    except MlflowException:
        return []


# ------------------------------------------------------------------------------ runs, models


def training_runs(client: MlflowClient | None = None, experiment: str = EXPERIMENT) -> pd.DataFrame:
    """Training runs of ``experiment`` (tag ``kenshin.kind = train``), newest first.

    Columns: run_id, run_name, started (UTC), status, version (registered ``kenshin-risk``
    version, or empty), aliases, then the :data:`RUN_PARAMS` (test year, feature-set version,
    store sha256, git commit, LightGBM seed, number of features, store path).
    """
    client = _client(client)
    cols = ["run_id", "run_name", "started", "status", "version", "aliases",
            *RUN_PARAMS.values()]  # fmt: skip
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame(columns=cols)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`kenshin.kind` = 'train'",
        order_by=["attributes.start_time DESC"],
    )
    by_alias = _aliases(client)
    version_of = {mv.run_id: str(mv.version) for mv in _versions(client)}
    rows = []
    for r in runs:
        v = version_of.get(r.info.run_id, "")
        aliases = sorted(a for a, av in by_alias.items() if v and av == v)
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "started": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
            "status": r.info.status,
            "version": v,
            "aliases": ", ".join(aliases),
        }
        row.update({col: r.data.params.get(p, "") for p, col in RUN_PARAMS.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class ModelRef:
    """One registered version of ``kenshin-risk`` and the training run that logged it."""

    version: str
    run_id: str
    aliases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How tables and plots name the model: ``v3`` plus its aliases (``v3 champion``)."""
        return " ".join([f"v{self.version}", *self.aliases])

    @property
    def uri(self) -> str:
        """``models:/kenshin-risk/<version>`` for :func:`mlflow.pyfunc.load_model`."""
        return f"models:/{MODEL_NAME}/{self.version}"


def resolve_models(
    refs: Sequence[str | int] | None = None, client: MlflowClient | None = None
) -> list[ModelRef]:
    """Registered versions to compare, in the order given.

    Each ref is an alias (``"champion"``), a version (``3``, ``"3"``, ``"v3"``) or the id of the
    training run that registered the version. ``None`` / empty: champion then challenger when
    both exist and differ, else the two latest versions (older first). ValueError if a ref is
    unknown, or fewer than two distinct versions result.
    """
    client = _client(client)
    by_alias = _aliases(client)
    versions = {str(mv.version): mv for mv in _versions(client)}
    if not refs:
        champ, chal = by_alias.get(CHAMPION), by_alias.get(CHALLENGER)
        if champ and chal and champ != chal:
            refs = [CHAMPION, CHALLENGER]
        else:
            refs = sorted(versions, key=int)[-2:]
    by_run = {mv.run_id: v for v, mv in versions.items()}
    out: list[ModelRef] = []
    for ref in refs:
        s = str(ref).strip()
        if s in by_alias:
            v = by_alias[s]
        elif s.lower().removeprefix("v").isdigit():
            v = str(int(s.lower().removeprefix("v")))
        elif s in by_run:
            v = by_run[s]
        else:
            raise ValueError(
                f"{s!r} is no alias ({', '.join(sorted(by_alias)) or 'none'}), version "
                f"({', '.join(sorted(versions, key=int)) or 'none'}) or training run id of "
                f"{MODEL_NAME}"
            )
        if v not in versions:
            raise ValueError(f"{MODEL_NAME} has no version {v} (ref {s!r})")
        aliases = tuple(sorted(a for a, av in by_alias.items() if av == v))
        out.append(ModelRef(v, versions[v].run_id, aliases))
    if len({m.version for m in out}) != len(out) or len(out) < 2:
        raise ValueError(
            f"need at least two different registered versions to compare, got "
            f"{[m.label for m in out]}: train another model first"
        )
    return out


# --------------------------------------------------------------------------- logged figures


def run_metrics(run_id: str, client: MlflowClient | None = None) -> pd.DataFrame:
    """Logged test-year metrics of one training run: one row per outcome (OUTCOMES order).

    Columns: outcome, n, events, the :data:`HEADLINE` metrics of the engine, and
    ``<baseline>_auc`` for the logistic and points baselines (NaN when not logged).
    """
    m = _client(client).get_run(run_id).data.metrics
    rows = []
    for o in OUTCOMES:
        if f"{o}.auc" not in m:
            continue
        r = {"outcome": o, "n": m.get(f"{o}.n", np.nan), "events": m.get(f"{o}.events", np.nan)}
        r.update({k: m.get(f"{o}.{k}", np.nan) for k in HEADLINE})
        r.update({f"{b}_auc": m.get(f"{o}.{b}.auc", np.nan) for b in BASELINES})
        rows.append(r)
    cols = ["outcome", "n", "events", *HEADLINE, *(f"{b}_auc" for b in BASELINES)]
    return pd.DataFrame(rows, columns=cols)


def compare_metrics(models: Sequence[ModelRef], client: MlflowClient | None = None) -> pd.DataFrame:
    """:func:`run_metrics` of each model stacked: columns model, version, outcome, …."""
    client = _client(client)
    frames = [
        run_metrics(m.run_id, client).assign(model=m.label, version=m.version) for m in models
    ]
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "version", *[c for c in out.columns if c not in ("model", "version")]]]


def run_table(run_id: str, name: str, client: MlflowClient | None = None) -> pd.DataFrame:
    """The logged table ``evaluation/<name>.csv`` of a run; an empty frame if it was not logged."""
    client = _client(client)
    path = f"evaluation/{name}.csv"
    if path not in {a.path for a in client.list_artifacts(run_id, "evaluation")}:
        return pd.DataFrame()
    with tempfile.TemporaryDirectory(prefix="kenshin-compare-") as tmp:
        return pd.read_csv(client.download_artifacts(run_id, path, tmp))


def slice_metrics(models: Sequence[ModelRef], client: MlflowClient | None = None) -> pd.DataFrame:
    """Logged metrics by slice (``evaluation/metrics_by_slice.csv``) of each model's engine.

    Only the engine's own rows (not the baselines) and only the slices (sex, age band), not the
    overall row. Columns: model, outcome, slice, group, then the logged metric columns.
    """
    client = _client(client)
    frames = []
    for m in models:
        t = run_table(m.run_id, "metrics_by_slice", client)
        if t.empty:
            continue
        t = t[(t["model"] == _lead_model(t)) & (t["slice"] != "all")].drop(columns="model")
        frames.append(t.assign(model=m.label))
    if not frames:
        return pd.DataFrame(columns=["model", "outcome", "slice", "group"])
    out = pd.concat(frames, ignore_index=True)
    first = ["model", "outcome", "slice", "group"]
    return out[first + [c for c in out.columns if c not in first]]


def shap_importance(run_id: str, client: MlflowClient | None = None) -> pd.DataFrame:
    """Logged mean |SHAP| per outcome and feature (``evaluation/shap_mean_abs.csv``) or empty."""
    return run_table(run_id, "shap_mean_abs", client)


def side_by_side(
    long: pd.DataFrame, index: Sequence[str], values: Sequence[str], model: str = "model"
) -> pd.DataFrame:
    """One row per ``index`` with ``<value> <model label>`` per model (in order of appearance).

    With exactly two models a ``<value> Δ`` column follows each value: second − first (e.g.
    challenger − champion).
    """
    index, values = list(index), list(values)
    labels = list(dict.fromkeys(long[model]))
    keys = long[index].drop_duplicates().reset_index(drop=True)
    wide = long.set_index([*index, model])[values].unstack(model)
    out = pd.DataFrame(index=wide.index)
    for v in values:
        for label in labels:
            out[f"{v} {label}"] = wide[(v, label)]
        if len(labels) == 2:
            out[f"{v} Δ"] = out[f"{v} {labels[1]}"] - out[f"{v} {labels[0]}"]
    return keys.merge(out.reset_index(), on=index, how="left")


# ----------------------------------------------------------------------- recomputed figures


def load_engines(models: Sequence[ModelRef]) -> dict:
    """label → the loaded pyfunc's :class:`models.engine.KenshinRiskEngine` (``.engine``,
    ``.tables_config``) of each model."""
    import mlflow.pyfunc

    return {m.label: mlflow.pyfunc.load_model(m.uri).unwrap_python_model() for m in models}


def store_matches(store: Path | str, run_id: str, client: MlflowClient | None = None) -> bool:
    """Whether ``store``'s fingerprint is the one logged by the training run ``run_id``."""
    logged = _client(client).get_run(run_id).data.params.get("store.sha256")
    actual = read_manifest(Path(store)).get("store_fingerprint", {}).get("sha256")
    return bool(logged) and logged == actual


def score_test_rows(engines: Mapping[str, object], rows: Mapping[str, tuple]) -> pd.DataFrame:
    """Risk of every engine on the same test rows (from :func:`models.registry.outcome_test_rows`).

    ``engines``: label → :class:`models.train.TrainedEngine`. Columns: model, outcome, y, p, sex,
    age (no pseudonym). An engine whose feature names differ from the declared feature set the
    rows were built with is left out with a warning (its scores would be meaningless).
    """
    names = feature_names()
    frames = []
    for label, engine in engines.items():
        if list(engine.feature_names) != names:
            warnings.warn(
                f"{label}: feature set {engine.feature_set_version} differs from the declared "
                "one the test rows were rebuilt with; left out of the recomputed figures",
                stacklevel=2,
            )
            continue
        for o, (X, y, keys) in rows.items():
            if o not in engine.outcomes or len(y) == 0:
                continue
            frames.append(pd.DataFrame({
                "model": label, "outcome": o, "y": np.asarray(y, dtype="float64"),
                "p": engine.predict_outcome(X, o),
                "sex": keys["sex"].to_numpy(dtype="float64", na_value=np.nan),
                "age": keys["age"].to_numpy(dtype="float64", na_value=np.nan),
            }))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=["model", "outcome", "y", "p", "sex", "age"])
    return pd.concat(frames, ignore_index=True)


def _by_group(scored: pd.DataFrame, keys: list[str], func) -> pd.DataFrame:
    rows = []
    for k, g in scored.groupby(keys, sort=False):
        k = k if isinstance(k, tuple) else (k,)
        for r in func(g):
            rows.append({**dict(zip(keys, k, strict=True)), **r})
    return pd.DataFrame(rows)


def recomputed_metrics(scored: pd.DataFrame) -> pd.DataFrame:
    """:func:`models.evaluate.binary_metrics` per model and outcome on the scored rows."""
    return _by_group(scored, ["model", "outcome"], lambda g: [binary_metrics(g["y"], g["p"])])


def reliability(scored: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Reliability curve per model and outcome: quantile bins of the predicted risk.

    Columns: model, outcome, bin, n, mean_p (mean predicted risk), observed (event rate).
    Bins are the deciles (``bins`` quantiles) of each model's own predictions; tied edges merge.
    """

    def curve(g: pd.DataFrame) -> list[dict]:
        p, y = g["p"].to_numpy(), g["y"].to_numpy()
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
        idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
        out = []
        for b in np.unique(idx):
            m = idx == b
            out.append({"bin": int(b), "n": int(m.sum()), "mean_p": float(p[m].mean()),
                        "observed": float(y[m].mean())})  # fmt: skip
        return out

    return _by_group(scored, ["model", "outcome"], curve)


def sex_age_metrics(
    scored: pd.DataFrame, age_bands: tuple[tuple[int, int], ...] = AGE_BANDS
) -> pd.DataFrame:
    """Metrics per model, outcome, sex × age band on the scored rows (rows outside every band
    are left out). Columns: model, outcome, sex, age_band, n, events, event_rate, mean_p, auc,
    pr_auc, brier, cal_slope, cal_intercept, ece (AUC NaN in a cell with one class only)."""
    s = scored.assign(
        sex=scored["sex"].map(_SEX).fillna("unknown"),
        age_band=age_band(scored["age"].to_numpy(dtype="float64"), age_bands),
    )
    s = s[s["age_band"] != ""]
    out = _by_group(
        s, ["model", "outcome", "sex", "age_band"], lambda g: [binary_metrics(g["y"], g["p"])]
    )
    if len(out):
        first_seen = {c: {v: i for i, v in enumerate(dict.fromkeys(s[c]))} for c in
                      ("outcome", "model")}  # fmt: skip
        out = out.sort_values(
            ["outcome", "sex", "age_band", "model"], kind="stable",
            key=lambda c: c.map(first_seen[c.name]) if c.name in first_seen else c,
        )  # fmt: skip
    return out.reset_index(drop=True)


def mean_abs_shap(engine, rows: Mapping[str, tuple], sample: int = 2000) -> pd.DataFrame:
    """Mean |SHAP| (log-odds) per outcome and feature on the first ``sample`` test rows, like the
    training run's ``shap_mean_abs.csv``: columns outcome, feature, mean_abs_shap."""
    frames = []
    for o, (X, y, _keys) in rows.items():
        if o not in engine.outcomes or len(y) == 0:
            continue
        c = engine.contributions(X[:sample], o)[list(engine.feature_names)]
        imp = c.abs().mean(axis=0).sort_values(ascending=False)
        frames.append(pd.DataFrame({"outcome": o, "feature": imp.index,
                                    "mean_abs_shap": imp.to_numpy()}))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=["outcome", "feature", "mean_abs_shap"])
    return pd.concat(frames, ignore_index=True)


def top_features(shap: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Top features side by side: per outcome, every feature in the top ``n`` of any model.

    ``shap``: columns model, outcome, feature, mean_abs_shap. Out: outcome, feature, ja
    (Japanese label from :mod:`features.declarations`), ``mean_abs_shap <model>`` and
    ``rank <model>`` per model (+ Δ columns for two models), sorted by best rank.
    """
    s = shap.copy()
    s["rank"] = s.groupby(["model", "outcome"])["mean_abs_shap"].rank(
        ascending=False, method="first"
    )
    keep = s.loc[s["rank"] <= n, ["outcome", "feature"]].drop_duplicates()
    s = s.merge(keep, on=["outcome", "feature"])
    wide = side_by_side(s, ["outcome", "feature"], ["mean_abs_shap", "rank"])
    rank_cols = [c for c in wide.columns if c.startswith("rank ") and not c.endswith("Δ")]
    wide["best"] = wide[rank_cols].min(axis=1)
    wide.insert(2, "ja", [_ja(f) for f in wide["feature"]])
    order = {o: i for i, o in enumerate(dict.fromkeys(shap["outcome"]))}
    wide["order"] = wide["outcome"].map(order)
    wide = wide.sort_values(["order", "best"], kind="stable").drop(columns="order")
    return wide.drop(columns="best").reset_index(drop=True)


def _ja(name: str) -> str:
    try:
        return declaration(name).ja
    except KeyError:
        return ""
