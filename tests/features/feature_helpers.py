"""Store-shaped checkup frames for feature tests (no ingest needed, any size, seeded)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from data.columns import MEASUREMENT_COLUMNS, QUESTIONNAIRE_COLUMNS
from data.validate import CODES

_MEANS = {
    "height_cm": (165, 9), "weight_kg": (63, 11), "bmi": (23.5, 3.5), "waist_cm": (84, 9),
    "sbp": (128, 17), "dbp": (77, 11), "tg": (120, 70), "hdl": (62, 15), "ldl": (125, 30),
    "non_hdl": (145, 35), "ast": (24, 9), "alt": (22, 13), "ggt": (35, 30), "fpg": (100, 18),
    "random_glucose": (110, 25), "hba1c": (5.7, 0.6), "creatinine": (0.8, 0.2),
    "egfr": (72, 14), "uric_acid": (5.3, 1.3), "hemoglobin": (13.8, 1.4),
}  # fmt: skip


def pseudonym(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:16]


def fake_checkups(persons: int, years: int = 5, seed: int = 0, first_fy: int = 2019):
    """Random store-like checkups: gaps, dropouts, missing items, some 2 checkups in a year."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(persons), years)
    fy = np.tile(np.arange(first_fy, first_fy + years), persons)
    attend = rng.random(len(pid)) < 0.75
    pid, fy = pid[attend], fy[attend]
    # ~2% get a second checkup later in the same fiscal year
    extra = rng.random(len(pid)) < 0.02
    pid = np.r_[pid, pid[extra]]
    fy = np.r_[fy, fy[extra]]
    day = rng.integers(0, 150, len(pid))
    day[len(day) - extra.sum() :] += 180
    n = len(pid)
    dates = pd.to_datetime([f"{y}-05-01" for y in fy]) + pd.to_timedelta(day, unit="D")
    birth = 1950 + (pid * 7919 % 30)
    sex = (pid % 2 + 1).astype("int8")
    frame = {
        "pseudonym": pd.array([pseudonym(i) for i in pid], dtype="string"),
        "exam_date": dates.astype("datetime64[ns]"),
        "fiscal_year": pd.array(fy, dtype="Int16"),
        "age": pd.array(fy + 1 - birth, dtype="Int16"),
        "sex": pd.array(sex, dtype="Int8"),
    }
    person_level = rng.normal(size=persons)
    for c in MEASUREMENT_COLUMNS:
        m, s = _MEANS[c]
        v = m + s * (0.7 * person_level[pid] + 0.7 * rng.normal(size=n)) + 0.02 * (fy - first_fy)
        v = np.abs(np.round(v, 1)) + 0.1
        v[rng.random(n) < 0.08] = np.nan
        if c in ("sbp", "dbp"):
            frame[c] = pd.array(np.where(np.isnan(v), np.nan, np.round(v)), dtype="Float64").astype(
                "Int16"
            )
        else:
            frame[c] = v
    codes = ("blood_draw_timing", "urine_glucose", "urine_protein", *QUESTIONNAIRE_COLUMNS)
    facility = ("facility_mets", "facility_guidance_level", "facility_doctor_judgement")
    for c in (*codes, *facility):  # every coded column of the store
        allowed = np.asarray(CODES[c])
        v = rng.choice(allowed, n).astype("float64")
        v[rng.random(n) < 0.1] = np.nan
        frame[c] = pd.array(v, dtype="Float64").astype("Int8")
    out = pd.DataFrame(frame)
    out["soft_flags"] = pd.array([None] * n, dtype="string")
    return out.sort_values(["pseudonym", "exam_date"], ignore_index=True)
