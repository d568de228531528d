"""What a resident sees: render the fixed fixture, read the PDFs back (pypdf, pypdfium2)."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.letters import render_letters
from tests.scoring.letter_helpers import config, flat, pdf_text, requests, squash

GOLDEN = Path(__file__).with_name("golden") / "letter_ja.txt"
P = {  # pseudonyms of the fixture rows
    "ja": "0a1b2c3d4e5f6071",
    "easy": "1b2c3d4e5f607182",
    "en": "2c3d4e5f60718293",
    "doctor": "3d4e5f6071829304",
    "nonmod": "4e5f607182930415",
    "zh": "5f60718293041526",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("letters") / "out"
    m = render_letters(requests(), out, config())
    return out, m


def letter(out: Path, key: str) -> Path:
    return out / "letters" / f"{P[key]}.pdf"


def test_one_letter_per_resident_named_by_pseudonym(rendered):
    out, m = rendered
    assert m.rendered == 6 and m.skipped == 0
    files = sorted(p.name for p in (out / "letters").iterdir())
    assert files == sorted(f"{p}.pdf" for p in P.values())
    man = pd.read_csv(out / "manifest.csv", dtype=str)
    assert list(man.columns[:3]) == ["pseudonym", "letter_type", "requested_letter_type"]
    assert set(man["pseudonym"]) == set(P.values())
    # ordered by postal code for the print run
    assert list(man["pseudonym"]) == list(P.values())
    # the manifest carries no name, kana or address
    text = (out / "manifest.csv").read_text(encoding="utf-8")
    for row in requests().itertuples():
        assert row.name not in text and row.address not in text and row.name_kana not in text


def test_japanese_letter_text(rendered):
    out, _ = rendered
    t = flat(letter(out, "ja"))
    assert "髙橋﨑子様" in t  # hard kanji survive into the PDF text
    assert "〒100-0011" in t
    assert "約24%" in t
    assert squash("体重を3kg減らすと、予測リスクは 24% から 15% に下がります。") in t
    assert squash("まずは今の体重の3%(70kgの方なら約2kg)を目標に") in t  # factor advice
    assert "夕食は寝る2時間前までに" in t and "運動の習慣をつくる" in t
    assert "架空区健康推進課" in t and "03-0000-0000" in t  # consultation contact
    assert "診断ではありません" in t  # never a diagnosis
    assert "5.9〜6.5" in t  # forecast interval
    assert "発行日2025年4月1日" in t


def test_page_numbers_in_the_footer(rendered):
    out, _ = rendered
    pages = pdf_text(letter(out, "ja"))
    for i, text in enumerate(pages, start=1):
        assert f"{i} / {len(pages)}" in text


def test_easy_japanese_letter(rendered):
    """やさしい日本語: the catalogue's 漢字(かな) readings print as ふりがな (the text layer reads
    each kanji run, then its reading)."""
    out, _ = rendered
    t = flat(letter(out, "easy"))
    assert "渡邊一郎様" in t
    assert squash("たばこを やめると、31% から 22% に 下さがります。") in t
    assert "高血圧こうけつあつ" in t
    assert squash("たばこを やめると、体からだが とても よく なります。") in t
    assert squash("お酒さけは 1日にち ビール 1本ぽんまでに") in t
    assert "健康推進課けんこうすいしんか" in t
    assert "(こうけつあつ)" not in t and "(けんしん)" not in t  # no reading left in brackets


def test_easy_japanese_readings_sit_small_above_their_kanji(rendered):
    import pypdfium2 as pdfium

    out, _ = rendered
    pdf = pdfium.PdfDocument(str(letter(out, "easy")))
    try:
        page = pdf[0].get_textpage()
        text = page.get_text_range()
        checked = 0
        for base, reading in (("高血圧", "こうけつあつ"), ("健診", "けんしん"), ("結果", "けっか")):
            i = text.find(base)
            j = text.find(reading, i)
            assert i >= 0 and j > i, (base, reading)
            b = [page.get_charbox(k) for k in range(i, i + len(base))]  # (left, bottom, right, top)
            r = [page.get_charbox(k) for k in range(j, j + len(reading))]
            assert min(x[1] for x in r) >= max(x[3] for x in b) - 0.5  # above the kanji
            assert max(x[3] - x[1] for x in r) < 0.7 * max(x[3] - x[1] for x in b)  # smaller
            centre_b = (b[0][0] + b[-1][2]) / 2
            centre_r = (r[0][0] + r[-1][2]) / 2
            assert abs(centre_b - centre_r) < 2.0  # centred over it
            checked += 1
        assert checked == 3
    finally:
        pdf.close()


def test_english_letter(rendered):
    out, _ = rendered
    t = " ".join(" ".join(pdf_text(letter(out, "en"))).split())
    assert "Dear John Smith," in t
    assert "about 18%" in t
    assert (
        "If you hardly ever have snacks or sugary drinks, your predicted risk falls from 18% to 12%."
        in t
    )
    assert "Keep snacks under about 200 kcal a day" in t
    assert "Lose some weight" in t  # bmi → weight topic
    assert "03-0000-0000" in t and "not a diagnosis" in t


def test_see_doctor_letter_has_no_prediction_framing(rendered):
    out, m = rendered
    t = flat(letter(out, "doctor"))
    assert "医療機関受診のおすすめ" in t
    assert "自覚症状がなくても、早めにかかりつけ医などの医療機関を受診し" in t
    assert "受診勧奨判定値以上だった項目:HbA1c、空腹時血糖" in t
    for framing in (
        "予測リスク",
        "可能性は",
        "来年の健診値の予測",
        "もしも生活を変えたら",
        "変えられること",
    ):
        assert framing not in t
    assert "03-0000-0000" in t
    row = m.frame.set_index("pseudonym").loc[P["doctor"]]
    assert row["letter_type"] == "see_doctor"


def test_no_advice_for_non_modifiable_factors(rendered):
    out, m = rendered
    t = flat(letter(out, "nonmod"))
    assert "朝食をとる" in t  # the one modifiable factor requested
    for word in ("年齢", "心臓病"):
        assert word not in t
    notes = m.frame.set_index("pseudonym").loc[P["nonmod"], "notes"]
    assert "'age' dropped" in notes and "'q_hist_heart' dropped" in notes


def test_unsupported_language_falls_back_to_japanese(rendered):
    out, m = rendered
    t = flat(letter(out, "zh"))
    assert "肝機能障害の予測リスク" in t and "お酒を減らす" in t
    row = m.frame.set_index("pseudonym").loc[P["zh"]]
    assert row["language"] == "ja" and row["requested_language"] == "zh"
    assert "not supported" in row["notes"]


def test_pages_are_not_blank_and_show_the_chart(rendered):
    import pypdfium2 as pdfium

    out, m = rendered
    for key in ("ja", "en", "doctor"):
        pdf = pdfium.PdfDocument(str(letter(out, key)))
        try:
            assert len(pdf) == int(m.frame.set_index("pseudonym").loc[P[key], "pages"])
            for i in range(len(pdf)):
                img = pdf[i].render(scale=1).to_numpy().astype("float64")
                assert img.std() > 10, f"{key} page {i + 1} looks blank"
                # some dark text (a second page may hold a single section: the what-if)
                assert (img[..., :3].mean(axis=2) < 128).mean() > (0.005 if i == 0 else 0.002)
            first = pdf[0].render(scale=1).to_numpy()[..., :3].astype(int)
            green = np.abs(first - np.array([178, 242, 187])).sum(axis=2) < 30  # zone "ok"
            assert green.sum() > 200, "the value chart is missing"
        finally:
            pdf.close()


def test_ipaex_font_is_embedded(rendered):
    from fontTools.ttLib import TTFont
    from pypdf import PdfReader

    out, _ = rendered
    for key in P:
        for page in PdfReader(str(letter(out, key))).pages:
            fonts = page["/Resources"]["/Font"]
            assert len(fonts) >= 1
            for ref in fonts.values():
                font = ref.get_object()
                assert "IPAex" in str(font["/BaseFont"])
                desc = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
                data = desc["/FontFile2"].get_object().get_data()
                assert TTFont(io.BytesIO(data))["name"].getDebugName(1) == "IPAexGothic"


def test_letters_are_accessible_pdf_ua(rendered):
    """PDF/UA-1 (for screen readers): declared in the XMP metadata, tagged, with the letter's
    language and its heading as the title shown by viewers."""
    from pypdf import PdfReader

    out, _ = rendered
    for key, lang in (("ja", "ja"), ("en", "en"), ("doctor", "ja")):
        pdf = PdfReader(str(letter(out, key)))
        root = pdf.trailer["/Root"]
        assert bool(root["/MarkInfo"]["/Marked"]) and "/StructTreeRoot" in root
        assert root["/Lang"] == lang
        assert b"<pdfuaid:part>1</pdfuaid:part>" in root["/Metadata"].get_object().get_data()
        assert bool(root["/ViewerPreferences"]["/DisplayDocTitle"])
        title = pdf.metadata.title
        assert title and squash(title) in flat(letter(out, key))


def test_owner_only_permissions(rendered):
    out, m = rendered
    for d in (out, out / "letters", out / "print"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert m.print_files == [out / "print" / "print_0001.pdf"]


def test_print_file_merges_every_letter(rendered):
    from pypdf import PdfReader

    out, m = rendered
    assert len(PdfReader(str(m.print_files[0])).pages) == int(m.frame["pages"].sum())


def test_rerender_is_byte_identical(rendered, tmp_path):
    out, _ = rendered
    again = tmp_path / "again"
    render_letters(requests().iloc[::-1], again, config(workers=1))
    for p in sorted(out.rglob("*")):
        if p.is_file():
            assert (again / p.relative_to(out)).read_bytes() == p.read_bytes(), p.name


def test_rerun_skips_finished_letters(rendered, tmp_path):
    out, _ = rendered
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    m = render_letters(requests(), copy, config())
    assert (m.rendered, m.skipped) == (0, 6)
    df = requests()
    df.loc[df["pseudonym"] == P["en"], "risk"] = 0.19
    m = render_letters(df, copy, config())
    assert (m.rendered, m.skipped) == (1, 5)


def test_resume_after_a_crash(rendered, tmp_path):
    out, _ = rendered
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    man = pd.read_csv(crashed / "manifest.csv", dtype=str, keep_default_na=False)
    # the killed run: no manifest yet, a journal with two finished letters (last line cut),
    # one letter never written, one left as a temp file, no print file
    (crashed / "manifest.csv").unlink()
    lines = [r.to_json(force_ascii=False) for _, r in man.iloc[:2].iterrows()]
    (crashed / "manifest.journal.jsonl").write_text("\n".join(lines) + '\n{"pseudo', "utf-8")
    gone = crashed / man.loc[2, "file"]
    gone.unlink()
    half = crashed / man.loc[3, "file"]
    os.replace(half, half.with_name(f".{half.name}.4242.tmp"))
    shutil.rmtree(crashed / "print")

    m = render_letters(requests(), crashed, config())
    assert m.skipped == 2 and m.rendered == 4
    pdfs = sorted((crashed / "letters").iterdir())
    assert [p.name for p in pdfs] == sorted(f"{p}.pdf" for p in P.values())
    assert not list(crashed.rglob("*.tmp")) and not (crashed / "manifest.journal.jsonl").exists()
    new = pd.read_csv(crashed / "manifest.csv", dtype=str)
    assert new["pseudonym"].is_unique and len(new) == 6
    for p in sorted(out.rglob("*")):
        if p.is_file():
            assert (crashed / p.relative_to(out)).read_bytes() == p.read_bytes(), p.name


def test_golden_letter_text(rendered):
    """The first letter's extracted text equals the committed golden file.

    Regenerate after an intended wording/layout change with KENSHIN_UPDATE_GOLDEN=1 and read the
    diff before committing it.
    """
    out, m = rendered
    first = out / m.frame["file"].iloc[0]
    text = "\n\f\n".join(t.rstrip() for t in pdf_text(first)) + "\n"
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    if os.environ.get("KENSHIN_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_dropped_resident_loses_the_letter(rendered, tmp_path):
    out, _ = rendered
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    df = requests()
    m = render_letters(df[df["pseudonym"] != P["zh"]], copy, config())
    assert (m.rendered, m.skipped) == (0, 5)
    assert not (copy / "letters" / f"{P['zh']}.pdf").exists()
    assert P["zh"] not in (copy / "manifest.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("item", "value", "row"),
    [
        ("hba1c", 6.1, {}), ("hba1c", 4.0, {}), ("hba1c", 9.9, {}), ("hdl", 44.0, {}),
        ("egfr", 50.0, {}), ("waist_cm", 92.5, {"sex": 2}), ("tg", 180.0, {"tg_fasting": False}),
    ],
)  # fmt: skip
def test_value_chart_zones_fill_the_bar(item, value, row):
    """A chart's zones lie side by side and fill the bar; the dot's centre is on the bar."""
    from scoring.letters.render import _BAR_MM, _chart, _judgement

    jv = _judgement(item, row)
    chart = _chart(item, jv, value)
    names = [z for z, _ in chart["zones"]]
    widths = [w for _, w in chart["zones"]]
    assert min(widths) > 0 and abs(sum(widths) - _BAR_MM) < 0.02
    assert set(names) <= {"ok", "guid", "ref"} and len(set(names)) == len(names)
    # red is on the side where values are bad
    assert names[-1 if jv.op == ">=" else 0] in ("ref", "guid")
    assert 0 <= chart["dot"] <= _BAR_MM


def test_data_is_never_read_as_typst_markup(tmp_path):
    """Names and addresses print exactly as written, even full of Typst's markup characters."""
    hostile = 'A*b*_c_ #panic("x") $x$ <l> @r // d /* e */ \\ [f] `g` ~ ... -- 1. = h'
    df = requests().iloc[:1].assign(name=hostile, address="= 見出し\n- 箇条 #linebreak()")
    m = render_letters(df, tmp_path / "out", config(workers=1))
    t = " ".join(" ".join(pdf_text(tmp_path / "out" / m.frame["file"].iloc[0])).split())
    assert squash(hostile) in squash(t)
    assert squash("= 見出し - 箇条 #linebreak()") in squash(t)


def test_a_plain_script_can_render_letters(tmp_path):
    """An analyst's script without an ``if __name__ == "__main__"`` guard renders letters with
    two workers (a "spawn" or "forkserver" pool would re-run the script in each worker)."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "letters.py"
    script.write_text(
        textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
            from pathlib import Path
            from scoring.letters import render_letters
            from tests.scoring.letter_helpers import config, requests
            m = render_letters(requests(), Path({str(tmp_path / "out")!r}), config(workers=2))
            print("rendered", m.rendered)
        """)
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["rendered", "6"]


def test_address_parts_break_only_at_spaces_and_block_numbers():
    from scoring.letters.render import ADDRESS_PIECE_MAX, address_parts

    parts = address_parts("架空区中央二丁目3番4号架空ハイツ101 205号室")
    assert [(p["text"], p["sep"]) for p in parts] == [
        ("架空区中央二丁目", ""), ("3番4号", ""), ("架空ハイツ101", " "), ("205号", ""), ("室", "")
    ]  # fmt: skip
    assert all(p["keep"] for p in parts)
    long = "ア" * (ADDRESS_PIECE_MAX + 1)
    assert address_parts(long) == [{"text": long, "keep": False, "sep": ""}]


def test_a_long_address_wraps_between_words_never_inside_a_building_name(tmp_path):
    building = "グランドメゾン架空リバーサイドタワー東棟"
    req = requests().iloc[:1].copy()
    req["address"] = f"架空県架空郡架空町大字架空字中央1234番地 {building} 1203号室"
    render_letters(req, tmp_path, config(workers=1))
    lines = pdf_text(tmp_path / "letters" / f"{req['pseudonym'].iloc[0]}.pdf")[0].splitlines()
    address = [squash(line) for line in lines[1:4]]  # after the postal code
    assert address == ["架空県架空郡架空町大字架空字中央1234番地", building, "1203号室"]


def test_easy_japanese_readings_never_overlap_the_line_above(rendered):
    """Every ふりがな glyph (under 6 pt) keeps clear of every body-text glyph (6-12 pt)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    out, _ = rendered
    doc = pdfium.PdfDocument(str(letter(out, "easy")))
    readings = clashes = 0
    for page in doc:
        tp = page.get_textpage()
        small, body = [], []
        for i in range(tp.count_chars()):
            if not tp.get_text_range(i, 1).strip():
                continue
            size = raw.FPDFText_GetFontSize(tp.raw, i)
            box = tp.get_charbox(i)
            if size < 6:
                small.append(box)
            elif size < 12:
                body.append(box)
        readings += len(small)
        for left, bottom, right, top in small:
            clashes += sum(
                left < r and lo < right and bottom < t and b < top for lo, b, r, t in body
            )
    assert readings > 100 and clashes == 0


# --- one page when the content fits ----------------------------------------------------------

#: A long address (6 lines: more than the envelope window shows) and every value at a
#: 受診勧奨判定値 with blood pressure ≥ 160/100: the most a see-a-doctor letter can hold.
LONG_ADDRESS = (
    "架空県架空郡架空町大字架空字中央1234番地 グランドメゾン架空リバーサイドタワー東棟 "
    "1203号室 架空様方 "
) * 2
REFERRAL = {
    "hba1c": 7.2, "fpg": 141.0, "sbp": 172.0, "dbp": 104.0, "ldl": 190.0, "tg": 420.0,
    "alt": 60.0, "ggt": 120.0, "egfr": 40.0,
}  # fmt: skip
NO_ADVICE = {
    "risk": np.nan, "risk_band": None, "factor_1": None, "factor_2": None, "factor_3": None,
    "whatif_scenario": None, "whatif_risk_before": np.nan, "whatif_risk_after": np.nan,
}  # fmt: skip


def _forecast_everything() -> dict:
    """A next-year forecast for every key item (as the annual run writes them)."""
    from scoring.letters.schema import KEY_ITEMS

    base = _base_row()
    out = {}
    for item in KEY_ITEMS:
        x = float(base[item])
        out |= {f"{item}_p10": x * 0.95, f"{item}_p50": x * 1.01, f"{item}_p90": x * 1.06}
    return out


def _base_row(**kw) -> dict:
    from tests.scoring.letter_helpers import _base

    return _base(**kw)


LAYOUT = {  # key: (request row, pages)
    # the standard letters: one page each
    "ja": (_base_row(pseudonym="8a00000000000001", **_forecast_everything()), 1),
    "easy": (
        _base_row(
            pseudonym="8a00000000000002", language="ja-easy", outcome="hypertension",
            risk=0.31, risk_band="very_high", sex=1, factor_1="current_smoker",
            factor_2="risky_drinking", factor_3="q_sleep", whatif_scenario="quit_smoking",
            whatif_risk_before=0.31, whatif_risk_after=0.22,
        ),
        1,
    ),
    "en": (_base_row(pseudonym="8a00000000000003", language="en", **_forecast_everything()), 1),
    "doctor": (
        _base_row(pseudonym="8a00000000000004", letter_type="see_doctor", hba1c=7.2,
                  fpg=141.0, **NO_ADVICE),
        1,
    ),
    "easy_doctor": (
        _base_row(pseudonym="8a00000000000005", letter_type="see_doctor", language="ja-easy",
                  hba1c=7.2, fpg=141.0, **NO_ADVICE),
        1,
    ),
    # the most a see-a-doctor letter holds still fits one page
    "doctor_max": (
        _base_row(pseudonym="8a00000000000006", letter_type="see_doctor", language="ja-easy",
                  address=LONG_ADDRESS, **REFERRAL, **NO_ADVICE),
        1,
    ),
    # an advice letter with everything and a 6-line address: complete on two pages
    "advice_max": (
        _base_row(pseudonym="8a00000000000007", language="ja-easy", address=LONG_ADDRESS,
                  **_forecast_everything()),
        2,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    out = tmp_path_factory.mktemp("layout") / "out"
    rows = pd.DataFrame([row for row, _ in LAYOUT.values()])
    m = render_letters(rows, out, config(merge=False))
    return out, m.frame.set_index("pseudonym")


def _pages(out: Path, key: str) -> int:
    from pypdf import PdfReader

    return len(PdfReader(str(out / "letters" / f"{LAYOUT[key][0]['pseudonym']}.pdf")).pages)


@pytest.mark.parametrize("key", ["ja", "easy", "en", "doctor", "easy_doctor", "doctor_max"])
def test_a_standard_letter_is_one_page(layout, key):
    """A letter whose content fits one A4 page is one page (pypdf), at the usual text sizes:
    advice in Japanese, やさしい日本語 and English with a forecast for every item, three
    advice topics and the what-if; see-a-doctor letters, even with every value at a
    受診勧奨判定値 and a six-line address."""
    out, frame = layout
    assert _pages(out, key) == 1
    assert int(frame.loc[LAYOUT[key][0]["pseudonym"], "pages"]) == 1


def test_a_letter_with_a_lot_of_content_is_complete_on_two_pages(layout):
    """An advice letter that cannot fit (やさしい日本語, a six-line address, every forecast,
    three topics, the what-if) goes on two pages, every part printed whole: the values (each
    with its forecast), the risk, the advice, the what-if with its note on one page, the
    contact, the page numbers."""
    from scoring.letters.catalogue import load_catalogue
    from scoring.letters.schema import KEY_ITEMS
    from scoring.typeset import ruby_segments

    out, _ = layout
    path = out / "letters" / f"{LAYOUT['advice_max'][0]['pseudonym']}.pdf"
    assert _pages(out, "advice_max") == 2
    pages = [squash(t) for t in pdf_text(path)]
    text = "".join(pages)
    cat = load_catalogue()
    for item in KEY_ITEMS:
        assert squash(cat.items[item].label["ja-easy"].split("(")[0]) in text, item
    assert "1/2" in pages[0] and "2/2" in pages[1]
    assert "03-0000-0000" in pages[0]  # the contact, beside the address
    assert "24%から15%に" in text.replace("下さがります", "")  # the what-if
    whatif = next(i for i, p in enumerate(pages) if "24%から15%" in p)
    assert "これも予想よそうです" in pages[whatif]  # its note on the same page
    for topic in ("weight", "late_dinner", "exercise"):  # the three topics' titles
        first_word = ruby_segments(cat.topics[topic].title["ja-easy"])[0][0]
        assert squash(first_word) in text, topic


def test_no_field_is_printed_twice(rendered):
    """The name is printed once (the address block: no greeting repeating it), the office
    once (the contact beside the address), each item once (next year's forecast is a column
    of the results table, not a table repeating the items and this year's values)."""
    out, _ = rendered
    t = flat(letter(out, "ja"))
    assert t.count("髙橋﨑子") == 1
    assert t.count(squash("架空区 健康推進課 健康づくり係")) == 1
    assert t.count("HbA1c") == 1 and t.count("体重kg") == 1
    assert t.count("03-0000-0000") == 1
    assert "6.25.9〜6.5" in t  # HbA1c: this year 6.1 … next year 6.2 (5.9〜6.5) in its row
    assert "Dear John Smith," in " ".join(pdf_text(letter(out, "en")))  # English keeps it


def test_easy_japanese_lines_break_between_words():
    """やさしい日本語 is written with spaces between words: a line breaks at those spaces, never
    inside a word (下 | がります, 飲み | 物を); closing punctuation stays outside the word's box
    (it keeps its width); in a longer run without spaces, 肝臓 keeps its (ALT); everything is
    escaped, and words without Japanese (true, 03-0000-0000) are left as they are."""
    from scoring.typeset import typst_ruby_text

    assert str(typst_ruby_text("22% に 下(さ)がります。")) == (
        r"22\% に #box[#ruby[さ][下]がります]。"
    )
    assert str(typst_ruby_text("飲(の)み物(もの)を 減(へ)らす")) == (
        "#box[#ruby[の][飲]み#ruby[もの][物]を] #box[#ruby[へ][減]らす]"
    )
    items = "肝臓(かんぞう)(ALT)、肝臓(かんぞう)(γ-GT)、腎臓(じんぞう)(eGFR)"
    assert str(typst_ruby_text(items)) == (
        r"#box[#ruby[かんぞう][肝臓]\(ALT\)]、#box[#ruby[かんぞう][肝臓]\(γ\-GT\)]、"
        r"#box[#ruby[じんぞう][腎臓]\(eGFR\)]"
    )
    assert str(typst_ruby_text("区役所(くやくしょ)の3階(かい)")) == (
        "#box[#ruby[くやくしょ][区役所]の3#ruby[かい][階]]"
    )
    assert str(typst_ruby_text("true")) == "true"
    assert str(typst_ruby_text("a\nb")) == "a b"
