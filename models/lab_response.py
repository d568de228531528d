"""Within-year response of laboratory values to the what-if levers (検査値の反応).

A what-if (scoring.score) edits a habit or the weight of the latest checkup; in reality such a
change also moves blood pressure, glycaemia and lipids within the year. :func:`fit_lab_response`
estimates that from the store's own histories: over consecutive checkups of the same person
(training fiscal years only), the first difference of each laboratory item is regressed on the
first differences of the levers (OLS with intercept, all levers together):
``Δlab = a + Σ β_lever · Δlever``. Levers are the checkup columns the scenarios edit, in their
stored coding (:data:`LEVERS`); laboratory items are :data:`LABS`.

Selection: a coefficient is kept only where it is statistically clear (``|t| ≥ min_t``) and
its sign moves the laboratory value towards lower risk when the lever moves towards lower
risk (declared directions of features.declarations ``monotone``: sign β = d_lever · d_lab).
Items without a declared direction (HDL, ALT, γ-GT) are not moved, so a what-if stays
monotone; levers of :data:`CONTROL_ONLY` are regressors only. Every other coefficient is 0. The table holds coefficients only (no rows, no identifiers).

:func:`lab_shift` applies the kept coefficients to an edited checkup frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.validate import RANGES
from features.declarations import DECLARATIONS

__all__ = ["CONTROL_ONLY", "LABS", "LEVERS", "fit_lab_response", "lab_shift", "response_matrix"]

#: Checkup columns a scenario moves (stored coding: 1 = yes / 2 = no; amount 1-4).
LEVERS = (
    "weight_kg",
    "q_smoking",
    "q_exercise",
    "q_walking",
    "q_late_dinner",
    "q_snacks",
    "q_skip_breakfast",
    "q_alcohol_amount",
)
#: Levers kept in the regression as controls but never applied: quitting smoking brings a
#: weight gain the scenario does not model, so its lab effect at fixed weight (lower TG,
#: HbA1c) would promise more than the total effect (which is mixed: see scoring.whatif_truth).
CONTROL_ONLY = ("q_smoking",)
#: Laboratory items that may follow a lever within the year.
LABS = ("sbp", "dbp", "hba1c", "fpg", "tg", "hdl", "ldl", "alt", "ggt")
_DIR = {d.name: int(d.monotone or 0) for d in DECLARATIONS}
COLUMNS = ("lab", "lever", "beta", "se", "t", "n", "kept", "coef")


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def fit_lab_response(
    checkups: pd.DataFrame, before_year: int | None = None, min_t: float = 2.0
) -> pd.DataFrame:
    """Coefficient table (:data:`COLUMNS`, one row per lab × lever; ``coef`` = kept β or 0).

    ``checkups``: pseudonym, fiscal_year, exam_date and the lever and lab columns. Only pairs
    of consecutive checkups one fiscal year apart, both before ``before_year``, are used.
    """
    c = checkups
    if before_year is not None:
        c = c[c["fiscal_year"].astype("int64") < before_year]
    c = c.sort_values(["pseudonym", "exam_date"], kind="stable")
    pid = c["pseudonym"].astype("string").to_numpy()
    fy = c["fiscal_year"].astype("int64").to_numpy()
    pair = (pid[1:] == pid[:-1]) & (fy[1:] - fy[:-1] == 1)
    lev = np.column_stack([_num(c, v) for v in LEVERS]) if len(c) else np.zeros((0, len(LEVERS)))
    dx = (lev[1:] - lev[:-1])[pair]
    rows = []
    for lab in LABS:
        y = _num(c, lab)
        dy = (y[1:] - y[:-1])[pair]
        ok = ~np.isnan(dy) & ~np.isnan(dx).any(axis=1)
        X = np.column_stack([np.ones(int(ok.sum())), dx[ok]])
        n, k = X.shape
        beta = se = np.full(len(LEVERS), np.nan)
        if n > k + 1:
            xtx_inv = np.linalg.pinv(X.T @ X)
            b = xtx_inv @ (X.T @ dy[ok])
            resid = dy[ok] - X @ b
            s2 = float(resid @ resid) / (n - k)
            beta = b[1:]
            with np.errstate(invalid="ignore"):
                se = np.sqrt(np.clip(np.diag(xtx_inv)[1:] * s2, 0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = beta / se
        want = np.array(
            [0 if v in CONTROL_ONLY else _DIR.get(v, 0) * _DIR.get(lab, 0) for v in LEVERS]
        )
        kept = (want != 0) & (np.sign(beta) == want) & (np.abs(t) >= min_t)
        rows.append(
            pd.DataFrame(
                {"lab": lab, "lever": list(LEVERS), "beta": beta, "se": se, "t": t, "n": n,
                 "kept": kept, "coef": np.where(kept, beta, 0.0)}
            )
        )  # fmt: skip
    return pd.concat(rows, ignore_index=True).reindex(columns=list(COLUMNS))


def response_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """labs × levers of the kept coefficients (0 elsewhere)."""
    m = table.pivot(index="lab", columns="lever", values="coef").fillna(0.0)
    return m.reindex(index=list(LABS), columns=list(LEVERS), fill_value=0.0)


def lab_shift(before: pd.DataFrame, after: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``after`` (``before`` with levers edited, same rows) with each lab moved by Σ β·Δlever.

    Only present lab values move, only towards lower risk, clipped to the hard ranges of
    data.validate ``RANGES``; integer-coded items (blood pressure) are rounded.
    """
    m = response_matrix(table)
    levers = [v for v in LEVERS if v in before and v in after]
    if not levers or not len(after):
        return after
    d = np.nan_to_num(np.column_stack([_num(after, v) - _num(before, v) for v in levers]), nan=0.0)
    shift = d @ m[levers].to_numpy().T  # rows × labs
    out = after.copy()
    for j, lab in enumerate(m.index):
        if lab not in out or not shift[:, j].any():
            continue
        old = _num(out, lab)
        new = old + shift[:, j]
        if lab in RANGES:
            lo, hi = RANGES[lab][:2]
            new = np.clip(new, lo, hi)
        if pd.api.types.is_integer_dtype(out[lab].dtype):
            new = np.round(new)
        # never towards higher risk (and nothing where the value is missing)
        new = np.where(np.isnan(old) | ((new - old) * _DIR.get(lab, 0) > 0), old, new)
        out[lab] = pd.array(new, dtype=out[lab].dtype)
    return out
