"""Risk on real data without HbA1c: the Korean NHIS checkup sample scored by an engine trained
on a synthetic ward (the issue's finding before the glucose-pattern sub-models: median diabetes
risk 0.2 % even for fasting glucose 110-125 mg/dL, because HbA1c was never measured there).

The sample has no follow-up, so this checks ordering and plausible levels, not calibration:
diabetes risk rises across fasting-glucose bands and is a real risk in 110-125 (impaired
fasting glucose, a few to about ten per cent a year in Asian cohorts), hypertension risk rises
across systolic bands. Skips when ``../shared/data/external/knhis/`` is not beside the checkout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.data.external_samples import ingest_foreign_export, median_by_band
from tests.data.test_external_knhis import SAMPLE, knhis_as_spec_checkups

pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason="no ../shared knhis sample")


@pytest.fixture(scope="module")
def knhis_risks(tmp_path_factory):
    from data.store import read_checkups
    from features.build import FeatureConfig, to_matrix
    from models.config import ModelConfig
    from models.train import train_engine
    from scoring.score import index_features
    from tests.models.ward_helpers import make_ward

    tmp = tmp_path_factory.mktemp("knhis_risk")
    ward = make_ward(tmp / "ward", residents=3_000, years=6, seed=7)
    engine, _ = train_engine(ward.features, ward.labels, ModelConfig(forecasts=False, min_events=0))

    _, store = ingest_foreign_export(knhis_as_spec_checkups(pd.read_csv(SAMPLE)), tmp)
    stored = read_checkups(store)
    stored = stored[stored["age"].between(40, 74)]
    index = stored[["pseudonym", "fiscal_year", "exam_date"]].reset_index(drop=True)
    features = index_features(stored, index, FeatureConfig())
    risk = engine.predict_proba(to_matrix(features, engine.feature_names))
    return features, risk


def test_no_hba1c_is_measured_and_every_risk_is_a_probability(knhis_risks):
    features, risk = knhis_risks
    assert len(features) > 10_000
    assert features["hba1c"].isna().all() and features["fpg"].notna().mean() > 0.99
    values = risk.to_numpy(dtype="float64")
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()


def test_diabetes_risk_follows_fasting_glucose_without_hba1c(knhis_risks):
    features, risk = knhis_risks
    normal, high_normal, impaired = median_by_band(
        features["fpg"], risk["risk_diabetes"], [0, 100, 110, 126]
    )
    assert normal < high_normal < impaired, (normal, high_normal, impaired)
    assert normal <= 0.01
    assert 0.03 <= impaired <= 0.6, impaired  # 0.002 before the pattern sub-models


def test_hypertension_risk_follows_systolic_pressure(knhis_risks):
    features, risk = knhis_risks
    m = median_by_band(features["sbp"], risk["risk_hypertension"], [0, 120, 130, 140])
    assert m[0] < m[1] < m[2], m
