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
                  "40-49歳", "65-74歳", "SENT_ADVICE", "CONTROL_ARM", "主な限界・注意点",
                  "モデルカード全文", "<details>", "<svg"):  # fmt: skip
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
    e = inputs.explanations
    raw = e.groupby(["pseudonym", "outcome"])["contribution"].sum()
    checked = 0
    from scoring.report.labels import outcome_ja

    by_label = {outcome_ja(o): o for o in inputs.model.outcomes}
    for ps, tables in pages.sections.items():
        wfs = [t for t in tables if t["class"] == "wf"]
        assert len(wfs) == e.loc[e["pseudonym"] == ps, "outcome"].nunique()
        for t in wfs:
            o = by_label[t["caption"].split(" ")[0]]
            rows = [r["cells"] for r in t["rows"][1:]]  # skip the header row
            assert rows[0][0] == "ベースライン" and rows[-1][0].startswith("合計")
            assert rows[-2][0] == "その他の要因"
            contribs = [float(r[2]) for r in rows[:-1]]
            final = float(rows[-1][2])
            # rendered with 2 decimals: bias + Σ contributions = total, up to rounding
            assert sum(contribs) == pytest.approx(final, abs=0.005 * len(rows))
            assert final == pytest.approx(raw[(ps, o)], abs=0.005)
            prob = float(rows[-1][1].rstrip("%"))
            assert prob == pytest.approx(100 / (1 + math.exp(-raw[(ps, o)])), abs=0.051)
            checked += 1
    assert checked == len(raw)


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
                    "選定理由別", "主な限界", "モデルカード全文", "仮名の一覧"):  # fmt: skip
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
    assert squash(f"{top['label_ja']} {top['feature']} {top['psi']:.3f}") in text
    for label in ("40-49歳", "65-74歳", "SENT_ADVICE", "CONTROL_ARM", "予測リスク", "実際の発症割合",
                  "Model card: kenshin-risk", "大きく異なる特徴量があります"):  # fmt: skip
        assert squash(label) in text, label
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
    e.loc[e["rank"] == 1, "feature"] = "要因" + hostile  # undeclared: shown by its name
    d = inputs.drift.copy()
    d.loc[0, "label_ja"] = "特徴量" + hostile
    # the model card is Markdown (`code` and **bold** are its markup): all else prints as is
    card = inputs.model.model_card + f"\n## Notes\n- 注意 {hostile.replace('`', '')}\n"
    r = build_report(
        dataclasses.replace(
            inputs,
            scenarios=scenarios,
            explanations=e,
            drift=d,
            model=dataclasses.replace(inputs.model, model_card=card),
        ),
        tmp_path,
        config=ReportConfig(pdf_residents=2),
    )
    text = squash(pdf_text(r.pdf.read_bytes()))
    for label in ("体重", "要因", "特徴量"):
        assert squash(label + hostile) in text, label
    assert squash("注意" + hostile.replace("`", "")) in text
    assert text.count(squash("要因" + hostile)) >= 2 * 6  # every waterfall of both residents


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
    assert "model_version" in r.html.read_text(encoding="utf-8")
    assert 'class="warn">スコア表の model_version' in r.html.read_text(encoding="utf-8")


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
