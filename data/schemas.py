"""Declared schemas of what ingest writes to the store (pandera), checked on write and on read.

The store is the contract between ``data`` and every later stage: pseudonymised, typed,
one row per person per checkup date.
"""

from __future__ import annotations

import re

import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandera.typing import Series

from data.pseudonym import PSEUDONYM_LENGTH
from data.validate import CODES, RANGES

_PSEUDONYM = rf"^[0-9a-f]{{{PSEUDONYM_LENGTH}}}$"


def matches(pattern: str) -> pa.Check:
    """pandera's ``str_matches(pattern)`` (``pattern`` anchored with ``^…$``), matched in Arrow
    (RE2) in one pass over the column: pandera's own calls Python's ``re`` once a row, the
    largest part of checking a chunk's pseudonyms. RE2's ``$`` is the end of the text (Python's
    also matches before a final newline), so it is the stricter of the two."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"pattern {pattern!r} is not anchored")
    compiled = re.compile(pattern)

    def matched(s: pd.Series) -> pd.Series:
        try:
            text = pyarrow.array(s.to_numpy(dtype=object, na_value=None), type=pyarrow.string())
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError):  # not text: row by row
            return s.map(lambda v: isinstance(v, str) and compiled.match(v) is not None)
        ok = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        return pd.Series(ok.to_numpy(zero_copy_only=False), index=s.index)

    return pa.Check(matched, name="str_matches", error=f"str_matches('{pattern}')")


def _range_checks() -> dict[str, pa.Column]:
    cols = {}
    for col, (lo, hi, _, _) in RANGES.items():
        dtype = "Int16" if col in ("sbp", "dbp") else "float64"
        cols[col] = pa.Column(dtype, pa.Check.in_range(lo, hi), nullable=True)
    for col, allowed in CODES.items():
        if col == "sex":
            continue
        cols[col] = pa.Column("Int8", pa.Check.isin(allowed), nullable=True)
    return cols


#: Stored checkups (健診結果): one row per pseudonym and exam date.
StoredCheckups = pa.DataFrameSchema(
    {
        "pseudonym": pa.Column("string", matches(_PSEUDONYM)),
        "exam_date": pa.Column("datetime64[ns]"),
        "fiscal_year": pa.Column("Int16"),
        "age": pa.Column("Int16", pa.Check.in_range(18, 120)),
        "sex": pa.Column("Int8", pa.Check.isin((1, 2))),
        **_range_checks(),
        "soft_flags": pa.Column("string", nullable=True),
    },
    unique=["pseudonym", "exam_date"],
    strict=False,
    coerce=False,
    name="checkups",
)


class StoredEnrollment(pa.DataFrameModel):
    """NHI membership periods (資格期間), pseudonymised."""

    pseudonym: Series[str] = pa.Field(str_matches=_PSEUDONYM)
    enrolled_from: Series[pa.DateTime]
    enrolled_until: Series[pa.DateTime] = pa.Field(nullable=True)
    end_reason: Series[str] = pa.Field(nullable=True)

    @pa.dataframe_check
    def period_ordered(cls, df):
        return ~(df["enrolled_until"] < df["enrolled_from"])

    class Config:
        strict = False
        coerce = True


class Rejects(pa.DataFrameModel):
    """Quarantined rows: one reason each, with file, row and column (no raw identifiers)."""

    table: Series[str] = pa.Field(isin=["checkups", "enrollment", "contacts"])
    source_file: Series[str]
    source_row: Series[int] = pa.Field(ge=1)
    column: Series[str] = pa.Field(nullable=True)
    reason: Series[str]
    value: Series[str] = pa.Field(nullable=True)
    pseudonym: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = True
