"""Framingham adapter: contract mapping, ingest, labels; the benchmark on the real data.

The teaching dataset is not part of the repository (NHLBI: "inappropriate for publication
purposes"); tests needing it skip when ``../shared/data/external/framingham/frmgham2.csv``
(or ``$KENSHIN_FRAMINGHAM_CSV``) is absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.framingham import BASE_FISCAL_YEAR, adapt, default_path, relabel_diabetes

pytestmark = pytest.mark.skipif(
    not default_path().exists(),
    reason=f"Framingham teaching dataset not found at {default_path()} (not shipped)",
)


@pytest.fixture(scope="module")
def raw():
    return pd.read_csv(default_path())


def test_adapter_maps_each_exam_to_a_checkup(raw):
    checkups, enrollment = adapt(raw)
    assert len(checkups) == len(raw) == 11_627
    assert checkups["person_id"].nunique() == len(enrollment) == 4_434
    fy = pd.to_datetime(checkups["exam_date"]).dt.year  # May-October: calendar = fiscal year
    assert set(fy) == {BASE_FISCAL_YEAR, BASE_FISCAL_YEAR + 1, BASE_FISCAL_YEAR + 2}
    assert checkups.groupby("person_id")["birth_date"].nunique().max() == 1
    assert set(checkups["q_med_glucose"].dropna()) <= {1, 2}
    assert set(checkups["q_smoking"].dropna()) <= {1, 2}
    first = raw.sort_values(["RANDID", "PERIOD"]).drop_duplicates("RANDID")
    age0 = (
        (
            pd.to_datetime(checkups.drop_duplicates("person_id")["exam_date"]).to_numpy()
            - pd.to_datetime(checkups.drop_duplicates("person_id")["birth_date"]).to_numpy()
        )
        / np.timedelta64(1, "D")
        / 365.25
    )
    assert np.abs(age0 - first["AGE"].to_numpy() - 0.5).max() < 0.02


def test_ingest_and_labels(tmp_path, monkeypatch):
    from data.framingham import write_framingham_bundle
    from data.ingest import ingest
    from data.store import read_checkups
    from features import build_labels

    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", "framingham-test-key")
    write_framingham_bundle(tmp_path / "bundle")
    res = ingest(tmp_path / "bundle", tmp_path / "store")
    assert res.accounting["checkups"].loaded >= 11_500  # a few SBP ≤ DBP rows may be rejected
    stored = read_checkups(tmp_path / "store")
    assert set(stored["q_smoking"].dropna()) <= {1, 3}  # harmonised to the canonical codes
    labels = relabel_diabetes(stored, build_labels(stored))
    for o, lo, hi in (("hypertension", 0.15, 0.40), ("diabetes", 0.01, 0.08)):
        known = labels[labels[f"at_risk_{o}"] & labels[f"y_{o}"].notna()]
        rate = known[f"y_{o}"].astype(float).mean()
        assert 2_000 < len(known) and lo < rate < hi, (o, len(known), rate)


def hanley_mcneil_se(auc, n_pos, n_neg):
    """Standard error of a paired AUC difference with correlation 0.5 (= one AUC's SE)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return np.sqrt(var)


def test_benchmark_engine_does_not_lose_to_logistic_regression():
    from models.framingham import framingham_benchmark

    res = framingham_benchmark()
    t = res.table()
    assert list(t.index) == ["hypertension", "diabetes"]
    assert (t["engine"] > 0.65).all() and (t["logistic"] > 0.65).all()
    # Selection is by validation, so on test the engine may trail LR by noise only: one
    # standard error of a paired AUC difference (Hanley & McNeil 1982, r = 0.5) on the test
    # split, about 0.017 for hypertension; a real loss (the item-only diabetes fallback lost
    # 0.08) fails.
    test = res.splits[res.splits["split"] == "test"].set_index("outcome").reindex(t.index)
    se = hanley_mcneil_se(t["logistic"], test["events"], test["rows"] - test["events"])
    assert (t["engine"] >= t["logistic"] - se).all(), (t, se)
    assert set(t["member"]) <= {"lightgbm", "blend", "logistic"}
