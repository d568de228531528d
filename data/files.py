"""Atomic file writes shared by every stage that writes outputs (letters, reports, scores)."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

try:  # what pandas' to_csv makes of a column before the csv module writes it
    from pandas.core.indexes.base import get_values_for_csv as _get_values_for_csv
except ImportError:  # another pandas: csv_bytes writes with to_csv only
    _get_values_for_csv = None

__all__ = [
    "atomic_write",
    "csv_bytes",
    "neutralise_formulas",
    "pid_lock",
    "require_writable",
    "unwritable_reason",
]

#: A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START_RE = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in FORMULA_STARTS) + "]"


def _neutralised_column(s: pd.Series) -> pd.Series | None:
    """``s`` with a ``'`` before every text cell a spreadsheet would run as a formula; ``None``
    when ``s`` is not a text column or has no such cell."""
    if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
        return None
    if isinstance(s.dtype, pd.StringDtype):  # str or NA: most columns have no risky cell
        try:
            text = pa.array(s.to_numpy(dtype=object, na_value=None), type=pa.string())
        except (pa.ArrowException, UnicodeError):  # not UTF-8 (a lone surrogate): below
            pass
        else:
            if not pc.any(pc.match_substring_regex(text, _FORMULA_START_RE)).as_py():
                return None
    text = s.astype("string")
    risky = text.str.startswith(FORMULA_STARTS).fillna(False).to_numpy(dtype=bool)
    if not risky.any():
        return None
    return s.astype(object).where(~risky, "'" + text.astype(object))


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading ``'`` (OWASP rule).

    Only text columns are touched: a negative number stays a number.
    """
    out = frame.copy()
    for col in out.columns:
        safe = _neutralised_column(out[col])
        if safe is not None:
            out[col] = safe
    return out


def _safe_header(frame: pd.DataFrame) -> list:
    return [("'" + c) if str(c).startswith(FORMULA_STARTS) else c for c in frame.columns]


def csv_bytes(frame: pd.DataFrame, **to_csv) -> bytes:
    """A table as UTF-8 CSV that is safe to open in a spreadsheet.

    The bytes are those of pandas' ``to_csv(index=False, lineterminator="\\n", **to_csv)`` of
    the neutralised table (:func:`_csv_bytes_pandas`); the usual case (``to_csv`` at most
    ``header=True/False`` and ``date_format``) is written column by column with Arrow
    (:func:`_csv_bytes_fast`), several times faster (float64 formatting is most of pandas'
    time), and anything that path does not handle falls back to pandas.
    """
    fast = _csv_bytes_fast(frame, **to_csv)
    return fast if fast is not None else _csv_bytes_pandas(frame, **to_csv)


def _csv_bytes_pandas(frame: pd.DataFrame, **to_csv) -> bytes:
    """The reference: pandas' CSV writer on the neutralised table."""
    safe = neutralise_formulas(frame).set_axis(_safe_header(frame), axis=1)
    return safe.to_csv(index=False, lineterminator="\n", **to_csv).encode("utf-8")


# --- the fast path ------------------------------------------------------------------------
#
# pandas writes a cell with the standard csv module (QUOTE_MINIMAL, quotechar '"', doubled
# quotes, lineterminator "\n") after ``get_values_for_csv``: float64 through numpy's
# ``astype(str)`` (shortest round-trip repr, most of its time), NaN/NA/NaT as "", ints as
# ``str``, the rest as pandas makes them. Here float64 goes through Arrow's cast to string
# (the same shortest digits) with numpy's layout restored, ints through Arrow's cast, bools as
# True/False, and every other column through pandas' own ``get_values_for_csv``; a text cell
# the csv module would quote (or any cell that is not a str) is encoded by the csv module
# itself. Rows are joined by Arrow.


def _csv_field(value) -> str:
    """One cell exactly as pandas' csv writer writes it (quoted when it must be)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL, quotechar='"').writerow(
        [value, ""]
    )
    return buf.getvalue()[:-2]  # the second (empty) field keeps a lone "" from being quoted


@functools.cache
def _quote_pattern() -> str:
    """An RE2 class of the characters that make the csv module quote a text cell (probed:
    ``,`` ``"`` and ``\\n`` on CPython 3.11), anywhere in the cell."""
    probes = [*map(chr, range(256)), "\u2028", "\u2029", "\u3000"]
    quoted = [
        c for c in probes if any(_csv_field(t) != t for t in (c, "a" + c, c + "a", "a" + c + "b"))
    ]
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in quoted) + "]"


def _text_cells(values: np.ndarray) -> pa.Array:
    """CSV cells of an object array as pandas' ``get_values_for_csv`` leaves it."""
    cells = list(values)
    other = [i for i, v in enumerate(cells) if type(v) is not str]  # the csv module's own
    for i in other:
        cells[i] = ""
    text = _quoted(pa.array(cells, type=pa.string()), lambda: cells)
    if not other:
        return text
    mask = np.zeros(len(cells), dtype=bool)
    mask[other] = True
    encoded = pa.array([_csv_field(values[i]) for i in other], type=pa.string())
    return pc.replace_with_mask(text, pa.array(mask), encoded)


def _quoted(text: pa.Array, values) -> pa.Array:
    """``text`` (str cells) with each cell the csv module would quote encoded by it;
    ``values()`` gives the cells as a list."""
    needs = pc.fill_null(pc.match_substring_regex(text, _quote_pattern()), False)
    if not pc.any(needs).as_py():
        return text
    cells = values()
    where = np.flatnonzero(needs.to_numpy(zero_copy_only=False))
    encoded = pa.array([_csv_field(cells[i]) for i in where], type=pa.string())
    return pc.replace_with_mask(text, needs, encoded)


#: Where Arrow's cast of a float64 to text writes positional digits (as numpy does): numpy's
#: text of x (numpy writes positional digits for 1e-4 ≤ |x| < 1e16) is Arrow's, with ".0"
#: after an integral value. Checked once a process by :func:`_arrow_positional`.
_ARROW_POSITIONAL = (1e-4, 1e9)


@functools.cache
def _arrow_positional() -> bool:
    """Whether this Arrow writes the floats of ``_ARROW_POSITIONAL`` as the fast path expects."""
    lo, hi = _ARROW_POSITIONAL
    probe = np.array([lo, np.nextafter(lo, 1), 0.1 + 0.2, 1.0, 2.5, 123456.789, -0.0, 0.0])
    probe = np.concatenate([probe, -probe, [np.nextafter(hi, 0), hi - 1, hi / 3]])
    got = pc.cast(pa.array(probe), pa.string()).to_pylist()
    return got == [t.removesuffix(".0") for t in probe.astype(str)]


def _float_cells(values: np.ndarray) -> pa.Array | None:
    """CSV cells of a float64 array: ``values.astype(str)``, NaN as null (pandas' cells)."""
    if not _arrow_positional():
        return None
    arr = pc.cast(pa.array(values, from_pandas=True), pa.string())
    # Arrow writes the shortest round-trip digits, as numpy does, but lays them out its own
    # way: "3" for 3.0, and exponents outside _ARROW_POSITIONAL. Inside it, numpy's text is
    # Arrow's with ".0" after an integral value; outside it (rare in scores), numpy's own.
    lo, hi = _ARROW_POSITIONAL
    with np.errstate(invalid="ignore"):
        mag = np.abs(values)
        arrow = ((mag >= lo) & (mag < hi)) | (values == 0)
        integral = arrow & (values == np.trunc(values))
    if integral.any():
        mask = pa.array(integral)
        end = 1 << 62  # past the end of every cell: append
        point0 = pc.binary_replace_slice(arr.filter(mask), start=end, stop=end, replacement=".0")
        arr = pc.replace_with_mask(arr, mask, point0)
    own = ~arrow & ~np.isnan(values)
    if own.any():
        arr = pc.replace_with_mask(arr, pa.array(own), pa.array(values[own].astype(str)))
    return arr


def _cells(s: pd.Series, date_format) -> pa.Array:
    """A column's CSV cells as Arrow strings (null for an empty cell)."""
    values = s._values
    if isinstance(values, np.ndarray):
        if values.dtype == np.float64:
            cells = _float_cells(values)
            if cells is not None:
                return cells
        elif values.dtype.kind in "iu":
            return pc.cast(pa.array(values), pa.string())
        elif values.dtype.kind == "b":
            return pa.array(np.where(values, "True", "False"), type=pa.string())
    elif isinstance(s.dtype, pd.StringDtype):  # str or NA
        text = pa.array(s.to_numpy(dtype=object, na_value=None), type=pa.string())
        return _quoted(text, text.to_pylist)
    out = _get_values_for_csv(
        values,
        date_format=date_format,
        na_rep="",
        quoting=csv.QUOTE_MINIMAL,
        float_format=None,
        decimal=".",
    )
    return _text_cells(np.asarray(out, dtype=object).ravel())


def _csv_bytes_fast(frame: pd.DataFrame, header=True, date_format=None, **rest) -> bytes | None:
    """:func:`_csv_bytes_pandas`'s bytes, or ``None`` when this path does not handle the
    table or the arguments (then pandas writes it)."""
    if (
        rest
        or _get_values_for_csv is None
        or not isinstance(header, bool)
        or isinstance(frame.columns, pd.MultiIndex)
        or frame.shape[1] < 2  # a lone empty cell is written "" by the csv module
        or frame.shape[0] == 0
    ):
        return None
    try:
        cols, text = [], []
        for i in range(frame.shape[1]):
            s = frame.iloc[:, i]
            safe = _neutralised_column(s)
            cols.append(_cells(s if safe is None else safe, date_format))
            # a number's cell never holds a quote: only the others are looked at for one
            numeric = isinstance(s._values, np.ndarray) and s._values.dtype.kind in "iufb"
            if not numeric or safe is not None:
                text.append(cols[-1])
        body = _joined(cols, text)
    except (pa.ArrowException, UnicodeError):  # e.g. a lone surrogate, over 2 GiB of text
        return None
    if not header:
        return body
    names = frame.iloc[:0].set_axis(_safe_header(frame), axis=1)
    return names.to_csv(index=False, lineterminator="\n").encode("utf-8") + body


def _joined(cols: list[pa.Array], text: list[pa.Array]) -> bytes:
    """Cells (Arrow strings, null for empty) joined into CSV rows: by Arrow's CSV writer,
    told never to quote (≈ 0.1 s for 41,519 scores rows against ≈ 0.2-0.5 s for an
    element-wise join), unless a cell of ``text`` (the columns that may hold one) is already
    quoted or a cell holds a character that writer refuses unquoted (``,`` ``"`` CR LF; e.g. a
    bare CR, which the csv module leaves as it is): then the element-wise join."""
    import pyarrow.csv as pa_csv

    if not any(pc.any(pc.match_substring(c, '"')).as_py() for c in text if c.null_count < len(c)):
        table = pa.Table.from_arrays(cols, names=[str(i) for i in range(len(cols))])
        sink = io.BytesIO()
        options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
        try:
            pa_csv.write_csv(table, sink, options)
            return sink.getvalue()
        except pa.ArrowInvalid:  # a bare CR (or another structural character)
            pass
    rows = pc.binary_join_element_wise(*cols, ",", null_handling="replace", null_replacement="")
    lines = pc.binary_join_element_wise(rows, "\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset :]
    return lines.buffers()[2][offsets[0] : offsets[len(lines)]].to_pybytes()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` via a temp file created with ``mode`` in the same folder, then rename.

    A crash leaves either the old file or the new one, never half a file; the temp file
    (``.<name>.<pid>.tmp``) is created with its final permissions, so owner-only data is never
    readable by others, not even for a moment.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def unwritable_reason(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (or, while it does not exist, in its nearest
    existing ancestor, which must be a folder); ``None`` when one can.

    Tried with a probe file, removed at once: ``os.access`` says yes to root and on read-only
    mounts.
    """
    here = Path(os.path.abspath(folder))
    while not os.path.lexists(here) and here.parent != here:
        here = here.parent
    if not here.is_dir():
        return f"{here} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".kenshin-write-check-", dir=here)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def require_writable(
    folder: Path, where: str, what: str = "there", fix: str = "choose a writable folder"
) -> None:
    """Bad input (exit 2, one line: ``<where>: cannot write <what> (<reason>); nothing was done
    — <fix>``) unless :func:`unwritable_reason` finds ``folder`` writable; called before any
    work."""
    from data.errors import BadInputError

    reason = unwritable_reason(folder)
    if reason:
        raise BadInputError(f"{where}: cannot write {what} ({reason}); nothing was done — {fix}")


@contextlib.contextmanager
def pid_lock(path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created owner-only, holding our pid) for the
    block; when another process holds it, raise ``busy(holder's pid)``.

    The kernel releases the lock when its holder dies, so a killed run never leaves a stale
    lock. The file stays (removing it would let a third process lock a new file while the
    second still holds the old one).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise busy(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
