"""Selection (送付対象の選定): which resident gets which letter, with a reason for everyone.

Pure functions on the scores table. Rules, in order, per resident (one letter at most):

1. ``NOT_ENROLLED`` / ``OPTED_OUT`` / ``NO_CONTACT`` / ``CONTACT_INVALID`` /
   ``RECENTLY_LETTERED`` — never lettered. ``NO_CONTACT``: no contacts row; ``CONTACT_INVALID``:
   a name, postal code or address a letter cannot be addressed with (the letter contract,
   scoring.letters.schema), the fields at fault in ``reason_detail`` (codes such as
   ``address:too_long``, never values). Both are checked only when letters are written, and
   before the ranking, so such a resident takes no letter or control place.
2. For each outcome: on medication for it → no letter about it (the doctor is already involved);
   met by this year's values (at or over a 受診勧奨判定値) → ``see_doctor`` candidate; not met
   and predicted risk ≥ ``min_risk`` → ``advice`` candidate.
3. A ``see_doctor`` candidate always wins over advice (a referral-level value overrides the
   prediction message); among several, the outcome order of data.columns.OUTCOMES decides.
   Among advice candidates the highest risk (or expected benefit) outcome is the letter's topic.
   An advice candidate with any value at its 受診勧奨判定値 or blood pressure ≥160/100
   (data.judgements.referral_values: e.g. high blood pressure while on its medication) gets a
   ``see_doctor`` letter on the same topic instead, the items in ``reason_detail``
   (``referral:sbp``, ``referral:bp_urgent``). This is the only place a letter type is
   decided: the letter renderer refuses an advice request with a referral-level value.
4. Advice candidates are ranked; the top ``budget.advice / (1 − control_rate)`` form the study
   population, of which a seeded, stratified (outcome × sex × age band) random ``control_rate``
   is held back (``CONTROL_ARM``: scored, recorded, not sent) so next year's effect can be
   measured; the rest are ``SENT_ADVICE``. Below the cut: ``OVER_BUDGET``.
5. ``see_doctor`` letters are sent (``SENT_SEE_DOCTOR``) unless over their own budget; they have
   no control arm unless ``control_for_see_doctor``.
6. A ``see_doctor`` letter that rests on a value outside its item's plausible range
   (data.validate ``outside_plausible_range``: a γ-GT of 1500, an SBP of 235), i.e. one the same
   rules would not call for with that value unknown, is held: no letter (``VERIFY_VALUE``,
   値の確認待ち, unless an exclusion came first), and the items go to staff to verify
   (``verify:ggt`` in ``reason_detail``, after any contact codes). Such a value is more often
   keyed wrong than real, and when real it calls for a call from a public health nurse, not a
   letter (``verify_implausible``, on by default).

Randomisation hashes (seed, pseudonym), so it does not depend on row order: same scores, same
config → the same selection, byte for byte.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from data.columns import AGE_BAND_EDGES, OUTCOMES
from data.judgements import OUTCOME_INPUTS, outcomes_met, referral_values
from data.outcomes import OUTCOME_DECLARATIONS
from data.validate import outside_plausible_range
from scoring.keys import PseudonymIndex, arrow_text, positions

DEFAULT_CONFIG = Path(__file__).with_name("selection.toml")

#: Medication answers that put an outcome in a doctor's hands (質問票 1-3; data.outcomes).
MEDICATION: dict[str, tuple[str, ...]] = {o.name: o.medication for o in OUTCOME_DECLARATIONS}
_MEDICATION_COLUMNS = tuple(dict.fromkeys(c for cols in MEDICATION.values() for c in cols))
#: Columns of the scores table :func:`select` reads besides ``risk_*``: a missing one is an
#: error, never "not met".
SELECTION_INPUTS: tuple[str, ...] = tuple(dict.fromkeys(("pseudonym", "age", *OUTCOME_INPUTS)))
REASONS = (
    "SENT_SEE_DOCTOR",
    "SENT_ADVICE",
    "CONTROL_ARM",
    "OVER_BUDGET",
    "VERIFY_VALUE",
    "BELOW_RISK_THRESHOLD",
    "ON_MEDICATION",
    "RECENTLY_LETTERED",
    "OPTED_OUT",
    "NOT_ENROLLED",
    "NO_CONTACT",
    "CONTACT_INVALID",
)
AGE_BANDS = AGE_BAND_EDGES  # the strata of the control arm


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    advice: int = Field(1000, ge=0)
    see_doctor: int | None = Field(None, ge=0)


class SelectionConfig(BaseModel):
    """Programme rules (validated); loaded from the division's TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = 0
    control_rate: float = Field(0.10, ge=0.0, lt=1.0)
    control_for_see_doctor: bool = False
    lettered_within_months: int = Field(12, ge=0)
    ranking: Literal["risk", "expected_benefit"] = "risk"
    #: Hold a see-a-doctor letter that only a value outside its plausible range calls for.
    verify_implausible: bool = True
    budget: Budget = Budget()
    min_risk: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0.1))

    @field_validator("min_risk")
    @classmethod
    def _known_outcomes(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}; known: {list(OUTCOMES)}")
        missing = [o for o in OUTCOMES if o not in v]
        if missing:  # an outcome without a threshold would silently never get advice
            raise ValueError(
                f"no advice threshold for {missing}: add e.g. `{missing[0]} = 0.10` under [min_risk]"
            )
        if any(not 0 <= x <= 1 for x in v.values()):
            raise ValueError("min_risk values must lie in [0, 1]")
        return v


def load_config(path: Path | None = None) -> SelectionConfig:
    """Read and validate a selection TOML (default: the shipped ``selection.toml``)."""
    path = path or DEFAULT_CONFIG
    with path.open("rb") as f:
        return SelectionConfig.model_validate(tomllib.load(f))


def _uniform(pseudonyms: pd.Series, seed: int) -> np.ndarray:
    """A reproducible U(0,1) per pseudonym from a hash of (seed, pseudonym)."""
    salt = str(seed).encode()
    codes, uniques = pd.factorize(pseudonyms)
    u = np.array(
        [int.from_bytes(hashlib.sha256(salt + p.encode()).digest()[:8], "big") for p in uniques],
        dtype=np.float64,
    )
    return (u / 2.0**64)[codes]


def _control_draw(frame: pd.DataFrame, rate: float, seed: int) -> np.ndarray:
    """Stratified control draw: round(rate × n) in all, spread over strata by largest remainder.

    Each stratum gets ⌊rate·n_s⌋ controls plus one more for the strata with the largest
    fractional parts (ties by a hash of the stratum), so small strata (a small budget split over
    outcome × sex × age band) still yield a control arm of the right size. Within a stratum the
    first ones in hash order of (seed, pseudonym) are drawn.
    """
    if rate == 0 or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    band = pd.cut(frame["age"], AGE_BANDS, right=False, labels=False)
    strata = frame["outcome"].astype(str) + "|" + frame["sex"].astype(str) + "|" + band.astype(str)
    order = pd.DataFrame({"s": strata.to_numpy(), "u": _uniform(frame["pseudonym"], seed)})
    rank = order.groupby("s")["u"].rank(method="first").to_numpy()
    sizes = order.groupby("s").size()
    quota = rate * sizes
    base = np.floor(quota + 1e-9)
    extra = int(np.floor(rate * len(frame) + 0.5) - base.sum())
    if extra > 0:
        tie = _uniform(pd.Series(sizes.index, dtype=object), seed + 1)
        frac = pd.DataFrame({"f": (quota - base).to_numpy(), "t": tie}, index=sizes.index)
        winners = frac.sort_values(["f", "t"], ascending=[False, True]).index[:extra]
        base.loc[winners] += 1
    return rank <= order["s"].map(base).to_numpy()


def select(
    scores: pd.DataFrame,
    config: SelectionConfig,
    *,
    enrolled: pd.Series | None = None,
    opted_out: pd.Series | None = None,
    last_lettered: pd.Series | None = None,
    scoring_date: pd.Timestamp | None = None,
    contact_problems: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per scored resident: ``letter_type``, ``outcome``, ``arm``, ``reason``
    (``reason_detail``), rank.

    ``scores`` holds pseudonym, age, sex, ``risk_<outcome>`` (and optionally
    ``risk_after_<outcome>`` for expected benefit) and this year's checkup values + medication
    answers. ``enrolled``/``opted_out`` are booleans and ``last_lettered`` dates, each indexed
    by pseudonym (missing → enrolled, not opted out, never lettered). ``contact_problems``
    (when letters are written) holds, per pseudonym with a contacts row, ``""`` or the contact
    fields at fault; a resident missing from it has no contact (``NO_CONTACT``).

    Steps: which letter each resident's values call for (:func:`decide`, row by row) → who
    cannot be written to (:func:`_exclusions`) → budget and control arm (:func:`_allocate`).
    ``select(scores)`` is ``select_decided(decide(scores))``; the annual run calls the two
    halves itself, :func:`decide` chunk by chunk as the scores are written, so the whole scores
    table is never held (the result is the same: :func:`decide` is row-wise).
    """
    return select_decided(
        decide(scores, config),
        config,
        enrolled=enrolled,
        opted_out=opted_out,
        last_lettered=last_lettered,
        scoring_date=scoring_date,
        contact_problems=contact_problems,
    )


#: Columns of :func:`decide`'s table.
DECIDED_COLUMNS = (
    "pseudonym", "age", "sex", "letter", "outcome", "priority", "upgraded", "referral_detail",
    "on_medication", "verify",
)  # fmt: skip
_LETTERS = ("see_doctor", "advice")


def decide(scores: pd.DataFrame, config: SelectionConfig) -> pd.DataFrame:
    """The row-wise half of :func:`select`: per resident, what :func:`letter_decisions` found
    and what the global half needs (pseudonym, age, sex), small (about 40 bytes a resident;
    pseudonyms as Arrow text, :func:`_compact`).

    Row by row, so the decisions of a table's chunks, concatenated, are those of the table.
    Letter and topic are kept as codes, the referral detail only where the letter was upgraded
    or held for a value to verify (the only rows it is read for); :func:`select_decided` turns
    them back into the same values.
    """
    absent = [c for c in SELECTION_INPUTS if c not in scores.columns]
    if absent:
        raise ValueError(f"selection needs the scores columns {absent}")
    # A chunk of scores comes with the default index: copying it (and consolidating its
    # ≈ 160 columns) only to renumber took most of this function's time.
    s = scores if scores.index.equals(pd.RangeIndex(len(scores))) else scores.reset_index(drop=True)
    d = letter_decisions(s, config)
    letter, outcome = (_codes(d.letter, _LETTERS), _codes(d.outcome, OUTCOMES))
    return pd.DataFrame(
        {
            "pseudonym": _compact(s["pseudonym"]),
            "age": _small(s["age"].to_numpy()),
            "sex": _small(s["sex"].to_numpy()),
            "letter": letter,
            "outcome": outcome,
            "priority": d.priority,
            "upgraded": d.upgraded,
            "referral_detail": np.where(d.upgraded | d.verify, d.referral_detail, None),
            "on_medication": d.on_medication,
            "verify": d.verify,
        }
    )


def _compact(pseudonyms: pd.Series) -> pd.Series:
    """Pseudonyms as a column of Arrow text: ≈ 20 bytes a resident, not a Python ``str`` each
    (≈ 73): the selection holds one for every scored resident."""
    return pd.Series(pd.arrays.ArrowExtensionArray(arrow_text(pseudonyms)), index=pseudonyms.index)


def _small(values: np.ndarray) -> np.ndarray:
    """64-bit integers (age, sex) as 16-bit where they fit (the control arm's strata read
    them as they are); anything else as it is."""
    if values.dtype == np.int64 and len(values):
        if np.iinfo(np.int16).min <= values.min() and values.max() <= np.iinfo(np.int16).max:
            return values.astype(np.int16)
    return values


def _codes(values: np.ndarray, categories: tuple[str, ...]) -> pd.Categorical:
    """``values`` (strings of ``categories`` or None) as codes: nothing else may be lost."""
    cat = pd.Categorical(values, categories=categories)
    if int((cat.codes == -1).sum()) != int(pd.isna(values).sum()):  # pragma: no cover
        raise ValueError(f"values outside {categories}")
    return cat


def select_decided(
    decided: pd.DataFrame,
    config: SelectionConfig,
    *,
    enrolled: pd.Series | None = None,
    opted_out: pd.Series | None = None,
    last_lettered: pd.Series | None = None,
    scoring_date: pd.Timestamp | None = None,
    contact_problems: pd.Series | None = None,
    categories: bool = False,
) -> pd.DataFrame:
    """The global half of :func:`select` on :func:`decide`'s table (one or several chunks'
    concatenated): exclusions, ranking, budget and the control arm over every resident.

    With ``categories``, the text columns of a few values (``letter_type``, ``outcome``,
    ``arm``, ``reason_detail``) come as ``.astype("category")`` would make them (the annual
    run holds them so: kenshin.annual.held), never as text: a byte a resident."""
    # Columns by position, no copy of the table (≈ 0.6 GB at 10M residents).
    pid = _compact(decided["pseudonym"]).reset_index(drop=True)
    reasons = _exclusions(
        pid, config, enrolled, opted_out, last_lettered, scoring_date, contact_problems
    )
    # decide's codes as they are: no object per resident, nor a temporary to compare them.
    letter, outcome = _Coded.of(decided["letter"]), _Coded.of(decided["outcome"])
    verify = decided["verify"].to_numpy(dtype=bool)
    reasons.flag(verify & (letter == None), "VERIFY_VALUE")  # noqa: E711
    reasons.flag((letter == None) & decided["on_medication"].to_numpy(), "ON_MEDICATION")  # noqa: E711
    reasons.flag(letter == None, "BELOW_RISK_THRESHOLD")  # noqa: E711
    out = pd.DataFrame({"pseudonym": pid, "priority": decided["priority"].to_numpy()})
    strata = (decided["age"].to_numpy(), decided["sex"].to_numpy(), outcome)
    _allocate(out, letter, reasons, config, strata, categories=categories)
    upgraded = decided["upgraded"].to_numpy()
    referral = decided["referral_detail"].to_numpy()
    explain = (upgraded | verify) & (reasons.detail == None)  # noqa: E711
    reasons.detail[explain] = referral[explain]
    # contact problems keep theirs, and the items to verify (a held row's referral_detail
    # holds only those) follow them, never lost
    also = verify & ~explain
    if also.any():
        own = reasons.detail.objects()[also]
        reasons.detail[also] = np.array(
            [f"{a},{b}" for a, b in zip(own, referral[also], strict=True)]
        )
    # The output's columns made once, at the end, a column at a time.
    out.insert(1, "letter_type", letter.column(categories))
    out.insert(2, "outcome", outcome.column(categories))
    out["reason"] = pd.Categorical.from_codes(reasons.reason.codes, categories=REASONS)
    out["reason_detail"] = reasons.detail.column(categories)
    out["sent"] = out["reason"].isin(["SENT_ADVICE", "SENT_SEE_DOCTOR"])
    return out


def _text(values: np.ndarray) -> pd.arrays.StringArray:
    """``pd.array(values, dtype="string")`` of an object array nothing else reads: the array
    itself when it holds only text and missing values (no copy: 8 bytes a resident each)."""
    try:
        return pd.arrays.StringArray(values)
    except ValueError:
        return pd.array(values, dtype="string")


class _Coded:
    """Per resident one of a few values or ``None``, as its position in ``values`` (-1:
    ``None``): a byte a resident where an object array takes a pointer (≈ 80 MB at 10M
    residents), compared without an object temporary. Reads like that object array (``==``,
    assignment by mask or positions, iteration) and gives the output's column once
    (:meth:`column`)."""

    def __init__(self, codes: np.ndarray, values: Sequence[str]) -> None:
        self.codes, self.values = codes, list(values)

    @classmethod
    def empty(cls, n: int, values: Sequence[str] = ()) -> _Coded:
        return cls(np.full(n, -1, dtype=np.int8), values)

    @classmethod
    def of(cls, column: pd.Series) -> _Coded:
        """A categorical column's codes (no copy) and categories."""
        return cls(column.array.codes, column.array.categories)

    def __len__(self) -> int:
        return len(self.codes)

    def __eq__(self, value: object) -> np.ndarray:  # type: ignore[override]
        if value is None:
            return self.codes < 0
        if value not in self.values:
            return np.zeros(len(self.codes), dtype=bool)
        return self.codes == self.values.index(value)

    __hash__ = None  # type: ignore[assignment]

    def __setitem__(self, where: np.ndarray, value: str | None | np.ndarray) -> None:
        if value is None or isinstance(value, str):
            self.codes[where] = self._code(value)
            return
        # An array of values (a few residents'): coded by its distinct values.
        got, distinct = pd.factorize(np.asarray(value, dtype=object))
        self.codes[where] = np.array([*map(self._code, distinct), -1])[got]  # -1 picks None

    def _code(self, value: str | None) -> int:
        if value is None:
            return -1
        if value not in self.values:
            self.values.append(value)
            if len(self.values) > np.iinfo(self.codes.dtype).max:
                self.codes = self.codes.astype(np.int32)
        return self.values.index(value)

    def objects(self) -> np.ndarray:
        """The object array the codes stand for."""
        return _lookup(np.array([*self.values, None], dtype=object), self.codes)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.objects() if dtype is None else self.objects().astype(dtype)

    def __iter__(self):
        return iter(self.objects())

    def column(self, categories: bool = False) -> pd.arrays.StringArray | pd.Categorical:
        """As text (``pd.array(values, dtype="string")``) or, with ``categories``, as that
        text's ``.astype("category")``: its values present, sorted, as ``string`` categories."""
        if not categories:
            return _text(self.objects())
        present = np.unique(self.codes)  # sorted on a copy of the codes
        named = sorted((self.values[i], i) for i in present[present >= 0])  # by code point
        recode = np.full(len(self.values) + 1, -1, dtype=np.int32)  # the last, for -1: None
        recode[[i for _, i in named]] = np.arange(len(named))
        codes = _lookup(recode.astype(np.int8 if len(named) < 128 else np.int32), self.codes)
        names = pd.Index(pd.array([v for v, _ in named], dtype="string"))
        return pd.Categorical.from_codes(codes, categories=names)


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` a slice of residents at a time: numpy makes the codes 64-bit to index
    with (8 bytes a resident), a slice's worth here."""
    out = np.empty(len(codes), dtype=table.dtype)
    for start in range(0, len(codes), _LOOKUP_ROWS):
        out[start : start + _LOOKUP_ROWS] = table[codes[start : start + _LOOKUP_ROWS]]
    return out


@dataclass
class _Reasons:
    """Per resident: the first reason that applies (``None`` while open) and its detail."""

    reason: _Coded
    detail: _Coded

    def flag(self, mask: np.ndarray, code: str) -> None:
        self.reason[mask & (self.reason == None)] = code  # noqa: E711


#: Residents looked up at a time (:func:`_exclusions`, :func:`_lookup`).
_LOOKUP_ROWS = 1_000_000


def _exclusions(
    pid: pd.Series,
    config: SelectionConfig,
    enrolled: pd.Series | None,
    opted_out: pd.Series | None,
    last_lettered: pd.Series | None,
    scoring_date: pd.Timestamp | None,
    contact_problems: pd.Series | None,
) -> _Reasons:
    """Residents no letter may go to, in the order of :data:`REASONS`."""
    n = len(pid)
    r = _Reasons(_Coded.empty(n, REASONS), _Coded.empty(n))
    text = arrow_text(pid)

    def flags(series: pd.Series | None, default: bool) -> np.ndarray:
        """Each resident's value in ``series`` as a flag, ``default`` where it has none (a
        missing value counts as none). Looked up a slice of residents at a time: their keys
        and positions, not every resident's (≈ 0.3 GB at 10M)."""
        out = np.full(n, default)
        if series is None:
            return out
        values = series.to_numpy(dtype=object)
        values = np.where(pd.notna(values), values, default).astype(bool)
        where = PseudonymIndex(arrow_text(series.index))
        for start in range(0, n, _LOOKUP_ROWS):
            at, found = where.positions(text.slice(start, _LOOKUP_ROWS))
            out[start : start + len(found)][found] = values[at[found]]
        return out

    r.flag(~flags(enrolled, True), "NOT_ENROLLED")
    r.flag(flags(opted_out, False), "OPTED_OUT")
    if contact_problems is not None:
        # As codes of the distinct problems: no object per resident (≈ 80 MB at 10M).
        values = contact_problems.array
        if not isinstance(values, pd.Categorical):
            values = pd.Categorical(contact_problems.to_numpy(dtype=object))
        if _same_text(text, contact_problems.index):  # contact_status(among=pid)'s order
            code = values.codes
        else:
            at, found = positions(text, contact_problems.index)
            code = np.full(n, -1, dtype=values.codes.dtype)
            code[found] = values.codes[at[found]]
        problems = np.asarray(values.categories, dtype=object)
        missing = code < 0
        r.flag(missing, "NO_CONTACT")
        faulty = np.append(problems != "", False)  # code -1 (missing) picks the last
        invalid = ~missing & faulty[code] & (r.reason == None)  # noqa: E711
        # The details as the problems' own codes (only those at fault are ever read).
        r.detail = _Coded(np.full(n, -1, dtype=code.dtype), problems.tolist())
        r.detail.codes[invalid] = code[invalid]
        r.flag(invalid, "CONTACT_INVALID")
    if last_lettered is not None:
        at, found = positions(text, last_lettered.index)
        when = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        when[found] = pd.to_datetime(last_lettered).to_numpy(dtype="datetime64[ns]")[at[found]]
        cutoff = (scoring_date or pd.Timestamp.today()) - pd.DateOffset(
            months=config.lettered_within_months
        )
        r.flag(when > cutoff.to_datetime64(), "RECENTLY_LETTERED")
    return r


def _same_text(text: pa.ChunkedArray, index: pd.Index) -> bool:
    """Whether ``index`` holds ``text``'s values in its order (compared in Arrow)."""
    if len(index) != len(text) or not isinstance(index.dtype, pd.ArrowDtype):
        return False
    other = arrow_text(index)
    return not len(text) or bool(pc.all(pc.fill_null(pc.equal(text, other), False)).as_py())


@dataclass(frozen=True)
class LetterDecision:
    """What each resident's values call for, before exclusions and budget.

    ``letter``: "see_doctor", "advice" or None; ``outcome``: its topic; ``priority``: the
    advice ranking score (NaN for see-a-doctor letters); ``upgraded``: advice turned
    see-a-doctor by a value at its 受診勧奨判定値, ``referral_detail`` naming those items;
    ``on_medication``: treated for some outcome; ``verify``: a see-a-doctor letter held because
    only an implausible value calls for it (no letter; ``referral_detail`` names the items,
    ``verify:ggt``).
    """

    letter: np.ndarray
    outcome: np.ndarray
    priority: np.ndarray
    upgraded: np.ndarray
    referral_detail: np.ndarray
    on_medication: np.ndarray
    verify: np.ndarray


#: The code prefix of an item to verify in ``reason_detail`` (``verify:ggt``).
VERIFY = "verify:"
#: What ``reason_detail`` may hold: ``,``-joined codes, never values (``referral:sbp``,
#: ``address:too_long``, ``verify:ggt``).
DETAIL_CODES = r"^[a-z_]+:[a-z0-9_]+(,[a-z_]+:[a-z0-9_]+)*$"


def names_values_to_verify(detail: pd.Series) -> np.ndarray:
    """Which rows of a selection's ``reason_detail`` name items to verify; a categorical
    column (the annual run's) is read by its categories, with no text made per resident."""
    if isinstance(detail.dtype, pd.CategoricalDtype):
        named = [VERIFY in str(c) for c in detail.cat.categories]
        return np.array([*named, False])[detail.cat.codes.to_numpy()]  # code -1: missing
    found = detail.astype("string").str.contains(VERIFY, regex=False)
    return found.fillna(False).to_numpy(dtype=bool)


def _join_codes(hits: np.ndarray, names, prefix: str) -> np.ndarray:
    """Per row of ``hits`` (rows × names): the ``prefix``-ed names hit, ``,``-joined (``""``:
    none)."""
    out = np.full(len(hits), "", dtype=object)
    for j, name in enumerate(names):
        code = f"{prefix}{name}"
        out = np.where(hits[:, j], np.where(out == "", code, out + "," + code), out)
    return out


def letter_decisions(s: pd.DataFrame, config: SelectionConfig) -> LetterDecision:
    """The letter each resident's values and risks call for (the only place it is decided).

    With ``config.verify_implausible``, a see-a-doctor letter that only values outside their
    plausible range call for (the same rules with those values unknown call for no see-a-doctor
    letter on that topic) is held: no letter at all, since an advice letter must not go to a
    resident with a referral-level value (the letter contract), and ``verify`` with the items
    to verify in ``referral_detail`` (``verify:ggt``)."""
    d = _decisions(s, config)
    if not config.verify_implausible or not len(s):
        return d
    odd = outside_plausible_range(s)
    rows = np.flatnonzero(odd.to_numpy().any(axis=1))  # a few residents in a thousand
    if not len(rows):
        return d
    masked = s.iloc[rows].reset_index(drop=True)
    for item in odd.columns:
        masked[item] = masked[item].mask(odd[item].to_numpy()[rows])
    m = _decisions(masked, config)
    same = (m.letter == "see_doctor") & (m.outcome == d.outcome[rows])
    at = rows[(d.letter[rows] == "see_doctor") & ~same]
    codes = _join_codes(odd.to_numpy()[at], odd.columns, VERIFY)
    letter, outcome, priority = d.letter.copy(), d.outcome.copy(), d.priority.copy()
    upgraded, why, verify = d.upgraded.copy(), d.referral_detail.copy(), d.verify.copy()
    letter[at], outcome[at], priority[at] = None, None, np.nan
    upgraded[at], why[at], verify[at] = False, codes, True
    return LetterDecision(letter, outcome, priority, upgraded, why, d.on_medication, verify)


def _decisions(s: pd.DataFrame, config: SelectionConfig) -> LetterDecision:
    """:func:`letter_decisions` on the values as they are (``verify`` all False)."""
    n = len(s)
    # By this year's values only: medication is handled separately below.
    # the other columns as they are (no copy of every scores column: assign made one)
    kept = {c: s[c] for c in s.columns if c not in _MEDICATION_COLUMNS}
    no_meds = pd.DataFrame(
        {**kept, **{c: np.full(n, 2) for c in _MEDICATION_COLUMNS}}, index=s.index, copy=False
    )
    met = outcomes_met(no_meds)
    doctor = np.zeros((n, len(OUTCOMES)), dtype=bool)
    advise = np.zeros((n, len(OUTCOMES)), dtype=bool)
    benefit = np.full((n, len(OUTCOMES)), -np.inf)
    on_med_any = np.zeros(n, dtype=bool)
    for j, o in enumerate(OUTCOMES):
        on_med = np.zeros(n, dtype=bool)
        for col in MEDICATION[o]:
            on_med |= (pd.to_numeric(s.get(col), errors="coerce") == 1).fillna(False).to_numpy()
        on_med_any |= on_med
        risk = s.get(f"risk_{o}")
        if risk is None:  # an outcome the model does not score
            continue
        risk = risk.to_numpy(dtype=float)
        doctor[:, j] = met[o].to_numpy() & ~on_med
        advise[:, j] = ~met[o].to_numpy() & ~on_med & (risk >= config.min_risk[o])
        gain = risk
        if config.ranking == "expected_benefit" and f"risk_after_{o}" in s:
            gain = risk - s[f"risk_after_{o}"].to_numpy(dtype=float)
        benefit[:, j] = np.where(advise[:, j], gain, -np.inf)

    any_doctor, any_advice = doctor.any(axis=1), advise.any(axis=1)
    letter = np.where(any_doctor, "see_doctor", np.where(any_advice, "advice", None))
    referral = referral_values(s)
    hit = referral.to_numpy(dtype=bool)
    upgraded = (letter == "advice") & hit.any(axis=1)
    letter = np.where(upgraded, "see_doctor", letter)
    topic_idx = np.where(any_doctor, doctor.argmax(axis=1), benefit.argmax(axis=1))
    outcome = np.where(letter != None, np.asarray(OUTCOMES)[topic_idx], None)  # noqa: E711
    priority = np.where(any_advice & ~any_doctor & ~upgraded, benefit.max(axis=1), np.nan)
    why = _join_codes(hit, referral.columns, "referral:")
    return LetterDecision(letter, outcome, priority, upgraded, why, on_med_any, np.zeros(n, bool))


def _allocate(
    out: pd.DataFrame,
    letter: np.ndarray | _Coded,
    reasons: _Reasons,
    config: SelectionConfig,
    strata: tuple[np.ndarray, np.ndarray, _Coded] | None = None,
    *,
    categories: bool = False,
) -> None:
    """Rank each letter type, cap it at its budget and draw the control arm (in place:
    ``out``'s ``rank`` and ``arm``, as text or ``categories``: :meth:`_Coded.column`;
    ``reasons``). The control arm's strata take age, sex and outcome from ``strata`` (else
    from ``out``'s columns)."""
    if strata is None:
        codes, values = pd.factorize(out["outcome"])
        strata = (out["age"].to_numpy(), out["sex"].to_numpy(), _Coded(codes, list(values)))
    age, sex, topic = strata
    n = len(out)
    open_ = reasons.reason == None  # noqa: E711
    rank, ranked = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    arm = _Coded.empty(n, ("control", "letter"))
    priority = out["priority"].to_numpy(dtype="float64")
    text = arrow_text(out["pseudonym"])
    for kind, budget, with_control in (
        ("advice", config.budget.advice, True),
        ("see_doctor", config.budget.see_doctor, config.control_for_see_doctor),
    ):
        idx = np.flatnonzero(open_ & (letter == kind))
        # Highest priority first; ties broken by pseudonym so the order is total. Sorted in
        # Arrow: text sorts by its UTF-8 bytes, which is the order of Python's str (code
        # points); + 0.0 makes -0.0 the 0.0 it equals.
        key = -np.where(np.isnan(priority[idx]), 0.0, priority[idx]) + 0.0
        table = pa.table({"key": key, "pseudonym": text.take(idx)})
        ties = pc.sort_indices(table, sort_keys=[("key", "ascending"), ("pseudonym", "ascending")])
        order = idx[ties.to_numpy()]
        del table, ties
        # Arrow's pool would keep the sort's pages (≈ 0.2 GB at 10M residents) to the end.
        pa.default_memory_pool().release_unused()
        rank[order], ranked[order] = np.arange(1, len(order) + 1), True
        rate = config.control_rate if with_control else 0.0
        cap = len(order) if budget is None else int(np.floor(budget / (1 - rate) + 1e-9))
        study, over = order[:cap], order[cap:]
        reasons.reason[over] = "OVER_BUDGET"
        if rate:  # the strata of the study population only (the budget's few residents)
            topics = _Coded(topic.codes[study], topic.values).column()
            who = out.iloc[study].assign(age=age[study], sex=sex[study], outcome=topics)
            control = _control_draw(who, rate, config.seed)
        else:
            control = np.zeros(len(study), dtype=bool)
        sent = study[~control]
        if budget is not None and len(sent) > budget:  # rounding in small strata
            reasons.reason[sent[budget:]] = "OVER_BUDGET"
            sent = sent[:budget]
        reasons.reason[study[control]] = "CONTROL_ARM"
        reasons.reason[sent] = "SENT_ADVICE" if kind == "advice" else "SENT_SEE_DOCTOR"
        arm[study[control]] = "control"
        arm[sent] = "letter"
    out["rank"] = pd.arrays.IntegerArray(rank, ~ranked)
    out["arm"] = arm.column(categories)
