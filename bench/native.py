"""The native cost of the annual run's predictions: every LightGBM booster's own ``predict`` on
the rows kenshin scores, with nothing of kenshin's around it (bench/bench_score.py runs it in a
child process beside the scoring run and prints the two side by side).

Not a benchmark itself (``./run bench`` runs ``bench_*.py`` only). Per scoring chunk, untimed:
the chunk's feature matrix and, per what-if scenario the run re-scores, the matrix of the rows
it applies to (scoring.score.scenario_features, as the run builds them; a scenario the engine
pools, scoring.whatif_effect, is an odds ratio applied to the risk: nothing to predict). Timed, per chunk as the run calls
them: each risk booster (rows routed to a glucose-pattern sub-model by that sub-model's
booster, as the engine routes them) on the chunk, the forecast quantile boosters on the chunk,
the risk boosters again on every scenario's rows; then, on the residents the run explained,
each risk booster with and without ``pred_contrib``. Every call is timed with ``num_threads``
= 1 and = 2 (LightGBM's OpenMP threads), in the same process on the same matrices.

    python bench/native.py STORE WORKDIR OUT FY [--chunk-size N]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

THREADS = (1, 2)


def _outcome_calls(engine, X: np.ndarray, outcome: str) -> list[tuple[object, int, np.ndarray]]:
    """(booster, iterations, rows) behind ``engine.predict_raw(X, outcome)`` (its routing)."""
    from features.masking import glucose_pattern

    subs = {p: e for p, e in (getattr(engine, "pattern_engines", None) or {}).items()
            if outcome in e.outcomes and outcome in e.boosters}  # fmt: skip
    own = np.ones(len(X), dtype=bool)
    calls = []
    if subs and len(X):
        names = engine.feature_names
        pattern = glucose_pattern(X[:, names.index("fpg")], X[:, names.index("hba1c")])
        for p, e in subs.items():
            rows = pattern == p
            if rows.any():
                calls.append((e.boosters[outcome], e.best_iteration[outcome], rows))
                own &= ~rows
    if outcome in engine.boosters and own.any():
        calls.append((engine.boosters[outcome], engine.best_iteration[outcome], own))
    return calls


class Clock:
    """Seconds of native predict per kind of call and thread count."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[int, float]] = {}
        self.rows: dict[str, int] = {}

    def predict(self, kind: str, booster, X: np.ndarray, **kw) -> None:
        for t in THREADS:
            t0 = time.perf_counter()
            booster.predict(X, num_threads=t, **kw)
            d = self.seconds.setdefault(kind, dict.fromkeys(THREADS, 0.0))
            d[t] += time.perf_counter() - t0
        self.rows[kind] = self.rows.get(kind, 0) + len(X)


def risk_calls(clock: Clock, kind: str, engine, X: np.ndarray, **kw) -> None:
    for o in engine.outcomes:
        for booster, it, rows in _outcome_calls(engine, X, o):
            clock.predict(kind, booster, X[rows], num_iteration=it, **kw)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("store", type=Path)
    p.add_argument("workdir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("fy", type=int)
    args = p.parse_args()

    from data.store import read_checkup_columns, read_checkup_history, read_enrollment
    from features.build import to_matrix
    from kenshin.annual import DEFAULT_MODEL, load_model
    from scoring.score import (
        eligible_residents,
        index_features,
        load_scoring_config,
        scenario_features,
        whatif_effects,
    )
    from scoring.whatif_effect import pooled_change

    sc = load_scoring_config()
    model = load_model(DEFAULT_MODEL, args.workdir)
    engine, fcfg = model.engine, model.feature_config
    names = list(engine.feature_names)
    table = getattr(engine, "lab_response", None) if sc.scenario_lab_response else None
    scales = getattr(engine, "lab_scale", None)
    effects = whatif_effects(engine, sc)
    fy = args.fy
    candidates = read_checkup_columns(args.store, ["pseudonym", "exam_date", "age", "sex"],
                                      [fy, fy - 1])  # fmt: skip
    day = pd.Timestamp(f"{fy + 1}-04-01")
    elig = eligible_residents(candidates, read_enrollment(args.store), fy, day, sc).index
    del candidates
    clock = Clock()
    prep = 0.0
    for start in range(0, len(elig), sc.chunk_size):
        t0 = time.perf_counter()
        index = elig.iloc[start : start + sc.chunk_size].reset_index(drop=True)
        history = read_checkup_history(args.store, index["pseudonym"], fy)
        base = index_features(history, index, fcfg)
        X = to_matrix(base, names)
        whatif = []
        for scenario in sc.scenarios:
            if effects is not None and pooled_change(
                effects, scenario, sc.scenario_lab_response, engine.outcomes, base.iloc[:0]
            ):
                continue  # the run applies the engine's pooled odds ratio: nothing to predict
            built = scenario_features(history, index, base, scenario, fcfg, table, scales)
            if built.applies.any():
                whatif.append(to_matrix(built.features, names))
            if built.down is not None:  # the lower recorded HbA1c of a mixed what-if
                whatif.append(to_matrix(built.down[2], names))
        prep += time.perf_counter() - t0
        risk_calls(clock, "risk", engine, X, raw_score=True)
        for item in engine.forecast_items:
            for b, it in zip(engine.forecasts[item], engine.forecast_iteration[item], strict=True):
                clock.predict("forecasts", b, X, num_iteration=it)
        for Xs in whatif:
            risk_calls(clock, "what-if", engine, Xs, raw_score=True)
        del history, base, X, whatif
    selection = pd.read_parquet(args.out / "selection.parquet", columns=["pseudonym", "arm"])
    who = elig[elig["pseudonym"].isin(selection.loc[selection["arm"].notna(), "pseudonym"])]
    who = who.reset_index(drop=True)
    if len(who):
        history = read_checkup_history(args.store, who["pseudonym"], fy)
        X = to_matrix(index_features(history, who, fcfg), names)
        risk_calls(clock, "explain: risk", engine, X, raw_score=True)
        risk_calls(clock, "explain: pred_contrib", engine, X, pred_contrib=True)
    print(json.dumps({
        "residents": len(elig), "explained": len(who), "prep_seconds": prep,
        "seconds": {k: {str(t): s for t, s in v.items()} for k, v in clock.seconds.items()},
        "rows": clock.rows,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
