"""Store → (features, labels): the one call behind ``kenshin features`` / ``kenshin train``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.build import FeatureConfig, build_features
from features.labels import LabelConfig, build_labels

__all__ = ["TrainingTablesConfig", "build_training_tables"]


@dataclass(frozen=True, slots=True)
class TrainingTablesConfig:
    """Feature and label settings together (one typed config for the pipeline step)."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)


def build_training_tables(
    store: Path, config: TrainingTablesConfig | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the store's checkups and build (features, labels), row-aligned on the index rows."""
    from data.store import read_checkups

    config = config or TrainingTablesConfig()
    checkups = read_checkups(Path(store))
    return build_features(checkups, config.features), build_labels(checkups, config.labels)
