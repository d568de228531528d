"""Feature builder: no leakage from the future, determinism, hand-computed history features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.columns import MEASUREMENT_COLUMNS
from data.validate import CODES
from features import FeatureConfig, build_features, feature_names
from features.build import alcohol_g_per_day
from features.declarations import KEYS
from features.schemas import FEATURES_SCHEMA
from tests.features.feature_helpers import fake_checkups, pseudonym

FAST = FeatureConfig(validate=False)


def _row(features: pd.DataFrame, pid: str, fy: int) -> pd.Series:
    hit = features[(features["pseudonym"] == pid) & (features["fiscal_year"] == fy)]
    assert len(hit) == 1
    return hit.iloc[0]


def _assert_rows_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Full rows equal, NaN/NA equal to NaN/NA, dtypes included."""
    pd.testing.assert_frame_equal(
        a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True
    )


def _future_changes(checkups: pd.DataFrame, rng: np.random.Generator, index: pd.DataFrame):
    """Variants of ``checkups`` that differ only after each chosen person's index exam."""
    cut = checkups["pseudonym"].map(index.set_index("pseudonym")["exam_date"])
    later = (checkups["exam_date"] > cut).to_numpy()  # NaT (other persons) → False
    assert later.any()

    perturbed = checkups.copy()
    for col in MEASUREMENT_COLUMNS:  # every measurement: present → changed, missing → present
        v = perturbed.loc[later, col].astype("float64")
        new = np.where(v.isna(), 100.0, v * 1.3 + 1.0).round()
        perturbed.loc[later, col] = pd.array(new, dtype="Float64").astype(checkups[col].dtype)
    for col in CODES:  # every code: present → missing, missing → the first allowed code
        v = perturbed.loc[later, col]
        new = np.where(v.isna(), CODES[col][0], np.nan)
        perturbed.loc[later, col] = pd.array(new, dtype="Float64").astype(checkups[col].dtype)
    perturbed.loc[later, "age"] = perturbed.loc[later, "age"] + 1
    perturbed.loc[later, "exam_date"] = perturbed.loc[later, "exam_date"] + pd.Timedelta(days=3)

    deleted = checkups.loc[~later]

    # add one checkup per chosen person in each later fiscal year, as a copy of a random row
    donors = checkups.sample(len(index), random_state=int(rng.integers(1 << 31)))
    added = donors.copy()
    added["pseudonym"] = index["pseudonym"].to_numpy()
    added["fiscal_year"] = (index["fiscal_year"].astype(int) + 1).astype("Int16").to_numpy()
    added["exam_date"] = (index["exam_date"] + pd.Timedelta(days=400)).to_numpy()
    extra = pd.concat([checkups.loc[~later], added], ignore_index=True)
    return {"perturbed": perturbed, "deleted": deleted, "added": extra}


def _index_sample(features: pd.DataFrame, rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Random (person, index row) pairs, one per person, not the person's last row."""
    has_later = (
        features.groupby("pseudonym")["fiscal_year"].transform("max") > features["fiscal_year"]
    )
    pool = features.loc[has_later, list(KEYS)]
    pick = pool.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
    return pick.drop_duplicates("pseudonym").head(n).reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_feature_at_t_depends_on_later_checkups(seed):
    rng = np.random.default_rng(seed)
    checkups = fake_checkups(300, years=6, seed=seed)
    base = build_features(checkups, FAST)
    index = _index_sample(base, rng, 40)
    for name, variant in _future_changes(checkups, rng, index).items():
        out = build_features(variant, FAST)
        assert not out.equals(base), name  # the change did reach later rows
        keys = index[["pseudonym", "fiscal_year"]]
        a = base.merge(keys, on=["pseudonym", "fiscal_year"])
        b = out.merge(keys, on=["pseudonym", "fiscal_year"])
        assert len(a) == len(index) == len(b), name
        _assert_rows_equal(a, b)


def test_rows_before_index_are_unchanged_by_history_truncation():
    """Building from the history cut at t gives the same row as building from everything."""
    checkups = fake_checkups(200, years=6, seed=9)
    full = build_features(checkups, FAST)
    for fy in (2020, 2022):
        cut = build_features(checkups[checkups["fiscal_year"] <= fy], FAST)
        a = full[full["fiscal_year"] == fy]
        b = cut[cut["fiscal_year"] == fy]
        _assert_rows_equal(a, b)


def test_deterministic_under_shuffled_input():
    checkups = fake_checkups(400, years=5, seed=3)
    a = build_features(checkups)
    shuffled = checkups.sample(frac=1.0, random_state=7).reset_index(drop=True)
    b = build_features(shuffled)
    _assert_rows_equal(a, b)
    assert list(a.columns) == [*KEYS, *feature_names()]


def test_last_only_is_each_persons_last_row_of_the_whole_table():
    checkups = fake_checkups(400, years=5, seed=9)
    whole = build_features(checkups)
    last = build_features(checkups, last_only=True)
    assert len(last) == checkups["pseudonym"].nunique() < len(whole)
    _assert_rows_equal(last, whole.drop_duplicates("pseudonym", keep="last"))


def test_output_matches_schema_and_is_unique_per_year():
    checkups = fake_checkups(300, years=4, seed=5)
    out = build_features(checkups)
    FEATURES_SCHEMA.validate(out)
    assert not out.duplicated(["pseudonym", "fiscal_year"]).any()
    # the extra same-year checkups are history, not index rows
    assert len(out) == checkups.groupby(["pseudonym", "fiscal_year"]).ngroups
    assert (out.dtypes.astype(str) != "category").all()


def _history() -> pd.DataFrame:
    """One person, three checkups: 2021-06-01, 2022-06-01, 2024-05-31 (fiscal 2021, 2022, 2024)."""
    base = fake_checkups(1, years=1, seed=0).iloc[[0]]
    rows = pd.concat([base] * 3, ignore_index=True)
    rows["pseudonym"] = pd.array([pseudonym(42)] * 3, dtype="string")
    rows["exam_date"] = pd.to_datetime(["2021-06-01", "2022-06-01", "2024-05-31"])
    rows["fiscal_year"] = pd.array([2021, 2022, 2024], dtype="Int16")
    rows["age"] = pd.array([60, 61, 63], dtype="Int16")
    rows["hba1c"] = [5.6, 5.9, 6.4]
    rows["weight_kg"] = [70.0, np.nan, 74.0]
    rows["sbp"] = pd.array([120, 130, pd.NA], dtype="Int16")
    rows["q_smoking"] = pd.array([1, 1, 2], dtype="Int8")
    rows["q_alcohol_freq"] = pd.array([1, 1, 8], dtype="Int8")
    rows["q_alcohol_amount"] = pd.array([2, 2, pd.NA], dtype="Int8")
    return rows


def test_change_and_slope_hand_computed():
    out = build_features(_history()).set_index("fiscal_year")
    d = pd.to_datetime(["2021-06-01", "2022-06-01", "2024-05-31"])
    x = ((d - d[0]).days / 365.25).to_numpy()
    # first checkup: no history
    r0 = out.loc[2021]
    assert r0["n_prior_checkups"] == 0 and np.isnan(r0["years_since_previous"])
    assert np.isnan(r0["hba1c_change"]) and np.isnan(r0["hba1c_slope"])
    # second: two points
    r1 = out.loc[2022]
    assert r1["n_prior_checkups"] == 1
    assert r1["years_since_previous"] == pytest.approx(x[1])
    assert r1["hba1c_change"] == pytest.approx(0.3)
    assert r1["hba1c_slope"] == pytest.approx(0.3 / x[1])
    assert np.isnan(r1["weight_kg_change"]) and np.isnan(r1["weight_kg_slope"])
    assert r1["sbp_change"] == 10 and r1["sbp_slope"] == pytest.approx(10 / x[1])
    # third: least squares over three points
    r2 = out.loc[2024]
    assert r2["n_prior_checkups"] == 2
    assert r2["years_since_previous"] == pytest.approx(x[2] - x[1])
    assert r2["hba1c_change"] == pytest.approx(0.5)
    expected = np.polyfit(x, [5.6, 5.9, 6.4], 1)[0]
    assert r2["hba1c_slope"] == pytest.approx(expected)
    # weight missing in the middle: change vs the previous checkup is missing, slope uses 2 points
    assert np.isnan(r2["weight_kg_change"])
    assert r2["weight_kg_slope"] == pytest.approx(4.0 / x[2])
    # latest SBP missing: no change, slope from the two earlier points
    assert np.isnan(r2["sbp"]) and np.isnan(r2["sbp_change"])
    assert r2["sbp_slope"] == pytest.approx(10 / x[1])
    # derived: smoker and alcohol follow the latest answers
    assert r1["current_smoker"] == 1 and r2["current_smoker"] == 0
    assert r1["alcohol_g_per_day"] == pytest.approx(7 * 1.5 * 20 / 7)
    assert r2["alcohol_g_per_day"] == 0 and r2["risky_drinking"] == 0
    assert r2["age"] == 63


def test_history_levels_of_noisy_items_hand_computed():
    """A dipstick's persistence, a smoothed eGFR and lipids: over the index checkup and the two
    before it, measured values only, missing when the index checkup did not measure the item;
    never from another person's checkups."""
    one = _history()
    one["urine_protein"] = pd.array([4, 1, 2], dtype="Int8")  # ++, −, ±
    one["egfr"] = [58.0, np.nan, 64.0]
    one["ldl"], one["hdl"] = [150.0, 130.0, 122.0], [40.0, 44.0, np.nan]
    two = _history().iloc[[0, 1]].copy()
    two["pseudonym"] = pd.array([pseudonym(43)] * 2, dtype="string")
    two["urine_protein"] = pd.array([1, pd.NA], dtype="Int8")
    two["egfr"] = [90.0, 88.0]
    out = build_features(pd.concat([one, two], ignore_index=True))
    a = out[out["pseudonym"] == pseudonym(42)].set_index("fiscal_year")
    assert pd.isna(a.loc[2021, "urine_protein_prev"]) and a.loc[2021, "urine_protein_max3"] == 4
    assert a.loc[2022, "urine_protein_prev"] == 4 and a.loc[2022, "urine_protein_max3"] == 4
    assert a.loc[2024, "urine_protein_prev"] == 1 and a.loc[2024, "urine_protein_max3"] == 4
    assert a.loc[2021, "egfr_mean3"] == 58.0
    assert np.isnan(a.loc[2022, "egfr_mean3"])  # not measured at that checkup
    assert a.loc[2024, "egfr_mean3"] == pytest.approx(61.0)  # 58 and 64; the gap skipped
    assert a.loc[2022, "ldl_mean3"] == 140.0 and a.loc[2024, "ldl_mean3"] == pytest.approx(134.0)
    assert a.loc[2022, "hdl_mean3"] == 42.0 and np.isnan(a.loc[2024, "hdl_mean3"])
    b = out[out["pseudonym"] == pseudonym(43)].set_index("fiscal_year")
    assert pd.isna(b.loc[2021, "urine_protein_prev"])  # the first checkup: none of 42's
    assert pd.isna(b.loc[2022, "urine_protein_max3"])  # not measured
    assert b.loc[2021, "urine_protein_max3"] == 1 and b.loc[2022, "egfr_mean3"] == 89.0


def test_recent_values_stand_in_for_one_not_measured():
    """``<item>_recent``: the index value, else the latest measured before it (two back too),
    never another person's."""
    rows = _history()
    rows["hba1c"] = [5.6, np.nan, np.nan]
    rows["fpg"] = [98.0, 104.0, np.nan]
    rows["egfr"] = [np.nan, 71.0, 66.0]
    out = build_features(rows).set_index("fiscal_year")
    assert out.loc[2021, "hba1c_recent"] == 5.6  # measured: its own value
    assert out.loc[2022, "hba1c_recent"] == 5.6  # not measured: the previous checkup's
    assert out.loc[2024, "hba1c_recent"] == 5.6  # nor before: the latest measured, two back
    assert out.loc[2024, "fpg_recent"] == 104.0 and np.isnan(out.loc[2024, "fpg"])
    assert np.isnan(out.loc[2021, "egfr_recent"]) and out.loc[2024, "egfr_recent"] == 66.0
    # a person sorted right after 42, whose only checkup lacks HbA1c: 42's 5.6 is not theirs
    after = next(i for i in range(43, 200) if pseudonym(i) > pseudonym(42))
    other = _history().iloc[[0]].copy()
    other["pseudonym"] = pd.array([pseudonym(after)], dtype="string")
    other["hba1c"] = [np.nan]
    both = build_features(pd.concat([rows, other], ignore_index=True))
    assert np.isnan(both.loc[both["pseudonym"] == pseudonym(after), "hba1c_recent"]).all()


def test_slope_window_two_uses_only_the_last_two_checkups():
    out = build_features(_history(), FeatureConfig(slope_window=2)).set_index("fiscal_year")
    d = pd.to_datetime(["2022-06-01", "2024-05-31"])
    assert out.loc[2024, "hba1c_slope"] == pytest.approx(0.5 / ((d[1] - d[0]).days / 365.25))


def test_alcohol_estimate():
    g = alcohol_g_per_day([1, 4, 7, 8, 1, None], [3, 1, 5, None, None, 2])
    assert g[0] == pytest.approx(7 * 2.5 * 20 / 7)
    assert g[1] == pytest.approx(1.5 * 0.5 * 20 / 7)
    assert g[2] == 0 and g[3] == 0
    assert np.isnan(g[4]) and np.isnan(g[5])


def test_bad_input_is_named():
    checkups = fake_checkups(5, years=2, seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        build_features(pd.concat([checkups, checkups.iloc[[0]]]))
    with pytest.raises(ValueError, match="hba1c"):
        build_features(checkups.drop(columns="hba1c"))
    with pytest.raises(ValueError, match="slope_window"):
        FeatureConfig(slope_window=4)
