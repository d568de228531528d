"""Within-year response of body size and laboratory values to the what-if levers (検査値の反応).

A what-if (scoring.score) edits a habit or the weight of the latest checkup; in reality such a
change also moves body weight, blood pressure, glycaemia, lipids, liver enzymes and uric acid
within the year. :func:`fit_lab_response` estimates that from the store's own histories (training
fiscal years only), comparing each person with themselves:

* **Body size** over consecutive yearly checkups: the first difference of weight and waist
  regressed on the first differences of the levers' *terms* (OLS with intercept),
  ``Δitem = a + Σ β_term · Δterm`` — one year's response, as body weight takes more than a
  year to settle after a change of habit.
* **Laboratory items** within person over all of a person's checkups (fixed effects): the
  item's deviation from the person's own mean regressed on the terms' deviations and the
  year's, standard errors clustered by person. Blood values follow a habit and the weight
  within weeks, and their measurement noise is fresh at every checkup; a difference of two
  checkups carries that noise twice, a person's mean over several once, so the within-person
  estimate is the steadier one (standard errors 5-30 % smaller on a 100,000-resident ward). A
  term missing on a checkup sits at the person's mean (no change there).

* **Terms.** Weight is one numeric term. A coded answer is coded by thresholds in its declared
  risk order (features.declarations ``monotone``), one indicator per step from the safest
  answer: 間食 (1 daily > 2 sometimes > 3 hardly) gives ``q_snacks<=2`` and ``q_snacks<=1``,
  運動 ``q_exercise>=2`` (no). So a step whose effect the codes' spacing does not carry (daily
  snacks, not "sometimes", move triglycerides) keeps its own size. 飲酒量 is the exception: its
  term is the pure alcohol it implies with the frequency answer, g/day (:data:`EXPOSURE`). A
  term missing in both years of a pair did not change: Δ 0.
* **Body** (``weight_kg``, ``waist_cm``) is regressed on the habit terms only: the habit's
  total effect on body size. **Laboratory items** (:data:`LABS`) are regressed on every term,
  weight included: the habit's effect at fixed weight. A habit scenario first moves weight and
  waist by the body response, then the labs by their weight and habit coefficients — the
  habit's effect through adiposity and beside it.
* **Selection.** A coefficient is kept only where it moves its item towards lower risk when
  the lever moves towards lower risk (declared directions: sign β = the item's direction,
  every term pointing to the riskier answer), so a what-if stays monotone, and where it is
  statistically clear: its own ``|t| ≥ min_t``, or — for a lever with several steps — the
  lever's summed steps have the right sign and ``|t| ≥ min_t`` (``lever_t``; standard error
  from the steps' covariance). ``min_t`` is :data:`MIN_T`, a one-sided test at 5 %: the sign
  that counts is declared before the data are seen, and the other sign is never kept. A
  scenario takes an answer to the safest one, across every step in between, so the question it
  asks is the lever's, not one step's: two steps of t 1.5 and 1.4 are one clear effect of
  t 2.9 (tested). A wrong-signed step of such a lever stays 0.

* **Scale of a laboratory item.** A lifestyle change moves a laboratory item by the same share
  of its spread at every level, not by the same amount: lab values are right-skewed (TG, ALT,
  γ-GT, fasting glucose, HbA1c in the diabetic range), and the same habit moves HbA1c more in a
  resident at 6.3 % than in one at 5.4 %, as lifestyle trials report larger falls at higher
  baselines. So each laboratory item is regressed and moved on its **normal score**
  (:func:`fit_item_scales`: the training checkups' quantiles by sex, z = Φ⁻¹(rank)), and a
  move of Δz is read back through the quantile function around the score the resident's value
  is expected to have next year (this year's × the item's year-to-year correlation): larger
  where the item's distribution is stretched out. Measured against the synthetic wards' true
  counterfactual: a move in recorded units, the same at every level, was too small exactly
  where a resident is near a threshold (docs/models.md §A lab moves by a share of its spread).

The tables hold coefficients and quantiles only (no rows, no identifiers). :func:`lab_shift`
applies them to an edited checkup frame; :data:`GRID` and :func:`grid_split` say how a value
recorded to a coarse resolution (HbA1c to 0.1 %) carries a smaller move.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from data.validate import RANGES
from features.build import alcohol_g_per_day
from features.declarations import DECLARATIONS
from models.rowwise import rowwise_matmul

__all__ = [
    "BODY",
    "COLUMNS",
    "SCALE_COLUMNS",
    "GRID",
    "LABS",
    "LEVERS",
    "MIN_T",
    "STEPS",
    "fit_item_scales",
    "fit_lab_response",
    "fit_response_tables",
    "from_normal_score",
    "grid_split",
    "lab_shift",
    "shrink_habit_effects",
    "lever_terms",
    "to_normal_score",
]

#: Checkup columns a scenario moves (stored coding: 1 = yes / 2 = no; amount 1-5).
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
#: Levers with fewer steps than codes: smoking is only "smokes now" (``q_smoking<=1``), because
#: before FY2024 the question was yes / no (stored 1 / 3), so "quit" and "never" are one answer
#: there and a 3 → 2 across the revision is a recoding, not a change. Quitting is advised
#: without the weight gain (scoring.toml), so its effect is the labs' at fixed weight; its body
#: effect (a gain) has the risk-raising sign and is never kept.
STEPS = {"q_smoking": (1,)}
#: Levers whose effect is carried by an exposure computed from the checkup, not by their own
#: code: 飲酒量 by 純アルコール g/day (features.build.alcohol_g_per_day: frequency × amount), so
#: drinking less counts for as many days as the resident drinks, and a drinker who starts or
#: stops (amount asked of drinkers only) still counts. A scenario that moves the amount moves
#: the grams with it.
EXPOSURE = {"q_alcohol_amount": "alcohol_g_per_day"}
Drinking = Literal["grams", "steps"]
LabEstimator = Literal["within", "differences"]
Selection = Literal["t_test", "shrinkage"]
#: The |t| a kept coefficient needs: Φ⁻¹(0.95), a one-sided test at 5 %, as the declared
#: direction fixes the sign tested (a two-sided 5 % test, |t| ≥ 2, was the rule before:
#: docs/models.md §A one-sided test for a declared direction).
MIN_T = 1.645
#: Spreads of the shrinkage prior's normal components (normal-score units), beside a point
#: mass at 0: from a shift too small to matter to a third of a standard deviation.
_PRIOR_SD = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
#: The dose a term's coefficient is compared at for the prior: one step of an answer, one 合 a
#: day of pure alcohol (20 g/day).
_TERM_DOSE = {"alcohol_g_per_day": 20.0}
#: Body-size items that follow a habit (regressed on the habit terms only).
BODY = ("weight_kg", "waist_cm")
#: Laboratory items that may follow a lever within the year.
LABS = ("sbp", "dbp", "hba1c", "fpg", "tg", "hdl", "ldl", "non_hdl", "ast", "alt", "ggt",
        "uric_acid", "egfr")  # fmt: skip
#: The item recorded to a resolution coarser than its typical move, and that resolution
#: (HbA1c is reported to 0.1 %; a habit moves it by 0.02-0.07): read at both grid values.
GRID = ("hba1c", 0.1)
#: Items recorded in whole units (mmHg, mg/dL, U/L) or tenths, whose habit moves are often
#: under one step. A recorded value moves by whole steps: from a value recorded as v, a true
#: move δ lands one step further with probability |fraction of δ| (the true value lies anywhere
#: in v's step). Each resident draws the step with a fixed uniform from its pseudonym and the
#: item (:func:`_record_draw`), so a pooled what-if is unbiased and every run gives the same
#: bits. Rounding instead (trees split recorded values halfway between steps) lost every
#: move under half a step: no-late-dinner moved SBP by 0.4 mmHg, i.e. never.
RECORD_STEP = {"sbp": 1.0, "dbp": 1.0, "fpg": 1.0, "tg": 1.0, "hdl": 1.0, "ldl": 1.0,
               "non_hdl": 1.0, "ast": 1.0, "alt": 1.0, "ggt": 1.0, "uric_acid": 0.1,
               "egfr": 0.1}  # fmt: skip
_DECL = {d.name: d for d in DECLARATIONS}
#: The way each item moves towards lower risk: the declared direction of the risk models'
#: features, and eGFR's, which is no declared feature direction (kidney function is not
#: one-way for every outcome) but is CKD's own cut (eGFR < 60): a what-if raises it or leaves
#: it. The risk models never read a moved eGFR (scoring.score holds undeclared features at
#: their values); CKD's what-if reads it through the eGFR forecast
#: (docs/models.md §CKD through the forecasts).
_DIR = {d.name: int(d.monotone or 0) for d in DECLARATIONS} | {"egfr": -1}
COLUMNS = ("lab", "lever", "term", "beta", "se", "t", "lever_t", "n", "kept", "coef", "scale")
#: Columns of an item-scale table (:func:`fit_item_scales`): knots of each lab's quantile
#: function by sex, value against normal score.
SCALE_COLUMNS = ("item", "sex", "z", "value", "persistence")
#: Normal scores of the quantile knots: Φ(±2.576) = 0.5 % / 99.5 %, so the knots stay in the
#: bulk (no extreme resident's value); beyond them the end segments extend linearly.
_Z_KNOTS = np.linspace(-2.576, 2.576, 103)
#: Fewest values of an item in each sex for a scale (else that lab keeps recorded units).
MIN_SCALE_VALUES = 500


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _step_terms(lever: str) -> list[tuple[str, str, float | None, int]]:
    side = _DIR[lever]
    codes = sorted(_DECL[lever].allowed, key=lambda c: side * c)  # safest first
    return [
        (f"{lever}{'>=' if side > 0 else '<='}{cut}", lever, float(cut), side)
        for cut in STEPS.get(lever, codes[1:])
    ]


def lever_terms(drinking: Drinking = "grams") -> list[tuple[str, str, float | None, int]]:
    """(term, lever, cut, side) per term: the value itself for weight (cut None), the exposure
    of :data:`EXPOSURE` for a lever that has one, else the indicator
    ``side · code >= side · cut`` — the answers at or beyond ``cut`` on the risky side.
    ``drinking="steps"``: 飲酒量 in amount steps, as engines before the exposure (benchmarks)."""
    out: list[tuple[str, str, float | None, int]] = []
    for lever in LEVERS:
        if lever in EXPOSURE and drinking == "grams":
            out.append((EXPOSURE[lever], lever, None, 0))
        elif _DECL[lever].allowed is None:
            out.append((lever, lever, None, 0))
        else:
            out += _step_terms(lever)
    return out


def _exposure(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name == "alcohol_g_per_day":
        if "q_alcohol_freq" not in frame or "q_alcohol_amount" not in frame:
            return np.full(len(frame), np.nan)
        return alcohol_g_per_day(frame["q_alcohol_freq"].to_numpy(object),
                                 frame["q_alcohol_amount"].to_numpy(object))  # fmt: skip
    raise ValueError(f"unknown exposure {name!r}")


def _term_matrix(frame: pd.DataFrame, terms) -> np.ndarray:
    cols = []
    for name, lever, cut, side in terms:
        x = _exposure(frame, name) if name in EXPOSURE.values() else _num(frame, lever)
        if cut is None:
            cols.append(x)
        else:
            with np.errstate(invalid="ignore"):
                cols.append(np.where(np.isnan(x), np.nan, (side * x >= side * cut).astype(float)))
    return np.column_stack(cols) if cols else np.zeros((len(frame), 0))


def _delta(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """after − before; 0 where both are missing (nothing changed), NaN where one is."""
    d = after - before
    return np.where(np.isnan(before) & np.isnan(after), 0.0, d)


def _ols(y: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(β, covariance of β, rows used) of ``y = a + X·β``; NaN where too few rows."""
    ok = ~np.isnan(y) & ~np.isnan(X).any(axis=1)
    Xo = np.column_stack([np.ones(int(ok.sum())), X[ok]])
    n, k = Xo.shape
    beta, cov = np.full(X.shape[1], np.nan), np.full((X.shape[1],) * 2, np.nan)
    if n > k + 1:
        xtx_inv = np.linalg.pinv(Xo.T @ Xo)
        b = xtx_inv @ (Xo.T @ y[ok])
        resid = y[ok] - Xo @ b
        s2 = float(resid @ resid) / (n - k)
        beta, cov = b[1:], xtx_inv[1:, 1:] * s2
    return beta, cov, n


def _within_ols(
    y: np.ndarray, X: np.ndarray, person: np.ndarray, year: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """(β, covariance of β, rows used) of the within-person regression ``y − ȳ_person =
    (X − X̄_person)·β + γ·(year − year̄_person)``, over rows with ``y``, of persons (integer
    codes) with two or more of them. A term missing on a row sits at the person's mean (no
    change there).
    Covariance: clustered by person (sandwich, ×G/(G−1)), as a person's rows share errors."""
    beta, cov = np.full(X.shape[1], np.nan), np.full((X.shape[1],) * 2, np.nan)
    ok = ~np.isnan(y) & (person >= 0)  # a row without a person (code −1) is no one's
    size = np.bincount(person[ok])
    ok[ok] = size[person[ok]] >= 2
    g, n_codes, n_groups = person[ok], len(size), int((size >= 2).sum())
    if not n_groups:
        return beta, cov, 0
    cols = np.column_stack([X[ok], year[ok], y[ok]])
    dev = np.empty_like(cols)
    for j in range(cols.shape[1]):
        v = cols[:, j]
        seen = ~np.isnan(v)
        total = np.bincount(g, np.where(seen, v, 0.0), n_codes)
        count = np.bincount(g, seen.astype(float), n_codes)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        dev[:, j] = np.where(seen, v - mean[g], 0.0)
    # a term no person changes has no within-person estimate (NaN, never kept)
    varies = np.abs(dev[:, :-1]).max(axis=0) > 1e-9
    A, b = dev[:, :-1][:, varies], dev[:, -1]
    n, k = A.shape
    if k == 0 or n <= k + n_groups:
        return beta, cov, n
    bread = np.linalg.pinv(A.T @ A)
    coef = bread @ (A.T @ b)
    resid = b - A @ coef
    score = np.column_stack([np.bincount(g, A[:, j] * resid, n_codes) for j in range(k)])
    full = bread @ (score.T @ score) @ bread * (n_groups / max(n_groups - 1, 1))
    used = np.flatnonzero(varies[:-1])  # the terms (the year is the last column)
    beta[used], cov[np.ix_(used, used)] = coef[: len(used)], full[: len(used), : len(used)]
    return beta, cov, n


def _lever_t(beta: np.ndarray, cov: np.ndarray, levers: np.ndarray) -> np.ndarray:
    """Per term: t of the sum of its lever's terms (NaN for a lever with one term)."""
    out = np.full(len(beta), np.nan)
    for lever in np.unique(levers):
        mine = np.flatnonzero(levers == lever)
        if len(mine) < 2:
            continue
        var = cov[np.ix_(mine, mine)].sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[mine] = beta[mine].sum() / np.sqrt(var) if var > 0 else np.nan
    return out


def fit_item_scales(checkups: pd.DataFrame, before_year: int | None = None) -> pd.DataFrame:
    """Quantile knots (:data:`SCALE_COLUMNS`) of each laboratory item by sex (1, 2), from the
    checkups of fiscal years before ``before_year``: the value at normal score z for the z of
    :data:`_Z_KNOTS`. Tied knots (a value recorded to 0.1 % covers many ranks) become one knot
    at their mean z: a recorded value sits at its mid-rank. An item needs
    :data:`MIN_SCALE_VALUES` values and two distinct knots in *each* sex, else it gets no
    knots and keeps recorded units (one scale for every resident the what-if moves)."""
    from scipy.stats import norm

    c = checkups
    if before_year is not None:
        c = c[c["fiscal_year"].astype("int64") < before_year]
    sex = _num(c, "sex")
    parts = []
    for item in LABS:
        x = _num(c, item)
        mine = []
        for s in (1, 2):
            v = x[(sex == s) & ~np.isnan(x)]
            if len(v) < MIN_SCALE_VALUES:
                break
            q = np.quantile(v, norm.cdf(_Z_KNOTS))
            knots = pd.DataFrame({"value": q, "z": _Z_KNOTS}).groupby("value", sort=True).mean()
            if len(knots) < 2:
                break
            mine.append(pd.DataFrame({"item": item, "sex": s, "z": knots["z"].to_numpy(),
                                      "value": knots.index.to_numpy(dtype="float64")}))  # fmt: skip
        else:
            parts += mine
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SCALE_COLUMNS,
                             ("string", "int64", "float64", "float64", "float64"),
                             strict=True)})  # fmt: skip
    out = pd.concat(parts, ignore_index=True)
    out["persistence"] = _persistence(c, out)
    return out.reindex(columns=list(SCALE_COLUMNS))


def _yearly_pairs(checkups: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The checkups by person and date, and per row after the first whether it and the row
    before are the same person's checkups one fiscal year apart."""
    c = checkups.sort_values(["pseudonym", "exam_date"], kind="stable")
    pid = c["pseudonym"].astype("string").to_numpy()
    fy = c["fiscal_year"].astype("int64").to_numpy()
    return c, (pid[1:] == pid[:-1]) & (fy[1:] - fy[:-1] == 1)


def _persistence(c: pd.DataFrame, knots: pd.DataFrame) -> np.ndarray:
    """Per knot row: the correlation of its item's normal score between consecutive yearly
    checkups of a person (its sex), clipped to [0, 1]; 1 where there are too few pairs."""
    c, pair = _yearly_pairs(c)
    sex = _num(c, "sex")
    rho = {}
    for item in knots["item"].unique():
        z = to_normal_score(knots, item, sex, _num(c, item))
        for s in (1, 2):
            ok = pair & (sex[:-1] == s) & ~np.isnan(z[:-1]) & ~np.isnan(z[1:])
            r = np.corrcoef(z[:-1][ok], z[1:][ok])[0, 1] if ok.sum() >= MIN_SCALE_VALUES else 1.0
            rho[(item, s)] = float(np.clip(r, 0.0, 1.0)) if np.isfinite(r) else 1.0
    return np.array(
        [rho.get((i, s), 1.0) for i, s in zip(knots["item"], knots["sex"], strict=True)]
    )


def _piecewise(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation through (xp, fp), the end segments extended beyond the knots."""
    y = np.interp(x, xp, fp)
    lo = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return np.where(x < xp[0], fp[0] + (x - xp[0]) * lo,
                    np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * hi, y))  # fmt: skip


def _scale_map(scales: pd.DataFrame, item: str, sex: np.ndarray, x: np.ndarray, inverse: bool):
    """Per row: ``x`` mapped value → score (or score → value with ``inverse``) through the
    knots of its sex; NaN for a sex without knots."""
    out = np.full(len(x), np.nan)
    mine = scales[scales["item"] == item]
    for s, knots in mine.groupby("sex"):
        rows = sex == s
        if not rows.any():
            continue
        z = knots["z"].to_numpy(dtype="float64")
        v = knots["value"].to_numpy(dtype="float64")
        out[rows] = _piecewise(x[rows], z, v) if inverse else _piecewise(x[rows], v, z)
    return out


def to_normal_score(scales: pd.DataFrame, item: str, sex, values) -> np.ndarray:
    """Normal score of ``values`` of ``item`` for residents of ``sex`` (NaN without knots)."""
    sex = np.asarray(sex, dtype="float64")
    return _scale_map(scales, item, sex, np.asarray(values, dtype="float64"), inverse=False)


def from_normal_score(scales: pd.DataFrame, item: str, sex, z) -> np.ndarray:
    """Value of ``item`` at normal score ``z`` for residents of ``sex`` (NaN without knots)."""
    sex = np.asarray(sex, dtype="float64")
    return _scale_map(scales, item, sex, np.asarray(z, dtype="float64"), inverse=True)


def _persistence_of(scales: pd.DataFrame, item: str, sex: np.ndarray) -> np.ndarray:
    """Per row: ``item``'s persistence for the row's sex (NaN for a sex without knots)."""
    mine = scales[scales["item"] == item].groupby("sex")["persistence"].first()
    return pd.Series(sex).map(mine).to_numpy(dtype="float64", na_value=np.nan)


def _has_scale(scales: pd.DataFrame | None, item: str) -> bool:
    return scales is not None and bool((scales["item"] == item).any())


def fit_lab_response(
    checkups: pd.DataFrame,
    before_year: int | None = None,
    min_t: float = MIN_T,
    scales: pd.DataFrame | None = None,
    lever_test: bool = True,
    drinking: Drinking = "grams",
    labs: LabEstimator = "within",
    selection: Selection = "t_test",
) -> pd.DataFrame:
    """Coefficient table (:data:`COLUMNS`: one row per item × term; ``coef`` = kept β or 0).

    ``checkups``: pseudonym, fiscal_year, exam_date and the lever, body and lab columns, of
    fiscal years before ``before_year``: body sizes from pairs of checkups one fiscal year
    apart, labs within person (``labs="differences"``: from the same pairs, as engines before;
    benchmarks). ``n``: the pairs (body) or checkups (labs) used.
    ``scales`` (:func:`fit_item_scales`): a lab with knots is regressed on its normal score
    (``scale`` "normal_score"; needs ``sex``), every other item in recorded units ("value").
    ``lever_test`` False: a step is kept on its own t only; ``drinking`` (:func:`lever_terms`)
    — the variants before, for benchmarks (bench/whatif_variants.py); ``selection``
    "shrinkage": :func:`shrink_habit_effects` instead of the t test (a benchmark variant, not
    kept: docs/models.md §Labs within person).
    """
    c = checkups
    if before_year is not None:
        c = c[c["fiscal_year"].astype("int64") < before_year]
    c, pair = _yearly_pairs(c)
    terms = lever_terms(drinking)
    t = _term_matrix(c, terms)
    dx = _delta(t[:-1], t[1:])[pair] if len(c) else np.zeros((0, len(terms)))
    levers = np.array([lever for _, lever, _, _ in terms])
    habit = levers != "weight_kg"
    person = pd.factorize(c["pseudonym"].astype("string"))[0]
    year = c["fiscal_year"].to_numpy(dtype="float64", na_value=np.nan)
    rows = []
    for item in (*BODY, *LABS):
        y = _num(c, item)
        scale = "normal_score" if item in LABS and _has_scale(scales, item) else "value"
        if scale == "normal_score":
            y = to_normal_score(scales, item, _num(c, "sex"), y)
        use = habit if item in BODY else np.ones(len(terms), dtype=bool)
        beta, se, lever_t = (np.full(len(terms), np.nan) for _ in range(3))
        if item in LABS and labs == "within":
            b, cov, n = _within_ols(y, t, person, year)
        else:
            dy = (y[1:] - y[:-1])[pair] if len(c) else np.zeros(0)
            b, cov, n = _ols(dy, dx[:, use])
        beta[use], se[use] = b, np.sqrt(np.clip(np.diag(cov), 0, None))
        lever_t[use] = _lever_t(b, cov, levers[use])
        with np.errstate(invalid="ignore", divide="ignore"):
            tval = beta / se
        want = _DIR.get(item, 0)
        right = use & (want != 0) & (np.sign(beta) == want)
        clear = np.abs(tval) >= min_t
        if lever_test:
            clear |= (np.sign(lever_t) == want) & (np.abs(lever_t) >= min_t)
        kept = right & clear
        rows.append(
            pd.DataFrame(
                {"lab": item, "lever": levers, "term": [name for name, _, _, _ in terms],
                 "beta": beta, "se": se, "t": tval, "lever_t": lever_t, "n": n, "kept": kept,
                 "coef": np.where(kept, beta, 0.0), "scale": scale}
            )
        )  # fmt: skip
    table = pd.concat(rows, ignore_index=True).reindex(columns=list(COLUMNS))
    return shrink_habit_effects(table) if selection == "shrinkage" else table


def shrink_habit_effects(table: pd.DataFrame) -> pd.DataFrame:
    """The labs' habit coefficients (normal-score labs, every term but weight) as their
    posterior means under one prior fitted to all of them (empirical Bayes, a point mass at 0
    and normal components: :data:`_PRIOR_SD`), in place of the |t| selection; a wrong-signed
    posterior stays 0."""
    out = table.copy()
    sel = (out["scale"] == "normal_score") & (out["term"] != "weight_kg") & out["se"].gt(0)
    dose = out.loc[sel, "term"].map(_TERM_DOSE).fillna(1.0).to_numpy()
    b = out.loc[sel, "beta"].to_numpy("float64") * dose
    se = out.loc[sel, "se"].to_numpy("float64") * dose
    if len(b) < 10:
        return out
    sd = np.array([0.0, *_PRIOR_SD])
    var = sd[None, :] ** 2 + se[:, None] ** 2
    like = np.exp(-0.5 * b[:, None] ** 2 / var) / np.sqrt(2 * np.pi * var)
    pi = np.full(len(sd), 1.0 / len(sd))
    for _ in range(500):  # EM on the mixture weights
        post = like * pi
        post /= post.sum(axis=1, keepdims=True)
        pi = post.mean(axis=0)
    post = like * pi
    post /= post.sum(axis=1, keepdims=True)
    mean = (post * (b[:, None] * sd[None, :] ** 2 / var)).sum(axis=1) / dose
    want = out.loc[sel, "lab"].map(_DIR).fillna(0).to_numpy()
    coef = np.where(np.sign(mean) == want, mean, 0.0)
    out.loc[sel, "coef"] = coef
    out.loc[sel, "kept"] = coef != 0
    return out


def fit_response_tables(
    checkups: pd.DataFrame,
    before_year: int | None = None,
    lever_test: bool = True,
    drinking: Drinking = "grams",
    labs: LabEstimator = "within",
    selection: Selection = "t_test",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(coefficient table, item scales) as training fits them: the scales first, then every
    lab regressed on its normal score (an engine's ``lab_response`` and ``lab_scale``);
    ``lever_test``, ``drinking``, ``labs``: :func:`fit_lab_response`."""
    scales = fit_item_scales(checkups, before_year)
    table = fit_lab_response(checkups, before_year, scales=scales, lever_test=lever_test,
                             drinking=drinking, labs=labs, selection=selection)  # fmt: skip
    return table, scales


def _terms_of(table: pd.DataFrame) -> list[tuple[str, str, float | None, int]]:
    """The terms a table was fitted on, so a registered engine keeps its meaning: one before
    terms existed has one coefficient per lever on its raw code (and no body rows); one before
    :data:`EXPOSURE` has 飲酒量 in steps."""
    if "term" not in table:
        return [(lever, lever, None, 0) for lever in LEVERS]
    known = {t[0]: t for t in [*lever_terms("grams"), *lever_terms("steps")]}
    return [known[name] for name in pd.unique(table["term"])]


def _coefficients(table: pd.DataFrame, items, terms) -> np.ndarray:
    """items × terms of the kept coefficients (0 elsewhere)."""
    key = "term" if "term" in table else "lever"
    m = table.pivot_table(index="lab", columns=key, values="coef", aggfunc="sum")
    return m.reindex(index=list(items), columns=[t[0] for t in terms]).fillna(0.0).to_numpy()


def _record_draw(out: pd.DataFrame, item: str) -> np.ndarray:
    """A uniform in [0, 1) per row, fixed by the row's pseudonym and ``item`` (0.5 without a
    pseudonym: plain rounding)."""
    if "pseudonym" not in out:
        return np.full(len(out), 0.5)
    keys = out["pseudonym"].astype("string").fillna("") + f"|{item}"
    h = pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype="uint64")
    return (h >> np.uint64(11)).astype("float64") / float(1 << 53)


def _to_record(new: np.ndarray, step: float, draw: np.ndarray) -> np.ndarray:
    """``new`` on its recording grid: the step above with probability of its fraction."""
    k = np.round(new / step, 9)
    low = np.floor(k)
    return (low + (draw < k - low)) * step


def _move(out: pd.DataFrame, item: str, shift: np.ndarray) -> np.ndarray | None:
    """Move ``item`` of ``out`` by ``shift`` towards lower risk only, inside its hard range;
    items of :data:`RECORD_STEP` land on their recording grid, other integer-coded items are
    rounded. Returns the new values (None when nothing moves)."""
    if item not in out or not shift.any():
        return None
    old = _num(out, item)
    new = old + shift
    if item in RANGES:
        lo, hi = RANGES[item][:2]
        new = np.clip(new, lo, hi)
    if item in RECORD_STEP:
        new = np.where(shift != 0, _to_record(new, RECORD_STEP[item], _record_draw(out, item)), old)
    elif pd.api.types.is_integer_dtype(out[item].dtype):
        new = np.round(new)
    # never towards higher risk (and nothing where the value is missing)
    new = np.where(np.isnan(old) | ((new - old) * _DIR.get(item, 0) > 0), old, new)
    out[item] = pd.array(new, dtype=out[item].dtype)
    return new


def lab_shift(
    before: pd.DataFrame,
    after: pd.DataFrame,
    table: pd.DataFrame,
    scales: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``after`` (``before`` with levers edited, same rows) with body size and labs moved.

    Weight and waist first follow the habit terms' changes (BMI in proportion to weight), then
    each lab moves by Σ β·Δterm, weight's own change included. Only present values move, only
    towards lower risk, clipped to the hard ranges of data.validate ``RANGES``; items recorded
    in whole units or tenths land on their grid, a step further with the share of the move
    (:data:`RECORD_STEP`); HbA1c keeps the exact move (read at both grid values:
    :func:`grid_split`). A lab whose coefficients are on the normal score (``scale``) moves
    along its quantile function from the resident's own value (``scales``, by ``sex``).
    """
    terms = _terms_of(table)
    if not len(after) or not any(lv in before and lv in after for _, lv, _, _ in terms):
        return after
    t0 = _term_matrix(before, terms)
    habit = np.array([lv != "weight_kg" for _, lv, _, _ in terms])
    out = after.copy()
    d = np.nan_to_num(_delta(t0, _term_matrix(out, terms)), nan=0.0)
    body = rowwise_matmul(d[:, habit], _coefficients(table, BODY, terms)[:, habit].T)
    w0 = _num(out, "weight_kg")
    for j, item in enumerate(BODY):
        _move(out, item, body[:, j])
    if "bmi" in out and "weight_kg" in out:
        ratio = _num(out, "weight_kg") / w0
        bmi = np.where(np.isfinite(ratio), _num(out, "bmi") * ratio, _num(out, "bmi"))
        out["bmi"] = pd.array(bmi, dtype=out["bmi"].dtype)
    d = np.nan_to_num(_delta(t0, _term_matrix(out, terms)), nan=0.0)
    shift = rowwise_matmul(d, _coefficients(table, LABS, terms).T)  # rows × labs
    on_score = _score_labs(table)
    for j, lab in enumerate(LABS):
        if lab in on_score and lab in out and _has_scale(scales, lab) and "sex" in out:
            old, sex = _num(out, lab), _num(out, "sex")
            shift[:, j] = _score_move(scales, lab, sex, old, shift[:, j])
        elif lab in on_score:  # no knots for it here: nothing to read the move back through
            shift[:, j] = 0.0
        _move(out, lab, shift[:, j])
    return out


def _score_move(scales: pd.DataFrame, lab: str, sex, old: np.ndarray, dz: np.ndarray):
    """The move in recorded units of a move ``dz`` on the normal score, read where the
    resident's value is expected next year (its score × the item's persistence: a value high
    this year by chance is nearer the middle next year, where the spread is narrower)."""
    centre = to_normal_score(scales, lab, sex, old)
    centre = centre * _persistence_of(scales, lab, sex)
    move = from_normal_score(scales, lab, sex, centre + dz) - from_normal_score(
        scales, lab, sex, centre
    )
    return np.where(dz != 0, np.nan_to_num(move), 0.0)


def _score_labs(table: pd.DataFrame) -> set[str]:
    """Labs whose coefficients are on the normal score (none in a table from before scales)."""
    if "scale" not in table:
        return set()
    return set(table.loc[table["scale"] == "normal_score", "lab"])


def grid_split(
    values: np.ndarray, step: float, recorded: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(up, down, w): the recorded grid values around ``values`` and the weight of ``down``.

    A value recorded to ``step`` (HbA1c 6.4) that truly falls by less than a step (0.03) is
    recorded as 6.4 or as 6.3, the latter with probability 0.3 (its position within the step
    is unknown and taken as uniform): the model, which only ever saw recorded values, is read
    at both and mixed, ``(1 − w)·f(up) + w·f(down)``. w = 0 on the grid, where the value is
    missing, and — given ``recorded``, the values before the move — where it did not move or
    was not recorded on the grid (a finer record needs no split, and its upper grid value
    could lie above it).
    """
    v = np.asarray(values, dtype="float64")
    k = np.round(v / step, 9)
    up, down = np.ceil(k) * step, np.floor(k) * step
    w = np.where(np.isnan(v), 0.0, np.ceil(k) - k)
    if recorded is not None:
        r = np.asarray(recorded, dtype="float64") / step
        on_grid = np.abs(r - np.round(r)) < 1e-6
        w = np.where(on_grid & (v != np.asarray(recorded, dtype="float64")), w, 0.0)
    return np.round(up, 9), np.round(down, 9), w
