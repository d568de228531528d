"""Render advice letters: LetterRequest rows → one PDF per resident, a print file, a manifest.

Pure core: the input is a validated :mod:`scoring.letters.schema` table and a catalogue; nothing
here reads the store, the model or the contacts. Layout: ``templates/letter.typ.j2`` (Jinja2
writes a Typst document, every value escaped as plain text) and ``templates/letter-style.typ``
(the look), typeset by Typst (the ``typst`` wheel: no system tool) with only the IPAex Gothic
font bundled by the PyPI package ``matplotlib-fontja``, embedded (subset) in every PDF. The
PDFs are PDF/UA-1 (accessible: tagged headings, tables and reading order, title, language),
which Typst checks as it writes them.

Output folder (0700; every file 0600, written to a temp file and moved into place)::

    out_dir/letters/<pseudonym>.pdf   one letter per resident (never named after the person)
    out_dir/print/print_0001.pdf      merged print files in postal-code order (batches)
    out_dir/manifest.csv              pseudonym, letter_type, outcome, language, file, pages,
                                      sha256, replaced_characters, notes … (sorted like the
                                      print files; a spreadsheet-safe CSV, data.files.csv_bytes)

Names and addresses print as given, except what the font cannot show (scoring.typeset.printable):
a character outside the bundled IPAex font (𠮷 U+20BB7, emoji, scripts it lacks, 外字 in the
private-use area) prints as 〓 and is counted in ``replaced_characters`` (the code points are in
``notes``); control characters, direction overrides and marks (U+202A-202E, U+2066-2069,
U+200E/F) and other invisible characters are removed. So one resident's name never stops the
other letters (Typst refuses an accessible PDF holding a character its font lacks).

Deterministic: the same requests, catalogue, templates, Typst version and ``issue_date`` give
byte-identical PDFs, print files and manifest. Resumable: a letter whose PDF exists with the
sha256 and input hash recorded in the manifest (or in the journal a killed run left behind) is
not rendered again; stale temp files are removed.

Speed: Typst keeps the style module and the font between letters of a process, so a letter
costs a small fraction of the CPU the HTML/CSS renderer (WeasyPrint) used before needed
(figures: bench/README.md, ``bench/bench_letters.py``).

Safety (docs/domain.md §Letter safety): the letter type is decided by the selection
(scoring.selection) alone; an ``advice`` request with a 受診勧奨判定値-level value or blood pressure
≥160/100 breaks the request contract (LetterRequestError). ``see_doctor`` letters carry no
risk, forecast, factor or what-if section and list the referral-level items; only modifiable
factors are advised on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from data.files import FORMULA_STARTS, atomic_write, csv_bytes
from data.judgements import MHLW_R6, REFERRAL_ITEMS, URGENT_BP, JudgementValue, item_judgement
from data.workers import worker_initializer
from scoring.outputs import LETTER_PDFS, LETTERS_JOURNAL, LETTERS_MANIFEST, PRINT_FILES
from scoring.typeset import (
    breakable,
    environment,
    font_cmap,
    font_path,
    fonts,
    page_count,
    printable,
    ruby_segments,
)

from .catalogue import DEFAULT_CATALOGUE, Catalogue, CatalogueError, load_catalogue
from .schema import (
    FORECAST_ITEMS,
    NAME_MAX,
    LetterRequestError,
    letter_items,
    normalise_requests,
)

__all__ = [
    "MANIFEST_COLUMNS",
    "LetterConfig",
    "LetterManifest",
    "LetterRunner",
    "ProcessRunner",
    "font_path",
    "render_letters",
]

_log = logging.getLogger(__name__)
#: Bump when the rendering code changes what a letter looks like (part of the input hash).
#: 6: one page when it fits (contact beside the address, forecast a column of the results
#: table, no repeated name); 5: address block grows; 4: PDF/UA-1; 3: Typst; the intro names
#: the checkup's own fiscal year
RENDERER_VERSION = "6"
TEMPLATES = Path(__file__).with_name("templates")
MANIFEST_COLUMNS = [
    "pseudonym", "letter_type", "requested_letter_type", "outcome", "language",
    "requested_language", "file", "pages", "sha256", "input_sha256", "replaced_characters",
    "notes",
]  # fmt: skip
#: Fields of a request printed as given (after :func:`scoring.typeset.printable`).
CONTACT_TEXT = ("name", "name_kana", "address")
#: Address lines the window of a 長形3号 envelope shows (10.5 pt in 88 mm, about 23 kanji a line).
WINDOW_ADDRESS_LINES = 4
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
#: The manifest note of a letter whose forecast table was left out (kenshin.annual counts it).
FORECAST_WITHHELD = "forecast table withheld"
#: Chart scale (lo, hi) per item; values outside are pinned to the ends.
_SCALE = {
    "hba1c": (4.5, 8.0), "fpg": (70, 160), "sbp": (90, 180), "dbp": (50, 110),
    "ldl": (60, 200), "tg": (30, 400), "hdl": (20, 100), "waist_cm": (60, 120),
    "bmi": (16, 35), "alt": (5, 100), "ggt": (5, 200), "egfr": (20, 120),
}  # fmt: skip
#: Items whose 受診勧奨判定値 turns an advice letter into a see-a-doctor letter.
_COMPARE = {
    # ≥ and ≤ are not in IPAex: words, so that no glyph falls back to a system font
    ">=": {"ja": "{v}以上", "ja-easy": "{v}以上", "en": "{v} or more"},
    "<": {"ja": "{v}未満", "ja-easy": "{v}未満", "en": "under {v}"},
    "<=": {"ja": "{v}以下", "ja-easy": "{v}以下", "en": "{v} or less"},
}


@dataclass(frozen=True)
class LetterConfig:
    """How letters are rendered.

    ``issue_date`` is printed on the letter and stamped as the PDF creation date (fixed, so the
    output is reproducible); default 1 April after the fiscal year of each request.
    ``workers`` processes render in parallel (at least one; never this process) with the
    default runner (:class:`ProcessRunner`); another runner decides its own.
    """

    issue_date: date | None = None
    catalogue_path: Path | None = None
    workers: int = 2
    print_batch_size: int = 1000
    merge: bool = True


@dataclass
class LetterManifest:
    """What :func:`render_letters` wrote."""

    out_dir: Path
    manifest_path: Path
    frame: pd.DataFrame
    print_files: list[Path] = field(default_factory=list)
    rendered: int = 0
    skipped: int = 0
    render_seconds: float = 0.0
    render_cpu_seconds: float = 0.0  # CPU time of the renderers, summed over processes
    total_seconds: float = 0.0

    @property
    def letters_per_second(self) -> float:
        """Rendered letters per second of rendering wall time (0 when nothing was rendered)."""
        return self.rendered / self.render_seconds if self.render_seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Values against thresholds, safety override
# --------------------------------------------------------------------------------------------


def _judgement(item: str, row: dict) -> JudgementValue | None:
    v = MHLW_R6
    if item == "tg":
        return v.tg_fasting if bool(row.get("tg_fasting", True)) else v.tg_nonfasting
    if item == "waist_cm":
        sex = row.get("sex")
        if sex == 1:
            return v.waist_male
        if sex == 2:
            return v.waist_female
        return None
    return item_judgement(item) if item != "weight_kg" else None


def _num(x) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return math.nan
    return f


def _level(jv: JudgementValue, x: float) -> int:
    arr = np.array([x], dtype="float64")
    lvl = jv.level(arr)[0]
    return -1 if np.isnan(lvl) else int(lvl)


def referral_items(row: dict) -> tuple[list[str], bool]:
    """Items at a 受診勧奨判定値, and whether blood pressure is ≥160/100 (immediate tier): one
    letter's view of data.judgements.referral_values (a test keeps the two in step)."""
    hits = []
    for item in REFERRAL_ITEMS:
        jv = _judgement(item, row)
        x = _num(row.get(item))
        if jv is not None and not math.isnan(x) and _level(jv, x) == 2:
            hits.append(item)
    sbp, dbp = _num(row.get("sbp")), _num(row.get("dbp"))
    urgent = (not math.isnan(sbp) and sbp >= URGENT_BP[0]) or (
        not math.isnan(dbp) and dbp >= URGENT_BP[1]
    )
    return hits, urgent


# --------------------------------------------------------------------------------------------
# Letter context
# --------------------------------------------------------------------------------------------


#: Where an address may break besides its spaces: after 丁目, 番地 or 号 (so a line never ends
#: inside a block number or a building name).
_ADDRESS_BREAK = re.compile(r"(?<=丁目)|(?<=番地)|(?<=号)")
#: Longer pieces may break anywhere (one piece must never run past the address window).
ADDRESS_PIECE_MAX = 20


def address_parts(address: str) -> list[dict]:
    """The address as pieces that stay whole on a line: ``text``, ``keep`` (print unbroken;
    false for a piece over :data:`ADDRESS_PIECE_MAX` characters) and ``sep`` (``" "`` where
    the address had a space, ``""`` where it may break without one)."""
    parts: list[dict] = []
    for word in address.split():
        pieces = [p for p in _ADDRESS_BREAK.split(word) if p]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            parts.append({"text": piece, "keep": len(piece) <= ADDRESS_PIECE_MAX,
                          "sep": " " if last else ""})  # fmt: skip
    if parts:
        parts[-1]["sep"] = ""
    return parts


#: Before an opening bracket, unless it holds a reading (月曜日(げつようび) is ふりがな).
_BEFORE_BRACKET = re.compile(r"(?=[(（](?![\u3041-\u3096\u30a1-\u30faー]+[)）]))")


def phrase_parts(text: str) -> list[dict]:
    """:func:`address_parts`, also breakable before a bracket: office hours
    (平日 午前8時30分〜午後5時15分(土日・祝日・年末年始を除く)) break between their phrases."""
    parts: list[dict] = []
    for p in address_parts(text):
        pieces = [x for x in _BEFORE_BRACKET.split(p["text"]) if x]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            shown = "".join(base for base, _ in ruby_segments(piece))  # without readings
            if parts and len(shown) <= 2:  # 3階: stays with the word before it
                prev = parts[-1]
                prev["text"] += prev["sep"] + piece
                prev["sep"] = p["sep"] if last else ""
                continue
            parts.append({"text": piece, "keep": len(shown) <= ADDRESS_PIECE_MAX,
                          "sep": p["sep"] if last else ""})  # fmt: skip
    return parts


def _fmt(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def _pct(p: float) -> str:
    return str(max(1, round(p * 100)))


def _issue_date(cfg: LetterConfig, fiscal_year: int) -> date:
    return cfg.issue_date or date(int(fiscal_year) + 1, 4, 1)


def _date_text(cat: Catalogue, lang: str, d: date) -> str:
    return cat.ui["date_format"][lang].format(
        y=d.year, m=d.month, d=d.day, month=_MONTHS[d.month - 1]
    )


#: Width of a value chart (mm); letter-style.typ draws it at this width.
_BAR_MM = 36.0


def _chart(item: str, jv: JudgementValue, x: float) -> dict:
    """The zones of a value chart as (name, width in mm), left to right, and the dot's centre."""
    # An item without a declared scale (e.g. one an outcome declaration adds): half its lower
    # cut to one and a half times its higher one.
    lo, hi = _SCALE.get(item) or (
        0.5 * min(jv.guidance, jv.referral or jv.guidance),
        1.5 * max(jv.guidance, jv.referral or jv.guidance),
    )

    def pos(v: float) -> float:
        return min(100.0, max(0.0, (v - lo) / (hi - lo) * 100))

    g = pos(jv.guidance)
    r = pos(jv.referral) if jv.referral is not None else None
    if jv.op == ">=":
        cuts = [("ok", 0.0, g)] + (
            [("guid", g, r), ("ref", r, 100.0)] if r is not None else [("guid", g, 100.0)]
        )
    else:  # low is bad: red on the left
        cuts = ([("ref", 0.0, r), ("guid", r, g)] if r is not None else [("guid", 0.0, g)]) + [
            ("ok", g, 100.0)
        ]
    return {
        "zones": [(c, round((b - a) * _BAR_MM / 100, 2)) for c, a, b in cuts if b - a > 0],
        "dot": round(pos(x) * _BAR_MM / 100, 2),
    }


def build_context(row: dict, cat: Catalogue, cfg: LetterConfig) -> tuple[dict, list[str]]:
    """The template context of one normalised request row, and notes for the manifest."""
    lang = row["language"]
    ui = {k: v[lang] for k, v in cat.ui.items()}
    notes: list[str] = []
    if row.get("requested_language", "") not in ("ja", "ja-easy", "en"):
        notes.append(f"language {row.get('requested_language') or '(missing)'!r} not supported: ja")
    outcome = cat.outcomes[row["outcome"]][lang]
    hits, urgent = referral_items(row)
    # The letter type is the selection's (scoring.selection); the request contract refuses an
    # advice row with a referral-level value, so this is a check, not a decision.
    see_doctor = row["letter_type"] == "see_doctor"
    if not see_doctor and (hits or urgent):
        raise LetterRequestError("an advice request holds a referral-level value")
    issued = _issue_date(cfg, row["fiscal_year"])
    exam = pd.Timestamp(row["exam_date"]).date()

    values = []
    waist_note = False
    for item in letter_items(row["outcome"]):
        x = _num(row.get(item))
        if math.isnan(x):
            continue
        meta = cat.items[item]
        jv = _judgement(item, row)
        cmp_ = _COMPARE
        level = -1
        guidance = referral = "—"
        if jv is not None:
            level = _level(jv, x)
            guidance = cmp_[jv.op][lang].format(v=f"{jv.guidance:g}")
            if jv.referral is not None:
                referral = cmp_[jv.op][lang].format(v=f"{jv.referral:g}")
        elif item == "waist_cm":
            waist_note = True
        judgement = {
            -1: ui["judge_none"], 0: ui["judge_normal"], 1: ui["judge_guidance"],
            2: ui["judge_referral"],
        }[level]  # fmt: skip
        values.append(
            {
                "label": meta.label[lang], "unit": meta.unit, "value": _fmt(x, meta.decimals),
                "guidance": guidance, "referral": referral, "judgement": judgement,
                "level": level, "chart": _chart(item, jv, x) if jv is not None else None,
                "item": item, "forecast": None,
            }
        )  # fmt: skip

    ctx: dict = {
        "lang": lang,
        "lang_attr": ui["lang_attr"],
        "letter_type": "see_doctor" if see_doctor else "advice",
        "ui": ui,
        "issued_on": issued,
        "title": ui["title_see_doctor"] if see_doctor else ui["title_advice"],
        "postal": f"{row['postal_code'][:3]}-{row['postal_code'][3:]}",
        "address": row["address"],
        "address_parts": address_parts(row["address"]),
        "name": row["name"],
        "name_kana": row.get("name_kana") or "",
        "issued": ui["issued"].format(date=_date_text(cat, lang, issued)),
        "sender": ui["sender"],
        # A Japanese greeting is the name again (髙橋 﨑子 様), printed just above in the address
        # block: only the English salutation (Dear …,) is printed.
        "greeting": ui["greeting"].format(name=row["name"]) if lang == "en" else "",
        "intro": cat.intros["see_doctor" if see_doctor else "advice"][lang].format(
            fiscal_year=exam.year if exam.month >= 4 else exam.year - 1, outcome=outcome
        ),
        "sec_values": ui["sec_values"].format(exam_date=_date_text(cat, lang, exam)),
        "values": values,
        "waist_note": waist_note,
        "see_doctor": see_doctor,
        "bp_urgent": urgent,
        "doctor_items": ui["doctor_items"].format(
            items="、".join(cat.items[i].label[lang] for i in hits)
            if lang != "en"
            else ", ".join(cat.items[i].label[lang] for i in hits)
        )
        if hits
        else "",
        # The consultation contact beside the address: its address and hours break only at
        # their spaces (and after 丁目 / 番地 / 号), never inside 区役所 3階 or 土日・祝日.
        "contact": {
            "office": cat.contact.office[lang],
            "address": cat.contact.address[lang],
            "address_parts": phrase_parts(cat.contact.address[lang]),
            "phone": cat.contact.phone,
            "hours": cat.contact.hours[lang],
            "hours_parts": phrase_parts(cat.contact.hours[lang]),
        },
        "footer": ui["footer"],
        "forecasts": [],
        "forecast_column": False,
        "factors": [],
        "whatif": None,
        "risk": None,
    }
    if see_doctor:
        return ctx, notes

    pct = _pct(row["risk"])
    years = int(row.get("horizon_years") or 1)
    ctx["risk"] = {
        "heading": ui["sec_risk"].format(outcome=outcome),
        "pct": pct,
        "sentence": ui["risk_sentence"].format(years=years, outcome=outcome, risk=pct),
        "people": ui["risk_people"].format(n=pct),
        "band": cat.bands[row["risk_band"]][lang],
    }
    withheld = row.get("forecast_withheld") or ""
    if withheld:
        notes.append(f"{FORECAST_WITHHELD} ({withheld}: it contradicts the risk)")
    for item in () if withheld else FORECAST_ITEMS:
        q = [_num(row.get(f"{item}_{s}")) for s in ("p10", "p50", "p90")]
        if any(math.isnan(v) for v in q):
            continue
        meta = cat.items[item]
        now = _num(row.get(item))
        forecast = {
            "label": meta.label[lang], "unit": meta.unit,
            "now": "—" if math.isnan(now) else _fmt(now, meta.decimals),
            "p10": _fmt(q[0], meta.decimals), "p50": _fmt(q[1], meta.decimals),
            "p90": _fmt(q[2], meta.decimals),
        }  # fmt: skip
        # Next year's forecast is a column of the results table, beside this year's value (a
        # table of its own repeated every item's name, unit and value); only an item without
        # this year's value keeps a forecast table row.
        shown = next((v for v in ctx["values"] if v["item"] == item), None)
        if shown is not None:
            shown["forecast"] = forecast
            ctx["forecast_column"] = True
        else:
            ctx["forecasts"].append(forecast)
    seen: set[str] = set()
    for i in (1, 2, 3):
        feat = row.get(f"factor_{i}")
        if not feat or (isinstance(feat, float) and math.isnan(feat)):
            continue
        topic = cat.topic_of(feat)
        if topic is None:
            notes.append(f"factor {feat!r} dropped (not modifiable or not in the catalogue)")
            continue
        if topic in seen:
            continue
        seen.add(topic)
        t = cat.topics[topic]
        ctx["factors"].append({"title": t.title[lang], "advice": t.advice[lang]})
    sc = row.get("whatif_scenario")
    if sc and not (isinstance(sc, float) and math.isnan(sc)):
        before, after = _num(row.get("whatif_risk_before")), _num(row.get("whatif_risk_after"))
        if math.isnan(before) or math.isnan(after) or int(_pct(after)) >= int(_pct(before)):
            notes.append(f"what-if {sc!r} omitted (no shown decrease)")
        else:
            ctx["whatif"] = (
                cat.whatif[sc].text[lang].format(before=f"{_pct(before)}%", after=f"{_pct(after)}%")
            )
    return ctx, notes


# --------------------------------------------------------------------------------------------
# The renderer (one per process)
# --------------------------------------------------------------------------------------------


class _Renderer:
    def __init__(self, catalogue_path: str, cfg: LetterConfig) -> None:
        import typst

        self.cfg = cfg
        self.cat = load_catalogue(catalogue_path)
        # Every value is escaped as plain Typst text (scoring.typeset), never read as markup.
        # やさしい日本語 letters print the catalogue's readings as ふりがな.
        self.env = environment(TEMPLATES, ruby=lambda ctx: ctx.get("lang") == "ja-easy")
        self.template = self.env.get_template("letter.typ.j2")
        # One compiler per process: Typst keeps the style module and the font between letters.
        # Only the bundled font is visible, so no letter depends on the machine's fonts.
        self.compiler = typst.Compiler(root=str(TEMPLATES), font_paths=fonts())
        self.cmap = font_cmap()
        fixed = json.dumps(self.cat.model_dump(), ensure_ascii=False) + "".join(
            str(v) for c in _COMPARE.values() for v in c.values()
        )
        outside = sorted(
            {
                f"{c} U+{ord(c):04X}"
                for c in fixed
                if c.isprintable() and not c.isspace() and ord(c) not in self.cmap
            }
        )
        if outside:
            raise CatalogueError(
                f"letter catalogue {catalogue_path} uses characters the IPAex font lacks "
                f"(they would print as boxes): {outside}"
            )

    def printable_row(self, row: dict) -> tuple[dict, int, list[str]]:
        """``row`` with its name, kana and address as printed (:func:`printable`, then
        :func:`breakable`), the number of characters replaced by 〓, and notes."""
        return printable_contact(row, self.cmap)

    def source(self, ctx: dict) -> str:
        """The Typst source of one letter."""
        return self.template.render(**ctx)

    def render(self, row: dict) -> tuple[bytes, int, list[str], str, int]:
        printed, replaced, contact_notes = self.printable_row(row)
        ctx, notes = build_context(printed, self.cat, self.cfg)
        notes += contact_notes
        # PDF/UA-1 (accessible PDF, checked by Typst): tagged headings, tables and reading
        # order, document title and language, so that screen readers read the letter aloud.
        try:
            pdf = self.compiler.compile(
                input=self.source(ctx).encode("utf-8"), pdf_tags=True, pdf_standards=["ua-1"]
            )
        except Exception as e:  # typst.TypstError: its message may quote the name or address
            raise LetterRenderError(
                f"the letter for {row['pseudonym']} could not be typeset "
                f"({type(e).__name__}: {_redacted(getattr(e, 'message', None) or str(e))})"
            ) from None
        return pdf, page_count(pdf), notes, ctx["letter_type"], replaced


class LetterRenderError(RuntimeError):
    """Typst refused a letter (a bug: the text it was given should always be printable). The
    message names the pseudonym and Typst's complaint with every quoted text withheld."""


_QUOTED = re.compile(r"`[^`]*`|\"[^\"]*\"|'[^']*'")


def _redacted(message: str) -> str:
    """Typst's message on one line, without the texts it quotes (a name, a part of an address)."""
    return _QUOTED.sub("…", " ".join(str(message).split()))[:300]


def _east_asian_ems(text: str) -> float:
    """Width of ``text`` in ems, roughly: wide characters 1, others ½."""
    import unicodedata

    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.5 for c in text)


def printable_contact(row: dict, cmap: frozenset[int]) -> tuple[dict, int, list[str]]:
    """The row with :data:`CONTACT_TEXT` as printed, characters replaced by 〓, notes.

    Notes say which code points were replaced (no other character of the name or address), how
    many invisible characters were removed, a kana reading too long to print (dropped), and an
    address likely taller than the envelope window.
    """
    out = dict(row)
    notes: list[str] = []
    replaced: list[str] = []
    removed = 0
    for key in CONTACT_TEXT:
        value = row.get(key)
        if not isinstance(value, str):
            continue
        p = printable(value, cmap)
        replaced += p.replaced
        removed += p.removed
        out[key] = p.text
    if len(out.get("name_kana") or "") > NAME_MAX:
        out["name_kana"] = ""
        notes.append(f"name_kana longer than {NAME_MAX} characters: not printed")
    if replaced:
        notes.append(
            f"{len(replaced)} character(s) outside the font printed as 〓: "
            + " ".join(sorted(set(replaced)))
        )
    if removed:
        notes.append(f"{removed} invisible character(s) removed (control, direction, format)")
    lines = math.ceil(_east_asian_ems(out.get("address") or "") * 10.5 / (88 / 25.4 * 72))
    if lines > WINDOW_ADDRESS_LINES:
        notes.append(
            f"address takes about {lines} lines, more than the {WINDOW_ADDRESS_LINES} the "
            "envelope window shows: check the envelope"
        )
    for key in ("name", "name_kana", "address"):
        if isinstance(out.get(key), str):
            out[key] = breakable(out[key])
    return out, len(replaced), notes


_WORKER: _Renderer | None = None


def _init_worker(catalogue_path: str, cfg: LetterConfig) -> None:
    global _WORKER
    _WORKER = _Renderer(catalogue_path, cfg)


def _render_chunk(tasks: list[tuple[dict, str]]) -> list[dict]:
    """Render and atomically write each (row, final path); returns manifest fields."""
    assert _WORKER is not None
    out = []
    for row, path in tasks:
        c0 = time.process_time()
        pdf, pages, notes, letter_type, replaced = _WORKER.render(row)
        _atomic_write(Path(path), pdf)
        out.append(
            {
                "pseudonym": row["pseudonym"],
                "letter_type": letter_type,
                "pages": pages,
                "sha256": hashlib.sha256(pdf).hexdigest(),
                "replaced_characters": replaced,
                "notes": "; ".join(notes),
                "cpu": time.process_time() - c0,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Files: owner-only, atomic
# --------------------------------------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    """Owner-only atomic write (letters carry names and addresses)."""
    atomic_write(path, data, 0o600)


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _remove_stale_temps(folders: Iterable[Path]) -> None:
    for d in folders:
        for p in d.glob(".*.tmp"):
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Input hash, previous state
# --------------------------------------------------------------------------------------------


def _jsonable(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat()
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


def _static_digest(cat: Catalogue) -> str:
    import typst

    h = hashlib.sha256()
    for p in sorted(TEMPLATES.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    h.update(cat.digest().encode())
    h.update(f"{RENDERER_VERSION}|typst {typst.__version__}|{font_path().stat().st_size}".encode())
    return h.hexdigest()


def _rows(df: pd.DataFrame) -> list[dict]:
    cols = list(df.columns)
    return [
        {c: _jsonable(v) for c, v in zip(cols, rec, strict=True)}
        for rec in df.itertuples(index=False, name=None)
    ]


def _input_hash(row: dict, static: str, cfg: LetterConfig) -> str:
    payload = json.dumps(
        {"row": row, "static": static, "issue": _issue_date(cfg, row["fiscal_year"]).isoformat()},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _neutralised(s: pd.Series) -> pd.Series:
    return s.str.startswith("'") & s.str[1:].str.startswith(FORMULA_STARTS)


def _previous(out_dir: Path) -> dict[str, dict]:
    """Entries of the last manifest, updated by the journal a killed run left behind."""
    prev: dict[str, dict] = {}
    mpath = out_dir / LETTERS_MANIFEST
    if mpath.exists():
        m = pd.read_csv(mpath, dtype=str, keep_default_na=False)
        # csv_bytes wrote a ' before a text a spreadsheet would run as a formula: take it off.
        m = m.apply(lambda s: s.where(~_neutralised(s), s.str[1:]))
        prev = {r["pseudonym"]: r for r in m.to_dict("records")}
    jpath = out_dir / LETTERS_JOURNAL
    if jpath.exists():
        for line in jpath.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by the crash
                continue
            prev[rec["pseudonym"]] = rec
    return prev


# --------------------------------------------------------------------------------------------
# Print files
# --------------------------------------------------------------------------------------------


#: What PDFium stamps into a PDF it saves: a random file identifier in the trailer (two
#: 16-byte hex strings) and the time of saving as the creation date (``D:YYYYMMDDHHmmSS…``).
_PDFIUM_ID = re.compile(rb"/ID\s*\[\s*<([0-9A-Fa-f]{32})>\s*<([0-9A-Fa-f]{32})>\s*\]")
_PDFIUM_DATE = re.compile(rb"/CreationDate\s*\(D:(\d{14})")


def _pin_pdfium_stamps(pdf: bytes, created: date) -> bytes:
    """``pdf`` with PDFium's stamps replaced at the same length (so that no offset moves): the
    creation date by ``created``, the file identifier by a hash of the content."""
    trailer = pdf.rfind(b"trailer")
    ids = list(_PDFIUM_ID.finditer(pdf, max(trailer, 0)))
    dates = list(_PDFIUM_DATE.finditer(pdf))
    if trailer < 0 or len(ids) != 1 or len(dates) != 1:
        raise ValueError("PDFium's output does not look as expected")
    d = dates[0]
    pdf = pdf[: d.start(1)] + created.strftime("%Y%m%d000000").encode() + pdf[d.end(1) :]
    m = ids[0]
    digest = hashlib.sha256(pdf[: m.start(1)] + pdf[m.end(2) :]).hexdigest()[:32].upper()
    return (
        pdf[: m.start(1)] + digest.encode() + pdf[m.end(1) : m.start(2)] + digest.encode()
        + pdf[m.end(2) :]
    )  # fmt: skip


def _merge(files: list[Path], target: Path, created: date) -> None:
    """Concatenate letter PDFs into one print file.

    PDFium (pypdfium2) copies the pages without parsing every object as pypdf does, so the
    merge is much faster (bench/README.md). Its stamps (time of saving, random identifier) are
    pinned by :func:`_pin_pdfium_stamps`, so that the same letters give the same bytes. pypdf is the
    fallback should PDFium's output ever look different.
    """
    import io

    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument.new()
        try:
            for f in files:
                src = pdfium.PdfDocument(f.read_bytes())
                try:
                    doc.import_pages(src)
                finally:
                    src.close()
            buf = io.BytesIO()
            doc.save(buf)
        finally:
            doc.close()
        data = _pin_pdfium_stamps(buf.getvalue(), created)
    except (pdfium.PdfiumError, ValueError) as e:  # pragma: no cover - PDFium changed
        _log.warning("print file %s merged with pypdf (slower): %s", target.name, e)
        data = _merge_pypdf(files)
    _atomic_write(target, data)


def _merge_pypdf(files: list[Path]) -> bytes:
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    for f in files:
        writer.append(str(f))
    writer.add_metadata({"/Producer": "kenshin letters (pypdf)"})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def render_letters(
    requests: pd.DataFrame,
    out_dir: Path,
    config: LetterConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    runner: LetterRunner | None = None,
) -> LetterManifest:
    """Render one PDF per LetterRequest row into ``out_dir`` (see the module docstring).

    ``on_progress(done, total)`` is called as letters are finished (for a progress bar).
    ``runner``: where the letters are typeset (:class:`LetterRunner`; default
    :class:`ProcessRunner` with ``config.workers`` processes, e.g. Spark's executors with
    :class:`kenshin.spark.letters.SparkLetterRunner`); everything else runs here, the same
    whatever the runner, so every runner gives the same bytes.

    Validates ``requests`` first (pandera errors name every bad column/row); refuses a what-if
    scenario the catalogue does not know before anything is written. Steps: check the requests
    → plan (reuse a letter whose inputs did not change) → render the rest, journalled → print
    files → manifest.
    """
    t0 = time.perf_counter()
    cfg = config or LetterConfig()
    cat_path = str(Path(cfg.catalogue_path or DEFAULT_CATALOGUE).resolve())
    cat = load_catalogue(cat_path)
    df = _checked_requests(requests, cat, cat_path)
    out_dir = _private_dir(Path(out_dir))
    letters_dir = _private_dir(out_dir / LETTER_PDFS)
    print_dir = _private_dir(out_dir / PRINT_FILES)
    _remove_stale_temps([out_dir, letters_dir, print_dir])

    rows = _rows(df)
    entries, todo = _plan(rows, _previous(out_dir), out_dir, _static_digest(cat), cfg)
    skipped = len(rows) - len(todo)
    t_render = time.perf_counter()
    journal = out_dir / LETTERS_JOURNAL
    runner = runner if runner is not None else ProcessRunner(cfg.workers)
    cpu = _render_journalled(
        todo, entries, journal, cat_path, cfg, skipped, len(rows), on_progress, runner
    )
    render_seconds = time.perf_counter() - t_render

    frame = pd.DataFrame([entries[r["pseudonym"]] for r in rows], columns=MANIFEST_COLUMNS)
    frame["pages"] = frame["pages"].astype("int64")
    frame["replaced_characters"] = frame["replaced_characters"].astype("int64")
    print_files = _print_files(frame, rows, out_dir, print_dir, cfg)
    mpath = out_dir / LETTERS_MANIFEST
    _atomic_write(mpath, csv_bytes(frame))
    journal.unlink(missing_ok=True)
    return LetterManifest(
        out_dir=out_dir, manifest_path=mpath, frame=frame, print_files=print_files,
        rendered=len(todo), skipped=skipped, render_seconds=render_seconds,
        render_cpu_seconds=cpu, total_seconds=time.perf_counter() - t0,
    )  # fmt: skip


def _checked_requests(requests: pd.DataFrame, cat: Catalogue, cat_path: str) -> pd.DataFrame:
    """Validated requests in print order (postal code, then pseudonym)."""
    df = normalise_requests(requests)
    sc = df["whatif_scenario"].dropna()
    unknown = sorted(set(sc[~sc.isin(list(cat.whatif))]))
    if unknown:
        raise ValueError(
            f"what-if scenario(s) {unknown} are not in the letter catalogue {cat_path} "
            f"(known: {sorted(cat.whatif)})"
        )
    return df.sort_values(["postal_code", "pseudonym"], kind="stable").reset_index(drop=True)


def _plan(
    rows: list[dict], prev: dict[str, dict], out_dir: Path, static: str, cfg: LetterConfig
) -> tuple[dict[str, dict], list[tuple[dict, str]]]:
    """Manifest entries per pseudonym, and the letters to render: a letter whose inputs and file
    are those of the last manifest is kept. Letters no longer requested are removed, so the
    folder holds exactly the letters of this manifest."""
    entries: dict[str, dict] = {}
    todo: list[tuple[dict, str]] = []
    for row in rows:
        ih = _input_hash(row, static, cfg)
        rel = f"{LETTER_PDFS}/{row['pseudonym']}.pdf"
        base = {
            "pseudonym": row["pseudonym"], "requested_letter_type": row["letter_type"],
            "outcome": row["outcome"], "language": row["language"],
            "requested_language": row["requested_language"], "file": rel, "input_sha256": ih,
        }  # fmt: skip
        old = prev.get(row["pseudonym"])
        if (
            old is not None
            and old.get("input_sha256") == ih
            and old.get("sha256")
            and _sha256_file(out_dir / rel) == old["sha256"]
        ):
            entries[row["pseudonym"]] = {
                **base, "letter_type": old["letter_type"], "pages": int(old["pages"]),
                "sha256": old["sha256"], "notes": old.get("notes", ""),
                "replaced_characters": int(old.get("replaced_characters") or 0),
            }  # fmt: skip
        else:
            entries[row["pseudonym"]] = base
            todo.append((row, str(out_dir / rel)))
    for p, old in prev.items():
        if p not in entries and re.fullmatch(
            rf"{LETTER_PDFS}/[0-9a-f]+\.pdf", old.get("file") or ""
        ):
            (out_dir / old["file"]).unlink(missing_ok=True)
    return entries, todo


def _render_journalled(
    todo: list[tuple[dict, str]],
    entries: dict[str, dict],
    journal: Path,
    cat_path: str,
    cfg: LetterConfig,
    done: int,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    runner: LetterRunner,
) -> float:
    """Render ``todo`` with ``runner`` (updating ``entries``), each finished chunk journalled and
    synced so a killed run resumes where it stopped; returns the renderers' CPU seconds."""
    cpu = 0.0
    if not todo:
        return cpu
    jfd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(jfd, "a", encoding="utf-8") as jf:
        chunks = _chunks(todo, runner.workers)
        for res in runner.map(_render_chunk, chunks, _init_worker, (cat_path, cfg)):
            done += len(res)
            if on_progress is not None:
                on_progress(done, total)
            for r in res:
                cpu += r.pop("cpu")
                e = entries[r["pseudonym"]]
                e.update(r)
                jf.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")
            jf.flush()
            os.fsync(jf.fileno())
    return cpu


def _print_files(
    frame: pd.DataFrame, rows: list[dict], out_dir: Path, print_dir: Path, cfg: LetterConfig
) -> list[Path]:
    """Letters merged in print order, ``print_batch_size`` a file; stale print files removed."""
    print_files: list[Path] = []
    if cfg.merge and len(frame):
        n = cfg.print_batch_size
        for b, start in enumerate(range(0, len(frame), n), start=1):
            target = print_dir / f"print_{b:04d}.pdf"
            batch = rows[start : start + n]
            created = max(_issue_date(cfg, r["fiscal_year"]) for r in batch)
            _merge([out_dir / f for f in frame["file"].iloc[start : start + n]], target, created)
            print_files.append(target)
    for p in print_dir.glob("print_*.pdf"):
        if p not in print_files:
            p.unlink()
    return print_files


#: Letters rendered by one call of :func:`_render_chunk`: (normalised request row, PDF path).
Chunk = list[tuple[dict, str]]


class LetterRunner(Protocol):
    """Where the letters are typeset; everything else (checks, plan, journal, print files,
    manifest) stays with :func:`render_letters`.

    ``map(fn, chunks, initializer, initargs)`` calls ``initializer(*initargs)`` once in each
    process that renders, then ``fn(chunk)`` there for every chunk, and yields each chunk's
    result as soon as it is finished (any order), never collecting them all first: the
    journal and the progress bar follow the letters. Neither may run in the caller's process
    (Typst there would break later forks: :class:`ProcessRunner`). ``fn`` writes the PDFs
    itself, so every process must see ``out_dir``. ``workers``: how many chunks render at
    once (the chunks are cut for it).
    """

    @property
    def workers(self) -> int: ...

    def map(
        self,
        fn: Callable[[Chunk], list[dict]],
        chunks: list[Chunk],
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
    ) -> Iterator[list[dict]]: ...


def _chunks(todo: list[tuple[dict, str]], workers: int) -> list[Chunk]:
    """``todo`` in chunks of at most 16 letters, about four per worker (fewer letters: one
    each)."""
    workers = max(1, min(workers, len(todo)))
    chunk = max(1, min(16, math.ceil(len(todo) / (workers * 4))))
    return [todo[i : i + chunk] for i in range(0, len(todo), chunk)]


@dataclass(frozen=True)
class ProcessRunner:
    """The default :class:`LetterRunner`: a pool of ``workers`` processes (at least one)
    forked from this one.

    Typst runs only in the workers, never in this process: a process that has typeset holds
    Typst's worker threads, and a child forked from it inherits their locks and hangs. So the
    workers can be forked (instant start, and the caller's script needs no
    ``if __name__ == "__main__"`` guard, which "spawn" and "forkserver" require).
    """

    workers: int = 2

    def map(
        self,
        fn: Callable[[Chunk], list[dict]],
        chunks: list[Chunk],
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
    ) -> Iterator[list[dict]]:
        if not chunks:
            return
        workers = max(1, min(self.workers, len(chunks)))
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        # Workers die with this process (data.workers): a kill -9 of the run leaves no renderer
        # behind.
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=worker_initializer(initializer),
            initargs=initargs,
        ) as pool:
            yield from pool.map(fn, chunks)
