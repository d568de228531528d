"""A fixed, hand-made LetterRequest table (fictional people; hard kanji 髙, 﨑, 邊) and PDF readers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.letters import LetterConfig

ISSUE = date(2025, 4, 1)


def config(**kw) -> LetterConfig:
    """A fixed issue date (reproducible PDFs); 2 workers unless told."""
    return LetterConfig(**{"issue_date": ISSUE, "workers": 2, **kw})


def _base(**kw) -> dict:
    row = {
        "pseudonym": "0a1b2c3d4e5f6071",
        "person_id": "12-900001",
        "name": "髙橋 﨑子",
        "name_kana": "タカハシ サキコ",
        "postal_code": "100-0011",
        "address": "架空区中央二丁目3番4号 架空ハイツ101",
        "language": "ja",
        "letter_type": "advice",
        "outcome": "diabetes",
        "risk": 0.24,
        "risk_band": "high",
        "hba1c": 6.1, "fpg": 112.0, "sbp": 134.0, "dbp": 84.0, "ldl": 128.0, "tg": 180.0,
        "hdl": 44.0, "waist_cm": 92.5, "bmi": 26.8, "weight_kg": 71.2, "alt": 34.0,
        "ggt": 48.0, "egfr": 72.0,
        "sex": 2,
        "hba1c_p10": 5.9, "hba1c_p50": 6.2, "hba1c_p90": 6.5,
        "weight_kg_p10": 69.8, "weight_kg_p50": 71.5, "weight_kg_p90": 73.1,
        "factor_1": "weight_kg",
        "factor_2": "q_late_dinner",
        "factor_3": "q_exercise",
        "whatif_scenario": "weight_loss_3kg",
        "whatif_risk_before": 0.24,
        "whatif_risk_after": 0.15,
        "exam_date": "2024-06-10",
        "fiscal_year": 2024,
    }  # fmt: skip
    row.update(kw)
    return row


def requests() -> pd.DataFrame:
    """Six letters: ja, ja-easy, en advice; a see_doctor; a non-modifiable factor; a fallback."""
    rows = [
        _base(),
        _base(
            pseudonym="1b2c3d4e5f607182", person_id="12-900002", name="渡邊 一郎",
            name_kana="ワタナベ イチロウ", postal_code="1000012", language="ja-easy",
            outcome="hypertension", risk=0.31, risk_band="very_high", sex=1, sbp=138.0,
            dbp=88.0, factor_1="current_smoker", factor_2="risky_drinking", factor_3="q_sleep",
            whatif_scenario="quit_smoking", whatif_risk_before=0.31, whatif_risk_after=0.22,
        ),
        _base(
            pseudonym="2c3d4e5f60718293", person_id="12-900003", name="John Smith",
            name_kana="ジョン スミス", postal_code="100-0013", language="en",
            outcome="dyslipidemia", risk=0.18, risk_band="moderate", sex=1, ldl=135.0,
            factor_1="q_snacks", factor_2="q_walking", factor_3="bmi",
            whatif_scenario="no_snacks", whatif_risk_before=0.18, whatif_risk_after=0.12,
        ),
        _base(
            pseudonym="3d4e5f6071829304", person_id="12-900004", name="山﨑 髙志",
            name_kana="ヤマサキ タカシ", postal_code="100-0014", letter_type="see_doctor",
            outcome="diabetes", risk=np.nan, risk_band=None, hba1c=7.2, fpg=141.0, sex=1,
            factor_1=None, factor_2=None, factor_3=None, whatif_scenario=None,
            whatif_risk_before=np.nan, whatif_risk_after=np.nan,
        ),
        _base(
            pseudonym="4e5f607182930415", person_id="12-900005", name="斎藤 花子",
            name_kana="サイトウ ハナコ", postal_code="100-0015", outcome="metabolic_syndrome",
            risk=0.27, risk_band="high", factor_1="age", factor_2="q_hist_heart",
            factor_3="q_skip_breakfast", whatif_scenario="eat_breakfast",
            whatif_risk_before=0.27, whatif_risk_after=0.21,
        ),
        _base(
            pseudonym="5f60718293041526", person_id="12-900006", name="李 美玲",
            name_kana="リ メイレイ", postal_code="100-0016", language="zh",
            outcome="liver", risk=0.12, risk_band="moderate", alt=45.0, ggt=80.0,
            factor_1="alcohol_g_per_day", factor_2="q_alcohol_freq", factor_3="waist_cm",
            whatif_scenario="less_alcohol", whatif_risk_before=0.12, whatif_risk_after=0.08,
        ),
    ]  # fmt: skip
    return pd.DataFrame(rows)


def pdf_text(path: Path) -> list[str]:
    """Extracted text of every page (pypdf)."""
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(str(path)).pages]


def flat(path: Path) -> str:
    """All pages' text with whitespace removed (line breaks fall anywhere in Japanese text)."""
    return "".join("".join(pdf_text(path)).split())


def squash(s: str) -> str:
    return "".join(s.split())
