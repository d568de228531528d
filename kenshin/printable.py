"""Printable text from data: the one way a data-derived string reaches the terminal.

File names, ZIP member names, XML item codes, CSV headers, paths, reject reasons and error
messages come from the input and may hold anything. Printed through rich they must never be
read as console markup (``[/]`` would crash the command, ``[link=…]`` would forge output), and
terminal control characters in them must never reach the terminal (an ESC sequence can clear
the screen, retitle the window or hide lines).

* :func:`printable` — the string with every escape sequence and control character (C0, DEL,
  C1, bidirectional overrides, line separators, lone surrogates) replaced by ``�``; tabs and
  line breaks become spaces. Nothing else changes (Japanese text stays as it is).
* :func:`data_text` — the same as a :class:`rich.text.Text`: rich never parses it as markup.
  Use it for table cells, titles and any ``console.print`` of data; or print
  ``printable(...)`` with ``markup=False``.
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["REPLACEMENT", "data_text", "printable"]

REPLACEMENT = "\ufffd"

#: Escape sequences, removed whole: CSI (ESC [ or 8-bit CSI), OSC / DCS / SOS / PM / APC strings
#: (up to BEL or ST, or the end), and two-character escapes.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
#: Whitespace controls that become a plain space (the text stays on one line).
_SPACE = re.compile(r"[\t\n\r\x0b\x0c\x85\u2028\u2029]")
#: Any other control: C0, DEL, C1, bidirectional embeddings / overrides / isolates and marks,
#: and lone surrogates (undecodable file-name bytes, which the terminal cannot encode).
_CONTROL = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)


def printable(value: object) -> str:
    """``str(value)`` safe to print: escape sequences and control characters → ``�``, tabs
    and line breaks → spaces."""
    s = value if isinstance(value, str) else str(value)
    if s.isprintable():  # the common case: nothing to do (isprintable is False for all above)
        return s
    s = _SEQUENCE.sub(REPLACEMENT, s)
    s = _SPACE.sub(" ", s)
    return _CONTROL.sub(REPLACEMENT, s)


def data_text(value: object, style: str | None = None) -> Text:
    """:func:`printable` as a rich :class:`~rich.text.Text` (never read as markup)."""
    return Text(printable(value), style=style or "")
