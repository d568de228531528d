"""The whole risk engine as ONE MLflow pyfunc model (リスクエンジン): ``kenshin-risk``.

Input: the as-of feature table of :func:`features.build_features` — exactly the declared feature
columns (the key columns ``pseudonym``, ``fiscal_year``, ``exam_date`` may be present and are
ignored). Output: one row per input row, ``risk_<outcome>`` (calibrated probability of each
outcome by the next checkup) and ``<item>_p10/_p50/_p90`` (next year's value with its 80%
interval). Input whose columns differ from the declared feature set is refused with
:class:`FeatureSchemaError` naming the missing and unexpected columns.

The pyfunc carries the feature-set version and names and the fitted :class:`TrainedEngine`
(outcome boosters, calibrators, quantile forecasts). SHAP contributions from a loaded model::

    m = mlflow.pyfunc.load_model("models:/kenshin-risk@champion")
    m.unwrap_python_model().engine.contributions(features, "diabetes")

This module imports MLflow (slow); ``import models`` does not import it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.declarations import KEYS
from models.forecast_distribution import quantile_columns
from models.train import TrainedEngine

__all__ = [
    "CODE_PACKAGES",
    "FeatureSchemaError",
    "KenshinRiskEngine",
    "check_feature_frame",
    "input_example",
    "pip_requirements",
    "staged_code_paths",
]

#: Project packages the pickled engine needs at load time (shipped with the model).
CODE_PACKAGES = ("data", "features", "models", "kenshin")
_REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "pandera")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class FeatureSchemaError(ValueError):
    """Input of the risk engine does not have the declared feature columns."""


def check_feature_frame(
    frame: pd.DataFrame, names: list[str], version: str, max_listed: int = 8
) -> pd.DataFrame:
    """The declared feature columns of ``frame`` in declared order, or FeatureSchemaError."""
    if not isinstance(frame, pd.DataFrame):
        raise FeatureSchemaError(
            f"kenshin-risk expects a pandas DataFrame of features, got {type(frame).__name__}"
        )
    missing = [n for n in names if n not in frame.columns]
    extra = [c for c in frame.columns if c not in names and c not in KEYS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} declared column(s) {missing[:max_listed]}")
        if extra:
            parts.append(f"unexpected column(s) {extra[:max_listed]}")
        raise FeatureSchemaError(
            f"input does not match feature set {version} ({len(names)} declared features): "
            + "; ".join(parts)
            + ". Build the input with features.build_features from the same kenshin version."
        )
    return frame[names]


class KenshinRiskEngine(mlflow.pyfunc.PythonModel):
    """Risk per outcome + value forecasts from the as-of feature table (see module doc).

    ``predict`` is typed ``pd.DataFrame`` (MLflow infers nothing from that hint and keeps
    the explicit signature); the column check is the engine's own.
    """

    def __init__(self, engine: TrainedEngine, tables_config=None) -> None:
        self.engine = engine
        #: features.TrainingTablesConfig the training features were built with (or None)
        self.tables_config = tables_config
        self.feature_set_version = engine.feature_set_version
        self.feature_names = list(engine.feature_names)
        self.outcomes = tuple(engine.outcomes)
        self.forecast_items = tuple(engine.forecast_items)

    def output_columns(self) -> list[str]:
        cols = [f"risk_{o}" for o in self.outcomes]
        for item in self.forecast_items:
            cols += quantile_columns(item, self.engine.quantiles)
        return cols

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """``risk_<outcome>`` and ``<item>_p10/_p50/_p90`` per row (same index as the input)."""
        X = check_feature_frame(model_input, self.feature_names, self.feature_set_version)
        out = self.engine.predict_proba(X)
        if self.forecast_items:
            out = pd.concat([out, self.engine.predict_values(X)], axis=1)
        return out

    def contributions(self, features: pd.DataFrame, outcome: str) -> pd.DataFrame:
        """Native SHAP values (log-odds) per declared feature + ``bias``, after the schema check."""
        X = check_feature_frame(features, self.feature_names, self.feature_set_version)
        return self.engine.contributions(X, outcome)


def input_example(features: pd.DataFrame, names: list[str], rows: int = 3) -> pd.DataFrame:
    """A few synthetic rows for the signature: per-column quantiles, never a real person's row.

    Each column's value is its own (nearest-rank) quantile over the table, so no example row is
    any resident's record, and no key column (pseudonym, dates) is included. All float64 (the
    engine reads every feature as float64; missing = NaN).
    """
    qs = np.linspace(0.25, 0.75, rows) if rows > 1 else np.array([0.5])
    X = pd.DataFrame({n: features[n].to_numpy(dtype="float64", na_value=np.nan) for n in names})
    ex = X.quantile(qs, interpolation="nearest").reset_index(drop=True)
    return ex.astype("float64")


def staged_code_paths(target: Path) -> list[str]:
    """Copy the project packages' Python sources (no data files, no caches) under ``target``."""
    out = []
    for pkg in CODE_PACKAGES:
        src = PROJECT_ROOT / pkg
        dst = target / pkg
        shutil.copytree(
            src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "reference")
        )
        out.append(str(dst))
    return out


def pip_requirements() -> list[str]:
    """Pinned runtime requirements of the engine (explicit: no inference subprocess)."""
    reqs = []
    for dist in _REQUIREMENTS:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # pragma: no cover
            reqs.append(dist)
    return reqs


def log_engine(
    engine: TrainedEngine,
    features: pd.DataFrame,
    name: str = "model",
    registered_model_name: str | None = None,
    tables_config=None,
):
    """Log the engine as one pyfunc (signature + synthetic input example + code); return info."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    wrapper = KenshinRiskEngine(engine, tables_config)
    example = input_example(features, wrapper.feature_names)
    inferred = infer_signature(example, wrapper.predict(None, example))
    # Inputs optional in MLflow's own check, so a missing column reaches the engine's clear
    # FeatureSchemaError (MLflow's message would print the data, pseudonyms included).
    inputs = Schema([ColSpec(c.type, c.name, required=False) for c in inferred.inputs.inputs])
    signature = ModelSignature(inputs=inputs, outputs=inferred.outputs)
    quiet = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.utils.environment")]
    levels = [lg.level for lg in quiet]
    with tempfile.TemporaryDirectory(prefix="kenshin-code-") as tmp:
        for lg in quiet:  # cloudpickle notice, pip version: noise for every run
            lg.setLevel(logging.ERROR)
        code = staged_code_paths(Path(tmp))
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=wrapper,
                signature=signature,
                input_example=example,
                code_paths=code,
                pip_requirements=pip_requirements(),
                registered_model_name=registered_model_name,
            )
        finally:
            for lg, level in zip(quiet, levels, strict=True):
                lg.setLevel(level)
