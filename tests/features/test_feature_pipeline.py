"""Store → features + labels on a small synthetic ward (data.synth → data.ingest)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.columns import OUTCOMES
from data.pseudonym import pseudonymise
from data.store import read_checkups, read_enrollment
from features import (
    TrainingTablesConfig,
    build_features,
    build_training_tables,
    follow_up_report,
    training_set,
)
from features.declarations import KEYS
from features.labels import LabelConfig
from tests.conftest import TEST_KEY


@pytest.fixture(scope="module")
def ward_store(small_ward, tmp_path_factory):
    from data.ingest import ingest
    from data.synth import write_bundle

    root = tmp_path_factory.mktemp("ward")
    write_bundle(small_ward, root / "bundle")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KENSHIN_PSEUDONYM_KEY", TEST_KEY)
        ingest(root / "bundle", root / "store")
    return root / "store"


def test_training_tables_from_store(ward_store, small_ward):
    feats, labels = build_training_tables(ward_store)
    pd.testing.assert_frame_equal(feats[list(KEYS)], labels[list(KEYS)])
    assert len(feats) > 1000
    X, y, keys = training_set(feats, labels, "hypertension")
    assert 0 < y.mean() < 0.5 and len(X) == len(keys)

    truth = small_ward.truth.copy()
    truth["pseudonym"] = pseudonymise(truth["person_id"].astype("string"), TEST_KEY.encode())
    report = follow_up_report(labels, truth, read_enrollment(ward_store)).set_index("outcome")
    assert list(report.index) == list(OUTCOMES)
    assert (report["with_follow_up"] > 0).all()
    assert (report["without_follow_up_left_nhi"] + report["without_follow_up_skipped"]).equals(
        report["without_follow_up"]
    )
    assert report["p_true_with_follow_up"].between(0, 1).all()

    h2 = build_training_tables(ward_store, TrainingTablesConfig(labels=LabelConfig(2)))[1]
    assert h2["in_window"].sum() < labels["in_window"].sum()


def test_no_leakage_on_synthetic_histories(ward_store):
    """Features of fiscal year t built from the whole store equal those built from ≤ t."""
    checkups = read_checkups(ward_store)
    full = build_features(checkups)
    years = sorted(checkups["fiscal_year"].dropna().unique())
    t = int(years[len(years) // 2])
    cut = build_features(checkups[checkups["fiscal_year"] <= t])
    a = full[full["fiscal_year"] == t].reset_index(drop=True)
    b = cut[cut["fiscal_year"] == t].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert np.isfinite(a["hba1c_slope"]).any()
