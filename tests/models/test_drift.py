"""Population stability index against the training bins kept with the model."""

from __future__ import annotations

import numpy as np

from models.drift import FeatureReference, psi, psi_status


def _matrix(rng, n, shift=0.0, missing=0.0):
    x = rng.normal(shift, 1.0, size=(n, 2))
    x[rng.random(n) < missing, 1] = np.nan
    return x


def test_same_population_is_stable_and_a_shift_is_flagged():
    rng = np.random.default_rng(0)
    ref = FeatureReference.fit(_matrix(rng, 20_000), ["a", "b"])
    same = ref.table(ref.counts(_matrix(rng, 20_000)), {})
    assert (same["psi"] < 0.01).all() and set(same["status"]) == {"ok"}
    moved = ref.table(ref.counts(_matrix(rng, 20_000, shift=1.0)), {"a": "エー"})
    assert (moved["psi"] > 0.25).all() and set(moved["status"]) == {"shift"}
    assert "エー" in set(moved["label_ja"])


def test_missing_values_are_a_bin_of_their_own():
    rng = np.random.default_rng(1)
    ref = FeatureReference.fit(_matrix(rng, 10_000), ["a", "b"])
    table = ref.table(ref.counts(_matrix(rng, 10_000, missing=0.5)), {}).set_index("feature")
    assert table.loc["b", "status"] == "shift" and table.loc["a", "status"] == "ok"
    assert table.loc["b", "missing_scoring"] > 0.45 and table.loc["b", "missing_reference"] == 0


def test_counts_add_up_over_chunks():
    rng = np.random.default_rng(2)
    ref = FeatureReference.fit(_matrix(rng, 5_000), ["a", "b"])
    x = _matrix(rng, 3_000)
    whole = ref.counts(x)
    parts = [ref.counts(x[:1000]), ref.counts(x[1000:])]
    for name in ("a", "b"):
        np.testing.assert_array_equal(whole[name], parts[0][name] + parts[1][name])


def test_psi_values():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert psi_status(0.05) == "ok" and psi_status(0.2) == "watch" and psi_status(0.3) == "shift"
    assert psi_status(float("nan")) == "n/a"


def test_engine_without_reference_gives_na_rows():
    from models.drift import drift_table

    table = drift_table(None, {}, ["a", "b"], {"a": "エー"})
    assert table["feature"].tolist() == ["a", "b"] and set(table["status"]) == {"n/a"}
    assert table["label_ja"].tolist() == ["エー", "b"] and table["psi"].isna().all()


def test_reference_is_the_latest_training_year():
    """History features fill in as the store gains years: a reference over every training year
    would flag them all; the latest training year (test year − 2) matches today's residents."""
    import pandas as pd

    from features.build import to_matrix
    from models.train import drift_reference

    rng = np.random.default_rng(3)
    years = np.repeat(np.arange(2019, 2025), 2_000)
    # the share of rows with a previous checkup grows with the years in the store
    has_history = rng.random(len(years)) < np.minimum(0.2 * (years - 2018), 0.8)
    frame = pd.DataFrame(
        {
            "fiscal_year": years,
            "age": rng.normal(60, 8, len(years)),
            "weight_kg_change": np.where(has_history, rng.normal(0, 2, len(years)), np.nan),
        }
    )
    names = ["age", "weight_kg_change"]
    ref = drift_reference(frame, names, test_year=2024)
    assert ref.fiscal_year == 2022 and ref.rows == 2_000
    today = frame[frame["fiscal_year"] == 2024]
    table = ref.table(ref.counts(to_matrix(today, names)), {}).set_index("feature")
    assert table.loc["weight_kg_change", "status"] == "ok", table
    everything = FeatureReference.fit(to_matrix(frame[frame["fiscal_year"] <= 2022], names), names)
    shifted = everything.table(everything.counts(to_matrix(today, names)), {})
    assert shifted.set_index("feature").loc["weight_kg_change", "psi"] > 0.1
