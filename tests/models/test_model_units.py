"""Unit tests of metrics, calibrators, split and baselines (no training of the engine)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.calibration import fit_calibrator
from models.config import ModelConfig, SplitConfig
from models.evaluate import binary_metrics, calibration_slope_intercept, driver_agreement, ece
from models.split import assign_split
from models.targets import next_year_values


def test_calibration_metrics_on_calibrated_data():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.6, 200_000)
    y = (rng.random(len(p)) < p).astype(float)
    slope, intercept = calibration_slope_intercept(y, p)
    assert abs(slope - 1) < 0.03 and abs(intercept) < 0.03
    assert ece(y, p) < 0.01
    slope2, _ = calibration_slope_intercept(y, 1 / (1 + np.exp(-2 * np.log(p / (1 - p)))))
    assert slope2 < 0.6  # over-confident predictions → slope < 1
    m = binary_metrics(y, p)
    assert 0.5 < m["auc"] < 1 and m["n"] == len(y)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibrators_are_monotone(method):
    rng = np.random.default_rng(1)
    raw = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(raw - 1)))).astype(float)
    cal = fit_calibrator(raw, y, method)
    grid = np.linspace(-6, 6, 500)
    assert (np.diff(cal(grid)) >= 0).all()


def test_matching_mean_moves_the_intercept_only():
    """Calibration-in-the-large on more rows: the sigmoid's mean risk over them equals their
    rate, its slope (how far the risk moves with the score) stays."""
    rng = np.random.default_rng(2)
    raw = rng.normal(-3.5, 1.2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(raw + 0.4)))).astype(float)
    few = fit_calibrator(raw[:300], y[:300], "sigmoid")  # a small validation year
    more = few.matching_mean(raw, y)
    assert more.b == few.b and more.a != few.a
    assert more(raw).mean() == pytest.approx(y.mean(), abs=1e-9)
    iso = fit_calibrator(raw, y, "isotonic")
    assert iso.matching_mean(raw, y) is iso  # a step function has no intercept to move
    assert few.matching_mean(raw, np.zeros_like(y)) is few  # no events: nothing to match


def test_split_rules():
    keys = pd.DataFrame(
        {"pseudonym": np.repeat([f"p{i:04d}" for i in range(400)], 5),
         "fiscal_year": np.tile(np.arange(2020, 2025), 400)}
    )  # fmt: skip
    s = assign_split(keys, 2024)
    fy = keys["fiscal_year"].to_numpy()
    assert set(fy[s == "test"]) == {2024} and set(fy[s == "val"]) == {2023}
    assert fy[s == "train"].max() == 2022
    test_p = set(keys.pseudonym[s == "test"])
    assert 120 < len(test_p) < 280 and not test_p & set(keys.pseudonym[(s != "test") & (s != "")])
    s2 = assign_split(keys, 2024, horizon_years=2)
    assert fy[s2 == "train"].max() == 2021
    s3 = assign_split(keys, 2024, config=SplitConfig(group="none"))
    assert (s3 == "test").sum() == 400
    with pytest.raises(ValueError):
        ModelConfig(calibration="platt")  # type: ignore[arg-type]


def test_next_year_values_reads_only_the_next_year():
    f = pd.DataFrame(
        {"pseudonym": ["a", "a", "a", "b"], "fiscal_year": [2020, 2021, 2023, 2021],
         "hba1c": [5.0, 5.5, 6.0, 7.0]}
    )  # fmt: skip
    out = next_year_values(f, ("hba1c",))
    assert out["hba1c"].tolist()[:1] == [5.5]
    assert np.isnan(out["hba1c"].to_numpy()[1:]).all()  # 2022 missing; last rows have no next


def test_driver_agreement_definition():
    names = ["hba1c", "fpg", "bmi", "age", "sex"]
    contrib = np.array([[3.0, 2.0, 1.0, -1.0, -2.0, 0.0], [-1.0, -1.0, -1.0, 0.5, -1.0, 0.0]])
    truth = pd.Series(["hba1c;weight_kg;age", "sex;fpg;q_exercise"])
    d = driver_agreement(contrib, names, truth)
    # row 0: model {hba1c, fpg, adiposity(bmi)} vs truth {hba1c, adiposity, age} → 2 shared
    # row 1: only age is a positive driver; truth lacks it → 0 shared
    assert d["driver_any"] == 0.5 and d["driver_mean_overlap"] == 1.0
