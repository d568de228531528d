"""Paths given on the command line, checked before any work (docs/contract.md §Exit codes).

* :func:`symlink_loop` — whether a path is, or runs through, a symbolic link that leads back
  to itself (``Path.resolve()`` raises ``RuntimeError: Symlink loop`` on Python 3.11, ``OSError``
  ELOOP on later versions: an exit 3 wherever a command resolves it).
* :func:`check_no_symlink_loop` — the same as bad input: :class:`BadInputError` (exit 2) with
  one line naming the option. ``kenshin.cli.handles_bad_input`` calls it for every path option
  of every command.
* :func:`check_writable_folder` — a folder a command will write into (or, while it does not
  exist, its nearest existing ancestor) must take a file: tried with a probe file
  (:func:`data.files.require_writable`; ``os.access`` says yes to root and on read-only
  mounts), else bad input, before any work.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from kenshin.errors import BadInputError

__all__ = ["check_no_symlink_loop", "check_writable_folder", "same_device", "symlink_loop"]


def symlink_loop(path: Path | str) -> bool:
    """True when ``path`` (or a folder on the way to it) is a symbolic link loop."""
    try:
        Path(path).resolve()
    except RuntimeError:  # Python ≤ 3.12: "Symlink loop from …"
        return True
    except OSError as exc:  # Python ≥ 3.13 raises the ELOOP itself
        return exc.errno == errno.ELOOP
    return False


def check_no_symlink_loop(path: Path | str | None, what: str = "path") -> None:
    """Stop with one line (exit 2) when ``path`` is a symbolic link loop; ``what`` names it
    (``--out``, ``BUNDLE``)."""
    if path is not None and symlink_loop(path):
        raise BadInputError(
            f"{what} {path}: a symbolic link that leads back to itself (symlink loop); nothing "
            "was done — give a real folder"
        )


def check_writable_folder(folder: Path | str, what: str) -> None:
    """Stop with one line (exit 2) unless a file can be created in ``folder`` (or, while it
    does not exist, in its nearest existing ancestor)."""
    from data.files import require_writable

    require_writable(Path(folder), f"{what} {folder}")


def same_device(a: Path | str, b: Path | str) -> bool:
    """Whether two existing paths are on the same file system (a rename between them works)."""
    return os.stat(a).st_dev == os.stat(b).st_dev
