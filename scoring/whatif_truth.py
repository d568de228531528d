"""What-if against the true counterfactual (synthetic wards only; もしもの答え合わせ).

A synthetic ward's truth carries, for each scenario and outcome, ``p_true_<o>__<s>``: the
probability of meeting the outcome at next year's checkup had the resident made the change
at this year's checkup, simulated with the same 64 Monte-Carlo futures as ``p_true_<o>``
(common random numbers; :mod:`data.synth.whatif`). :func:`judge_whatif` compares, on a
set of index checkups, the model's risk change of each scenario (the same scenario machinery
as the annual run, :func:`scoring.score.scenario_risks`) with the true change
``p_true_<o>__<s> − p_true_<o>``.

Rows: a (resident, scenario, outcome) counts where the scenario applies both in the model
(its ``when`` conditions on the ingested checkup, :func:`scoring.score.scenario_features`) and
in the truth (the same conditions on the generated checkup; NaN otherwise) and, if the index
carries ``at_risk_<o>``, where the resident is at risk (the model predicts incidence). It is
*offered* where the model lowers the risk by at least ``scenario_min_drop`` — what a letter
would say. Every figure below is over the offered rows.

Columns per scenario × outcome:

* ``n_applicable``, ``n_offered``; ``mean_true_change`` (with ``mean_true_change_se``, its
  standard error over residents) and ``mean_model_change``.
* ``sign_agreement`` — among offered residents whose true change is **material**,
  ``|true change| ≥ 2/K`` (K = 64 futures: at least two more futures change outcome one way
  than the other; ``n_material`` of them), the share whose true change is negative, i.e.
  where the change really lowers the risk as the letter says. Why not over every offered
  resident: the true change is a count of futures over K, so a small real effect (well under
  1/K per resident) shows as exactly 0 for most residents; "0" is not a wrong sign, it is
  below the resolution of the truth, and a definition counting it as disagreement would
  measure K, not the model. Why not ``≠ 0``: where an intervention moves outcome-relevant
  values in opposite directions (drinking less: lower TG and BP, lower HDL) single futures
  flip either way by chance; two or more net futures is the smallest change whose
  sign the truth resolves. ``true_rise_share`` is the plain share of offered residents whose
  true change is positive at all (any future), the wrong promises a letter would make.
* ``mae_change`` = mean |model change − true change| per resident and ``mae_ratio`` =
  ``mae_change / |mean_true_change|``. It includes the truth's Monte-Carlo noise: with K
  futures a resident's true change is a count over K, whose error is about 2·|change| when
  the change is well under 1/K — so a perfect model has ``mae_ratio`` near 1-2 on small
  effects, and the per-resident ratio cannot meet a 30 % target whatever the model.
* ``mae_ratio_binned`` — the error of the change over groups of residents with similar model
  change: offered residents are sorted by the model's change and cut into up to 10
  equal-count groups of ≥ 50 residents (one group under 100 residents: then it is the error
  of the mean change); the group-size-weighted mean of |mean model change − mean true change|
  over the groups, divided by |mean_true_change|.
  The noise averages out within a group (its standard error is about
  ``sqrt(|change| / (K·n))``), so this is the figure the 30 % target is judged on; it does
  not see how residents *within* a group differ.

Targets (:data:`TARGETS`): sign agreement ≥ 0.95, ``mae_ratio_binned`` ≤ 0.30.

**The what-if a letter prints** (:func:`letters_table`). A letter states one what-if per
resident: for its outcome, the offered scenario that lowers the risk most. Per outcome, the
same figures over those residents, each with their printed scenario's true change, judge the
numbers residents read, weighted as the letters weight the cells (mostly exercise and weight
loss), and with the choice of the largest model drop, which favours a cell the model
overstates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from features.build import FeatureConfig, to_matrix
from models.config import ModelConfig
from models.evaluate import ReportTable
from models.split import assign_split, person_hash
from scoring.score import (
    ScoringConfig,
    index_features,
    load_scoring_config,
    scenario_outcome_risk,
    scenario_risks,
    whatif_effects,
)

__all__ = [
    "COLUMNS",
    "LETTER_COLUMNS",
    "TARGETS",
    "JudgedCell",
    "WhatIfJudgement",
    "cells_table",
    "judge_whatif",
    "letters_table",
    "whatif_truth_metrics",
    "whatif_truth_report",
]

#: Monte-Carlo futures per truth probability (data.synth.truth.K_DEFAULT).
K_TRUTH = 64
#: Targets of the what-if against the true counterfactual (sign; size of the change).
TARGETS = {"sign_agreement": 0.95, "mae_ratio_binned": 0.30}
#: Smallest group of residents for ``mae_ratio_binned``, and most groups.
MIN_BIN, MAX_BINS = 50, 10

COLUMNS = (
    "scenario",
    "outcome",
    "n_applicable",
    "n_offered",
    "mean_true_change",
    "mean_true_change_se",
    "mean_model_change",
    "n_material",
    "sign_agreement",
    "true_rise_share",
    "mae_change",
    "mae_ratio",
    "mae_ratio_binned",
    "meets_targets",
)
#: Columns of :func:`letters_table`: per outcome, the what-if its letters print.
LETTER_COLUMNS = ("outcome", "n_letters", "scenarios", *COLUMNS[4:])


def _binned_mae(model: np.ndarray, true: np.ndarray) -> float:
    n = len(model)
    bins = max(1, min(MAX_BINS, n // MIN_BIN))
    order = np.argsort(model, kind="stable")
    group = np.empty(n, dtype=np.int64)
    group[order] = np.arange(n) * bins // n
    size = np.bincount(group, minlength=bins)
    gap = np.bincount(group, model, bins) - np.bincount(group, true, bins)
    return float(np.abs(gap).sum() / n) if size.all() else np.nan


def _cell(model: np.ndarray, true: np.ndarray, material: float) -> dict:
    n = len(model)
    if n == 0:
        return {"n_offered": 0}
    mean_true = float(true.mean())
    mat = np.abs(true) >= material
    mae = float(np.abs(model - true).mean())
    scale = abs(mean_true) if mean_true else np.nan
    return {
        "n_offered": n,
        "mean_true_change": mean_true,
        "mean_true_change_se": float(true.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
        "mean_model_change": float(model.mean()),
        "n_material": int(mat.sum()),
        "sign_agreement": float((true[mat] < 0).mean()) if mat.any() else np.nan,
        "true_rise_share": float((true > 0).mean()),
        "mae_change": mae,
        "mae_ratio": mae / scale,
        "mae_ratio_binned": _binned_mae(model, true) / scale,
    }


@dataclass(frozen=True)
class JudgedCell:
    """One scenario × outcome on the judged index rows: the rows of ``index`` the scenario
    applies to (``rows``), the model's risk change and the true change on them (``model``,
    ``true``), and where it is judged (``ok``: truth known and, given ``at_risk_<o>``, at
    risk)."""

    scenario: str
    outcome: str
    rows: np.ndarray
    model: np.ndarray
    true: np.ndarray
    ok: np.ndarray


def judge_whatif(
    engine,
    history: pd.DataFrame,
    index: pd.DataFrame,
    truth: pd.DataFrame,
    config: ScoringConfig,
    feature_config: FeatureConfig,
) -> list[JudgedCell]:
    """The model's and the true risk change of every scenario × outcome with truth columns,
    per resident it applies to (the same scenario machinery as the annual run; see module doc).

    ``engine``: a :class:`models.train.TrainedEngine`. ``index``: the index checkups to judge
    (pseudonym, fiscal_year, exam_date; optional boolean ``at_risk_<outcome>``), one per
    resident. ``history``: their stored checkups (anything after the index is ignored).
    ``truth``: truth.csv with ``person_id`` pseudonymised to ``pseudonym`` (as ingest does).
    """
    index = index.reset_index(drop=True)
    keys = ["pseudonym", "fiscal_year"]
    t = truth.astype({"pseudonym": "string", "fiscal_year": "int64"})
    t = (
        index[keys]
        .astype({"pseudonym": "string", "fiscal_year": "int64"})
        .merge(t, on=keys, how="left", validate="1:1")
    )
    base = index_features(history, index, feature_config)
    risk = engine.predict_proba(to_matrix(base, engine.feature_names))
    out = []
    for sc, rows, p in scenario_risks(
        engine, history, index, base, config.scenarios, feature_config,
        config.scenario_lab_response, effects=whatif_effects(engine, config),
    ):  # fmt: skip
        for o in engine.outcomes:
            col = f"p_true_{o}__{sc.key}"
            if p is None or col not in t or f"p_true_{o}" not in t:
                continue
            now = risk[f"risk_{o}"].to_numpy()[rows]
            true = (
                t[col].to_numpy(dtype="float64", na_value=np.nan)[rows]
                - t[f"p_true_{o}"].to_numpy(dtype="float64", na_value=np.nan)[rows]
            )
            ok = ~np.isnan(true)
            if f"at_risk_{o}" in index:
                ok &= index[f"at_risk_{o}"].to_numpy(dtype=bool, na_value=False)[rows]
            model = scenario_outcome_risk(p, o, now) - now
            out.append(JudgedCell(sc.key, o, rows, model, true, ok))
    return out


def _with_targets(out: pd.DataFrame) -> pd.DataFrame:
    out["n_material"] = out["n_material"].fillna(0).astype("int64")  # none offered: none
    out["meets_targets"] = (out["sign_agreement"] >= TARGETS["sign_agreement"]) & (
        out["mae_ratio_binned"] <= TARGETS["mae_ratio_binned"]
    )
    return out


def cells_table(
    judged: list[JudgedCell], scenarios, outcomes, min_drop: float, k: int = K_TRUTH
) -> pd.DataFrame:
    """:data:`COLUMNS` per scenario × outcome (``scenarios``: keys, ``outcomes``) from
    :func:`judge_whatif`; a cell without truth has ``n_applicable`` 0."""
    by = {(c.scenario, c.outcome): c for c in judged}
    min_drop = max(min_drop, 1e-12)
    rows_out = []
    for s in scenarios:
        for o in outcomes:
            row = {"scenario": s, "outcome": o, "n_applicable": 0, "n_offered": 0}
            c = by.get((s, o))
            if c is not None:
                offered = c.ok & (c.model <= -min_drop)
                row["n_applicable"] = int(c.ok.sum())
                row.update(_cell(c.model[offered], c.true[offered], 2.0 / k))
            rows_out.append(row)
    return _with_targets(pd.DataFrame(rows_out).reindex(columns=list(COLUMNS)))


def letters_table(
    judged: list[JudgedCell], n_index: int, outcomes, min_drop: float, k: int = K_TRUTH
) -> pd.DataFrame:
    """The what-if a letter prints, judged (:data:`LETTER_COLUMNS`): per outcome, each resident's
    offered scenario that lowers the risk most (the annual run's ``best_scenario_<o>``; the
    first in scoring.toml's order on a tie) against that scenario's true change, over the
    residents whose best scenario is judged; its column ``scenarios`` names the three most
    printed, with their shares."""
    min_drop = max(min_drop, 1e-12)
    rows_out = []
    for o in outcomes:
        best = np.zeros(n_index)
        true = np.full(n_index, np.nan)
        name = np.full(n_index, None, dtype=object)
        judged_o = np.zeros(n_index, dtype=bool)
        for c in (c for c in judged if c.outcome == o):
            better = (c.model <= -min_drop) & (c.model < best[c.rows])
            r = c.rows[better]
            best[r], true[r], name[r] = c.model[better], c.true[better], c.scenario
            judged_o[r] = c.ok[better]
        row = {"outcome": o}
        sel = judged_o & pd.notna(name)
        row.update(_cell(best[sel], true[sel], 2.0 / k))
        row["n_letters"] = row.pop("n_offered")
        if sel.any():
            share = pd.Series(name[sel]).value_counts(normalize=True).head(3)
            row["scenarios"] = ", ".join(f"{s} {v:.0%}" for s, v in share.items())
        rows_out.append(row)
    return _with_targets(pd.DataFrame(rows_out).reindex(columns=list(LETTER_COLUMNS)))


def whatif_truth_metrics(
    table: pd.DataFrame, letters: pd.DataFrame | None = None
) -> dict[str, float]:
    """Headline scalars of :func:`cells_table` for MLflow.

    ``whatif.<scenario>.<outcome>.sign_agreement`` and ``.mae_ratio_binned`` (cells with a
    value), and ``whatif.cells_meeting_targets`` / ``whatif.cells_judged``: cells with both
    figures, and of those the ones meeting :data:`TARGETS`. With ``letters``
    (:func:`letters_table`): ``whatif_letter.<outcome>.*`` and
    ``whatif_letter.outcomes_meeting_targets`` / ``.outcomes_judged`` likewise.
    """
    out = _scalars(table, "whatif", ("scenario", "outcome"), "cells")
    if letters is not None:
        out |= _scalars(letters, "whatif_letter", ("outcome",), "outcomes")
    return out


def _scalars(table: pd.DataFrame, prefix: str, keys: tuple[str, ...], rows: str) -> dict:
    """``<prefix>.<keys…>.<figure>`` per row with a value, and ``<prefix>.<rows>_judged`` /
    ``_meeting_targets``."""
    out: dict[str, float] = {}
    for name in TARGETS:
        for key, v in zip(table[list(keys)].itertuples(index=False), table[name], strict=True):
            if v == v:  # not NaN
                out[".".join((prefix, *key, name))] = float(v)
    judged = table["sign_agreement"].notna() & table["mae_ratio_binned"].notna()
    out[f"{prefix}.{rows}_judged"] = float(judged.sum())
    out[f"{prefix}.{rows}_meeting_targets"] = float((judged & table["meets_targets"]).sum())
    return out


class WhatIfJudgement(NamedTuple):
    """:func:`whatif_truth_report`: the cells' table, its MLflow scalars, the letters' table."""

    table: ReportTable
    metrics: dict[str, float]
    letters: ReportTable


def whatif_truth_report(
    engine,
    checkups: pd.DataFrame,
    labels: pd.DataFrame,
    truth: pd.DataFrame,
    test_year: int,
    model_config: ModelConfig,
    feature_config: FeatureConfig,
    scoring_config: ScoringConfig | None = None,
) -> WhatIfJudgement | None:
    """:func:`cells_table` and :func:`letters_table` on a training run's test rows, for
    its evaluation report.

    The index checkups are those of the run's test split in ``test_year`` (the test group's
    persons; their label need not be known — the truth is the probability given attendance),
    each outcome over the rows at risk for it. ``checkups``: the store's checkups;
    ``labels``: features.build_labels output. None when ``truth`` has no counterfactual columns.
    """
    if not any(c.startswith("p_true_") and "__" in c for c in truth.columns):
        return None
    scoring_config = scoring_config or load_scoring_config()
    keys = labels[["pseudonym", "fiscal_year"]]
    split = model_config.split
    if split.group == "person":
        fy = keys["fiscal_year"].to_numpy(dtype="float64", na_value=np.nan)
        test = (fy == test_year) & (person_hash(keys["pseudonym"]) < split.test_person_share)
    else:
        test = assign_split(keys, test_year, model_config.horizon_years, split) == "test"
    cols = ["pseudonym", "fiscal_year", "exam_date"]
    cols += [c for c in labels.columns if c.startswith("at_risk_")]
    index = labels.loc[test, cols].reset_index(drop=True)
    history = checkups[checkups["pseudonym"].isin(index["pseudonym"])]
    judged = judge_whatif(engine, history, index, truth, scoring_config, feature_config)
    min_drop = scoring_config.scenario_min_drop
    table = cells_table(judged, scoring_config.scenario_keys, engine.outcomes, min_drop)
    letters = letters_table(judged, len(index), engine.outcomes, min_drop)
    note = (
        f"Test year {test_year}, {len(index)} index checkups of the test group; per scenario "
        "and outcome, over the residents it is offered to (the model lowers the risk by at "
        f"least {scoring_config.scenario_min_drop:g}): the model's risk change against the true "
        "change p_true_<o>__<s> − p_true_<o> of the synthetic ward (same 64 futures). "
        "sign_agreement: share of true changes < 0 among those of at least 2/64; "
        "mae_ratio_binned: error of the change over 10 groups by model change ÷ |mean true "
        "change| (per resident, mae_ratio, includes the truth's Monte-Carlo noise). Targets: "
        f"sign agreement ≥ {TARGETS['sign_agreement']:g}, mae_ratio_binned ≤ "
        f"{TARGETS['mae_ratio_binned']:g} (scoring.whatif_truth)."
    )
    title = "What-if against the true counterfactual (synthetic ward)"
    letters_note = (
        "The what-if a letter prints: per outcome, each test resident's offered scenario "
        "that lowers the risk most (the annual run's best_scenario_<o>), its model change "
        "against its true change; the same figures and targets as the table above, over "
        "those residents (scoring.whatif_truth.letters_table). scenarios: the three most "
        "printed."
    )
    return WhatIfJudgement(
        ReportTable(title, table, note),
        whatif_truth_metrics(table, letters),
        ReportTable("What-if as the letters print it, against the truth", letters, letters_note),
    )
