"""Evaluation of risk models and forecasts, overall and by slice (評価指標).

Metrics per (outcome, model, slice, group) — tidy rows:

* ``auc``, ``pr_auc`` (average precision), ``brier``;
* ``cal_slope`` / ``cal_intercept``: logistic recalibration of logit(p) on the outcome —
  slope *b* of y ~ a + b·logit(p); intercept = calibration-in-the-large, *a* of
  y ~ a + offset(logit p) (slope fixed at 1). Perfect calibration: slope 1, intercept 0;
* ``ece``: expected calibration error over 10 equal-width probability bins,
  Σ_bins (n_bin / n) · |mean p − event rate|;
* ``precision_top_k``: the ``top_k`` highest-risk rows of the whole test year are selected
  (the letter budget, capped at n); per slice, the event rate among the selected rows of that
  slice (``n_top_k`` of them).

Synthetic cohorts (``truth`` given), per outcome on the same test rows:

* ``oracle_auc``: AUC of truth's ``p_true_<outcome>``; ``auc_ratio`` = model AUC / oracle AUC;
* ``mae_p_true``: mean |predicted − true probability|;
* driver agreement, by clinical item (features.declarations ``ITEMS``): each row's
  contributions (log-odds) are summed per item (``hba1c``, its change, slope and flag →
  ``hba1c``; weight, BMI, waist → ``adiposity``; SBP, DBP → ``blood_pressure``; …), and the
  generator's true driver columns are mapped to the same items (``weight_kg`` and ``waist_cm`` →
  ``adiposity``, ``q_alcohol_amount`` → ``alcohol``). The model's drivers are the ≤3 items with
  the largest *positive* sums. With the generator's 3 true drivers: ``driver_any`` = share of
  rows where ≥1 model driver is a true driver; ``driver_mean_overlap`` = mean number of shared
  items (0-3). ``driver_any_baseline`` is the same share for a constant guess (the 3 items most
  often among the true drivers of the rows scored) — the level a model without per-person
  explanations would reach. ``driver_high_*``: the same among the high-risk rows, the top
  ``high_share`` (10%) of the engine's predicted risk, with their own constant guess.
  ``driver_top1_in_top3``: share of rows whose *first* true driver is among the model's top-3
  items, against the 3 items most often first (``driver_top1_in_top3_baseline``);
  ``driver_top1``: share whose model's first item is the first true driver, against the item
  most often first (``driver_top1_baseline``) — a constant can only be right as often as one
  item leads, so a model that ranks per person can beat it where ``driver_any``'s constant is
  right for nearly everybody. ``driver_lifestyle_*`` / ``driver_high_lifestyle_*``: the same
  share on the habit and body-size items only (:data:`LIFESTYLE_ITEMS`, what a letter's
  factors name), over rows with such a true driver. The training run reports all of these
  twice: against the generator's drivers (``drivers_<outcome>``, ``driver_*``) and against the
  drivers attributed to what the model sees (``drivers_observed_<outcome>``, ``driver_observed_*``; the
  definitions: data.synth.truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from features.declarations import item_matrix, item_of, modifiable_features

__all__ = [
    "EvaluationReport",
    "auc_or_nan",
    "binary_metrics",
    "calibration_slope_intercept",
    "driver_agreement",
    "ece",
    "forecast_metrics",
    "metrics_by_slice",
    "missing_item_shift",
    "pattern_metrics",
    "ReportTable",
]

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35, 35)))


def auc_or_nan(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for labels ``y``; NaN unless both classes are present."""
    y = np.asarray(y)
    return float(roc_auc_score(y, score)) if len(y) and y.min() != y.max() else np.nan


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the logistic recalibration of logit(p) (Newton, unpenalised)."""
    y = np.asarray(y, dtype="float64")
    x = _logit(p)
    if len(y) == 0 or y.min() == y.max():
        return np.nan, np.nan
    # slope: y ~ a + b x
    theta = np.array([0.0, 1.0])
    A = np.column_stack([np.ones_like(x), x])
    for _ in range(50):
        mu = _sigmoid(A @ theta)
        w = mu * (1 - mu) + 1e-12
        step = np.linalg.solve(A.T @ (A * w[:, None]) + 1e-9 * np.eye(2), A.T @ (y - mu))
        theta += step
        if np.abs(step).max() < 1e-8:
            break
    # calibration-in-the-large: y ~ a + offset(x)
    a = 0.0
    for _ in range(50):
        mu = _sigmoid(a + x)
        step = (y - mu).sum() / max((mu * (1 - mu)).sum(), 1e-12)
        a += step
        if abs(step) < 1e-10:
            break
    return float(theta[1]), float(a)


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over ``bins`` equal-width bins of p."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    if len(y) == 0:
        return np.nan
    b = np.minimum((p * bins).astype(int), bins - 1)
    sp = np.bincount(b, weights=p, minlength=bins)
    sy = np.bincount(b, weights=y, minlength=bins)
    return float(np.abs(sp - sy).sum() / len(y))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, PR-AUC, Brier, calibration slope / intercept and ECE of probabilities ``p``."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    if len(p) and np.isnan(p).all():  # no such model (e.g. no LightGBM for a small outcome)
        return {"n": len(y), "events": int(y.sum()), "event_rate": float(y.mean()),
                **dict.fromkeys(("mean_p", "auc", "pr_auc", "brier", "cal_slope",
                                 "cal_intercept", "ece"), np.nan)}  # fmt: skip
    both = len(y) > 0 and y.min() != y.max()
    slope, intercept = calibration_slope_intercept(y, p)
    return {
        "n": len(y),
        "events": int(y.sum()),
        "event_rate": float(y.mean()) if len(y) else np.nan,
        "mean_p": float(p.mean()) if len(y) else np.nan,
        "auc": float(roc_auc_score(y, p)) if both else np.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else np.nan,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else np.nan,
        "cal_slope": slope,
        "cal_intercept": intercept,
        "ece": ece(y, p),
    }


def age_band(age: np.ndarray, bands: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Band label ('40-49', …) per age; '' outside every band."""
    out = np.full(len(age), "", dtype=object)
    for lo, hi in bands:
        out[(age >= lo) & (age <= hi)] = f"{lo}-{hi}"
    return out


def metrics_by_slice(
    y: np.ndarray,
    p: np.ndarray,
    keys: pd.DataFrame,
    top_k: int,
    age_bands: tuple[tuple[int, int], ...],
    slices: tuple[str, ...] = ("sex", "age_band"),
) -> pd.DataFrame:
    """Tidy metrics: one row for ``all`` and one per group of each slice (``keys``: age, sex)."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    k = min(top_k, len(p))
    selected = np.zeros(len(p), dtype=bool)
    selected[np.argsort(-p, kind="stable")[:k]] = True
    groups: list[tuple[str, str, np.ndarray]] = [("all", "all", np.ones(len(p), dtype=bool))]
    sex = keys["sex"].to_numpy(dtype="float64")
    age = keys["age"].to_numpy(dtype="float64")
    if "sex" in slices:
        groups += [("sex", name, sex == code) for code, name in ((1, "male"), (2, "female"))]
    if "age_band" in slices:
        band = age_band(age, age_bands)
        groups += [("age_band", f"{lo}-{hi}", band == f"{lo}-{hi}") for lo, hi in age_bands]
    rows = []
    for sl, grp, m in groups:
        sel = selected & m
        rows.append(
            {"slice": sl, "group": grp, **binary_metrics(y[m], p[m]), "n_top_k": int(sel.sum()),
             "precision_top_k": float(y[sel].mean()) if sel.any() else np.nan}
        )  # fmt: skip
    return pd.DataFrame(rows)


#: Items no advice can change: left out of the actionable driver agreement.
NON_ACTIONABLE_ITEMS = ("age", "sex", "height", "history")
#: Items a resident changes directly (habits, body size): the lifestyle driver agreement.
LIFESTYLE_ITEMS = tuple(sorted({item_of(f) for f in modifiable_features()}))


def _item_or_name(column: str) -> str:
    """The clinical item of a true-driver column (its own name if it belongs to none)."""
    try:
        return item_of(column)
    except KeyError:
        return column


def _agreement(
    per_item: np.ndarray, truth: np.ndarray, vocab: list[str], first: np.ndarray | None = None
) -> dict[str, object]:
    """Top-3 positive items of ``per_item`` (n × V) against boolean ``truth`` (n × V).

    ``first``: each row's true top-1 item (vocab index, −1 for none) for the ``top1*`` figures.
    """
    n = len(per_item)
    if not n:
        return {"any": np.nan, "overlap": np.nan, "any_baseline": np.nan,
                "overlap_baseline": np.nan, "baseline_items": "", "top1_in_top3": np.nan,
                "top1_in_top3_baseline": np.nan, "top1": np.nan, "top1_baseline": np.nan,
                "top1_baseline_items": ""}  # fmt: skip
    top = np.argsort(-per_item, axis=1, kind="stable")[:, :3]
    positive = np.take_along_axis(per_item, top, axis=1) > 0
    overlap = (np.take_along_axis(truth, top, axis=1) & positive).sum(axis=1)
    common = np.argsort(-truth.sum(axis=0), kind="stable")[:3]
    base = truth[:, common].sum(axis=1)
    out = {"any": float((overlap >= 1).mean()), "overlap": float(overlap.mean()),
           "any_baseline": float((base >= 1).mean()), "overlap_baseline": float(base.mean()),
           "baseline_items": ";".join(vocab[i] for i in common)}  # fmt: skip
    if first is None:
        return out
    # The true top-1 driver: among the model's top-3 / its first item, against the constant
    # guess fitted to the same figure (the 3 / 1 items most often true top-1 on these rows).
    hit = (top == first[:, None]) & positive
    counts = np.bincount(first[first >= 0], minlength=len(vocab))
    best = np.argsort(-counts, kind="stable")[:3]
    out |= {
        "top1_in_top3": float(hit.any(axis=1).mean()),
        "top1_in_top3_baseline": float(np.isin(first, best).mean()),
        "top1": float(hit[:, 0].mean()),
        "top1_baseline": float((first == best[0]).mean()),
        "top1_baseline_items": ";".join(vocab[i] for i in best),
    }
    return out


def driver_agreement(
    contrib: np.ndarray,
    feature_names: list[str],
    truth_drivers: pd.Series,
    risk: np.ndarray | None = None,
    high_share: float = 0.1,
) -> dict[str, float | str]:
    """Agreement of the top-3 positive clinical items with the generator's drivers (module doc).

    ``contrib``: (n, F[+1]) contributions (a trailing bias column is ignored);
    ``truth_drivers``: ';'-joined canonical column names per row (same rows); ``risk``: the
    engine's predicted risk of the same rows — the top ``high_share`` of it are the high-risk
    rows of the ``driver_high_*`` figures (NaN without ``risk``).
    """
    F = len(feature_names)
    M, items = item_matrix(feature_names)
    t = truth_drivers.fillna("").astype(str).reset_index(drop=True)
    exploded = t.str.split(";").explode()
    exploded = exploded[exploded != ""].map(_item_or_name)
    pairs = pd.DataFrame({"row": exploded.index, "col": exploded.to_numpy()}).drop_duplicates()
    vocab = [*items, *sorted(set(exploded) - set(items))]
    col = {s: i for i, s in enumerate(vocab)}
    per_item = np.asarray(contrib, dtype="float64")[:, :F] @ M
    n = len(per_item)
    per_item = np.column_stack([per_item, np.full((n, len(vocab) - len(items)), -np.inf)])
    truth = np.zeros((n, len(vocab)), dtype=bool)
    truth[pairs["row"].to_numpy(), pairs["col"].map(col).to_numpy(dtype=int)] = True
    lead = exploded[~exploded.index.duplicated()]  # each row's first (largest) true driver
    first = np.full(n, -1)
    first[lead.index.to_numpy(dtype=int)] = lead.map(col).to_numpy(dtype=int)
    every = _agreement(per_item, truth, vocab, first)
    out: dict[str, float | str] = {
        "driver_any": every["any"],
        "driver_mean_overlap": every["overlap"],
        "driver_any_baseline": every["any_baseline"],
        "driver_mean_overlap_baseline": every["overlap_baseline"],
        "driver_baseline_items": every["baseline_items"],
        "driver_top1_in_top3": every["top1_in_top3"],
        "driver_top1_in_top3_baseline": every["top1_in_top3_baseline"],
        "driver_top1": every["top1"],
        "driver_top1_baseline": every["top1_baseline"],
    }
    high = np.zeros(n, dtype=bool)
    if risk is not None and n:
        r = np.asarray(risk, dtype="float64")
        k = max(1, int(np.ceil(high_share * n)))
        high[np.argsort(-r, kind="stable")[:k]] = True
    h = _agreement(per_item[high], truth[high], vocab, first[high])
    out |= {
        "driver_high_n": int(high.sum()),
        "driver_high_any": h["any"],
        "driver_high_mean_overlap": h["overlap"],
        "driver_high_any_baseline": h["any_baseline"],
        "driver_high_baseline_items": h["baseline_items"],
        "driver_high_top1_in_top3": h["top1_in_top3"],
        "driver_high_top1_in_top3_baseline": h["top1_in_top3_baseline"],
        "driver_high_top1": h["top1"],
        "driver_high_top1_baseline": h["top1_baseline"],
        "driver_high_top1_baseline_items": h["top1_baseline_items"],
    }
    # What a nurse can act on: the same comparison without the items nobody can change (age,
    # sex, height, checkup history) on either side, over residents with an actionable true
    # driver. The generator credits age and sex (its thresholds move with them) for most
    # high-risk residents, so with them a constant guess is nearly always right.
    fixed = np.isin(vocab, NON_ACTIONABLE_ITEMS)
    act_item = np.where(fixed, -np.inf, per_item)
    act_truth = truth & ~fixed
    has = act_truth.any(axis=1)
    a = _agreement(act_item[has], act_truth[has], vocab)
    ah = _agreement(act_item[has & high], act_truth[has & high], vocab)
    out |= {
        "driver_actionable_any": a["any"],
        "driver_actionable_any_baseline": a["any_baseline"],
        "driver_high_actionable_n": int((has & high).sum()),
        "driver_high_actionable_any": ah["any"],
        "driver_high_actionable_any_baseline": ah["any_baseline"],
        "driver_high_actionable_baseline_items": ah["baseline_items"],
    }
    # What a letter advises: habits and body size only (the items with a feature the resident
    # changes directly, features.declarations ``modifiable``), over residents with such a true
    # driver. The outcome's own laboratory item, a true driver of nearly every high-risk
    # resident, is no longer a constant that cannot lose.
    life = np.isin(vocab, LIFESTYLE_ITEMS)
    life_item = np.where(life, per_item, -np.inf)
    life_truth = truth & life
    has = life_truth.any(axis=1)
    b = _agreement(life_item[has], life_truth[has], vocab)
    bh = _agreement(life_item[has & high], life_truth[has & high], vocab)
    out |= {
        "driver_lifestyle_n": int(has.sum()),
        "driver_lifestyle_any": b["any"],
        "driver_lifestyle_any_baseline": b["any_baseline"],
        "driver_high_lifestyle_n": int((has & high).sum()),
        "driver_high_lifestyle_any": bh["any"],
        "driver_high_lifestyle_any_baseline": bh["any_baseline"],
        "driver_high_lifestyle_baseline_items": bh["baseline_items"],
    }
    return out


def forecast_metrics(
    y: np.ndarray, lo: np.ndarray, mid: np.ndarray, hi: np.ndarray, current: np.ndarray
) -> dict[str, float]:
    """80% interval coverage, width, MAE of the median and of carrying this year's value.

    Over rows with an outcome and a forecast (a change forecast needs this year's value);
    ``forecast_share`` = rows with a forecast / rows with an outcome.
    """
    has_y = ~np.isnan(y)
    ok = has_y & ~np.isnan(mid)
    y, lo, mid, hi, current = y[ok], lo[ok], mid[ok], hi[ok], current[ok]
    cur_ok = ~np.isnan(current)
    return {
        "n": int(ok.sum()),
        "forecast_share": float(ok.sum() / has_y.sum()) if has_y.any() else np.nan,
        "coverage_80": float(((y >= lo) & (y <= hi)).mean()) if len(y) else np.nan,
        "below_p10": float((y < lo).mean()) if len(y) else np.nan,
        "above_p90": float((y > hi).mean()) if len(y) else np.nan,
        "mean_width": float((hi - lo).mean()) if len(y) else np.nan,
        "mae_p50": float(np.abs(y - mid).mean()) if len(y) else np.nan,
        "mae_persistence": float(np.abs(y[cur_ok] - current[cur_ok]).mean())
        if cur_ok.any()
        else np.nan,
    }


#: Glucose patterns of an index checkup, in report order (features.masking.GLUCOSE_PATTERNS).
PATTERN_ORDER = ("both", "fpg_only", "hba1c_only", "neither")
#: Resamples of the residents for a paired AUC drop's standard error.
DROP_BOOTSTRAP = 200


def expected_auc(score: np.ndarray, p_true: np.ndarray) -> float:
    """The AUC ``score`` has against outcomes drawn from ``p_true`` (each resident a case with
    weight p, a non-case with 1 − p, a resident never compared with itself; ties count ½): the
    same measure as an AUC, without the chance of which residents happened to have the event."""
    score = np.asarray(score, dtype="float64")
    p = np.asarray(p_true, dtype="float64")
    ok = ~np.isnan(score) & ~np.isnan(p)
    score, p = score[ok], p[ok]
    q = 1.0 - p
    _, level = np.unique(score, return_inverse=True)
    cases, non = np.bincount(level, p), np.bincount(level, q)
    below = np.cumsum(non) - non
    wins = (cases * below).sum() + 0.5 * ((cases * non).sum() - (p * q).sum())
    pairs = p.sum() * q.sum() - (p * q).sum()
    return float(wins / pairs) if pairs > 0 else np.nan


def _auc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The AUC of each row of ``score`` against the same row of ``y`` (Mann-Whitney, ties ½);
    NaN for a row with one class only."""
    ranks = rankdata(score, axis=1)
    cases = y.sum(axis=1)
    non = y.shape[1] - cases
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=1) - cases * (cases + 1) / 2) / (cases * non)


def paired_auc_drop_se(
    y: np.ndarray, full: np.ndarray, masked: np.ndarray, n: int = DROP_BOOTSTRAP, seed: int = 0
) -> float:
    """Standard error of AUC(``full``) − AUC(``masked``) on the same residents (a bootstrap of
    the residents, both scores resampled together); NaN with too few cases to resample."""
    y = np.asarray(y, dtype="float64")
    if y.sum() < 2 or (1 - y).sum() < 2:
        return np.nan
    i = np.random.default_rng(seed).integers(0, len(y), (n, len(y)))
    yy = y[i]
    drops = _auc_rows(yy, np.asarray(full, "float64")[i]) - _auc_rows(
        yy, np.asarray(masked, "float64")[i]
    )
    drops = drops[np.isfinite(drops)]
    return float(np.std(drops, ddof=1)) if len(drops) > 1 else np.nan


def pattern_metrics(
    y: np.ndarray,
    natural: np.ndarray,
    predictions: dict[str, np.ndarray],
    p_true: np.ndarray | None = None,
) -> pd.DataFrame:
    """AUC and calibration-in-the-large of one outcome per glucose pattern (未測定項目).

    ``y``: labels of the test rows; ``natural``: each row's own pattern
    (features.masking.glucose_pattern); ``predictions``: pattern → the risk of every row
    with that pattern's items masked (``"both"``: as measured); ``p_true``: truth's
    probabilities of the same rows (synthetic wards) or None.

    ``evaluation = "masked"``: the rows measured with both glucose items, under each
    pattern's predictions — every pattern on the same residents, so ``auc_drop`` (AUC as
    measured − AUC of the pattern) is what the missing items cost. ``"natural"``: every row
    under its own pattern, as measured. Columns: evaluation, pattern, n, events, event_rate,
    mean_p, ``mean_p_over_observed`` (calibration-in-the-large as a ratio, 1 = calibrated),
    ``cal_intercept`` (the logistic one of :func:`calibration_slope_intercept`, 0 =
    calibrated), auc, auc_drop, ``auc_drop_se`` (its standard error, :func:`paired_auc_drop_se`:
    a drop from a few events is mostly chance), and with ``p_true`` (a low-noise check of the
    same figures) ``mean_p_over_p_true``, ``auc_true`` (:func:`expected_auc`) and
    ``auc_drop_true``.
    """
    y = np.asarray(y, dtype="float64")
    natural = np.asarray(natural).astype(str)
    full = natural == "both"
    base = np.asarray(predictions["both"], dtype="float64")
    groups = [("masked", p, full, predictions[p]) for p in PATTERN_ORDER if p in predictions]
    groups += [("natural", p, natural == p, base) for p in PATTERN_ORDER]
    auc_full = auc_full_true = np.nan
    rows = []
    for evaluation, pattern, m, p in groups:
        p = np.asarray(p, dtype="float64")[m]
        yy = y[m]
        both = len(yy) > 0 and yy.min() != yy.max()
        auc = float(roc_auc_score(yy, p)) if both else np.nan
        if evaluation == "masked" and pattern == "both":
            auc_full = auc
        row = {
            "evaluation": evaluation,
            "pattern": pattern,
            "n": int(m.sum()),
            "events": int(yy.sum()),
            "event_rate": float(yy.mean()) if len(yy) else np.nan,
            "mean_p": float(p.mean()) if len(p) else np.nan,
            "mean_p_over_observed": float(p.mean() / yy.mean()) if yy.sum() else np.nan,
            "cal_intercept": calibration_slope_intercept(yy, p)[1],
            "auc": auc,
            "auc_drop": auc_full - auc if evaluation == "masked" else np.nan,
            "auc_drop_se": np.nan,
        }
        if evaluation == "masked" and pattern != "both" and both:
            row["auc_drop_se"] = paired_auc_drop_se(yy, base[m], p)
        if p_true is not None:
            t = np.asarray(p_true, dtype="float64")[m]
            ok = ~np.isnan(t)
            row["mean_p_over_p_true"] = (
                float(p[ok].mean() / t[ok].mean()) if ok.any() and t[ok].mean() > 0 else np.nan
            )
            row["auc_true"] = expected_auc(p, t) if ok.any() else np.nan
            if evaluation == "masked" and pattern == "both":
                auc_full_true = row["auc_true"]
            row["auc_drop_true"] = (
                auc_full_true - row["auc_true"] if evaluation == "masked" else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)


def missing_item_shift(p: np.ndarray, masked: dict[str, np.ndarray]) -> pd.DataFrame:
    """How much leaving an item unmeasured moves the risk of the same rows.

    ``p``: risks as measured; ``masked``: item (group) → the risks with it masked. Per item:
    n, ``mean_dlogit`` (mean change of the log-odds), ``mean_abs_dlogit`` and ``risk_ratio``
    (mean masked risk / mean risk). An item whose absence means "not known" moves individual
    risks (it carried information) but hardly the mean: a large mean shift means the model
    reads the missing value itself as a signal.
    """
    p = np.asarray(p, dtype="float64")
    rows = []
    for item, q in masked.items():
        d = _logit(q) - _logit(p)
        rows.append({"item": item, "n": len(p),
                     "mean_dlogit": float(d.mean()) if len(d) else np.nan,
                     "mean_abs_dlogit": float(np.abs(d).mean()) if len(d) else np.nan,
                     "risk_ratio": float(np.mean(q) / p.mean()) if len(p) else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


@dataclass
class ReportTable:
    """An extra evaluation table of a training run: logged as ``evaluation/<name>.csv`` and
    shown in the model card under ``title`` with its ``note``."""

    title: str
    table: pd.DataFrame
    note: str = ""


@dataclass
class EvaluationReport:
    """Tidy results of one run on the test year.

    ``metrics``: outcome, model (engine = the member chosen on validation, models.member_choice /
    lightgbm alone / logistic / points / oracle), slice, group, n,
    events, event_rate, mean_p, auc, pr_auc, brier, cal_slope, cal_intercept, ece, n_top_k,
    precision_top_k. ``synthetic``: per outcome oracle AUC, ratio, MAE to p_true, driver
    agreement (empty without truth). ``forecasts``: per item coverage and errors.
    ``splits``: rows and events per outcome and split. ``timings``: seconds per step.
    ``selection``: validation AUC of every candidate member per outcome, ``chosen`` flag,
    training events and a ``note`` for small outcomes (fallback member ``logistic`` or
    ``off``: switched off for the run, models.train.small_outcome_plan). ``extra``: further
    tables by name (:class:`ReportTable`); ``extra_metrics``: further scalars for MLflow.
    """

    test_year: int
    metrics: pd.DataFrame
    synthetic: pd.DataFrame
    forecasts: pd.DataFrame
    splits: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    extra: dict[str, ReportTable] = field(default_factory=dict)
    extra_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """Messages about small outcomes (fallback member or switched off), one line each."""
        sel = self.selection
        if not len(sel) or "note" not in sel:
            return []
        return [str(n) for n in sel.loc[sel["chosen"].astype(bool), "note"] if n and n == n]

    def summary(self) -> pd.DataFrame:
        """One row per outcome: the headline figures (overall slice).

        Switched-off outcomes (too few events) get a row too: member ``off``, no metrics, and
        the reason in ``note``.
        """
        m = self.metrics[self.metrics["slice"] == "all"]
        wide = m.pivot(index="outcome", columns="model", values="auc").add_suffix("_auc")
        lead = "engine" if (m["model"] == "engine").any() else "lightgbm"
        gbm = m[m["model"] == lead].set_index("outcome")
        out = pd.concat([wide, gbm[["ece", "cal_slope", "cal_intercept", "brier"]]], axis=1)
        if len(self.selection) and "chosen" in self.selection:
            chosen = self.selection[self.selection["chosen"]].set_index("outcome")
            off = [o for o in chosen.index if o not in out.index]
            out = out.reindex([*out.index, *off])
            out.index.name = "outcome"
            out["member"] = chosen["member"].reindex(out.index).fillna("lightgbm")
            weight = chosen["weight"].reindex(out.index).fillna(1.0)
            out["member_weight"] = weight.where(out["member"] != "off", np.nan)
            if "note" in chosen:
                out["note"] = chosen["note"].reindex(out.index).fillna("")
        if len(self.synthetic):
            s = self.synthetic.set_index("outcome")
            cols = [
                "auc_ratio",
                "mae_p_true",
                "driver_any",
                "driver_mean_overlap",
                "driver_any_baseline",
                "driver_high_any",
                "driver_high_any_baseline",
                "driver_high_actionable_any",
                "driver_high_actionable_any_baseline",
                "driver_observed_high_lifestyle_any",
                "driver_observed_high_lifestyle_any_baseline",
            ]
            cols = [c for c in cols if c in s]
            out = out.join(s[cols])
        return out.reset_index()
