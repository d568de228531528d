"""Annual scoring (年次スコアリング): eligible residents → risk, forecasts, what-if, explanations.

Pure core on DataFrames and typed config; :mod:`kenshin.annual` reads the store, loads the model
and writes the files of :mod:`scoring.contracts`.

* **Eligibility** (対象者): enrolled on the scoring date, aged 40-74 at the end of the scoring
  fiscal year, with a checkup in FY — or, when ``fallback_previous_year``, in FY-1. The latest
  checkup of that year is the *index* checkup; nothing dated after it is read.
* **Risk and forecasts**: the as-of features of the index checkup (features.build_features, the
  same code as training) through the registered engine.
* **What-if** (もしも): each scenario of ``scoring.toml`` edits the index checkup as the resident
  would (e.g. weight −3 kg, quit smoking), only where its ``when`` conditions hold; the edited
  history is rebuilt into features (so BMI, メタボ判定, 階層化 and flags follow) and re-scored
  through the same model. Where the engine carries a lab-response table (models.lab_response,
  fitted at training; ``scenario_lab_response``) the edited checkup's body size (for a habit)
  and laboratory values with a declared direction follow the lever (exercise also lowers
  weight; weight −3 kg also lowers SBP, HbA1c …), only the risk-lowering way; the labs'
  undeclared history features keep their values; an HbA1c moved between two recorded values
  (0.1 %) is read at both and the risks mixed (:class:`ScenarioRows`). Where the engine
  carries a pooled what-if table (scoring.whatif_effect, fitted at training from that
  per-resident what-if; ``scenario_effect = "pooled"``) a scenario it holds is not re-scored:
  its odds ratio per scenario × outcome × dose is applied to each resident's risk. The
  declarations drive it: a scenario may only edit modifiable
  items with a declared direction (features.declarations ``monotone``), only in their
  risk-lowering direction, and applies only where it moves the resident that way. The models
  are monotone in the same declarations, so a scenario never raises a risk; a scenario that
  does not lower the risk by at least ``scenario_min_drop`` is not offered (its column is
  missing for that resident and outcome, it is never the best scenario).
* **Explanations**: for the residents who get a letter or a report page, the engine's
  contributions (LightGBM's native SHAP, ``pred_contrib``: the same numbers as shap's
  TreeExplainer) summed per clinical item (HbA1c now, its change, slope and 判定 are one line),
  with the calibration step as a line of its own so the lines add up to the risk; the top
  modifiable items that raise the risk are the letter's factors.

Everything is vectorised per chunk of residents; chunks are independent, so the results do not
depend on the chunk size.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import models.train
from data.columns import MEASUREMENT_COLUMNS, QUESTIONNAIRE_COLUMNS
from data.normalise import derive_bmi
from features.build import FeatureConfig, as_float, build_features, to_matrix
from features.declarations import DECLARATIONS, HISTORY_LEVELS, RECENT_ITEMS, item, item_matrix
from models.explain import group_contributions
from models.lab_response import GRID, LABS, grid_split, lab_shift
from models.train import background, parallel_map
from scoring.contracts import INDEX_VALUE_COLUMNS
from scoring.items import item_values
from scoring.keys import arrow_text, hex_keys, hex_text, isin_sorted
from scoring.whatif_effect import PooledChange, pooled_change

__all__ = [
    "Eligibility",
    "RiskBands",
    "WhatIfScenario",
    "ScoringConfig",
    "apply_scenario",
    "eligible_in_store",
    "eligible_residents",
    "explain",
    "explain_chunk",
    "load_scoring_config",
    "scenario_outcome_risk",
    "scenario_risks",
    "whatif_effects",
    "score_chunk",
    "whatif_direction",
]

DEFAULT_CONFIG = Path(__file__).with_name("scoring.toml")
MIN_AGE, MAX_AGE = 40, 74
#: Checkup columns a scenario may read or change (what a resident's habits can move).
SCENARIO_COLUMNS = (*MEASUREMENT_COLUMNS, *QUESTIONNAIRE_COLUMNS)
_ALLOWED = {d.name: d.allowed for d in DECLARATIONS if d.allowed}
_MODIFIABLE = {d.name: d.modifiable for d in DECLARATIONS}
#: Declared medical direction of the checkup items a scenario may edit (risk-lowering = −d).
_DIRECTION = {d.name: d.monotone for d in DECLARATIONS if d.modifiable and d.monotone}
#: Declared direction of every feature (0: none, the models are not monotone in it).
_FEATURE_DIRECTION = {d.name: d.monotone for d in DECLARATIONS}

_WEIGHT = (("bmi", "ge", 23.0),)
_DRINKING = (("alcohol_g_per_day", "ge", 20.0),)
_SMOKING = (("q_smoking", "eq", 1),)
#: When a modifiable factor may be advised on (助言の前提): the resident must be on the side of
#: it that there is something to change — never "lose weight" at BMI 20 or "drink less" to a
#: non-drinker, whatever the SHAP sign. Every modifiable feature needs a rule (tested).
FACTOR_RULES: dict[str, tuple[tuple[str, str, float], ...]] = {
    "weight_kg": _WEIGHT,
    "bmi": _WEIGHT,
    "waist_cm": _WEIGHT,
    "q_smoking": _SMOKING,
    "current_smoker": _SMOKING,
    "q_exercise": (("q_exercise", "eq", 2),),
    "q_walking": (("q_walking", "eq", 2),),
    "q_walk_fast": (("q_walk_fast", "eq", 2),),
    "q_eating_speed": (("q_eating_speed", "eq", 1),),
    "q_late_dinner": (("q_late_dinner", "eq", 1),),
    "q_snacks": (("q_snacks", "le", 2),),
    "q_skip_breakfast": (("q_skip_breakfast", "eq", 1),),
    "q_alcohol_freq": _DRINKING,
    "q_alcohol_amount": _DRINKING,
    "alcohol_g_per_day": _DRINKING,
    "risky_drinking": _DRINKING,
    "q_sleep": (("q_sleep", "eq", 2),),
}


def advisable(features: pd.DataFrame, names: list[str]) -> np.ndarray:
    """rows × names: True where the feature is modifiable and its FACTOR_RULES hold."""
    out = np.zeros((len(features), len(names)), dtype=bool)
    for j, name in enumerate(names):
        rules = FACTOR_RULES.get(name) if _MODIFIABLE.get(name) else None
        if not rules:
            continue
        ok = np.ones(len(features), dtype=bool)
        for col, op, value in rules:
            ok &= Condition(column=col, op=op, value=value).holds(features)
        out[:, j] = ok
    return out


class Condition(BaseModel):
    """``column op value`` on the index checkup; missing values never satisfy a condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str
    op: Literal["eq", "ne", "ge", "gt", "le", "lt"]
    value: float

    def holds(self, frame: pd.DataFrame) -> np.ndarray:
        x = pd.to_numeric(frame[self.column], errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            out = {
                "eq": x == self.value,
                "ne": x != self.value,
                "ge": x >= self.value,
                "gt": x > self.value,
                "le": x <= self.value,
                "lt": x < self.value,
            }[self.op]
        return out & ~np.isnan(x)


class WhatIfScenario(BaseModel):
    """A what-if change to the index checkup, applied where every ``when`` condition holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label_ja: str
    when: tuple[Condition, ...] = ()
    set: dict[str, float] = Field(default_factory=dict)
    add: dict[str, float] = Field(default_factory=dict)
    multiply: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _columns_known(self) -> WhatIfScenario:
        used = [c.column for c in self.when] + [*self.set, *self.add, *self.multiply]
        unknown = sorted(set(used) - set(SCENARIO_COLUMNS))
        if unknown:
            raise ValueError(f"scenario {self.key!r}: unknown checkup columns {unknown}")
        if not (self.set or self.add or self.multiply):
            raise ValueError(f"scenario {self.key!r} changes nothing (set/add/multiply)")
        for col, v in self.set.items():
            if col in _ALLOWED and v not in _ALLOWED[col]:
                raise ValueError(
                    f"scenario {self.key!r}: {col} = {v:g} is not an allowed code {_ALLOWED[col]}"
                )
        edited = [*self.set, *self.add, *self.multiply]
        undirected = sorted({c for c in edited if c not in _DIRECTION})
        if undirected:
            raise ValueError(
                f"scenario {self.key!r}: {undirected} are not modifiable items with a declared "
                "direction (features.declarations), so a what-if may not change them"
            )
        for col, v in self.add.items():
            if v == 0 or np.sign(v) == _DIRECTION[col]:
                raise ValueError(
                    f"scenario {self.key!r}: add {col} {v:+g} moves it towards higher risk (or "
                    f"nowhere); its declared direction is {_DIRECTION[col]:+d}"
                )
        for col, v in self.multiply.items():
            if not v > 0 or v == 1 or np.sign(v - 1) == _DIRECTION[col]:
                raise ValueError(
                    f"scenario {self.key!r}: multiply {col} by {v:g} moves it towards higher "
                    f"risk (or nowhere); its declared direction is {_DIRECTION[col]:+d}"
                )
        return self

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.set, *self.add, *self.multiply]))


class RiskBands(BaseModel):
    """Lower bounds of the predicted-risk bands shown in letters and reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    moderate: float = Field(0.10, gt=0, lt=1)
    high: float = Field(0.20, gt=0, lt=1)
    very_high: float = Field(0.40, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if not self.moderate < self.high < self.very_high:
            raise ValueError("risk_bands must increase: moderate < high < very_high")
        return self

    def band(self, risk: np.ndarray) -> np.ndarray:
        r = np.asarray(risk, dtype=float)
        cuts = [self.moderate, self.high, self.very_high]
        out = np.asarray(["low", "moderate", "high", "very_high"], dtype=object)[
            np.searchsorted(cuts, np.nan_to_num(r, nan=0.0), side="right")
        ]
        return np.where(np.isnan(r), None, out)


class ScoringConfig(BaseModel):
    """Who is scored and which what-if scenarios are run (``scoring.toml``, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    fallback_previous_year: bool = True
    #: Residents scored at once: one chunk in the run's own process, or this many shared by
    #: the worker processes (kenshin.workers); bounds the memory of the score step.
    chunk_size: int = Field(50_000, ge=100)
    #: Residents explained at a time: a resident's explanation is ≈ 90 rows (13 per outcome),
    #: so a chunk of the scoring's size would hold ≈ 4.5M rows at once.
    explain_chunk_size: int = Field(10_000, ge=100)
    explain_top: int = Field(10, ge=1, le=50)
    #: A scenario is offered (report, letters, best scenario) only where it lowers the risk by
    #: at least this much (probability; 0.001 = 0.1 percentage point).
    scenario_min_drop: float = Field(0.001, ge=0, lt=1)
    #: Move the edited checkup's body size and laboratory values with the lever (the engine's
    #: lab-response table, models.lab_response: only risk-lowering, clear coefficients).
    scenario_lab_response: bool = True
    #: ``pooled``: a scenario's what-if is the engine's pooled odds ratio per scenario ×
    #: outcome × dose, fitted at training from its per-resident what-if
    #: (scoring.whatif_effect); ``per_resident``: each resident's edited checkup re-scored
    #: through the trees. Engines without the table, and scenarios edited since training, are
    #: re-scored per resident either way.
    scenario_effect: Literal["pooled", "per_resident"] = "pooled"
    risk_bands: RiskBands = RiskBands()
    scenarios: tuple[WhatIfScenario, ...] = Field((), alias="scenario")

    @field_validator("scenarios")
    @classmethod
    def _unique(cls, v: tuple[WhatIfScenario, ...]) -> tuple[WhatIfScenario, ...]:
        keys = [s.key for s in v]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"duplicate scenario keys {dup}")
        return v

    @property
    def scenario_keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.scenarios)

    def digest(self) -> str:
        """Short hash of the effective settings (stamped on every score row)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_scoring_config(path: Path | None = None) -> ScoringConfig:
    """Read and validate a scoring TOML (default: the shipped ``scoring.toml``)."""
    path = path or DEFAULT_CONFIG
    with Path(path).open("rb") as f:
        return ScoringConfig.model_validate(tomllib.load(f))


# ------------------------------------------------------------------------------------------
# Eligibility
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    """Index checkups of the residents to score (sorted by pseudonym) and who was left out."""

    index: pd.DataFrame  # pseudonym, index_fiscal_year, exam_date, age (at FY end), sex
    counts: dict[str, int]


def _covering(enrollment: pd.DataFrame, day: pd.Timestamp) -> np.ndarray:
    """Rows of ``enrollment`` whose period covers ``day`` (open end = still enrolled)."""
    start = enrollment["enrolled_from"] <= day
    until = enrollment["enrolled_until"]
    covers = start & (until.isna() | (until >= day))
    return covers.to_numpy(dtype=bool, na_value=False)


def enrolled_on(enrollment: pd.DataFrame, day: pd.Timestamp) -> pd.Index:
    """Pseudonyms with an enrollment period covering ``day`` (open end = still enrolled)."""
    who = enrollment.loc[_covering(enrollment, day), "pseudonym"].unique()
    return pd.Index(np.asarray(who, dtype=object))


def _sort_keys(*columns: pd.Series) -> list[np.ndarray]:
    """Keys of the pseudonyms of several columns, comparable across them and ordered as the
    strings are: ``uint64`` of fixed-width hex pseudonyms (the store's), else UTF-8 bytes."""
    keys, widths = [], set()
    for c in columns:
        text = arrow_text(c)
        k = hex_keys(text)
        if k is None and len(text):
            break
        if len(text):
            widths.add(len(text[0].as_py()))
        keys.append(k if k is not None else np.zeros(0, np.uint64))
        del text
    else:
        if len(widths) <= 1:
            return keys
    del keys
    texts = [arrow_text(c).to_numpy().astype(str) for c in columns]
    return [np.char.encode(t, "utf-8") for t in texts]


def _latest(keys: np.ndarray, fiscal_year: np.ndarray, exam_date: pd.Series) -> np.ndarray:
    """Row of each resident's last checkup (latest fiscal year, then exam date, then the last
    row), in pseudonym order: a stable sort by (pseudonym, fiscal_year, exam_date), missing
    dates last, and the last row of each pseudonym."""
    dates = exam_date.to_numpy(dtype="datetime64[ns]").view("int64").copy()
    dates[dates == np.iinfo(np.int64).min] = np.iinfo(np.int64).max  # NaT last
    order = np.lexsort((dates, fiscal_year, keys))
    k = keys[order]
    last = np.ones(len(k), dtype=bool)
    last[:-1] = k[1:] != k[:-1]
    return order[last]


def eligible_residents(
    candidates: pd.DataFrame,
    enrollment: pd.DataFrame,
    fiscal_year: int,
    scoring_date: pd.Timestamp,
    config: ScoringConfig,
) -> Eligibility:
    """Pick each resident's index checkup and apply the eligibility rules (module doc).

    ``candidates``: checkups of FY (and FY-1) with pseudonym, fiscal_year, exam_date, age, sex.

    On numbers, not on one Python string a row: the pseudonyms become sort keys
    (:func:`_sort_keys`), each resident's checkup is picked by one stable sort
    (:func:`_latest`), and the rolls are matched on sorted keys — the index and counts of
    sorting and de-duplicating the frames, at a fraction of their memory (1M residents:
    candidates 1.8M rows, enrollment 2.5M periods).
    """
    if candidates["pseudonym"].isna().any() or enrollment["pseudonym"].isna().any():
        return _eligible_residents_frames(candidates, enrollment, fiscal_year, scoring_date, config)
    enrolled = _rows(enrollment["pseudonym"], _covering(enrollment, scoring_date))
    return _eligible(candidates, enrolled, fiscal_year, config)


def eligible_in_store(
    store: Path, fiscal_year: int, scoring_date: pd.Timestamp, config: ScoringConfig
) -> Eligibility:
    """:func:`eligible_residents` of a store's checkups of FY (and FY-1) and its enrollment
    periods covering ``scoring_date``, reading of the periods only their pseudonyms
    (data.store.read_enrolled: ≈ 20 bytes a period, not the ≈ 40 of read_enrollment's frame).

    The same index and counts as ``eligible_residents(read_checkup_columns(store, …),
    read_enrollment(store, covering=scoring_date), …)``. No checkup at all in the years read
    shows as ``counts["with_checkup"] == 0``, none in FY as ``counts["checkup_in_fy"] == 0``.
    The store's pseudonyms are never missing (data.ingest checks them).
    """
    from data.store import read_checkup_columns, read_enrolled

    years = [fiscal_year, fiscal_year - 1] if config.fallback_previous_year else [fiscal_year]

    def enrolled() -> pd.Series:
        return pd.Series(pd.arrays.ArrowExtensionArray(read_enrolled(store, scoring_date)))

    enrolled_keys = _enrolled_keys(store, scoring_date)
    if enrolled_keys is not None:
        read = _candidate_keys(store, years)
        if read is not None:  # every pseudonym a key: the checkups' text is never held whole
            candidates, keys = read
            del read
            return _eligible(candidates, enrolled_keys, fiscal_year, config, keys=keys)
    # No name holds the two tables here: _eligible lets each go once it is done with it.
    return _eligible(
        read_checkup_columns(store, ["pseudonym", "exam_date", "age", "sex"], years),
        enrolled_keys,
        fiscal_year,
        config,
        enrolled_again=enrolled,
        owned=True,
    )


def _candidate_keys(store: Path, years: list[int]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The index candidates (exam date, age, sex, fiscal year of the checkups of ``years``)
    and their pseudonyms' keys (:func:`scoring.keys.hex_keys`), row for row, made batch by
    batch: the pseudonyms' text (≈ 24 bytes a checkup, ≈ 0.4 GB at 10M residents) is never
    held whole. ``None`` unless every pseudonym is the store's kind (hex, PSEUDONYM_LENGTH)."""
    from data.pseudonym import PSEUDONYM_LENGTH
    from data.store import checkup_batch_schema, checkup_columns_frame, iter_checkup_batches

    columns = ["pseudonym", "exam_date", "age", "sex"]
    schema = checkup_batch_schema(store, columns)
    keys, rest = [], []
    for batch in iter_checkup_batches(store, columns, years):
        if not batch.num_rows:
            continue
        text = batch.column("pseudonym")
        k = hex_keys(text) if len(text[0].as_py()) == PSEUDONYM_LENGTH else None
        if k is None:
            return None
        keys.append(k)
        rest.append(batch.drop_columns(["pseudonym"]))
        del batch, text
    table = pa.Table.from_batches(rest, schema=schema.remove(0))
    del rest
    frame = checkup_columns_frame(table)
    return frame, (np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64))


def _enrolled_keys(store: Path, day: pd.Timestamp) -> np.ndarray | None:
    """:func:`_hex_keys` of the pseudonyms of the periods covering ``day``, made batch by batch
    (8 bytes a period); ``None`` unless all are the store's (hex, PSEUDONYM_LENGTH digits)."""
    from data.pseudonym import PSEUDONYM_LENGTH
    from data.store import iter_enrolled

    parts = []
    for arr in iter_enrolled(store, day):
        if not len(arr):
            continue
        keys = hex_keys(arr) if len(arr[0].as_py()) == PSEUDONYM_LENGTH else None
        if keys is None:
            return None
        parts.append(keys)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def _eligible(
    candidates: pd.DataFrame,
    enrolled: pd.Series | np.ndarray | None,
    fiscal_year: int,
    config: ScoringConfig,
    enrolled_again: Callable[[], pd.Series] | None = None,
    owned: bool = False,
    keys: np.ndarray | None = None,
) -> Eligibility:
    """:func:`eligible_residents` once the enrollment is ``enrolled``: the pseudonyms of the
    periods covering the scoring day (no missing value; repeats allowed), or their
    :func:`_enrolled_keys` (``None``: read them with ``enrolled_again``, as when the
    checkups' pseudonyms are not of the keys' kind). What is no longer needed is let go
    before the index's strings are made (the caller may hold nothing else). ``owned``: the
    caller holds no other reference to ``candidates``, so its pseudonym column may be dropped
    once their keys are made (the index's text is then made back from the keys). ``keys``:
    the candidates' pseudonyms as keys, row for row, in place of a pseudonym column
    (``enrolled`` then keys too)."""
    from data.pseudonym import PSEUDONYM_LENGTH

    if keys is None and candidates["pseudonym"].isna().any():  # pragma: no cover
        raise ValueError("checkups without a pseudonym")  # eligible_residents routes them
    # Arrow's allocator keeps the pages of what reading freed (≈ 0.2 GB at 10M residents, at
    # each of the three steps below) unless told to give them back.
    pool = pa.default_memory_pool()
    pool.release_unused()
    years = [fiscal_year, fiscal_year - 1] if config.fallback_previous_year else [fiscal_year]
    fy_all = candidates["fiscal_year"].astype("int16").to_numpy()
    rows = np.flatnonzero(np.isin(fy_all, years))
    from_keys = keys is not None
    if from_keys:
        keys = keys if len(rows) == len(keys) else keys[rows]
    elif isinstance(enrolled, np.ndarray):
        text = arrow_text(_rows(candidates["pseudonym"], rows))
        if not len(text):
            keys = np.zeros(0, dtype=np.uint64)
        elif len(text[0].as_py()) == PSEUDONYM_LENGTH:
            keys = hex_keys(text)
            from_keys = owned and keys is not None
        del text
        if from_keys:  # ≈ 20 bytes a checkup row, made back from the residents' keys below
            del candidates["pseudonym"]
    if keys is None:
        if enrolled is None or isinstance(enrolled, np.ndarray):
            enrolled = None
            enrolled = enrolled_again()
        keys, enrolled = _sort_keys(_rows(candidates["pseudonym"], rows), enrolled)
    pool.release_unused()
    last = _latest(keys, fy_all[rows], _rows(candidates["exam_date"], rows))
    pick, latest_keys = rows[last], keys[last]
    del keys, last, rows
    enrolled.sort()
    enrolled = enrolled[np.r_[True, enrolled[1:] != enrolled[:-1]]] if len(enrolled) else enrolled
    fy = fy_all[pick]
    del fy_all
    age_now = candidates["age"].iloc[pick].astype("float64").to_numpy() + (fiscal_year - fy)
    on_roll = isin_sorted(latest_keys, enrolled)
    in_age = (age_now >= MIN_AGE) & (age_now <= MAX_AGE)
    keep = on_roll & in_age
    without_recent = int((~isin_sorted(enrolled, latest_keys)).sum())
    counts = _counts(len(enrolled), without_recent, fiscal_year, fy, on_roll, in_age)
    del enrolled, on_roll, in_age
    chosen = pick[keep]
    sex = candidates["sex"].iloc[pick].astype("int64").to_numpy()[keep]
    exam_date = candidates["exam_date"].to_numpy()[chosen]
    if from_keys:
        del candidates, pick  # before the index's text is made
        who = hex_text(latest_keys[keep], PSEUDONYM_LENGTH)
    else:
        who = arrow_text(candidates["pseudonym"].iloc[chosen])
        del candidates, pick
    del latest_keys
    fy, age_now = fy[keep].astype("int16"), age_now[keep].astype("int16")
    del keep
    pool.release_unused()
    index = compact_index(who, fy, exam_date, age_now, sex.astype("int8"))
    return Eligibility(index, counts)  # in pseudonym order: the keys' order


def _counts(
    enrolled: int,
    without_recent: int,
    fiscal_year: int,
    fy: np.ndarray,
    on_roll: np.ndarray,
    in_age: np.ndarray,
) -> dict[str, int]:
    """Eligibility's counts from each resident's index year (``fy``), whether they are on the
    roll and of age (one entry per resident with a checkup)."""
    keep = on_roll & in_age
    return {
        "enrolled_on_scoring_date": int(enrolled),
        "with_checkup": int(len(fy)),
        "checkup_in_fy": int((fy == fiscal_year).sum()),
        "checkup_in_previous_fy": int((fy == fiscal_year - 1).sum()),
        "not_enrolled": int((~on_roll).sum()),
        "age_out_of_range": int((on_roll & ~in_age).sum()),
        "enrolled_without_recent_checkup": int(without_recent),
        "eligible": int(keep.sum()),
        "eligible_by_fallback": int((keep & (fy != fiscal_year)).sum()),
    }


#: The eligibility index's columns as the run holds them, one row per resident for the whole
#: run: pseudonyms as Arrow text (≈ 20 bytes a resident; a Python ``str`` each took ≈ 73) and
#: small integers. :func:`index_rows` gives a chunk of it the types the scoring code takes.
INDEX_DTYPES: dict[str, object] = {
    "pseudonym": pd.ArrowDtype(pa.string()),
    "index_fiscal_year": "int16",
    "exam_date": "datetime64[ns]",
    "age": "int16",
    "sex": "int8",
}
#: The types of :func:`index_rows` (and of the index before it was made compact).
_INDEX_ROW_INTS = ("index_fiscal_year", "age", "sex")


def compact_index(
    pseudonyms: pa.ChunkedArray,
    fiscal_year: np.ndarray,
    exam_date: np.ndarray,
    age: np.ndarray,
    sex: np.ndarray,
) -> pd.DataFrame:
    """The eligibility index (:data:`INDEX_DTYPES`) of its columns, row for row (not copied
    again where they already have the index's types: at 10M residents each copy of the text
    is ≈ 0.2 GB)."""
    return pd.DataFrame(
        {
            "pseudonym": pd.Series(pd.arrays.ArrowExtensionArray(pseudonyms), copy=False),
            "index_fiscal_year": np.asarray(fiscal_year).astype("int16", copy=False),
            "exam_date": np.asarray(exam_date, dtype="datetime64[ns]"),
            "age": np.asarray(age).astype("int16", copy=False),
            "sex": np.asarray(sex).astype("int8", copy=False),
        },
        copy=False,
    )


def index_rows(index: pd.DataFrame) -> pd.DataFrame:
    """Index rows (a chunk of the eligibility index) as the scoring code takes them: Python
    ``str`` pseudonyms and 64-bit integers, whatever compact types (:data:`INDEX_DTYPES`) or
    Spark's Arrow strings they came in. Made per chunk, never for the whole index."""
    cols: dict[str, np.ndarray] = {}
    text = index["pseudonym"].dtype if "pseudonym" in index else None
    if text is not None and text != np.dtype(object) and pd.api.types.is_string_dtype(text):
        cols["pseudonym"] = index["pseudonym"].to_numpy(dtype=object)
    for c in _INDEX_ROW_INTS:
        if c in index and index[c].dtype in (np.int8, np.int16, np.int32):
            cols[c] = index[c].to_numpy(dtype="int64")
    return index.assign(**cols) if cols else index


def _rows(column: pd.Series, rows: np.ndarray) -> pd.Series:
    """``column``'s rows ``rows`` (positions, or a mask); itself, not a copy, if that is all."""
    n = int(rows.sum()) if rows.dtype == bool else len(rows)
    return column if n == len(column) else column.iloc[rows]


def _eligible_residents_frames(
    candidates: pd.DataFrame,
    enrollment: pd.DataFrame,
    fiscal_year: int,
    scoring_date: pd.Timestamp,
    config: ScoringConfig,
) -> Eligibility:
    """:func:`eligible_residents` by sorting and de-duplicating the frames (pandas): the rules
    as first written, kept for rows without a pseudonym and as the reference of the tests."""
    years = [fiscal_year, fiscal_year - 1] if config.fallback_previous_year else [fiscal_year]
    c = candidates[candidates["fiscal_year"].astype("int64").isin(years)]
    c = c.sort_values(["pseudonym", "fiscal_year", "exam_date"], kind="stable")
    latest = c.drop_duplicates("pseudonym", keep="last")
    fy = latest["fiscal_year"].astype("int64").to_numpy()
    age_now = latest["age"].astype("float64").to_numpy() + (fiscal_year - fy)
    enrolled = enrolled_on(enrollment, scoring_date)
    on_roll = latest["pseudonym"].isin(enrolled).to_numpy()
    in_age = (age_now >= MIN_AGE) & (age_now <= MAX_AGE)
    keep = on_roll & in_age
    index = pd.DataFrame(
        {
            "pseudonym": latest["pseudonym"].astype("string").to_numpy()[keep],
            "index_fiscal_year": fy[keep],
            "exam_date": latest["exam_date"].to_numpy()[keep],
            "age": age_now[keep].astype("int64"),
            "sex": latest["sex"].astype("int64").to_numpy()[keep],
        }
    ).sort_values("pseudonym", ignore_index=True)
    without_recent = int((~enrolled.isin(latest["pseudonym"])).sum())
    counts = _counts(len(enrolled), without_recent, fiscal_year, fy, on_roll, in_age)
    text = pa.chunked_array([pa.array(index["pseudonym"].to_numpy(), type=pa.string())])
    return Eligibility(compact_index(text, *(index[c].to_numpy() for c in list(index)[1:])), counts)


# ------------------------------------------------------------------------------------------
# Features of the index checkup, what-if edits
# ------------------------------------------------------------------------------------------


def _history_to_index(history: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """Each resident's checkups up to and including the index checkup (nothing later)."""
    cut = history["pseudonym"].map(index.set_index("pseudonym")["exam_date"])
    return history[history["exam_date"] <= cut].reset_index(drop=True)


def _recent_history(history: pd.DataFrame, who: pd.DataFrame, window: int) -> pd.DataFrame:
    """The last ``window`` checkups of each resident of ``who`` up to their index checkup
    (:func:`_history_to_index`), sorted by pseudonym and exam date (stable), fresh index: the
    rows are picked on the two key columns and taken once, not filtered and sorted whole."""
    keys = history[["pseudonym", "exam_date"]].reset_index(drop=True)
    cut = keys["pseudonym"].map(who.set_index("pseudonym")["exam_date"])
    keys = keys[keys["exam_date"] <= cut].sort_values(["pseudonym", "exam_date"], kind="stable")
    back = keys.groupby("pseudonym", sort=False).cumcount(ascending=False).to_numpy()
    return history.iloc[keys.index.to_numpy()[back < window]].reset_index(drop=True)


def index_features(
    history: pd.DataFrame, index: pd.DataFrame, config: FeatureConfig
) -> pd.DataFrame:
    """As-of feature rows of the index checkups, in ``index`` order (one per resident)."""
    index = index_rows(index)
    feats = build_features(_history_to_index(history, index), config, last_only=True)
    return _index_feature_rows(feats, index)


def _index_feature_rows(feats: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """The feature rows of the index checkups (each resident's last), in ``index`` order."""
    last = feats.drop_duplicates("pseudonym", keep="last").set_index("pseudonym")
    missing = ~index["pseudonym"].isin(last.index)
    if missing.any():  # pragma: no cover - the index is built from the same checkups
        raise ValueError(f"{int(missing.sum())} index checkups have no feature row")
    return last.loc[index["pseudonym"].to_numpy()].reset_index()


def apply_scenario(checkups: pd.DataFrame, scenario: WhatIfScenario) -> pd.DataFrame:
    """The checkups with the scenario's edits; BMI recomputed where weight changed."""
    out = checkups.copy()
    for col, v in scenario.set.items():
        out[col] = pd.array(np.full(len(out), v), dtype=out[col].dtype)
    for col, v in scenario.add.items():
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64") + v
    for col, v in scenario.multiply.items():
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64") * v
    if "weight_kg" in scenario.columns and "height_cm" in out:
        bmi = pd.Series(derive_bmi(out["height_cm"], out["weight_kg"]), index=out.index)
        bmi = bmi.where(bmi.notna(), out["bmi"]).astype("float64").to_numpy()
        # BMI follows weight: a stored BMI that disagrees with height and weight (a soft flag
        # at ingest) must not rise when weight falls, or the scenario would raise the risk.
        old = pd.to_numeric(checkups["bmi"], errors="coerce").to_numpy(dtype="float64")
        w0 = pd.to_numeric(checkups["weight_kg"], errors="coerce").to_numpy(dtype="float64")
        dw = pd.to_numeric(out["weight_kg"], errors="coerce").to_numpy(dtype="float64") - w0
        bmi = np.where(dw < 0, np.fmin(bmi, old), np.where(dw > 0, np.fmax(bmi, old), bmi))
        out["bmi"] = bmi
    return out


def _moves_towards_lower_risk(base: pd.DataFrame, scenario: WhatIfScenario) -> np.ndarray:
    """Rows where every ``set`` item is answered and the new code is on its risk-lowering side
    (declared direction), and at least one item changes."""
    ok = np.ones(len(base), dtype=bool)
    changes = np.full(len(base), bool(scenario.add or scenario.multiply))
    for col, v in scenario.set.items():
        x = pd.to_numeric(base[col], errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            ok &= ~np.isnan(x) & ((v - x) * _DIRECTION[col] <= 0)
            changes |= x != v
    return ok & changes


@dataclass(frozen=True)
class ScenarioRows:
    """One scenario's rebuilt feature rows (:func:`scenario_features`).

    ``applies``: rows of the index it applies to; ``features``: theirs with it applied. Where a
    moved value falls between two recorded grid values (models.lab_response ``GRID``: HbA1c
    0.1 %), ``features`` holds the upper one and ``down`` (positions in ``features``, the weight
    of the lower one, the rows with the lower one) the rest: the risk is the mix
    ``(1 − w)·f(features) + w·f(down rows)`` (:func:`mix_risks`).
    """

    applies: np.ndarray
    features: pd.DataFrame
    down: tuple[np.ndarray, np.ndarray, pd.DataFrame] | None = None
    #: Moved labs the risk models do not read moved (no declared direction: eGFR), as the
    #: lab response moved them; a what-if read through the forecasts reads these moves.
    held: pd.DataFrame | None = None

    def __iter__(self):  # (applies, features), as the callers unpack it
        return iter((self.applies, self.features))


def mix_risks(rows: ScenarioRows, risk: pd.DataFrame, down_risk: pd.DataFrame) -> pd.DataFrame:
    """The scenario's risks: each row's mix of its upper and lower grid value's risks."""
    pos, w, _ = rows.down
    out = risk.copy()
    vals = out.to_numpy(dtype="float64", copy=True)
    vals[pos] = (1.0 - w)[:, None] * vals[pos] + w[:, None] * down_risk.to_numpy(dtype="float64")
    out.loc[:, :] = vals
    return out


def scenario_applies(base: pd.DataFrame, scenario: WhatIfScenario) -> np.ndarray:
    """Rows of ``base`` (index features) the scenario applies to: its ``when`` conditions
    hold, it moves the resident towards lower risk, and what it adds to is recorded."""
    applies = _moves_towards_lower_risk(base, scenario)
    for cond in scenario.when:
        applies &= cond.holds(base)
    for col in scenario.columns:  # nothing to change where the value is missing
        if col not in scenario.set:
            applies &= base[col].notna().to_numpy()
    return applies


def scenario_features(
    history: pd.DataFrame,
    index: pd.DataFrame,
    base: pd.DataFrame,
    scenario: WhatIfScenario,
    config: FeatureConfig,
    lab_response: pd.DataFrame | None = None,
    lab_scale: pd.DataFrame | None = None,
) -> ScenarioRows:
    """The rows of ``index`` the scenario applies to and their features with it applied.

    ``lab_response``: a models.lab_response table; where given, the edited checkup's body size
    and laboratory values move with the levers (:func:`models.lab_response.lab_shift`; a lab
    on its normal score through ``lab_scale``), and a move between two recorded HbA1c values
    is read at both (:class:`ScenarioRows`).

    Only the last ``config.lookback`` checkups can move a feature (changes, slopes and history
    levels look back at most that far), so the rebuilt history is cut there; ``n_prior_checkups``
    and, for an item the checkup lacks, ``<item>_recent`` (its latest reading, perhaps older)
    are copied from the unchanged features.
    """
    index = index_rows(index)
    applies = scenario_applies(base, scenario)
    who = index.loc[applies]
    if who.empty:
        return ScenarioRows(applies, base.iloc[:0])
    hist = _recent_history(history, who, config.lookback)
    last = np.r_[hist["pseudonym"].to_numpy()[1:] != hist["pseudonym"].to_numpy()[:-1], True]
    edited = apply_scenario(hist.loc[last], scenario)
    split = None
    if lab_response is not None:
        edited = lab_shift(hist.loc[last], edited, lab_response, lab_scale)
        col, step = GRID
        if col in edited:
            before = pd.to_numeric(hist.loc[last, col], errors="coerce").to_numpy("float64")
            moved = pd.to_numeric(edited[col], errors="coerce").to_numpy("float64")
            up, lower, w = grid_split(moved, step, before)
            edited[col] = pd.array(np.where(w > 0, up, moved), dtype=edited[col].dtype)
            split = (col, lower, w)
    rows = np.flatnonzero(applies)
    feats, held = _scenario_feature_rows(hist, last, edited, who, base, rows, config,
                                         lab_response)  # fmt: skip
    down = None
    if split is not None and (split[2] > 0).any():
        col, lower, w = split
        pos = np.flatnonzero(w > 0)
        low = edited.iloc[pos].copy()
        low[col] = pd.array(lower[pos], dtype=low[col].dtype)
        keep = hist["pseudonym"].isin(low["pseudonym"]).to_numpy()
        low_feats, _ = _scenario_feature_rows(hist.loc[keep], last[keep], low,
                                              index.iloc[rows[pos]], base, rows[pos], config,
                                              lab_response)  # fmt: skip
        down = (pos, w[pos], low_feats)
    return ScenarioRows(applies, feats, down, held)


def _scenario_feature_rows(
    hist: pd.DataFrame,
    last: np.ndarray,
    edited: pd.DataFrame,
    who: pd.DataFrame,
    base: pd.DataFrame,
    rows: np.ndarray,
    config: FeatureConfig,
    lab_response: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Feature rows of ``who`` (rows ``rows`` of ``base``) from their recent history ``hist``
    whose last checkups (``last``) are replaced by ``edited``; and the moved values of the labs
    those rows hold at their unchanged values (:attr:`ScenarioRows.held`)."""
    hist = pd.concat([hist.loc[~last], edited]).sort_index()
    # hist holds nothing after the index checkups: build_features is index_features here
    built = build_features(hist, replace(config, validate=False), last_only=True)
    feats = _index_feature_rows(built, who)
    unchanged = base.iloc[rows]
    feats["n_prior_checkups"] = unchanged["n_prior_checkups"].to_numpy()
    for name in RECENT_ITEMS:
        # an item this checkup lacks keeps its latest reading, which may predate the cut history
        now = as_float(feats[name])
        feats[f"{name}_recent"] = np.where(
            np.isnan(now), as_float(unchanged[f"{name}_recent"]), now
        )
    if lab_response is not None:
        # A moved lab also moves its undeclared history features (change since last year…),
        # in which the models are not monotone: those keep their unchanged values (the edits
        # of the levers alone move declared features only), so the what-if stays monotone.
        fixed = [c for c in feats.columns if c in base.columns and not _FEATURE_DIRECTION.get(c)]
        held = feats[[c for c in fixed if c in LABS]].copy()
        feats[fixed] = unchanged[fixed].set_axis(feats.index)
        for name, source, how in HISTORY_LEVELS:
            if how == "mean" and _FEATURE_DIRECTION.get(name):
                # the lever moves the resident's level, for which the mean of three stands: by
                # the whole move, not a third of it (docs/models.md §The lipids' mean of three)
                moved = as_float(feats[source]) - as_float(unchanged[source])
                feats[name] = as_float(unchanged[name]) + np.nan_to_num(moved)
        return feats, held
    return feats, None


# ------------------------------------------------------------------------------------------
# Scoring and explanations
# ------------------------------------------------------------------------------------------


def scenario_risks(
    engine,
    history: pd.DataFrame,
    index: pd.DataFrame,
    base: pd.DataFrame,
    scenarios: tuple[WhatIfScenario, ...],
    feature_config: FeatureConfig,
    lab_response: bool = True,
    submit=None,
    effects: pd.DataFrame | None = None,
    values: tuple[str, ...] = (),
):
    """Per scenario: ``(scenario, rows of index it applies to, their risks with it applied)``;
    the risks (:meth:`predict_proba` frame, or a :class:`scoring.whatif_effect.PooledChange`
    to apply to the rows' risks: :func:`scenario_outcome_risk`) are None where it applies to
    nobody. Only the rows it applies to are rebuilt and scored.
    ``lab_response``: move laboratory values with the levers where the engine carries a
    lab-response table (``engine.lab_response``; engines without one: levers only).
    ``submit``: a models.train.background submitter (default: one of its own); a scenario is
    predicted there while the next one's features are built.
    ``effects``: the engine's pooled what-if table (:func:`whatif_effects`); a scenario it holds
    is not re-scored, its pooled change is applied.
    ``values``: items whose moved value (``value_<item>``, over a moved HbA1c's grid mix) each
    re-scored scenario's frame also carries."""
    index = index_rows(index)
    if submit is None:
        with background() as own:
            yield from scenario_risks(engine, history, index, base, scenarios, feature_config,
                                      lab_response, own, effects, values)  # fmt: skip
        return
    table = getattr(engine, "lab_response", None) if lab_response else None
    scales = getattr(engine, "lab_scale", None)
    pending = None
    for sc in scenarios:
        pooled = None
        if effects is not None:
            rows = np.flatnonzero(scenario_applies(base, sc))
            pooled = pooled_change(effects, sc, lab_response, engine.outcomes, base.iloc[rows])
        if pooled is not None:
            job = Future()
            job.set_result(pooled if len(rows) else None)
            if pending is not None:
                yield pending[0], pending[1], pending[2] and pending[2].result()
            pending = (sc, rows, job)
            continue
        built = scenario_features(history, index, base, sc, feature_config, table, scales)
        rows = np.flatnonzero(built.applies)
        X = to_matrix(built.features, engine.feature_names) if len(rows) else None
        job = None
        if X is not None:
            before = to_matrix(base.iloc[rows], engine.feature_names)
            job = submit(_scenario_predict, engine, built, X, values, before)
        del built, X
        if pending is not None:  # at most two scenarios' matrices held at once
            yield pending[0], pending[1], pending[2] and pending[2].result()
        pending = (sc, rows, job)
    if pending is not None:
        yield pending[0], pending[1], pending[2] and pending[2].result()


def whatif_effects(engine, config: ScoringConfig) -> pd.DataFrame | None:
    """The engine's pooled what-if table where ``config`` asks for pooled effects."""
    return getattr(engine, "whatif_effect", None) if config.scenario_effect == "pooled" else None


def scenario_outcome_risk(p, outcome: str, now: np.ndarray) -> np.ndarray:
    """A scenario's risks of ``outcome`` on its rows (``p`` from :func:`scenario_risks`;
    ``now``: the rows' risks without it)."""
    if isinstance(p, PooledChange):
        return p.risks(outcome, now)
    return p[f"risk_{outcome}"].to_numpy()


def _scenario_predict(
    engine,
    built: ScenarioRows,
    X: np.ndarray,
    values: tuple[str, ...] = (),
    before: np.ndarray | None = None,
) -> pd.DataFrame:
    """The scenario's risks, mixed over the grid values of a moved HbA1c; and ``value_<item>``,
    the moved value of each of ``values`` (mixed the same way). ``before``: the same rows
    without the scenario (a forecast stack reads the scenario as a move of their forecasts:
    models.train.TrainedEngine.predict_outcome ``moved_from``)."""
    risk = engine.predict_proba(X, moved_from=before)
    if built.down is not None:
        pos = built.down[0]
        low = engine.predict_proba(to_matrix(built.down[2], engine.feature_names),
                                   moved_from=None if before is None else before[pos])  # fmt: skip
        risk = mix_risks(built, risk, low)
    for name in values:
        frame = built.held if built.held is not None and name in built.held else built.features
        v = pd.to_numeric(frame[name], errors="coerce").to_numpy("float64", copy=True)
        if frame is built.features and built.down is not None and name in built.down[2]:
            pos, w, low_rows = built.down
            lower = pd.to_numeric(low_rows[name], errors="coerce").to_numpy("float64")
            v[pos] = (1.0 - w) * v[pos] + w * lower
        risk[f"value_{name}"] = v
    return risk


def _risks(engine, X: np.ndarray, forecast_job: Future | None) -> pd.DataFrame:
    """The rows' risks, a forecast stack reading the forecasts of ``forecast_job`` (the job
    runs first, on another thread, or has already run) instead of predicting them again."""
    if forecast_job is None or not engine.stack_items():
        return engine.predict_proba(X)  # no stack: no need to wait for the forecasts
    return engine.predict_proba(X, forecast=forecast_job.result())


def whatif_direction(
    engine,
    history: pd.DataFrame,
    index: pd.DataFrame,
    config: ScoringConfig,
    feature_config: FeatureConfig,
    tolerance: float = 0.001,
) -> pd.DataFrame:
    """Direction check of the what-if scenarios, before any filtering: per scenario × outcome,
    residents it applies to (``n``), the share whose risk rises (``raised``), rises by more
    than ``tolerance`` (``raised_over_tolerance``), falls (``lowered``) and the largest rise."""
    index = index_rows(index)
    base = index_features(history, index, feature_config)
    risk = engine.predict_proba(to_matrix(base, engine.feature_names))
    rows_out = []
    for sc, rows, p in scenario_risks(engine, history, index, base, config.scenarios,
                                      feature_config, config.scenario_lab_response,
                                      effects=whatif_effects(engine, config)):  # fmt: skip
        for o in engine.outcomes:
            now = risk[f"risk_{o}"].to_numpy()[rows]
            d = scenario_outcome_risk(p, o, now) - now if p is not None else np.zeros(0)
            n = len(d)
            rows_out.append(
                {"scenario": sc.key, "outcome": o, "n": n,
                 "raised": float((d > 0).mean()) if n else np.nan,
                 "raised_over_tolerance": float((d > tolerance).mean()) if n else np.nan,
                 "lowered": float((d < 0).mean()) if n else np.nan,
                 "max_rise": float(max(d.max(), 0.0)) if n else np.nan}
            )  # fmt: skip
    return pd.DataFrame(rows_out)


def score_chunk(
    engine,
    history: pd.DataFrame,
    index: pd.DataFrame,
    config: ScoringConfig,
    feature_config: FeatureConfig,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Scores of one chunk of residents (contract columns minus stamps) and its feature matrix.

    ``engine``: a :class:`models.train.TrainedEngine`. ``history``: the chunk's stored checkups.
    """
    index = index_rows(index)
    base = index_features(history, index, feature_config)
    X = to_matrix(base, engine.feature_names)
    cols: dict[str, object] = {c: index[c].to_numpy() for c in index.columns}
    cols.update(
        {c: base[c].to_numpy(dtype="float64", na_value=np.nan) for c in INDEX_VALUE_COLUMNS}
    )
    with background() as submit:  # predicted while the what-if features are built
        forecast_job = submit(engine.predict_values, X) if engine.forecast_items else None
        risk_job = submit(_risks, engine, X, forecast_job)
        scored = list(scenario_risks(engine, history, index, base, config.scenarios,
                                     feature_config, config.scenario_lab_response, submit,
                                     whatif_effects(engine, config)))  # fmt: skip
        risk = risk_job.result()
        cols.update({c: risk[c].to_numpy() for c in risk.columns})
        if forecast_job is not None:
            forecast = forecast_job.result()
            cols.update({c: forecast[c].to_numpy() for c in forecast.columns})
    after = {o: risk[f"risk_{o}"].to_numpy(copy=True) for o in engine.outcomes}
    best = {o: np.full(len(index), None, dtype=object) for o in engine.outcomes}
    for sc, rows, p in scored:
        for o in engine.outcomes:
            v = np.full(len(index), np.nan)
            if p is not None:
                now = risk[f"risk_{o}"].to_numpy()[rows]
                new = scenario_outcome_risk(p, o, now)
                # Offered only where it lowers the risk (never shown as advice otherwise).
                v[rows] = np.where(now - new >= max(config.scenario_min_drop, 1e-12), new, np.nan)
                better = v[rows] < after[o][rows]
                after[o][rows[better]] = v[rows][better]
                best[o][rows[better]] = sc.key
            cols[f"risk_{o}__{sc.key}"] = v
    for o in engine.outcomes:
        cols[f"risk_after_{o}"] = after[o]
        cols[f"best_scenario_{o}"] = pd.array(best[o], dtype="string")
    out = pd.DataFrame(cols)
    return out, X


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def explain_chunk(
    engine, history: pd.DataFrame, index: pd.DataFrame, config: FeatureConfig, top: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`explain` of one chunk of residents: their as-of feature rows built from their
    stored checkups (``history``), in ``index`` order."""
    return explain(engine, index_features(history, index_rows(index), config), top=top)


#: Rows from which :func:`_contributions_and_risks` cuts an outcome's rows in blocks.
SHAP_BLOCK_ROWS = 500


def _contributions_and_risks(engine, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(SHAP contributions, risk) of every outcome on the prediction workers. Each outcome's
    rows go in as many blocks as there are workers: seven outcomes of unequal size on two
    workers left one idle for the last; a row's values do not depend on its block. The jobs
    go block by block (every outcome's first block, then every second one): a booster runs
    one call at a time (models.train.booster_predict), so an outcome's two blocks side by side
    ran one after the other, and the explanations' SHAP on one core."""
    blocks = max(1, min(models.train.PREDICT_THREADS, len(X) // SHAP_BLOCK_ROWS))
    cuts = np.linspace(0, len(X), blocks + 1).astype(int)
    spans = list(zip(cuts[:-1], cuts[1:], strict=True))
    jobs = [(o, a, b) for a, b in spans for o in engine.outcomes]
    done = parallel_map(
        lambda j: (
            engine.contributions(X[j[1] : j[2]], j[0]).to_numpy(),
            engine.predict_outcome(X[j[1] : j[2]], j[0]),
        ),  # fmt: skip
        jobs,
    )
    n = len(engine.outcomes)
    out = []
    for k in range(n):
        mine = done[k::n]  # outcome k's blocks, in row order
        out.append((np.concatenate([c for c, _ in mine]), np.concatenate([r for _, r in mine])))
    return out


def explain(
    engine, features: pd.DataFrame, top: int = 10, factors: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Explanation rows by clinical item (the explanations contract) and the top modifiable
    factors per outcome.

    ``features``: as-of feature rows (with ``pseudonym``). The engine's contributions
    (log-odds: native SHAP for LightGBM) are summed per clinical item of
    features.declarations ``ITEMS`` (one matrix product, models.explain); per resident ×
    outcome the rows are the bias, the ``top`` items by |contribution|, the other items
    together and the calibration step (logit of the calibrated risk − the raw score), so they
    add up to the logit of ``risk_<outcome>``. A factor is an item with a feature declared
    modifiable whose contribution raises the risk and whose :data:`FACTOR_RULES` hold for the
    resident (something to change), named by its first modifiable feature (``weight_kg`` for
    adiposity, ``q_smoking``, ``q_alcohol_freq`` …); strongest first, at most ``factors``.
    Returns (explanations, factors table: pseudonym, outcome, factor_1…factor_n).
    """
    names = list(engine.feature_names)
    X = to_matrix(features, names)
    pid = features["pseudonym"].astype("string").to_numpy()
    M, keys = item_matrix(names)
    n, G = len(features), len(keys)
    k = min(top, G)
    shown = [item_values(features, key) for key in keys]
    values = np.column_stack([v for v, _ in shown]) if G else np.zeros((n, 0))
    texts = np.column_stack([t for _, t in shown]) if G else np.zeros((n, 0), dtype=object)
    feat_mod = np.array([_MODIFIABLE.get(f, False) for f in names])
    item_mod = (feat_mod @ M) > 0
    # the lever a letter names: the item's first modifiable feature (catalogue topics)
    lever = np.array(
        [next((f for f in item(key).members if _MODIFIABLE.get(f)), key) for key in keys],
        dtype=object,
    )
    can_advise = (advisable(features, names).astype("float64") @ M) > 0
    frames, factor_frames = [], []
    per_outcome = _contributions_and_risks(engine, X)
    for o, (contrib, risk) in zip(engine.outcomes, per_outcome, strict=True):
        g = group_contributions(contrib, names)
        phi, bias = g.values, g.bias
        calibration = _logit(risk) - g.raw
        order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :k]
        picked = np.take_along_axis(phi, order, axis=1)
        other = phi.sum(axis=1) - picked.sum(axis=1)
        col = lambda first, mid, *rest: np.column_stack([first, mid, *rest]).ravel()  # noqa: E731
        none = np.full(n, None, dtype=object)
        frames.append(
            pd.DataFrame(
                {
                    "pseudonym": pd.array(np.repeat(pid, k + 3), dtype="string"),
                    "outcome": o,
                    "rank": np.tile(np.arange(k + 3), n),
                    "item": col(np.full(n, "bias", dtype=object),
                                np.asarray(keys, dtype=object)[order],
                                np.full(n, "other", dtype=object),
                                np.full(n, "calibration", dtype=object)),
                    "value": col(np.full(n, np.nan), np.take_along_axis(values, order, axis=1),
                                 np.full(n, np.nan), np.full(n, np.nan)),
                    "value_text": col(none, np.take_along_axis(texts, order, axis=1), none,
                                      none),
                    "contribution": col(bias, picked, other, calibration),
                    "modifiable": col(np.zeros(n, bool), item_mod[order], np.zeros(n, bool),
                                      np.zeros(n, bool)),
                }
            )
        )  # fmt: skip
        raising = np.where(can_advise & item_mod & (phi > 0), phi, -np.inf)
        top_f = np.argsort(-raising, axis=1, kind="stable")[:, :factors]
        ok = np.take_along_axis(raising, top_f, axis=1) > -np.inf
        fnames = np.where(ok, lever[top_f], None)
        factor_frames.append(
            pd.DataFrame(
                {
                    "pseudonym": pid,
                    "outcome": o,
                    **{
                        f"factor_{i + 1}": pd.array(fnames[:, i], dtype="string")
                        for i in range(fnames.shape[1])
                    },
                }
            )
        )
    explanations = pd.concat(frames, ignore_index=True)
    for c in ("outcome", "item", "value_text"):
        explanations[c] = explanations[c].astype("string")
    return explanations, pd.concat(factor_frames, ignore_index=True)
