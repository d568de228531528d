"""One call for the models step: train everything, run the baselines, evaluate on the test year."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from models.baselines import fit_logistic, fit_points
from models.config import ModelConfig
from models.evaluate import (
    EvaluationReport,
    ReportTable,
    auc_or_nan,
    driver_agreement,
    forecast_metrics,
    metrics_by_slice,
    missing_item_shift,
    pattern_metrics,
)
from models.train import Runner, TrainedEngine, TrainingData, masked_matrix, train_engine

__all__ = ["evaluate_engine", "train_and_evaluate"]


def _truth_rows(truth: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Truth rows aligned with ``keys`` (pseudonym, fiscal_year); NaN where absent."""
    t = truth.astype({"pseudonym": "string", "fiscal_year": "Int16"})
    k = keys[["pseudonym", "fiscal_year"]].astype({"pseudonym": "string", "fiscal_year": "Int16"})
    return k.merge(t, on=["pseudonym", "fiscal_year"], how="left", validate="m:1")


def evaluate_engine(
    engine: TrainedEngine,
    data: TrainingData,
    config: ModelConfig,
    truth: pd.DataFrame | None = None,
    timings: dict[str, float] | None = None,
) -> EvaluationReport:
    """Metrics of the engine and its baselines on the test year of ``data``.

    ``truth`` (synthetic cohorts): pseudonym, fiscal_year, p_true_<o>, drivers_<o> (and, when
    present, drivers_observed_<o>: the same figures as ``driver_observed_*``).
    """
    timings = dict(timings or {})
    frames, synth, splits = [], [], []
    for o, s in data.outcomes.items():
        splits.extend(_split_sizes(o, s))
        Xte, yte = s.part("test")
        kte = s.keys[s.split == "test"].reset_index(drop=True)
        preds = {"engine": engine.predict_outcome(Xte, o),
                 "lightgbm": engine.predict_lightgbm(Xte, o)}  # fmt: skip
        if config.baselines:
            t0 = time.perf_counter()
            preds.update(_baseline_predictions(engine, data, config, o, s, Xte))
            timings["baselines"] = timings.get("baselines", 0.0) + time.perf_counter() - t0
        tr = None
        if truth is not None and f"p_true_{o}" in truth:
            tr = _truth_rows(truth, kte)
            pt = tr[f"p_true_{o}"].to_numpy(dtype="float64", na_value=np.nan)
            if not np.isnan(pt).any():
                preds["oracle"] = pt
        tables, aucs = _slice_metrics(o, yte, preds, kte, config)
        frames.extend(tables)
        if tr is not None:
            t0 = time.perf_counter()
            synth.append(_synthetic_row(engine, config, o, Xte, tr, preds, aucs))
            timings["drivers"] = timings.get("drivers", 0.0) + time.perf_counter() - t0
    metrics = pd.concat(frames, ignore_index=True)
    lead = ["outcome", "model", "slice", "group"]
    metrics = metrics[lead + [c for c in metrics.columns if c not in lead]]
    report = EvaluationReport(
        test_year=data.test_year,
        metrics=metrics,
        synthetic=pd.DataFrame(synth),
        forecasts=pd.DataFrame(_forecast_rows(engine, data)),
        splits=pd.DataFrame(splits),
        timings=timings,
        selection=engine.selection,
    )
    t0 = time.perf_counter()
    missingness_report(report, engine, data, truth)
    report.timings["missingness"] = time.perf_counter() - t0
    ward = getattr(engine, "ward_rate_table", None)
    if ward is not None and len(ward):
        report.extra["ward_rate"] = ReportTable(
            "Level of the risks with glucose-pattern models: the ward's rate",
            ward,
            "One log-odds shift per outcome, added to the main and every glucose-pattern "
            "engine, so that the mean risk over the rows that calibrate the outcome (years: the "
            "validation year, and the training years where every engine of the outcome is the "
            "small-ward logistic member), each row scored by the engine of its pattern, equals "
            "their observed rate: the level rests on every pattern's events, not only those of "
            "the fully measured rows (models.train.match_ward_rate).",
        )
        for r in ward.to_dict("records"):
            report.extra_metrics[f"{r['outcome']}.ward_rate_shift"] = r["shift"]
    dependence = getattr(engine, "forecast_dependence", None)
    if dependence is not None:
        report.extra["forecast_dependence"] = ReportTable(
            "Value forecasts: correlation of their errors (validation year)",
            dependence.rename_axis("item").reset_index(),
            "Each item's next-year value as a normal score against its forecast, correlated "
            "pairwise over the validation year (models.forecast_distribution). Metabolic "
            "syndrome's chance from the forecasts (its what-if and its forecast stack) draws "
            "its seven items jointly with these correlations "
            "(models.forecast_chance.joint_chance).",
        )
    dipstick = getattr(engine, "dipstick_chance", None)
    if dipstick is not None:
        report.extra["dipstick_chance"] = ReportTable(
            "Urine protein: next year's chance of (+) or more (CKD's what-if)",
            pd.DataFrame(dipstick.table()).assign(events=dipstick.events, rows=dipstick.rows),
            "Logistic model of next year's dipstick at or over the cut given this year's "
            "checkup, on the forecasts' training rows below the cut now (rows; events: over "
            "it next year), ridge-penalised on standardised terms; the coefficients of the "
            "items a what-if moves are bounded to their direction (SBP, DBP, HbA1c, fasting "
            "glucose ≥ 0, eGFR ≤ 0), a missing value counts as the training median "
            "(models.dipstick_chance). CKD's what-if reads it with the eGFR forecast: "
            "1 − (1 − P(eGFR < 60))·(1 − P(protein ≥ (+))), before and after the habit "
            "moves the items.",
        )
        report.extra_metrics["dipstick_chance.events"] = float(dipstick.events)
    stacks = getattr(engine, "forecast_stack_table", None)
    if stacks is not None and len(stacks):
        report.extra["forecast_stack"] = ReportTable(
            "Forecast stack: the member and the forecasts' chance of the outcome",
            _forecast_stack_rows(engine, data, stacks, truth),
            "Fitted on the validation rows each member scores: s = (1 − weight)·member "
            "log-odds + weight·logit(chance from the value forecasts), weights ≥ 0, the "
            "forecasts' at most forecast_stack_max_weight (models.forecast_stack); chosen where "
            "the forecasts add to the member beyond chance (lr_chi2 ≥ 3.84, χ²(1) at 0.05) and "
            "its validation AUC beats the member's. "
            "engine: main, or the glucose pattern of the sub-engine (its rows lack fasting "
            "glucose or HbA1c). test_auc_*, on each outcome's main row: the test year, every row, "
            "the members alone and the engine with all its stacks (rows without the outcome's "
            "forecasts keep the member); *_over_oracle: over the true probabilities' AUC "
            "(synthetic wards).",
        )
        for o, stack in engine.forecast_stacks.items():
            report.extra_metrics[f"{o}.forecast_stack_weight"] = stack.weight
        for p, sub in engine.pattern_engines.items():
            for o, stack in getattr(sub, "forecast_stacks", {}).items():
                report.extra_metrics[f"{o}.{p}.forecast_stack_weight"] = stack.weight
    return report


def _forecast_stack_rows(
    engine: TrainedEngine, data: TrainingData, table: pd.DataFrame, truth: pd.DataFrame | None
) -> pd.DataFrame:
    """The stacks' validation fits per outcome and engine (main, glucose-pattern sub-engines),
    with the test year's AUC over all the outcome's rows of the members alone and of the engine
    with its stacks (on the main engine's row)."""
    member = engine.without_stacks()
    rows = []
    for r in table.to_dict("records"):
        o, s = r["outcome"], data.outcomes.get(r["outcome"])
        if s is not None and r.get("engine", "main") == "main":
            Xte, yte = s.part("test")
            r["test_auc_member"] = auc_or_nan(yte, member.predict_outcome(Xte, o))
            r["test_auc_engine"] = auc_or_nan(yte, engine.predict_outcome(Xte, o))
            if truth is not None and f"p_true_{o}" in truth:
                kte = s.keys[s.split == "test"].reset_index(drop=True)
                pt = _truth_rows(truth, kte)[f"p_true_{o}"].to_numpy("float64", na_value=np.nan)
                if not np.isnan(pt).any():
                    oracle = auc_or_nan(yte, pt)
                    r["test_member_over_oracle"] = r["test_auc_member"] / oracle
                    r["test_engine_over_oracle"] = r["test_auc_engine"] / oracle
        rows.append(r)
    return pd.DataFrame(rows)


def _split_sizes(outcome: str, s) -> list[dict]:
    """Rows and events of each split of one outcome's table."""
    rows = []
    for part in ("train", "val", "test"):
        m = s.split == part
        rows.append({"outcome": outcome, "split": part, "rows": int(m.sum()),
                     "events": int(s.y[m].sum())})  # fmt: skip
    return rows


def _baseline_predictions(
    engine: TrainedEngine, data: TrainingData, config: ModelConfig, o: str, s, Xte: np.ndarray
) -> dict[str, np.ndarray]:
    """Test-year risks of the baselines: logistic regression (the one fitted in training, else
    fitted here) and the points score."""
    names, cats = engine.feature_names, engine.categorical
    Xtr, ytr = s.part("train")
    lr = data.logistic.get(o)
    if lr is None:
        lr = fit_logistic(Xtr, ytr, names, cats, config.lgbm.seed)
    return {
        "logistic": lr.predict_proba(Xte)[:, 1],
        "points": fit_points(Xtr, ytr, names, o).predict_proba(Xte),
    }


def _slice_metrics(
    o: str, yte, preds: dict[str, np.ndarray], kte: pd.DataFrame, config: ModelConfig
) -> tuple[list[pd.DataFrame], dict[str, float]]:
    """Metrics by slice of every model's test-year risks; each model's overall AUC."""
    frames, aucs = [], {}
    for model, p in preds.items():
        df = metrics_by_slice(yte, p, kte, config.top_k, config.age_bands, config.slices)
        frames.append(df.assign(outcome=o, model=model))
        aucs[model] = df["auc"].iloc[0]
    return frames, aucs


def _synthetic_row(
    engine: TrainedEngine,
    config: ModelConfig,
    o: str,
    Xte: np.ndarray,
    tr: pd.DataFrame,
    preds: dict[str, np.ndarray],
    aucs: dict[str, float],
) -> dict:
    """Against the synthetic truth: AUC vs the oracle's, error in p, driver agreement."""
    pt = tr[f"p_true_{o}"].to_numpy(dtype="float64", na_value=np.nan)
    ok = ~np.isnan(pt)
    oracle = aucs.get("oracle", np.nan)
    sample = np.flatnonzero(ok)
    if config.driver_sample and len(sample) > config.driver_sample:
        rng = np.random.default_rng(config.lgbm.seed)
        sample = np.sort(rng.choice(sample, config.driver_sample, replace=False))
    contrib = engine.contributions(Xte[sample], o).to_numpy()
    drivers = driver_agreement(
        contrib,
        engine.feature_names,
        tr[f"drivers_{o}"].iloc[sample].reset_index(drop=True),
        risk=preds["engine"][sample],
    )
    if f"drivers_observed_{o}" in tr:  # the truth attributed to what the model sees
        observed = driver_agreement(
            contrib,
            engine.feature_names,
            tr[f"drivers_observed_{o}"].iloc[sample].reset_index(drop=True),
            risk=preds["engine"][sample],
        )
        drivers |= {"driver_observed" + k.removeprefix("driver"): v for k, v in observed.items()}
    return {"outcome": o, "n": int(ok.sum()), "auc": aucs["engine"], "oracle_auc": oracle,
            "auc_ratio": aucs["engine"] / oracle,
            "mae_p_true": float(np.abs(preds["engine"][ok] - pt[ok]).mean()), **drivers}  # fmt: skip


def _forecast_rows(engine: TrainedEngine, data: TrainingData) -> list[dict]:
    """Next-year value forecasts on the test year: interval metrics per item."""
    rows: list[dict] = []
    if data.forecast is None or not engine.forecast_items:
        return rows
    names, f = engine.feature_names, data.forecast
    m = f.split == "test"
    vals = engine.predict_values(f.X[m])
    lo_s, mid_s, hi_s = (f"_p{round(a * 100):02d}" for a in engine.quantiles)
    for item in engine.forecast_items:
        y = f.targets.loc[m, item].to_numpy("float64")
        cur = f.X[m][:, names.index(item)]
        rows.append(
            {"item": item, **forecast_metrics(y, vals[item + lo_s].to_numpy(),
             vals[item + mid_s].to_numpy(), vals[item + hi_s].to_numpy(), cur)}
        )  # fmt: skip
    return rows


def missingness_report(
    report: EvaluationReport,
    engine: TrainedEngine,
    data: TrainingData,
    truth: pd.DataFrame | None = None,
) -> None:
    """Add the unmeasured-item evaluation (未測定項目) of the test year to ``report``.

    ``extra["missingness_patterns"]``: per outcome and glucose pattern (both / FPG only /
    HbA1c only / neither) AUC and calibration-in-the-large, masked on the fully measured rows
    and as measured (models.evaluate.pattern_metrics); ``extra["missing_items"]``: how far
    leaving each optional item unmeasured moves the risk (models.evaluate.missing_item_shift).
    Headline figures go to ``extra_metrics`` (``pattern.<pattern>.<outcome>.auc`` …). Nothing
    when ``data`` holds no masks (a TrainingData built elsewhere).
    """
    from features.masking import GLUCOSE_PATTERNS, glucose_pattern

    if not data.pattern_masks:
        return
    names = engine.feature_names
    tables, items = [], []
    for o, s in data.outcomes.items():
        te = s.split == "test"
        if not te.any() or s.rows is None:
            continue
        X, y, rows = s.X[te], s.y[te], s.rows[te]
        natural = glucose_pattern(X[:, names.index("fpg")], X[:, names.index("hba1c")])
        preds = {"both": engine.predict_outcome(X, o)}
        for p in GLUCOSE_PATTERNS:
            if p in data.pattern_masks:
                Xp = masked_matrix(X, rows, data.pattern_masks[p], names)
                preds[p] = engine.predict_outcome(Xp, o)
        pt = None
        if truth is not None and f"p_true_{o}" in truth:
            keys = s.keys[te].reset_index(drop=True)
            pt = _truth_rows(truth, keys)[f"p_true_{o}"].to_numpy(dtype="float64", na_value=np.nan)
        t = pattern_metrics(y, natural, preds, pt)
        tables.append(t.assign(outcome=o))
        for r in t.to_dict("records"):
            stem = "pattern" if r["evaluation"] == "masked" else "pattern_natural"
            keep = ("auc", "auc_drop", "mean_p_over_observed", "cal_intercept", "auc_drop_se",
                    "auc_drop_true")  # fmt: skip
            for k in keep if stem == "pattern" else ("auc", "mean_p_over_observed"):
                if np.isfinite(r.get(k, np.nan)):
                    report.extra_metrics[f"{stem}.{r['pattern']}.{o}.{k}"] = r[k]
        masked = {g: engine.predict_outcome(masked_matrix(X, rows, m, names), o)
                  for g, m in data.item_masks.items()}  # fmt: skip
        shift = missing_item_shift(preds["both"], masked)
        items.append(shift.assign(outcome=o))
        for r in shift.to_dict("records"):
            report.extra_metrics[f"missing_item.{r['item']}.{o}.mean_dlogit"] = r["mean_dlogit"]
    if not tables:
        return
    lead = ["outcome", "evaluation", "pattern"]
    table = pd.concat(tables, ignore_index=True)
    report.extra["missingness_patterns"] = ReportTable(
        "Unmeasured glucose items (未測定項目)",
        table[lead + [c for c in table.columns if c not in lead]],
        "Test year. masked: the residents measured with both fasting glucose and HbA1c, scored "
        "with the pattern's items removed (auc_drop = AUC as measured − AUC of the pattern, "
        "auc_drop_se its bootstrap standard error over the residents); natural: every "
        "resident under their own pattern. mean_p_over_observed and cal_intercept: "
        "calibration-in-the-large (1 and 0 when calibrated). On a synthetic ward, auc_true and "
        "auc_drop_true: the same against the true probabilities (expected AUC), free of which "
        "residents happened to have the event.",
    )
    shift = pd.concat(items, ignore_index=True)
    report.extra["missing_items"] = ReportTable(
        "Risk shift when an optional item is not measured",
        shift[["outcome", *[c for c in shift.columns if c != "outcome"]]],
        "Test year, every resident: the item (group) removed from the checkup. A missing item "
        "should read as 'not known': individual risks move, the mean hardly (risk_ratio ≈ 1).",
    )


def train_and_evaluate(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    config: ModelConfig | None = None,
    truth: pd.DataFrame | None = None,
    runner: Runner | None = None,
) -> tuple[TrainedEngine, EvaluationReport]:
    """Train every outcome model and forecast, fit the baselines on the same split, evaluate.

    ``features``/``labels``: features.build_training_tables output. ``truth`` (synthetic
    cohorts only): truth.csv with person_id pseudonymised to ``pseudonym``. ``runner``: where
    the independent fits run (models.train.Runner; default here, in order).
    """
    config = config or ModelConfig()
    t0 = time.perf_counter()
    engine, data = train_engine(features, labels, config, runner)
    timings = {"train": time.perf_counter() - t0}
    t1 = time.perf_counter()
    report = evaluate_engine(engine, data, config, truth, timings)
    report.timings["evaluate"] = time.perf_counter() - t1
    report.timings["total"] = time.perf_counter() - t0
    return engine, report
