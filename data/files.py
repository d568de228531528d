"""Atomic file writes shared by every stage that writes outputs (letters, reports, scores)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["atomic_write"]


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
