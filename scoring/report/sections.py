"""Context of the summary sections: cohort, model, calibration, drift (small tables)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from markupsafe import Markup

from data.validate import RANGES
from scoring.selection import AGE_BANDS, REASONS, VERIFY

from . import markdown, svg
from .inputs import Prepared, ReportConfig
from .labels import (
    AGE_BAND_JA,
    ARM_JA,
    LETTER_JA,
    MEMBER_JA,
    METRIC_NOT_SHOWN,
    MODEL_LIMITS_JA,
    MODEL_USE_JA,
    REASON_JA,
    RUN_COUNT_JA,
    RUN_COUNTS_SHOWN_ELSEWHERE,
    SEX_JA,
    STAMP_JA,
    STATUS_JA,
    SYNTHETIC_JA,
    SYNTHETIC_METRICS,
    item_label,
    metric_ja,
    outcome_ja,
    run_count_ja,
)

#: The headline figures of the model summary, in order (the first AUC column present is the
#: model's own: ``auc`` in a test-year table, ``engine_auc`` / ``lightgbm_auc`` in the training
#: summary).
_AUC_COLUMNS = ("auc", "engine_auc", "lightgbm_auc")
_MAIN_METRICS = (
    "member", "pr_auc", "brier", "ece", "cal_slope", "cal_intercept", "precision_top_k",
)  # fmt: skip


def _int(n: int | float) -> str:
    return f"{int(n):,}"


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}" if b else "—"


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "—"
    if isinstance(v, bool | np.bool_):
        return "はい" if v else "いいえ"
    if isinstance(v, int | np.integer):
        return _int(v)
    if isinstance(v, float | np.floating):
        return f"{v:,.0f}" if abs(v) >= 1000 and float(v).is_integer() else f"{v:.3f}"
    return str(v)


def cohort(p: Prepared, cfg: ReportConfig, font: str) -> dict:
    S, sel = p.scores, p.selection
    n = len(S)
    m = sel.set_index("pseudonym").reindex(S["pseudonym"])
    lt = m["letter_type"].fillna("").astype(str).to_numpy()
    arm = m["arm"].fillna("").astype(str).to_numpy()
    reason = m["reason"].fillna("").astype(str)
    sent = reason.isin(["SENT_ADVICE", "SENT_SEE_DOCTOR"])

    overview = [  # the fiscal year and the scoring date are in the title lines
        ("採点対象者(スコア算出)", _int(n)),
        ("うち前年度の健診で採点", _int((S["index_fiscal_year"] < p.fiscal_year).sum())),
        ("通知送付", _int(sent.sum())),
        ("対照群(送付せず)", _int((arm == "control").sum())),
        ("説明ページのある人(下記5)", _int(p.explanations["pseudonym"].nunique())),
    ]
    counts = reason.value_counts()
    reasons = [
        (REASON_JA[code], _int(counts.get(code, 0)), _pct(counts.get(code, 0), n))
        for code in REASONS
    ]
    if (reason == "").any():
        k = int((reason == "").sum())
        reasons.append(("選定表に行なし", _int(k), _pct(k, n)))

    ct = pd.crosstab(lt, arm)
    arms = ["letter", "control", ""]
    letter_arm = []
    for t in ("advice", "see_doctor", ""):
        row = [int(ct.at[t, a]) if t in ct.index and a in ct.columns else 0 for a in arms]
        letter_arm.append((LETTER_JA[t], [_int(x) for x in row], _int(sum(row))))
    total = [int(ct[a].sum()) if a in ct.columns else 0 for a in arms]
    letter_arm.append(("合計", [_int(x) for x in total], _int(sum(total))))

    topic = m["outcome"].fillna("").astype(str).to_numpy()
    tc = pd.DataFrame({"o": topic, "t": lt, "a": arm}).value_counts()
    by_topic = [
        (
            outcome_ja(o),
            [
                _int(tc.get((o, t, a), 0))
                for t, a in (
                    ("advice", "letter"), ("advice", "control"),
                    ("see_doctor", "letter"), ("see_doctor", "control"),
                )
            ],
        )
        for o in p.outcomes
    ]  # fmt: skip

    verify = values_to_verify(S, p.verify, m["reason"])

    band = pd.cut(S["age"], list(AGE_BANDS), right=False, labels=list(AGE_BAND_JA))
    frame = pd.DataFrame(
        {
            "sex": S["sex"].to_numpy(),
            "band": band.to_numpy(),
            "adv": (lt == "advice") & (arm == "letter"),
            "doc": (lt == "see_doctor") & (arm == "letter"),
            "ctl": arm == "control",
        }
    )
    g = frame.groupby(["sex", "band"], observed=False).agg(
        n=("adv", "size"), adv=("adv", "sum"), doc=("doc", "sum"), ctl=("ctl", "sum")
    )
    sex_age = []
    for sex in (1, 2):
        for b in AGE_BAND_JA:
            r = g.loc[(sex, b)] if (sex, b) in g.index else pd.Series(0, index=g.columns)
            sex_age.append(
                (SEX_JA[sex], b, _int(r["n"]), _int(r["adv"]), _int(r["doc"]), _int(r["ctl"]),
                 _pct(r["adv"] + r["doc"], r["n"]))
            )  # fmt: skip

    dist = []
    for o in p.outcomes:
        r = S[f"risk_{o}"].to_numpy(dtype=float)
        q50, q90, q99 = np.quantile(r, [0.5, 0.9, 0.99]) if len(r) else (np.nan,) * 3
        top = float(np.clip(np.ceil(q99 * 10 + 1e-9) / 10, 0.1, 1.0)) if len(r) else 1.0
        counts_, _ = np.histogram(np.clip(r, 0, top), bins=cfg.risk_bins, range=(0, top))
        dist.append(
            {
                "label": outcome_ja(o),
                "key": o,
                "mean": f"{100 * r.mean():.1f}" if len(r) else "—",
                "median": f"{100 * q50:.1f}",
                "p90": f"{100 * q90:.1f}",
                "ge": [_pct((r >= c).sum(), len(r)) for c in (0.1, 0.2, 0.3)],
                "hist": svg.histogram(counts_, font=font),
                "counts": [int(x) for x in counts_],
                "top": f"{100 * top:.0f}",
            }
        )
    return {
        "overview": overview,
        "run": run_counts(p.summary),
        "reasons": reasons,
        "arms": [ARM_JA[a] if a else "なし" for a in arms],
        "letter_arm": letter_arm,
        "by_topic": by_topic,
        "sex_age": sex_age,
        "dist": dist,
        "verify": verify,
    }


def values_to_verify(
    scores: pd.DataFrame, verify: pd.DataFrame, reason: pd.Series
) -> list[tuple[str, str, str]]:
    """(pseudonym, the values to verify with their plausible range, the selection's reason) of
    the residents whose see-a-doctor letter rested on values outside their plausible range
    (``verify``: pseudonym, ``reason_detail``; ``scores`` and ``reason``: one row per scored
    resident, in the same order)."""
    at = pd.Index(scores["pseudonym"]).get_indexer(verify["pseudonym"])
    rows = []
    for i, codes in zip(at, verify["reason_detail"], strict=True):
        said = []
        for item in (c.removeprefix(VERIFY) for c in codes.split(",") if c.startswith(VERIFY)):
            _, _, lo, hi = RANGES[item]
            said.append(f"{item_label(item)} {scores[item].iat[i]:g}(想定範囲 {lo:g}〜{hi:g})")
        rows.append((str(scores["pseudonym"].iat[i]), "、".join(said), REASON_JA[reason.iat[i]]))
    return rows


def run_counts(summary: tuple[tuple[str, int], ...]) -> list[tuple[str, str]]:
    """(label, count) of the run's counts that no other table of the summary shows, in the
    order of :data:`~scoring.report.labels.RUN_COUNT_JA` (unknown keys last, as given)."""
    order = {k: i for i, k in enumerate(RUN_COUNT_JA)}
    rows = [(k, v) for k, v in summary if k not in RUN_COUNTS_SHOWN_ELSEWHERE]
    rows.sort(key=lambda kv: order.get(kv[0], len(order)))
    return [(run_count_ja(k), _int(v)) for k, v in rows]


def _events(note: str) -> str:
    """「(学習データの発症 75 件)」 from the training note's event count ('' if none)."""
    m = re.search(r"(\d[\d,]*) training events", note)
    return f"(学習データの発症 {m.group(1)} 件)" if m else ""


def small_outcome_warnings(metrics: pd.DataFrame, scored: tuple[str, ...]) -> list[str]:
    """Lines for outcomes with too few training events (the training summary's ``member`` and
    ``note``, models.train.small_outcome_plan): switched off, or a simpler fallback model.
    In Japanese: of the (English) note only its event count is kept."""
    if not len(metrics) or not {"outcome", "member"} <= set(metrics.columns):
        return []
    out = []
    for r in metrics.to_dict("records"):
        o, member = str(r["outcome"]), str(r.get("member") or "")
        note = r.get("note")
        note = "" if note is None or (isinstance(note, float) and math.isnan(note)) else str(note)
        if member == "off" or (o not in scored and note):
            out.append(
                f"{outcome_ja(o)}: 学習データの発症数が少ないため、今回はリスクを算出していません"
                f"(手紙・もしもの対象外){_events(note)}。"
            )
        elif member == "logistic" and note:
            out.append(
                f"{outcome_ja(o)}: 学習データの発症数が少ないため、LightGBM ではなく簡易な"
                f"ロジスティック回帰で算出しています{_events(note)}。"
            )
    return out


def _metric_cell(col: str, v) -> str:
    if col == "member":
        return MEMBER_JA.get(str(v), _cell(v))
    return _cell(v)


def _metric_table(metrics: pd.DataFrame, cols: list[str], labels: list[str]) -> tuple:
    """(header labels, rows of (outcome label, cells)) of ``cols`` of the metrics table."""
    rows = [
        (outcome_ja(str(r["outcome"])), [_metric_cell(c, r[c]) for c in cols])
        for r in metrics.to_dict("records")
    ]
    return labels, rows


def model(p: Prepared, cfg: ReportConfig) -> dict:
    """The model section: facts (each once), warnings, figures and notes, in Japanese.

    The model card (the training run's ``model_card.md``, in English, for model staff) is
    shown whole only in the HTML, folded; the summary says what staff need in Japanese
    (:data:`~scoring.report.labels.MODEL_USE_JA`, ``MODEL_LIMITS_JA``)."""
    ms = p.model
    card = ms.model_card or ""
    S = p.scores
    warnings = []
    for col in ("model_uri", "model_version", "feature_set_version", "config_hash",
                "store_sha256", "scoring_date"):  # fmt: skip
        vals = sorted(S[col].dropna().astype(str).unique())
        if len(vals) > 1:
            warnings.append(f"スコア表の{STAMP_JA[col]}が複数あります: {', '.join(vals[:3])}")
    checks = (
        ("model_uri", str(ms.uri)),
        ("model_version", str(ms.version)),
        ("feature_set_version", str(ms.feature_set_version)),
        ("scoring_date", p.scoring_date.isoformat()),
    )
    for col, want in checks:
        vals = set(S[col].dropna().astype(str).unique())
        if vals and want and vals != {want}:
            warnings.append(
                f"スコア表の{STAMP_JA[col]}({', '.join(sorted(vals)[:3])})がモデル情報・指定値"
                f"({want})と一致しません"
            )

    def stamp(col: str) -> str:
        vals = sorted(S[col].dropna().astype(str).unique())
        return ", ".join(vals[:3]) + (" …" if len(vals) > 3 else "") if vals else "—"

    metrics = p.metrics
    warnings += small_outcome_warnings(metrics, ms.outcomes)
    have = set(metrics.columns) if len(metrics) and "outcome" in metrics.columns else set()
    auc = next((c for c in _AUC_COLUMNS if c in have), None)
    main = [c for c in _MAIN_METRICS if c in have]
    if auc:
        main.insert(1 if "member" in main else 0, auc)
    labels = ["識別能(AUC)" if c == auc else metric_ja(c) for c in main]
    cols, rows = _metric_table(metrics, main, labels) if have else ([], [])
    # the other columns (comparison AUCs, synthetic-truth figures): folded, in the HTML only
    every = [c for c in metrics.columns if c not in METRIC_NOT_SHOWN and c not in main]
    all_cols, all_rows = (
        _metric_table(metrics, every, [metric_ja(c) for c in every]) if have and every else ([], [])
    )
    synthetic = any(c in have and metrics[c].notna().any() for c in SYNTHETIC_METRICS)
    limits = ([SYNTHETIC_JA] if synthetic else []) + list(MODEL_LIMITS_JA)
    return {
        "facts": [
            ("モデル名", ms.name),
            ("版", ms.version),
            ("登録名(URI)", ms.uri),
            ("学習の記録(MLflow run)", ms.run_id),
            ("特徴量セットの版", ms.feature_set_version),
            ("性能を測った年度", f"{ms.test_year}年度"),
            ("予測する疾患", "、".join(outcome_ja(o) for o in ms.outcomes)),
            (STAMP_JA["config_hash"], stamp("config_hash")),
            (STAMP_JA["store_sha256"], stamp("store_sha256")),
        ],  # fmt: skip
        "warnings": warnings,
        "metric_cols": cols,
        "metric_rows": rows,
        "all_cols": all_cols,
        "all_rows": all_rows,
        "limits": limits[: cfg.limitations],
        "intended": MODEL_USE_JA,
        "card": markdown.render(card) if card.strip() else Markup(""),
    }


def calibration(p: Prepared, font: str) -> dict:
    cal = p.calibration
    m = p.metrics.set_index("outcome") if "outcome" in p.metrics.columns else pd.DataFrame()
    charts = []
    for o in p.outcomes:
        c = cal[cal["outcome"] == o]
        if "bin" in c.columns:
            c = c.sort_values("bin", kind="stable")
        else:
            c = c.sort_values("mean_predicted", kind="stable")
        facts = []
        for col in ("ece", "cal_slope", "cal_intercept"):
            if o in m.index and col in m.columns:
                facts.append((metric_ja(col), _cell(m.at[o, col])))
        top, pred, obs, rel = svg.reliability_points(
            c["mean_predicted"].to_numpy(), c["observed"].to_numpy(), c["n"].to_numpy()
        )
        charts.append(
            {
                "label": outcome_ja(o),
                "top": top,
                "points": [
                    (float(a), float(b), 0.0 if np.isnan(r) else float(r))
                    for a, b, r in zip(pred, obs, rel, strict=True)
                ],
                "svg": svg.reliability(
                    c["mean_predicted"].to_numpy(),
                    c["observed"].to_numpy(),
                    c["n"].to_numpy(),
                    title=outcome_ja(o),
                    font=font,
                )
                if len(c)
                else None,
                "n": _int(c["n"].sum()) if len(c) else "0",
                "facts": facts,
            }
        )
    return {"present": bool(len(cal)), "charts": charts}


def _share(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * x:.1f}"


def drift(p: Prepared) -> dict:
    d = p.drift.copy()
    d["_psi"] = d["psi"].fillna(-1.0)
    d = d.sort_values(["_psi", "feature"], ascending=[False, True], kind="stable")
    counts = d["status"].value_counts()
    rows = []
    for r in d.to_dict("records"):
        psi = r["psi"]
        na = psi is None or pd.isna(psi)
        rows.append(
            {
                "label": r["label_ja"],
                "psi": "—" if na else f"{psi:.3f}",
                "bar": "0" if na else f"{min(psi / 0.5, 1.0) * 100:.0f}",
                "status": r["status"],
                "status_ja": STATUS_JA.get(r["status"], r["status"]),
                "miss_ref": _share(r["missing_reference"]),
                "miss_sc": _share(r["missing_scoring"]),
            }
        )
    return {
        "rows": rows,
        "n": len(d),
        "shift": int(counts.get("shift", 0)),
        "watch": int(counts.get("watch", 0)),
        "ok": int(counts.get("ok", 0)),
        "na": int(counts.get("n/a", 0)),
        "flagged": int(counts.get("shift", 0) + counts.get("watch", 0)),
    }
