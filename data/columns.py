"""Canonical column names and kinds of the input bundle (docs/contract.md §Bundle).

One place that says what each column of `checkups`, `enrollment` and `contacts` is, so readers,
schemas, the generator and the XML mapping agree. Kinds: ``str``, ``date``, ``int`` (nullable
integer code or count), ``float``.
"""

from __future__ import annotations

from typing import Literal

from data.outcomes import OUTCOME_DECLARATIONS

Kind = Literal["str", "date", "int", "float", "bool"]

#: 特定健診 results and questionnaire answers, one row per person per checkup
#: (docs/contract.md §Checkups).
CHECKUP_COLUMNS: dict[str, Kind] = {
    "person_id": "str",
    "exam_date": "date",
    "sex": "int",
    "birth_date": "date",
    "height_cm": "float",
    "weight_kg": "float",
    "bmi": "float",
    "waist_cm": "float",
    "sbp": "int",
    "dbp": "int",
    "blood_draw_timing": "int",
    "tg": "float",
    "hdl": "float",
    "ldl": "float",
    "non_hdl": "float",
    "ast": "float",
    "alt": "float",
    "ggt": "float",
    "fpg": "float",
    "random_glucose": "float",
    "hba1c": "float",
    "urine_glucose": "int",
    "urine_protein": "int",
    "creatinine": "float",
    "egfr": "float",
    "uric_acid": "float",
    "hemoglobin": "float",
    # The facility's own judgements (医師の判断), XML 9N501 / 9N506 / 9N511 where coded: kept
    # beside kenshin's own (data.judgements), never used in their place.
    "facility_mets": "int",  # メタボリックシンドローム判定: 1 基準該当 … 4 判定不能
    "facility_guidance_level": "int",  # 保健指導レベル: 1 積極的 2 動機付け 3 なし 4 判定不能
    "facility_doctor_judgement": "int",  # 医師の判断, only when the facility sends it coded
    "q_med_bp": "int",
    "q_med_glucose": "int",
    "q_med_lipid": "int",
    "q_hist_stroke": "int",
    "q_hist_heart": "int",
    "q_hist_kidney": "int",
    "q_anemia": "int",
    "q_smoking": "int",
    "q_weight_gain": "int",
    "q_exercise": "int",
    "q_walking": "int",
    "q_walk_fast": "int",
    "q_chewing": "int",
    "q_eating_speed": "int",
    "q_late_dinner": "int",
    "q_snacks": "int",
    "q_skip_breakfast": "int",
    "q_alcohol_freq": "int",
    "q_alcohol_amount": "int",
    "q_sleep": "int",
    "q_intention": "int",
    "q_guidance_received": "int",
}
CHECKUP_REQUIRED = ("person_id", "exam_date", "sex", "birth_date")

#: Lab and body measurements (numeric items, excluding codes).
MEASUREMENT_COLUMNS = tuple(
    c for c, k in CHECKUP_COLUMNS.items() if k == "float" or c in ("sbp", "dbp")
)
#: Questionnaire items 1-22 (標準的な質問票), canonical 2024 coding.
QUESTIONNAIRE_COLUMNS = tuple(c for c in CHECKUP_COLUMNS if c.startswith("q_"))

#: NHI membership periods (docs/contract.md §Enrollment).
ENROLLMENT_COLUMNS: dict[str, Kind] = {
    "person_id": "str",
    "enrolled_from": "date",
    "enrolled_until": "date",
    "end_reason": "str",
}
ENROLLMENT_REQUIRED = ("person_id", "enrolled_from")
END_REASONS = ("moved_out", "deceased", "changed_insurer", "turned_75", "other")
#: The Japanese words municipal systems write for them (資格喪失事由), read as the codes above.
END_REASON_WORDS = {
    "転出": "moved_out",
    "死亡": "deceased",
    "社保加入": "changed_insurer",
    "社会保険加入": "changed_insurer",
    "他保険加入": "changed_insurer",
    "被用者保険加入": "changed_insurer",
    "後期高齢者医療": "turned_75",
    "後期高齢者医療加入": "turned_75",
    "75歳到達": "turned_75",
    "その他": "other",
}

#: Contact details; only the letter step reads these (docs/contract.md §Contacts).
CONTACT_COLUMNS: dict[str, Kind] = {
    "person_id": "str",
    "name": "str",
    "name_kana": "str",
    "postal_code": "str",
    "address": "str",
    "language": "str",
    "opt_out": "bool",
}
CONTACT_REQUIRED = ("person_id",)

TABLES: dict[str, dict[str, Kind]] = {
    "checkups": CHECKUP_COLUMNS,
    "enrollment": ENROLLMENT_COLUMNS,
    "contacts": CONTACT_COLUMNS,
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "checkups": CHECKUP_REQUIRED,
    "enrollment": ENROLLMENT_REQUIRED,
    "contacts": CONTACT_REQUIRED,
}

#: Outcomes judged at a checkup, in declaration order (data.outcomes; docs/contract.md §Outcomes).
OUTCOMES: tuple[str, ...] = tuple(o.name for o in OUTCOME_DECLARATIONS)

#: Age bands of 特定健診 reporting (年齢階級, inclusive years): model slices, the control-arm
#: strata, the staff report. Defined once; the others derive from it.
AGE_BANDS: tuple[tuple[int, int], ...] = ((40, 49), (50, 59), (60, 64), (65, 74))
#: The same bands as left-closed edges for pd.cut: 40, 50, 60, 65, 75.
AGE_BAND_EDGES: tuple[int, ...] = (*(lo for lo, _ in AGE_BANDS), AGE_BANDS[-1][1] + 1)

#: Columns ingest derives (added to the stored checkups table).
DERIVED_COLUMNS: dict[str, Kind] = {
    "fiscal_year": "int",
    "age": "int",  # age at fiscal-year end (年度末年齢), 31 March
}


#: Japanese item names (特定健診の項目名) some exports use as headers, read as the canonical
#: column they name; compared after NFKC and case folding (data.readers.canonical_headers).
#: Only unambiguous names: 血圧 alone (which reading?) or 血糖 alone (fasting or not?) are not here.
JAPANESE_HEADERS: dict[str, str] = {
    "受診日": "exam_date",
    "健診日": "exam_date",
    "健診実施日": "exam_date",
    "生年月日": "birth_date",
    "身長": "height_cm",
    "体重": "weight_kg",
    "腹囲": "waist_cm",
    "収縮期血圧": "sbp",
    "拡張期血圧": "dbp",
    "中性脂肪": "tg",
    "中性脂肪(トリグリセリド)": "tg",
    "hdlコレステロール": "hdl",
    "ldlコレステロール": "ldl",
    "non-hdlコレステロール": "non_hdl",
    "ast(got)": "ast",
    "got": "ast",
    "alt(gpt)": "alt",
    "gpt": "alt",
    "γ-gt(γ-gtp)": "ggt",
    "γ-gtp": "ggt",
    "γ-gt": "ggt",
    "空腹時血糖": "fpg",
    "随時血糖": "random_glucose",
    "ヘモグロビンa1c": "hba1c",
    "尿糖": "urine_glucose",
    "尿蛋白": "urine_protein",
    "血清クレアチニン": "creatinine",
    "クレアチニン": "creatinine",
    "血清尿酸": "uric_acid",
    "尿酸": "uric_acid",
    "血色素量": "hemoglobin",
    "ヘモグロビン": "hemoglobin",
}
