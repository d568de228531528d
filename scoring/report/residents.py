"""Per-resident pages, built column-wise (numpy/pandas) and joined per resident.

:func:`resident_tables` computes what every page shows (numbers formatted, labels as plain
text: :class:`Tables`); the HTML (:func:`build_residents`, here) and the PDF
(:mod:`scoring.report.pdf`, Typst) only lay it out, each escaping text for its own markup.

The HTML markup is deliberately terse (omitted optional end tags, one-letter classes, unquoted
attributes, CSS custom properties for the bars, no indentation; size per resident:
bench/README.md). Every text that reaches the
markup is either a number formatted here, a validated pseudonym / code, or a label from
:mod:`scoring.report.labels` that is HTML-escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import escape

from data.columns import QUESTIONNAIRE_COLUMNS
from data.judgements import MHLW_R6, JudgementValue, threshold_flags
from features.declarations import CODE_JA, ITEM_KEYS, get
from features.declarations import item as clinical_item
from scoring.contracts import EXPLANATION_ROWS

from .inputs import Prepared
from .labels import (
    ARM_JA,
    DECIMALS,
    FLAG_JA,
    KEY_ITEMS,
    LETTER_JA,
    NO_ANSWER_JA,
    OP_JA,
    OPTIONAL_ITEMS,
    REASON_JA,
    SEX_JA,
    item_ja,
    item_label,
    outcome_ja,
)

_TYPE_ORDER = {"advice": 0, "see_doctor": 1, "": 2}
#: Reasons the letter and arm already say (a sent letter, the control arm): not repeated.
_REASON_SAID = {"SENT_ADVICE": "letter", "SENT_SEE_DOCTOR": "letter", "CONTROL_ARM": "control"}
#: Items whose value the page's first line prints (age, sex).
_HEAD_ITEMS = ("age", "sex")
#: Items whose answers the questionnaire line prints (smoking, drinking, every q_ answer).
_ANSWER_ITEMS = tuple(
    k for k in ITEM_KEYS if set(clinical_item(k).members) & set(QUESTIONNAIRE_COLUMNS)
)
#: The change since the last checkup in an item's value text (scoring.items.item_values).
_CHANGE = re.compile(r"(前回比 [^()]*)\)$")
#: Item → flag column of data.judgements.threshold_flags.
_FLAG_COL = {
    "hba1c": "flag_hba1c", "fpg": "flag_glucose", "sbp": "flag_sbp", "dbp": "flag_dbp",
    "ldl": "flag_ldl", "hdl": "flag_hdl", "tg": "flag_tg", "waist_cm": "flag_waist_cm",
    "bmi": "flag_bmi", "alt": "flag_alt", "ggt": "flag_ggt", "egfr": "flag_egfr",
}  # fmt: skip


@dataclass(frozen=True)
class Residents:
    """Ordered residents with their page markup and index row."""

    pseudonyms: list[str]
    pages: list[str]
    index_rows: list[str]


def fmt(x: np.ndarray | pd.Series, spec: str, na: str = "—") -> np.ndarray:
    """Vectorised ``spec % x`` as an object array, ``na`` where x is NaN."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        a = pd.to_numeric(pd.Series(a.ravel()), errors="coerce").to_numpy(dtype=float)
    a = a.astype(float, copy=False).ravel()
    out = np.array(list(map(spec.__mod__, np.nan_to_num(a).tolist())), dtype=object)
    out[np.isnan(a)] = na
    return out.reshape(np.shape(x))


def _join_runs(parts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Concatenate consecutive runs of strings (``starts``: first index of each run)."""
    ends = np.r_[starts[1:], len(parts)]
    seq = parts.tolist()
    return np.array(["".join(seq[a:b]) for a, b in zip(starts, ends, strict=True)], dtype=object)


def fmt_value(x: np.ndarray) -> np.ndarray:
    """Feature values: at most 2 decimals, trailing zeros dropped (134, 6.1, 0.35)."""
    a = np.asarray(x, dtype=float)
    return fmt(np.round(a, 2), "%.6g", na="")


def _s(x) -> np.ndarray:
    """Strings as an object array ('' for missing)."""
    return pd.Series(x, dtype="string").fillna("").to_numpy(dtype=object)


def order_residents(p: Prepared) -> pd.DataFrame:
    """Explained residents with their scores and selection rows, in page order.

    Order: letter type (advice, see_doctor, none), rank within the type, pseudonym.
    """
    ids = pd.Index(p.explanations["pseudonym"].unique(), name="pseudonym")
    sel = p.selection.set_index("pseudonym").reindex(ids)
    lt = _s(sel["letter_type"])
    rank = sel["rank"].astype("Float64").to_numpy(dtype=float, na_value=np.inf)
    key = np.array([_TYPE_ORDER.get(t, 2) for t in lt])
    order = np.lexsort((ids.to_numpy(dtype=str), rank, key))
    rows = pd.Index(p.scores["pseudonym"]).get_indexer(ids[order])
    out = p.scores.iloc[rows].reset_index(drop=True)
    sel = sel.iloc[order]
    for c in ("letter_type", "outcome", "arm", "reason"):
        out[f"sel_{c}"] = _s(sel[c])
    out["sel_rank"] = sel["rank"].to_numpy()
    return out


@dataclass(frozen=True)
class Tables:
    """Everything the resident pages show, as plain (unescaped) text in page order.

    Built once, column-wise; the HTML (:func:`build_residents`) and the PDF
    (:mod:`scoring.report.pdf`) only lay it out. ``n`` residents, ``O`` outcomes, ``S``
    scenarios, ``I`` value items; waterfall rows are grouped into tables (``wf_starts``).
    """

    n: int
    pseudonym: np.ndarray  # (n,)
    #: age, sex, exam, fallback, letter, arm, status (letter, arm, a reason they do not say,
    #: topic, rank, as one line), topic, rank: (n,) each
    head: dict[str, np.ndarray]
    outcome_ja: list[str]  # (O)
    risk: np.ndarray  # (n, O) "%.1f"
    scenario_ja: list[str]  # (S)
    scenario: np.ndarray  # (n, O, S) "%.1f" or "·"
    scenario_shown: np.ndarray  # (n, S) bool: the scenario applies to one outcome at least
    best: np.ndarray  # (n, O) "label risk" or "—"
    topic: np.ndarray  # (n, O) bool: the letter's topic
    value_cells: np.ndarray  # (n, I, 8): label, value, 保健指導, 受診勧奨, 判定, p10, p50, p90
    value_level: np.ndarray  # (n, I) int: -1 none, 0 normal, 1 保健指導, 2 受診勧奨
    value_shown: np.ndarray  # (n, I) bool
    #: per resident: the questionnaire answers in words (「喫煙「吸わない」 ・ 飲酒「毎日・1〜2合」
    #: …」), and the values of explained items the value table does not have ('' if none)
    answers: np.ndarray  # (n,)
    notes: np.ndarray  # (n,)
    #: per waterfall row: label, contrib (percentage points; the baseline row: its risk in %),
    #: logodds, kind, left, width (% of the bar), lifestyle. Values are printed once per page,
    #: in the value table, the questionnaire line or the notes, never in a waterfall.
    #: A table's printed contribs add up to its printed risk (:func:`_waterfalls`).
    wf: dict[str, np.ndarray]
    wf_starts: np.ndarray  # first row of each waterfall table
    #: per waterfall table: resident, outcome_ja, topic, risk (calibrated, "%.1f"), raw (the
    #: raw model's risk σ(raw score)), final (the printed sum = risk), final_left
    wf_table: dict[str, np.ndarray]
    #: per resident: letter, arm, topic, risk, rank (the index)
    index: dict[str, np.ndarray]


def _heads(R: pd.DataFrame, fiscal_year: int) -> dict[str, np.ndarray]:
    exam = pd.to_datetime(R["exam_date"]).dt.strftime("%Y-%m-%d").fillna("—").to_numpy(object)
    older = R["index_fiscal_year"].to_numpy() < fiscal_year
    letter = np.array([LETTER_JA.get(t, t) for t in R["sel_letter_type"]], dtype=object)
    arm = np.array([ARM_JA.get(a, a) for a in R["sel_arm"]], dtype=object)
    topic = np.array([outcome_ja(o) if o else "—" for o in R["sel_outcome"]], dtype=object)
    rank = fmt(R["sel_rank"].astype("Float64").to_numpy(dtype=float, na_value=np.nan), "%d")
    status = []  # one line, every fact once: the reason only where letter and arm do not say it
    for t, a, r, raw_a, o, k in zip(
        letter, arm, R["sel_reason"], R["sel_arm"], R["sel_outcome"], rank, strict=True
    ):
        parts = [f"{t}・{a}" if raw_a else t]
        if r and _REASON_SAID.get(r) != raw_a:
            parts.append(f"理由: {REASON_JA.get(r, r)}")
        if o:
            parts.append(f"テーマ: {outcome_ja(o)}")
        if k != "—":
            parts.append(f"順位 {k}")
        status.append(" / ".join(parts))
    return {
        "age": R["age"].astype(int).astype(str).to_numpy(dtype=object),
        "sex": R["sex"].map(SEX_JA).fillna("—").to_numpy(dtype=object),
        "exam": exam,
        "fallback": np.where(older, "(前年度の健診)", "").astype(object),
        "letter": letter,
        "arm": arm,
        "status": np.array(status, dtype=object),
        "topic": topic,
        "rank": rank,
    }


def _risks(R: pd.DataFrame, p: Prepared) -> dict:
    outcomes = p.outcomes
    risk = np.column_stack([R[f"risk_{o}"].to_numpy(dtype=float) for o in outcomes])
    sc_keys = [s.key for s in p.scenarios]
    names = {s.key: s.label_ja for s in p.scenarios}
    if sc_keys:
        scen = np.stack(
            [
                np.column_stack([R[f"risk_{o}__{k}"].to_numpy(dtype=float) for k in sc_keys])
                for o in outcomes
            ],
            axis=1,
        )  # n × outcome × scenario
        # Only scenarios that lower the risk are advice (scoring.score already leaves the others
        # out; kept here too so no input can show a what-if that raises or keeps the risk).
        scen = np.where(scen < risk[:, :, None], scen, np.nan)
    else:
        scen = np.full((len(R), len(outcomes), 0), np.nan)
    best = np.column_stack([_s(R[f"best_scenario_{o}"]) for o in outcomes])
    after_s = fmt(np.column_stack([R[f"risk_after_{o}"] for o in outcomes]) * 100, "%.1f")
    best_s = np.full(best.shape, "—", dtype=object)
    has = best != ""
    best_s[has] = [f"{names.get(b, b)} {a}" for b, a in zip(best[has], after_s[has], strict=True)]
    topic = R["sel_outcome"].to_numpy(dtype=object)
    return {
        "outcome_ja": [outcome_ja(o) for o in outcomes],
        "risk": fmt(risk * 100, "%.1f"),
        "scenario_ja": [s.label_ja for s in p.scenarios],
        "scenario": fmt(scen * 100, "%.1f", na="·"),
        "scenario_shown": (~np.isnan(scen)).any(axis=1),
        "best": best_s,
        "topic": topic[:, None] == np.array(outcomes, dtype=object)[None, :],
    }


def _risk_tables(t: Tables) -> list[str]:
    sc_lab = [str(escape(x)) for x in t.scenario_ja]
    o_ja = [str(escape(x)) for x in t.outcome_ja]
    out = []
    for i in range(t.n):
        cols = np.flatnonzero(t.scenario_shown[i])
        head = (
            "<table class=rk><tr><th>疾患<th>現在%"
            + "".join(f"<th>{sc_lab[j]}" for j in cols)
            + "<th>最も下がるシナリオ"
        )
        rows = []
        for j in range(len(o_ja)):
            rows.append(
                ("<tr class=t>" if t.topic[i, j] else "<tr>")
                + f"<td>{o_ja[j]}<td>{t.risk[i, j]}"
                + "".join(f"<td>{t.scenario[i, j, k]}" for k in cols)
                + f"<td>{escape(t.best[i, j])}"
            )
        out.append(head + "".join(rows) + "</table>")
    return out


def _thresholds(item: str, R: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(保健指導判定値, 受診勧奨判定値) texts per resident for ``item`` ('' if none)."""
    n = len(R)

    def texts(jv) -> tuple[str, str]:
        g = OP_JA[jv.op].format(v=f"{jv.guidance:g}")
        r = OP_JA[jv.op].format(v=f"{jv.referral:g}") if jv.referral is not None else "—"
        return g, r

    v = MHLW_R6
    if item == "tg":
        timing = pd.to_numeric(R["blood_draw_timing"], errors="coerce").to_numpy(dtype=float)
        nonfasting = np.isin(timing, (3.0, 4.0))
        (gf, rf), (gn, rn) = texts(v.tg_fasting), texts(v.tg_nonfasting)
        return np.where(nonfasting, gn + "(随時)", gf), np.where(nonfasting, rn, rf)
    if item == "waist_cm":
        male = R["sex"].to_numpy() == 1
        (gm, rm), (gw, rw) = texts(v.waist_male), texts(v.waist_female)
        return np.where(male, gm, gw), np.where(male, rm, rw)
    jv = getattr(v, item, None)
    if jv is None:
        return np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    g, r = texts(jv)
    return np.full(n, g, dtype=object), np.full(n, r, dtype=object)


def value_items(p: Prepared) -> list[str]:
    """Rows of the value table: the key items (always), each optional item after the key item
    it stands in for, then the other forecast items (optional and forecast rows: when known)."""
    after = {k: o for o, k in OPTIONAL_ITEMS.items()}
    rows = [x for k in KEY_ITEMS for x in ((k, after[k]) if k in after else (k,))]
    return rows + [i for i in p.forecast_items if i not in rows]


def _values(R: pd.DataFrame, p: Prepared) -> dict:
    n = len(R)
    items = value_items(p)
    flags = threshold_flags(R)
    cells = []
    levels = []
    keep = []
    for item in items:
        x = pd.to_numeric(R[item], errors="coerce").to_numpy(dtype=float)
        d = DECIMALS.get(item, 0)
        spec = f"%.{d}f"
        if item in p.forecast_items:
            q = [R[f"{item}_{s}"].to_numpy(dtype=float) for s in ("p10", "p50", "p90")]
        else:
            q = [np.full(n, np.nan)] * 3
        has_q = ~np.isnan(q[1])
        jv = getattr(MHLW_R6, item, None)
        if item in _FLAG_COL:
            lvl = flags[_FLAG_COL[item]].to_numpy(dtype=float, na_value=np.nan)
            lvl[np.isnan(x)] = np.nan
            g, r = _thresholds(item, R)
        elif isinstance(jv, JudgementValue):  # an optional item: its own judgement values
            lvl = jv.level(x)
            g, r = _thresholds(item, R)
        else:
            lvl = np.full(n, np.nan)
            g = r = np.full(n, "", dtype=object)
        lvl_i = np.nan_to_num(lvl, nan=-1).astype(int)
        none = "未測定" if item in _FLAG_COL else "—"
        none = np.where(np.isnan(x), none, "—")
        judge = np.array(["", FLAG_JA[0], FLAG_JA[1], FLAG_JA[2]], dtype=object)[lvl_i + 1]
        judge = np.where(lvl_i < 0, none, judge)
        label = np.full(n, item_label(item), dtype=object)
        cells.append(
            np.column_stack(
                [label, fmt(x, spec), g, r, judge]
                + [fmt(qq, spec, "") for qq in q]
            ).astype(object)
        )  # fmt: skip
        levels.append(lvl_i)
        keep.append(np.full(n, True) if item in KEY_ITEMS else ~np.isnan(x) | has_q)
    return {
        "value_cells": np.stack(cells, axis=1),
        "value_level": np.column_stack(levels),
        "value_shown": np.column_stack(keep),
    }


def _words(R: pd.DataFrame, q: str) -> np.ndarray:
    """Answer ``q`` of every resident in words (features.declarations.CODE_JA), 未回答 if none."""
    words = CODE_JA[q]
    table = np.full(max(words) + 2, "—", dtype=object)  # last slot: a code with no word
    table[list(words)] = list(words.values())
    x = pd.to_numeric(R[q], errors="coerce").to_numpy(dtype=float)  # required by the contract
    codes = np.nan_to_num(x, nan=-1).astype(int)
    out = table[np.where((codes >= 0) & (codes <= max(words)), codes, -1)]
    return np.where(np.isnan(x), NO_ANSWER_JA, out)


def _answers(R: pd.DataFrame) -> np.ndarray:
    """The questionnaire line: every answer as words, in the questionnaire's order; drinking
    frequency and amount as one answer (「毎日・1〜2合」: the amount is asked only of those who
    drink, so it is left out after やめた / 飲まない or when blank)."""
    n = len(R)
    line = np.full(n, "", dtype=object)
    for q in QUESTIONNAIRE_COLUMNS:
        if q == "q_alcohol_amount":
            continue
        words = _words(R, q)
        label = get(q).ja
        if q == "q_alcohol_freq":
            label = clinical_item("alcohol").ja
            freq = pd.to_numeric(R[q], errors="coerce").to_numpy(dtype=float)
            amount = _words(R, "q_alcohol_amount")
            drinks = (freq <= 6) & (amount != NO_ANSWER_JA)
            words = np.where(drinks, words + "・" + amount, words)
        part = label + "「" + words + "」"
        line = np.where(line == "", part, line + " ・ " + part)
    return line


def _notes(R: pd.DataFrame, p: Prepared, shown: set[str]) -> np.ndarray:
    """Values of the items the waterfalls explain that no other part of the page prints, once
    per resident, in the order of features.declarations.ITEMS: an item whose values are rows of
    the value table (``shown``) adds only its change since the last checkup (「HbA1c 前回比
    +0.2」); age and sex are in the page's first line, the answers in the questionnaire line."""
    n = len(R)
    E = p.explanations
    skip = set(EXPLANATION_ROWS) | set(_HEAD_ITEMS) | set(_ANSWER_ITEMS)
    E = E.loc[~E["item"].isin(skip), ["pseudonym", "outcome", "rank", "item", "value_text"]]
    o_idx = E["outcome"].map({o: j for j, o in enumerate(p.outcomes)})
    first = np.lexsort((E["rank"].to_numpy(), o_idx.to_numpy(), E["pseudonym"].to_numpy(str)))
    E = E.iloc[first].drop_duplicates(["pseudonym", "item"])  # the first in page order
    if not len(E):
        return np.full(n, "", dtype=object)
    pos = pd.Series(np.arange(n), index=R["pseudonym"].to_numpy())
    order = {k: i for i, k in enumerate(ITEM_KEYS)}
    f = pd.DataFrame(
        {
            "r": E["pseudonym"].map(pos).to_numpy(),
            "o": E["item"].map(order).to_numpy(),
            "item": E["item"].to_numpy(dtype=object),
            "text": E["value_text"].fillna("").to_numpy(dtype=object),
        }
    )
    in_table = {k: set(clinical_item(k).show) <= shown for k in f["item"].unique()}
    in_table = f["item"].map(in_table).to_numpy(dtype=bool)
    change = f["text"].str.extract(_CHANGE, expand=False).fillna("").to_numpy(dtype=object)
    f["text"] = np.where(in_table, change, f["text"])
    f = f[f["text"] != ""].sort_values(["r", "o"], kind="stable")
    if not len(f):
        return np.full(n, "", dtype=object)
    entry = f["item"].map(item_ja).to_numpy(dtype=object) + " " + f["text"].to_numpy(dtype=object)
    r = f["r"].to_numpy()
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    out = np.full(n, "", dtype=object)
    ends = np.r_[starts[1:], len(r)]
    seq = entry.tolist()
    out[r[starts]] = [" ・ ".join(seq[a:b]) for a, b in zip(starts, ends, strict=True)]
    return out


def _value_tables(t: Tables) -> np.ndarray:
    c = t.value_cells
    tr = np.array(["<tr>", "<tr>", "<tr class=f1>", "<tr class=f2>"], dtype=object)
    label = np.vectorize(lambda x: str(escape(x)), otypes=[object])(c[:, :, 0])
    rows = tr[t.value_level + 1] + "<td>" + label
    for k in range(1, 8):
        rows = rows + "<td>" + c[:, :, k]
    head = (
        "<table class=kv><tr><th>項目<th>今回<th>保健指導判定値<th>受診勧奨判定値<th>判定"
        "<th>次回予測 下限<th>中央<th>上限"
    )
    rows = np.where(t.value_shown, rows, "")
    body = np.array(["".join(r) for r in rows], dtype=object)
    return head + body + "</table>"


def _cumulative_texts(parts: np.ndarray, starts: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Printed parts (one decimal) whose printed sums are exact: each table's running total is
    rounded and the parts are the differences of the rounded totals; the last total is forced
    to ``last`` (the printed figure the table must reach)."""
    size = np.diff(np.r_[starts, len(parts)])
    cum = np.cumsum(parts)
    cum = cum - np.repeat(cum[starts] - parts[starts], size)  # running total within a table
    r = np.round(cum, 1)
    r[np.r_[starts[1:], len(parts)] - 1] = last
    shown = np.diff(np.r_[0.0, r])
    shown[starts] = r[starts]
    return np.round(shown, 1)


def _waterfalls(R: pd.DataFrame, p: Prepared) -> dict:
    """Waterfall rows and tables (one per resident × outcome), in percentage points.

    The explanation rows are log-odds (bias, items, other, calibration; they add up to the
    logit of the calibrated risk, scoring.contracts.explanations_add_up). The page shows them
    on the risk scale, so that what it prints adds up to the risk it prints:

    * the baseline is σ(bias), the raw model's risk for an average resident;
    * the items and "other" share the raw model's distance σ(raw) − σ(bias) in proportion to
      their log-odds (one factor per table, so every sign and order is kept);
    * the calibration line is the calibrated risk − σ(raw): what the calibrator (fitted on the
      validation year) adds to or takes from the raw model's risk.

    Printed with one decimal, rounded on the running total, so the printed lines sum exactly
    to the printed risk.
    """
    n = len(R)
    pos = pd.Series(np.arange(n), index=R["pseudonym"].to_numpy())
    o_idx = {o: j for j, o in enumerate(p.outcomes)}
    E = p.explanations
    pi = E["pseudonym"].map(pos).to_numpy()
    oi = E["outcome"].map(o_idx).to_numpy()
    order = np.lexsort((E["rank"].to_numpy(), oi, pi))
    pi, oi = pi[order], oi[order]
    rank = E["rank"].to_numpy()[order]
    item = E["item"].to_numpy(dtype=object)[order]
    c = E["contribution"].to_numpy(dtype=float)[order]
    modif = E["modifiable"].to_numpy(dtype=bool)[order]
    gid = pi * len(p.outcomes) + oi
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    size = np.diff(np.r_[starts, len(gid)])
    g_pi, g_oi = pi[starts], oi[starts]
    o_names = np.array(p.outcomes, dtype=object)[g_oi]
    risk = np.array(
        [R[f"risk_{o}"].to_numpy(dtype=float)[i] for i, o in zip(g_pi, o_names, strict=True)]
    )
    is_bias = rank == 0
    is_cal = item == "calibration"
    # log-odds → percentage points (docstring)
    bias = c[starts]
    raw = np.add.reduceat(np.where(is_cal, 0.0, c), starts)
    p0, p_raw = 1 / (1 + np.exp(-bias)), 1 / (1 + np.exp(-raw))
    dz = raw - bias
    scale = np.where(np.abs(dz) > 1e-9, (p_raw - p0) / np.where(dz == 0, 1, dz), p0 * (1 - p0))
    pts = np.repeat(scale, size) * c * 100
    pts = np.where(is_bias, np.repeat(p0, size) * 100, pts)
    pts = np.where(is_cal, np.repeat(risk - p_raw, size) * 100, pts)
    risk_s = fmt(risk * 100, "%.1f")
    shown = _cumulative_texts(pts, starts, risk_s.astype(float))  # reaches the printed risk
    cum = np.cumsum(shown)
    cum = cum - np.repeat(cum[starts] - shown[starts], size)
    lo = np.minimum(np.minimum.reduceat(cum, starts), 0.0)
    hi = np.maximum.reduceat(cum, starts)
    span = np.where(hi - lo > 1e-9, hi - lo, 1.0) * 1.08
    lo = lo - 0.04 * span / 1.08
    lo_r, span_r = np.repeat(lo, size), np.repeat(span, size)
    before = cum - shown
    left = np.where(is_bias, lo_r + 0.04 * span_r / 1.08, np.minimum(before, cum))
    left_pct = np.clip((left - lo_r) / span_r * 100, 0, 100)
    width = np.where(is_bias, np.abs(shown) / span_r * 100, np.abs(shown) / span_r * 100)
    width = np.maximum(width, 1.0)
    kind = np.where(is_bias, "m", np.where(np.isin(item, ("other", "calibration")), "o",
                                           np.where(c >= 0, "p", "n")))  # fmt: skip
    codes, uniq = pd.factorize(item)
    labels = np.array([item_ja(f) for f in uniq], dtype=object)[codes]
    topic = R["sel_outcome"].to_numpy(dtype=object)[g_pi]
    contrib = fmt(shown, "%+.1f")
    contrib[is_bias] = fmt(shown[is_bias], "%.1f")
    final = cum[np.r_[starts[1:], len(cum)] - 1]
    return {
        "wf": {
            "label": labels,
            "contrib": contrib,
            "logodds": fmt(c, "%+.2f"),
            "kind": kind.astype(object),
            "left": left_pct,
            "width": width,
            "lifestyle": modif & ~is_bias & ~np.isin(item, ("other", "calibration")),
        },
        "wf_starts": starts,
        "wf_table": {
            "resident": g_pi,
            "outcome_ja": np.array([outcome_ja(o) for o in o_names], dtype=object),
            "topic": topic == o_names,
            "risk": risk_s,
            "raw": fmt(p_raw * 100, "%.1f"),
            "final": fmt(final, "%.1f"),
            "final_left": np.clip((final - lo) / span * 100, 0, 100),
        },
    }


def _waterfall_html(t: Tables) -> np.ndarray:
    """One waterfall table per resident × outcome: baseline → items → other → calibration →
    the calibrated risk (percentage points, :func:`_waterfalls`)."""
    w, g, starts = t.wf, t.wf_table, t.wf_starts
    codes, uniq = pd.factorize(w["label"])
    labels = np.array([str(escape(x)) for x in uniq], dtype=object)[codes]
    tr = np.where(w["lifestyle"], "<tr class=l>", "<tr>")
    row = (
        tr + "<td>" + labels + "<td>" + w["contrib"] + "<td><i class="
        + w["kind"] + " style=--l:" + fmt(w["left"], "%.0f") + "%;--w:"
        + fmt(w["width"], "%.0f") + "%></i>"
    )  # fmt: skip
    body = _join_runs(row, starts)
    caption = np.array([str(escape(x)) for x in g["outcome_ja"]], dtype=object)
    caption = np.where(g["topic"], caption + " ◎通知テーマ", caption)
    tables = (
        "<table class=wf><caption>" + caption + " <small>較正後リスク " + g["risk"]
        + "%(モデル出力 " + g["raw"] + "%)</small></caption><tr><th>項目<th>寄与(%)<th>"
        + body + "<tr class=f><td>合計 = 較正後リスク<td>" + g["final"]
        + "<td><i class=m style=--l:" + fmt(g["final_left"], "%.0f") + "%;--w:1%></i></table>"
    )  # fmt: skip
    g_pi = g["resident"]
    r_starts = np.flatnonzero(np.r_[True, g_pi[1:] != g_pi[:-1]])
    out = np.full(t.n, "", dtype=object)
    out[g_pi[r_starts]] = _join_runs(tables, r_starts)
    return out


def _no_tables(p: Prepared) -> Tables:
    e = np.array([], dtype=object)
    n_o, n_s = len(p.outcomes), len(p.scenarios)
    return Tables(
        n=0,
        pseudonym=e,
        head={},
        outcome_ja=[outcome_ja(o) for o in p.outcomes],
        risk=np.empty((0, n_o), dtype=object),
        scenario_ja=[s.label_ja for s in p.scenarios],
        scenario=np.empty((0, n_o, n_s), dtype=object),
        scenario_shown=np.empty((0, n_s), dtype=bool),
        best=np.empty((0, n_o), dtype=object),
        topic=np.empty((0, n_o), dtype=bool),
        value_cells=np.empty((0, 0, 8), dtype=object),
        value_level=np.empty((0, 0), dtype=int),
        value_shown=np.empty((0, 0), dtype=bool),
        answers=e,
        notes=e,
        wf={},
        wf_starts=np.array([], dtype=int),
        wf_table={},
        index={},
    )


def resident_tables(p: Prepared) -> Tables:
    """The contents of every explained resident's page, in page order (see :class:`Tables`)."""
    R = order_residents(p)
    if not len(R):
        return _no_tables(p)
    topic = R["sel_outcome"].to_numpy(dtype=object)
    topic_risk = np.full(len(R), np.nan)
    for o in p.outcomes:
        m = topic == o
        topic_risk[m] = R.loc[m, f"risk_{o}"].to_numpy(dtype=float)
    head = _heads(R, p.fiscal_year)
    index = {
        "letter": head["letter"],
        "arm": head["arm"],
        "topic": head["topic"],
        "risk": fmt(topic_risk * 100, "%.1f"),
        "rank": head["rank"],
    }
    return Tables(
        n=len(R),
        pseudonym=R["pseudonym"].to_numpy(dtype=object),
        head=head,
        index=index,
        answers=_answers(R),
        notes=_notes(R, p, set(value_items(p))),
        **_risks(R, p),
        **_values(R, p),
        **_waterfalls(R, p),
    )


def _escaped(texts: np.ndarray) -> np.ndarray:
    """HTML-escaped texts (each distinct text escaped once)."""
    codes, uniq = pd.factorize(np.asarray(texts, dtype=object))
    return np.array([str(escape(x)) for x in uniq], dtype=object)[codes]


def build_residents(p: Prepared, t: Tables | None = None) -> Residents:
    """Markup of every explained resident's page and index row, in page order."""
    t = resident_tables(p) if t is None else t
    if not t.n:
        return Residents([], [], [])
    ps, h = t.pseudonym, t.head
    heads = (
        '<section class=r id=p-' + ps + "><h3>" + ps + '</h3><p class=m>' + h["age"] + "歳 "
        + h["sex"] + " 健診日 " + h["exam"] + h["fallback"] + "<br>" + _escaped(h["status"])
        + "</p>"
    )  # fmt: skip
    risks = np.array(_risk_tables(t), dtype=object)
    values = _value_tables(t)
    notes = _escaped(t.notes)
    notes = np.where(notes != "", "<p class=x><b>上の表にない値</b> " + notes + "</p>", "")
    answers = "<p class=x><b>問診</b> " + _escaped(t.answers) + "</p>"
    wfs = _waterfall_html(t)
    pages = heads + risks + values + notes + answers + "<div class=wfs>" + wfs + "</div></section>"
    ix = t.index
    index_rows = (
        "<tr><td><a href=#p-" + ps + ">" + ps + "</a><td>" + ix["letter"] + "<td>" + ix["arm"]
        + "<td>" + ix["topic"] + "<td>" + ix["risk"] + "<td>" + ix["rank"]
    )  # fmt: skip
    return Residents(pseudonyms=list(ps), pages=list(pages), index_rows=list(index_rows))
