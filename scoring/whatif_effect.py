"""The what-if as the engine's pooled odds ratio (もしもの効果: 平均オッズ比).

Per resident, a what-if re-scored through the trees (:func:`scoring.score.scenario_risks`)
changes the risk by whatever the ensemble does in that resident's region of the feature space.
Where the training data are dense (mid and high risk) that change is well estimated; in sparse
low-risk regions a tree ensemble is flat, so the same habit appears to do almost nothing there.
On the synthetic wards' true counterfactuals the change is close to a constant shift of the
log-odds (a liability-threshold outcome: the habit moves the mean of the item whose threshold
defines the outcome), and the trees' per-resident change was the opposite shape: too large at
high risk, ten times too small at low risk
(docs/models.md §What-if against the true counterfactual).

So the engine carries, per scenario × outcome × dose, the *information-weighted mean log-odds
change* of its own per-resident what-if over a training year's residents (weights p·(1 − p),
the information a risk of p carries about its log-odds; for metabolic syndrome, read jointly
through the forecasts, the change that keeps the mean risk: :func:`pool_effects`), fitted at
training (:func:`fit_whatif_effects`), and the annual run applies it as an odds ratio to each
resident's risk: ``logit(p') = logit(p) + Δ``. For an outcome met by items crossing their
cuts, each of them forecast (diabetes, hypertension, dyslipidaemia, liver, hyperuricaemia), a
resident's change is read through the value forecasts instead of the re-scored trees: the
change of the chance that next year's items cross their cuts, moved by the lab response
(:mod:`scoring.whatif_liability`; the table's ``method``); metabolic syndrome's the same way
over its rule's items drawn jointly, CKD's through the eGFR forecast and the engine's model of
next year's urine protein (models.dipstick_chance). The dose is the value a ``set`` scenario
changes from (drinking 2, 3 … 合 → under 1 合); a dose with fewer than :data:`MIN_DOSE_ROWS`
residents uses the scenario's pooled row (``dose`` ``*``). Every row of the engine's
per-resident what-if lowers or keeps the risk (monotone models), so Δ ≤ 0: the pooled what-if
never raises a risk.

A scenario is pooled only where the table holds it under the same definition (its conditions,
edits and the lab-response switch: :func:`scenario_definition`) for every outcome of the
engine; a scenario added or edited after training is re-scored per resident as before. With
``scenario_effect = "per_resident"`` (scoring.toml) every scenario is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from models.forecast_chance import (
    JOINT_OUTCOMES,
    forecast_outcomes,
    moved_items,
    outcome_chance,
)
from scoring.whatif_liability import log_odds_change

__all__ = [
    "ALL_DOSES",
    "COLUMNS",
    "MIN_DOSE_ROWS",
    "PooledChange",
    "fit_whatif_effects",
    "pool_effects",
    "pooled_change",
    "scenario_definition",
    "scenario_dose",
    "via_forecasts",
]

#: Columns of an engine's what-if effect table; ``method``: how its per-resident changes were
#: read, ``forecasts`` or ``joint`` (scoring.whatif_liability: chance or joint_chance) or
#: ``trees`` (the outcome model re-scored).
COLUMNS = ("scenario", "definition", "outcome", "dose", "n", "log_odds_change", "se",
           "odds_ratio", "method")  # fmt: skip
#: The dose row every scenario × outcome has: the pool over all its residents.
ALL_DOSES = "*"
#: Fewest residents a dose needs for a row of its own.
MIN_DOSE_ROWS = 50
#: Residents of the training year the effects are pooled over, at most (a sample by pseudonym
#: hash, so the same store gives the same table).
MAX_FIT_RESIDENTS = 30_000
_EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def scenario_definition(scenario, lab_response: bool) -> str:
    """Short hash of what a scenario does (conditions, edits, lab-response switch; not its
    label): a pooled effect applies only to the scenario it was fitted for."""
    spec = scenario.model_dump(mode="json", exclude={"label_ja"})
    spec["lab_response"] = bool(lab_response)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def scenario_dose(scenario, base: pd.DataFrame) -> np.ndarray:
    """Per row of ``base``: the values the scenario's ``set`` items change from (``col=v``,
    joined by ``;``), or ``""`` for a scenario that only adds or multiplies (one dose)."""
    out = np.full(len(base), "", dtype=object)
    for i, col in enumerate(sorted(scenario.set)):
        v = pd.to_numeric(base[col], errors="coerce").to_numpy(dtype="float64")
        values, inverse = np.unique(v, return_inverse=True)  # a few codes: format each once
        text = np.array([f"{x:g}" if x == x else "NA" for x in values], dtype=object)
        out = out + (";" if i else "") + f"{col}=" + text[inverse.reshape(-1)]
    return out


def _matching_shift(logit_risk: np.ndarray, target: float) -> float:
    """The Δ in [−30, 0] with mean(expit(logit_risk + Δ)) = ``target`` (≤ the mean risk now;
    −30 where even that leaves the mean above it)."""

    def gap(d: float) -> float:
        return float(expit(logit_risk + d).mean()) - target

    return -30.0 if gap(-30.0) >= 0 else brentq(gap, -30.0, 0.0, xtol=1e-12)


def pool_effects(
    risk: np.ndarray, new_risk: np.ndarray, dose: np.ndarray, match_mean: bool = False
) -> list[dict[str, float | int | str]]:
    """Rows ``dose``, ``n``, ``log_odds_change``, ``se`` of one scenario × outcome, over all
    rows (``*``) and per dose with at least :data:`MIN_DOSE_ROWS` rows: the p·(1 − p)-weighted
    mean of the per-resident log-odds change (the information a risk of p carries about its
    log-odds), ``se`` its standard error over residents. ``match_mean``: instead, the one
    log-odds change that, applied to every row, gives the same mean risk as the per-resident
    what-if. The weighted mean is that change to first order, right while each resident's change
    is small; a chance read jointly through the forecasts moves some residents' log-odds many
    times over (near 0 before, far nearer after), where the weighted mean came out 1.7-4 × the
    true change (docs/models.md §Metabolic syndrome through the forecasts). ``se`` then by the
    delta method from the residents' risk changes."""
    risk = np.asarray(risk, dtype="float64")
    base = _logit(risk)
    change = np.minimum(_logit(new_risk) - base, 0.0)  # never above 0 (monotone)
    weight = np.clip(risk * (1 - risk), _EPS, None)
    out = []

    def row(label: str, sel: np.ndarray) -> dict:
        w, d = weight[sel], change[sel]
        mean = float((w * d).sum() / w.sum())
        se = float(np.sqrt((w * w * (d - mean) ** 2).sum()) / w.sum()) if len(d) > 1 else np.nan
        if match_mean:
            now = risk[sel]
            moved = expit(base[sel] + d)
            target = float(moved.mean())
            mean = _matching_shift(base[sel], target) if target < now.mean() else 0.0
            shifted = expit(base[sel] + mean)
            slope = max(float((shifted * (1 - shifted)).mean()), _EPS)
            se = float((moved - now).std(ddof=1) / np.sqrt(len(d)) / slope) if len(d) > 1 else se
        return {"dose": label, "n": int(sel.sum()), "log_odds_change": mean, "se": se}

    if len(risk) == 0:
        return out
    out.append(row(ALL_DOSES, np.ones(len(risk), dtype=bool)))
    labels, counts = np.unique(dose.astype(str), return_counts=True)
    if len(labels) > 1:
        out += [row(lab, dose.astype(str) == lab) for lab, c in zip(labels, counts, strict=True)
                if c >= MIN_DOSE_ROWS]  # fmt: skip
    return out


@dataclass(frozen=True)
class PooledChange:
    """A scenario's what-if as the engine's pooled log-odds change, per outcome, for each row
    it applies to (:func:`pooled_change`); :meth:`risks` gives the risks with it applied."""

    change: dict[str, np.ndarray]

    def risks(self, outcome: str, risk: np.ndarray) -> np.ndarray:
        """``risk`` (the rows' risks of ``outcome`` without the scenario) with it applied."""
        z = _logit(risk) + self.change[outcome]
        return np.where(np.asarray(risk) <= 0, 0.0, 1.0 / (1.0 + np.exp(-z)))


def pooled_change(
    table: pd.DataFrame | None,
    scenario,
    lab_response: bool,
    outcomes,
    base: pd.DataFrame,
) -> PooledChange | None:
    """The pooled change of ``scenario`` for the rows of ``base`` it applies to, or None when
    ``table`` does not hold it, under the same definition, for every outcome."""
    if table is None or not len(table):
        return None
    mine = table[
        (table["scenario"] == scenario.key)
        & (table["definition"] == scenario_definition(scenario, lab_response))
    ]
    dose = scenario_dose(scenario, base).astype(str)
    change = {}
    for o in outcomes:
        rows = mine[mine["outcome"] == o]
        by_dose = dict(zip(rows["dose"], rows["log_odds_change"], strict=True))
        if ALL_DOSES not in by_dose:
            return None
        labels, inverse = np.unique(dose, return_inverse=True)
        values = np.array([by_dose.get(lab, by_dose[ALL_DOSES]) for lab in labels], "float64")
        change[o] = values[inverse] if len(dose) else np.zeros(0)
    return PooledChange(change)


def via_forecasts(engine, lab_response: bool) -> tuple[str, ...]:
    """The engine's outcomes whose pooled what-if is read through its value forecasts
    (:mod:`scoring.whatif_liability`): those whose every defining item is forecast, where the
    scenario moves the labs (the lab response); the others through the outcome model."""
    if not lab_response or getattr(engine, "lab_response", None) is None:
        return ()
    joint = getattr(engine, "forecast_dependence", None) is not None
    return forecast_outcomes(engine.outcomes, getattr(engine, "forecast_items", ()), joint,
                             chance_items(engine))  # fmt: skip


def chance_items(engine) -> tuple[str, ...]:
    """Items the engine reads through a chance model of their own instead of a forecast (its
    urine dipstick model: models.dipstick_chance)."""
    dipstick = getattr(engine, "dipstick_chance", None)
    return (dipstick.item,) if dipstick is not None else ()


def _moves(p: pd.DataFrame, now: pd.DataFrame, items: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each item's move under a scenario: its ``value_<item>`` in ``p`` (scoring.score
    scenario_risks) less this year's value."""
    return {
        i: p[f"value_{i}"].to_numpy() - pd.to_numeric(now[i], errors="coerce").to_numpy("float64")
        for i in items
    }


def fit_whatif_effects(
    engine,
    history: pd.DataFrame,
    index: pd.DataFrame,
    config,
    feature_config,
) -> pd.DataFrame:
    """The engine's what-if effect table (:data:`COLUMNS`) over the index checkups ``index``
    (pseudonym, fiscal_year, exam_date; optional boolean ``at_risk_<outcome>``: each outcome
    pooled over the rows at risk for it), from its per-resident what-if
    (:func:`scoring.score.scenario_risks`, every scenario of ``config``, a
    :class:`scoring.score.ScoringConfig`). At most :data:`MAX_FIT_RESIDENTS` index rows, a
    sample by pseudonym hash."""
    from features.build import to_matrix
    from models.split import person_hash
    from scoring.score import index_features, scenario_risks

    index = index.reset_index(drop=True)
    if len(index) > MAX_FIT_RESIDENTS:
        order = np.argsort(person_hash(index["pseudonym"]), kind="stable")
        index = index.iloc[np.sort(order[:MAX_FIT_RESIDENTS])].reset_index(drop=True)
    history = history[history["pseudonym"].isin(index["pseudonym"])]
    base = index_features(history, index, feature_config)
    X = to_matrix(base, engine.feature_names)
    risk = engine.predict_proba(X)
    lab = config.scenario_lab_response
    via = via_forecasts(engine, lab)
    forecast = engine.predict_values(X) if via else None
    own = chance_items(engine)
    items = tuple(sorted({i for o in via for i in moved_items(o, own)}))
    dependence = getattr(engine, "forecast_dependence", None)
    dipstick = getattr(engine, "dipstick_chance", None)
    # each outcome's chance without a move, once for every row (each scenario reads its rows)
    unmoved = {o: outcome_chance(forecast, o, engine.quantiles, None, base, dependence, dipstick)
               for o in via}  # fmt: skip
    out = []
    for sc, rows, p in scenario_risks(
        engine, history, index, base, config.scenarios, feature_config, lab, effects=None,
        values=items,
    ):  # fmt: skip
        definition = scenario_definition(sc, lab)
        dose = scenario_dose(sc, base.iloc[rows]) if len(rows) else np.zeros(0, dtype=object)
        moves = _moves(p, base.iloc[rows], items) if p is not None else {}
        for o in engine.outcomes:
            ok = np.ones(len(rows), dtype=bool)
            if f"at_risk_{o}" in index:
                ok = index[f"at_risk_{o}"].to_numpy(dtype=bool, na_value=False)[rows]
            if p is None or not ok.any():
                continue
            now = risk[f"risk_{o}"].to_numpy()[rows][ok]
            new = p[f"risk_{o}"].to_numpy()[ok]
            method = "trees"
            if o in via:
                method = "joint" if o in JOINT_OUTCOMES else "forecasts"
                change = log_odds_change(
                    forecast.iloc[rows[ok]],
                    o,
                    engine.quantiles,
                    {i: m[ok] for i, m in moves.items()},
                    context=base.iloc[rows[ok]],
                    dependence=dependence,
                    before=unmoved[o][rows[ok]],
                    dipstick=dipstick,
                )
                # a row whose forecasts cannot be read keeps the trees' change
                change = np.where(np.isnan(change), _logit(new) - _logit(now), change)
                new = PooledChange({o: np.minimum(change, 0.0)}).risks(o, now)
            for r in pool_effects(now, new, dose[ok], match_mean=method == "joint"):
                out.append({"scenario": sc.key, "definition": definition, "outcome": o, **r,
                            "method": method})  # fmt: skip
    table = pd.DataFrame(out).reindex(columns=list(COLUMNS))
    table["odds_ratio"] = np.exp(table["log_odds_change"].astype("float64"))
    return table.astype({"n": "int64"})


def fit_training_effects(
    engine,
    checkups: pd.DataFrame,
    labels: pd.DataFrame,
    year: int,
    feature_config,
    config=None,
) -> pd.DataFrame:
    """:func:`fit_whatif_effects` at training: the index checkups of fiscal year ``year`` (the
    year before the test year: no test row is used), each outcome over its rows at risk
    (``labels``: features.build_labels output); ``config``: the shipped scoring.toml unless
    given."""
    from scoring.score import load_scoring_config

    config = config or load_scoring_config()
    fy = labels["fiscal_year"].to_numpy(dtype="float64", na_value=np.nan)
    cols = ["pseudonym", "fiscal_year", "exam_date"]
    cols += [c for c in labels.columns if c.startswith("at_risk_")]
    index = labels.loc[fy == year, cols].reset_index(drop=True)
    if index.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    return fit_whatif_effects(engine, checkups, index, config, feature_config)
