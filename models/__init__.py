"""models: calibrated LightGBM risk per outcome, value forecasts, baselines, evaluation (モデル).

Public API (imported lazily, so ``import models`` stays cheap)::

    from models import ModelConfig, train_and_evaluate
    engine, report = train_and_evaluate(features, labels, ModelConfig(), truth=None)
    engine.predict_proba(features)          # risk_<outcome>, calibrated
    engine.predict_values(features)         # <item>_p10 / _p50 / _p90, next fiscal year
    engine.contributions(features, "diabetes")  # native SHAP, log-odds, + bias
    report.summary(); report.metrics; report.synthetic; report.forecasts; report.splits

Modules: config (typed settings), split (temporal, person-grouped), targets (next-year values),
calibration, train (TrainedEngine), baselines (logistic regression, points score), evaluate
(metrics, slices, oracle ratio, driver agreement), run (train_and_evaluate), engine (the one
MLflow pyfunc ``kenshin-risk``), registry (tracking, logging, registration, promotion gate).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ModelConfig": "models.config",
    "LGBMParams": "models.config",
    "ForecastConfig": "models.config",
    "SplitConfig": "models.config",
    "FORECAST_ITEMS": "models.config",
    "TrainedEngine": "models.train",
    "train_engine": "models.train",
    "EvaluationReport": "models.evaluate",
    "evaluate_engine": "models.run",
    "train_and_evaluate": "models.run",
    # MLflow (importing these imports mlflow: slow, only when used)
    "KenshinRiskEngine": "models.engine",
    "FeatureSchemaError": "models.engine",
    "PromotionPolicy": "models.registry",
    "PromotionDecision": "models.registry",
    "log_training_run": "models.registry",
    "promote": "models.registry",
    "tracking_uri": "models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
