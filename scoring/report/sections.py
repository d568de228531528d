"""Context of the summary sections: cohort, model, calibration, drift (small tables)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from markupsafe import Markup

from scoring.select import AGE_BANDS, REASONS

from . import markdown, svg
from .inputs import Prepared, ReportConfig
from .labels import AGE_BAND_JA, ARM_JA, LETTER_JA, REASON_JA, SEX_JA, STATUS_JA, outcome_ja

_METRIC_JA = {
    "auc": "AUC", "pr_auc": "PR-AUC", "brier": "Brier", "ece": "ECE",
    "cal_slope": "較正傾き", "cal_intercept": "較正切片", "precision_top_k": "上位k適合率",
    "event_rate": "発症率", "mean_p": "平均予測", "n": "人数", "events": "発症数",
}  # fmt: skip


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

    overview = [
        ("対象年度", f"{p.fiscal_year}年度"),
        ("採点日", p.scoring_date.isoformat()),
        ("採点対象者(スコア算出)", _int(n)),
        ("うち前年度の健診で採点", _int((S["index_fiscal_year"] < p.fiscal_year).sum())),
        ("通知送付", _int(sent.sum())),
        ("対照群(送付せず)", _int((arm == "control").sum())),
        ("説明ページのある人(下記5)", _int(p.explanations["pseudonym"].nunique())),
    ]
    counts = reason.value_counts()
    reasons = [
        (code, REASON_JA[code], _int(counts.get(code, 0)), _pct(counts.get(code, 0), n))
        for code in REASONS
    ]
    if (reason == "").any():
        k = int((reason == "").sum())
        reasons.append(("—", "選定表に行なし", _int(k), _pct(k, n)))

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
        "run": [(k, _int(v)) for k, v in p.summary],
        "reasons": reasons,
        "arms": [ARM_JA[a] if a else "なし" for a in arms],
        "letter_arm": letter_arm,
        "by_topic": by_topic,
        "sex_age": sex_age,
        "dist": dist,
    }


def small_outcome_warnings(metrics: pd.DataFrame, scored: tuple[str, ...]) -> list[str]:
    """Lines for outcomes with too few training events (the training summary's ``member`` and
    ``note``, models.train.small_outcome_plan): switched off, or a simpler fallback model."""
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
                f"(手紙・もしもの対象外)。{note}"
            )
        elif member == "logistic" and note:
            out.append(
                f"{outcome_ja(o)}: 学習データの発症数が少ないため、LightGBM ではなく簡易な"
                f"ロジスティック回帰で算出しています。{note}"
            )
    return out


def model(p: Prepared, cfg: ReportConfig) -> dict:
    ms = p.model
    card = ms.model_card or ""
    S = p.scores
    stamps = []
    warnings = []
    for col, label in (
        ("model_uri", "モデルURI"), ("model_version", "モデル版"),
        ("feature_set_version", "特徴量セット版"), ("config_hash", "設定ハッシュ"),
        ("store_sha256", "データストア sha256"), ("scoring_date", "採点日(スタンプ)"),
    ):  # fmt: skip
        vals = sorted(S[col].dropna().astype(str).unique())
        stamps.append((label, ", ".join(vals[:3]) + (" …" if len(vals) > 3 else "")))
        if len(vals) > 1:
            warnings.append(f"スコア表の {col} が複数あります: {', '.join(vals[:3])}")
    checks = (
        ("model_version", str(ms.version)),
        ("feature_set_version", str(ms.feature_set_version)),
        ("scoring_date", p.scoring_date.isoformat()),
    )
    for col, want in checks:
        vals = set(S[col].dropna().astype(str).unique())
        if vals and vals != {want}:
            warnings.append(
                f"スコア表の {col} ({', '.join(sorted(vals)[:3])}) がモデル情報/指定値 ({want}) "
                "と一致しません"
            )
    metrics = p.metrics
    warnings += small_outcome_warnings(metrics, ms.outcomes)
    main_cols = [c for c in _METRIC_JA if c in metrics.columns]
    rows = []
    if len(metrics) and "outcome" in metrics.columns:
        for r in metrics.to_dict("records"):
            rows.append((outcome_ja(str(r["outcome"])), [_cell(r[c]) for c in main_cols]))
    all_cols = [c for c in metrics.columns]
    all_rows = [[_cell(r[c]) for c in all_cols] for r in metrics.to_dict("records")]
    limits = markdown.bullets(markdown.section(card, "limitation", "限界", "制約", "注意"))
    intended = markdown.first_paragraph(markdown.section(card, "intended use", "用途", "目的"))
    return {
        "facts": [
            ("モデル名", ms.name),
            ("URI", ms.uri),
            ("版", ms.version),
            ("run id", ms.run_id),
            ("特徴量セット", ms.feature_set_version),
            ("テスト年度", f"{ms.test_year}年度"),
            ("予測する疾患", "、".join(outcome_ja(o) for o in ms.outcomes)),
        ],  # fmt: skip
        "stamps": stamps,
        "warnings": warnings,
        "metric_cols": [_METRIC_JA[c] for c in main_cols],
        "metric_rows": rows,
        "all_cols": all_cols,
        "all_rows": all_rows,
        "limits": limits[: cfg.limitations],
        "limits_more": max(0, len(limits) - cfg.limitations),
        "intended": intended,
        "card": markdown.render(card) if card.strip() else Markup(""),
        "card_blocks": markdown.blocks(card),
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
                facts.append((_METRIC_JA[col], _cell(m.at[o, col])))
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
                "feature": r["feature"],
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
