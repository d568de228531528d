"""data.files.csv_bytes: the fast (Arrow) path writes exactly pandas' bytes.

The reference is ``_csv_bytes_pandas`` (the table neutralised, then pandas' ``to_csv``): every
table here is written both ways and compared byte for byte.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from data.files import _csv_bytes_fast, _csv_bytes_pandas, _float_cells, csv_bytes

EXTREMES = [
    0.0, -0.0, 0.1 + 0.2, 1e-300, 1e300, 5e-324, -5e-324, 3.0, -3.0, 1e-4, 9.999999999999999e-5,
    1e-5, 1.5e-7, 1e9, 999999999.9999999, 1e15, 1e16, 9007199254740992.0, 1.7976931348623157e308,
    2.2250738585072014e-308, 0.5, 1 / 3, 2 / 3, 100.0, 148.7, 0.00012, 123456.789, np.inf,
    -np.inf, np.nan,
]  # fmt: skip

TEXT = st.text(
    alphabet=st.sampled_from(list("ab ,\"\n\r\t=+-@'\\;x0.9") + list("健診糖尿病é\u2028")),
    max_size=8,
)


def _same(frame: pd.DataFrame, **kw) -> bytes:
    got, want = csv_bytes(frame, **kw), _csv_bytes_pandas(frame, **kw)
    assert got == want
    return got


def _fast(frame: pd.DataFrame, **kw) -> bytes:
    """The fast path's bytes (asserting it took the table), checked against pandas'."""
    got = _csv_bytes_fast(frame, **kw)
    assert got is not None
    assert got == _csv_bytes_pandas(frame, **kw)
    return got


# --- floats -------------------------------------------------------------------------------


def _float_text(values: np.ndarray) -> list:
    cells = _float_cells(values)
    assert cells is not None
    return cells.to_pylist()


def _numpy_text(values: np.ndarray) -> list:
    return [None if np.isnan(v) else t for v, t in zip(values, values.astype(str), strict=True)]


def test_float_cells_are_numpy_text_for_extremes():
    values = np.array(EXTREMES)
    assert _float_text(values) == _numpy_text(values)


def test_float_cells_are_numpy_text_for_many_floats():
    rng = np.random.default_rng(20260401)
    bits = rng.integers(0, 2**64, 200_000, dtype=np.uint64, endpoint=False).view(np.float64)
    scale = 10.0 ** rng.integers(-12, 18, 200_000)
    digits = 10.0 ** rng.integers(0, 8, 200_000)
    decimals = np.round(rng.uniform(-1, 1, 200_000) * scale * digits) / digits
    probs = rng.uniform(0, 1, 200_000) ** rng.integers(1, 40, 200_000)
    ints = rng.integers(-(10**12), 10**12, 200_000).astype(np.float64)
    for values in (bits, decimals, probs, ints, np.nextafter(decimals, np.inf)):
        assert _float_text(values) == _numpy_text(values)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(allow_subnormal=True)))
def test_float_cells_are_numpy_text(values):
    assert _float_text(values) == _numpy_text(values)


# --- whole tables -------------------------------------------------------------------------


def _scores_like(n: int, seed: int = 7) -> pd.DataFrame:
    """A table with the dtypes of a scores chunk (scoring.contracts.scores_schema)."""
    rng = np.random.default_rng(seed)

    def gappy(x: np.ndarray, p: float) -> np.ndarray:
        return np.where(rng.random(n) < p, np.nan, x)

    scenario = pd.array(
        rng.choice(["weight_loss_3kg", "quit_smoking", None], n), dtype="string"
    )  # fmt: skip
    return pd.DataFrame(
        {
            "pseudonym": pd.array([f"{i:016x}" for i in rng.integers(0, 2**62, n)], "string"),
            "index_fiscal_year": np.full(n, 2025, np.int64),
            "exam_date": pd.to_datetime("2025-04-01")
            + pd.to_timedelta(rng.integers(0, 365, n), "D"),
            "age": rng.integers(40, 75, n),
            "sex": rng.integers(1, 3, n),
            "blood_draw_timing": rng.integers(1, 4, n).astype(np.int8),
            "height_cm": np.round(rng.normal(160, 9, n), 1),
            "sbp": gappy(np.round(rng.normal(130, 15, n)), 0.05),
            "hba1c": gappy(np.round(rng.normal(5.8, 0.6, n), 1), 0.3),
            "q_smoking": gappy(rng.integers(1, 4, n).astype(float), 0.1),
            "risk_diabetes": rng.uniform(0, 1, n) ** 4,
            "risk_ckd": gappy(rng.uniform(0, 1, n) ** 12, 0.2),
            "risk_after_diabetes": rng.beta(0.3, 9, n),
            "hba1c_p50": gappy(rng.normal(5.8, 0.6, n), 0.5),
            "best_scenario_diabetes": scenario,
            "model_uri": pd.array(["models:/kenshin-risk@champion"] * n, "string"),
            "scoring_date": pd.array(["2026-04-01"] * n, "string"),
        }
    )


@pytest.mark.parametrize("header", [True, False])
def test_a_scores_like_table(header):
    out = _fast(_scores_like(3_000), header=header, date_format="%Y-%m-%d")
    assert out.count(b"\n") == 3_000 + header


def test_hostile_text_and_headers():
    frame = pd.DataFrame(
        {
            "=cmd": ["=SUM(A1)", "+1", "-2", "@x", "\tt", "\rr", "ok", None],
            "text": ["a,b", 'say "hi"', "line\nbreak", "cr\rlf", "健診,結果", "", " ", pd.NA],
            "-1": pd.array(["-1", "=1", None, "a", "b", "c", "d", "e"], dtype="string"),
            "n": [-1.5, 0.0, -0.0, np.nan, np.inf, -np.inf, 1e-300, 3.0],
            "i": np.arange(-4, 4),
            "b": [True, False] * 4,
        }
    )
    out = _fast(frame)
    assert b"'=SUM(A1)" in out and b"'-1" in out and b"-1.5" in out


@pytest.mark.parametrize(
    "odd",
    [None, "p,q", 'say "hi"', "line\nbreak", "bare\rcr", "=1"],
    ids=["plain", "comma", "quote", "newline", "bare-cr", "formula"],
)
def test_rows_joined_by_arrow_or_element_wise_give_the_same_bytes(odd, monkeypatch):
    # plain rows go through Arrow's CSV writer; a quoted cell, or a bare CR (which Arrow's
    # writer refuses unquoted and the csv module leaves as it is), through the element-wise join
    import pyarrow.compute as pc

    joins, join = [], pc.binary_join_element_wise

    def counted(*args, **kwargs):
        joins.append(1)
        return join(*args, **kwargs)

    monkeypatch.setattr(pc, "binary_join_element_wise", counted)
    frame = _scores_like(500)
    if odd is not None:
        frame.loc[7, "best_scenario_diabetes"] = odd
    out = _fast(frame, header=False)
    assert out.count(b"\n") == 500 + (odd is not None and "\n" in odd)
    # "=1" is neutralised to "'=1", which needs no quotes: Arrow's writer too
    assert bool(joins) == (odd not in (None, "=1"))


def test_other_column_types():
    n = 6
    frame = pd.DataFrame(
        {
            "Int64": pd.array([1, None, -3, 4, 5, 6], dtype="Int64"),
            "Float64": pd.array([0.1, None, 3.0, -0.0, 1e-5, 2.5], dtype="Float64"),
            "boolean": pd.array([True, None, False, True, False, None], dtype="boolean"),
            "float32": np.array([0.1, np.nan, 3.0, 1e-5, 1e20, -2.5], dtype=np.float32),
            "uint8": np.arange(n, dtype=np.uint8),
            "category": pd.Categorical(["a", "b,c", None, "=x", "a", "b,c"]),
            "tz": pd.date_range("2025-01-01", periods=n, freq="h", tz="Asia/Tokyo"),
            "nat": pd.to_datetime(["2025-01-01", None, "2025-03-01", None, "2025-05-01", None]),
            "timedelta": pd.to_timedelta(np.arange(n), "s"),
            "mixed": [1, 2.5, "x", None, np.float64(0.1), (1, "a,b")],
            "bytes": [b"a", b"b,c", None, b"", b"d", b"e"],
        }
    )
    _fast(frame)
    _fast(frame, date_format="%Y-%m-%d")


def test_what_the_fast_path_leaves_to_pandas():
    frame = _scores_like(5)
    for kw in ({"sep": ";"}, {"na_rep": "NA"}, {"header": ["a"] * frame.shape[1]}):
        assert _csv_bytes_fast(frame, **kw) is None
        _same(frame, **kw)
    for table in (frame[["age"]], frame.iloc[:0], pd.DataFrame({"x": [np.nan, 1.0]})):
        assert _csv_bytes_fast(table) is None
        _same(table)
    two_levels = frame.set_axis(pd.MultiIndex.from_product([["a"], frame.columns]), axis=1)
    _same(two_levels)
    for dtype in (object, "string"):
        surrogate = pd.DataFrame({"a": pd.Series(["\ud800", "=\ud800"], dtype=dtype), "b": 1.0})
        with pytest.raises(UnicodeEncodeError):
            csv_bytes(surrogate)


@st.composite
def _frames(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 12))
    kinds = draw(st.lists(st.sampled_from(["f", "i", "b", "s", "o", "d", "I"]), min_size=2))
    cols = {}
    for j, kind in enumerate(kinds):
        if kind == "f":
            pool = st.one_of(st.sampled_from(EXTREMES), st.floats(), st.integers(-9, 9).map(float))
            col = np.array(draw(st.lists(pool, min_size=n, max_size=n)), dtype=np.float64)
        elif kind == "i":
            col = np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)))
        elif kind == "b":
            col = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        elif kind == "s":
            col = pd.array(draw(st.lists(st.none() | TEXT, min_size=n, max_size=n)), "string")
        elif kind == "o":
            pool = st.one_of(st.none(), TEXT, st.integers(), st.floats(), st.booleans())
            col = pd.Series(draw(st.lists(pool, min_size=n, max_size=n)), dtype=object)
        elif kind == "d":
            days = draw(st.lists(st.none() | st.integers(0, 50_000), min_size=n, max_size=n))
            col = pd.to_datetime([None if d is None else d for d in days], unit="D")
        else:
            col = pd.array(draw(st.lists(st.none() | st.integers(-5, 5), min_size=n, max_size=n)))
        cols[draw(TEXT) + str(j)] = col
    return pd.DataFrame(cols)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames(), st.booleans(), st.sampled_from([None, "%Y-%m-%d"]))
def test_random_tables_are_written_as_pandas_writes_them(frame, header, date_format):
    _fast(frame, header=header, date_format=date_format)
