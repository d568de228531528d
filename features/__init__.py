"""features: as-of feature rows, outcome labels and the feature declarations (特徴量).

Public API::

    from features import build_features, build_labels, training_set, follow_up_report
    from features import FeatureConfig, LabelConfig, build_training_tables
    from features.declarations import DECLARATIONS, feature_names, FEATURE_SET_VERSION
"""

from features.build import FeatureConfig, build_features
from features.declarations import FEATURE_SET_VERSION, feature_names
from features.labels import LabelConfig, build_labels, follow_up_report, training_set
from features.tables import TrainingTablesConfig, build_training_tables

__all__ = [
    "FEATURE_SET_VERSION",
    "FeatureConfig",
    "LabelConfig",
    "TrainingTablesConfig",
    "build_features",
    "build_labels",
    "build_training_tables",
    "feature_names",
    "follow_up_report",
    "training_set",
]
