"""Writing Typst documents from Jinja2 templates, with data never read as markup.

Shared by the advice letters (:mod:`scoring.letters.render`) and the staff report's PDF
(:mod:`scoring.report.pdf`). A template writes Typst source; every ``{{ value }}`` goes
through :func:`typst_value` (Jinja's ``finalize``): text is escaped so that it prints exactly as
written, numbers are written as numbers. ``{{ x|quote }}`` writes a Typst string literal (for a
function argument; strings are never read as markup). Only :class:`markupsafe.Markup` passes
through unchanged: it is for Typst source the code built itself.

(Not named ``typst.py``: that would shadow the ``typst`` package.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import jinja2
from markupsafe import Markup

__all__ = ["environment", "typst_string", "typst_text", "typst_value"]

#: Typst's markup characters are all ASCII punctuation: each gets a backslash in every value
#: written into a document, so that data is never read as markup (``*``, ``#``, ``$``, ``//`` …).
_TYPST_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def typst_text(value: object) -> str:
    """``value`` as Typst markup that prints exactly as written (line breaks become spaces)."""
    return _TYPST_SPECIAL.sub(r"\\\1", " ".join(str(value).splitlines()))


def typst_string(value: object) -> Markup:
    """Jinja filter ``quote``: ``value`` as a Typst string literal (a function argument)."""
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return Markup('"' + s.replace("\r", "").replace("\n", "\\n") + '"')


def typst_value(value: object) -> str | Markup:
    """Jinja ``finalize``: what ``{{ value }}`` writes into the Typst source."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a Typst document cannot show the number {value}")
        return f"{value:.3f}"
    return typst_text(value)


def environment(
    folder: Path | str, *, clean: Callable[[str], str] | None = None
) -> jinja2.Environment:
    """A Jinja2 environment for the Typst templates in ``folder`` (escaping as above).

    ``clean``, if given, is applied to every text before it is escaped or quoted (the report
    replaces characters its font lacks this way).
    """
    finalize, quote = typst_value, typst_string
    if clean is not None:

        def finalize(value: object) -> str | Markup:
            if isinstance(value, str) and not isinstance(value, Markup):
                value = clean(value)
            return typst_value(value)

        def quote(value: object) -> Markup:
            return typst_string(clean(str(value)))

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=False,  # typst_value escapes every value for Typst instead
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["quote"] = quote
    return env
