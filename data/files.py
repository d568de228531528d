"""Atomic file writes shared by every stage that writes outputs (letters, reports, scores)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["atomic_write", "csv_bytes", "neutralise_formulas", "unwritable_reason"]

#: A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading ``'`` (OWASP rule).

    Only text columns are touched: a negative number stays a number.
    """
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_STARTS).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            out[col] = s.astype(object).where(~risky, "'" + text.astype(object))
    return out


def csv_bytes(frame: pd.DataFrame, **to_csv) -> bytes:
    """A table as UTF-8 CSV that is safe to open in a spreadsheet."""
    header = [("'" + c) if str(c).startswith(FORMULA_STARTS) else c for c in frame.columns]
    safe = neutralise_formulas(frame).set_axis(header, axis=1)
    return safe.to_csv(index=False, lineterminator="\n", **to_csv).encode("utf-8")


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
