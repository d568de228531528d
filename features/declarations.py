"""Every model feature, declared once (特徴量定義).

One table drives the feature builder, its pandera schema, the models (monotone constraints,
categorical columns), the explanations (English / Japanese labels, units) and, later, the letters
and what-if scenarios (``modifiable``, ``scenario_tags``).

Decisions recorded here:

* ``modifiable`` means "a lever the resident can pull directly": body size (体重, 腹囲, BMI) and
  lifestyle answers (喫煙, 運動習慣, 食習慣, 飲酒, 睡眠). Laboratory values (HbA1c, 血圧, 脂質, 肝機能,
  腎機能) are *not* directly modifiable — they respond to the levers, and a letter should name the
  lever, not the lab value. Age, sex, history (既往歴), medication (服薬) and the checkup history
  are not modifiable. History-derived features (change, slope) are not modifiable either, but
  carry the ``scenario_tags`` of their item so a scenario engine knows they move with it.
* ``monotone`` is the declared **medical direction** (+1: risk never falls as the value rises,
  all else equal; −1: risk never rises as the value rises; 0: no declared direction). LightGBM's
  ``monotone_constraints`` and the logistic member's clipped coefficients (models.member_choice) enforce
  it for every outcome, and a what-if scenario (scoring.score) may only move a feature in its
  risk-lowering direction (−monotone). Declared:

  - latest HbA1c, 空腹時血糖, 収縮期/拡張期血圧, 中性脂肪, LDL, Non-HDL, AST, ALT, γ-GT, 尿酸: +1,
    HDL: −1, and the 判定 flags of these items (0 normal < 1 保健指導 < 2 受診勧奨): +1 (not
    levers, but medically clear; declared so that a what-if may move them with the lever,
    models.lab_response, without the risk ever rising);
  - body size — 体重, BMI, 腹囲, their change since the previous checkup and yearly slope (a
    weight-loss scenario moves all of them), the BMI and 腹囲 判定値 flags, the メタボ判定 level and
    the 保健指導 intensity: +1;
  - every lifestyle answer, **in its code order** (2024 codes): 喫煙 1 smokes > 2 quit > 3 never
    (−1); 飲酒頻度 1 daily … 6 <1 day/month > 7 quit > 8 never (−1: less drinking never raises
    risk; quit and never both drink nothing); 飲酒量 (+1), 純アルコール g/day (+1), risky drinking
    (+1), current smoker (+1); 就寝前の夕食 1 yes (−1), 間食 1 daily > 2 sometimes > 3 hardly (−1),
    朝食欠食 1 yes (−1), 食べる速度 1 fast > 2 normal > 3 slow (−1); 運動習慣, 歩行, 歩く速度 and
    睡眠で休養, 2 no (+1).

  Questionnaire associations are confounded (smokers who quit gain weight, light drinkers have
  higher HDL, …): without the declaration the models learned, on the demo ward, that quitting
  smoking raises the diabetes risk. Codes with a declared direction are therefore *ordinal*,
  never LightGBM categoricals (a categorical split has no order to constrain). Judgement codes
  whose XML code list is not an order (メタボ判定 9N501 4 判定不能; 階層化 "excluded, on
  medication" and "undeterminable") are re-encoded as ordered levels with those codes missing
  (medication is a feature of its own, ``q_med_*``).
* Codes are the canonical 2024 questionnaire / XML codes (data.columns); they are kept as
  integer codes (nullable ``Int8``), never pandas ``category``. Missing stays missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "CHANGE_ITEMS",
    "CODE_JA",
    "DECLARATIONS",
    "FEATURE_SET_VERSION",
    "HISTORY_LEVELS",
    "ITEMS",
    "ITEM_KEYS",
    "KEYS",
    "RECENT_ITEMS",
    "ClinicalItem",
    "FeatureDecl",
    "categorical_features",
    "declarations_frame",
    "feature_names",
    "get",
    "item",
    "item_matrix",
    "item_of",
    "modifiable_features",
    "monotone_constraints",
]

Kind = Literal["numeric", "ordinal", "binary", "categorical"]

#: Keys of every feature / label row: one row per person and index checkup.
KEYS = ("pseudonym", "fiscal_year", "exam_date")

_DEFAULT_DTYPE: dict[str, str] = {
    "numeric": "float64",
    "ordinal": "Int8",
    "binary": "Int8",
    "categorical": "Int8",
}


@dataclass(frozen=True, slots=True)
class FeatureDecl:
    """One feature: what it is, for whom it is a lever, and how models may treat it.

    ``sources`` are the canonical checkup columns it is computed from (first = main source).
    ``dtype`` defaults from ``kind``: numeric → float64, codes → nullable Int8.
    """

    name: str
    description: str
    ja: str
    unit: str
    kind: Kind
    modifiable: bool
    sources: tuple[str, ...]
    monotone: int = 0
    scenario_tags: tuple[str, ...] = ()
    group: str = "latest"
    dtype: str = ""
    allowed: tuple[int, ...] | None = None  # allowed integer codes, when coded

    def __post_init__(self) -> None:
        if not self.dtype:
            object.__setattr__(self, "dtype", _DEFAULT_DTYPE[self.kind])
        if self.monotone not in (-1, 0, 1):
            raise ValueError(f"{self.name}: monotone must be -1, 0 or +1, got {self.monotone}")
        if self.monotone and self.kind == "categorical":
            raise ValueError(f"{self.name}: a categorical code has no order to be monotone in")
        if not self.ja.strip():
            raise ValueError(f"{self.name}: Japanese label is empty")

    @property
    def source(self) -> str:
        """The main canonical source column."""
        return self.sources[0]


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

# fmt: off
# (name, description, 日本語, unit, modifiable, monotone, scenario tags)
_MEASUREMENTS: list[tuple[str, str, str, str, bool, int, tuple[str, ...]]] = [
    ("height_cm", "Height", "身長", "cm", False, 0, ()),
    ("weight_kg", "Body weight", "体重", "kg", True, 1, ("weight_loss",)),
    ("bmi", "Body-mass index", "BMI", "kg/m²", True, 1, ("weight_loss",)),
    ("waist_cm", "Waist circumference", "腹囲", "cm", True, 1, ("weight_loss",)),
    ("sbp", "Systolic blood pressure", "収縮期血圧", "mmHg", False, 1, ()),
    ("dbp", "Diastolic blood pressure", "拡張期血圧", "mmHg", False, 1, ()),
    ("tg", "Triglycerides (fasting or random, see blood_draw_timing)", "中性脂肪", "mg/dL",
     False, 1, ()),
    ("hdl", "HDL cholesterol", "HDLコレステロール", "mg/dL", False, -1, ()),
    ("ldl", "LDL cholesterol", "LDLコレステロール", "mg/dL", False, 1, ()),
    ("non_hdl", "Non-HDL cholesterol", "Non-HDLコレステロール", "mg/dL", False, 1, ()),
    ("ast", "AST (GOT)", "AST(GOT)", "U/L", False, 1, ()),
    ("alt", "ALT (GPT)", "ALT(GPT)", "U/L", False, 1, ()),
    ("ggt", "gamma-GT", "γ-GT(γ-GTP)", "U/L", False, 1, ()),
    ("fpg", "Fasting plasma glucose", "空腹時血糖", "mg/dL", False, 1, ()),
    ("random_glucose", "Random (non-fasting) glucose", "随時血糖", "mg/dL", False, 0, ()),
    ("hba1c", "HbA1c (NGSP)", "HbA1c", "%", False, 1, ()),
    ("creatinine", "Serum creatinine", "血清クレアチニン", "mg/dL", False, 0, ()),
    ("egfr", "eGFR (JSN equation)", "eGFR", "mL/min/1.73m²", False, 0, ()),
    ("uric_acid", "Serum uric acid", "血清尿酸", "mg/dL", False, 1, ()),
    ("hemoglobin", "Haemoglobin", "血色素量(ヘモグロビン)", "g/dL", False, 0, ()),
]

# (name, description incl. codes, 日本語, kind, modifiable, scenario tags, allowed codes)
_CODED: list[tuple[str, str, str, Kind, bool, tuple[str, ...], tuple[int, ...]]] = [
    ("blood_draw_timing", "Blood drawn: 2 fasting ≥10 h, 3 3.5-10 h, 4 <3.5 h after a meal",
     "採血時間(食後)", "ordinal", False, (), (2, 3, 4)),
    ("urine_glucose", "Urine glucose dipstick: 1 −, 2 ±, 3 +, 4 ++, 5 +++", "尿糖", "ordinal",
     False, (), (1, 2, 3, 4, 5)),
    ("urine_protein", "Urine protein dipstick: 1 −, 2 ±, 3 +, 4 ++, 5 +++", "尿蛋白", "ordinal",
     False, (), (1, 2, 3, 4, 5)),
    ("q_med_bp", "Q1 on blood-pressure medication: 1 yes, 2 no", "血圧を下げる薬の服用", "binary",
     False, (), (1, 2)),
    ("q_med_glucose", "Q2 on insulin or glucose-lowering medication: 1 yes, 2 no",
     "インスリン注射又は血糖を下げる薬の服用", "binary", False, (), (1, 2)),
    ("q_med_lipid", "Q3 on cholesterol/TG-lowering medication: 1 yes, 2 no",
     "コレステロールや中性脂肪を下げる薬の服用", "binary", False, (), (1, 2)),
    ("q_hist_stroke", "Q4 history of stroke: 1 yes, 2 no", "脳卒中の既往", "binary", False, (),
     (1, 2)),
    ("q_hist_heart", "Q5 history of heart disease: 1 yes, 2 no", "心臓病の既往", "binary", False,
     (), (1, 2)),
    ("q_hist_kidney", "Q6 chronic kidney disease / renal failure: 1 yes, 2 no",
     "慢性腎臓病・腎不全の既往", "binary", False, (), (1, 2)),
    ("q_anemia", "Q7 told anaemic: 1 yes, 2 no", "貧血の既往", "binary", False, (), (1, 2)),
    ("q_smoking", "Q8 smoking: 1 smokes, 2 quit (not in the last month), 3 no", "喫煙",
     "ordinal", True, ("quit_smoking",), (1, 2, 3)),
    ("q_weight_gain", "Q9 gained ≥10 kg since age 20: 1 yes, 2 no",
     "20歳時から10kg以上の体重増加", "binary", False, (), (1, 2)),
    ("q_exercise", "Q10 exercise ≥30 min ≥2 days/week for ≥1 year: 1 yes, 2 no", "運動習慣",
     "binary", True, ("exercise",), (1, 2)),
    ("q_walking", "Q11 walking or equivalent ≥1 h/day: 1 yes, 2 no",
     "歩行又は身体活動(1日1時間以上)", "binary", True, ("exercise",), (1, 2)),
    ("q_walk_fast", "Q12 walks faster than peers: 1 yes, 2 no", "歩く速度", "binary", True,
     ("exercise",), (1, 2)),
    ("q_chewing", "Q13 chewing: 1 anything, 2 some difficulty, 3 hardly", "咀嚼", "ordinal",
     False, (), (1, 2, 3)),
    ("q_eating_speed", "Q14 eating speed: 1 fast, 2 normal, 3 slow", "食べる速度", "ordinal", True,
     ("diet",), (1, 2, 3)),
    ("q_late_dinner", "Q15 dinner within 2 h of bedtime ≥3 times/week: 1 yes, 2 no",
     "就寝前2時間以内の夕食", "binary", True, ("diet",), (1, 2)),
    ("q_snacks", "Q16 snacks / sugary drinks: 1 daily, 2 sometimes, 3 hardly ever",
     "間食・甘い飲み物", "ordinal", True, ("diet",), (1, 2, 3)),
    ("q_skip_breakfast", "Q17 skips breakfast ≥3 times/week: 1 yes, 2 no", "朝食の欠食",
     "binary", True, ("diet",), (1, 2)),
    ("q_alcohol_freq", "Q18 drinking frequency: 1 daily … 6 <1 day/month, 7 quit, 8 never",
     "飲酒頻度", "ordinal", True, ("alcohol_reduction",), (1, 2, 3, 4, 5, 6, 7, 8)),
    ("q_alcohol_amount", "Q19 amount per drinking day: 1 <1 合 … 5 ≥5 合 (1 合 = 180 mL sake)",
     "飲酒量(1日あたり)", "ordinal", True, ("alcohol_reduction",), (1, 2, 3, 4, 5)),
    ("q_sleep", "Q20 rested by sleep: 1 yes, 2 no", "睡眠で休養が十分とれている", "binary", True,
     ("sleep",), (1, 2)),
    ("q_intention", "Q21 intention to improve lifestyle: 1 none … 5 improving ≥6 months",
     "生活習慣改善の意思", "ordinal", False, (), (1, 2, 3, 4, 5)),
    ("q_guidance_received", "Q22 has received 特定保健指導 before: 1 yes, 2 no",
     "特定保健指導の受診歴", "binary", False, (), (1, 2)),
]
# fmt: on

#: Declared direction of the coded answers, in their code order (module docstring): −1 where a
#: higher code is the healthier answer, +1 where it is the less healthy one.
_CODED_MONOTONE: dict[str, int] = {
    "q_smoking": -1,  # 1 smokes > 2 quit > 3 never
    "q_exercise": 1,  # 1 yes < 2 no
    "q_walking": 1,
    "q_walk_fast": 1,
    "q_eating_speed": -1,  # 1 fast > 2 normal > 3 slow
    "q_late_dinner": -1,  # 1 yes > 2 no
    "q_snacks": -1,  # 1 daily > 2 sometimes > 3 hardly ever
    "q_skip_breakfast": -1,  # 1 yes > 2 no
    "q_alcohol_freq": -1,  # 1 daily > … > 6 <1 day/month > 7 quit > 8 never
    "q_alcohol_amount": 1,  # 1 <1 合 < … < 5 ≥5 合
    "q_sleep": 1,  # 1 rested < 2 not rested
}

#: Items whose change and slope carry the item's own direction (a scenario moves them).
_CHANGE_MONOTONE: dict[str, int] = {"weight_kg": 1, "bmi": 1, "waist_cm": 1}

#: Judgement flags whose item a scenario moves (weight loss, and the laboratory items that
#: follow a lever, models.lab_response): severity level 0 < 1 < 2, more abnormal never safer.
_FLAG_MONOTONE: dict[str, int] = {
    item: 1
    for item in ("waist_cm", "bmi", "sbp", "dbp", "tg", "hdl", "ldl", "non_hdl", "glucose",
                 "hba1c", "ast", "alt", "ggt")
}  # fmt: skip

#: Items with history features (前回からの変化, 年間変化率).
CHANGE_ITEMS = (
    "hba1c", "fpg", "sbp", "dbp", "weight_kg", "bmi", "waist_cm",
    "tg", "hdl", "ldl", "alt", "ggt", "egfr",
)  # fmt: skip

#: History levels (直近の経過) of items whose one reading is noisy: a dipstick's persistence
#: (前回の尿蛋白, 直近3回の最大), eGFR and the lipids smoothed over the last ≤3 checkups
#: (直近3回の平均; docs/models.md §The lipids' mean of three).
#: (feature, item, how): "previous" the value at the previous checkup, "max" / "mean" over the
#: index checkup and the two before it (measured values only). Missing when the item was not
#: measured at the index checkup, like ``<item>_change``. A mean is monotone like its item, and
#: a what-if that moves the item moves its mean by as much (scoring.score).
HISTORY_LEVELS: tuple[tuple[str, str, str], ...] = (
    ("urine_protein_prev", "urine_protein", "previous"),
    ("urine_protein_max3", "urine_protein", "max"),
    ("egfr_mean3", "egfr", "mean"),
    ("tg_mean3", "tg", "mean"),
    ("hdl_mean3", "hdl", "mean"),
    ("ldl_mean3", "ldl", "mean"),
)
#: Items whose latest measured value stands in when the index checkup did not measure them
#: (直近の測定値): ``<item>_recent``. A facility or a year without HbA1c (or fasting glucose,
#: or creatinine) then still shows the resident's last reading, as a nurse would look it up;
#: for eGFR, which a quarter of checkups lack, it lifts CKD most
#: (docs/models.md §The latest eGFR).
RECENT_ITEMS: tuple[str, ...] = ("hba1c", "fpg", "egfr")
_HISTORY_TEXT = {
    "previous": ("{desc} at the previous checkup", "前回の{ja}"),
    "max": ("{desc}: highest of the last ≤3 checkups", "{ja}(直近3回の最大)"),
    "mean": ("{desc}: mean of the last ≤3 checkups", "{ja}(直近3回の平均)"),
}

#: 判定値 flags of data.judgements.threshold_flags: (item, 日本語, sources).
_FLAGS: list[tuple[str, str, tuple[str, ...]]] = [
    ("sbp", "収縮期血圧", ("sbp",)),
    ("dbp", "拡張期血圧", ("dbp",)),
    ("tg", "中性脂肪", ("tg", "blood_draw_timing")),
    ("hdl", "HDLコレステロール", ("hdl",)),
    ("ldl", "LDLコレステロール", ("ldl",)),
    ("non_hdl", "Non-HDLコレステロール", ("non_hdl",)),
    ("glucose", "血糖", ("fpg", "random_glucose")),
    ("hba1c", "HbA1c", ("hba1c",)),
    ("ast", "AST(GOT)", ("ast",)),
    ("alt", "ALT(GPT)", ("alt",)),
    ("ggt", "γ-GT", ("ggt",)),
    ("egfr", "eGFR", ("egfr",)),
    ("hemoglobin", "血色素量", ("hemoglobin", "sex")),
    ("waist_cm", "腹囲", ("waist_cm", "sex")),
    ("bmi", "BMI", ("bmi",)),
    ("urine_protein", "尿蛋白", ("urine_protein",)),
]


def _build() -> tuple[FeatureDecl, ...]:
    out: list[FeatureDecl] = [
        FeatureDecl("age", "Age at fiscal-year end (31 March)", "年齢(年度末)", "years",
                    "numeric", False, ("age",), group="person", dtype="Int16"),
        FeatureDecl("sex", "Sex: 1 male, 2 female", "性別", "code", "binary", False, ("sex",),
                    group="person", allowed=(1, 2)),
        FeatureDecl("n_prior_checkups", "Number of earlier checkups in the store",
                    "過去の健診受診回数", "count", "numeric", False, ("exam_date",),
                    group="history", dtype="Int16"),
        FeatureDecl("years_since_previous", "Years since the previous checkup (NaN if none)",
                    "前回健診からの年数", "years", "numeric", False, ("exam_date",),
                    group="history"),
    ]  # fmt: skip
    by_item = {m[0]: m for m in _MEASUREMENTS}
    for name, desc, ja, unit, modifiable, mono, tags in _MEASUREMENTS:
        out.append(
            FeatureDecl(
                name, f"{desc}, latest (at the index checkup)", ja, unit, "numeric",
                modifiable, (name,), monotone=mono, scenario_tags=tags,
            )
        )  # fmt: skip
    for name, desc, ja, kind, modifiable, tags, allowed in _CODED:
        out.append(
            FeatureDecl(
                name, f"{desc}, latest", ja, "code", kind, modifiable, (name,),
                monotone=_CODED_MONOTONE.get(name, 0), scenario_tags=tags, allowed=allowed,
            )
        )  # fmt: skip
    for item in CHANGE_ITEMS:
        _, desc, ja, unit, _, _, tags = by_item[item]
        out.append(
            FeatureDecl(
                f"{item}_change", f"{desc}: latest minus previous checkup", f"{ja}の前回からの変化",
                unit, "numeric", False, (item, "exam_date"), monotone=_CHANGE_MONOTONE.get(item, 0),
                scenario_tags=tags, group="change",
            )
        )  # fmt: skip
        out.append(
            FeatureDecl(
                f"{item}_slope",
                f"{desc}: least-squares slope per year over the last ≤3 checkups",
                f"{ja}の年間変化(直近3回)", f"{unit}/year", "numeric", False, (item, "exam_date"),
                monotone=_CHANGE_MONOTONE.get(item, 0), scenario_tags=tags, group="slope",
            )
        )  # fmt: skip
    built = {d.name: d for d in out}
    for item in RECENT_ITEMS:
        source = built[item]
        out.append(
            FeatureDecl(
                f"{item}_recent", f"{source.description.split(',')[0]}: at the index checkup, "
                "else the latest measured before it", f"{source.ja}(今回、未測定なら直近の測定値)",
                source.unit, "numeric", False, (item, "exam_date"), monotone=source.monotone,
                scenario_tags=source.scenario_tags, group="history",
            )
        )  # fmt: skip
    for name, item, how in HISTORY_LEVELS:
        source = built[item]
        desc, ja = _HISTORY_TEXT[how]
        out.append(
            FeatureDecl(
                name, desc.format(desc=source.description.split(":")[0].split(",")[0]),
                ja.format(ja=source.ja), source.unit, source.kind, False, (item, "exam_date"),
                monotone=source.monotone if how == "mean" else 0, allowed=source.allowed,
                group="history",
            )
        )  # fmt: skip
    out += [
        FeatureDecl("mets_level", "Metabolic syndrome judgement (9N501) as a level: 0 非該当, "
                    "1 予備群, 2 基準該当; missing when 判定不能 (9N501 code 4)",
                    "メタボリックシンドローム判定", "level", "ordinal", False,
                    ("waist_cm", "sbp", "dbp", "tg", "hdl", "fpg", "hba1c", "q_med_bp",
                     "q_med_glucose", "q_med_lipid"), monotone=1,
                    scenario_tags=("weight_loss",), group="judgement", allowed=(0, 1, 2)),
        FeatureDecl("guidance_intensity", "特定保健指導 stratification as a level: 0 information "
                    "(情報提供), 1 motivational (動機付け支援), 2 active (積極的支援); missing when "
                    "excluded (on medication: see q_med_*) or undeterminable",
                    "保健指導レベル(階層化)", "level", "ordinal", False,
                    ("waist_cm", "bmi", "sbp", "dbp", "tg", "hdl", "fpg", "hba1c", "q_smoking",
                     "q_med_bp", "q_med_glucose", "q_med_lipid", "age"), monotone=1,
                    scenario_tags=("weight_loss", "quit_smoking"), group="judgement",
                    allowed=(0, 1, 2)),
    ]  # fmt: skip
    for item, ja, sources in _FLAGS:
        tags = ("weight_loss",) if item in ("waist_cm", "bmi") else ()
        out.append(
            FeatureDecl(
                f"flag_{item}", f"{item} vs judgement values: 0 normal, 1 ≥ guidance (保健指導判定値), "
                "2 ≥ referral (受診勧奨判定値)", f"{ja}の判定", "level", "ordinal", False, sources,
                monotone=_FLAG_MONOTONE.get(item, 0), scenario_tags=tags, group="judgement",
                allowed=(0, 1, 2),
            )
        )  # fmt: skip
    out += [
        FeatureDecl("alcohol_g_per_day", "Estimated pure alcohol per day (Q18 frequency midpoint "
                    "× Q19 amount midpoint × 20 g per 合 / 7); 0 for quit / never",
                    "純アルコール摂取量(1日平均)", "g/day", "numeric", True,
                    ("q_alcohol_freq", "q_alcohol_amount"), monotone=1,
                    scenario_tags=("alcohol_reduction",), group="derived"),
        FeatureDecl("risky_drinking", "Alcohol ≥40 g/day (men) or ≥20 g/day (women), Health "
                    "Japan 21: 1 yes, 0 no", "生活習慣病のリスクを高める飲酒", "flag", "binary",
                    True, ("q_alcohol_freq", "q_alcohol_amount", "sex"), monotone=1,
                    scenario_tags=("alcohol_reduction",), group="derived", allowed=(0, 1)),
        FeatureDecl("current_smoker", "Smokes now (Q8 = 1): 1 yes, 0 no", "現在の喫煙", "flag",
                    "binary", True, ("q_smoking",), monotone=1, scenario_tags=("quit_smoking",),
                    group="derived", allowed=(0, 1)),
    ]  # fmt: skip
    names = [d.name for d in out]
    if len(set(names)) != len(names):  # pragma: no cover - a declaration bug
        raise RuntimeError("duplicate feature names in declarations")
    return tuple(out)


#: All feature declarations, in output column order.
DECLARATIONS: tuple[FeatureDecl, ...] = _build()
_BY_NAME = {d.name: d for d in DECLARATIONS}


def feature_names() -> list[str]:
    """Declared feature names, in the column order of :func:`features.build.build_features`."""
    return [d.name for d in DECLARATIONS]


def get(name: str) -> FeatureDecl:
    """Declaration of one feature (KeyError names the unknown feature)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; see features.declarations") from None


def monotone_constraints(names: list[str] | None = None) -> list[int]:
    """LightGBM ``monotone_constraints`` for ``names`` (default: all features, in order)."""
    return [get(n).monotone for n in (names or feature_names())]


def categorical_features() -> list[str]:
    """Features whose integer codes are nominal (candidates for LightGBM categorical_feature)."""
    return [d.name for d in DECLARATIONS if d.kind == "categorical"]


def modifiable_features() -> list[str]:
    """Features the resident can change directly (levers for letters and what-if)."""
    return [d.name for d in DECLARATIONS if d.modifiable]


def declarations_frame() -> pd.DataFrame:
    """The declarations as a DataFrame (one row per feature) for logging and reports."""
    rows = []
    for d in DECLARATIONS:
        r = asdict(d)
        r["sources"] = ";".join(d.sources)
        r["scenario_tags"] = ";".join(d.scenario_tags)
        r["allowed"] = None if d.allowed is None else ";".join(map(str, d.allowed))
        rows.append(r)
    return pd.DataFrame(rows)


def _version() -> str:
    payload = json.dumps([asdict(d) for d in DECLARATIONS], ensure_ascii=False, sort_keys=True)
    return "fs-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


#: Stable identifier of the feature set: changes whenever any declaration changes.
FEATURE_SET_VERSION: str = _version()


# --------------------------------------------------------------------------------------------
# Clinical items (説明の項目): how explanations are grouped
# --------------------------------------------------------------------------------------------
#
# A nurse reads "HbA1c 6.3, +0.2 since the last checkup" as one thing, not as four features
# (latest, change, slope, 判定). Every feature belongs to exactly one item; an item's
# contribution is the exact sum of its features' contributions (log-odds), so the items of a
# resident plus the bias add up to the model's raw score. Decisions:
#
# * a measured item owns its latest value, its change, its yearly slope and its 判定値 flag;
# * adiposity is one item (体重・BMI・腹囲 and their changes and flags): one latent, one lever
#   (weight loss moves all of them), and the synthetic generator names it ``weight_kg``;
# * blood pressure is one item (収縮期/拡張期, read together as "142/88");
# * LDL and Non-HDL cholesterol are one item (Non-HDL replaces LDL when TG is high or the draw
#   is not fasting, MHLW 令和6年度版); fasting and random glucose are one item (血糖), and so
#   are creatinine and eGFR (腎機能);
# * smoking (Q8 and "smokes now") and drinking (Q18, Q19, g/day, risky drinking) are one item
#   each; every other questionnaire answer is its own item, as are age, sex, height, the
#   checkup history, the メタボ判定 and the 保健指導 level.
#
# The grouping is presentation, not model input: it is not part of FEATURE_SET_VERSION.


@dataclass(frozen=True, slots=True)
class ClinicalItem:
    """One line of an explanation: a clinical item and the features summed into it.

    ``members``: feature names or canonical checkup columns that belong to it explicitly;
    ``<member>_change``, ``<member>_slope`` and ``flag_<member>`` follow their member.
    ``show``: features whose latest values the explanation prints (first = main value),
    ``joint``: printed as one reading ("142/88 mmHg") rather than each with its label;
    ``change``: the feature whose change since the previous checkup is printed.
    """

    key: str
    en: str
    ja: str
    members: tuple[str, ...]
    show: tuple[str, ...] = ()
    change: str | None = None
    joint: bool = False


def _q(name: str, en: str) -> ClinicalItem:
    """A questionnaire answer as an item of its own (label from its declaration)."""
    return ClinicalItem(name, en, _BY_NAME[name].ja, (name,), show=(name,))


# fmt: off
ITEMS: tuple[ClinicalItem, ...] = (
    ClinicalItem("age", "Age", "年齢", ("age",), show=("age",)),
    ClinicalItem("sex", "Sex", "性別", ("sex",), show=("sex",)),
    ClinicalItem("history", "Checkup history", "健診の受診歴",
                 ("n_prior_checkups", "years_since_previous"), show=("n_prior_checkups",)),
    ClinicalItem("hba1c", "HbA1c", "HbA1c", ("hba1c", "hba1c_recent"), show=("hba1c",),
                 change="hba1c_change"),
    ClinicalItem("glucose", "Blood glucose", "血糖",
                 ("fpg", "random_glucose", "flag_glucose", "fpg_recent"),
                 show=("fpg", "random_glucose"), change="fpg_change"),
    ClinicalItem("blood_pressure", "Blood pressure", "血圧", ("sbp", "dbp"),
                 show=("sbp", "dbp"), change="sbp_change", joint=True),
    ClinicalItem("adiposity", "Weight, BMI, waist", "体重・BMI・腹囲",
                 ("weight_kg", "bmi", "waist_cm"), show=("bmi", "waist_cm"),
                 change="weight_kg_change"),
    ClinicalItem("tg", "Triglycerides", "中性脂肪", ("tg", "tg_mean3"), show=("tg",),
                 change="tg_change"),
    ClinicalItem("hdl", "HDL cholesterol", "HDLコレステロール", ("hdl", "hdl_mean3"), show=("hdl",),
                 change="hdl_change"),
    ClinicalItem("ldl", "LDL / non-HDL cholesterol", "LDL・Non-HDLコレステロール",
                 ("ldl", "non_hdl", "ldl_mean3"), show=("ldl", "non_hdl"), change="ldl_change"),
    ClinicalItem("ast", "AST", "AST(GOT)", ("ast",), show=("ast",)),
    ClinicalItem("alt", "ALT", "ALT(GPT)", ("alt",), show=("alt",), change="alt_change"),
    ClinicalItem("ggt", "gamma-GT", "γ-GT", ("ggt",), show=("ggt",), change="ggt_change"),
    ClinicalItem("kidney", "Kidney function (eGFR)", "腎機能(eGFR)",
                 ("egfr", "creatinine", "egfr_mean3", "egfr_recent"), show=("egfr",),
                 change="egfr_change"),
    ClinicalItem("urine_protein", "Urine protein", "尿蛋白",
                 ("urine_protein", "urine_protein_prev", "urine_protein_max3"),
                 show=("urine_protein",)),
    ClinicalItem("urine_glucose", "Urine glucose", "尿糖", ("urine_glucose",),
                 show=("urine_glucose",)),
    ClinicalItem("uric_acid", "Uric acid", "血清尿酸", ("uric_acid",), show=("uric_acid",)),
    ClinicalItem("hemoglobin", "Haemoglobin", "血色素量", ("hemoglobin",), show=("hemoglobin",)),
    ClinicalItem("height", "Height", "身長", ("height_cm",), show=("height_cm",)),
    ClinicalItem("blood_draw_timing", "Blood draw timing", "採血時間(食後)",
                 ("blood_draw_timing",), show=("blood_draw_timing",)),
    ClinicalItem("mets_level", "Metabolic syndrome judgement", "メタボ判定", ("mets_level",),
                 show=("mets_level",)),
    ClinicalItem("guidance_intensity", "Health guidance level", "保健指導レベル",
                 ("guidance_intensity",), show=("guidance_intensity",)),
    ClinicalItem("smoking", "Smoking", "喫煙", ("q_smoking", "current_smoker"),
                 show=("q_smoking",)),
    ClinicalItem("alcohol", "Drinking", "飲酒",
                 ("q_alcohol_freq", "q_alcohol_amount", "alcohol_g_per_day", "risky_drinking"),
                 show=("alcohol_g_per_day",)),
    _q("q_med_bp", "Blood-pressure medication"),
    _q("q_med_glucose", "Glucose-lowering medication"),
    _q("q_med_lipid", "Lipid-lowering medication"),
    _q("q_hist_stroke", "History of stroke"),
    _q("q_hist_heart", "History of heart disease"),
    _q("q_hist_kidney", "History of kidney disease"),
    _q("q_anemia", "Told anaemic"),
    _q("q_weight_gain", "Gained 10 kg since age 20"),
    _q("q_exercise", "Exercise habit"),
    _q("q_walking", "Walking 1 h a day"),
    _q("q_walk_fast", "Walks fast"),
    _q("q_chewing", "Chewing"),
    _q("q_eating_speed", "Eating speed"),
    _q("q_late_dinner", "Late dinner"),
    _q("q_snacks", "Snacks, sugary drinks"),
    _q("q_skip_breakfast", "Skips breakfast"),
    _q("q_sleep", "Rested by sleep"),
    _q("q_intention", "Intention to improve"),
    _q("q_guidance_received", "Had health guidance"),
)

#: Short Japanese answers of coded features: the explanation's value text and the staff
#: report's questionnaire answers (scoring.report).
_YES_NO = {1: "はい", 2: "いいえ"}
CODE_JA: dict[str, dict[int, str]] = {
    "sex": {1: "男性", 2: "女性"},
    "q_smoking": {1: "吸う", 2: "やめた", 3: "吸わない"},
    "q_chewing": {1: "何でも", 2: "かみにくい", 3: "ほとんどかめない"},
    "q_eating_speed": {1: "速い", 2: "ふつう", 3: "遅い"},
    "q_snacks": {1: "毎日", 2: "時々", 3: "ほとんどない"},
    "q_alcohol_freq": {1: "毎日", 2: "週5〜6日", 3: "週3〜4日", 4: "週1〜2日", 5: "月1〜3日",
                       6: "月1日未満", 7: "やめた", 8: "飲まない(飲めない)"},
    "q_alcohol_amount": {1: "1合未満", 2: "1〜2合", 3: "2〜3合", 4: "3〜5合", 5: "5合以上"},
    "q_intention": {1: "改善するつもりはない", 2: "6か月以内に", 3: "近いうちに",
                    4: "取り組み中(6か月未満)", 5: "取り組み中(6か月以上)"},
    "blood_draw_timing": {2: "空腹時", 3: "食後3.5-10時間", 4: "食後3.5時間未満"},
    "urine_protein": {1: "−", 2: "±", 3: "+", 4: "2+", 5: "3+"},
    "urine_glucose": {1: "−", 2: "±", 3: "+", 4: "2+", 5: "3+"},
    "mets_level": {0: "非該当", 1: "予備群", 2: "基準該当"},
    "guidance_intensity": {0: "情報提供", 1: "動機付け支援", 2: "積極的支援"},
    **{d.name: _YES_NO for d in DECLARATIONS
       if d.name.startswith("q_") and d.kind == "binary"},
}
# fmt: on
ITEM_KEYS: tuple[str, ...] = tuple(i.key for i in ITEMS)
_ITEM_BY_KEY = {i.key: i for i in ITEMS}
_ITEM_OF_MEMBER = {m: i.key for i in ITEMS for m in i.members}


def item_of(name: str) -> str:
    """The clinical item (:data:`ITEMS` key) of a feature or canonical checkup column.

    ``hba1c``, ``hba1c_change``, ``hba1c_slope`` and ``flag_hba1c`` → ``hba1c``; ``weight_kg``,
    ``bmi_slope``, ``flag_waist_cm`` → ``adiposity``; ``alcohol_g_per_day`` → ``alcohol``.
    KeyError for a name that belongs to no item.
    """
    if name in _ITEM_OF_MEMBER:
        return _ITEM_OF_MEMBER[name]
    base = name.removeprefix("flag_").removesuffix("_change").removesuffix("_slope")
    if base != name and base in _ITEM_OF_MEMBER:
        return _ITEM_OF_MEMBER[base]
    raise KeyError(f"{name!r} belongs to no clinical item; see features.declarations.ITEMS")


def item(key: str) -> ClinicalItem:
    """One clinical item by key (KeyError names the unknown key)."""
    try:
        return _ITEM_BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown clinical item {key!r}; see features.declarations.ITEMS") from None


def item_matrix(names: list[str] | tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(F × G 0/1 matrix, item keys): feature ``names`` → the items they belong to.

    Items in :data:`ITEMS` order, only those with a feature in ``names``. ``contributions @ M``
    sums each resident's feature contributions per item exactly (one matrix product).
    """
    return _item_matrix(tuple(names))


@cache
def _item_matrix(names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    of = [item_of(n) for n in names]
    keys = tuple(k for k in ITEM_KEYS if k in set(of))
    col = {k: j for j, k in enumerate(keys)}
    M = np.zeros((len(names), len(keys)))
    M[np.arange(len(names)), [col[k] for k in of]] = 1.0
    M.setflags(write=False)
    return M, keys
