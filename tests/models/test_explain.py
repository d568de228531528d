"""Explanations by clinical item (models.explain, features.declarations ITEMS): exact sums,
shap's own TreeSHAP = LightGBM's native contributions, the driver-agreement definition.

Fast: a small booster on a random matrix with every declared feature (missing values and
monotone constraints as in training). The trained engine of a generated ward is checked in
tests/models/test_model_engine.py.
"""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from data.columns import MEASUREMENT_COLUMNS, QUESTIONNAIRE_COLUMNS
from features.declarations import (
    ITEM_KEYS,
    ITEMS,
    feature_names,
    item,
    item_matrix,
    item_of,
    monotone_constraints,
)
from models.evaluate import driver_agreement
from models.explain import group_contributions, item_data

NAMES = feature_names()


@pytest.fixture(scope="module")
def booster():
    rng = np.random.default_rng(3)
    n = 3000
    X = rng.normal(size=(n, len(NAMES)))
    X[rng.random(X.shape) < 0.15] = np.nan
    j = {f: NAMES.index(f) for f in ("hba1c", "hba1c_change", "bmi", "age", "q_smoking")}
    z = (1.5 * np.nan_to_num(X[:, j["hba1c"]]) + 0.8 * np.nan_to_num(X[:, j["hba1c_change"]])
         + 0.6 * np.nan_to_num(X[:, j["bmi"]]) + 0.3 * np.nan_to_num(X[:, j["age"]]) - 1.5)  # fmt: skip
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbosity": -1,
              "monotone_constraints": monotone_constraints(NAMES), "seed": 1}  # fmt: skip
    b = lgb.train(params, lgb.Dataset(X, y, feature_name=NAMES), num_boost_round=60)
    return b, X


def test_every_feature_and_checkup_column_belongs_to_one_item():
    M, keys = item_matrix(NAMES)
    assert M.shape == (len(NAMES), len(keys)) and (M.sum(axis=1) == 1).all()
    assert (M.sum(axis=0) >= 1).all() and set(keys) == set(ITEM_KEYS)
    for col in (*MEASUREMENT_COLUMNS, *QUESTIONNAIRE_COLUMNS, "age", "sex"):
        assert item_of(col) in ITEM_KEYS, col
    assert {f for f in NAMES if item_of(f) == "hba1c"} == {
        "hba1c", "hba1c_change", "hba1c_slope", "flag_hba1c", "hba1c_recent"
    }  # fmt: skip
    assert item_of("urine_protein_max3") == "urine_protein" and item_of("egfr_mean3") == "kidney"
    assert item_of("weight_kg") == item_of("waist_cm_slope") == item_of("flag_bmi") == "adiposity"
    assert item_of("dbp_change") == "blood_pressure" and item_of("risky_drinking") == "alcohol"
    with pytest.raises(KeyError, match="no clinical item"):
        item_of("not_a_feature")
    # labels for staff (Japanese) and analysts (English); shown values are declared features
    for it in ITEMS:
        assert it.ja.strip() and it.en.strip()
        assert all(f in NAMES for f in it.show), it.key


def test_grouped_contributions_are_exact_sums(booster):
    b, X = booster
    c = b.predict(X, pred_contrib=True)
    g = group_contributions(c, NAMES)
    # items + bias = the raw score of every row
    np.testing.assert_allclose(g.raw, b.predict(X, raw_score=True), rtol=0, atol=1e-9)
    # each item is the sum of its own features' contributions (written out, not a product)
    for key in ("hba1c", "adiposity", "blood_pressure", "alcohol", "age"):
        cols = [i for i, f in enumerate(NAMES) if item_of(f) == key]
        want = c[:, cols].sum(axis=1)
        np.testing.assert_allclose(g.values[:, g.items.index(key)], want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(g.bias, c[:, -1])
    assert g.frame().shape == (len(X), len(g.items) + 1)


def test_item_data_is_the_main_value(booster):
    _, X = booster
    _, keys = item_matrix(NAMES)
    d = item_data(X, NAMES, keys)
    np.testing.assert_array_equal(d[:, keys.index("hba1c")], X[:, NAMES.index("hba1c")])
    main = item("adiposity").show[0]
    np.testing.assert_array_equal(d[:, keys.index("adiposity")], X[:, NAMES.index(main)])


def test_native_contributions_equal_shaps_own_tree_shap(booster):
    """LightGBM's pred_contrib (what bulk scoring uses) = shap's TreeExplainer.

    shap's TreeExplainer on a LightGBM booster would itself call pred_contrib; here it is made
    to run its own C++ TreeSHAP over its own parse of the trees (model_type 'internal'), so
    the two are independent computations.
    """
    shap = pytest.importorskip("shap")
    b, X = booster
    rows = X[:400]
    it = 45  # early stopping: fewer trees than the booster has
    native = b.predict(rows, pred_contrib=True, num_iteration=it)
    ex = shap.TreeExplainer(b)
    ex.model.model_type = "internal"  # no pred_contrib shortcut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = ex.shap_values(rows, tree_limit=it, check_additivity=False)
        fewer = ex.shap_values(rows, tree_limit=it - 5, check_additivity=False)
    assert values.shape == native[:, :-1].shape
    np.testing.assert_allclose(values, native[:, :-1], rtol=0, atol=1e-6)
    # the base value shap computes at construction is the whole booster's
    whole = b.predict(rows, pred_contrib=True)
    assert np.abs(np.ravel(ex.expected_value)[0] - whole[:, -1]).max() < 1e-6
    assert np.abs(fewer - native[:, :-1]).max() > 1e-3  # the comparison can tell trees apart


def test_driver_agreement_by_item():
    names = ["hba1c", "hba1c_slope", "fpg", "bmi", "waist_cm_change", "sbp", "dbp", "age", "sex"]
    contrib = np.array(
        [
            # hba1c item = 1 + 1.5 = 2.5; adiposity = 0.5 + 0.4; blood pressure 0.2 + 0.2
            [1.0, 1.5, -0.3, 0.5, 0.4, 0.2, 0.2, -1.0, 0.0, 9.0],
            # only blood pressure raises the risk
            [-1.0, 0.0, -1.0, -0.5, 0.0, 0.3, 0.1, -0.2, -0.1, 9.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0],
            # strongest: glucose, then age, then sex
            [0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 9.0],
        ]
    )
    truth = pd.Series(["hba1c;weight_kg;age", "sex;fpg;dbp", "", "fpg;q_exercise;age"])
    d = driver_agreement(contrib, names, truth, risk=np.array([0.9, 0.1, 0.2, 0.8]), high_share=0.5)
    # row 0: {hba1c, adiposity, blood_pressure} vs {hba1c, adiposity (weight_kg), age} → 2
    # row 1: {blood_pressure} vs {sex, glucose, blood_pressure (dbp)} → 1
    # row 2: no positive item → 0; row 3: {glucose, age, sex} vs {glucose, q_exercise, age} → 2
    assert d["driver_any"] == 0.75 and d["driver_mean_overlap"] == 1.25
    # constant guess: the 3 items most often true (age 2, glucose 2, then adiposity by order)
    assert d["driver_baseline_items"].split(";")[:2] == ["age", "glucose"]
    # high risk: the top half by risk = rows 0 and 3
    assert d["driver_high_n"] == 2 and d["driver_high_any"] == 1.0
    assert d["driver_high_mean_overlap"] == 2.0
    assert d["driver_high_any_baseline"] == 1.0  # age is true for both
    # without risk, no high-risk figures
    assert np.isnan(driver_agreement(contrib, names, truth)["driver_high_any"])
