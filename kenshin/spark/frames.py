"""Frames across the pandas ↔ Spark edge, exactly as the pandas engine has them.

Spark drops pandas' dtypes (nullable ``Int8``/``Int16``, ``string``) and cannot read the
store's nanosecond timestamps as timestamps. So dates cross as int64 nanoseconds since the
epoch (exact), and every frame is cast back to the dtypes the pandas engine sees: the stored
checkups to the dtypes of the store's own Parquet schema (:func:`stored_dtypes`), outputs to
the dtypes of the same function run on a small sample on the driver (:func:`spark_schema`).
With this the pandas code inside ``applyInPandas`` gets byte-for-byte the frame
``data.store.read_checkup_history`` gives it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

__all__ = ["from_spark", "spark_schema", "stored_dtypes", "to_spark", "to_stored"]


def stored_dtypes(store: Path) -> dict[str, str]:
    """Column → pandas dtype of the stored checkups, in the order of read_checkup_history."""
    parts = sorted((Path(store) / "checkups").glob("fiscal_year=*/*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{store}/checkups holds no Parquet part")
    empty = pq.read_schema(parts[-1]).empty_table().to_pandas()
    dtypes = {c: str(t) for c, t in empty.dtypes.items()}
    cols = list(dtypes)
    cols.insert(2, "fiscal_year")
    dtypes["fiscal_year"] = "Int16"
    return {c: dtypes[c] for c in cols}


def _is_datetime(dtype: str) -> bool:
    return dtype.startswith("datetime64")


def to_stored(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """A Spark-side pandas frame cast to ``dtypes`` (dates from int64 nanoseconds)."""
    out = {}
    for col, dtype in dtypes.items():
        s = frame[col]
        if _is_datetime(dtype):
            ns = pd.to_numeric(s, errors="coerce").astype("Int64")
            values = ns.to_numpy(dtype="int64", na_value=np.iinfo("int64").min)
            out[col] = pd.Series(values.view("datetime64[ns]"), index=frame.index)
        elif dtype in ("string", "object") or dtype.startswith("string"):
            try:
                out[col] = s.astype(dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{col}: {s.dtype} → {dtype}: {e}") from None
        elif dtype == "bool":
            out[col] = s.astype("bool")
        else:
            try:
                out[col] = s.astype(dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{col}: {s.dtype} → {dtype}: {e}") from None
    return pd.DataFrame(out, index=frame.index)


def to_spark(frame: pd.DataFrame) -> pd.DataFrame:
    """A pandas frame Spark can take: dates as int64 nanoseconds (nullable: Int64)."""
    out = frame.copy()
    for col in out.columns:
        if _is_datetime(str(out[col].dtype)):
            values = out[col].to_numpy(dtype="datetime64[ns]").view("int64")
            mask = out[col].isna().to_numpy()
            out[col] = pd.arrays.IntegerArray(np.where(mask, 0, values), mask)
    return out


def from_spark(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """Spark's result back in the pandas engine's dtypes and column order."""
    return to_stored(frame, dtypes)


_SPARK_TYPES = {
    "int8": "tinyint", "Int8": "tinyint", "int16": "smallint", "Int16": "smallint",
    "int32": "int", "Int32": "int", "int64": "bigint", "Int64": "bigint",
    "float32": "float", "Float32": "float", "float64": "double", "Float64": "double",
    "bool": "boolean", "boolean": "boolean", "string": "string", "object": "string",
}  # fmt: skip


def spark_schema(sample: pd.DataFrame) -> tuple[str, dict[str, str]]:
    """(Spark DDL schema, pandas dtypes) of frames like ``sample`` (dates as bigint)."""
    fields, dtypes = [], {}
    for col, dtype in sample.dtypes.items():
        name = str(dtype)
        dtypes[str(col)] = name
        if _is_datetime(name):
            kind = "bigint"
        elif name.startswith("string"):
            kind = "string"
        elif name in _SPARK_TYPES:
            kind = _SPARK_TYPES[name]
        else:
            raise TypeError(f"column {col}: dtype {name} has no Spark type here")
        fields.append(f"`{col}` {kind}")
    return ", ".join(fields), dtypes
