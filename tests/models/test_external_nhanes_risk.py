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

from tests.data.external_samples import median_by_band
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


#: case → (the draws, the risks scored, the item banded, its band edges, the top band's range)
DIABETES_CASES = {
    "fasting draws, by HbA1c": ("both", "as measured", "hba1c", [0, 5.7, 6.0, 6.5], (0.01, 0.5)),
    "non-fasting draws (HbA1c only), by HbA1c": (
        "hba1c_only", "as measured", "hba1c", [0, 5.7, 6.0, 6.5], (0.01, 0.5),
    ),
    "fasting draws with HbA1c removed, by fasting glucose": (
        "both", "without HbA1c", "fpg", [0, 100, 110, 126], (0.03, 0.6),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", DIABETES_CASES)
def test_diabetes_risk_follows_the_glucose_item_measured(nhanes_risks, case):
    """Each glucose pattern on its own real rows: the main model (both items), the HbA1c-only
    model (non-fasting draws) and the fasting-glucose-only model (HbA1c removed)."""
    draws, scored, item, edges, (low, high) = DIABETES_CASES[case]
    features, risk, without_hba1c = nhanes_risks
    has_fpg = features["fpg"].notna().to_numpy()
    rows = _not_diabetic(features) & features["hba1c"].notna().to_numpy()
    rows &= has_fpg if draws == "both" else ~has_fpg
    r = (risk if scored == "as measured" else without_hba1c).loc[rows, "risk_diabetes"]
    normal, borderline, top = median_by_band(features.loc[rows, item], r, edges)
    assert normal < borderline < top, (normal, borderline, top)
    assert normal <= 0.01
    assert low <= top <= high, top


def test_hypertension_and_dyslipidaemia_follow_their_items(nhanes_risks):
    features, risk, _ = nhanes_risks
    for item, outcome, medication, edges in (
        ("sbp", "hypertension", "q_med_bp", [0, 120, 130, 140]),
        ("ldl", "dyslipidemia", "q_med_lipid", [0, 100, 120, 140]),
    ):
        untreated = _free_of(features, medication)
        m = median_by_band(features.loc[untreated, item], risk.loc[untreated, f"risk_{outcome}"],
                           edges)  # fmt: skip
        assert m[0] < m[1] < m[2], (outcome, m)
