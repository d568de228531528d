"""data.schema_check: a table is only ever accepted without pandera when pandera accepts it.

The schema below has one rule of every kind the module evaluates itself. Valid tables are
accepted on the fast path; tables with one hostile change (a value out of range or not a
code, a missing value, infinity, a wrong type, a duplicate key, an extra, missing or moved
column) are either accepted by pandera too or left to pandera, which refuses them with its
own error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera.errors import SchemaError, SchemaErrors

from data.schema_check import surely_valid, validated
from data.schemas import matches

SCHEMA = pa.DataFrameSchema(
    {
        "key": pa.Column("string", matches(r"^[a-f]{4}$")),
        "code": pa.Column("Int16", pa.Check.isin([1, 2, 3])),
        "low": pa.Column(
            "float64", pa.Check.in_range(0, 10, include_min=False, include_max=False), nullable=True
        ),
        "high": pa.Column("float64", [pa.Check.gt(0), pa.Check.lt(100)], nullable=True),
        "count": pa.Column("int64", [pa.Check.ge(0), pa.Check.le(5)]),
        "serial": pa.Column("int64", unique=True),
        "finite": pa.Column("float64", pa.Check(np.isfinite)),
        "label": pa.Column("string", pa.Check.notin(["bad"]), nullable=True, coerce=True),
        "one": pa.Column("float64", [pa.Check.eq(1.0), pa.Check.ne(2.0)], required=False),
        "day": pa.Column("datetime64[ns]"),
    },
    checks=[pa.Check(lambda df: df["low"].fillna(0) <= df["high"].fillna(100))],
    unique=["key", "code"],
    strict=True,
    ordered=True,
)


def _key(i: int) -> str:
    """The i-th four-letter key of a-f (distinct for i < 1,296)."""
    return "".join("abcdef"[(i // 6**p) % 6] for p in range(4))


def _valid(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    low = rng.uniform(0.1, 9.9, n)
    return pd.DataFrame(
        {
            "key": pd.array([_key(i) for i in range(n)], dtype="string"),
            "code": pd.array(rng.integers(1, 4, n), dtype="Int16"),
            "low": np.where(rng.uniform(size=n) < 0.2, np.nan, low),
            "high": low + rng.uniform(0.1, 50, n),
            "count": rng.integers(0, 6, n),
            "serial": np.arange(n, dtype="int64"),
            "finite": rng.normal(size=n),
            "label": pd.array(rng.choice(["ok", "fine", None], n), dtype="string"),
            "one": np.ones(n),
            "day": pd.to_datetime("2025-04-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
        }
    )


HOSTILE = [
    np.nan, np.inf, -np.inf, 0.0, -1.0, 10.0, 100.0, 1e300, 2.0, 4, 7, None, pd.NA, "bad",
    "ABCD", "abcd\n", "",
]  # fmt: skip


def _pandera_accepts(frame: pd.DataFrame) -> bool:
    """Whether pandera accepts ``frame`` as it is (returns the same table: nothing coerced)."""
    try:
        checked = SCHEMA.validate(frame)
    except (SchemaError, SchemaErrors):
        return False
    pd.testing.assert_frame_equal(checked, frame)  # the fast path returns ``frame`` itself
    return True


@st.composite
def _changed(draw) -> pd.DataFrame:
    frame = _valid(draw(st.integers(1, 24)), draw(st.integers(0, 10**6)))
    kind = draw(st.sampled_from(["cell", "duplicate", "extra", "drop", "move", "retype"]))
    col = draw(st.sampled_from(list(frame.columns)))
    if kind == "cell":
        row = draw(st.integers(0, len(frame) - 1))
        value = draw(st.sampled_from(HOSTILE))
        values = frame[col].astype(object).to_numpy()
        values[row] = value
        try:  # keep the column's type where the value fits it (else it becomes object)
            frame[col] = pd.array(values, dtype=frame[col].dtype)
        except (TypeError, ValueError, OverflowError):
            frame[col] = values
    elif kind == "duplicate":  # the key (key, code) twice, or the whole row
        frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
        if draw(st.booleans()):
            frame["serial"] = np.arange(len(frame), dtype="int64")
    elif kind == "extra":
        frame["extra"] = 1.0
    elif kind == "drop":
        frame = frame.drop(columns=col)
    elif kind == "move":
        frame = frame[[c for c in frame.columns if c != col] + [col]]
    else:
        try:
            frame[col] = frame[col].astype(draw(st.sampled_from(["object", "float32", "string"])))
        except (TypeError, ValueError):  # text as float32
            frame[col] = frame[col].astype("object")
    return frame


def test_valid_tables_take_the_fast_path():
    for seed in range(5):
        frame = _valid(200, seed)
        assert _pandera_accepts(frame)
        assert surely_valid(SCHEMA, frame)
        assert validated(SCHEMA, frame) is frame
    assert surely_valid(SCHEMA, _valid(50, 1).drop(columns="one"))  # not required


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_changed())
def test_the_fast_path_never_accepts_what_pandera_refuses(frame):
    if surely_valid(SCHEMA, frame):
        assert _pandera_accepts(frame)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(low=f["low"].where(f.index != 3, 10.0)),  # the excluded maximum
        lambda f: f.assign(high=f["high"].where(f.index != 3, np.inf)),
        lambda f: f.assign(finite=f["finite"].where(f.index != 3, np.nan)),  # not nullable
        lambda f: f.assign(code=f["code"].where(f.index != 3, 4).astype("Int16")),
        lambda f: f.assign(key=f["key"].where(f.index != 3, "abcd\n")),  # RE2's strict "$"
        lambda f: f.assign(label=f["label"].where(f.index != 3, "bad")),
        lambda f: f.assign(serial=0),
        lambda f: f.assign(high=f["low"] - 0.05),  # the table check
        lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True),
        lambda f: pd.concat([f, f.iloc[[0]].assign(serial=-1)], ignore_index=True),  # (key, code)
    ],
)
def test_a_broken_rule_gets_pandera_and_its_error(change):
    frame = change(_valid(40, 3))
    assert not surely_valid(SCHEMA, frame)
    with pytest.raises((SchemaError, SchemaErrors)):
        validated(SCHEMA, frame)
    with pytest.raises(SchemaErrors):
        validated(SCHEMA, frame, lazy=True)


def test_text_held_as_object_in_a_coerced_column_is_left_to_pandera():
    # pandera accepts object text as "string" but returns it converted: so must we
    frame = _valid(30, 2)
    frame["label"] = frame["label"].astype(object)
    assert not surely_valid(SCHEMA, frame)
    assert validated(SCHEMA, frame)["label"].dtype == "string"


def test_a_column_to_coerce_is_left_to_pandera():
    schema = pa.DataFrameSchema({"x": pa.Column("float64", pa.Check.ge(0), coerce=True)})
    frame = pd.DataFrame({"x": [1, 2, 3]})  # int64: pandera makes it float64
    assert not surely_valid(schema, frame)
    assert validated(schema, frame)["x"].dtype == np.float64
