"""How a command ends when something goes wrong (docs/contract.md §Exit codes).

* :class:`BadInputError` — a file-level or argument problem: exit code 2 and a one-line reason.
* Anything else that reaches the command line is a bug: exit code 3 and one line on stderr naming
  a log file (:func:`write_error_log`) that holds the traceback. The log holds no local
  variables, and messages of errors that quote data (pandera's failure cases) are summarised
  without the values, so no person ID, name or pseudonym reaches it through them.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from data.errors import BadInputError as BadInputError  # the bottom layer's, re-exported

#: Longest message printed on the terminal (the log has the whole message).
SHORT_MESSAGE_CHARS = 200


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line (newlines and tabs → spaces), cut to ``limit`` characters."""
    line = " ".join(str(text).split())
    if limit is not None and len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def _pandera_summary(exc: BaseException) -> str | None:
    """Schema, column and check of a pandera error, without the failing values (or None)."""
    try:
        from pandera.errors import SchemaError, SchemaErrors
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, SchemaErrors):
        fc = exc.failure_cases
        name = getattr(exc.schema, "name", None) or "schema"
        if fc is None or not len(fc):
            return f"{name}: validation failed"
        groups = fc.groupby(["column", "check"], dropna=False, sort=True).size()
        parts = [
            f"column {col!r} failed {check} ({n} case{'s' if n != 1 else ''})"
            for (col, check), n in groups.items()
        ]
        return f"{name}: " + "; ".join(parts)
    if isinstance(exc, SchemaError):
        name = getattr(exc.schema, "name", None) or "schema"
        column = getattr(exc, "column_name", None)
        check = getattr(exc, "check", None) or getattr(exc, "reason_code", None)
        fc = getattr(exc, "failure_cases", None)
        n = len(fc) if fc is not None and hasattr(fc, "__len__") else None
        where = f"column {column!r} " if column is not None else ""
        cases = f" ({n} case{'s' if n != 1 else ''})" if n is not None else ""
        prefix = "" if column is not None and name == column else f"{name}: "
        return f"{prefix}{where}failed {check}{cases}"
    return None


def safe_message(exc: BaseException) -> str:
    """The exception's message, with data-quoting messages (pandera) summarised."""
    summary = _pandera_summary(exc)
    if summary is not None:
        return summary
    try:
        return str(exc)
    except Exception:  # pragma: no cover - a broken __str__
        return f"<unprintable {type(exc).__name__}>"


def error_kind(exc: BaseException) -> str:
    """The exception's class name; qualified by its module when the name alone says nothing
    (``_csv.Error``)."""
    cls = type(exc)
    if cls.__name__ == "Error" and cls.__module__ != "builtins":
        return f"{cls.__module__}.{cls.__qualname__}"
    return cls.__name__


def short_message(exc: BaseException) -> str:
    """What the terminal shows after ``internal error: <Type>:``: one short line."""
    return one_line(safe_message(exc), SHORT_MESSAGE_CHARS) or "(no message)"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from / during, oldest first."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and not any(cur is s for s in seen):
        seen.append(cur)
        if cur.__cause__ is not None:
            cur = cur.__cause__
        elif cur.__context__ is not None and not cur.__suppress_context__:
            cur = cur.__context__
        else:
            cur = None
    return seen[::-1]


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and its chain) as Python prints it, without local variables,
    each message passed through :func:`safe_message`."""
    lines: list[str] = []
    chain = _chain(exc)
    for i, e in enumerate(chain):
        if i:
            cause = chain[i].__cause__ is chain[i - 1]
            lines.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if cause
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(e.__traceback__))
        kind = f"{type(e).__module__}.{type(e).__qualname__}"
        lines.append(f"{kind.removeprefix('builtins.')}: {safe_message(e)}\n")
    return "".join(lines)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("kenshin")
    except Exception:
        return "unknown"


def write_error_log(
    exc: BaseException,
    folders: Iterable[Path | None] = (),
    command: str = "",
    options: dict | None = None,
    now: datetime | None = None,
) -> Path:
    """Write the traceback of an internal error to ``kenshin-error-YYYYmmdd-HHMMSS.log``.

    The log goes into the first of ``folders`` that exists and can be written, else the current
    directory, else the system temp folder. Owner-only (0600); never overwrites an earlier log.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    body = (
        f"kenshin {_version()} internal error\n"
        f"time: {(now or datetime.now()).isoformat(timespec='seconds')}\n"
        f"command: kenshin {command}\n"
        + "".join(f"  --{k.replace('_', '-')}: {v!r}\n" for k, v in (options or {}).items())
        + f"python: {sys.version.split()[0]} ({platform.platform()})\n\n"
        + format_traceback(exc)
    )
    candidates = [Path(f) for f in folders if f is not None]
    candidates += [Path.cwd(), Path(tempfile.gettempdir())]
    last_error: OSError | None = None
    for folder in candidates:
        try:
            if not folder.is_dir():
                continue
            for n in range(1000):
                name = f"kenshin-error-{stamp}" + (f"-{n}" if n else "") + ".log"
                path = folder / name
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as fh:
                    fh.write(body)
                return path.resolve()
        except OSError as e:
            last_error = e
            continue
    raise OSError(f"cannot write an error log anywhere: {last_error}")
