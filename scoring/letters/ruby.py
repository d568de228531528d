"""ふりがな (ruby) for やさしい日本語 letters.

The catalogue writes readings the way plain text can: ``健診(けんしん)`` — a run of kanji
followed by its reading in parentheses. On paper, easy Japanese prints the reading small above
the kanji instead (ルビ), which keeps lines short and is what readers of やさしい日本語 expect.
:func:`ruby_segments` finds those pairs; the renderer typesets them as ruby.
"""

from __future__ import annotations

import re

__all__ = ["ruby_segments"]

#: A run of kanji (CJK ideographs, 々 and ヶ) directly followed by a reading in kana, in ASCII
#: or full-width parentheses: ``区役所(くやくしょ)``, ``1日(にち)``, ``下(さ)がる``.
_RUBY = re.compile(
    r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々ヶ]+)[(（]([\u3041-\u3096\u30a1-\u30faー]+)[)）]"
)


def ruby_segments(text: str) -> list[tuple[str, str | None]]:
    """``text`` as (plain text, None) and (kanji, reading) pieces, in order."""
    out: list[tuple[str, str | None]] = []
    last = 0
    for m in _RUBY.finditer(text):
        if m.start() > last:
            out.append((text[last : m.start()], None))
        out.append((m.group(1), m.group(2)))
        last = m.end()
    if last < len(text):
        out.append((text[last:], None))
    return out
