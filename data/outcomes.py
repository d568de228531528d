"""Outcome declarations (予測対象の疾患): every outcome kenshin predicts, declared once.

An outcome is a state judged at one checkup (docs/domain.md §Outcomes). Everything else derives
from this table: the outcome list (``data.columns.OUTCOMES``), the judgement of "met" and
"evaluable" (data.judgements), the items at 受診勧奨判定値 that make any letter a see-a-doctor
letter, the medication answers that put an outcome in a doctor's hands (letter selection), the
logistic points baseline's items, the forecast/risk coherence check of a letter, the Japanese
and English labels. Letter wording (やさしい日本語) lives in the letter catalogue, the advice
threshold in ``selection.toml`` and the synthetic ward's truth in ``data.synth.truth``: each
refuses to run when an outcome declared here is missing from it.

Adding an outcome: one :class:`Outcome` entry below, its wording in the catalogue
(``outcomes:``), its ``min_risk`` in ``selection.toml``, and its rule in the synthetic truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["OUTCOME_DECLARATIONS", "Criterion", "Outcome", "declaration"]

Level = Literal["referral", "guidance"]


@dataclass(frozen=True, slots=True)
class Criterion:
    """An item whose value at or beyond a cut meets the outcome.

    ``judgement`` names a field of ``data.judgements.JudgementValues`` (its direction and its
    ``level`` cut: 受診勧奨判定値 ``referral`` or 保健指導判定値 ``guidance``); ``"tg"`` takes
    the fasting or the random cut by 採血時間. Where 特定健診 has no judgement value for the item,
    ``cut`` and ``op`` give it directly.
    """

    item: str
    judgement: str | None = None
    level: Level = "referral"
    cut: float | None = None
    op: Literal[">=", "<"] = ">="

    def __post_init__(self) -> None:
        if (self.judgement is None) == (self.cut is None):
            raise ValueError(f"criterion {self.item!r}: give exactly one of judgement and cut")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One predicted outcome.

    * ``criteria``: met when any criterion holds (``rule="any"``); ``rule="metabolic_syndrome"``
      uses the 2005 MetS criteria of data.judgements instead (waist and ≥2 components).
    * ``medication``: 服薬 questions (1 yes / 2 no) whose "yes" means the outcome is treated:
      letter selection leaves it to the doctor; with ``medication_meets`` a "yes" also meets it.
    * ``evaluable_items``: the outcome can be judged "not met" only where one was measured.
    * ``referral_items``: items at their 受診勧奨判定値 turn any letter into a see-a-doctor
      letter (items with a 受診勧奨判定値 in data.judgements.JudgementValues, or a criterion's
      own ``cut``).
    * ``baseline_items``: the logistic points baseline's items (models.baselines).
    * ``letter_items``: items a letter on this outcome shows beyond the standard results table
      (scoring.letters.schema.KEY_ITEMS), e.g. an optional item that defines it.
    """

    name: str
    label_ja: str
    label_en: str
    criteria: tuple[Criterion, ...] = ()
    rule: Literal["any", "metabolic_syndrome"] = "any"
    medication: tuple[str, ...] = ()
    medication_meets: bool = True
    evaluable_items: tuple[str, ...] = ()
    referral_items: tuple[str, ...] = ()
    baseline_items: tuple[str, ...] = ()
    letter_items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rule == "any" and not self.criteria:
            raise ValueError(f"outcome {self.name!r}: rule 'any' needs criteria")
        if self.rule == "any" and not self.evaluable_items:
            raise ValueError(f"outcome {self.name!r}: declare its evaluable items")


_COMMON = ("age", "sex", "current_smoker")

#: The outcomes, in the order of every per-outcome table (and the letter-topic tie-break).
OUTCOME_DECLARATIONS: tuple[Outcome, ...] = (
    Outcome(
        "diabetes",
        "糖尿病",
        "diabetes",
        criteria=(Criterion("hba1c", "hba1c"), Criterion("fpg", "fpg")),
        medication=("q_med_glucose",),
        evaluable_items=("hba1c", "fpg"),  # random glucose is not part of the definition
        referral_items=("hba1c", "fpg"),
        baseline_items=(
            *_COMMON,
            "bmi",
            "waist_cm",
            "hba1c",
            "fpg",
            "q_med_bp",
            "alcohol_g_per_day",
        ),
    ),
    Outcome(
        "hypertension",
        "高血圧",
        "high blood pressure",
        criteria=(Criterion("sbp", "sbp"), Criterion("dbp", "dbp")),
        medication=("q_med_bp",),
        evaluable_items=("sbp", "dbp"),
        referral_items=("sbp", "dbp"),
        baseline_items=(*_COMMON, "bmi", "sbp", "dbp", "alcohol_g_per_day"),
    ),
    Outcome(
        "dyslipidemia",
        "脂質異常症",
        "abnormal blood lipids",
        criteria=(Criterion("ldl", "ldl"), Criterion("tg", "tg"), Criterion("non_hdl", "non_hdl")),
        medication=("q_med_lipid",),
        evaluable_items=("ldl", "tg", "non_hdl"),
        referral_items=("ldl", "tg"),
        baseline_items=(*_COMMON, "bmi", "waist_cm", "ldl", "tg", "hdl"),
    ),
    Outcome(
        "metabolic_syndrome",
        "メタボリックシンドローム",
        "metabolic syndrome",
        rule="metabolic_syndrome",
        medication=("q_med_bp", "q_med_glucose", "q_med_lipid"),
        medication_meets=False,  # medication counts towards a component, not the outcome
        baseline_items=(*_COMMON, "waist_cm", "bmi", "sbp", "tg", "hdl", "fpg", "hba1c"),
    ),
    Outcome(
        "ckd",
        "慢性腎臓病",
        "chronic kidney disease",
        criteria=(
            Criterion("egfr", "egfr", level="guidance"),  # eGFR <60
            Criterion("urine_protein", "urine_protein"),  # (+) or more
        ),
        evaluable_items=("egfr", "urine_protein"),
        referral_items=("egfr",),  # eGFR <45
        baseline_items=(*_COMMON, "egfr", "urine_protein", "sbp", "hba1c"),
    ),
    Outcome(
        "liver",
        "肝機能障害",
        "liver disease",
        criteria=(Criterion("alt", "alt"), Criterion("ggt", "ggt")),
        evaluable_items=("alt", "ggt"),
        referral_items=("alt", "ggt"),
        baseline_items=(*_COMMON, "alt", "ggt", "bmi", "waist_cm", "alcohol_g_per_day"),
    ),
    Outcome(
        "hyperuricemia",
        "高尿酸血症",
        "high uric acid",
        # 血清尿酸 ≥7.0 mg/dL. Uric acid is an optional item and 特定健診 asks no medication
        # question for it: judged only where measured.
        criteria=(Criterion("uric_acid", cut=7.0),),
        evaluable_items=("uric_acid",),
        referral_items=("uric_acid",),
        baseline_items=(*_COMMON, "uric_acid", "bmi", "waist_cm", "alcohol_g_per_day", "egfr"),
        letter_items=("uric_acid",),
    ),
)


def declaration(name: str) -> Outcome:
    """The declared outcome called ``name`` (ValueError naming the known ones otherwise)."""
    for o in OUTCOME_DECLARATIONS:
        if o.name == name:
            return o
    known = [o.name for o in OUTCOME_DECLARATIONS]
    raise ValueError(f"unknown outcome {name!r}; declared: {known}")
