"""The selection decided chunk by chunk (as the annual run does) is the whole table's selection.

The annual run keeps no scores in memory: each chunk's letter decisions are made as it is
written (scoring.selection.decide, kenshin.annual.ScoreTally) and only the global half
(exclusions, ranking, budget, control arm: scoring.selection.select_decided) runs over every
resident. These tests hold that to the selection of the whole table by the steps ``select``
ran before the split (``_select_whole`` below), byte for byte in the files written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scoring.selection import (
    REASONS,
    SelectionConfig,
    _allocate,
    _exclusions,
    decide,
    letter_decisions,
    select,
    select_decided,
)
from tests.scoring.selection_helpers import parquet_bytes, scores_like

N = 3_000


def _scores(seed: int = 3) -> pd.DataFrame:
    """Scores-like rows: values across the cut points, missing values, medication answers,
    risks with ties (rounded) so the pseudonym tie-break matters."""
    names = [f"{i * 7919 % 100003:016x}" for i in range(N)]
    return scores_like(np.random.default_rng(seed), names, 0.02, 0.05, 25.0, 3)


def _select_whole(scores: pd.DataFrame, config: SelectionConfig, **kw) -> pd.DataFrame:
    """``select`` as it was before the split into decide / select_decided (whole table)."""
    s = scores.reset_index(drop=True)
    reasons = _exclusions(
        s["pseudonym"], config, kw.get("enrolled"), kw.get("opted_out"), kw.get("last_lettered"),
        kw.get("scoring_date"), kw.get("contact_problems"),
    )  # fmt: skip
    d = letter_decisions(s, config)
    reasons.flag(d.verify & (d.letter == None), "VERIFY_VALUE")  # noqa: E711
    reasons.flag((d.letter == None) & d.on_medication, "ON_MEDICATION")  # noqa: E711
    reasons.flag(d.letter == None, "BELOW_RISK_THRESHOLD")  # noqa: E711
    out = pd.DataFrame(
        {
            # The selection holds its pseudonyms as Arrow text (one per scored resident).
            "pseudonym": s["pseudonym"].astype(pd.ArrowDtype(pa.string())),
            "letter_type": pd.array(d.letter, dtype="string"),
            "outcome": pd.array(d.outcome, dtype="string"),
            "priority": d.priority,
            "age": s["age"].to_numpy(),
            "sex": s["sex"].to_numpy(),
        }
    )
    _allocate(out, d.letter, reasons, config)
    explain = (d.upgraded | d.verify) & (reasons.detail == None)  # noqa: E711
    reasons.detail[explain] = d.referral_detail[explain]
    for i in np.flatnonzero(d.verify & ~explain):  # contact problems, then the items to verify
        items = [c for c in d.referral_detail[i].split(",") if c.startswith("verify:")]
        reasons.detail[np.array([i])] = np.array([",".join([reasons.detail.objects()[i], *items])])
    out["reason"] = pd.Categorical(reasons.reason, categories=REASONS)
    out["reason_detail"] = pd.array(reasons.detail, dtype="string")
    out["sent"] = out["reason"].isin(["SENT_ADVICE", "SENT_SEE_DOCTOR"])
    return out.drop(columns=["age", "sex"])


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert parquet_bytes(a) == parquet_bytes(b)
    assert a.to_csv(index=False) == b.to_csv(index=False)


def _exclusion_inputs(scores: pd.DataFrame) -> dict:
    pid = scores["pseudonym"].astype(str)
    problems = pd.Series("", index=pid.to_numpy())
    problems.iloc[::17] = "address:too_long"
    return {
        "opted_out": pd.Series(True, index=pid.iloc[::23].to_numpy()),
        "enrolled": pd.Series(False, index=pid.iloc[5::31].to_numpy()),
        "last_lettered": pd.Series(pd.Timestamp("2026-01-10"), index=pid.iloc[3::29].to_numpy()),
        "scoring_date": pd.Timestamp("2026-04-01"),
        "contact_problems": problems.drop(pid.iloc[7::41].to_numpy()),
    }


CONFIGS = {
    "default": SelectionConfig(budget={"advice": 150, "see_doctor": 80}),
    "expected_benefit": SelectionConfig(
        ranking="expected_benefit",
        budget={"advice": 90, "see_doctor": None},
        seed=7,
        control_for_see_doctor=True,
        control_rate=0.2,
    ),  # fmt: skip
    "no_budget_cap": SelectionConfig(budget={"advice": 10_000}, control_rate=0.0),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("chunk", [N, 1_000, 333, 64])
@pytest.mark.parametrize("excluded", [False, True])
def test_chunked_decisions_select_as_the_whole_table(name, chunk, excluded):
    config, scores = CONFIGS[name], _scores()
    kw = _exclusion_inputs(scores) if excluded else {}
    decided = pd.concat(
        [decide(scores.iloc[i : i + chunk], config) for i in range(0, N, chunk)],
        ignore_index=True,
    )
    expected = _select_whole(scores, config, **kw)
    assert expected["reason"].nunique() >= 4  # the rules all had work to do
    _same(select_decided(decided, config, **kw), expected)
    _same(select(scores, config, **kw), expected)


def test_contact_problems_as_codes_in_the_residents_order_select_the_same():
    """The contact status of every scored resident, in their order as codes (as the run's
    kenshin.annual.contact_status gives it), selects as the status of the contacts alone."""
    config, scores = CONFIGS["default"], _scores()
    kw = _exclusion_inputs(scores)
    decided = decide(scores, config)
    problems = kw["contact_problems"]
    pid = decided["pseudonym"]
    aligned = pd.Series(
        pd.Categorical(problems.reindex(pid.astype(str).to_numpy()).to_numpy(dtype=object)),
        index=pd.Index(pid.array),
    )
    assert aligned.isna().any() and (aligned == "address:too_long").any()
    _same(
        select_decided(decided, config, **{**kw, "contact_problems": aligned}),
        select_decided(decided, config, **kw),
    )
    shuffled = aligned.sample(frac=1.0, random_state=1)  # not in order: looked up
    _same(
        select_decided(decided, config, **{**kw, "contact_problems": shuffled}),
        select_decided(decided, config, **kw),
    )


def test_decisions_are_small_and_lose_nothing():
    scores, config = _scores(), CONFIGS["default"]
    decided = decide(scores, config)
    d = letter_decisions(scores, config)
    per_resident = decided.drop(columns="pseudonym").memory_usage(index=False).sum() / N
    assert per_resident <= 40  # plus the pseudonym, Arrow text:
    assert decided["pseudonym"].memory_usage(index=False, deep=True) / N <= 16 + 4 + 1
    assert decided["letter"].isna().sum() == pd.isna(d.letter).sum()
    assert decided["outcome"].isna().sum() == pd.isna(d.outcome).sum()
    with pytest.raises(ValueError, match="selection needs the scores columns"):
        decide(scores.drop(columns="hba1c"), config)


def test_the_tally_keeps_decisions_not_scores():
    """kenshin.annual.ScoreTally: chunks added one by one select as the whole table."""
    from kenshin.annual import ScoreTally

    scores, config = _scores(), CONFIGS["expected_benefit"]
    tally = ScoreTally(selection=config)
    for i in range(0, N, 500):
        tally.add(scores.iloc[i : i + 500].reset_index(drop=True), {})
    assert all(set(f.columns) <= {*decided_columns()} for f in tally.decided)
    decided = tally.decisions()
    assert tally.decided == []
    _same(select_decided(decided, config), _select_whole(scores, config))


def test_a_tally_given_the_index_keeps_no_pseudonyms_and_selects_the_same():
    """Given the pseudonyms the chunks come in (the eligibility index's, as write_scores does),
    the tally keeps none of its own and puts those back; a chunk out of that order stops it."""
    from kenshin.annual import ScoreTally

    scores, config = _scores(), CONFIGS["default"]
    index = scores["pseudonym"].astype(pd.ArrowDtype(pa.string()))
    tally = ScoreTally(selection=config, pseudonyms=index)
    for i in range(0, N, 700):
        tally.add(scores.iloc[i : i + 700].reset_index(drop=True), {})
    assert all("pseudonym" not in f.columns for f in tally.decided)
    _same(select_decided(tally.decisions(), config), _select_whole(scores, config))
    shuffled = ScoreTally(selection=config, pseudonyms=index)
    shuffled.add(scores.iloc[:700], {})
    with pytest.raises(RuntimeError, match="order"):
        shuffled.add(scores.iloc[701:1401].reset_index(drop=True), {})


def decided_columns() -> tuple[str, ...]:
    from scoring.selection import DECIDED_COLUMNS

    return DECIDED_COLUMNS


def test_decisions_keep_age_and_sex_small_and_select_the_same():
    """decide keeps age and sex as 16-bit integers (about 12 bytes a resident less at 10M
    residents); the selection is the same."""
    scores, config = _scores(), CONFIGS["default"]
    decided = decide(scores, config)
    assert decided["age"].dtype == np.int16 and decided["sex"].dtype == np.int16
    _same(select_decided(decided, config), _select_whole(scores, config))


def _exclusions_by_map(pid, config, enrolled, opted_out, last_lettered, scoring_date, problems):
    """The exclusions as first written (pandas ``Series.map`` on Python strings): the
    reference of the Arrow lookups (scoring.keys.positions)."""
    n = len(pid)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)

    def flag(mask, code):
        reason[mask & (reason == None)] = code  # noqa: E711

    def lookup(series, default):
        if series is None:
            return pd.Series([default] * n)
        mapped = pid.map(series)
        return pd.Series(np.where(mapped.notna(), mapped.to_numpy(dtype=object), default))

    flag(~lookup(enrolled, True).astype(bool).to_numpy(), "NOT_ENROLLED")
    flag(lookup(opted_out, False).astype(bool).to_numpy(), "OPTED_OUT")
    if problems is not None:
        problem = pid.map(problems)
        flag(problem.isna().to_numpy(), "NO_CONTACT")
        invalid = (problem.fillna("") != "").to_numpy() & (reason == None)  # noqa: E711
        detail[invalid] = problem.to_numpy(dtype=object)[invalid]
        flag(invalid, "CONTACT_INVALID")
    if last_lettered is not None:
        when = pd.to_datetime(pid.map(last_lettered))
        cutoff = scoring_date - pd.DateOffset(months=config.lettered_within_months)
        flag((when > cutoff).fillna(False).to_numpy(), "RECENTLY_LETTERED")
    return reason, detail


@pytest.mark.parametrize("seed", range(4))
def test_exclusions_matched_in_arrow_are_those_of_series_map(seed):
    rng = np.random.default_rng(seed)
    names = np.array(
        ["p1", "p10", "é", "Ab", "ab", "0" * 16, "zz", "p2", "日本", "q"], dtype=object
    )
    pid = pd.Series(rng.permutation(names), dtype=object)
    config = SelectionConfig()
    kw = {
        "enrolled": pd.Series(rng.random(len(names)) < 0.5, index=rng.permutation(names)),
        "opted_out": pd.Series(True, index=rng.choice(names, 3, replace=False)),
        "last_lettered": pd.Series(
            pd.to_datetime(["2025-12-01", "2024-01-01", None]), index=names[[1, 2, 3]]
        ),
        "scoring_date": pd.Timestamp("2026-04-01"),
        "problems": pd.Series(["", "address:too_long", None, "name:blank"], index=names[4:8]),
    }
    want = _exclusions_by_map(pid, config, **kw)
    for p in (pid, pid.astype("string"), pid.astype(pd.ArrowDtype(pa.string()))):
        got = _exclusions(p, config, *kw.values())
        assert list(got.reason) == list(want[0]) and list(got.detail) == list(want[1])


def test_ranking_in_arrow_is_the_lexsort_of_python_strings():
    """Ties of priority are broken by pseudonym in the order of Python's str (code points),
    whatever the text; -0.0 and 0.0 tie."""
    rng = np.random.default_rng(5)
    names = [f"{c}{i}" for i, c in enumerate(rng.choice(list("aZé日0~"), 400))]
    priority = rng.choice([0.5, 0.25, 0.0, -0.0, np.nan], len(names))
    out = pd.DataFrame(
        {
            "pseudonym": pd.Series(names, dtype=pd.ArrowDtype(pa.string())),
            "letter_type": "advice", "outcome": "diabetes", "priority": priority,
            "age": 50, "sex": 1,
        }
    )  # fmt: skip
    letter = np.full(len(names), "advice", dtype=object)
    reasons = _exclusions(out["pseudonym"], SelectionConfig(), None, None, None, None, None)
    _allocate(out, letter, reasons, SelectionConfig(budget={"advice": 10_000}, control_rate=0.0))
    key = -pd.Series(priority).fillna(0).to_numpy()
    want = np.lexsort((np.array(names, dtype=object), key))
    assert (out["rank"].to_numpy()[want] == np.arange(1, len(names) + 1)).all()
