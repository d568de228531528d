"""Japanese labels staff know: the report prints no program key, code or English word.

One source per label: feature, item and answer labels come from :mod:`features.declarations`
(``ja``, ``unit``, ``ITEMS``, ``CODE_JA``), outcome names from the letter catalogue
(``scoring/letters/catalogue.yaml``, what residents read), judgement values from
:data:`data.judgements.MHLW_R6`; the rest (run counts, selection reasons, model figures) is
declared here. tests/scoring/test_report.py checks that every key the annual run, the selection
and the training summary produce has its label. Only words and a few symbols the bundled IPAex
font has are used (no ≥ / ≤: 以上 / 未満 / 以下 instead), so the PDF never falls back to
another font.
"""

from __future__ import annotations

from functools import cache

from data.columns import AGE_BANDS
from data.outcomes import OUTCOME_DECLARATIONS
from features import declarations
from scoring.items import DECIMALS  # noqa: F401  (the report's decimals: one table)
from scoring.letters.schema import KEY_ITEMS as LETTER_KEY_ITEMS

#: Outcome names as the letters print them (the bundled catalogue: one wording for both).
OUTCOME_JA: dict[str, str] = {o.name: o.label_ja for o in OUTCOME_DECLARATIONS}

REASON_JA: dict[str, str] = {
    "SENT_SEE_DOCTOR": "受診勧奨通知を送付",
    "SENT_ADVICE": "予防通知を送付",
    "CONTROL_ARM": "対照群(今年度は送付せず)",
    "OVER_BUDGET": "予算枠外",
    "VERIFY_VALUE": "値の確認待ち(想定範囲外の値)",
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
SEX_JA: dict[int, str] = declarations.CODE_JA["sex"]
FLAG_JA: dict[int, str] = {0: "基準内", 1: "保健指導", 2: "受診勧奨"}
STATUS_JA: dict[str, str] = {"shift": "変化大", "watch": "要注意", "ok": "安定", "n/a": "算出不可"}

#: Age bands of the cohort summary (scoring.selection.AGE_BANDS): [40,50) [50,60) [60,65) [65,75).
AGE_BAND_JA = tuple(f"{lo}-{hi}歳" for lo, hi in AGE_BANDS)

#: Key items shown against the judgement values: the letters' table (scoring.letters.schema)
#: without the weight (BMI and waist stand for it on a staff page).
KEY_ITEMS = tuple(i for i in LETTER_KEY_ITEMS if i != "weight_kg")
#: Items listed only when measured, each right after the key item it stands in for: 随時血糖
#: (no fasting glucose), Non-HDL cholesterol (TG high or a non-fasting draw).
OPTIONAL_ITEMS: dict[str, str] = {"random_glucose": "fpg", "non_hdl": "ldl"}
#: Comparison words (≥ and ≤ are not in IPAex).
OP_JA = {">=": "{v}以上", "<": "{v}未満", "<=": "{v}以下"}

#: A questionnaire answer left blank.
NO_ANSWER_JA = "未回答"

BIAS_JA = "ベースライン(モデルの平均)"
OTHER_JA = "その他の項目"
CALIBRATION_JA = "較正(検証年での補正)"

#: The annual run's counts (``run.json`` ``counts``, kenshin.annual), in the order the report
#: lists them: who was scored, why residents got a letter or not, what the letter step did.
RUN_COUNT_JA: dict[str, str] = {
    "enrolled_on_scoring_date": "採点日に国保加入中の人",
    "with_checkup": "今年度・前年度に健診を受けた人",
    "checkup_in_fy": "うち今年度に受診",
    "checkup_in_previous_fy": "うち前年度のみ受診",
    "not_enrolled": "健診はあるが採点日に国保資格なし",
    "age_out_of_range": "年齢が対象外(40〜74歳以外)",
    "enrolled_without_recent_checkup": "国保加入中で今年度・前年度の健診なし",
    "eligible": "採点対象者",
    "eligible_by_fallback": "うち前年度の健診で採点",
    "scored": "リスクを算出した人",
    **{f"reason_{k}": f"選定理由: {v}" for k, v in REASON_JA.items()},
    "values_to_verify": "値の確認が必要な人(下の一覧)",
    "explained": "説明ページのある人",
    "letters_requested": "通知の作成依頼",
    "letters_rendered": "今回作成した通知",
    "letters_reused": "作成済みを再利用した通知",
    "letters_characters_replaced": "通知で置き換えた文字(印字できない文字)",
    "letters_forecast_withheld": "検査値の予測表を省いた通知(予測とリスクが食い違うため)",
}
#: Counts the summary already shows in another table (概要, 選定理由別): listed once only.
RUN_COUNTS_SHOWN_ELSEWHERE = frozenset(
    {"eligible", "eligible_by_fallback", "scored", "explained"} | {f"reason_{k}" for k in REASON_JA}
)

#: Models of the training summary's ``<model>_auc`` columns (models.evaluate).
MODEL_JA: dict[str, str] = {
    "engine": "採用モデル",
    "lightgbm": "LightGBM",
    "logistic": "ロジスティック回帰",
    "points": "点数表",
    "oracle": "真の確率(合成データのみ)",
}
#: The member a model uses per outcome (``member``, models.member_choice).
MEMBER_JA: dict[str, str] = {
    "lightgbm": "LightGBM",
    "blend": "LightGBMとロジスティック回帰の組合せ",
    "logistic": "ロジスティック回帰(簡易)",
    "off": "算出せず",
}
#: Columns of the training summary (``evaluation/summary.csv``, models.evaluate) and of the
#: test-year metrics. ``note`` is not a figure: the summary says it in Japanese instead.
METRIC_JA: dict[str, str] = {
    "member": "使用モデル",
    "auc": "識別能(AUC)",
    **{f"{m}_auc": f"識別能(AUC) {ja}" for m, ja in MODEL_JA.items()},
    "pr_auc": "PR曲線下面積(PR-AUC)",
    "brier": "予測の誤差(Brier)",
    "ece": "較正誤差(ECE)",
    "cal_slope": "較正の傾き",
    "cal_intercept": "較正の切片",
    "precision_top_k": "通知枠の上位者での的中率",
    "event_rate": "発症率",
    "mean_p": "平均予測リスク",
    "n": "人数",
    "events": "発症数",
    "member_weight": "LightGBMの重み",
    "auc_ratio": "AUCの比(真の確率に対する)",
    "mae_p_true": "真の確率との平均誤差",
    "driver_any": "主な要因の一致率(真の要因と1つ以上)",
    "driver_mean_overlap": "主な要因の平均一致数(0〜3)",
    "driver_any_baseline": "主な要因の一致率(一律の推測)",
    "driver_high_any": "主な要因の一致率(高リスク者)",
    "driver_high_any_baseline": "主な要因の一致率(高リスク者、一律の推測)",
}
#: Metric columns never shown as figures (said in words elsewhere).
METRIC_NOT_SHOWN = frozenset({"outcome", "note"})

#: Stamps every scores row carries (scoring.contracts.SCORE_STAMPS).
STAMP_JA: dict[str, str] = {
    "model_uri": "モデルの登録名(URI)",
    "model_version": "モデルの版",
    "feature_set_version": "特徴量セットの版",
    "config_hash": "採点設定の識別子",
    "store_sha256": "データの識別子(sha256)",
    "scoring_date": "採点日",
}

#: What the model is for and what staff must keep in mind (the model card's "Intended use" and
#: "Limitations" for staff; the card itself is the training run's, in English).
MODEL_USE_JA = (
    "40〜74歳の国保加入者について、特定健診の結果から、次回の健診までに各疾患の基準に"
    "該当する可能性(リスク)を推定します。予防通知を送る人を選び、その理由を説明するために"
    "使います。保健師の判断を支えるものであり、診断ではありません。治療・保険・資格の判断には"
    "使いません。"
)
MODEL_LIMITS_JA: tuple[str, ...] = (
    "2年続けて健診を受けた人のデータで学習しています。翌年の健診を受けない人のリスクは"
    "異なる可能性があります。",
    "予測確率の較正は検証用の1年度で行っています。受診者の構成や記録の方法が変わったら"
    "較正をやり直す必要があります。発症の少ない集団では不確かさが大きくなります。",
    "生活習慣・体重・腹囲・BMIと主な検査値は、悪くなるほどリスクが上がる向きに制約しています"
    "(年齢・性別・受診歴などは制約なし)。関連は原因を意味しません。寄与(SHAP)はモデルの"
    "計算の説明であり、その人の体の仕組みの説明ではありません。",
    "2024年度より前の質問票の回答は新しい様式にそろえています。以前の喫煙や5合以上の飲酒など、"
    "古い回答からは区別できない区分があります。",
)
#: Said when the training summary has synthetic-truth figures (a generated ward, not people).
SYNTHETIC_JA = (
    "この性能は合成データ(架空の区)で測ったものです。合成データは実際の人より規則的なため、"
    "実データでの性能はこれより低くなります。"
)
#: Training summary columns that exist only when the truth of a synthetic ward is known.
SYNTHETIC_METRICS = ("oracle_auc", "auc_ratio", "mae_p_true")


def run_count_ja(key: str) -> str:
    """Label of a run count; an unknown key (a new count without its label) prints as itself,
    and a test fails (tests/scoring/test_report.py)."""
    return RUN_COUNT_JA.get(key, key)


def metric_ja(column: str) -> str:
    """Label of a training-summary column (the raw name when unknown; a test fails then)."""
    return METRIC_JA.get(column, column)


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
def item_ja(key: str) -> str:
    """Japanese label of an explanation row: a clinical item (features.declarations
    ``ITEMS``), ``bias``, ``other`` or ``calibration`` (the raw key when unknown)."""
    special = {"bias": BIAS_JA, "other": OTHER_JA, "calibration": CALIBRATION_JA}
    if key in special:
        return special[key]
    try:
        return declarations.item(key).ja
    except KeyError:
        return key


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
