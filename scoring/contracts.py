"""Contracts of the annual run's outputs (年次処理の出力): scores, selection, explanations, drift.

``kenshin score --store DIR --year FY --out OUT`` writes::

    OUT/scores.parquet, scores.csv        one row per eligible resident (pseudonym), see SCORES
    OUT/selection.parquet, selection.csv  one row per scored resident with a reason code
    OUT/explanations.parquet              SHAP rows for residents with a letter or report page
    OUT/drift.csv                         PSI per feature, scoring population vs training rows
    OUT/run.json                          counts, stamps, timings of the run (no PII)
    OUT/report/report.html (+ .pdf)       staff explanation report (no names or addresses)
    OUT/letters/                          the ONLY folder with names and addresses (0700/0600)

Where each file is: :class:`scoring.outputs.AnnualOutputs` (the layout, declared once).
Everything outside ``letters/`` is keyed by pseudonym and carries no raw ID, name or address.
Files other than ``run.json`` hold no wall-clock time, so the same store, model, configs and
scoring date give byte-identical scores, selection and explanations.

SCORES columns
    ``pseudonym``, ``fiscal_year`` (the scoring FY), ``index_fiscal_year`` (FY of the checkup
    scored: FY, or FY-1 under the fallback), ``exam_date``, ``age`` (at the end of the scoring
    FY), ``sex``;
    the index checkup's values (float64) under their feature names
    (:data:`INDEX_VALUE_COLUMNS`: every measurement and coded answer, e.g. ``hba1c``, ``sbp``,
    ``q_med_bp``, ``blood_draw_timing``);
    ``risk_<outcome>`` — calibrated probability of meeting the outcome by the next checkup;
    ``<item>_p10`` / ``_p50`` / ``_p90`` — next year's value and its 80% interval (inside the
    item's hard range of data.validate.RANGES, p10 ≤ p50 ≤ p90);
    ``risk_<outcome>__<scenario>`` — the risk re-scored with the what-if scenario applied
    (NaN where the scenario does not apply to the resident, or does not lower this risk by at
    least the scoring config's ``scenario_min_drop``: it is never offered as advice);
    ``best_scenario_<outcome>`` / ``risk_after_<outcome>`` — the applicable scenario that lowers
    the risk most and the risk under it (no scenario: empty / the risk itself);
    stamps: ``model_uri``, ``model_version``, ``feature_set_version``, ``config_hash``,
    ``store_sha256``, ``scoring_date``.

EXPLANATIONS columns (long: per resident × outcome, bias + top ``k`` clinical items + the rest
+ the calibration step)
    ``pseudonym``, ``outcome``, ``rank`` (0 = ``bias``, 1…k by |contribution|, k+1 = ``other``,
    k+2 = ``calibration``), ``item`` (a clinical item of features.declarations ``ITEMS``:
    ``hba1c`` sums HbA1c now, its change, slope and 判定; or ``bias``, ``other``,
    ``calibration``), ``value`` (the item's main value, e.g. the latest HbA1c; NaN for the
    others), ``value_text`` (what staff read, e.g. ``6.3%(前回比 +0.2)``; empty for the
    others), ``contribution`` (log-odds: bias + items + other = the model's raw score;
    ``calibration`` = logit(``risk_<outcome>``) − raw score, so the rows of one resident ×
    outcome add up to the logit of the calibrated risk: :func:`explanations_add_up`),
    ``modifiable`` (the item has a feature the resident can change).

SELECTION columns (one row per scored resident)
    ``pseudonym``, ``fiscal_year``, ``letter_type`` (``advice`` / ``see_doctor`` / empty),
    ``outcome`` (the letter's topic), ``priority``, ``rank``, ``arm`` (``letter`` / ``control`` /
    empty), ``reason`` (scoring.selection.REASONS), ``reason_detail`` (``CONTACT_INVALID``: the
    contact fields at fault as codes such as ``address:too_long``, never values; a
    ``see_doctor`` letter chosen for referral-level values: the items, ``referral:sbp``; one held
    for a value to verify: the implausible items, ``verify:ggt``), ``sent``,
    ``factor_1`` … ``factor_3``.

LETTERS_SENT columns: ``pseudonym``, ``letter_date`` (next year's ``--letter-history``).

DRIFT columns
    ``feature``, ``label_ja``, ``psi``, ``status`` (``ok`` < 0.1 ≤ ``watch`` < 0.25 ≤ ``shift``),
    ``missing_reference``, ``missing_scoring`` (shares of missing values).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from data.columns import MEASUREMENT_COLUMNS, OUTCOMES, QUESTIONNAIRE_COLUMNS
from data.pseudonym import PSEUDONYM_LENGTH
from data.schemas import matches
from data.validate import RANGES
from features.declarations import ITEM_KEYS
from scoring.letters.schema import QUANTILES as _QUANTILES
from scoring.letters.schema import forecast_quantiles_ordered
from scoring.selection import DETAIL_CODES, REASONS

__all__ = [
    "DRIFT_SCHEMA",
    "EXPLANATIONS_SCHEMA",
    "EXPLANATION_ROWS",
    "INDEX_VALUE_COLUMNS",
    "LETTERS_SENT_SCHEMA",
    "SCORE_STAMPS",
    "SELECTION_SCHEMA",
    "ModelSummary",
    "explanations_add_up",
    "scores_schema",
]

#: The index checkup's values carried in the scores table (feature names = checkup columns).
INDEX_VALUE_COLUMNS: tuple[str, ...] = (
    *MEASUREMENT_COLUMNS,
    "blood_draw_timing",
    "urine_glucose",
    "urine_protein",
    *QUESTIONNAIRE_COLUMNS,
)
SCORE_STAMPS = (
    "model_uri",
    "model_version",
    "feature_set_version",
    "config_hash",
    "store_sha256",
    "scoring_date",
)
_PSEUDONYM = pa.Column("string", matches(rf"^[0-9a-f]{{{PSEUDONYM_LENGTH},64}}$"), coerce=True)
_PROB = pa.Check.in_range(0.0, 1.0)


def _forecasts_ordered(df: pd.DataFrame) -> pd.Series:
    return forecast_quantiles_ordered(df, RANGES)


def scores_schema(
    outcomes: tuple[str, ...] = OUTCOMES, scenarios: tuple[str, ...] = ()
) -> pa.DataFrameSchema:
    """Pandera schema of the scores table for the given outcomes and scenario keys."""
    cols: dict[str, pa.Column] = {
        "pseudonym": _PSEUDONYM,
        "fiscal_year": pa.Column("int64", pa.Check.in_range(2008, 2100), coerce=True),
        "index_fiscal_year": pa.Column("int64", pa.Check.in_range(2008, 2100), coerce=True),
        "exam_date": pa.Column("datetime64[ns]", coerce=True),
        "age": pa.Column("int64", pa.Check.in_range(40, 74), coerce=True),
        "sex": pa.Column("int64", pa.Check.isin([1, 2]), coerce=True),
        # float64 whatever a chunk holds: a chunk with no missing answer would otherwise carry
        # integers, and the file's types would depend on where the chunks were cut.
        **{c: pa.Column("float64", nullable=True, coerce=True) for c in INDEX_VALUE_COLUMNS},
        **{f"risk_{o}": pa.Column("float64", _PROB, coerce=True) for o in outcomes},
        **{
            f"risk_{o}__{s}": pa.Column("float64", _PROB, nullable=True, coerce=True)
            for o in outcomes
            for s in scenarios
        },
        **{f"risk_after_{o}": pa.Column("float64", _PROB, coerce=True) for o in outcomes},
        **{f"best_scenario_{o}": pa.Column("string", nullable=True) for o in outcomes},
        **{c: pa.Column("string", coerce=True) for c in SCORE_STAMPS},
        # Value forecasts (when the engine has them): inside the item's physical range.
        **{
            f"{item}_{q}": pa.Column(
                "float64", pa.Check.in_range(lo, hi), nullable=True, required=False, coerce=True
            )
            for item, (lo, hi, _, _) in RANGES.items()
            for q in _QUANTILES
        },
    }
    return pa.DataFrameSchema(
        cols,
        checks=[pa.Check(_forecasts_ordered, error="forecast quantiles: p10 ≤ p50 ≤ p90")],
        strict=False,
        unique=["pseudonym"],
        name="Scores",
    )


#: Explanation rows that are not a clinical item.
EXPLANATION_ROWS = ("bias", "other", "calibration")

EXPLANATIONS_SCHEMA = pa.DataFrameSchema(
    {
        "pseudonym": _PSEUDONYM,
        "outcome": pa.Column("string", pa.Check.isin(OUTCOMES), coerce=True),
        "rank": pa.Column("int64", pa.Check.ge(0), coerce=True),
        "item": pa.Column("string", pa.Check.isin([*ITEM_KEYS, *EXPLANATION_ROWS]), coerce=True),
        "value": pa.Column("float64", nullable=True, coerce=True),
        "value_text": pa.Column("string", nullable=True, coerce=True),
        "contribution": pa.Column("float64", pa.Check(np.isfinite), coerce=True),
        "modifiable": pa.Column("bool", coerce=True),
    },
    strict=True,
    unique=["pseudonym", "outcome", "rank"],
    name="Explanations",
)


def explanations_add_up(
    explanations: pd.DataFrame, scores: pd.DataFrame, tol: float = 1e-6
) -> pd.DataFrame:
    """Resident × outcome groups whose explanation rows do not add up to the logit of the
    scores' ``risk_<outcome>`` within ``tol`` (empty when all do), or that lack their
    ``bias`` (rank 0) or ``calibration`` (last rank) row.

    Columns: pseudonym, outcome, total (sum of contributions), logit_risk, problem.
    """
    e = explanations
    g = e.groupby(["pseudonym", "outcome"], sort=False, observed=True)
    out = g["contribution"].sum().rename("total").reset_index()
    ordered = e.sort_values("rank", kind="stable").groupby(
        ["pseudonym", "outcome"], sort=False, observed=True
    )
    keys = pd.MultiIndex.from_frame(out[["pseudonym", "outcome"]])
    first = ordered["item"].first().reindex(keys)
    last = ordered["item"].last().reindex(first.index)
    risk = pd.Series(np.nan, index=out.index)
    pos = pd.Index(scores["pseudonym"].astype("string")).get_indexer(out["pseudonym"])
    for o in out["outcome"].unique():
        m = (out["outcome"] == o).to_numpy()
        col = f"risk_{o}"
        if col in scores:
            r = scores[col].to_numpy(dtype="float64")
            risk[m] = np.where(pos[m] >= 0, r[pos[m]], np.nan)
    p = np.clip(risk.to_numpy(dtype="float64"), 1e-12, 1 - 1e-12)
    out["logit_risk"] = np.log(p / (1 - p))
    problem = np.full(len(out), "", dtype=object)
    problem[np.abs(out["total"] - out["logit_risk"]).to_numpy() > tol] = "sum"
    problem[np.isnan(out["logit_risk"].to_numpy())] = "no risk"
    problem[last.to_numpy(dtype=object) != "calibration"] = "no calibration row"
    problem[first.to_numpy(dtype=object) != "bias"] = "no bias row"
    out["problem"] = problem
    return out[out["problem"] != ""].reset_index(drop=True)


SELECTION_SCHEMA = pa.DataFrameSchema(
    {
        "pseudonym": _PSEUDONYM,
        "fiscal_year": pa.Column("int64", pa.Check.in_range(2008, 2100), coerce=True),
        "letter_type": pa.Column(
            "string", pa.Check.isin(["advice", "see_doctor"]), nullable=True, coerce=True
        ),
        "outcome": pa.Column("string", pa.Check.isin(OUTCOMES), nullable=True, coerce=True),
        "priority": pa.Column("float64", nullable=True, coerce=True),
        "rank": pa.Column("Int64", pa.Check.ge(1), nullable=True, coerce=True),
        "arm": pa.Column(
            "string", pa.Check.isin(["letter", "control"]), nullable=True, coerce=True
        ),
        "reason": pa.Column("string", pa.Check.isin(REASONS), coerce=True),
        "reason_detail": pa.Column(
            "string",
            pa.Check.str_matches(DETAIL_CODES),
            nullable=True,
            coerce=True,
        ),
        "sent": pa.Column("bool"),
        **{f"factor_{i}": pa.Column("string", nullable=True, coerce=True) for i in (1, 2, 3)},
    },
    strict=True,
    unique=["pseudonym"],
    name="Selection",
)

LETTERS_SENT_SCHEMA = pa.DataFrameSchema(
    {
        "pseudonym": _PSEUDONYM,
        "letter_date": pa.Column("string", pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$")),
    },
    strict=True,
    unique=["pseudonym"],
    name="LettersSent",
)

DRIFT_SCHEMA = pa.DataFrameSchema(
    {
        "feature": pa.Column("string", coerce=True),
        "label_ja": pa.Column("string", coerce=True),
        "psi": pa.Column("float64", pa.Check.ge(0), nullable=True, coerce=True),
        "status": pa.Column("string", pa.Check.isin(["ok", "watch", "shift", "n/a"])),
        "missing_reference": pa.Column("float64", nullable=True, coerce=True),
        "missing_scoring": pa.Column("float64", nullable=True, coerce=True),
    },
    strict=True,
    unique=["feature"],
    name="Drift",
)


@dataclass(frozen=True)
class ModelSummary:
    """What staff see about the model that produced the scores (from the MLflow registry).

    ``metrics``: one row per outcome (the training run's ``evaluation/summary.csv``: auc,
    pr_auc, brier, ece, calibration slope/intercept, baseline AUCs …). ``calibration``: test-year
    reliability bins, columns outcome, bin, mean_predicted, observed, n (may be empty).
    ``model_card``: the run's ``model_card.md`` (Markdown).
    """

    uri: str
    name: str
    version: str
    run_id: str
    feature_set_version: str
    test_year: int
    outcomes: tuple[str, ...]
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    model_card: str = ""
