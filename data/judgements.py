"""MHLW judgements on 特定健診 checkups: 判定値, メタボリックシンドローム判定, 階層化, outcomes, eGFR.

Pure, vectorised functions over a DataFrame whose columns are the canonical checkup columns
(:mod:`data.columns`) plus the derived ``age`` (年度末年齢, age at fiscal-year end).

Conventions shared by every function here:

* Codes follow the XML code lists: ``sex`` 1 male / 2 female; ``blood_draw_timing`` (採血時間)
  2 fasting ≥10 h, 3 3.5-10 h, 4 <3.5 h; ``urine_protein`` 1 −, 2 ±, 3 +, 4 ++, 5 +++;
  ``q_med_*`` 1 yes / 2 no; ``q_smoking`` 1 smokes.
* Missing values (NaN, ``pd.NA``) never meet a criterion, and a column absent from the frame is
  treated as entirely missing. Nullable (``Int64``/``Float64``) and plain ``float64`` input give
  the same answers.
* The waist cut-off is sex-specific (85 cm men / 90 cm women). When ``sex`` is missing a waist
  is still judged if the answer is the same for both sexes (<85 or ≥90); a waist in [85, 90)
  with unknown sex is treated as not judgeable (like a missing waist).
* Thresholds are the 令和6年度版 保健指導判定値 / 受診勧奨判定値 (docs/domain.md §Judgement values) and live in
  :data:`MHLW_R6`; the 2005 メタボリックシンドローム criteria live in :data:`METS_2005`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from data.columns import OUTCOMES
from data.outcomes import OUTCOME_DECLARATIONS, Criterion

__all__ = [
    "ELDERLY_AGE",
    "FACILITY_JUDGEMENTS",
    "GUIDANCE_CODES",
    "GUIDANCE_LEVELS",
    "MHLW_R6",
    "METS_2005",
    "METS_CODES",
    "OUTCOMES",
    "OUTCOME_INPUTS",
    "OUTCOME_MEDICATION",
    "REFERRAL_ITEMS",
    "URGENT_BP",
    "GlucoseRule",
    "GuidanceLevel",
    "JudgementValue",
    "JudgementValues",
    "MetSCriteria",
    "egfr_jsn",
    "facility_agreement",
    "guidance_code",
    "metabolic_syndrome",
    "criterion_cut",
    "item_judgement",
    "outcome_evaluable",
    "outcomes_met",
    "referral_values",
    "stratify",
    "threshold_flags",
]

# --------------------------------------------------------------------------------------------
# Threshold constants (判定値)
# --------------------------------------------------------------------------------------------

Op = Literal[">=", "<", "<="]


@dataclass(frozen=True, slots=True)
class JudgementValue:
    """One item's 保健指導判定値 (``guidance``) and 受診勧奨判定値 (``referral``).

    ``op`` is the direction: ``">="`` for "high is bad" items, ``"<"`` / ``"<="`` for items
    where low is bad (HDL <40, eGFR <60, Hb ≤13.0). ``referral=None`` means no referral level.
    """

    guidance: float
    referral: float | None
    op: Op = ">="

    def meets(self, x: np.ndarray, cut: float | np.ndarray) -> np.ndarray:
        """Boolean array: ``x`` is at/beyond ``cut`` in this item's direction (NaN → False)."""
        with np.errstate(invalid="ignore"):
            if self.op == ">=":
                return x >= cut
            if self.op == "<":
                return x < cut
            return x <= cut

    def level(self, x: np.ndarray) -> np.ndarray:
        """Float array 0 normal / 1 ≥ 保健指導判定値 / 2 ≥ 受診勧奨判定値; NaN where ``x`` is NaN."""
        lvl = self.meets(x, self.guidance).astype("float64")
        if self.referral is not None:
            lvl[self.meets(x, self.referral)] = 2.0
        lvl[np.isnan(x)] = np.nan
        return lvl


@dataclass(frozen=True, slots=True)
class JudgementValues:
    """保健指導判定値 / 受診勧奨判定値 per item, 令和6年度版 (docs/domain.md §Judgement values).

    Waist and BMI have only the 階層化 cut (stored as ``guidance``). Urine protein (± guidance,
    + referral) is from a secondary source and UNVERIFIED against the MHLW table.
    """

    sbp: JudgementValue = JudgementValue(130, 140)
    dbp: JudgementValue = JudgementValue(85, 90)
    tg_fasting: JudgementValue = JudgementValue(150, 300)
    tg_nonfasting: JudgementValue = JudgementValue(175, 300)  # 随時中性脂肪, new in 2024
    hdl: JudgementValue = JudgementValue(40, None, "<")  # ≤39; referral removed in 2024
    ldl: JudgementValue = JudgementValue(120, 140)
    non_hdl: JudgementValue = JudgementValue(150, 170)
    fpg: JudgementValue = JudgementValue(100, 126)
    random_glucose: JudgementValue = JudgementValue(100, 126)
    hba1c: JudgementValue = JudgementValue(5.6, 6.5)
    ast: JudgementValue = JudgementValue(31, 51)
    alt: JudgementValue = JudgementValue(31, 51)
    ggt: JudgementValue = JudgementValue(51, 101)
    egfr: JudgementValue = JudgementValue(60, 45, "<")
    hemoglobin_male: JudgementValue = JudgementValue(13.0, 12.0, "<=")
    hemoglobin_female: JudgementValue = JudgementValue(12.0, 11.0, "<=")
    waist_male: JudgementValue = JudgementValue(85, None)
    waist_female: JudgementValue = JudgementValue(90, None)
    bmi: JudgementValue = JudgementValue(25, None)
    urine_protein: JudgementValue = JudgementValue(2, 3)  # ± / + (UNVERIFIED)


#: 令和6年度版 judgement values.
MHLW_R6 = JudgementValues()


@dataclass(frozen=True, slots=True)
class MetSCriteria:
    """メタボリックシンドローム判定 component cut-offs (2005 eight-society criteria, docs/domain.md §MetS).

    The waist cut is taken from :class:`JudgementValues` (85 cm men / 90 cm women).
    """

    fpg: float = 110.0  # 空腹時血糖 ≥110
    hba1c: float = 6.0  # only when no fasting glucose was measured
    tg: float = 150.0  # 中性脂肪 ≥150 (fasting)
    hdl: float = 40.0  # HDL <40
    sbp: float = 130.0
    dbp: float = 85.0


#: 2005 Japanese MetS criteria as used in 特定健診.
METS_2005 = MetSCriteria()

#: 65-74 歳 (年度末年齢): 積極的支援 is delivered as 動機付け支援.
ELDERLY_AGE = 65

#: XML 9N501 メタボリックシンドローム判定 codes.
METS_CODES = {1: "基準該当", 2: "予備群該当", 3: "非該当", 4: "判定不能"}


GlucoseRule = Literal["precedence", "literal_or"]
GuidanceLevel = Literal[
    "active", "motivational", "information", "excluded_medication", "undeterminable"
]
#: Categories of :func:`stratify`'s result, in this order.
GUIDANCE_LEVELS: tuple[str, ...] = get_args(GuidanceLevel)
#: :func:`stratify` level → XML 9N506 保健指導レベル code (服薬中 → 3 なし).
GUIDANCE_CODES: dict[str, int] = {
    "active": 1,  # 積極的支援
    "motivational": 2,  # 動機付け支援
    "information": 3,  # なし (情報提供)
    "excluded_medication": 3,  # 服薬中のため対象外 → なし
    "undeterminable": 4,  # 判定不能
}

# --------------------------------------------------------------------------------------------
# Column access helpers
# --------------------------------------------------------------------------------------------


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    """Column as a float64 array with NaN for missing; all-NaN if the column is absent."""
    if col not in df.columns:
        return np.full(len(df), np.nan)
    s = df[col]
    if not pd.api.types.is_numeric_dtype(s.dtype):
        s = pd.to_numeric(s.astype("object"), errors="coerce")
    return s.to_numpy(dtype="float64", na_value=np.nan)


def _as_float(x: object) -> np.ndarray:
    """Scalar / array-like / Series as a float64 ndarray (same shape), NaN for missing."""
    if isinstance(x, pd.Series | pd.Index):
        return pd.to_numeric(pd.Series(x), errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
    arr = np.asarray(x, dtype=object)
    flat = pd.to_numeric(pd.Series(arr.ravel()), errors="coerce")
    return flat.to_numpy(dtype="float64", na_value=np.nan).reshape(arr.shape)


def _nonfasting(df: pd.DataFrame) -> np.ndarray:
    """採血時間 3 (3.5-10 h) or 4 (<3.5 h); missing timing counts as fasting."""
    return np.isin(_num(df, "blood_draw_timing"), (3.0, 4.0))


def _tg_cut(df: pd.DataFrame, fasting: float, nonfasting: float) -> np.ndarray:
    return np.where(_nonfasting(df), nonfasting, fasting)


def _by_sex(sex: np.ndarray, male: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Pick the male/female answer by sex; if sex is unknown keep it only when both agree."""
    agree = np.where(male == female, male, np.nan)
    return np.where(sex == 1, male, np.where(sex == 2, female, agree))


def _waist_status(df: pd.DataFrame, values: JudgementValues) -> tuple[np.ndarray, np.ndarray]:
    """(over the sex-specific waist cut, waist judgeable) as two bool arrays."""
    waist = _num(df, "waist_cm")
    lvl = _by_sex(_num(df, "sex"), values.waist_male.level(waist), values.waist_female.level(waist))
    known = ~np.isnan(lvl)
    return known & (lvl >= 1), known


def _is_yes(df: pd.DataFrame, col: str) -> np.ndarray:
    """Questionnaire answer 1 (はい): on medication, or smokes."""
    return _num(df, col) == 1


def _any_present(df: pd.DataFrame, *cols: str) -> np.ndarray:
    out = np.zeros(len(df), dtype=bool)
    for c in cols:
        out |= ~np.isnan(_num(df, c))
    return out


# --------------------------------------------------------------------------------------------
# メタボリックシンドローム判定
# --------------------------------------------------------------------------------------------


def metabolic_syndrome(
    df: pd.DataFrame,
    *,
    nonfasting_tg_cut: float = 175.0,
    criteria: MetSCriteria = METS_2005,
    values: JudgementValues = MHLW_R6,
) -> pd.Series:
    """メタボリックシンドローム判定 as XML 9N501 codes (``Int64``).

    1 基準該当 (waist over cut + ≥2 components), 2 予備群該当 (waist + exactly 1),
    3 非該当, 4 判定不能 (waist missing, or in [85, 90) with unknown sex).

    Components (medication for the condition counts as meeting it):

    * glucose: 空腹時血糖 ≥110; HbA1c ≥6.0 only when no fasting glucose was measured
      (random glucose is not used); or ``q_med_glucose == 1``;
    * lipids: TG ≥150 (fasting) / ≥``nonfasting_tg_cut`` (採血時間 3 or 4) or HDL <40, or
      ``q_med_lipid == 1``. Whether the 2024 non-fasting TG 175 applies to the MetS judgement
      (rather than only to 階層化) is UNVERIFIED; pass ``nonfasting_tg_cut=150`` to apply the
      fasting cut to every draw;
    * BP: SBP ≥130 or DBP ≥85, or ``q_med_bp == 1``.

    Missing component values count as not met, so waist over cut with no other data gives 3.
    """
    c = criteria
    fpg = _num(df, "fpg")
    with np.errstate(invalid="ignore"):
        glu = np.where(np.isnan(fpg), _num(df, "hba1c") >= c.hba1c, fpg >= c.fpg)
        glu |= _is_yes(df, "q_med_glucose")
        lip = _num(df, "tg") >= _tg_cut(df, c.tg, nonfasting_tg_cut)
        lip |= _num(df, "hdl") < c.hdl
        lip |= _is_yes(df, "q_med_lipid")
        bp = (_num(df, "sbp") >= c.sbp) | (_num(df, "dbp") >= c.dbp) | _is_yes(df, "q_med_bp")
    n = glu.astype(int) + lip + bp
    over, known = _waist_status(df, values)
    code = np.select([~known, ~over, n >= 2, n == 1], [4, 3, 1, 2], default=3)
    return pd.Series(code, index=df.index, dtype="Int64", name="metabolic_syndrome")


# --------------------------------------------------------------------------------------------
# 階層化 (特定保健指導 stratification)
# --------------------------------------------------------------------------------------------


def stratify(
    df: pd.DataFrame,
    glucose_rule: GlucoseRule = "precedence",
    *,
    values: JudgementValues = MHLW_R6,
) -> pd.Series:
    """特定保健指導の階層化 (令和6年度版, docs/domain.md §Stratification), vectorised.

    Returns a categorical Series with categories :data:`GUIDANCE_LEVELS`:
    ``"active"`` 積極的支援, ``"motivational"`` 動機付け支援, ``"information"`` 情報提供,
    ``"excluded_medication"`` (服薬中 — any of ``q_med_bp/glucose/lipid == 1``, checked first),
    ``"undeterminable"`` 判定不能 (not on medication and both waist and BMI missing).
    Map to XML 9N506 codes with :func:`guidance_code`.

    Step 1: waist over the sex cut → group (1); else BMI ≥25 → group (2); else information.
    Step 2 risks: ① SBP ≥130 or DBP ≥85; ② TG ≥150 (≥175 when 採血時間 is 3 or 4) or HDL <40;
    ③ glucose, by ``glucose_rule``:

    * ``"precedence"``: FPG ≥100 if FPG present, else HbA1c ≥5.6 if present, else random
      glucose ≥100;
    * ``"literal_or"``: (FPG if present else random glucose) ≥100, or HbA1c ≥5.6;

    ④ smoking (``q_smoking == 1``) counts only if ≥1 of ①-③.
    Step 3: group (1) ≥2 active, 1 motivational; group (2) ≥3 active, 1-2 motivational.
    Step 4: 年度末年齢 ``age`` ≥65 turns active into motivational (missing age: no cap).
    Missing risk values count as "no risk".
    """
    if glucose_rule not in get_args(GlucoseRule):
        raise ValueError(f"glucose_rule must be one of {get_args(GlucoseRule)}: {glucose_rule!r}")
    v = values
    on_med = _is_yes(df, "q_med_bp") | _is_yes(df, "q_med_glucose") | _is_yes(df, "q_med_lipid")

    over, waist_known = _waist_status(df, v)
    bmi = _num(df, "bmi")
    grp1 = over
    grp2 = ~grp1 & v.bmi.meets(bmi, v.bmi.guidance)
    undeterminable = ~waist_known & np.isnan(bmi)

    r_bp = v.sbp.meets(_num(df, "sbp"), v.sbp.guidance) | v.dbp.meets(
        _num(df, "dbp"), v.dbp.guidance
    )
    tg_cut = _tg_cut(df, v.tg_fasting.guidance, v.tg_nonfasting.guidance)
    r_lip = v.tg_fasting.meets(_num(df, "tg"), tg_cut) | v.hdl.meets(
        _num(df, "hdl"), v.hdl.guidance
    )
    fpg, hba1c, rpg = _num(df, "fpg"), _num(df, "hba1c"), _num(df, "random_glucose")
    fpg_hit = v.fpg.meets(fpg, v.fpg.guidance)
    rpg_hit = v.random_glucose.meets(rpg, v.random_glucose.guidance)
    a1c_hit = v.hba1c.meets(hba1c, v.hba1c.guidance)
    has_fpg = ~np.isnan(fpg)
    if glucose_rule == "precedence":
        r_glu = np.where(has_fpg, fpg_hit, np.where(~np.isnan(hba1c), a1c_hit, rpg_hit))
    else:
        r_glu = np.where(has_fpg, fpg_hit, rpg_hit) | a1c_hit

    n = r_bp.astype(int) + r_lip + r_glu
    n += (n >= 1) & _is_yes(df, "q_smoking")

    active = (grp1 & (n >= 2)) | (grp2 & (n >= 3))
    motivational = (grp1 & (n == 1)) | (grp2 & (n >= 1) & (n <= 2))
    with np.errstate(invalid="ignore"):
        capped = active & (_num(df, "age") >= ELDERLY_AGE)
    active &= ~capped
    motivational |= capped

    level = np.select(
        [on_med, undeterminable, active, motivational],
        ["excluded_medication", "undeterminable", "active", "motivational"],
        default="information",
    )
    return pd.Series(
        pd.Categorical(level, categories=GUIDANCE_LEVELS), index=df.index, name="guidance_level"
    )


def guidance_code(levels: pd.Series) -> pd.Series:
    """Map :func:`stratify` levels to XML 9N506 保健指導レベル codes (``Int64``).

    1 積極的支援, 2 動機付け支援, 3 なし(情報提供) — also for ``excluded_medication`` —, 4 判定不能.
    """
    codes = levels.astype("object").map(GUIDANCE_CODES)
    return codes.astype("Int64").rename("guidance_code")


#: kenshin's judgement → the column holding the facility's own code for it (9N501, 9N506).
FACILITY_JUDGEMENTS = {
    "metabolic_syndrome": "facility_mets",
    "guidance_level": "facility_guidance_level",
}


def facility_agreement(checkups: pd.DataFrame) -> dict:
    """How the facility's own judgements (健診機関の判定) compare with kenshin's.

    9N501 メタボリックシンドローム判定 (``facility_mets``) against :func:`metabolic_syndrome`,
    9N506 保健指導レベル (``facility_guidance_level``) against :func:`guidance_code` of
    :func:`stratify`, on the rows where the facility gave a code. A disagreement is a finding
    for health staff (other criteria such as the non-fasting TG cut, items kenshin lacks, a
    slip at the facility), not an error. Per judgement: ``compared``, ``agree``, ``disagree``
    and ``pairs`` ([{facility, kenshin, rows}], every code pair seen, sorted).
    """
    ours = {"metabolic_syndrome": metabolic_syndrome, "guidance_level": _guidance_code_of}
    out = {}
    for name, col in FACILITY_JUDGEMENTS.items():
        facility = _num(checkups, col)
        has = ~np.isnan(facility)
        sub = checkups.loc[has]  # only rows the facility judged: no work on the rest
        pairs = pd.DataFrame(
            {"facility": facility[has].astype("int64"), "kenshin": ours[name](sub).to_numpy()}
        )
        counts = pairs.value_counts(dropna=False).sort_index()
        agree = int((pairs["facility"] == pairs["kenshin"]).fillna(False).sum())
        out[name] = {
            "compared": int(has.sum()),
            "agree": agree,
            "disagree": int(has.sum()) - agree,
            "pairs": [
                {"facility": int(f), "kenshin": None if pd.isna(k) else int(k), "rows": int(n)}
                for (f, k), n in counts.items()
            ],
        }
    return out


def _guidance_code_of(df: pd.DataFrame) -> pd.Series:
    return guidance_code(stratify(df))


# --------------------------------------------------------------------------------------------
# Outcomes (docs/domain.md §Outcomes)
# --------------------------------------------------------------------------------------------

#: The medication question (服薬, 1 yes / 2 no) whose "yes" meets an outcome: treatment of it.
OUTCOME_MEDICATION: dict[str, str] = {
    o.name: o.medication[0] for o in OUTCOME_DECLARATIONS if o.medication and o.medication_meets
}
#: Items whose 受診勧奨判定値 turns any letter into a see-a-doctor letter (受診勧奨).
REFERRAL_ITEMS: tuple[str, ...] = tuple(
    dict.fromkeys(i for o in OUTCOME_DECLARATIONS for i in o.referral_items)
)
#: Blood pressure at or above which seeing a doctor is urgent (SBP, DBP mmHg; Ⅱ度高血圧).
URGENT_BP = (160.0, 100.0)
_METS_INPUTS = ("sex", "waist_cm", "sbp", "dbp", "tg", "hdl", "fpg", "hba1c", "blood_draw_timing")
#: Every checkup column :func:`outcomes_met`, :func:`outcome_evaluable` and
#: :func:`referral_values` read: a table missing one cannot be judged (absent ≠ normal).
OUTCOME_INPUTS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *(c.item for o in OUTCOME_DECLARATIONS for c in o.criteria),
            *(m for o in OUTCOME_DECLARATIONS for m in o.medication),
            *(i for o in OUTCOME_DECLARATIONS for i in o.evaluable_items + o.referral_items),
            *(i for o in OUTCOME_DECLARATIONS if o.rule == "metabolic_syndrome" for i in _METS_INPUTS),
            "blood_draw_timing",
        ]
    )
)  # fmt: skip


def criterion_cut(
    criterion: Criterion, values: JudgementValues = MHLW_R6
) -> tuple[JudgementValue, float]:
    """(direction, cut) of a declared criterion; TG's is the fasting one (the higher)."""
    if criterion.cut is not None:
        return JudgementValue(criterion.cut, criterion.cut, criterion.op), criterion.cut
    jv = getattr(values, "tg_fasting" if criterion.judgement == "tg" else criterion.judgement)
    cut = getattr(jv, criterion.level)
    if cut is None:
        raise ValueError(f"{criterion.judgement} has no {criterion.level} judgement value")
    return jv, cut


def _criterion_met(df: pd.DataFrame, c: Criterion, values: JudgementValues) -> np.ndarray:
    jv, cut = criterion_cut(c, values)
    if c.judgement == "tg":  # 随時 (random) TG has its own cut since 2024
        cut = _tg_cut(df, cut, getattr(values.tg_nonfasting, c.level))
    return jv.meets(_num(df, c.item), cut)


def outcomes_met(
    df: pd.DataFrame, *, nonfasting_tg_cut: float = 175.0, values: JudgementValues = MHLW_R6
) -> pd.DataFrame:
    """Whether each outcome is met at the checkup (bool columns :data:`OUTCOMES`).

    Definitions: the outcome declarations (data.outcomes; docs/domain.md §Outcomes): any of
    an outcome's criteria, or "yes" to its medication question; metabolic syndrome is
    :func:`metabolic_syndrome` == 1 (基準該当). E.g. diabetes: HbA1c ≥6.5 or 空腹時血糖 ≥126 or
    on glucose medication; ckd: eGFR <60 (its 保健指導判定値) or urine protein ≥ (+).
    Missing values never meet a criterion.
    """
    out = {}
    for o in OUTCOME_DECLARATIONS:
        if o.rule == "metabolic_syndrome":
            mets = metabolic_syndrome(df, nonfasting_tg_cut=nonfasting_tg_cut, values=values)
            out[o.name] = (mets == 1).to_numpy(dtype=bool, na_value=False)
            continue
        met = np.zeros(len(df), dtype=bool)
        for c in o.criteria:
            met |= _criterion_met(df, c, values)
        if o.medication_meets:
            for col in o.medication:
                met |= _is_yes(df, col)
        out[o.name] = met
    return pd.DataFrame(out, index=df.index, columns=list(OUTCOMES))


def item_judgement(item: str, values: JudgementValues = MHLW_R6) -> JudgementValue | None:
    """An item's judgement values: MHLW's (TG: the fasting ones), else the cut an outcome
    declares for it (data.outcomes; both levels, e.g. uric acid), else None."""
    jv = getattr(values, "tg_fasting" if item == "tg" else item, None)
    if isinstance(jv, JudgementValue):
        return jv
    declared = (
        c for o in OUTCOME_DECLARATIONS for c in o.criteria if c.item == item and c.cut is not None
    )
    c = next(declared, None)
    return None if c is None else criterion_cut(c, values)[0]


def referral_values(df: pd.DataFrame, values: JudgementValues = MHLW_R6) -> pd.DataFrame:
    """Per checkup row: which :data:`REFERRAL_ITEMS` are at their 受診勧奨判定値 (bool columns
    named by item) and ``bp_urgent`` (SBP ≥160 or DBP ≥100). TG uses the fasting or random
    cut by the blood-draw timing; missing values are never at a referral level."""
    out = {}
    for item in REFERRAL_ITEMS:
        if item == "tg":
            cut = _tg_cut(df, values.tg_fasting.referral, values.tg_nonfasting.referral)
            out[item] = values.tg_fasting.meets(_num(df, "tg"), cut)
        else:
            jv = item_judgement(item, values)
            out[item] = jv.meets(_num(df, item), jv.referral)
    out["bp_urgent"] = (_num(df, "sbp") >= URGENT_BP[0]) | (_num(df, "dbp") >= URGENT_BP[1])
    return pd.DataFrame(out, index=df.index)


def outcome_evaluable(
    df: pd.DataFrame, *, nonfasting_tg_cut: float = 175.0, values: JudgementValues = MHLW_R6
) -> pd.DataFrame:
    """Whether each outcome can be judged at this checkup (bool columns :data:`OUTCOMES`).

    True when the outcome is met, or when at least one of its declared evaluable items was
    measured (so a "not met" answer rests on data rather than on missing values); metabolic
    syndrome: waist judgeable (:func:`metabolic_syndrome` ≠ 4).
    """
    met = outcomes_met(df, nonfasting_tg_cut=nonfasting_tg_cut, values=values)
    out = {}
    for o in OUTCOME_DECLARATIONS:
        if o.rule == "metabolic_syndrome":
            mets = metabolic_syndrome(df, nonfasting_tg_cut=nonfasting_tg_cut, values=values)
            present = (mets != 4).to_numpy(dtype=bool, na_value=False)
        else:
            present = _any_present(df, *o.evaluable_items)
        out[o.name] = met[o.name].to_numpy() | present
    return pd.DataFrame(out, index=df.index, columns=list(OUTCOMES))


# --------------------------------------------------------------------------------------------
# Per-item 判定値 flags
# --------------------------------------------------------------------------------------------


def threshold_flags(df: pd.DataFrame, *, values: JudgementValues = MHLW_R6) -> pd.DataFrame:
    """Per-item level vs 保健指導判定値 / 受診勧奨判定値 as ``Int8`` columns ``flag_<item>``.

    0 normal, 1 at/beyond 保健指導判定値, 2 at/beyond 受診勧奨判定値; <NA> when the value is missing.
    "Below" items: HDL <40 (no referral level since 2024, so at most 1), eGFR <60 / <45,
    Hb ≤13.0 / ≤12.0 men, ≤12.0 / ≤11.0 women. TG uses the non-fasting cut (175) when
    採血時間 is 3 or 4. ``flag_glucose`` uses fpg, else random_glucose. Waist and BMI have only
    level 1. Waist and Hb are sex-specific; with unknown sex the flag is set only when both sexes
    give the same level. Urine protein: ± → 1, + or more → 2 (UNVERIFIED against MHLW).
    """
    v = values
    sex = _num(df, "sex")
    tg = _num(df, "tg")
    fpg = _num(df, "fpg")
    hb = _num(df, "hemoglobin")
    waist = _num(df, "waist_cm")
    levels: dict[str, np.ndarray] = {
        "flag_sbp": v.sbp.level(_num(df, "sbp")),
        "flag_dbp": v.dbp.level(_num(df, "dbp")),
        "flag_tg": np.where(_nonfasting(df), v.tg_nonfasting.level(tg), v.tg_fasting.level(tg)),
        "flag_hdl": v.hdl.level(_num(df, "hdl")),
        "flag_ldl": v.ldl.level(_num(df, "ldl")),
        "flag_non_hdl": v.non_hdl.level(_num(df, "non_hdl")),
        "flag_glucose": np.where(
            np.isnan(fpg), v.random_glucose.level(_num(df, "random_glucose")), v.fpg.level(fpg)
        ),
        "flag_hba1c": v.hba1c.level(_num(df, "hba1c")),
        "flag_ast": v.ast.level(_num(df, "ast")),
        "flag_alt": v.alt.level(_num(df, "alt")),
        "flag_ggt": v.ggt.level(_num(df, "ggt")),
        "flag_egfr": v.egfr.level(_num(df, "egfr")),
        "flag_hemoglobin": _by_sex(sex, v.hemoglobin_male.level(hb), v.hemoglobin_female.level(hb)),
        "flag_waist_cm": _by_sex(sex, v.waist_male.level(waist), v.waist_female.level(waist)),
        "flag_bmi": v.bmi.level(_num(df, "bmi")),
        "flag_urine_protein": v.urine_protein.level(_num(df, "urine_protein")),
    }
    return pd.DataFrame({k: _int8(a) for k, a in levels.items()}, index=df.index)


def _int8(levels: np.ndarray) -> pd.arrays.IntegerArray:
    """Levels (0/1/2, NaN) as ``Int8``: ``pd.array(levels, dtype="Float64").astype("Int8")``
    made straight from the mask (pandas' element-wise checks took ≈ 4 ms a flag at 100k
    rows, 0.5 s a scored chunk)."""
    levels = np.asarray(levels, dtype="float64")
    missing = np.isnan(levels)
    return pd.arrays.IntegerArray(np.where(missing, 0, levels).astype("int8"), missing)


# --------------------------------------------------------------------------------------------
# eGFR
# --------------------------------------------------------------------------------------------


def egfr_jsn(creatinine: object, age: object, sex: object) -> np.ndarray | pd.Series:
    """eGFR by the JSN (日本腎臓学会) equation, mL/min/1.73m².

    194 × Cr^−1.094 × age^−0.287, × 0.739 for women (``sex`` 2). Cr in mg/dL (enzymatic).
    NaN where any input is missing, Cr ≤ 0, age < 18 (adult equation) or sex is not 1/2.
    Accepts scalars, arrays or Series (broadcast); returns a Series with ``creatinine``'s index
    when ``creatinine`` is a Series, a float for all-scalar input, else an ndarray.
    """
    cr, a, s = np.broadcast_arrays(_as_float(creatinine), _as_float(age), _as_float(sex))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (cr > 0) & (a >= 18) & ((s == 1) | (s == 2))
        e = 194.0 * np.power(np.where(ok, cr, 1.0), -1.094) * np.power(np.where(ok, a, 1.0), -0.287)
    e = np.where(ok, np.where(s == 2, e * 0.739, e), np.nan)
    if isinstance(creatinine, pd.Series):
        return pd.Series(e, index=creatinine.index, name="egfr")
    return e[()]
