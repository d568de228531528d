"""Writing Typst documents from Jinja2 templates, with data never read as markup.

Shared by the advice letters (:mod:`scoring.letters.render`) and the staff report's PDF
(:mod:`scoring.report.pdf`). A template writes Typst source; every ``{{ value }}`` goes
through :func:`typst_value` (Jinja's ``finalize``): text is escaped so that it prints exactly as
written, numbers are written as numbers. ``{{ x|quote }}`` writes a Typst string literal (for a
function argument; strings are never read as markup). Only :class:`markupsafe.Markup` passes
through unchanged: it is for Typst source the code built itself.

Also here: the one font both documents use (IPAex Gothic, bundled by ``matplotlib-fontja``) and
the only font Typst is shown (:func:`fonts`), its character map, a PDF's page count, and
ふりがな: ``environment(..., ruby=...)`` writes every 漢字(かな) of a text as
``#ruby[かな][漢字]`` (the template's style module defines ``ruby``).

Text from outside (names, addresses) goes through :func:`printable` first: Typst refuses to
write an accessible (PDF/UA) document holding a character its font cannot show, so such a
character is replaced by 〓 (:data:`PLACEHOLDER`, the 下駄記号 municipal systems print for a
外字), and invisible characters (control characters, direction overrides and marks, zero-width
and other format characters, variation selectors) are removed. :func:`breakable` lets a long
run of Latin letters or digits wrap.

(Not named ``typst.py``: that would shadow the ``typst`` package.)
"""

from __future__ import annotations

import importlib.resources
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

__all__ = [
    "PLACEHOLDER",
    "Printable",
    "breakable",
    "environment",
    "font_cmap",
    "font_path",
    "fonts",
    "has_visible",
    "page_count",
    "printable",
    "ruby_segments",
    "typst_string",
    "typst_text",
    "typst_value",
]

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


#: A run of kanji (CJK ideographs, 々 and ヶ) directly followed by a reading in kana, in ASCII
#: or full-width parentheses: ``区役所(くやくしょ)``, ``1日(にち)``, ``下(さ)がる``.
_RUBY = re.compile(
    r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々ヶ]+)[(（]([\u3041-\u3096\u30a1-\u30faー]+)[)）]"
)


def ruby_segments(text: str) -> list[tuple[str, str | None]]:
    """``text`` as (plain text, None) and (kanji, reading) pieces, in order: the catalogue
    writes readings as plain text can (``健診(けんしん)``), print shows them as ふりがな."""
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


#: What follows a word with ふりがな and stays on its line: its hiragana (送り仮名, a particle)
#: or a short bracket (肝臓(ALT)). Punctuation stays out (a line never starts with it anyway;
#: inside the box it would lose its width).
_OKURIGANA = re.compile(r"[\u3041-\u3096]{1,8}|[(（][^()（）\u3041-\u3096]{1,10}[)）]")


#: A Japanese word (between spaces: やさしい日本語 is written with spaces between words) of at
#: most this many characters stays whole on its line.
_WORD_MAX = 12
_JAPANESE = re.compile(r"[\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々]")
#: Closing punctuation (not a bracket: it may close a reading).
_TRAILING_PUNCT = re.compile(r"[。、，．」』!?！？]+$")


def _ruby_markup(text: str, keep: bool = True) -> str:
    """``text`` as Typst markup with its 漢字(かな) as ふりがな; ``keep``: what follows a word
    with ふりがな (:data:`_OKURIGANA`) stays on its line with it."""
    out: list[str] = []
    for base, reading in ruby_segments(text):
        if reading is not None:
            out.append(f"#ruby[{typst_text(reading)}][{typst_text(base)}]")
            continue
        m = _OKURIGANA.match(base) if keep and out and out[-1].startswith("#ruby[") else None
        if m:
            out[-1] = f"#box[{out[-1]}{typst_text(m.group())}]"
            base = base[m.end() :]
        out.append(typst_text(base))
    return "".join(out)


def typst_ruby_text(value: object) -> Markup:
    """:func:`typst_text`, with every 漢字(かな) written as ``#ruby[かな][漢字]``.

    A line breaks between words, never inside one: each word between spaces (up to
    :data:`_WORD_MAX` characters; its closing punctuation outside, where it keeps its width) is
    kept whole (``#box[#ruby[さ][下]がります]。``); in a longer run, what follows a word with
    ふりがな stays with it (never 肝臓 | (ALT))."""
    out: list[str] = []
    for piece in re.split(r"(\s+)", str(value)):
        if not piece or piece.isspace():
            out.append(re.sub(r"\r\n|\r|\n", " ", piece))  # as typst_text: lines end in spaces
            continue
        m = _TRAILING_PUNCT.search(piece)
        word, punct = (piece[: m.start()], m.group()) if m else (piece, "")
        shown = "".join(base for base, _ in ruby_segments(word))
        if 1 < len(shown) <= _WORD_MAX and _JAPANESE.search(shown):
            out.append(f"#box[{_ruby_markup(word, keep=False)}]{typst_text(punct)}")
        else:
            out.append(_ruby_markup(piece))
    return Markup("".join(out))


def environment(
    folder: Path | str,
    *,
    clean: Callable[[str], str] | None = None,
    ruby: Callable[[Mapping[str, object]], bool] | None = None,
) -> jinja2.Environment:
    """A Jinja2 environment for the Typst templates in ``folder`` (escaping as above).

    ``clean``, if given, is applied to every text before it is escaped or quoted (the report
    replaces characters its font lacks this way). ``ruby(context)``, if given and true for a
    document's template context, prints the readings of its texts as ふりがな.
    """

    @jinja2.pass_context
    def finalize(context, value: object) -> str | Markup:
        if isinstance(value, str) and not isinstance(value, Markup):
            value = clean(value) if clean is not None else value
            if ruby is not None and ruby(context):
                return typst_ruby_text(value)
        return typst_value(value)

    def quote(value: object) -> Markup:
        return typst_string(clean(str(value)) if clean is not None else value)

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


def font_path() -> Path:
    """The IPAex Gothic TrueType file shipped inside the ``matplotlib-fontja`` package."""
    path = Path(str(importlib.resources.files("matplotlib_fontja") / "fonts" / "ipaexg.ttf"))
    if not path.is_file():  # pragma: no cover - broken install
        raise FileNotFoundError(f"IPAex font not found at {path}: reinstall matplotlib-fontja")
    return path


@cache
def font_cmap() -> frozenset[int]:
    """Code points the bundled font has a glyph for."""
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(str(font_path()), lazy=True).getBestCmap())


def fonts():
    """The only fonts Typst may use: the bundled IPAex Gothic (no system font, none of Typst's
    own), so no document depends on the machine and nothing falls back silently."""
    import typst

    return typst.Fonts(
        include_system_fonts=False,
        include_embedded_fonts=False,
        font_paths=[str(font_path().parent)],
    )


def page_count(pdf: bytes) -> int:
    """Pages of a PDF (PDFium: it does not parse every object, unlike pypdf)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        return len(doc)
    finally:
        doc.close()


# --------------------------------------------------------------------------------------------
# Text from outside: only what the font can show
# --------------------------------------------------------------------------------------------

#: Printed for a character the font cannot show (U+3013 GETA MARK 〓, as municipal systems print
#: a 外字 their font lacks).
PLACEHOLDER = "\u3013"
#: Direction embeddings, overrides, isolates and marks (U+202A-202E, U+2066-2069, U+200E/F,
#: U+061C): removed, so that no text is shown reordered.
BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x61C])
#: Variation selectors (an IVS after a kanji, VS16 after an emoji): removed, the base is printed.
_SELECTORS = frozenset([*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), *range(0x180B, 0x1810)])
#: Whitespace that may stand in a line: tab, line breaks and separators print as a space.
_BREAKS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _invisible(c: str) -> bool:
    """A character that is removed: control, format (incl. direction marks), selector."""
    o = ord(c)
    return (
        o in BIDI_CONTROLS
        or o in _SELECTORS
        or (unicodedata.category(c) in ("Cc", "Cf") and c not in _BREAKS)
    )


def has_visible(text: object) -> bool:
    """``text`` holds something that prints (not only spaces and invisible characters)."""
    if not isinstance(text, str):
        return False
    return any(not c.isspace() and not _invisible(c) for c in text)


@dataclass(frozen=True)
class Printable:
    """A text as printed, and what was changed to print it."""

    text: str
    #: Code points replaced by :data:`PLACEHOLDER` (``U+20BB7``), in order of appearance.
    replaced: tuple[str, ...] = ()
    #: Invisible characters removed (controls, direction marks, format characters, selectors).
    removed: int = 0


def printable(text: str, cmap: frozenset[int] | None = None) -> Printable:
    """``text`` reduced to what the font (default: the bundled IPAex) can show.

    Line breaks, tabs and spaces the font lacks become a space; invisible characters (see
    :func:`has_visible`) are removed; a combining mark is composed with the character before it
    when the composition is in the font (``e`` + U+0301 → ``é``, NFC); any other
    character the font lacks (𠮷 U+20BB7, emoji, scripts it does not cover, private-use 外字,
    lone surrogates) becomes :data:`PLACEHOLDER`. Leading and trailing spaces are dropped.
    """
    cmap = font_cmap() if cmap is None else cmap
    if text.isascii() and all(" " <= c <= "~" for c in text):
        return Printable(text.strip())
    out: list[str] = []
    replaced: list[str] = []
    removed = 0
    for c in text:
        o = ord(c)
        if c in _BREAKS:
            out.append(" ")
            continue
        if _invisible(c):
            removed += 1
            continue
        if out and unicodedata.category(c).startswith("M"):
            composed = unicodedata.normalize("NFC", out[-1] + c)
            if len(composed) == 1 and ord(composed) in cmap:
                out[-1] = composed
                continue
        if o in cmap:
            out.append(c)
        elif c.isspace():
            out.append(" ")
        else:
            out.append(PLACEHOLDER)
            replaced.append(f"U+{o:04X}")
    return Printable("".join(out).strip(), tuple(replaced), removed)


#: Longest run without a line-break opportunity that :func:`breakable` leaves as it is.
_RUN = 16
#: Characters that break anywhere (CJK, kana, full-width forms) and spaces end a run.
_BREAKS_ANYWHERE = r"\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff"
_UNBROKEN = re.compile(f"[^{_BREAKS_ANYWHERE}]{{{_RUN + 1},}}")


def breakable(text: str) -> str:
    """``text`` with a zero-width space (a line-break opportunity, U+200B) every 16 characters
    of a run that has none (Latin letters, digits and signs without spaces), so that a long
    name or address wraps inside its box instead of running over its neighbours. Japanese text
    breaks between any two characters already."""
    return _UNBROKEN.sub(
        lambda m: "\u200b".join(m.group(0)[i : i + _RUN] for i in range(0, len(m.group(0)), _RUN)),
        text,
    )
