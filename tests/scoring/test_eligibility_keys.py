"""Eligibility on sort keys (scoring.score.eligible_residents) gives the index and counts of
sorting and de-duplicating the frames (``_eligible_residents_frames``, the rules as first
written), on pandas and on Arrow-backed columns (what data.store returns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scoring.keys import hex_keys as _hex_keys
from scoring.score import (
    ScoringConfig,
    _eligible_residents_frames,
    eligible_residents,
)

DAY = pd.Timestamp("2026-04-01")


def _hex(i: int) -> str:
    return f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}"


def _ward() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hand-made edge cases, one resident each (pseudonyms of 16 lowercase hex digits)."""
    p = [_hex(i) for i in range(16)]
    rows = [  # pseudonym, fiscal_year, exam_date, age
        (p[0], 2025, "2025-06-01", 60), (p[0], 2025, "2025-09-01", 60),  # two in the FY
        (p[1], 2025, "2025-06-01", 50), (p[1], 2025, "2025-06-01", 51),  # same day twice
        (p[2], 2024, "2024-06-01", 55),  # fallback year only
        (p[3], 2024, "2024-06-01", 73), (p[3], 2023, "2023-06-01", 72),  # 74 at FY end: in
        (p[4], 2024, "2024-06-01", 74),  # 75 at FY end: out
        (p[5], 2025, "2025-06-01", 40), (p[6], 2025, "2025-06-01", 39),  # 40 in, 39 out
        (p[7], 2025, "2025-06-01", 74), (p[8], 2025, "2025-06-01", 75),
        (p[9], 2025, "2025-06-01", 45), (p[10], 2025, "2025-06-01", 45),
        (p[11], 2025, "2025-06-01", 45), (p[12], 2025, "2025-06-01", 45),
        (p[13], 2024, "2024-12-01", 45), (p[13], 2025, "2025-04-02", 46),  # FY beats date
    ]  # fmt: skip
    cand = pd.DataFrame(rows, columns=["pseudonym", "fiscal_year", "exam_date", "age"])
    cand["exam_date"] = pd.to_datetime(cand["exam_date"])
    cand["sex"] = np.arange(len(cand)) % 2 + 1
    periods = [  # pseudonym, from, until
        *[(p[i], "2010-04-01", None) for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 13)],  # open-ended
        (p[9], "2010-04-01", "2026-04-01"),  # ends on the day: covers it
        (p[10], "2026-04-01", None),  # starts on the day: covers it
        (p[11], "2010-04-01", "2026-03-31"),  # ended the day before: not enrolled
        (p[12], "2026-04-02", None),  # starts the day after: not enrolled
        (p[12], "2000-04-01", "2005-03-31"),
        (p[0], "2000-04-01", None),  # two periods covering the day
        (p[14], "2010-04-01", None), (p[15], "2010-04-01", None),  # enrolled, no checkup
    ]  # fmt: skip
    enr = pd.DataFrame(periods, columns=["pseudonym", "enrolled_from", "enrolled_until"])
    for c in ("enrolled_from", "enrolled_until"):
        enr[c] = pd.to_datetime(enr[c])
    enr["end_reason"] = None
    return cand, enr


def _random_ward(seed: int, pseudonyms) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 400
    who = rng.choice(pseudonyms, n)
    cand = pd.DataFrame(
        {
            "pseudonym": who,
            "fiscal_year": rng.choice([2023, 2024, 2025], n),
            "exam_date": pd.Timestamp("2023-04-01")
            + pd.to_timedelta(rng.integers(0, 60, n) * 17, "D"),
            "age": rng.integers(36, 80, n),
            "sex": rng.integers(1, 3, n),
        }
    )
    m = 300
    start = DAY + pd.to_timedelta(rng.integers(-3, 3, m), "D")
    until = DAY + pd.to_timedelta(rng.integers(-3, 3, m), "D")
    enr = pd.DataFrame(
        {
            "pseudonym": rng.choice(pseudonyms, m),
            "enrolled_from": start,
            "enrolled_until": until.where(rng.random(m) < 0.6),
        }
    )
    enr = enr[~(enr["enrolled_until"] < enr["enrolled_from"])].reset_index(drop=True)
    enr["end_reason"] = None
    return cand, enr


def _as_store_reads(cand: pd.DataFrame, enr: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames as data.store returns them: text in Arrow, nullable integers, year codes."""
    text = pd.ArrowDtype(pa.string())
    cand = cand.astype({"pseudonym": text, "age": "Int16", "sex": "Int8", "fiscal_year": "int32"})
    return cand, enr.astype({"pseudonym": text, "end_reason": text})


def _check(cand: pd.DataFrame, enr: pd.DataFrame, fy: int = 2025) -> None:
    for fallback in (True, False):
        cfg = ScoringConfig(fallback_previous_year=fallback)
        for day in (DAY, DAY - pd.Timedelta(days=1), DAY + pd.Timedelta(days=1)):
            want = _eligible_residents_frames(cand, enr, fy, day, cfg)
            for c, e in ((cand, enr), _as_store_reads(cand, enr)):
                got = eligible_residents(c, e, fy, day, cfg)
                pd.testing.assert_frame_equal(got.index, want.index, check_exact=True)
                assert got.counts == want.counts


def test_edge_cases_give_the_index_and_counts_of_the_frames():
    cand, enr = _ward()
    _check(cand, enr)
    got = eligible_residents(*_as_store_reads(cand, enr), 2025, DAY, ScoringConfig())
    idx = got.index.set_index("pseudonym")
    p = [_hex(i) for i in range(16)]
    assert idx.loc[p[0], "exam_date"] == pd.Timestamp("2025-09-01")
    assert idx.loc[p[1], "age"] == 51  # the later row of the same day
    assert idx.loc[p[2], "index_fiscal_year"] == 2024 and idx.loc[p[3], "age"] == 74
    assert {p[5], p[7], p[9], p[10], p[13]} <= set(idx.index)
    assert not {p[4], p[6], p[8], p[11], p[12]} & set(idx.index)
    assert idx.loc[p[13], "index_fiscal_year"] == 2025
    assert got.counts["enrolled_without_recent_checkup"] == 2
    assert got.index["pseudonym"].dtype == pd.ArrowDtype(pa.string())  # compact: Arrow text
    assert got.index["pseudonym"].is_monotonic_increasing


@pytest.mark.parametrize("seed", range(6))
def test_random_wards_give_the_index_and_counts_of_the_frames(seed):
    hexes = [_hex(i) for i in range(120)]
    _check(*_random_ward(seed, hexes))


@pytest.mark.parametrize(
    "pseudonyms",
    [
        ["p1", "p10", "p2", "p9", "q", "Ab", "ab", "é1", "e2", "zz"],  # not hex: byte keys
        [f"{i:04x}" for i in range(50)],  # hex, but shorter than the store's
        [f"{i:016x}" for i in range(30)] + ["00000000000000g0"],  # one not hex
    ],
)
def test_other_pseudonyms_sort_as_strings(pseudonyms):
    _check(*_random_ward(7, pseudonyms))


def test_enrollment_pseudonyms_of_another_width_do_not_match_by_number():
    cand, enr = _random_ward(3, [f"{i:04x}" for i in range(40)])
    enr["pseudonym"] = "0" + enr["pseudonym"]  # same number, another string
    _check(cand, enr)
    assert eligible_residents(cand, enr, 2025, DAY, ScoringConfig()).index.empty


def test_hex_keys_order_as_the_strings():
    rng = np.random.default_rng(0)
    values = [f"{int(x):016x}" for x in rng.integers(0, 2**63, 500, dtype=np.int64)]
    values += ["0" * 16, "f" * 16]
    keys = _hex_keys(pa.array(values).slice(1))
    assert keys is not None
    assert [values[1:][i] for i in np.argsort(keys, kind="stable")] == sorted(values[1:])
    assert _hex_keys(pa.array(["00ff", "0A00"])) is None  # uppercase: not the store's
    assert _hex_keys(pa.array(["00ff", "0a0"])) is None  # widths differ
    assert _hex_keys(pa.array(["00ff", None])) is None


def test_rows_without_a_pseudonym_take_the_frames_path():
    cand, enr = _ward()
    cand.loc[3, "pseudonym"] = None
    want = _eligible_residents_frames(cand, enr, 2025, DAY, ScoringConfig())
    got = eligible_residents(cand, enr, 2025, DAY, ScoringConfig())
    pd.testing.assert_frame_equal(got.index, want.index)
    assert got.counts == want.counts


def test_enrolled_keys_not_of_the_checkups_kind_are_read_again():
    """scoring.score._eligible given the enrollment's keys (eligible_in_store) but checkups of
    other pseudonyms: it reads the enrollment's pseudonyms again and matches them as text."""
    from scoring.score import _eligible

    cand, enr = _random_ward(5, ["p1", "p10", "p2", "q", "zz", "ab"])
    want = _eligible_residents_frames(cand, enr, 2025, DAY, ScoringConfig())
    covering = enr["pseudonym"][
        (enr["enrolled_from"] <= DAY)
        & (enr["enrolled_until"].isna() | (enr["enrolled_until"] >= DAY))
    ].reset_index(drop=True)
    got = _eligible(
        cand, np.arange(3, dtype=np.uint64), 2025, ScoringConfig(), enrolled_again=lambda: covering
    )
    pd.testing.assert_frame_equal(got.index, want.index, check_exact=True)
    assert got.counts == want.counts


def test_index_rows_give_the_scoring_code_the_types_it_took():
    """The index is held compact (Arrow text, small integers); a chunk of it, through
    scoring.score.index_rows, is the frame the scoring code took before: Python ``str``
    pseudonyms and 64-bit integers, the same values."""
    from scoring.score import INDEX_DTYPES, index_rows

    cand, enr = _ward()
    index = eligible_residents(*_as_store_reads(cand, enr), 2025, DAY, ScoringConfig()).index
    assert dict(index.dtypes) == {c: pd.api.types.pandas_dtype(t) for c, t in INDEX_DTYPES.items()}
    rows = index_rows(index.iloc[2:7].reset_index(drop=True))
    assert rows["pseudonym"].dtype == object and rows["pseudonym"].map(type).eq(str).all()
    assert all(rows[c].dtype == np.int64 for c in ("index_fiscal_year", "age", "sex"))
    want = index.iloc[2:7].reset_index(drop=True)
    assert rows["pseudonym"].tolist() == want["pseudonym"].tolist()
    assert (rows["age"].to_numpy() == want["age"].to_numpy()).all()
    spark_like = want.astype({"pseudonym": "string[pyarrow]"})  # as Spark's Arrow gives it
    pd.testing.assert_frame_equal(index_rows(spark_like), rows)
    assert index_rows(rows) is rows  # nothing to do


@pytest.mark.parametrize(
    "values",
    [
        [_hex(i) for i in range(300)],  # the store's: sorted keys
        [f"{i:04x}" for i in range(300)],  # hex of another width than the set's
        ["p1", "p10", "é", "ab", "Ab"] * 20,  # not hex: Arrow's lookup
    ],
)
def test_pseudonym_sets_answer_as_arrow_is_in(values):
    from scoring.keys import PseudonymSet

    rng = np.random.default_rng(1)
    members = pa.chunked_array([pa.array(rng.choice([_hex(i) for i in range(200)], 150))])
    batch = pa.array([*values, None, _hex(3), "0" * 16])
    got = PseudonymSet(members).contains(batch)
    want = pa.compute.is_in(batch, value_set=members).to_numpy(zero_copy_only=False)
    assert got.dtype == bool and (got == want).all()
    assert got.any() or not set(values) & set(members.to_pylist())


@pytest.mark.parametrize("width", [16, 4])
def test_positions_by_keys_are_those_of_series_map(width):
    """scoring.keys.positions (binary search on hex keys, else Arrow's lookup) answers as
    ``Series.map`` on Python strings, and refuses an index with repeats as it does."""
    from scoring.keys import positions

    rng = np.random.default_rng(width)
    names = sorted({f"{int(x):0{width}x}" for x in rng.integers(0, 16 ** min(width, 15), 300)})
    index = pd.Index(rng.permutation(names[:200]))
    wanted = pa.array([*rng.choice(names, 500), "zz" * (width // 2)])  # last: not hex
    for text in (wanted, wanted.slice(0, 500)):  # with and without a non-hex value
        at, found = positions(text, index)
        mapped = pd.Series(text.to_pylist()).map(pd.Series(np.arange(200), index=index))
        assert (found == mapped.notna().to_numpy()).all()
        assert (at[found] == mapped.dropna().to_numpy()).all()
    arrow_index = pd.Index(pd.arrays.ArrowExtensionArray(pa.chunked_array([pa.array(index)])))
    assert (positions(wanted, arrow_index)[0] == positions(wanted, index)[0]).all()
    from scoring.keys import arrow_text

    assert (positions(wanted, arrow_text(index))[0] == positions(wanted, index)[0]).all()
    with pytest.raises(ValueError, match="uniquely valued"):
        positions(wanted, pd.Index([*names[:5], names[0]]))


@pytest.mark.parametrize("width", [16, 4])
@pytest.mark.parametrize("ordered", [True, False])
def test_a_pseudonym_index_finds_what_positions_finds(width, ordered):
    """scoring.keys.PseudonymIndex (keys sorted once, then a batch at a time) answers as
    positions() on the whole, sorted or not, hex or not, and refuses repeats as it does."""
    from scoring.keys import PseudonymIndex, positions

    rng = np.random.default_rng(width)
    names = sorted({f"{int(x):0{width}x}" for x in rng.integers(0, 16 ** min(width, 15), 300)})
    kept = names[:200] if ordered else list(rng.permutation(names[:200]))
    index = pa.chunked_array([pa.array(kept[:90]), pa.array(kept[90:])])
    wanted = pa.array([*rng.choice(names, 500), None, "zz" * (width // 2)])  # not hex at the end
    where = PseudonymIndex(index)
    for text in (wanted, wanted.slice(0, 500), wanted.slice(100, 0)):
        at, found = where.positions(text)
        want_at, want_found = positions(text, index)
        assert (found == want_found).all() and (at == want_at).all()
    other = PseudonymIndex(pa.chunked_array([pa.array(["p1", "p10", "é"])]))
    assert other.positions(pa.array(["é", "p2", "p1"]))[0].tolist() == [2, 0, 0]
    for repeated in ([*names[:5], names[0]], ["p1", "é", "p1"]):
        with pytest.raises(ValueError, match="uniquely valued"):
            PseudonymIndex(pa.chunked_array([pa.array(repeated)]))


def test_hex_text_and_isin_sorted_a_block_at_a_time_are_the_whole_arrays(monkeypatch):
    """Both work a block of keys at a time (their temporaries are 8 bytes a key): blocks of
    7 give what one block gives, and np.isin's answer."""
    import scoring.keys
    from scoring.keys import hex_text, isin_sorted

    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**63, 100, dtype=np.uint64)
    known = np.unique(np.concatenate([keys[::3], rng.integers(0, 2**63, 50, dtype=np.uint64)]))
    whole = (hex_text(keys, 16).to_pylist(), isin_sorted(keys, known))
    monkeypatch.setattr(scoring.keys, "BLOCK", 7)
    assert hex_text(keys, 16).to_pylist() == whole[0] == [f"{int(k):016x}" for k in keys]
    assert (isin_sorted(keys, known) == whole[1]).all() and (whole[1] == np.isin(keys, known)).all()
    assert not isin_sorted(keys, known[:0]).any()


def test_hex_text_makes_the_keys_text_again():
    from scoring.keys import hex_text

    rng = np.random.default_rng(2)
    for width in (16, 5, 1):
        values = [f"{int(x):0{width}x}" for x in rng.integers(0, 16 ** min(width, 15), 200)]
        text = hex_text(_hex_keys(pa.array(values)), width)
        assert text.type == pa.string() and text.to_pylist() == values
    assert len(hex_text(np.zeros(0, dtype=np.uint64), 16)) == 0
