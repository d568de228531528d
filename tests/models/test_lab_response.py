"""models.lab_response: the within-person lever → laboratory estimator and its application."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.lab_response import COLUMNS, LABS, LEVERS, fit_lab_response, lab_shift


def _histories(n: int = 2_000, years: int = 3, seed: int = 0) -> pd.DataFrame:
    """Δsbp = −1.0·Δweight (wrong sign for a risk-lowering lever? no: weight down → sbp down
    needs β > 0, so −1.0 is the wrong sign and must be zeroed); Δhba1c = +0.05·Δweight (right
    sign, kept); Δtg = −20·Δq_exercise (exercise 2→1 lowers tg: β > 0 wanted, so zeroed)."""
    rng = np.random.default_rng(seed)
    rows = []
    weight = rng.normal(65, 10, n)
    sbp = rng.normal(125, 10, n)
    hba1c = rng.normal(5.6, 0.3, n)
    tg = rng.normal(120, 30, n)
    ex = rng.integers(1, 3, n).astype(float)
    for y in range(years):
        if y:
            dw = rng.normal(0, 2, n)
            dex = rng.integers(1, 3, n) - ex
            weight += dw
            ex += dex
            sbp += -1.0 * dw + rng.normal(0, 1, n)
            hba1c += 0.05 * dw + rng.normal(0, 0.05, n)
            tg += -20.0 * dex + rng.normal(0, 5, n)
        frame = {c: np.full(n, 2.0) for c in LEVERS if c.startswith("q_")}
        frame.update(
            pseudonym=[f"p{i:05d}" for i in range(n)], fiscal_year=2018 + y,
            exam_date=pd.Timestamp(f"{2018 + y}-06-01"), weight_kg=weight.copy(),
            q_exercise=ex.copy(), sbp=sbp.copy(), hba1c=hba1c.copy(), tg=tg.copy(),
        )  # fmt: skip
        for lab in LABS:
            frame.setdefault(lab, np.full(n, np.nan))
        rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True)


def test_recovers_known_coefficients_and_zeroes_wrong_signs():
    table = fit_lab_response(_histories())
    assert tuple(table.columns) == COLUMNS
    assert len(table) == len(LABS) * len(LEVERS)
    t = table.set_index(["lab", "lever"])
    assert t.loc[("sbp", "weight_kg"), "beta"] == pytest.approx(-1.0, abs=0.02)
    assert t.loc[("sbp", "weight_kg"), "coef"] == 0  # weight loss may not raise SBP
    assert t.loc[("hba1c", "weight_kg"), "beta"] == pytest.approx(0.05, abs=0.005)
    assert t.loc[("hba1c", "weight_kg"), "coef"] == t.loc[("hba1c", "weight_kg"), "beta"]
    assert t.loc[("tg", "q_exercise"), "beta"] == pytest.approx(-20.0, abs=0.5)
    assert t.loc[("tg", "q_exercise"), "coef"] == 0
    # levers that never change or labs without data: nothing kept
    assert (t.loc["ldl", "coef"] == 0).all() and (
        t.xs("q_smoking", level="lever")["coef"] == 0
    ).all()
    # deterministic, and training years only
    pd.testing.assert_frame_equal(table, fit_lab_response(_histories()))
    early = fit_lab_response(_histories(), before_year=2020)
    assert early.set_index(["lab", "lever"]).loc[("hba1c", "weight_kg"), "n"] == 2_000


def test_shift_moves_labs_only_towards_lower_risk_and_clips():
    table = fit_lab_response(_histories())
    before = pd.DataFrame(
        {"weight_kg": [80.0, 80.0, 80.0], "q_exercise": [2.0, 2.0, 2.0],
         "hba1c": [6.0, np.nan, 3.05], "sbp": pd.array([130, 130, 130], dtype="Int64")}
    )  # fmt: skip
    after = before.assign(weight_kg=[77.0, 77.0, 77.0])
    out = lab_shift(before, after, table)
    assert out.loc[0, "hba1c"] == pytest.approx(6.0 - 3 * 0.05, abs=0.02)
    assert np.isnan(out.loc[1, "hba1c"])  # missing stays missing
    assert out.loc[2, "hba1c"] == 3.0  # hard range floor
    assert (out["sbp"] == 130).all()  # the wrong-signed coefficient is not applied
    assert out["sbp"].dtype == before["sbp"].dtype
    unchanged = lab_shift(before, before.copy(), table)
    pd.testing.assert_frame_equal(unchanged, before)
