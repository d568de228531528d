"""The global half of the selection on integer codes is the selection it replaced, byte for byte.

scoring.selection.select_decided keeps reasons, details, letter types, topics and arms as small
integer codes into their few values (scoring.selection._Coded), not as a Python object per
resident, and makes the output's columns once at the end: as text, or with ``categories`` as
the categories the annual run holds them as (kenshin.annual.held). ``_reference_select_decided``
below is that half as it was on object arrays (a copy of it before the change; the helpers it
shares with today's code, not changed, are imported): both are run on varied inputs (every
reason, contact problems with their details, upgraded referrals with theirs, budgets cutting
through ties, control arm on and off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data.columns import OUTCOMES
from kenshin.annual import as_written, held
from scoring.keys import PseudonymIndex, arrow_text, positions
from scoring.selection import (
    REASONS,
    SelectionConfig,
    _compact,
    _control_draw,
    _same_text,
    decide,
    select,
    select_decided,
)
from tests.scoring.selection_helpers import parquet_bytes, scores_like

# --- The reference: select_decided and its steps on object arrays, as they were. ---


def _values(codes: pd.Series) -> np.ndarray:
    cat = codes.array
    return np.array([*cat.categories, None], dtype=object)[cat.codes]


def _text(values: np.ndarray) -> pd.arrays.StringArray:
    try:
        return pd.arrays.StringArray(values)
    except ValueError:
        return pd.array(values, dtype="string")


@dataclass
class _Reasons:
    reason: np.ndarray
    detail: np.ndarray

    def flag(self, mask: np.ndarray, code: str) -> None:
        self.reason[mask & (self.reason == None)] = code  # noqa: E711


def _exclusions(pid, config, enrolled, opted_out, last_lettered, scoring_date, contact_problems):
    n = len(pid)
    r = _Reasons(np.full(n, None, dtype=object), np.full(n, None, dtype=object))
    text = arrow_text(pid)

    def flags(series, default):
        out = np.full(n, default)
        if series is None:
            return out
        values = series.to_numpy(dtype=object)
        values = np.where(pd.notna(values), values, default).astype(bool)
        at, found = PseudonymIndex(arrow_text(series.index)).positions(text)
        out[found] = values[at[found]]
        return out

    r.flag(~flags(enrolled, True), "NOT_ENROLLED")
    r.flag(flags(opted_out, False), "OPTED_OUT")
    if contact_problems is not None:
        values = contact_problems.array
        if not isinstance(values, pd.Categorical):
            values = pd.Categorical(contact_problems.to_numpy(dtype=object))
        if _same_text(text, contact_problems.index):
            code = values.codes
        else:
            at, found = positions(text, contact_problems.index)
            code = np.full(n, -1, dtype=values.codes.dtype)
            code[found] = values.codes[at[found]]
        problems = np.asarray(values.categories, dtype=object)
        missing = code < 0
        r.flag(missing, "NO_CONTACT")
        faulty = np.append(problems != "", False)
        invalid = ~missing & faulty[code] & (r.reason == None)  # noqa: E711
        r.detail[invalid] = problems[code[invalid]]
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


def _allocate(out, letter, reasons, config, strata):
    age, sex = strata
    n = len(out)
    open_ = reasons.reason == None  # noqa: E711
    rank, ranked = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    arm = np.full(n, None, dtype=object)
    priority = out["priority"].to_numpy(dtype="float64")
    text = arrow_text(out["pseudonym"])
    for kind, budget, with_control in (
        ("advice", config.budget.advice, True),
        ("see_doctor", config.budget.see_doctor, config.control_for_see_doctor),
    ):
        idx = np.flatnonzero(open_ & (letter == kind))
        key = -np.where(np.isnan(priority[idx]), 0.0, priority[idx]) + 0.0
        table = pa.table({"key": key, "pseudonym": text.take(idx)})
        ties = pc.sort_indices(table, sort_keys=[("key", "ascending"), ("pseudonym", "ascending")])
        order = idx[ties.to_numpy()]
        rank[order], ranked[order] = np.arange(1, len(order) + 1), True
        rate = config.control_rate if with_control else 0.0
        cap = len(order) if budget is None else int(np.floor(budget / (1 - rate) + 1e-9))
        study, over = order[:cap], order[cap:]
        reasons.reason[over] = "OVER_BUDGET"
        control = (
            _control_draw(out.iloc[study].assign(age=age[study], sex=sex[study]), rate, config.seed)
            if rate
            else np.zeros(len(study), dtype=bool)
        )
        sent = study[~control]
        if budget is not None and len(sent) > budget:
            reasons.reason[sent[budget:]] = "OVER_BUDGET"
            sent = sent[:budget]
        reasons.reason[study[control]] = "CONTROL_ARM"
        reasons.reason[sent] = "SENT_ADVICE" if kind == "advice" else "SENT_SEE_DOCTOR"
        arm[study[control]] = "control"
        arm[sent] = "letter"
    out["rank"] = pd.arrays.IntegerArray(rank, ~ranked)
    out["arm"] = _text(arm)


def _reference_select_decided(decided, config, **kw) -> pd.DataFrame:
    pid = _compact(decided["pseudonym"]).reset_index(drop=True)
    reasons = _exclusions(
        pid, config, kw.get("enrolled"), kw.get("opted_out"), kw.get("last_lettered"),
        kw.get("scoring_date"), kw.get("contact_problems"),
    )  # fmt: skip
    letter = _values(decided["letter"])
    verify = decided["verify"].to_numpy(dtype=bool)
    reasons.flag(verify & (letter == None), "VERIFY_VALUE")  # noqa: E711
    reasons.flag((letter == None) & decided["on_medication"].to_numpy(), "ON_MEDICATION")  # noqa: E711
    reasons.flag(letter == None, "BELOW_RISK_THRESHOLD")  # noqa: E711
    out = pd.DataFrame(
        {
            "pseudonym": pid,
            "letter_type": pd.array(letter, dtype="string"),
            "outcome": _text(_values(decided["outcome"])),
            "priority": decided["priority"].to_numpy(),
        }
    )
    _allocate(out, letter, reasons, config, (decided["age"].to_numpy(), decided["sex"].to_numpy()))
    upgraded = decided["upgraded"].to_numpy()
    explain = (upgraded | verify) & (reasons.detail == None)  # noqa: E711
    referral = decided["referral_detail"].to_numpy()
    reasons.detail[explain] = referral[explain]
    for i in np.flatnonzero(verify & ~explain):  # contact problems, then the items to verify
        items = [c for c in referral[i].split(",") if c.startswith("verify:")]
        reasons.detail[i] = ",".join([reasons.detail[i], *items])
    out["reason"] = pd.Categorical(reasons.reason, categories=REASONS)
    out["reason_detail"] = _text(reasons.detail)
    out["sent"] = out["reason"].isin(["SENT_ADVICE", "SENT_SEE_DOCTOR"])
    return out


# --- Inputs ---

WIDE = 0.06
#: Contact problems as scoring.letters.schema.contact_problems writes them ("" = addressable).
PROBLEMS = (
    "", "", "", "", "address:too_long", "name:blank", "postal_code:invalid",
    "name:blank,address:blank", "postal_code:invalid,address:too_long",
)  # fmt: skip


def _scores(n: int, seed: int, hex_names: bool = True) -> pd.DataFrame:
    """Scores-like rows: values across the cut points (several referral items at once, so
    the upgraded letters carry a variety of details), medication answers, risks rounded so
    priorities tie."""
    rng = np.random.default_rng(seed)
    if hex_names:
        names = [f"{(i * 7919 + seed) % 1_000_003:016x}" for i in range(n)]
    else:  # not the store's kind: matched and sorted as Arrow text
        names = [f"{rng.choice(list('aZé日0~'))}{i}" for i in range(n)]
    return scores_like(rng, names, WIDE, 0.08, 12.0, 2)


def _exclusions_of(scores: pd.DataFrame, seed: int, contacts: str) -> dict:
    """Opt-outs, enrollment, earlier letters and contact problems of some residents; the
    contact problems as the contacts alone (``"contacts"``), as the run asks them (a
    categorical in the residents' order, ``"aligned"``), shuffled, or none (letters off)."""
    rng = np.random.default_rng(seed)
    pid = scores["pseudonym"].astype(str).to_numpy()
    n = len(pid)
    problems = pd.Series(rng.choice(PROBLEMS, n), index=pid, dtype=object)
    problems = problems[rng.random(n) > 0.04]  # no contacts row: NO_CONTACT
    kw = {
        "opted_out": pd.Series(rng.random(n) < 0.5, index=pid)[rng.random(n) < 0.06],
        "enrolled": pd.Series(rng.random(n) < 0.3, index=pid)[rng.random(n) < 0.1],
        "last_lettered": pd.Series(
            pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 450, n), "D"),
            index=pid,
        )[rng.random(n) < 0.1],
        "scoring_date": pd.Timestamp("2026-04-01"),
    }
    if contacts == "contacts":
        kw["contact_problems"] = problems
    elif contacts in ("aligned", "shuffled"):
        aligned = pd.Series(
            pd.Categorical(problems.reindex(pid).to_numpy(dtype=object)),
            index=pd.Index(pd.arrays.ArrowExtensionArray(pa.array(pid, pa.string()))),
        )
        kw["contact_problems"] = (
            aligned if contacts == "aligned" else aligned.sample(frac=1.0, random_state=seed)
        )
    return kw


CONFIGS = {
    "default": SelectionConfig(budget={"advice": 150, "see_doctor": 40}),
    "no_control": SelectionConfig(budget={"advice": 120, "see_doctor": 30}, control_rate=0.0),
    "see_doctor_control": SelectionConfig(
        ranking="expected_benefit",
        budget={"advice": 90, "see_doctor": None},
        seed=7,
        control_for_see_doctor=True,
        control_rate=0.25,
    ),  # fmt: skip
    "no_cap": SelectionConfig(budget={"advice": 100_000}, control_rate=0.0),
    "nothing_to_send": SelectionConfig(budget={"advice": 0, "see_doctor": 0}),
}


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same frame: columns, dtypes (categories' and codes' too), values, order, bytes."""
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert list(got.dtypes.astype(str).items()) == list(want.dtypes.astype(str).items())
    for c in got:
        if isinstance(want[c].dtype, pd.CategoricalDtype):
            a, b = got[c].array, want[c].array
            assert a.categories.dtype == b.categories.dtype and a.codes.dtype == b.codes.dtype
            assert list(a.categories) == list(b.categories) and (a.codes == b.codes).all()
    assert (pd.util.hash_pandas_object(got) == pd.util.hash_pandas_object(want)).all()
    assert parquet_bytes(got) == parquet_bytes(want)
    assert got.to_csv(index=False) == want.to_csv(index=False)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("contacts", ["contacts", "aligned", "shuffled", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_selection_on_codes_is_the_selection_on_objects(name, contacts, seed):
    config, scores = CONFIGS[name], _scores(2_500, seed)
    kw = _exclusions_of(scores, seed, contacts)
    decided = pd.concat(
        [decide(scores.iloc[i : i + 700], config) for i in range(0, len(scores), 700)],
        ignore_index=True,
    )
    want = _reference_select_decided(decided, config, **kw)
    # Every rule had work to do, the details of both kinds among them.
    reasons = set(want["reason"])
    if contacts != "none":
        assert {"NO_CONTACT", "CONTACT_INVALID"} <= reasons
        assert want["reason_detail"].str.contains("address:", na=False).any()
    assert {"NOT_ENROLLED", "OPTED_OUT", "RECENTLY_LETTERED", "ON_MEDICATION"} <= reasons
    assert "BELOW_RISK_THRESHOLD" in reasons
    assert want["reason_detail"].str.startswith("referral:", na=False).sum() >= 5
    if name != "no_cap":
        assert "OVER_BUDGET" in reasons
    if name in ("default", "see_doctor_control"):
        assert {"CONTROL_ARM", "SENT_ADVICE", "SENT_SEE_DOCTOR"} <= reasons
    _same(select_decided(decided, config, **kw), want)
    _same(select(scores, config, **kw), want)
    # As the annual run holds it: the categories of the text, made from the codes.
    coded = select_decided(decided, config, **kw, categories=True)
    assert {"letter_type", "outcome", "arm", "reason_detail"} <= {
        c for c in coded if isinstance(coded[c].dtype, pd.CategoricalDtype)
    }
    _same(held(coded.copy()), held(want.copy()))
    _same(as_written(coded), want)


def test_ties_at_the_budget_cut_are_broken_alike():
    """Many equal priorities across the cut (a coarse risk), names that are not hex keys."""
    scores = _scores(1_500, 3, hex_names=False)
    for o in OUTCOMES:
        scores[f"risk_{o}"] = np.round(scores[f"risk_{o}"] * 4, 0) / 4 + 0.1
    config = SelectionConfig(budget={"advice": 77, "see_doctor": 13}, control_rate=0.15, seed=2)
    kw = _exclusions_of(scores, 3, "contacts")
    decided = decide(scores, config)
    want = _reference_select_decided(decided, config, **kw)
    assert (
        want.loc[want["reason"] == "OVER_BUDGET", "priority"]
        .isin(want.loc[want["arm"].notna(), "priority"])
        .any()
    )
    _same(select_decided(decided, config, **kw), want)
    _same(held(select_decided(decided, config, **kw, categories=True)), held(want.copy()))


@pytest.mark.parametrize("rows", [0, 1, 5])
def test_a_few_residents_or_none(rows):
    scores = _scores(40, 4).iloc[:rows].reset_index(drop=True)
    config = CONFIGS["default"]
    for contacts in ("contacts", "none"):
        kw = _exclusions_of(scores, 4, contacts)
        decided = decide(scores, config)
        want = _reference_select_decided(decided, config, **kw)
        _same(select_decided(decided, config, **kw), want)
        _same(held(select_decided(decided, config, **kw, categories=True)), held(want.copy()))


def test_many_distinct_details_widen_the_codes():
    """Contact problems filling a byte's codes, and referral details on top of them: the
    details' codes widen and stay right."""
    scores = _scores(3_000, 5)
    pid = scores["pseudonym"].astype(str).to_numpy()
    odd = [f"address:odd{i % 125}" if i % 3 else "" for i in range(len(pid))]
    problems = pd.Series(odd, index=pid)
    assert pd.Categorical(problems).codes.dtype == np.int8  # 126 problems
    config = CONFIGS["default"]
    decided = decide(scores, config)
    want = _reference_select_decided(decided, config, contact_problems=problems)
    referral = want["reason_detail"].str.startswith("referral:", na=False)
    assert want["reason_detail"].nunique() > 127 and want["reason_detail"][referral].nunique() > 2
    _same(select_decided(decided, config, contact_problems=problems), want)
    coded = select_decided(decided, config, contact_problems=problems, categories=True)
    _same(held(coded), held(want.copy()))
