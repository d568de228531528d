"""Driver agreement against the true drivers (models.evaluate.driver_agreement), both truths.

The definition on hand-made rows; the figures a synthetic training run reports for the
generator's drivers (``driver_*``) and for the drivers attributed to what the model sees
(``driver_observed_*``, data.synth.truth ``drivers_observed_<outcome>``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluate import driver_agreement

# The trained ward is shared with the other engine tests (pytest-xdist --dist loadgroup).
pytestmark = pytest.mark.xdist_group("trained_engine")


def test_top1_figures_and_their_constant_guess():
    names = ["hba1c", "fpg", "bmi", "sbp", "age"]
    contrib = np.array(
        [
            [3.0, 2.0, 1.0, -1.0, -1.0, 0.0],  # model: hba1c, glucose, adiposity
            [-1.0, 2.0, 0.5, 1.0, -1.0, 0.0],  # model: glucose, blood_pressure, adiposity
            [1.0, -1.0, -1.0, -1.0, 2.0, 0.0],  # model: age, hba1c (only two positive)
            [-1.0, -1.0, -1.0, -1.0, -1.0, 0.0],  # model: nothing positive
        ]
    )
    # true top-1: hba1c, weight_kg (adiposity), hba1c, hba1c
    truth = pd.Series(["hba1c;fpg;age", "weight_kg;hba1c;age", "hba1c;sbp;age", "hba1c;fpg;sbp"])
    d = driver_agreement(contrib, names, truth, risk=np.array([0.9, 0.8, 0.1, 0.2]), high_share=0.5)
    # true top-1 among the model's top-3 positive items: rows 0, 1, 2 (not 3: none positive)
    assert d["driver_top1_in_top3"] == 0.75
    # the model's first item is the true top-1 in row 0 only
    assert d["driver_top1"] == 0.25
    # constant guess fitted to this figure: hba1c is the true top-1 of 3 rows in 4
    assert d["driver_top1_baseline"] == 0.75
    assert d["driver_top1_in_top3_baseline"] == 1.0  # {hba1c, adiposity, …} covers all
    # high risk (rows 0 and 1): both top-1 among the model's 3; first item right in row 0
    assert d["driver_high_top1_in_top3"] == 1.0 and d["driver_high_top1"] == 0.5
    assert d["driver_high_top1_baseline"] == 0.5
    assert d["driver_high_top1_baseline_items"].split(";")[0] in ("hba1c", "adiposity")


def test_lifestyle_figures_compare_habits_and_body_size_only():
    """The lifestyle figures leave laboratory items, age and sex out on both sides, and count
    only residents with a true habit or body-size driver, against their own constant guess."""
    names = ["hba1c", "bmi", "q_exercise", "q_snacks", "age"]
    contrib = np.array(
        [
            [3.0, 1.0, -1.0, 0.5, 2.0, 0.0],  # lifestyle: adiposity, snacks
            [2.0, -1.0, 1.0, -1.0, 0.0, 0.0],  # lifestyle: exercise only
            [5.0, 1.0, 1.0, 1.0, 1.0, 0.0],  # no true lifestyle driver: not counted
            [1.0, 0.2, 0.1, 0.3, -1.0, 0.0],  # lifestyle: snacks, adiposity, exercise
        ]
    )
    truth = pd.Series(["hba1c;weight_kg;age", "hba1c;q_snacks;age", "hba1c;fpg;age",
                       "weight_kg;hba1c;sbp"])  # fmt: skip
    d = driver_agreement(contrib, names, truth, risk=np.array([0.9, 0.8, 0.7, 0.1]), high_share=0.5)
    assert d["driver_lifestyle_n"] == 3
    assert d["driver_lifestyle_any"] == pytest.approx(2 / 3)  # row 1 names exercise, not snacks
    assert d["driver_lifestyle_any_baseline"] == 1.0  # adiposity and snacks cover every row
    assert d["driver_high_lifestyle_n"] == 2  # rows 0 and 1 (row 2 has none)
    assert d["driver_high_lifestyle_any"] == 0.5
    assert d["driver_high_lifestyle_baseline_items"].split(";")[:2] == ["adiposity", "q_snacks"]


# ------------------------------------------------------------------ a trained synthetic ward


def test_run_reports_agreement_with_both_truths(trained):
    s = trained.report.synthetic.set_index("outcome")
    for stem in ("driver", "driver_observed"):
        for k in ("any", "any_baseline", "high_any", "high_any_baseline", "high_top1",
                  "high_top1_baseline", "high_top1_in_top3", "high_top1_in_top3_baseline"):  # fmt: skip
            col = f"{stem}_{k}"
            assert col in s, col
            assert s[col].between(0, 1).all(), s[col]
    assert (s["driver_observed_high_n"] == s["driver_high_n"]).all()
    # Against the truth attributed to what the model sees, the issue's ≥ 80 % of high-risk
    # residents with a true driver among the top 3 (demo ward: 0.96-1.00), within a few points
    # of the constant guess. Not asserted: above it — the outcome's own item is a true driver of
    # nearly every high-risk resident, so the constant can only be tied
    # (docs/models.md §Driver agreement).
    high = s["driver_observed_high_any"]
    assert (high >= 0.8).all(), high
    assert (high >= s["driver_observed_high_any_baseline"] - 0.05).all(), high
    # better than against the generator's truth (levels credited to their upstream causes)
    assert high.mean() > s["driver_high_any"].mean()
