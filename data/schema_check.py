"""A table checked against its pandera schema, pandera's machinery skipped when it surely passes.

pandera stays the reference: :func:`validated` returns ``schema.validate(frame)`` unless every
rule of the schema is one this module can evaluate in one vectorised pass and every such rule
holds — then the frame is returned as it is (what pandera would return: no column needs
coercing, no row is dropped). Anything else (a rule not understood here, a failing rule, a
column to coerce) goes to pandera, which gives its own verdict and message. So this module
can only make a valid table cheaper to accept; it never accepts what pandera would refuse
(tests/data/test_schema_check.py).

Why: a scoring chunk's rows cross three contracts (stored checkups, features, scores), and
pandera's per-column, per-check machinery took ≈ 0.5 s of a 41,519-resident chunk's ≈ 4.7 s;
its 134,867 stored checkup rows: pandera 0.14-0.33 s, here 0.08 s (bench/README.md "What the
1.51 measured").

Rules understood: column presence (``required``), dtype (pandera's own dtype check), nullable,
column ``unique``, the built-in checks ``in_range``, ``greater_than(_or_equal_to)``,
``less_than(_or_equal_to)``, ``equal_to``, ``not_equal_to``, ``isin``, ``notin``; custom checks
(a function of the column, or of the table) whose answer is a plain boolean array or bool;
schema ``unique``, ``strict`` and ``ordered``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.core.arrays.masked import BaseMaskedArray
from pandera.api.function_dispatch import Dispatcher
from pandera.engines import pandas_engine

__all__ = ["surely_valid", "validated"]


def validated(schema: pa.DataFrameSchema, frame: pd.DataFrame, lazy: bool = False) -> pd.DataFrame:
    """``schema.validate(frame, lazy=lazy)``, or ``frame`` itself when :func:`surely_valid`."""
    if surely_valid(schema, frame):
        return frame
    return schema.validate(frame, lazy=lazy)


def surely_valid(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    """True only when ``frame`` passes ``schema`` as it is: every rule understood and holding.

    False means "ask pandera" (it may still pass, e.g. after coercing a column)."""
    try:
        return _surely_valid(schema, frame)
    except Exception:  # any surprise here is pandera's to judge
        return False


def _surely_valid(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    if not isinstance(frame, pd.DataFrame) or not _plain_schema(schema):
        return False
    names = list(frame.columns)
    if len(set(names)) != len(names) or not all(isinstance(c, str) for c in names):
        return False
    declared = schema.columns
    if schema.strict is True and any(c not in declared for c in names):
        return False
    if schema.strict not in (True, False):  # "filter" drops columns
        return False
    present = [c for c in declared if c in frame.columns]
    if schema.ordered and [c for c in names if c in declared] != present:
        return False
    for name, column in declared.items():
        if name not in frame.columns:
            if column.required:
                return False
            continue
        if not _column_holds(column, frame[name], bool(schema.coerce)):
            return False
    if schema.unique and frame.duplicated(subset=list(schema.unique)).any():
        return False
    return all(_custom_holds(check, frame) for check in schema.checks)


def _plain_schema(schema: pa.DataFrameSchema) -> bool:
    """No rule that changes the table or that this module does not evaluate."""
    return (
        schema.index is None
        and schema.dtype is None
        and not schema.parsers
        and not schema.add_missing_columns
        and not schema.drop_invalid_rows
        and not isinstance(schema.unique, str)
    )


def _column_holds(column: pa.Column, s: pd.Series, schema_coerce: bool = False) -> bool:
    if column.regex or column.parsers or column.drop_invalid_rows:
        return False
    if column.dtype is not None:
        dtype = pandas_engine.Engine.dtype(s.dtype)
        # a column pandera coerces comes back in exactly its declared type (text held as
        # ``object`` becomes ``string``): only a column already of that type is left as it is
        if (column.coerce or schema_coerce) and dtype != column.dtype:
            return False
        if not column.dtype.check(dtype):
            return False  # pandera refuses it
    data, missing = _data_and_missing(s)
    if not column.nullable and missing.any():
        return False
    if column.unique and s.duplicated().any():
        return False
    if not column.checks:
        return True
    some_missing = bool(missing.any())
    numbers = None if data is None else (data[~missing] if some_missing else data)
    present = s[~missing] if some_missing else s  # pandera's ``ignore_na``
    return all(_check_holds(check, numbers, present) for check in column.checks)


def _data_and_missing(s: pd.Series) -> tuple[np.ndarray | None, np.ndarray]:
    """A numeric column's values as a NumPy array (``None`` for any other column) and where it
    is missing, without pandas' per-dtype machinery."""
    arr = s.array
    if isinstance(arr, BaseMaskedArray):
        data = arr._data
        return (data if data.dtype.kind in "iuf" else None), arr._mask
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
        data = s.to_numpy()
        missing = np.isnan(data) if data.dtype.kind == "f" else np.zeros(len(data), dtype=bool)
        return data, missing
    return None, s.isna().to_numpy()


_ORDER = {
    "greater_than_or_equal_to": lambda v, st: v.min() >= st["min_value"],
    "greater_than": lambda v, st: v.min() > st["min_value"],
    "less_than_or_equal_to": lambda v, st: v.max() <= st["max_value"],
    "less_than": lambda v, st: v.max() < st["max_value"],
    "equal_to": lambda v, st: v.min() == st["value"] and v.max() == st["value"],
    "not_equal_to": lambda v, st: not (v == st["value"]).any(),
}


def _check_holds(check: pa.Check, numbers: np.ndarray | None, present: pd.Series) -> bool:
    """One column check on the column's non-missing values (pandera's ``ignore_na``):
    ``numbers`` as NumPy (numeric columns only), ``present`` as the Series pandera passes."""
    if check.groupby is not None or check.element_wise or not check.ignore_na:
        return False
    if not len(present):
        return True
    st = check.statistics or {}
    if isinstance(check._check_fn, Dispatcher):  # a built-in check: by its statistics
        if check.name in ("isin", "notin"):
            listed = set(st["allowed_values" if check.name == "isin" else "forbidden_values"])
            seen = pd.unique(present.to_numpy() if numbers is None else numbers)
            inside = [v in listed for v in seen]
            return all(inside) if check.name == "isin" else not any(inside)
        if numbers is None:
            return False
        if check.name == "in_range":
            lo, hi = numbers.min(), numbers.max()
            low_ok = lo >= st["min_value"] if st["include_min"] else lo > st["min_value"]
            high_ok = hi <= st["max_value"] if st["include_max"] else hi < st["max_value"]
            return bool(low_ok and high_ok)
        if check.name in _ORDER:
            return bool(_ORDER[check.name](numbers, st))
        return False
    return _custom_holds(check, present)


def _custom_holds(check: pa.Check, obj) -> bool:
    """A custom check: its function's answer must be a plain ``bool`` or an all-True bool
    array (a nullable answer is left to pandera)."""
    if isinstance(check._check_fn, Dispatcher) or check.groupby is not None or check.element_wise:
        return False
    out = check._check_fn(obj, **(check._check_kwargs or {}))
    if isinstance(out, (bool, np.bool_)):
        return bool(out)
    arr = out.to_numpy() if isinstance(out, (pd.Series, pd.DataFrame)) else np.asarray(out)
    return arr.dtype == np.bool_ and bool(arr.all())
