"""Inputs of the staff report and their validation at the boundary.

Every frame is cut down to the columns the report knows (an allow-list) *before* validation, so
a frame that also carries ``name``, ``address``, ``person_id``, ``birth_date`` or anything else
never reaches the report: the report cannot print what it never keeps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from data.columns import OUTCOMES
from features import declarations
from scoring.contracts import (
    DRIFT_SCHEMA,
    EXPLANATIONS_SCHEMA,
    ModelSummary,
    explanations_add_up,
    scores_schema,
)
from scoring.selection import DETAIL_CODES, REASONS, names_values_to_verify

__all__ = [
    "SELECTION_SCHEMA",
    "Prepared",
    "ReportConfig",
    "ReportInputError",
    "ReportInputs",
    "ReportPaths",
    "ScenarioLabel",
    "prepare",
]

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
QUANTILES = ("p10", "p50", "p90")


class ReportInputError(ValueError):
    """The report's inputs break their contract (names the input and the first failures)."""


@dataclass(frozen=True)
class ScenarioLabel:
    """A what-if scenario of the scores table (``risk_<outcome>__<key>``) and its label."""

    key: str
    label_ja: str
    label_en: str = ""


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows; built by the scoring run (see scoring.contracts).

    ``scores``: contracts.scores_schema; ``selection``: scoring.selection.select's table;
    ``explanations``: EXPLANATIONS_SCHEMA (one page per pseudonym in it); ``drift``:
    DRIFT_SCHEMA; ``summary``: the run's counts (``run.json``), integers only.
    """

    scores: pd.DataFrame
    selection: pd.DataFrame
    explanations: pd.DataFrame
    drift: pd.DataFrame
    model: ModelSummary
    fiscal_year: int
    scoring_date: date
    scenarios: tuple[ScenarioLabel, ...] = ()
    summary: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportConfig:
    """How the report is laid out.

    ``pdf_residents``: at most this many per-resident pages go into the PDF (first by letter
    type — advice, see_doctor, none —, then rank); the HTML always has every explained resident.
    Time and size per resident page: bench/README.md (``bench/bench_report.py``).
    ``pdf_chunk``: resident pages typeset per Typst compilation, each in a worker process of
    its own (a compilation's memory grows with its pages, so this bounds it);
    ``pdf_workers``: such processes at a time.
    ``risk_bins``: histogram bins of the risk distribution; ``limitations``: how many of the
    model's limitations (scoring.report.labels ``MODEL_LIMITS_JA``, in Japanese) the summary
    shows; the model card itself (English, for model staff) is folded in the HTML only.
    """

    pdf_residents: int = 2000
    pdf_chunk: int = 100
    pdf_workers: int = 2
    risk_bins: int = 20
    limitations: int = 6
    title: str = "健診リスク予測 説明資料"

    def __post_init__(self) -> None:
        if self.pdf_residents < 0:
            raise ValueError("pdf_residents must be ≥ 0")
        if self.pdf_chunk < 1:
            raise ValueError("pdf_chunk must be ≥ 1")
        if self.pdf_workers < 1:
            raise ValueError("pdf_workers must be ≥ 1")
        if not 2 <= self.risk_bins <= 100:
            raise ValueError("risk_bins must lie in [2, 100]")


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`scoring.report.build_report` wrote, with sizes and timings."""

    html: Path
    pdf: Path | None
    residents: int
    pdf_residents: int
    html_bytes: int
    pdf_bytes: int | None = None
    pdf_pages: int | None = None
    #: Typst compilations joined into the PDF, and the most memory one of them took (MB).
    pdf_parts: int | None = None
    pdf_part_mb: float | None = None
    seconds: Mapping[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Schemas the contracts module does not have
# --------------------------------------------------------------------------------------------

SELECTION_SCHEMA = pa.DataFrameSchema(
    {
        "pseudonym": pa.Column("string", coerce=True),
        "letter_type": pa.Column(
            "string", pa.Check.isin(["advice", "see_doctor"]), nullable=True, coerce=True
        ),
        "outcome": pa.Column("string", pa.Check.isin(OUTCOMES), nullable=True, coerce=True),
        "priority": pa.Column("float64", nullable=True, coerce=True, required=False),
        "rank": pa.Column("Int64", pa.Check.ge(1), nullable=True, coerce=True),
        "arm": pa.Column(
            "string", pa.Check.isin(["letter", "control"]), nullable=True, coerce=True
        ),
        "reason": pa.Column("string", pa.Check.isin(REASONS), coerce=True),
        "sent": pa.Column("bool", coerce=True, required=False),
    },
    strict=True,
    unique=["pseudonym"],
    name="Selection",
)
#: The selection's rows that name values to verify (a few): pseudonym and its codes.
VERIFY_SCHEMA = pa.DataFrameSchema(
    {
        "pseudonym": pa.Column("string", coerce=True),
        "reason_detail": pa.Column("string", pa.Check.str_matches(DETAIL_CODES)),
    },
    strict=True,
    unique=["pseudonym"],
    name="Values to verify",
)
CALIBRATION_SCHEMA = pa.DataFrameSchema(
    {
        "outcome": pa.Column("string", coerce=True),
        "bin": pa.Column("int64", coerce=True, required=False),
        "mean_predicted": pa.Column("float64", pa.Check.in_range(0, 1), coerce=True),
        "observed": pa.Column("float64", pa.Check.in_range(0, 1), nullable=True, coerce=True),
        "n": pa.Column("int64", pa.Check.ge(0), coerce=True),
    },
    strict=True,
    name="Calibration",
)


def _validate(schema: pa.DataFrameSchema, df: pd.DataFrame, what: str) -> pd.DataFrame:
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases
        cols = [
            c for c in ("schema_context", "column", "check", "failure_case", "index") if c in fc
        ]
        head = fc[cols].head(8).to_string(index=False)
        raise ReportInputError(
            f"report input {what!r} breaks the {schema.name} contract (scoring/contracts.py): "
            f"{len(fc)} failure(s); first:\n{head}"
        ) from e
    except pa.errors.SchemaError as e:  # pragma: no cover - lazy=True raises SchemaErrors
        raise ReportInputError(f"report input {what!r}: {e}") from e


def _keep(df: pd.DataFrame, allowed: list[str], what: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ReportInputError(f"report input {what!r} must be a pandas DataFrame")
    return df.loc[:, [c for c in df.columns if c in set(allowed)]].copy()


def forecast_items(columns: list[str] | pd.Index) -> list[str]:
    """Declared items with all three ``<item>_p10/_p50/_p90`` columns, in declaration order."""
    have = set(columns)
    names = declarations.feature_names()
    return [n for n in names if all(f"{n}_{q}" in have for q in QUANTILES)]


@dataclass(frozen=True)
class Prepared:
    """Validated, allow-listed inputs (what the renderer may read)."""

    scores: pd.DataFrame
    selection: pd.DataFrame
    #: Residents whose see-a-doctor letter rested on implausible values (VERIFY_SCHEMA).
    verify: pd.DataFrame
    explanations: pd.DataFrame
    drift: pd.DataFrame
    calibration: pd.DataFrame
    metrics: pd.DataFrame
    model: ModelSummary
    outcomes: tuple[str, ...]
    scenarios: tuple[ScenarioLabel, ...]
    forecast_items: tuple[str, ...]
    fiscal_year: int
    scoring_date: date
    summary: tuple[tuple[str, int], ...]


def prepare(inputs: ReportInputs) -> Prepared:
    """Allow-list the columns of every input and validate it; raise :class:`ReportInputError`.

    Steps: the run's facts (model, outcomes, scenarios, year, date, counts) → each table
    against its contract → checks across tables → the model's calibration table.
    """
    if not isinstance(inputs, ReportInputs):
        raise ReportInputError("build_report expects a ReportInputs")
    model, outcomes, scenarios = _model_outcomes_scenarios(inputs)
    fiscal_year, sd, summary = _year_date_counts(inputs)
    scores, items = _scores(inputs.scores, outcomes, tuple(s.key for s in scenarios))
    sel = _keep(inputs.selection, list(SELECTION_SCHEMA.columns), "selection")
    if "reason" in sel and isinstance(sel["reason"].dtype, pd.CategoricalDtype):
        sel["reason"] = sel["reason"].astype("string")
    sel = _validate(SELECTION_SCHEMA, sel, "selection").reset_index(drop=True)
    verify = _values_to_verify(inputs.selection)
    expl = _keep(inputs.explanations, list(EXPLANATIONS_SCHEMA.columns), "explanations")
    expl = _validate(EXPLANATIONS_SCHEMA, expl, "explanations").reset_index(drop=True)
    drift = _keep(inputs.drift, list(DRIFT_SCHEMA.columns), "drift")
    drift = _validate(DRIFT_SCHEMA, drift, "drift").reset_index(drop=True)
    _cross_checks(scores, sel, expl, outcomes)
    metrics = model.metrics if model.metrics is not None else pd.DataFrame()
    if "outcome" not in metrics.columns and metrics.index.name == "outcome":
        metrics = metrics.reset_index()
    return Prepared(
        scores=scores,
        selection=sel,
        verify=verify,
        explanations=expl,
        drift=drift,
        calibration=_calibration(model),
        metrics=metrics.copy(),
        model=model,
        outcomes=outcomes,
        scenarios=scenarios,
        forecast_items=tuple(items),
        fiscal_year=fiscal_year,
        scoring_date=sd,
        summary=tuple(summary),
    )


def _values_to_verify(selection: pd.DataFrame) -> pd.DataFrame:
    """The selection's rows that name values to verify (``verify:<item>`` in its
    ``reason_detail``), validated; only those rows' text is read."""
    if "reason_detail" not in selection:
        return VERIFY_SCHEMA.validate(pd.DataFrame(columns=list(VERIFY_SCHEMA.columns)))
    rows = selection.loc[names_values_to_verify(selection["reason_detail"])]
    frame = rows[["pseudonym", "reason_detail"]].astype({"reason_detail": "string"})
    return _validate(VERIFY_SCHEMA, frame, "selection").reset_index(drop=True)


def _model_outcomes_scenarios(
    inputs: ReportInputs,
) -> tuple[ModelSummary, tuple[str, ...], tuple[ScenarioLabel, ...]]:
    model = inputs.model
    if not isinstance(model, ModelSummary):
        raise ReportInputError("ReportInputs.model must be a scoring.contracts.ModelSummary")
    outcomes = tuple(model.outcomes)
    bad = [o for o in outcomes if o not in OUTCOMES]
    if not outcomes or bad:
        raise ReportInputError(
            f"model outcomes {list(outcomes)} must be a non-empty subset of {OUTCOMES}"
        )
    scenarios = tuple(inputs.scenarios)
    keys = [s.key for s in scenarios]
    if len(set(keys)) != len(keys) or any(not _KEY.match(k) for k in keys):
        raise ReportInputError(f"scenario keys must be unique snake_case names: {keys}")
    return model, outcomes, scenarios


def _year_date_counts(inputs: ReportInputs) -> tuple[int, date, list[tuple[str, int]]]:
    try:
        fiscal_year = int(inputs.fiscal_year)
    except (TypeError, ValueError):
        raise ReportInputError(f"fiscal_year must be an integer: {inputs.fiscal_year!r}") from None
    sd = inputs.scoring_date
    if isinstance(sd, datetime):
        sd = sd.date()
    if isinstance(sd, str):
        try:
            sd = date.fromisoformat(sd)
        except ValueError:
            raise ReportInputError(f"scoring_date is not an ISO date: {sd!r}") from None
    if not isinstance(sd, date):
        raise ReportInputError(f"scoring_date must be a date: {inputs.scoring_date!r}")
    summary = []
    for k, v in dict(inputs.summary).items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int):
            raise ReportInputError(
                f"summary holds counts only (str → int): {k!r} = {type(v).__name__}"
            )
        summary.append((k, int(v)))
    return fiscal_year, sd, summary


def _scores(raw, outcomes: tuple[str, ...], keys: tuple[str, ...]) -> tuple[pd.DataFrame, list]:
    """The contract's columns plus forecast quantiles of declared items; nothing else."""
    schema = scores_schema(outcomes, keys)
    if not isinstance(raw, pd.DataFrame):
        raise ReportInputError("report input 'scores' must be a pandas DataFrame")
    items = forecast_items(raw.columns)
    allowed = list(schema.columns) + [f"{i}_{q}" for i in items for q in QUANTILES]
    scores = _validate(schema, _keep(raw, allowed, "scores"), "scores")
    return scores.reset_index(drop=True), items


def _cross_checks(
    scores: pd.DataFrame, sel: pd.DataFrame, expl: pd.DataFrame, outcomes: tuple[str, ...]
) -> None:
    """Every explained or selected resident is scored; explanations add up to the risk."""
    known = pd.Index(scores["pseudonym"])
    missing = pd.Index(expl["pseudonym"].unique()).difference(known)
    if len(missing):
        raise ReportInputError(
            f"{len(missing)} pseudonym(s) in 'explanations' are not in 'scores' "
            f"(first: {list(missing[:3])})"
        )
    missing = pd.Index(sel["pseudonym"]).difference(known)
    if len(missing):
        raise ReportInputError(
            f"{len(missing)} pseudonym(s) in 'selection' are not in 'scores' (first: {list(missing[:3])})"
        )
    other = sorted(set(expl["outcome"].unique()) - set(outcomes))
    if other:
        raise ReportInputError(f"'explanations' has outcomes the model does not score: {other}")
    bias = expl[expl["rank"] == 0]
    groups = expl[["pseudonym", "outcome"]].drop_duplicates()
    if len(bias) != len(groups) or not (bias["item"] == "bias").all():
        raise ReportInputError(
            "'explanations': every pseudonym × outcome needs its rank-0 row with item 'bias'"
        )
    # A page prints the rows on the risk scale and they must reach the risk it prints.
    bad = explanations_add_up(expl, scores)
    if len(bad):
        head = bad.head(3).to_string(index=False)
        raise ReportInputError(
            f"'explanations': {len(bad)} pseudonym × outcome group(s) do not add up to the logit "
            f"of the scores' risk (bias + items + other + calibration), first:\n{head}"
        )


def _calibration(model: ModelSummary) -> pd.DataFrame:
    cal = model.calibration
    if cal is None or not len(cal):
        cal = pd.DataFrame(columns=["outcome", "mean_predicted", "observed", "n"])
    cal = _keep(cal, list(CALIBRATION_SCHEMA.columns), "model.calibration")
    return _validate(CALIBRATION_SCHEMA, cal, "model.calibration").reset_index(drop=True)
