"""The Framingham benchmark: the whole pipeline on a real cohort (models beside their evaluation).

data.framingham adapts the teaching dataset to the input contract; this module runs adapt →
bundle → ingest (temporary store) → features and labels → train → test AUCs, with a model
configuration sized for its ~7,000 index rows.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data.framingham import relabel_diabetes, write_framingham_bundle

__all__ = ["FraminghamResult", "framingham_benchmark", "framingham_config"]


def framingham_config(seed: int = 0):
    """ModelConfig for ~7,000 index rows: small trees, person split, no value forecasts."""
    from models.config import LGBMParams, ModelConfig, SplitConfig

    return ModelConfig(
        outcomes=("hypertension", "diabetes"),
        lgbm=LGBMParams(
            num_leaves=7,
            max_depth=3,
            learning_rate=0.03,
            n_estimators=1000,
            early_stopping_rounds=100,
            min_child_samples=40,
            seed=seed,
        ),  # fmt: skip
        split=SplitConfig(group="person", test_person_share=0.3, val_person_share=0.25),
        top_k=200,
        age_bands=((30, 49), (50, 59), (60, 69), (70, 99)),
        forecasts=False,
    )


@dataclass
class FraminghamResult:
    """Test AUCs per outcome and model, the member chosen on validation, row counts."""

    auc: pd.DataFrame  # outcome × (engine, lightgbm, logistic, points)
    selection: pd.DataFrame  # candidates' validation AUC per outcome, chosen flag
    splits: pd.DataFrame  # rows / events per outcome and split
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    def table(self) -> pd.DataFrame:
        chosen = self.selection[self.selection["chosen"]].set_index("outcome")
        out = self.auc.copy()
        out["member"] = chosen["member"].reindex(out.index)
        out["weight"] = chosen["weight"].reindex(out.index)
        return out


def framingham_benchmark(path: Path | None = None, seed: int = 0) -> FraminghamResult:
    """Adapt → bundle → ingest (tmp store) → features/labels → train → test AUCs."""
    from data.ingest import ingest
    from data.store import read_checkups
    from features import build_features, build_labels
    from models.run import train_and_evaluate

    old = os.environ.get("KENSHIN_PSEUDONYM_KEY")
    os.environ.setdefault("KENSHIN_PSEUDONYM_KEY", "framingham-benchmark")
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            write_framingham_bundle(tmp / "bundle", path)
            ingest(tmp / "bundle", tmp / "store")
            stored = read_checkups(tmp / "store")
    finally:
        if old is None:
            os.environ.pop("KENSHIN_PSEUDONYM_KEY", None)
    features = build_features(stored)
    labels = relabel_diabetes(stored, build_labels(stored))
    config = framingham_config(seed)
    _, report = train_and_evaluate(features, labels, config)
    m = report.metrics[report.metrics["slice"] == "all"]
    auc = m.pivot(index="outcome", columns="model", values="auc")
    auc = auc[[c for c in ("engine", "lightgbm", "logistic", "points") if c in auc]]
    auc = auc.reindex(list(config.outcomes))
    return FraminghamResult(auc, report.selection, report.splits, report.summary())
