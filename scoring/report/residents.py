"""Per-resident pages, built column-wise (numpy/pandas) and joined per resident.

:func:`resident_tables` computes what every page shows (numbers formatted, labels as plain
text: :class:`Tables`); the HTML (:func:`build_residents`, here) and the PDF
(:mod:`scoring.report.pdf`, Typst) only lay it out, each escaping text for its own markup.

The HTML markup is deliberately terse (omitted optional end tags, one-letter classes, unquoted
attributes, CSS custom properties for the bars, no indentation): about 7 kB per resident with
six outcomes × top 5 features (bench/bench_report.py). Every text that reaches the
markup is either a number formatted here, a validated pseudonym / code, or a label from
:mod:`scoring.report.labels` that is HTML-escaped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import escape

from data.judgements import MHLW_R6, threshold_flags

from .inputs import Prepared
from .labels import (
    ARM_JA,
    DECIMALS,
    FLAG_JA,
    KEY_ITEMS,
    LETTER_JA,
    OP_JA,
    REASON_JA,
    SEX_JA,
    feature_ja,
    item_label,
    outcome_ja,
)

_TYPE_ORDER = {"advice": 0, "see_doctor": 1, "": 2}
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
    #: age, sex, exam, fallback, letter, arm, reason, reason_ja, topic, rank: (n,) each
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
    #: per waterfall row: label, value, contrib, kind, left, width (% of the bar), lifestyle
    wf: dict[str, np.ndarray]
    wf_starts: np.ndarray  # first row of each waterfall table
    #: per waterfall table: resident, outcome_ja, topic, risk, prob, final, final_left
    wf_table: dict[str, np.ndarray]
    #: per resident: letter, arm, topic, risk, rank (the index)
    index: dict[str, np.ndarray]


def _heads(R: pd.DataFrame, fiscal_year: int) -> dict[str, np.ndarray]:
    exam = pd.to_datetime(R["exam_date"]).dt.strftime("%Y-%m-%d").fillna("—").to_numpy(object)
    older = R["index_fiscal_year"].to_numpy() < fiscal_year
    reason = R["sel_reason"].to_numpy(dtype=object)
    return {
        "age": R["age"].astype(int).astype(str).to_numpy(dtype=object),
        "sex": R["sex"].map(SEX_JA).fillna("—").to_numpy(dtype=object),
        "exam": exam,
        "fallback": np.where(older, "(前年度の健診)", "").astype(object),
        "letter": np.array([LETTER_JA.get(t, t) for t in R["sel_letter_type"]], dtype=object),
        "arm": np.array([ARM_JA.get(a, a) for a in R["sel_arm"]], dtype=object),
        "reason": reason,
        "reason_ja": np.array([REASON_JA.get(r, r or "—") for r in reason], dtype=object),
        "topic": np.array([outcome_ja(o) if o else "—" for o in R["sel_outcome"]], dtype=object),
        "rank": fmt(R["sel_rank"].astype("Float64").to_numpy(dtype=float, na_value=np.nan), "%d"),
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


def _values(R: pd.DataFrame, p: Prepared) -> dict:
    n = len(R)
    items = list(KEY_ITEMS) + [i for i in p.forecast_items if i not in KEY_ITEMS]
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
        if item in _FLAG_COL:
            lvl = flags[_FLAG_COL[item]].to_numpy(dtype=float, na_value=np.nan)
            lvl[np.isnan(x)] = np.nan
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


def _value_tables(t: Tables) -> np.ndarray:
    c = t.value_cells
    tr = np.array(["<tr>", "<tr>", "<tr class=f1>", "<tr class=f2>"], dtype=object)
    label = np.vectorize(lambda x: str(escape(x)), otypes=[object])(c[:, :, 0])
    rows = tr[t.value_level + 1] + "<td>" + label
    for k in range(1, 8):
        rows = rows + "<td>" + c[:, :, k]
    head = (
        "<table class=kv><tr><th>項目<th>今回<th>保健指導判定値<th>受診勧奨判定値<th>判定"
        "<th>予測p10<th>p50<th>p90"
    )
    rows = np.where(t.value_shown, rows, "")
    body = np.array(["".join(r) for r in rows], dtype=object)
    return head + body + "</table>"


def _waterfalls(R: pd.DataFrame, p: Prepared) -> dict:
    """Waterfall rows (bias → contributions → other) and tables (one per resident × outcome)."""
    n = len(R)
    pos = pd.Series(np.arange(n), index=R["pseudonym"].to_numpy())
    o_idx = {o: j for j, o in enumerate(p.outcomes)}
    E = p.explanations
    pi = E["pseudonym"].map(pos).to_numpy()
    oi = E["outcome"].map(o_idx).to_numpy()
    order = np.lexsort((E["rank"].to_numpy(), oi, pi))
    pi, oi = pi[order], oi[order]
    rank = E["rank"].to_numpy()[order]
    feat = E["feature"].to_numpy(dtype=object)[order]
    c = E["contribution"].to_numpy(dtype=float)[order]
    val = E["value"].to_numpy(dtype=float)[order]
    modif = E["modifiable"].to_numpy(dtype=bool)[order]
    gid = pi * len(p.outcomes) + oi
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    size = np.diff(np.r_[starts, len(gid)])
    cum = np.cumsum(c)
    base = np.repeat(cum[starts] - c[starts], size)  # cumsum before the group
    cum = cum - base
    final = np.add.reduceat(c, starts)
    lo = np.minimum.reduceat(cum, starts)
    hi = np.maximum.reduceat(cum, starts)
    span = np.where(hi - lo > 1e-9, hi - lo, 1.0) * 1.08
    lo = lo - 0.04 * span / 1.08
    lo_r, span_r = np.repeat(lo, size), np.repeat(span, size)
    before = cum - c
    is_bias = rank == 0
    left = np.where(is_bias, cum, np.minimum(before, cum))
    left_pct = np.clip((left - lo_r) / span_r * 100, 0, 100)
    width = np.where(is_bias, 1.0, np.maximum(np.abs(c) / span_r * 100, 1.0))
    kind = np.where(is_bias, "m", np.where(feat == "other", "o", np.where(c >= 0, "p", "n")))
    codes, uniq = pd.factorize(feat)
    labels = np.array([feature_ja(f) for f in uniq], dtype=object)[codes]
    g_pi, g_oi = pi[starts], oi[starts]
    topic = R["sel_outcome"].to_numpy(dtype=object)[g_pi]
    o_names = np.array(p.outcomes, dtype=object)[g_oi]
    prob = 1.0 / (1.0 + np.exp(-final))
    risk = np.array(
        [R[f"risk_{o}"].to_numpy(dtype=float)[i] for i, o in zip(g_pi, o_names, strict=True)]
    )
    return {
        "wf": {
            "label": labels,
            "value": fmt_value(val),
            "contrib": fmt(c, "%+.2f"),
            "kind": kind.astype(object),
            "left": left_pct,
            "width": width,
            "lifestyle": modif & ~is_bias & (feat != "other"),
        },
        "wf_starts": starts,
        "wf_table": {
            "resident": g_pi,
            "outcome_ja": np.array([outcome_ja(o) for o in o_names], dtype=object),
            "topic": topic == o_names,
            "risk": fmt(risk * 100, "%.1f"),
            "prob": fmt(prob * 100, "%.1f"),
            "final": fmt(final, "%+.2f"),
            "final_left": np.clip((final - lo) / span * 100, 0, 100),
        },
    }


def _waterfall_html(t: Tables) -> np.ndarray:
    """One waterfall table per resident × outcome: bias → contributions → other → total."""
    w, g, starts = t.wf, t.wf_table, t.wf_starts
    codes, uniq = pd.factorize(w["label"])
    labels = np.array([str(escape(x)) for x in uniq], dtype=object)[codes]
    tr = np.where(w["lifestyle"], "<tr class=l>", "<tr>")
    row = (
        tr + "<td>" + labels + "<td>" + w["value"] + "<td>" + w["contrib"] + "<td><i class="
        + w["kind"] + " style=--l:" + fmt(w["left"], "%.0f") + "%;--w:"
        + fmt(w["width"], "%.0f") + "%></i>"
    )  # fmt: skip
    body = _join_runs(row, starts)
    caption = np.array([str(escape(x)) for x in g["outcome_ja"]], dtype=object)
    caption = np.where(g["topic"], caption + " ◎通知テーマ", caption)
    tables = (
        "<table class=wf><caption>" + caption + " <small>較正後リスク " + g["risk"]
        + "%</small></caption><tr><th>要因<th>値<th>寄与<th>" + body
        + "<tr class=f><td>合計 → 確率<td>" + g["prob"] + "%<td>" + g["final"]
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
        **_risks(R, p),
        **_values(R, p),
        **_waterfalls(R, p),
    )


def build_residents(p: Prepared, t: Tables | None = None) -> Residents:
    """Markup of every explained resident's page and index row, in page order."""
    t = resident_tables(p) if t is None else t
    if not t.n:
        return Residents([], [], [])
    ps, h = t.pseudonym, t.head
    reason_ja = np.array([str(escape(r)) for r in h["reason_ja"]], dtype=object)
    heads = (
        '<section class=r id=p-' + ps + "><h3>" + ps + '</h3><p class=m>' + h["age"] + "歳 "
        + h["sex"] + " 健診日 " + h["exam"] + h["fallback"] + "<br>" + h["letter"] + " / "
        + h["arm"] + " / 理由: " + reason_ja + " <small>" + h["reason"] + "</small> / テーマ: "
        + h["topic"] + " / 順位 " + h["rank"] + "</p>"
    )  # fmt: skip
    risks = np.array(_risk_tables(t), dtype=object)
    values = _value_tables(t)
    wfs = _waterfall_html(t)
    pages = heads + risks + values + "<div class=wfs>" + wfs + "</div></section>"
    ix = t.index
    index_rows = (
        "<tr><td><a href=#p-" + ps + ">" + ps + "</a><td>" + ix["letter"] + "<td>" + ix["arm"]
        + "<td>" + ix["topic"] + "<td>" + ix["risk"] + "<td>" + ix["rank"]
    )  # fmt: skip
    return Residents(pseudonyms=list(ps), pages=list(pages), index_rows=list(index_rows))
