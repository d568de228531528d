"""Scores-like tables for the selection's tests (test_selection_streamed, test_selection_codes)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.columns import OUTCOMES

#: Per input: a range of unremarkable values and a wide one across the 判定値 (a few residents
#: draw from it, so every rule fires on some and most residents are left for the risk).
RANGES = {
    "hba1c": (4.8, 5.8, 4.5, 8.0, 1), "fpg": (75, 105, 70, 160, 0),
    "sbp": (100, 135, 90, 190, 0), "dbp": (60, 85, 50, 115, 0), "ldl": (80, 135, 60, 220, 0),
    "tg": (50, 145, 40, 600, 0), "non_hdl": (90, 145, 80, 250, 0), "egfr": (65, 100, 30, 110, 1),
    "alt": (10, 30, 5, 80, 0), "ggt": (10, 45, 5, 150, 0), "uric_acid": (3.5, 6.5, 3.0, 10.0, 1),
    "waist_cm": (65, 84, 60, 110, 1), "hdl": (45, 80, 25, 90, 0),
}  # fmt: skip


def scores_like(
    rng: np.random.Generator,
    names: list[str],
    wide: float,
    on_medication: float,
    risk_beta: float,
    after_decimals: int,
) -> pd.DataFrame:
    """Rows with pseudonyms ``names``: values across the cut points (``wide`` of residents draw
    from the wide range), 5 % missing, medication answers (``on_medication`` yes), risks
    Beta(1, ``risk_beta``) rounded to 0.01 so priorities tie."""
    n = len(names)
    cols: dict[str, object] = {
        "pseudonym": pd.array(names, dtype="string"),
        "age": rng.integers(40, 75, n).astype("int64"),
        "sex": rng.integers(1, 3, n).astype("int64"),
    }
    for c, (lo, hi, wide_lo, wide_hi, dec) in RANGES.items():
        w = rng.random(n) < wide
        v = np.round(np.where(w, rng.uniform(wide_lo, wide_hi, n), rng.uniform(lo, hi, n)), dec)
        v[rng.random(n) < 0.05] = np.nan
        cols[c] = v
    # A few keyed values outside the plausible range (VERIFY_VALUE when they alone refer).
    odd = rng.random(n)
    cols["ggt"][odd < 0.004] = 1500.0
    cols["sbp"][(odd >= 0.004) & (odd < 0.008)] = 235.0
    cols["urine_protein"] = rng.choice(
        [1.0, 2.0, 3.0, 4.0, np.nan], n, p=[0.9, 0.05, 0.02, 0.01, 0.02]
    )
    for c in ("q_med_glucose", "q_med_bp", "q_med_lipid"):
        cols[c] = rng.choice([1.0, 2.0, np.nan], n, p=[on_medication, 0.97 - on_medication, 0.03])
    cols["blood_draw_timing"] = rng.choice([1, 2], n).astype("int8")
    for o in OUTCOMES:
        risk = np.round(rng.beta(1.0, risk_beta, n), 2)
        cols[f"risk_{o}"] = risk
        cols[f"risk_after_{o}"] = np.round(risk * rng.uniform(0.6, 1.0, n), after_decimals)
    return pd.DataFrame(cols)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as a zstd Parquet file's bytes."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
    return buf.getvalue()
