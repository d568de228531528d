"""Risk on real data with both glucose items: NHANES 2013-2014 (US adults aged 40-74) scored
by the session's engine (a synthetic 12k ward, tests/models/conftest.py).

The Korean NHIS sample has fasting glucose only; here the same people have HbA1c too, and the
fasting subsample's glucose, so each glucose pattern meets a real joint distribution: the
fully measured (fasting draws), HbA1c only (non-fasting draws, routed to their pattern's
model) and, with HbA1c masked, fasting glucose only. No follow-up: this checks ordering and
plausible levels, not calibration. Among people free of diabetes, incidence rises steeply
across HbA1c < 5.7 / 5.7-5.9 / 6.0-6.4 % (a 5-year risk of 25-50 % at 6.0-6.5 in the
prospective cohorts reviewed by Zhang et al., Diabetes Care 2010;33:1665) and across fasting
glucose < 100 / 100-109 / 110-125 mg/dL. Skips when ``../shared/data/external/nhanes/`` is not
beside the checkout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.data.test_external_nhanes import SAMPLE, ingest_nhanes

pytestmark = pytest.mark.skipif(not SAMPLE.is_file(), reason="no ../shared nhanes sample")


@pytest.fixture(scope="module")
def nhanes_risks(trained, tmp_path_factory):
    from data.store import read_checkups
    from features.build import FeatureConfig, to_matrix
    from scoring.score import index_features

    _, _, store = ingest_nhanes(tmp_path_factory.mktemp("nhanes_risk"))
    stored = read_checkups(store)
    stored = stored[stored["age"].between(40, 74)]
    index = stored[["pseudonym", "fiscal_year", "exam_date"]].reset_index(drop=True)
    engine = trained.engine

    def risks(checkups: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        features = index_features(checkups, index, FeatureConfig())
        return features, engine.predict_proba(to_matrix(features, engine.feature_names))

    features, risk = risks(stored)
    _, without_hba1c = risks(stored.assign(hba1c=np.nan))
    return features, risk, without_hba1c


def _free_of(features: pd.DataFrame, medication: str) -> np.ndarray:
    return (features[medication] == 2).fillna(False).to_numpy(dtype=bool)


def _medians(values: pd.Series, risk: pd.Series, edges: list[float]) -> np.ndarray:
    band = pd.cut(pd.to_numeric(values, errors="coerce"), edges, right=False)
    return risk.groupby(band, observed=False).median().to_numpy()


def _not_diabetic(features: pd.DataFrame) -> np.ndarray:
    below = (features["hba1c"] < 6.5) | features["hba1c"].isna()
    below &= (features["fpg"] < 126) | features["fpg"].isna()
    return below.fillna(False).to_numpy(dtype=bool) & _free_of(features, "q_med_glucose")


def test_every_risk_is_a_probability_and_both_panels_are_there(nhanes_risks):
    features, risk, without_hba1c = nhanes_risks
    assert len(features) >= 3_100
    for r in (risk, without_hba1c):
        values = r.to_numpy(dtype="float64")
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    free = _not_diabetic(features)
    both = free & features[["hba1c", "fpg"]].notna().all(axis=1).to_numpy()
    hba1c_only = free & features["hba1c"].notna().to_numpy() & features["fpg"].isna().to_numpy()
    assert both.sum() >= 900 and hba1c_only.sum() >= 1_200


@pytest.mark.parametrize("panel", ["both", "hba1c_only"])
def test_diabetes_risk_follows_hba1c(nhanes_risks, panel):
    """Fasting draws (both items) and non-fasting draws (HbA1c only: their pattern's model)."""
    features, risk, _ = nhanes_risks
    has_fpg = features["fpg"].notna().to_numpy()
    rows = _not_diabetic(features) & features["hba1c"].notna().to_numpy()
    rows &= has_fpg if panel == "both" else ~has_fpg
    normal, high_normal, pre = _medians(
        features.loc[rows, "hba1c"], risk.loc[rows, "risk_diabetes"], [0, 5.7, 6.0, 6.5]
    )
    assert normal < high_normal < pre, (normal, high_normal, pre)
    assert normal <= 0.01
    assert 0.01 <= pre <= 0.5, pre


def test_without_hba1c_diabetes_risk_follows_fasting_glucose(nhanes_risks):
    """The fully measured residents with HbA1c removed: the fasting-glucose-only model."""
    features, _, without_hba1c = nhanes_risks
    rows = _not_diabetic(features) & features[["hba1c", "fpg"]].notna().all(axis=1).to_numpy()
    normal, high_normal, impaired = _medians(
        features.loc[rows, "fpg"], without_hba1c.loc[rows, "risk_diabetes"], [0, 100, 110, 126]
    )
    assert normal < high_normal < impaired, (normal, high_normal, impaired)
    assert normal <= 0.01
    assert 0.03 <= impaired <= 0.6, impaired


def test_hypertension_and_dyslipidaemia_follow_their_items(nhanes_risks):
    features, risk, _ = nhanes_risks
    untreated = _free_of(features, "q_med_bp")
    m = _medians(features.loc[untreated, "sbp"], risk.loc[untreated, "risk_hypertension"],
                 [0, 120, 130, 140])  # fmt: skip
    assert m[0] < m[1] < m[2], m
    untreated = _free_of(features, "q_med_lipid")
    m = _medians(features.loc[untreated, "ldl"], risk.loc[untreated, "risk_dyslipidemia"],
                 [0, 100, 120, 140])  # fmt: skip
    assert m[0] < m[1] < m[2], m
