"""Seeded synthetic report inputs that follow scoring.contracts (for tests, benchmarks, demos).

Nothing here is real: pseudonyms are random hex, values are drawn from plausible ranges, the
selection is made by the real :func:`scoring.selection.select`, and the SHAP rows of every
resident × outcome add up to the logit of the resident's risk (bias + top k items + other +
calibration).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from data.columns import OUTCOMES, QUESTIONNAIRE_COLUMNS
from data.validate import RANGES
from features import declarations
from scoring.contracts import ModelSummary
from scoring.selection import REASONS, Budget, SelectionConfig, names_values_to_verify, select

from .inputs import ReportInputs, ScenarioLabel

SCENARIOS = (
    ScenarioLabel("weight_loss_3kg", "体重3kg減", "lose 3 kg"),
    ScenarioLabel("quit_smoking", "禁煙", "stop smoking"),
    ScenarioLabel("exercise", "運動習慣", "exercise twice a week"),
    ScenarioLabel("less_alcohol", "節酒", "cut down on alcohol"),
)
FORECAST = ("hba1c", "fpg", "sbp", "dbp", "ldl", "tg", "hdl", "waist_cm", "bmi", "weight_kg")
#: Clinical items (features.declarations ITEMS) the synthetic explanation rows draw from.
_POOL = (
    "age", "sex", "hba1c", "glucose", "blood_pressure", "adiposity", "tg", "hdl", "ldl", "alt",
    "ggt", "kidney", "smoking", "q_exercise", "q_late_dinner", "alcohol", "history",
    "urine_protein", "uric_acid",
)  # fmt: skip
_MEAS = {  # mean, sd, decimals
    "height_cm": (162, 8, 1), "weight_kg": (62, 11, 1), "waist_cm": (84, 9, 1),
    "sbp": (128, 16, 0), "dbp": (78, 11, 0), "tg": (120, 60, 0), "hdl": (62, 15, 0),
    "ldl": (125, 30, 0), "ast": (24, 8, 0), "alt": (22, 12, 0), "ggt": (35, 25, 0),
    "fpg": (98, 14, 0), "random_glucose": (110, 20, 0), "hba1c": (5.7, 0.5, 1),
    "creatinine": (0.8, 0.2, 2), "uric_acid": (5.2, 1.3, 1), "hemoglobin": (13.8, 1.4, 1),
}  # fmt: skip


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def make_scores(n: int, rng: np.random.Generator, fiscal_year: int = 2024) -> pd.DataFrame:
    ids = np.unique(rng.integers(2**60, 2**63 - 1, size=n + 16, dtype=np.int64))
    c: dict[str, object] = {"pseudonym": [f"{x:016x}" for x in rng.permutation(ids)[:n]]}
    c["fiscal_year"] = np.full(n, fiscal_year)
    c["index_fiscal_year"] = np.where(rng.random(n) < 0.05, fiscal_year - 1, fiscal_year)
    start = pd.Timestamp(f"{fiscal_year}-04-01")
    c["exam_date"] = start + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    c["age"] = rng.integers(40, 75, n)
    c["sex"] = rng.integers(1, 3, n)
    for col, (mu, sd, dec) in _MEAS.items():
        x = np.abs(rng.normal(mu, sd, n)).round(dec)
        x[rng.random(n) < 0.03] = np.nan
        c[col] = x
    c["random_glucose"] = np.where(np.isnan(c["fpg"]), c["random_glucose"], np.nan)
    c["bmi"] = (c["weight_kg"] / (c["height_cm"] / 100) ** 2).round(1)
    c["non_hdl"] = (c["ldl"] + c["tg"] / 5).round(0)
    c["egfr"] = np.clip(rng.normal(75, 15, n), 20, 130).round(1)
    c["blood_draw_timing"] = rng.choice([2, 3, 4], n, p=[0.8, 0.15, 0.05])
    c["urine_glucose"] = rng.choice([1, 2, 3], n, p=[0.95, 0.03, 0.02])
    c["urine_protein"] = rng.choice([1, 2, 3], n, p=[0.9, 0.07, 0.03])
    for q in QUESTIONNAIRE_COLUMNS:
        c[q] = rng.choice(list(declarations.get(q).allowed or (1, 2)), n)
    for q in ("q_med_bp", "q_med_glucose", "q_med_lipid"):
        c[q] = np.where(rng.random(n) < 0.15, 1, 2)
    base = {"diabetes": 0.06, "hypertension": 0.12, "dyslipidemia": 0.15,
            "metabolic_syndrome": 0.08, "ckd": 0.05, "liver": 0.04}  # fmt: skip
    for o in OUTCOMES:
        r = rng.beta(1.2, 1.2 / base.get(o, 0.05) - 1.2, n).clip(0.001, 0.97).round(4)
        c[f"risk_{o}"] = r
        best = np.full(n, None, dtype=object)
        after = r.copy()
        for s in SCENARIOS:
            applies = rng.random(n) < 0.5
            v = (r * rng.uniform(0.55, 1.0, n)).round(4)
            applies &= v < r  # a what-if is offered only where it lowers the risk
            v = np.where(applies, v, np.nan)
            c[f"risk_{o}__{s.key}"] = v
            better = applies & (v < after)
            after = np.where(better, v, after)
            best[better] = s.key
        c[f"risk_after_{o}"] = after
        c[f"best_scenario_{o}"] = pd.array(best, dtype="string")
    for item in FORECAST:
        x = np.asarray(c[item], dtype=float)
        sd = np.nanstd(x) * 0.15
        mid = x + rng.normal(0, sd, n)
        lo, hi = RANGES[item][:2]  # inside the item's physical range, as the engine's
        c[f"{item}_p10"] = np.clip(mid - 1.28 * sd, lo, hi).round(2)
        c[f"{item}_p50"] = np.clip(mid, lo, hi).round(2)
        c[f"{item}_p90"] = np.clip(mid + 1.28 * sd, lo, hi).round(2)
    df = pd.DataFrame(c)
    df["model_uri"] = "models:/kenshin-risk/3"
    df["model_version"] = "3"
    df["feature_set_version"] = declarations.FEATURE_SET_VERSION
    df["config_hash"] = "cfg-0123abcd"
    df["store_sha256"] = "ab" * 32
    df["scoring_date"] = f"{fiscal_year + 1}-03-01"
    return df


def make_explanations(
    scores: pd.DataFrame, pseudonyms: list[str], rng: np.random.Generator, k: int = 5
) -> pd.DataFrame:
    """bias + top-``k`` items + other + calibration per resident × outcome, adding up to
    logit(risk) (scoring.contracts.explanations_add_up)."""
    from scoring.items import item_values

    s = scores.set_index("pseudonym").loc[pseudonyms]
    n = len(s)
    pool = np.array(_POOL)
    # what the explanation prints: the index values, and a history (changes, prior checkups)
    feats = s.reset_index()
    hist = np.random.default_rng(rng.integers(2**32))
    feats["n_prior_checkups"] = hist.integers(0, 6, n)
    for c in declarations.CHANGE_ITEMS:
        sd = 0.1 if c == "hba1c" else 1.0 if c in ("weight_kg", "bmi") else 6.0
        change = hist.normal(0, sd, n).round(1 if c in ("hba1c", "weight_kg", "bmi") else 0)
        feats[f"{c}_change"] = np.where(feats["n_prior_checkups"] > 0, change, np.nan)
    shown = {key: item_values(feats, key) for key in pool}
    modifiable = {key: any(declarations.get(f).modifiable for f in declarations.item(key).members
                           if f in declarations.feature_names()) for key in pool}  # fmt: skip
    frames = []
    for o in OUTCOMES:
        logit = _logit(s[f"risk_{o}"].to_numpy(dtype=float))
        bias = np.full(n, _logit(np.array([s[f"risk_{o}"].mean()]))[0])
        calibration = rng.normal(0, 0.3, n)
        contrib = rng.normal(0, 0.6, (n, k))
        order = np.argsort(-np.abs(contrib), axis=1)
        contrib = np.take_along_axis(contrib, order, axis=1)
        items = np.array([rng.choice(pool, k, replace=False) for _ in range(n)])
        other = logit - calibration - bias - contrib.sum(axis=1)
        vals = np.empty((n, k))
        texts = np.empty((n, k), dtype=object)
        for j in range(k):
            for key in pool:
                m = items[:, j] == key
                vals[m, j] = shown[key][0][m]
                texts[m, j] = shown[key][1][m]
        none = np.full(n, None, dtype=object)
        frames.append(
            pd.DataFrame(
                {"pseudonym": np.repeat(np.asarray(pseudonyms, dtype=object), k + 3),
                 "outcome": o, "rank": np.tile(np.arange(k + 3), n),
                 "item": np.column_stack([np.full(n, "bias"), items, np.full(n, "other"),
                                          np.full(n, "calibration")]).ravel(),
                 "value": np.column_stack([np.full(n, np.nan), vals, np.full(n, np.nan),
                                           np.full(n, np.nan)]).ravel(),
                 "value_text": np.column_stack([none, texts, none, none]).ravel(),
                 "contribution": np.column_stack([bias, contrib, other, calibration]).ravel()}
            )
        )  # fmt: skip
    e = pd.concat(frames, ignore_index=True)
    e["modifiable"] = e["item"].isin([key for key, m in modifiable.items() if m])
    return e


def make_drift(rng: np.random.Generator) -> pd.DataFrame:
    names = [d.name for d in declarations.DECLARATIONS][:60]
    psi = np.round(rng.exponential(0.035, len(names)), 4)
    psi[3] = 0.31
    psi[7] = 0.17
    psi = psi.astype(float)
    psi[-1] = np.nan
    status = np.where(psi < 0.1, "ok", np.where(psi < 0.25, "watch", "shift"))
    status = np.where(np.isnan(psi), "n/a", status)
    return pd.DataFrame(
        {
            "feature": names,
            "label_ja": [declarations.get(x).ja for x in names],
            "psi": psi,
            "status": status,
            "missing_reference": rng.uniform(0, 0.1, len(names)).round(4),
            "missing_scoring": rng.uniform(0, 0.1, len(names)).round(4),
        }
    )


MODEL_CARD = """# Model card: kenshin-risk

- feature set: `fs-test` (120 features)
- outcomes: {outcomes}

## Intended use
Ranks NHI members aged 40-74 by their risk of each outcome by their next checkup, to choose who
receives a preventive advice letter and to explain why. It is not a diagnosis.

## Metrics by slice (engine, test year)

| outcome | slice | auc | ece |
| --- | --- | --- | --- |
| diabetes | all | 0.81 | 0.01 |

## Limitations
- Trained only on residents who attend checkups two years running.
- Calibrated on one validation year; recalibrate when the population changes.
- Monotone constraints encode clinical direction for key items only; associations are not causes.
- Questionnaire answers before FY2024 are harmonised (≥5 合 cannot be recovered).
"""


def make_model(rng: np.random.Generator, *, calibration: bool = True) -> ModelSummary:
    metrics = pd.DataFrame(
        {
            "outcome": list(OUTCOMES),
            "auc": rng.uniform(0.7, 0.88, len(OUTCOMES)).round(3),
            "pr_auc": rng.uniform(0.2, 0.5, len(OUTCOMES)).round(3),
            "brier": rng.uniform(0.03, 0.1, len(OUTCOMES)).round(4),
            "ece": rng.uniform(0.002, 0.02, len(OUTCOMES)).round(4),
            "cal_slope": rng.uniform(0.9, 1.1, len(OUTCOMES)).round(3),
            "cal_intercept": rng.normal(0, 0.05, len(OUTCOMES)).round(3),
            "logistic_auc": rng.uniform(0.65, 0.8, len(OUTCOMES)).round(3),
            "member": "lightgbm",
        }
    )
    rows = []
    if calibration:
        for o in OUTCOMES:
            mp = np.sort(rng.beta(1, 8, 10))
            rows.append(
                pd.DataFrame(
                    {"outcome": o, "bin": np.arange(10), "mean_predicted": mp.round(4),
                     "observed": np.clip(mp + rng.normal(0, 0.01, 10), 0, 1).round(4),
                     "n": rng.integers(50, 2000, 10)}
                )
            )  # fmt: skip
    cal = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return ModelSummary(
        uri="models:/kenshin-risk/3",
        name="kenshin-risk",
        version="3",
        run_id="0123456789abcdef0123456789abcdef",
        feature_set_version=declarations.FEATURE_SET_VERSION,
        test_year=2023,
        outcomes=OUTCOMES,
        metrics=metrics,
        calibration=cal,
        model_card=MODEL_CARD.replace("{outcomes}", ", ".join(OUTCOMES)),
    )


def make_inputs(
    n_scored: int = 400, n_explained: int = 50, seed: int = 0, *, k: int = 5
) -> ReportInputs:
    """A full, consistent set of report inputs (``n_explained`` residents get a page)."""
    rng = np.random.default_rng(seed)
    scores = make_scores(n_scored, rng)
    cfg = SelectionConfig(
        seed=seed,
        control_rate=0.1,
        budget=Budget(advice=max(1, int(n_explained * 0.5)), see_doctor=max(1, n_explained // 2)),
        min_risk=dict.fromkeys(OUTCOMES, 0.05),
    )
    sel = select(scores, cfg)
    cand = sel[sel["arm"].notna()].copy()
    cand["_t"] = cand["letter_type"].map({"advice": 0, "see_doctor": 1})
    cand = cand.sort_values(["_t", "rank", "pseudonym"])
    chosen = list(cand["pseudonym"].iloc[:n_explained])
    if len(chosen) < n_explained:  # top up with unselected residents
        rest = sel.loc[~sel["pseudonym"].isin(chosen), "pseudonym"]
        chosen += list(rest.iloc[: n_explained - len(chosen)])
    expl = make_explanations(scores, chosen, rng, k=k)
    return ReportInputs(
        scores=scores,
        selection=sel,
        explanations=expl,
        drift=make_drift(rng),
        model=make_model(rng),
        fiscal_year=2024,
        scoring_date=date(2025, 3, 1),
        scenarios=SCENARIOS,
        summary=_run_counts(scores, sel, len(chosen)),
    )


def _run_counts(scores: pd.DataFrame, sel: pd.DataFrame, explained: int) -> dict[str, int]:
    """Counts as the annual run writes them (kenshin.annual, ``run.json``), made consistent."""
    n = len(scores)
    fallback = int((scores["index_fiscal_year"] < scores["fiscal_year"]).sum())
    with_checkup, not_enrolled, too_old = n + 30, 20, 10
    enrolled = 2 * n
    sent = int(sel["sent"].sum())
    reasons = sel["reason"].astype("string").value_counts()
    return {
        "enrolled_on_scoring_date": enrolled,
        "with_checkup": with_checkup,
        "checkup_in_fy": with_checkup - fallback - 5,
        "checkup_in_previous_fy": fallback + 5,
        "not_enrolled": not_enrolled,
        "age_out_of_range": too_old,
        "enrolled_without_recent_checkup": enrolled - (with_checkup - not_enrolled),
        "eligible": n,
        "eligible_by_fallback": fallback,
        "scored": n,
        **{f"reason_{k}": int(reasons.get(k, 0)) for k in REASONS},
        "values_to_verify": int(names_values_to_verify(sel["reason_detail"]).sum()),
        "explained": explained,
        "letters_requested": sent,
        "letters_rendered": sent,
        "letters_reused": 0,
        "letters_characters_replaced": 2,
        "letters_forecast_withheld": 1,
    }
