"""Japanese labels staff know (with the English key in small print where useful).

Feature labels come from :mod:`features.declarations` (``ja``, ``unit``); judgement values from
:data:`data.judgements.MHLW_R6`. Only words and a few symbols the bundled IPAex font has are
used (no ≥ / ≤: 以上 / 未満 / 以下 instead), so the PDF never falls back to another font.
"""

from __future__ import annotations

from functools import cache

from data.columns import OUTCOMES
from features import declarations

OUTCOME_JA: dict[str, str] = {
    "diabetes": "糖尿病",
    "hypertension": "高血圧",
    "dyslipidemia": "脂質異常症",
    "metabolic_syndrome": "メタボリックシンドローム",
    "ckd": "慢性腎臓病(CKD)",
    "liver": "肝機能障害",
}
assert set(OUTCOME_JA) == set(OUTCOMES)

REASON_JA: dict[str, str] = {
    "SENT_SEE_DOCTOR": "受診勧奨通知を送付",
    "SENT_ADVICE": "予防通知を送付",
    "CONTROL_ARM": "対照群(今年度は送付せず)",
    "OVER_BUDGET": "予算枠外",
    "BELOW_RISK_THRESHOLD": "リスク基準未満",
    "ON_MEDICATION": "服薬中(医師が関与)",
    "RECENTLY_LETTERED": "最近送付済み",
    "OPTED_OUT": "送付停止の申出",
    "NOT_ENROLLED": "国保資格なし",
    "NO_CONTACT": "連絡先なし",
    "CONTACT_INVALID": "連絡先の不備(氏名・郵便番号・住所)",
}
LETTER_JA: dict[str, str] = {
    "advice": "予防通知(生活習慣)",
    "see_doctor": "受診勧奨通知",
    "": "通知なし",
}
ARM_JA: dict[str, str] = {"letter": "送付群", "control": "対照群", "": "—"}
SEX_JA: dict[int, str] = {1: "男性", 2: "女性"}
FLAG_JA: dict[int, str] = {0: "基準内", 1: "保健指導", 2: "受診勧奨"}
STATUS_JA: dict[str, str] = {"shift": "変化大", "watch": "要注意", "ok": "安定", "n/a": "算出不可"}

#: Age bands of the cohort summary (scoring.select.AGE_BANDS): [40,50) [50,60) [60,65) [65,75).
AGE_BAND_JA = ("40-49歳", "50-59歳", "60-64歳", "65-74歳")

#: Key items shown against the judgement values, in the order of the letters' table.
KEY_ITEMS = (
    "hba1c", "fpg", "sbp", "dbp", "ldl", "hdl", "tg", "waist_cm", "bmi", "alt", "ggt", "egfr",
)  # fmt: skip
#: Decimals per item (default 0: mg/dL, mmHg, U/L).
DECIMALS: dict[str, int] = {
    "hba1c": 1, "bmi": 1, "waist_cm": 1, "weight_kg": 1, "height_cm": 1, "egfr": 1,
    "creatinine": 2, "uric_acid": 1, "hemoglobin": 1,
}  # fmt: skip
#: Comparison words (≥ and ≤ are not in IPAex).
OP_JA = {">=": "{v}以上", "<": "{v}未満", "<=": "{v}以下"}

BIAS_JA = "ベースライン"
OTHER_JA = "その他の要因"


@cache
def feature_ja(name: str) -> str:
    """Japanese label of a declared feature (the raw name when undeclared)."""
    if name == "bias":
        return BIAS_JA
    if name == "other":
        return OTHER_JA
    try:
        return declarations.get(name).ja
    except KeyError:
        return name


@cache
def item_label(item: str) -> str:
    """``HbA1c(%)``-style label of a checkup item with its unit."""
    try:
        d = declarations.get(item)
    except KeyError:
        return item
    unit = d.unit if d.unit not in ("code", "level", "flag", "count") else ""
    return f"{d.ja}({unit})" if unit else d.ja


def outcome_ja(o: str) -> str:
    return OUTCOME_JA.get(o, o)
