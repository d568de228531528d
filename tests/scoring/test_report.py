"""Staff explanation report (scoring.report): sections, resident pages, waterfalls, drift flags,
PDF (Typst, embedded IPAex), determinism and privacy, on seeded synthetic inputs
(scoring.report.synthetic) that follow scoring.contracts."""

from __future__ import annotations

import dataclasses
import io
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from data.judgements import threshold_flags
from scoring.contracts import DRIFT_SCHEMA, EXPLANATIONS_SCHEMA, scores_schema
from scoring.report import ReportConfig, ReportInputError, ReportInputs, build_report
from scoring.report.pdf import pdf_safe
from scoring.report.synthetic import SCENARIOS, make_inputs, make_model

PDF_RESIDENTS = 4
#: The summary and two parts of two resident pages each (three Typst compilations, joined).
CONFIG = ReportConfig(pdf_residents=PDF_RESIDENTS, pdf_chunk=2)


# -------------------------------------------------------------------------------- helpers


class _Pages(HTMLParser):
    """Collects, per resident section, its tables as lists of rows of cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[dict]] = {}
        self.order: list[str] = []
        self.section: str | None = None
        self.table: dict | None = None
        self.cell: list[str] | None = None
        self.in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("class") == "r":
            self.section = a["id"][2:]
            self.sections[self.section] = []
            self.order.append(self.section)
        elif tag == "table" and self.section:
            self.table = {"class": a.get("class"), "caption": "", "rows": []}
            self.sections[self.section].append(self.table)
        elif tag == "tr" and self.table is not None:
            self._close_cell()
            self.table["rows"].append({"class": a.get("class"), "cells": []})
        elif tag in ("td", "th") and self.table is not None:
            self._close_cell()
            self.cell = []
        elif tag == "caption":
            self.in_caption = True

    def _close_cell(self):
        if self.cell is not None and self.table is not None:
            self.table["rows"][-1]["cells"].append("".join(self.cell).strip())
        self.cell = None

    def handle_endtag(self, tag):
        if tag == "table" and self.table is not None:
            self._close_cell()
            self.table = None
        elif tag == "section":
            self.section = None
        elif tag == "caption":
            self.in_caption = False

    def handle_data(self, data):
        if self.in_caption and self.table is not None:
            self.table["caption"] += data
        elif self.cell is not None:
            self.cell.append(data)


def parse_pages(html: str) -> _Pages:
    p = _Pages()
    p.feed(html)
    return p


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


def squash(text: str) -> str:
    return "".join(text.split())


def resident_page_texts(data: bytes) -> dict[str, str]:
    """Pseudonym → text of the page its bookmark leads to."""
    reader = PdfReader(io.BytesIO(data))
    (residents,) = [x for x in reader.outline if isinstance(x, list)]
    return {
        r.title: reader.pages[reader.get_destination_page_number(r)].extract_text()
        for r in residents
    }


def pdf_fonts(data: bytes) -> set[str]:
    fonts = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for f in page["/Resources"].get("/Font", {}).values():
            fonts.add(str(f.get_object()["/BaseFont"]))
    return fonts


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return make_inputs(n_scored=400, n_explained=50, seed=3)


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = build_report(inputs, out, config=CONFIG)
    return paths, paths.html.read_text(encoding="utf-8"), paths.pdf.read_bytes()


@pytest.fixture(scope="module")
def pages(built) -> _Pages:
    return parse_pages(built[1])


# -------------------------------------------------------------------------------- the fixture


def test_synthetic_inputs_follow_the_contracts(inputs):
    keys = tuple(s.key for s in SCENARIOS)
    scores_schema(inputs.model.outcomes, keys).validate(inputs.scores)
    EXPLANATIONS_SCHEMA.validate(inputs.explanations)
    DRIFT_SCHEMA.validate(inputs.drift)
    assert inputs.explanations["pseudonym"].nunique() == 50
    raw = inputs.explanations.groupby(["pseudonym", "outcome"])["contribution"].sum()
    risk = inputs.scores.set_index("pseudonym")
    for (ps, o), z in raw.head(30).items():
        assert 1 / (1 + math.exp(-z)) == pytest.approx(risk.at[ps, f"risk_{o}"], abs=1e-4)


# -------------------------------------------------------------------------------- HTML


def test_sections_and_self_contained(built):
    paths, html, _ = built
    for anchor, heading in [
        ("s1", "対象者の概要"), ("s2", "モデルの概要"), ("s3", "較正"),
        ("s4", "データの変化(ドリフト)"), ("s5", "個人別の説明"),
    ]:  # fmt: skip
        assert f'<h2 id="{anchor}"' in html
        assert heading in html
    for label in ("選定理由別", "通知種別 × 群", "性別 × 年齢階級", "疾患別の予測リスク分布",
                  "40-49歳", "65-74歳", "予防通知を送付", "対照群(今年度は送付せず)",
                  "想定する用途", "主な限界・注意点", "モデルカード原文", "<details>", "<svg"):  # fmt: skip
        assert label in html, label
    # nothing fetched from anywhere: no links, images, external scripts, imports or URLs
    for bad in ("<link", "<img", "<script src", "@import", "url(", "http://", "https://"):
        assert bad not in html, bad
    assert paths.html_bytes == len(html.encode("utf-8"))
    assert "2025-03-01" in html


def test_every_explained_resident_has_a_page_and_an_index_anchor(inputs, built, pages):
    _, html, _ = built
    explained = set(inputs.explanations["pseudonym"])
    assert set(pages.order) == explained
    assert len(pages.order) == len(explained)  # one section each
    for ps in explained:
        assert html.count(f"id=p-{ps}>") == 1
        assert f"<a href=#p-{ps}>{ps}</a>" in html
    # page order: advice letters by rank, then see-doctor letters by rank
    sel = inputs.selection.set_index("pseudonym").loc[pages.order]
    kinds = sel["letter_type"].fillna("none").map({"advice": 0, "see_doctor": 1, "none": 2})
    assert kinds.is_monotonic_increasing
    for _, g in sel.groupby("letter_type"):
        assert g["rank"].astype(float).is_monotonic_increasing


def test_waterfalls_add_up(inputs, pages):
    """What a page prints adds up to the risk it prints: baseline + items + other +
    calibration = the total line = the calibrated risk in the caption and the risk table
    (read from the page's HTML tables, as printed)."""
    e = inputs.explanations
    logodds = e.groupby(["pseudonym", "outcome"])["contribution"]
    raw = e[e["item"] != "calibration"].groupby(["pseudonym", "outcome"])["contribution"].sum()
    scores = inputs.scores.set_index("pseudonym")
    checked = 0
    from scoring.report.labels import outcome_ja

    by_label = {outcome_ja(o): o for o in inputs.model.outcomes}
    for ps, tables in pages.sections.items():
        wfs = [t for t in tables if t["class"] == "wf"]
        assert len(wfs) == e.loc[e["pseudonym"] == ps, "outcome"].nunique()
        (rk,) = [t for t in tables if t["class"] == "rk"]
        risk_table = {r["cells"][0]: r["cells"][1] for r in rk["rows"][1:]}
        for t in wfs:
            label = t["caption"].split(" ")[0]
            o = by_label[label]
            m = re.search(r"較正後リスク ([0-9.]+)%\(モデル出力 ([0-9.]+)%\)", t["caption"])
            assert m, t["caption"]
            printed_risk, printed_raw = m.group(1), m.group(2)
            rows = [r["cells"] for r in t["rows"][1:]]  # skip the header row
            assert rows[0][0].startswith("ベースライン") and rows[-1][0].startswith("合計")
            assert rows[-3][0] == "その他の項目" and rows[-2][0].startswith("較正")
            parts = [float(r[1]) for r in rows[:-1]]
            total = rows[-1][1]
            # the printed parts sum exactly to the printed total, which is the printed risk
            assert round(sum(parts), 1) == float(total)
            assert total == printed_risk == risk_table[label]
            risk = 100 * scores.at[ps, f"risk_{o}"]
            assert float(printed_risk) == pytest.approx(risk, abs=0.0501)
            # baseline + items + other = the raw model's risk; calibration = risk − raw risk
            z = raw[(ps, o)]
            assert float(printed_raw) == pytest.approx(100 / (1 + math.exp(-z)), abs=0.0501)
            assert round(sum(parts[:-1]), 1) == pytest.approx(float(printed_raw), abs=0.11)
            assert logodds.sum()[(ps, o)] == pytest.approx(
                math.log(scores.at[ps, f"risk_{o}"] / (1 - scores.at[ps, f"risk_{o}"])), abs=1e-6
            )
            # every item line keeps the sign of its log-odds contribution
            signs = np.sign(e[(e["pseudonym"] == ps) & (e["outcome"] == o)].sort_values("rank")[
                "contribution"].to_numpy()[1:-1])  # fmt: skip
            shown = np.sign(parts[1:-1])
            assert ((shown == signs) | (shown == 0)).all()
            checked += 1
    assert checked == len(raw)


def test_waterfall_rounding_keeps_the_sum():
    """Printed parts are rounded on the running total: their printed sum is the printed
    risk even where rounding each part alone would miss it by 0.1 or more."""
    from scoring.report.residents import _cumulative_texts

    parts = np.array([10.04, 0.04, 0.04, 0.04, 0.04, 5.0, 1.26, 0.05, 0.05, -0.05])
    starts = np.array([0, 5])
    last = np.array([10.2, 6.3])
    shown = _cumulative_texts(parts, starts, last)
    assert round(shown[:5].sum(), 1) == 10.2 and round(shown[5:].sum(), 1) == 6.3
    assert round(np.round(parts[:5], 1).sum(), 1) != 10.2  # rounding each part alone misses


def test_values_against_judgement_values(inputs, pages):
    s = inputs.scores.set_index("pseudonym")
    flags = threshold_flags(s)
    judge = {"基準内": 0, "保健指導": 1, "受診勧奨": 2}
    seen = set()
    for ps, tables in pages.sections.items():
        (kv,) = [t for t in tables if t["class"] == "kv"]
        rows = {r["cells"][0]: r for r in kv["rows"][1:]}
        hba1c = rows.get("HbA1c(%)")
        if hba1c is not None and hba1c["cells"][1] != "—":
            assert hba1c["cells"][2:4] == ["5.6以上", "6.5以上"]
            want = int(flags.at[ps, "flag_hba1c"])
            assert judge[hba1c["cells"][4]] == want
            assert hba1c["class"] == (f"f{want}" if want else None)
            seen.add(want)
        assert len(rows) >= 12  # the key items are always listed
        sbp = rows["収縮期血圧(mmHg)"]
        if pd.isna(s.at[ps, "sbp"]):
            assert sbp["cells"][1] == "—" and sbp["cells"][4] == "未測定"
        else:
            assert sbp["cells"][1] == f"{s.at[ps, 'sbp']:.0f}"
            assert judge[sbp["cells"][4]] == int(flags.at[ps, "flag_sbp"])
        hdl = rows.get("HDLコレステロール(mg/dL)")
        if hdl is not None:
            assert hdl["cells"][2:4] == ["40未満", "—"]
        waist = rows.get("腹囲(cm)")
        if waist is not None and waist["cells"][1] != "—":
            assert waist["cells"][2] == ("85以上" if s.at[ps, "sex"] == 1 else "90以上")
        # forecasts p10 ≤ p50 ≤ p90 where shown
        for r in kv["rows"][1:]:
            q = r["cells"][5:8]
            if all(q):
                a, b, c = map(float, q)
                assert a <= b <= c
    assert len(seen) >= 2  # the fixture covers more than one level


def test_risks_and_scenarios(inputs, pages):
    s = inputs.scores.set_index("pseudonym")
    labels = {sc.label_ja: sc.key for sc in SCENARIOS}
    for ps, tables in list(pages.sections.items())[:10]:
        (rk,) = [t for t in tables if t["class"] == "rk"]
        head = rk["rows"][0]["cells"]
        shown = [labels[h] for h in head[2:-1]]
        for o, row in zip(inputs.model.outcomes, rk["rows"][1:], strict=True):
            assert row["cells"][1] == f"{100 * s.at[ps, f'risk_{o}']:.1f}"
            for key, cell in zip(shown, row["cells"][2:-1], strict=True):
                v = s.at[ps, f"risk_{o}__{key}"]
                assert cell == ("·" if pd.isna(v) else f"{100 * v:.1f}")
        applicable = [
            sc.key for sc in SCENARIOS
            if s.loc[ps, [f"risk_{o}__{sc.key}" for o in inputs.model.outcomes]].notna().any()
        ]  # fmt: skip
        assert shown == applicable


def test_drift_is_sorted_and_flagged(inputs, built):
    _, html, _ = built
    d = inputs.drift
    table = html[html.index('<table class="grid" id="drift">') :]
    table = table[: table.index("</table>")]
    psi = [float(x) for x in re.findall(r"<td>(\d+\.\d{3})</td>", table)]
    assert psi == sorted(psi, reverse=True)
    assert len(psi) == d["psi"].notna().sum()
    flagged = int(d["status"].isin(["watch", "shift"]).sum())
    assert f"要確認 {flagged} 件" in html
    assert table.count('class="st st-shift"') == (d["status"] == "shift").sum() >= 1
    assert table.count('class="st st-watch"') == (d["status"] == "watch").sum() >= 1
    assert table.count('class="st st-na"') == (d["status"] == "n/a").sum()
    top = d.sort_values("psi", ascending=False).iloc[0]
    first = table.index("<td>", table.index("<tr><td>"))
    assert top["label_ja"] in table[first : first + 200]


def test_calibration_absent_is_said(inputs, tmp_path):
    no_cal = dataclasses.replace(inputs.model, calibration=pd.DataFrame())
    r = build_report(dataclasses.replace(inputs, model=no_cal), tmp_path, pdf=False)
    html = r.html.read_text(encoding="utf-8")
    assert "較正データがありません" in html
    assert r.pdf is None and not (tmp_path / "report.pdf").exists()


def test_html_is_deterministic_and_row_order_free(inputs, built, tmp_path):
    _, html, _ = built
    rng = np.random.default_rng(0)

    def shuffle(df: pd.DataFrame) -> pd.DataFrame:
        return df.iloc[rng.permutation(len(df))].reset_index(drop=True)

    again = build_report(inputs, tmp_path / "a", pdf=False).html.read_bytes()
    shuffled = dataclasses.replace(
        inputs,
        scores=shuffle(inputs.scores),
        selection=shuffle(inputs.selection),
        explanations=shuffle(inputs.explanations),
        drift=shuffle(inputs.drift),
    )
    other = build_report(shuffled, tmp_path / "b", pdf=False).html.read_bytes()
    assert again == html.encode("utf-8")
    assert other == again
    assert not list(tmp_path.glob("*/.*.tmp"))  # atomic writes leave no temp files


def test_html_parses_without_errors(built):
    from tinyhtml5.parser import HTMLParser as Html5  # a spec-following HTML5 parser

    parser = Html5()
    parser.parse(built[1])
    assert parser.errors == []


def test_html_stays_small_per_resident(built):
    paths, _, _ = built
    assert paths.residents == 50
    assert paths.html_bytes < 100_000 + 9_000 * paths.residents


# -------------------------------------------------------------------------------- PDF


def test_pdf_has_japanese_headings_and_only_the_bundled_font(built, pages):
    paths, _, pdf = built
    text = pdf_text(pdf)
    for heading in ("対象者の概要", "モデルの概要", "較正", "ドリフト", "個人別の説明",
                    "選定理由別", "主な限界", "仮名の一覧"):  # fmt: skip
        assert heading in text, heading
    assert f"最初の {PDF_RESIDENTS} 人のみ" in text
    assert paths.pdf_pages == len(PdfReader(io.BytesIO(pdf)).pages) > 5
    assert paths.pdf_residents == PDF_RESIDENTS
    assert paths.pdf_parts == 3
    fonts = pdf_fonts(pdf)
    # one subset of IPAex Gothic per part, nothing else (no system or fallback font)
    assert fonts and all(re.fullmatch(r"/[A-Z]{6}\+IPAexGothic", f) for f in fonts), fonts
    # the first PDF_RESIDENTS pages (in page order) are in, the next one is not
    for ps in pages.order[:PDF_RESIDENTS]:
        assert ps in text
    assert pages.order[PDF_RESIDENTS] not in text


def test_pdf_summary_shows_the_sections(inputs, built):
    _, html, pdf = built
    text = squash(pdf_text(pdf))
    d = inputs.drift
    flagged = int(d["status"].isin(["watch", "shift"]).sum())
    assert squash(f"要確認 {flagged} 件") in text
    # one chip per shifted feature, + the legend and the count line
    assert text.count("変化大") == (d["status"] == "shift").sum() + 2
    top = d.sort_values("psi", ascending=False).iloc[0]
    assert squash(f"{top['label_ja']} {top['psi']:.3f}") in text
    for label in ("40-49歳", "65-74歳", "予防通知を送付", "対照群(今年度は送付せず)", "予測リスク",
                  "実際の発症割合", "想定する用途", "大きく異なる特徴量があります",
                  "原文(英語、モデル担当者向け)はHTML版に収録"):  # fmt: skip
        assert squash(label) in text, label
    assert "Model card" not in text  # the English card is in the HTML only
    for o in inputs.model.outcomes:  # metrics and calibration facts of every outcome
        m = inputs.model.metrics.set_index("outcome").loc[o]
        assert f"{m['auc']:.3f}" in text and f"{m['cal_slope']:.3f}" in text


def test_pdf_resident_pages_show_what_the_html_shows(inputs, built, pages):
    _, _, pdf = built
    texts = resident_page_texts(pdf)
    assert list(texts) == pages.order[:PDF_RESIDENTS]
    for ps, page in texts.items():
        page = squash(page)
        tables = pages.sections[ps]
        assert [t["class"] for t in tables][:2] == ["rk", "kv"]
        assert len(tables) == 2 + inputs.explanations.query("pseudonym == @ps")["outcome"].nunique()
        for t in tables:
            if t["caption"]:
                assert squash(t["caption"]) in page, t["caption"]
            for r in t["rows"]:
                for cell in r["cells"]:
                    assert squash(cell) in page, (ps, t["class"], cell)
            if t["class"] == "wf":  # the total row, in reading order
                total = t["rows"][-1]["cells"]
                assert squash(" ".join(total[:3])) in page


def test_pdf_bookmarks_and_page_numbers(built, pages):
    _, _, pdf = built
    reader = PdfReader(io.BytesIO(pdf))
    top = [x for x in reader.outline if not isinstance(x, list)]
    assert [t.title.split(" ")[0] for t in top] == ["1", "2", "3", "4", "5"]
    (residents,) = [x for x in reader.outline if isinstance(x, list)]
    assert reader.outline.index(residents) == 5  # under section 5
    assert [r.title for r in residents] == pages.order[:PDF_RESIDENTS]
    at = [reader.get_destination_page_number(r) for r in residents]
    # one page each, the last at the end; section 5 is on the page before the first
    assert at == list(range(at[0], at[0] + PDF_RESIDENTS)) and at[-1] == len(reader.pages) - 1
    assert reader.get_destination_page_number(top[-1]) < at[0]
    # every page is numbered, across the parts (the footer ends a page's text)
    for i, page in enumerate(reader.pages, start=1):
        assert page.extract_text().split()[-1] == str(i)
    assert reader.metadata["/Title"] == "健診リスク予測 説明資料 2024年度"
    assert reader.metadata["/CreationDate"].startswith("D:20250301")


def test_pdf_page_numbers_survive_a_page_that_overflows(inputs, tmp_path):
    """A resident whose page runs over: the parts after it are numbered right all the same."""
    long = dataclasses.replace(SCENARIOS[0], label_ja="とても長い名前のシナリオ" * 150)
    r = build_report(
        dataclasses.replace(inputs, scenarios=(long, *SCENARIOS[1:])),
        tmp_path,
        config=ReportConfig(pdf_residents=3, pdf_chunk=1),
    )
    reader = PdfReader(io.BytesIO(r.pdf.read_bytes()))
    (residents,) = [x for x in reader.outline if isinstance(x, list)]
    at = [reader.get_destination_page_number(x) for x in residents]
    assert len(reader.pages) == r.pdf_pages and np.diff(at).min() > 1  # pages overflowed
    for i, page in enumerate(reader.pages, start=1):
        assert page.extract_text().split()[-1] == str(i)


def test_pdf_is_byte_identical(inputs, built, tmp_path):
    _, _, pdf = built
    again = build_report(inputs, tmp_path, config=dataclasses.replace(CONFIG, pdf_workers=1))
    assert again.pdf.read_bytes() == pdf


def test_pdf_prints_data_literally(inputs, tmp_path):
    """Labels full of Typst's markup characters print exactly as written, never as markup."""
    hostile = 'x*y*_z_ #panic("no") $m$ <l> @r // c /* d */ \\ [e] `f` ~ ... -- = g'
    scenarios = (dataclasses.replace(SCENARIOS[0], label_ja="体重" + hostile), *SCENARIOS[1:])
    e = inputs.explanations.copy()
    # the value text of items the page prints in its notes line (not in the value table)
    notes = e["item"].isin(["history", "urine_protein", "uric_acid"])
    e.loc[notes, "value_text"] = "要因" + hostile
    d = inputs.drift.copy()
    d.loc[0, "label_ja"] = "特徴量" + hostile
    r = build_report(
        dataclasses.replace(inputs, scenarios=scenarios, explanations=e, drift=d),
        tmp_path,
        config=ReportConfig(pdf_residents=2),
    )
    text = squash(pdf_text(r.pdf.read_bytes()))
    for label in ("体重", "要因", "特徴量"):
        assert squash(label + hostile) in text, label
    first_two = parse_pages(r.html.read_text(encoding="utf-8")).order[:2]
    with_notes = e.loc[notes & e["pseudonym"].isin(first_two), ["pseudonym", "item"]]
    # printed once per item and resident, never once per waterfall
    assert text.count(squash("要因" + hostile)) == len(with_notes.drop_duplicates()) >= 1


def test_pdf_safe_replaces_missing_glyphs(inputs, tmp_path):
    assert pdf_safe("HbA1c ≥6.5 と ≤ 3") == "HbA1c >=6.5 と <= 3"
    assert pdf_safe("😀") == "〓"
    assert pdf_safe("糖尿病 γ-GT ±") == "糖尿病 γ-GT ±"
    # in the PDF: a label with characters the font lacks
    scenarios = (dataclasses.replace(SCENARIOS[0], label_ja="体重≥3kg減😀"), *SCENARIOS[1:])
    r = build_report(
        dataclasses.replace(inputs, scenarios=scenarios),
        tmp_path,
        config=ReportConfig(pdf_residents=1),
    )
    text = pdf_text(r.pdf.read_bytes())
    assert "体重>=3kg減〓" in text and "≥" not in text


# -------------------------------------------------------------------------------- privacy


def test_names_addresses_ids_never_reach_the_report(inputs, tmp_path):
    secrets = {
        "name": "秘密山花子",
        "name_kana": "ヒミツヤマハナコ",
        "address": "架空県秘密市非公開町9丁目",
        "person_id": "PID-424242-XQ",
        "birth_date": "1951-07-19",
    }

    def leak(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(**secrets)

    leaky = dataclasses.replace(
        inputs,
        scores=leak(inputs.scores),
        selection=leak(inputs.selection),
        explanations=leak(inputs.explanations),
        drift=leak(inputs.drift),
    )
    r = build_report(leaky, tmp_path, config=ReportConfig(pdf_residents=2))
    html = r.html.read_bytes()
    text = pdf_text(r.pdf.read_bytes())
    for v in secrets.values():
        assert v.encode("utf-8") not in html, v
        assert v not in text, v
    # the same report as without the extra columns
    clean = build_report(inputs, tmp_path / "clean", pdf=False).html.read_bytes()
    assert html == clean


# -------------------------------------------------------------------------------- errors


def test_contract_violations_are_refused_before_writing(inputs, tmp_path):
    bad = inputs.scores.copy()
    bad.loc[0, "risk_diabetes"] = 1.5
    with pytest.raises(ReportInputError, match=r"'scores'.*Scores contract"):
        build_report(dataclasses.replace(inputs, scores=bad), tmp_path, pdf=False)
    assert not (tmp_path / "report.html").exists()

    e = inputs.explanations.copy()
    e.loc[0, "pseudonym"] = "ffffffffffffffff"
    with pytest.raises(ReportInputError, match="not in 'scores'"):
        build_report(dataclasses.replace(inputs, explanations=e), tmp_path, pdf=False)

    no_bias = inputs.explanations[inputs.explanations["rank"] > 0]
    with pytest.raises(ReportInputError, match="bias"):
        build_report(dataclasses.replace(inputs, explanations=no_bias), tmp_path, pdf=False)

    # rows that do not reach the scores' risk (here: without their calibration step)
    no_cal = inputs.explanations[inputs.explanations["item"] != "calibration"]
    with pytest.raises(ReportInputError, match="do not add up"):
        build_report(dataclasses.replace(inputs, explanations=no_cal), tmp_path, pdf=False)
    off = inputs.explanations.copy()
    off.loc[off.index[1], "contribution"] += 0.01
    with pytest.raises(ReportInputError, match="do not add up"):
        build_report(dataclasses.replace(inputs, explanations=off), tmp_path, pdf=False)

    d = inputs.drift.copy()
    d.loc[0, "status"] = "bad"
    with pytest.raises(ReportInputError, match="'drift'"):
        build_report(dataclasses.replace(inputs, drift=d), tmp_path, pdf=False)

    with pytest.raises(ReportInputError, match="counts only"):
        build_report(dataclasses.replace(inputs, summary={"x": "1"}), tmp_path, pdf=False)

    with pytest.raises(ReportInputError, match="scenario"):
        build_report(
            dataclasses.replace(inputs, scenarios=(*SCENARIOS, SCENARIOS[0])), tmp_path, pdf=False
        )
    assert not (tmp_path / "report.html").exists()


def test_model_stamp_mismatch_is_warned(inputs, tmp_path):
    other = dataclasses.replace(make_model(np.random.default_rng(1)), version="4")
    r = build_report(dataclasses.replace(inputs, model=other), tmp_path, pdf=False)
    html = r.html.read_text(encoding="utf-8")
    assert 'class="warn">スコア表のモデルの版(3)がモデル情報・指定値(4)と一致しません' in html
    assert "model_version" not in html


def test_no_explained_residents_and_no_scenarios(inputs, tmp_path):
    empty = dataclasses.replace(inputs, explanations=inputs.explanations.iloc[:0], scenarios=())
    r = build_report(empty, tmp_path, pdf=False)
    html = r.html.read_text(encoding="utf-8")
    assert r.residents == 0 and "<section class=r" not in html
    assert "個人別の説明" in html
    with pytest.raises(ValueError, match="pdf_chunk"):
        ReportConfig(pdf_chunk=0)
    with pytest.raises(ValueError, match="pdf_workers"):
        ReportConfig(pdf_workers=0)


def test_pdf_without_residents_or_calibration(inputs, tmp_path):
    no_cal = dataclasses.replace(inputs.model, calibration=pd.DataFrame())
    empty = dataclasses.replace(
        inputs, explanations=inputs.explanations.iloc[:0], scenarios=(), model=no_cal
    )
    r = build_report(empty, tmp_path)
    text = pdf_text(r.pdf.read_bytes())
    assert r.pdf_residents == 0 and r.pdf_parts == 1
    assert "個人別の説明" in text and "較正データがありません" in text
    assert "最初の" not in text  # nothing left out


def test_out_dir_is_created(inputs, tmp_path: Path):
    r = build_report(inputs, tmp_path / "x" / "report", pdf=False)
    assert r.html == tmp_path / "x" / "report" / "report.html"


# -------------------------------------------------------------------------------- Japanese


def visible_text(html: str) -> str:
    """What a reader sees of the report's HTML, without the English model card (folded, for
    model staff) and the model's identifiers (names, hashes: data, not words)."""
    from html import unescape

    for pattern in (r"<style>.*?</style>", r"<script>.*?</script>", r"<svg.*?</svg>",
                    r'<div class="card">.*?</div>', r'<dl class="facts">.*?</dl>'):  # fmt: skip
        html = re.sub(pattern, " ", html, flags=re.S)
    html = re.sub(r"<p>採点日 .*?</p>", " ", html)  # the title line: the model's name
    return unescape(re.sub(r"<[^>]+>", " ", html))


#: ASCII words a nurse reads in the report: units, and the names of items and figures.
ASCII_WORDS = {
    "g", "mg", "dL", "kg", "cm", "m", "mmHg", "U", "L", "mL", "min",
    "BMI", "HbA1c", "HDL", "LDL", "Non", "GT", "GTP", "eGFR", "ALT", "GPT", "AST", "GOT",
    "AUC", "PR", "Brier", "ECE", "SHAP", "PSI", "LightGBM", "n", "pseudonym",
    "URI", "MLflow", "run", "sha256",  # in parentheses after the Japanese name of a model fact
}  # fmt: skip


def raw_keys(text: str) -> set[str]:
    """Program keys and English words in ``text``: snake_case and UPPER_CASE codes, and any
    ASCII word that is not a unit or an item's usual name (hex pseudonyms are data)."""
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9_]*", text))
    return {w for w in words if not re.fullmatch(r"[0-9a-f]+", w) and w not in ASCII_WORDS}


def test_html_has_no_program_keys_or_english(inputs, built):
    """Counts, reasons, metrics, drift items, stamps, outcomes and the resident pages are in
    Japanese: no count key (``reason_…``, ``letters_forecast_withheld``), no code
    (``SENT_ADVICE``), no metric key (``cal_slope``), no English heading."""
    text = visible_text(built[1])
    assert raw_keys(text) == set()
    for key in inputs.summary:
        assert key not in text
    assert "reason_" not in built[1] and "SENT_ADVICE" not in built[1]


def test_an_unlabelled_key_would_be_caught(inputs, tmp_path):
    """The check above can fail: a run count without its label prints as its key, and is seen."""
    r = build_report(
        dataclasses.replace(inputs, summary={**inputs.summary, "brand_new_count": 3}),
        tmp_path,
        pdf=False,
    )
    assert raw_keys(visible_text(r.html.read_text(encoding="utf-8"))) == {"brand_new_count"}


def _annual_count_keys() -> set[str]:
    """Every count key the annual run writes (kenshin.annual ``counts``; run.json)."""
    from scoring.score import eligible_residents, load_scoring_config
    from scoring.selection import REASONS

    candidates = pd.DataFrame(
        {"pseudonym": ["a" * 16], "fiscal_year": [2024], "exam_date": [pd.Timestamp("2024-06-01")],
         "age": [50], "sex": [1]}
    )  # fmt: skip
    enrollment = pd.DataFrame(
        {"pseudonym": ["a" * 16], "enrolled_from": [pd.Timestamp("2000-01-01")],
         "enrolled_until": [pd.NaT]}
    )  # fmt: skip
    elig = eligible_residents(
        candidates, enrollment, 2024, pd.Timestamp("2025-03-01"), load_scoring_config()
    )
    src = (Path(__file__).parents[2] / "kenshin" / "annual.py").read_text(encoding="utf-8")
    assigned = set(re.findall(r'counts\["(\w+)"\]', src))
    assigned |= set(re.findall(r'\*\*elig\.counts, "(\w+)"', src))
    assert len(assigned) >= 6 and 'f"reason_{k}"' in src, "kenshin/annual.py counts moved?"
    return set(elig.counts) | assigned | {f"reason_{k}" for k in REASONS}


def test_every_label_mapping_is_complete():
    """Each key the report can print has a Japanese label: run counts (all the annual run
    writes), selection reasons, outcomes, explanation items, questionnaire answers (every code
    a question allows), training-summary columns, stamps, drift states."""
    from data.columns import OUTCOMES, QUESTIONNAIRE_COLUMNS
    from features import declarations
    from models.evaluate import EvaluationReport
    from scoring.contracts import EXPLANATION_ROWS, SCORE_STAMPS
    from scoring.report import labels
    from scoring.selection import REASONS

    ja = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")  # kana or kanji
    keys = _annual_count_keys()
    assert not keys - set(labels.RUN_COUNT_JA), keys - set(labels.RUN_COUNT_JA)
    assert set(labels.REASON_JA) == set(REASONS)
    assert set(labels.OUTCOME_JA) == set(OUTCOMES)
    for key in (*declarations.ITEM_KEYS, *EXPLANATION_ROWS):
        label = labels.item_ja(key)
        assert label != key and not raw_keys(label), key
    for q in QUESTIONNAIRE_COLUMNS:
        words = declarations.CODE_JA[q]
        assert set(declarations.get(q).allowed) <= set(words), q
        assert all(ja.search(w) for w in words.values()), q
    assert set(labels.STAMP_JA) == set(SCORE_STAMPS)
    assert set(labels.STATUS_JA) == {"ok", "watch", "shift", "n/a"}
    for mapping in (labels.RUN_COUNT_JA, labels.REASON_JA, labels.OUTCOME_JA, labels.STAMP_JA,
                    labels.METRIC_JA, labels.MEMBER_JA):  # fmt: skip
        assert not [v for v in mapping.values() if raw_keys(v)], mapping

    # the training summary the report reads (models.evaluate), with every kind of row
    models = ["engine", "lightgbm", "logistic", "points", "oracle"]
    metrics = pd.DataFrame(
        [{"outcome": o, "model": m, "slice": "all", "group": "all", "auc": 0.8, "ece": 0.01,
          "cal_slope": 1.0, "cal_intercept": 0.0, "brier": 0.05}
         for o in ("diabetes", "ckd") for m in models]
    )  # fmt: skip
    synthetic = pd.DataFrame(
        {"outcome": ["diabetes", "ckd"], "n": 10, "oracle_auc": 0.9, "auc_ratio": 0.9,
         "mae_p_true": 0.01, "driver_any": 0.5, "driver_mean_overlap": 1.0,
         "driver_any_baseline": 0.4, "driver_high_any": 0.6, "driver_high_any_baseline": 0.5}
    )  # fmt: skip
    selection = pd.DataFrame(
        {"outcome": ["diabetes", "ckd", "liver"], "member": ["logistic", "blend", "off"],
         "weight": [0.0, 0.5, 0.0], "chosen": True, "note": ["few events", "", "too few"]}
    )  # fmt: skip
    report = EvaluationReport(
        test_year=2023, metrics=metrics, synthetic=synthetic, forecasts=pd.DataFrame(),
        splits=pd.DataFrame(), selection=selection,
    )  # fmt: skip
    summary = report.summary()
    columns = set(summary.columns) - labels.METRIC_NOT_SHOWN
    assert not columns - set(labels.METRIC_JA), columns - set(labels.METRIC_JA)
    assert set(summary["member"]) <= set(labels.MEMBER_JA)


def test_training_summary_in_japanese(inputs, tmp_path):
    """The model section of a real training summary (``engine_auc``, ``member``, an English
    ``note``): AUC shown as 識別能(AUC), the member in words, the note's count in Japanese, the
    synthetic-data caveat; no column name and no English note."""
    from scoring.report.labels import SYNTHETIC_JA

    m = inputs.model.metrics
    summary = pd.DataFrame(
        {"outcome": m["outcome"], "engine_auc": m["auc"], "lightgbm_auc": m["auc"],
         "logistic_auc": m["logistic_auc"], "ece": m["ece"], "cal_slope": m["cal_slope"],
         "cal_intercept": m["cal_intercept"], "brier": m["brier"],
         "member": ["logistic"] + ["lightgbm"] * (len(m) - 1),
         "member_weight": [0.0] + [1.0] * (len(m) - 1),
         "note": ["diabetes: 75 training events < min_events 100: no LightGBM model"]
         + [""] * (len(m) - 1),
         "auc_ratio": 0.95, "mae_p_true": 0.02}
    )  # fmt: skip
    model = dataclasses.replace(inputs.model, metrics=summary)
    r = build_report(dataclasses.replace(inputs, model=model), tmp_path, pdf=False)
    html = r.html.read_text(encoding="utf-8")
    section = html[html.index('<h2 id="s2"') : html.index('<h2 id="s3"')]
    assert raw_keys(visible_text(section)) == set()
    assert "training events" not in html
    assert "ロジスティック回帰で算出しています(学習データの発症 75 件)" in section
    assert "<th>識別能(AUC)</th>" in section and SYNTHETIC_JA in section
    for auc in summary["engine_auc"]:
        assert f"<td>{auc:.3f}</td>" in section
    assert "<td>ロジスティック回帰(簡易)</td>" in section


def _lines(html: str) -> dict[str, dict[str, str]]:
    """Pseudonym → the page's first lines and word lines (the notes, the questionnaire)."""
    out = {}
    for ps, body in re.findall(r"<section class=r id=p-(\w+)>(.*?)</section>", html, re.S):
        head = re.search(r"<p class=m>(.*?)</p>", body).group(1)
        words = dict(re.findall(r"<p class=x><b>(.*?)</b> (.*?)</p>", body))
        out[ps] = {"head": head, **words}
    return out


def test_questionnaire_answers_are_words(inputs, built):
    """Every answer of the questionnaire is printed as words on the resident's page
    (features.declarations.CODE_JA): 喫煙「吸わない」, 飲酒「毎日・1〜2合」, never a code."""
    from html import unescape

    from data.columns import QUESTIONNAIRE_COLUMNS
    from features.declarations import CODE_JA, get

    s = inputs.scores.set_index("pseudonym")
    lines = _lines(built[1])
    assert len(lines) == 50
    for ps, page in lines.items():
        answers = unescape(page["問診"])
        parts = answers.split(" ・ ")
        assert len(parts) == len(QUESTIONNAIRE_COLUMNS) - 1  # drinking: one answer of two
        for q in QUESTIONNAIRE_COLUMNS:
            if q == "q_alcohol_amount":
                continue
            code = s.at[ps, q]
            word = "未回答" if pd.isna(code) else CODE_JA[q][int(code)]
            if q == "q_alcohol_freq":
                amount = s.at[ps, "q_alcohol_amount"]
                if not pd.isna(code) and code <= 6 and not pd.isna(amount):
                    word += "・" + CODE_JA["q_alcohol_amount"][int(amount)]
                assert f"飲酒「{word}」" in parts, (ps, answers)
            else:
                assert f"{get(q).ja}「{word}」" in parts, (ps, q, answers)
        assert not re.search(r"「\d+」", answers)  # no answer printed as its code
    assert any("飲酒「毎日・" in unescape(p["問診"]) for p in lines.values())


def test_no_field_twice_on_a_resident_page(inputs, built, pages):
    """A page prints each fact once: values in the value table (the notes add only an item's
    change since the last checkup, other items' values once), answers in the questionnaire
    line, age and sex in the first line; waterfalls name items without values; the letter
    line says a reason only where letter and arm do not."""
    from html import unescape

    from features.declarations import item

    e = inputs.explanations
    sel = inputs.selection.set_index("pseudonym")
    lines = _lines(built[1])
    seen_note = 0
    for ps, tables in pages.sections.items():
        page = lines[ps]
        head = unescape(page["head"])
        # the letter line: 予防通知(生活習慣)・送付群 / テーマ: … — no 理由 when it says nothing new
        reason = sel.at[ps, "reason"]
        implied = reason in ("SENT_ADVICE", "SENT_SEE_DOCTOR", "CONTROL_ARM")
        assert ("理由:" in head) != implied, head
        # waterfall rows: the item's label, nothing else
        labels = {item(k).ja for k in set(e.loc[e["pseudonym"] == ps, "item"]) if k != "bias"
                  and k not in ("other", "calibration")}  # fmt: skip
        for t in tables:
            if t["class"] == "wf":
                for r in t["rows"][1:-1]:
                    assert r["cells"][0] in labels or r["cells"][0].startswith(
                        ("ベースライン", "その他", "較正")
                    ), r["cells"][0]
        # notes: each item once; value-table items only with their change
        notes = unescape(page.get("上の表にない値", ""))
        entries = notes.split(" ・ ") if notes else []
        names = [x.split(" ")[0] for x in entries]
        assert len(names) == len(set(names)), notes
        (kv,) = [t for t in tables if t["class"] == "kv"]
        for x in entries:
            name, text = x.split(" ", 1)
            key = next(k for k in set(e["item"]) if k not in ("bias", "other", "calibration")
                       and item(k).ja == name)  # fmt: skip
            in_table = key in ("hba1c", "glucose", "blood_pressure", "adiposity", "tg", "hdl",
                               "ldl", "alt", "ggt", "kidney")  # fmt: skip
            assert text.startswith("前回比 ") == in_table, x
            assert key not in ("age", "sex", "smoking", "alcohol") and not key.startswith("q_")
            seen_note += 1
        kv_text = " ".join(c for r in kv["rows"] for c in r["cells"])
        assert "前回比" not in kv_text
    assert seen_note  # the fixture has notes


def test_letter_line_says_a_reason_only_when_new(inputs, pages, tmp_path):
    """A resident without a letter place (here: over budget) gets the reason on the page."""
    sel = inputs.selection.copy()
    ps = pages.order[0]
    row = sel["pseudonym"] == ps
    sel["reason"] = sel["reason"].astype("string")
    sel.loc[row, ["reason", "arm", "sent", "rank"]] = ["OVER_BUDGET", None, False, None]
    r = build_report(dataclasses.replace(inputs, selection=sel), tmp_path, pdf=False)
    head = _lines(r.html.read_text(encoding="utf-8"))[ps]["head"]
    assert "理由: 予算枠外" in head and "OVER_BUDGET" not in head


def test_a_resident_page_holds_every_outcome(tmp_path):
    """Each resident is one page in the PDF, even with a waterfall per outcome (seven, in
    rows of four) of twelve items each: no resident spills onto a page of their own."""
    import pypdfium2 as pdfium

    inputs = make_inputs(n_scored=400, n_explained=12, seed=5, k=12)
    built = build_report(inputs, tmp_path, config=ReportConfig(pdf_residents=12, pdf_chunk=12))
    doc = pdfium.PdfDocument(str(built.pdf))
    try:
        texts = [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()
    start = next(i for i, t in enumerate(texts) if "5 個人別の説明" in t)
    resident = [bool(re.search(r"\d+歳 (男性|女性)", t)) for t in texts]
    first = resident.index(True)
    assert first > start and sum(resident) == 12
    assert all(resident[first:]), "a resident's page overflowed onto the next"


def test_letters_held_for_a_value_to_verify_are_listed_with_the_value(inputs, tmp_path):
    """Residents whose see-a-doctor letter is held for an implausible value (VERIFY_VALUE) are
    listed in both documents with the value and its plausible range: staff verify them."""
    from scoring.selection import SelectionConfig, select

    config = SelectionConfig(control_rate=0.0, budget={"advice": 40})
    scores = inputs.scores.reset_index(drop=True)
    before = select(scores, config)
    quiet = np.flatnonzero(before["letter_type"].isna().to_numpy())[:2]  # no letter at all
    scores.loc[quiet, "ggt"] = 1500.0
    selection = select(scores, config)
    held = selection.loc[selection["reason"] == "VERIFY_VALUE", "pseudonym"].astype(str)
    assert len(held) == 2 and set(held) == set(scores.loc[quiet, "pseudonym"].astype(str))
    r = build_report(
        dataclasses.replace(inputs, scores=scores, selection=selection),
        tmp_path,
        config=ReportConfig(pdf_residents=0),
    )
    html = visible_text(r.html.read_text(encoding="utf-8"))
    pdf = squash(pdf_text(r.pdf.read_bytes()))
    for doc in (squash(html), pdf):
        assert squash("値の確認が必要な人(2 人)") in doc
        listed = re.findall(r"([0-9a-f]{16})((?:(?![0-9a-f]{16}).)*)", doc.split("確認する値")[1])
        rows = {pid: what for pid, what in listed if pid in set(held)}
        assert set(rows) == set(held)  # every held resident, with their γ-GT and its range
        assert all(squash("γ-GT(γ-GTP)(U/L) 1500(想定範囲 5〜1000)") in w for w in rows.values())
    assert "値の確認待ち" in html  # the reasons table counts them
