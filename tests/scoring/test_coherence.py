"""A letter's risk and its value forecasts never contradict each other (scoring.coherence)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.coherence import CONFLICT_KINDS, conflict_counts, conflicts
from scoring.letters import render_letters
from scoring.letters.render import FORECAST_WITHHELD
from tests.scoring.letter_helpers import config, flat, requests

HIGH, LOW = CONFLICT_KINDS


def _scores(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {f"risk_{o}": np.full(n, 0.2) for o in ("diabetes", "hypertension", "ckd")}
    return pd.DataFrame({**base, **cols})


def test_a_high_risk_with_every_defining_forecast_below_its_cut_is_a_conflict():
    s = _scores(
        risk_diabetes=[0.51, 0.51, 0.51, 0.05, 0.05, 0.25],
        hba1c_p10=[6.1, 6.1, 6.1, 6.6, 5.2, 6.6],
        hba1c_p90=[6.4, 6.5, 6.4, 7.0, 5.6, 7.0],
        fpg_p10=[101.0, 101.0, 101.0, 90.0, 85.0, 90.0],
        fpg_p90=[116.0, 116.0, 130.0, 100.0, 99.0, 100.0],
    )
    got = conflicts(s)["diabetes"].tolist()
    # 6.4 and 116 stay below 6.5 / 126; p90 at 6.5 or 130 reaches the cut; p10 6.6 ≥ 6.5 at a
    # 5% risk is the reverse; a consistent low and a middle risk are fine.
    assert got == [HIGH, "", "", LOW, "", ""]


def test_low_is_bad_items_use_the_other_end_and_incomplete_outcomes_skip_the_high_check():
    s = _scores(
        risk_ckd=[0.6, 0.05, 0.05], egfr_p10=[70.0, 50.0, 61.0], egfr_p90=[80.0, 58.0, 75.0]
    )
    # CKD can also be met by urine protein (no forecast): a high risk is never contradicted;
    # eGFR's likely-best value (p90) below 60 at a 5% risk is.
    assert conflicts(s)["ckd"].tolist() == ["", LOW, ""]


def test_an_outcome_with_an_unforecast_defining_item_skips_the_high_check():
    # FPG can meet diabetes too: with only an HbA1c forecast the table cannot contradict.
    s = _scores(risk_diabetes=[0.51], hba1c_p10=[6.0], hba1c_p90=[6.2])
    assert conflicts(s)["diabetes"].tolist() == [""]


def test_missing_forecasts_never_make_a_conflict():
    s = _scores(risk_hypertension=[0.9, 0.01], sbp_p10=[np.nan, np.nan], sbp_p90=[np.nan, np.nan])
    assert conflicts(s)["hypertension"].tolist() == ["", ""]


def test_counts_list_every_kind():
    s = _scores(
        risk_diabetes=[0.51, 0.2],
        hba1c_p10=[6.0, 6.0],
        hba1c_p90=[6.2, 6.2],
        fpg_p10=[95.0, 95.0],
        fpg_p90=[110.0, 110.0],
    )
    c = conflict_counts(conflicts(s))
    assert c["diabetes"] == {HIGH: 1, LOW: 0}
    assert set(c) == {"diabetes", "hypertension", "ckd"}


def test_a_letter_whose_forecast_contradicts_its_risk_leaves_the_table_out(tmp_path):
    req = requests().iloc[:1].copy()
    plain = render_letters(req, tmp_path / "plain", config(workers=1))
    req["forecast_withheld"] = HIGH
    held = render_letters(req, tmp_path / "held", config(workers=1))
    pid = req["pseudonym"].iloc[0]
    shown = flat(tmp_path / "plain" / "letters" / f"{pid}.pdf")
    left = flat(tmp_path / "held" / "letters" / f"{pid}.pdf")
    assert "73.1" in shown and "69.8" in shown  # the fixture's weight forecast p90 and p10
    assert "73.1" not in left and "69.8" not in left  # no forecast table
    assert "24%" in left  # the risk is still stated
    assert FORECAST_WITHHELD in held.frame["notes"].iloc[0]
    assert "withheld" not in str(plain.frame["notes"].iloc[0])
