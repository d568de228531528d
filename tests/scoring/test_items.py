"""Explanations by clinical item at scoring time (scoring.score.explain, scoring.items): one line
per item with what staff read, lines that add up to the calibrated risk, factors named by their
lever. A stand-in engine keeps it fast; the annual run checks a trained one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.declarations import feature_names, item_of
from scoring.contracts import EXPLANATIONS_SCHEMA, explanations_add_up
from scoring.items import item_values
from scoring.score import explain

NAMES = feature_names()


class _Engine:
    """Contributions drawn at random (rows add up to the raw score by construction); the
    calibrated risk is σ(0.8·raw + 0.3), so the calibration step is never zero."""

    feature_names = NAMES
    outcomes = ("diabetes", "liver")

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.c = {o: rng.normal(0, 0.3, (n, len(NAMES) + 1)) for o in self.outcomes}

    def contributions(self, X, o):
        return pd.DataFrame(self.c[o], columns=[*NAMES, "bias"])

    def predict_outcome(self, X, o):
        return 1 / (1 + np.exp(-(0.8 * self.c[o].sum(axis=1) + 0.3)))


def _features(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    f = pd.DataFrame({name: rng.normal(50, 10, n) for name in NAMES})
    f["pseudonym"] = [f"{i:016x}" for i in range(n)]
    f["hba1c"] = [6.3, 5.4, np.nan, 5.9]
    f["hba1c_change"] = [0.2, np.nan, np.nan, -0.1]
    f["hba1c_recent"] = [6.3, 5.4, np.nan, 5.9]
    f["fpg"], f["random_glucose"] = [98.0, np.nan, np.nan, np.nan], [np.nan, 130.0, np.nan, np.nan]
    f["fpg_recent"] = [98.0, 104.0, 104.0, np.nan]
    f["fpg_change"] = f["egfr_change"] = np.nan
    f["egfr"], f["egfr_recent"] = [71.25, np.nan, np.nan, np.nan], [71.25, 58.2, np.nan, np.nan]
    f["sbp"], f["dbp"] = [142.0, 120, 118, np.nan], [88.0, 70, 76, 80]
    f["sbp_change"], f["dbp_change"] = [6.0, -2, np.nan, np.nan], [2.0, 1, 0, 0]
    f["bmi"], f["waist_cm"] = [26.1, 21.0, 24.0, 30.2], [92.0, 70, np.nan, 101]
    f["weight_kg_change"] = [2.0, 0.0, np.nan, -1.5]
    f["q_smoking"] = [1.0, 3, 2, np.nan]
    f["alcohol_g_per_day"] = [40.0, 0, 10, 25]
    return f


def test_value_texts_read_like_a_checkup_result():
    f = _features(4)
    _, hba1c = item_values(f, "hba1c")
    assert list(hba1c) == ["6.3%(前回比 +0.2)", "5.4%", "未測定", "5.9%(前回比 -0.1)"]
    _, bp = item_values(f, "blood_pressure")
    assert list(bp) == ["142/88 mmHg(前回比 +6/+2)", "120/70 mmHg(前回比 -2/+1)",
                        "118/76 mmHg", "未測定"]  # fmt: skip
    main, adiposity = item_values(f, "adiposity")
    assert adiposity[0] == "BMI 26.1・腹囲 92.0 cm(前回比 体重 +2.0 kg)" and main[0] == 26.1
    assert adiposity[2] == "BMI 24.0"
    # no reading this time: the latest earlier one, which the model reads too (`<item>_recent`)
    _, glucose = item_values(f, "glucose")
    assert list(glucose) == ["空腹時 98 mg/dL", "随時 130 mg/dL", "未測定(直近 空腹時 104 mg/dL)",
                             "未測定"]  # fmt: skip
    _, kidney = item_values(f, "kidney")
    assert list(kidney[:3]) == ["71.2 mL/min/1.73m²", "未測定(直近 58.2 mL/min/1.73m²)", "未測定"]
    f.loc[2, "hba1c_recent"] = 5.8
    assert item_values(f, "hba1c")[1][2] == "未測定(直近 5.8%)"
    _, smoking = item_values(f, "smoking")
    assert list(smoking) == ["吸う", "吸わない", "やめた", "未回答"]


def test_explanation_lines_add_up_to_the_calibrated_risk():
    n = 4
    f, engine = _features(n), _Engine(n)
    ex, factors = explain(engine, f, top=5)
    EXPLANATIONS_SCHEMA.validate(ex)
    scores = pd.DataFrame({"pseudonym": f["pseudonym"]})
    for o in engine.outcomes:
        scores[f"risk_{o}"] = engine.predict_outcome(None, o)
    assert explanations_add_up(ex, scores).empty
    # rows per resident × outcome: bias, 5 items, other, calibration; items unique
    g = ex.groupby(["pseudonym", "outcome"])
    assert (g.size() == 8).all() and g["item"].apply(lambda s: s.is_unique).all()
    assert (g["item"].first() == "bias").all() and (g["item"].last() == "calibration").all()
    # an item's contribution is the sum of its features' contributions
    c = engine.c["liver"][0]
    row = ex[(ex["pseudonym"] == f["pseudonym"][0]) & (ex["outcome"] == "liver")]
    for key, v in zip(row["item"][1:6], row["contribution"][1:6], strict=True):
        want = sum(c[j] for j, name in enumerate(NAMES) if item_of(name) == key)
        assert abs(v - want) < 1e-12, key
    # the calibration step is logit(risk) − raw score
    cal = row["contribution"].iloc[-1]
    raw = c.sum()
    assert abs(cal - ((0.8 * raw + 0.3) - raw)) < 1e-9
    # a broken sum is caught
    broken = ex.copy()
    broken.loc[broken.index[2], "contribution"] += 1e-3
    assert len(explanations_add_up(broken, scores)) == 1
    # factors are levers a letter can name, only where advice applies
    levers = {"weight_kg", "q_smoking", "q_alcohol_freq"} | {n for n in NAMES if n.startswith("q_")}
    named = factors[["factor_1", "factor_2", "factor_3"]].stack().dropna()
    assert set(named) <= levers
    smokers = factors.merge(f[["pseudonym", "q_smoking"]], on="pseudonym")
    said = smokers[["factor_1", "factor_2", "factor_3"]].eq("q_smoking").any(axis=1)
    assert (smokers.loc[said, "q_smoking"] == 1).all()
