"""介入効果の評価 (intervention evaluation): letter arm vs 対照群 at the next year's checkups.

Study population: the selection table's rows with ``arm`` ∈ {``letter``, ``control``} — the
residents randomised in scoring year FY (:func:`scoring.selection.select`). The analysis is by
intention to treat (ITT, 割付どおりの解析): everybody counts in the arm drawn, letter read or not,
resident still insured or not. Per group (``all``, and each ``letter_type`` when the study
population has more than one) and arm:

* ``attendance`` (翌年度受診率) — share with a checkup in FY+1 (denominator: everyone randomised);
* ``incidence`` (発症率) — among FY+1 attendees whose index checkup could judge the letter's topic
  outcome (``outcome`` column) and did not meet it, the share meeting it at the first FY+1
  checkup (:func:`data.judgements.outcomes_met`; judgeable: :func:`outcome_evaluable` at both).
  ``see_doctor`` letters go to residents who already meet their outcome, so they have no
  incidence (n = 0);
* ``treatment_started`` (治療開始率) — among FY+1 attendees who answered "no" to the medication
  question of the letter's topic at the index checkup (糖尿病 ``q_med_glucose``, 高血圧
  ``q_med_bp``, 脂質異常症 ``q_med_lipid``; other topics have none), the share answering "yes"
  at the first FY+1 checkup: what a ``see_doctor`` letter (受診勧奨) aims at. The selection
  holds ``see_doctor`` letters back only when ``control_for_see_doctor`` is set; without a
  control arm the letter arm's rate is reported and the difference is empty;
* ``change_<item>`` (変化量) — mean change index → first FY+1 checkup of HbA1c, SBP and weight
  among attendees with both values.

The index checkup is the resident's latest checkup in the ``index`` frame (pass FY, and FY−1 for
residents scored on the previous year's checkup). Differences are letter − control with
two-sided CIs: proportions by Newcombe's hybrid score interval (method 10, built from Wilson
intervals), means by Welch's t interval (Welch-Satterthwaite df).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from data.columns import OUTCOMES
from data.judgements import OUTCOME_MEDICATION, outcome_evaluable, outcomes_met

__all__ = [
    "ARMS",
    "COMPARISON_COLUMNS",
    "EvaluationConfig",
    "EvaluationResult",
    "evaluate",
    "format_estimate",
    "newcombe_difference",
    "person_outcomes",
    "study_population",
    "welch_difference",
    "wilson_interval",
]

ARMS = ("letter", "control")
NEWCOMBE = "Newcombe hybrid score (Wilson)"
WELCH = "Welch t"
#: Columns of :attr:`EvaluationResult.comparisons` (one row per group × measure).
COMPARISON_COLUMNS = (
    "fiscal_year",
    "follow_up_year",
    "group",
    "measure",
    "n_letter",
    "n_control",
    "k_letter",
    "k_control",
    "letter",
    "control",
    "sd_letter",
    "sd_control",
    "difference",
    "ci_low",
    "ci_high",
    "method",
)


@dataclass(frozen=True)
class EvaluationConfig:
    """What to compare: CI level, measured items for the change, per-letter-type groups."""

    confidence: float = 0.95
    items: tuple[str, ...] = ("hba1c", "sbp", "weight_kg")
    by_letter_type: bool = True

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1)")

    @property
    def z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.confidence / 2))


@dataclass(frozen=True)
class EvaluationResult:
    """評価結果: tidy comparisons (:data:`COMPARISON_COLUMNS`) and the per-resident analysis rows.

    ``persons``: pseudonym, arm, letter_type, outcome, attended, at_risk, event, untreated,
    treatment_started, ``change_<item>`` — pseudonymised, one row per randomised resident.
    """

    fiscal_year: int
    comparisons: pd.DataFrame
    persons: pd.DataFrame
    config: EvaluationConfig

    @property
    def follow_up_year(self) -> int:
        return self.fiscal_year + 1

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-resident rows); NaN → None."""
        rows = self.comparisons.astype(object).where(self.comparisons.notna(), None)
        return {
            "fiscal_year": self.fiscal_year,
            "follow_up_year": self.follow_up_year,
            "analysis": "intention to treat",
            "config": {**asdict(self.config), "items": list(self.config.items)},
            "methods": {"proportions": NEWCOMBE, "means": WELCH},
            "randomised": {a: int((self.persons["arm"] == a).sum()) for a in ARMS},
            "comparisons": rows.to_dict("records"),
        }


# --------------------------------------------------------------------------------------------
# Interval estimates (vectorised)
# --------------------------------------------------------------------------------------------


def wilson_interval(k, n, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``k / n`` (arrays, limits within [0, 1]; NaN where ``n`` = 0)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def newcombe_difference(
    k1, n1, k0, n0, z: float = 1.959963984540054
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk difference ``k1/n1 − k0/n0`` and Newcombe's hybrid score CI (method 10).

    ``lower = d − √((p1−l1)² + (u0−p0)²)``, ``upper = d + √((u1−p1)² + (p0−l0)²)`` with
    Wilson limits ``l``, ``u`` of each proportion; NaN where an ``n`` is 0.
    """
    k1, n1, k0, n0 = (np.asarray(a, dtype=float) for a in (k1, n1, k0, n0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson_interval(k1, n1, z)
    l0, u0 = wilson_interval(k0, n0, z)
    d = p1 - p0
    lo = d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return d, lo, hi


def welch_difference(
    mean1, var1, n1, mean0, var0, n0, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference of means ``mean1 − mean0`` and Welch's t CI (sample variances, ddof 1).

    NaN where an arm has fewer than 2 values; a zero-width interval when both variances are 0.
    """
    m1, v1, n1, m0, v0, n0 = (
        np.asarray(a, dtype=float) for a in (mean1, var1, n1, mean0, var0, n0)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = v1 / n1, v0 / n0
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
        t = stats.t.ppf(0.5 + confidence / 2, np.where(se > 0, df, 1.0))
    d = np.where((n1 >= 2) & (n0 >= 2), m1 - m0, np.nan)
    half = np.where(se > 0, t * se, 0.0)
    return d, d - half, d + half


# --------------------------------------------------------------------------------------------
# Analysis rows
# --------------------------------------------------------------------------------------------


def study_population(selection: pd.DataFrame) -> pd.DataFrame:
    """Randomised residents (``arm`` letter/control): pseudonym, arm, letter_type, outcome."""
    missing = {"pseudonym", "arm", "letter_type", "outcome"} - set(selection.columns)
    if missing:
        raise ValueError(f"selection table lacks columns {sorted(missing)}")
    arm = selection["arm"].astype("string")
    study = selection.loc[arm.isin(ARMS).fillna(False).to_numpy()]
    study = study[["pseudonym", "arm", "letter_type", "outcome"]].astype("string")
    if study["pseudonym"].duplicated().any():
        raise ValueError("selection table has a pseudonym twice")
    bad = ~study["outcome"].isin(OUTCOMES).fillna(False)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} randomised rows have no known outcome "
            f"(e.g. {study.loc[bad, 'outcome'].iloc[0]!r}); known: {list(OUTCOMES)}"
        )
    return study.reset_index(drop=True)


def _one_per_person(checkups: pd.DataFrame, keep: str) -> pd.DataFrame:
    if "pseudonym" not in checkups or "exam_date" not in checkups:
        if len(checkups):
            raise ValueError("checkups need pseudonym and exam_date columns")
        return pd.DataFrame({"pseudonym": pd.Series(dtype="string"), "exam_date": pd.NaT})
    cols = [c for c in checkups.columns if c not in ("arm", "letter_type", "outcome")]
    frame = checkups[cols].sort_values(["pseudonym", "exam_date"], kind="stable")
    return frame.drop_duplicates("pseudonym", keep=keep)


def _pick(table: pd.DataFrame, code: np.ndarray) -> np.ndarray:
    """Row-wise value of the topic outcome's column (``code`` indexes :data:`OUTCOMES`)."""
    return table[list(OUTCOMES)].to_numpy(dtype=bool)[np.arange(len(code)), code]


def _values(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def person_outcomes(
    study: pd.DataFrame,
    index: pd.DataFrame,
    follow_up: pd.DataFrame,
    items: tuple[str, ...] = EvaluationConfig.items,
) -> pd.DataFrame:
    """One analysis row per randomised resident (see :class:`EvaluationResult`)."""
    keys = study[["pseudonym"]]
    now = keys.merge(_one_per_person(index, "last"), on="pseudonym", how="left")
    nxt = keys.merge(_one_per_person(follow_up, "first"), on="pseudonym", how="left")
    has_index = now["exam_date"].notna().to_numpy()
    attended = nxt["exam_date"].notna().to_numpy()
    code = pd.Categorical(study["outcome"], categories=OUTCOMES).codes.astype(np.int64)
    met0, ev0 = _pick(outcomes_met(now), code), _pick(outcome_evaluable(now), code)
    met1, ev1 = _pick(outcomes_met(nxt), code), _pick(outcome_evaluable(nxt), code)
    at_risk = attended & has_index & ev0 & ~met0 & ev1
    out = study.copy()
    out["attended"] = attended
    out["at_risk"] = at_risk
    out["event"] = at_risk & met1
    med = study["outcome"].map(OUTCOME_MEDICATION).to_numpy(dtype=object)
    q0, q1 = np.full(len(study), np.nan), np.full(len(study), np.nan)
    for col in set(OUTCOME_MEDICATION.values()):
        rows = med == col
        q0[rows], q1[rows] = _values(now, col)[rows], _values(nxt, col)[rows]
    # 1 yes / 2 no; an unanswered question at either checkup leaves the resident out
    untreated = attended & has_index & (q0 == 2) & np.isin(q1, (1, 2))
    out["untreated"] = untreated
    out["treatment_started"] = untreated & (q1 == 1)
    for item in items:
        change = _values(nxt, item) - _values(now, item)
        out["change_" + item] = np.where(attended & has_index, change, np.nan)
    return out


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def _grouped(persons: pd.DataFrame, by_letter_type: bool) -> pd.DataFrame:
    parts = [persons.assign(group="all")]
    types = persons["letter_type"].dropna().unique()
    if by_letter_type and len(types) > 1:
        typed = persons[persons["letter_type"].notna()]
        parts.append(typed.assign(group=typed["letter_type"].astype(str)))
    return pd.concat(parts, ignore_index=True)


def _arm_table(g: pd.DataFrame, items: tuple[str, ...]) -> pd.DataFrame:
    """Per group × arm sums and moments, arms side by side (``<stat>_letter`` / ``_control``)."""
    agg = {
        "n": ("pseudonym", "size"),
        "attended": ("attended", "sum"),
        "at_risk": ("at_risk", "sum"),
        "events": ("event", "sum"),
        "untreated": ("untreated", "sum"),
        "started": ("treatment_started", "sum"),
    }
    for item in items:
        c = "change_" + item
        agg |= {f"cnt_{item}": (c, "count"), f"mean_{item}": (c, "mean"), f"var_{item}": (c, "var")}
    arms = pd.Categorical(g["arm"], categories=ARMS)
    table = g.assign(arm=arms).groupby(["group", "arm"], observed=False, sort=True).agg(**agg)
    wide = table.unstack("arm")
    wide.columns = [f"{stat}_{arm}" for stat, arm in wide.columns]
    counts = [
        c
        for c in wide.columns
        if c.split("_")[0] in ("n", "attended", "at", "events", "untreated", "started", "cnt")
    ]
    wide[counts] = wide[counts].fillna(0)
    return wide


def _comparisons(wide: pd.DataFrame, config: EvaluationConfig, fy: int) -> pd.DataFrame:
    z = config.z
    rows = []

    def props(measure: str, k: str, n: str) -> None:
        k1, n1, k0, n0 = (wide[f"{s}_{a}"].to_numpy(float) for a in ARMS for s in (k, n))
        d, lo, hi = newcombe_difference(k1, n1, k0, n0, z)
        with np.errstate(invalid="ignore", divide="ignore"):
            rows.append(
                pd.DataFrame(
                    {"group": wide.index, "measure": measure, "n_letter": n1, "n_control": n0,
                     "k_letter": k1, "k_control": k0, "letter": k1 / n1, "control": k0 / n0,
                     "sd_letter": np.nan, "sd_control": np.nan, "difference": d, "ci_low": lo,
                     "ci_high": hi, "method": NEWCOMBE}
                )
            )  # fmt: skip

    props("attendance", "attended", "n")
    props("incidence", "events", "at_risk")
    props("treatment_started", "started", "untreated")
    for item in config.items:
        m1, v1, n1, m0, v0, n0 = (
            wide[f"{s}_{item}_{a}"].to_numpy(float) for a in ARMS for s in ("mean", "var", "cnt")
        )
        d, lo, hi = welch_difference(m1, v1, n1, m0, v0, n0, config.confidence)
        rows.append(
            pd.DataFrame(
                {"group": wide.index, "measure": "change_" + item, "n_letter": n1,
                 "n_control": n0, "k_letter": np.nan, "k_control": np.nan,
                 "letter": np.where(n1 > 0, m1, np.nan), "control": np.where(n0 > 0, m0, np.nan),
                 "sd_letter": np.sqrt(v1), "sd_control": np.sqrt(v0), "difference": d,
                 "ci_low": lo, "ci_high": hi, "method": WELCH}
            )
        )  # fmt: skip
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "follow_up_year", fy + 1)
    out.insert(0, "fiscal_year", fy)
    order = {g: i for i, g in enumerate(["all", "advice", "see_doctor"])}
    out = out.sort_values(
        "group", key=lambda s: s.map(order).fillna(len(order)), kind="stable", ignore_index=True
    )
    for c in ("n_letter", "n_control"):
        out[c] = out[c].astype("int64")
    for c in ("k_letter", "k_control"):
        out[c] = pd.array(out[c].round(), dtype="Int64")
    return out[list(COMPARISON_COLUMNS)]


def evaluate(
    selection: pd.DataFrame,
    index: pd.DataFrame,
    follow_up: pd.DataFrame,
    fiscal_year: int,
    config: EvaluationConfig | None = None,
) -> EvaluationResult:
    """介入効果の評価 of FY ``fiscal_year``'s letters (ITT; see the module docstring).

    ``selection``: the scoring run's selection table; ``index``: checkups of FY (and FY−1 for
    residents scored on it), ``follow_up``: checkups of FY+1 — store frames keyed by
    ``pseudonym`` with ``exam_date`` and the canonical checkup columns. Raises ``ValueError``
    when the selection has no randomised resident in one of the arms.
    """
    config = config or EvaluationConfig()
    study = study_population(selection)
    counts = study["arm"].value_counts()
    empty = [a for a in ARMS if counts.get(a, 0) == 0]
    if empty:
        raise ValueError(f"no resident in the {' and '.join(empty)} arm: nothing to compare")
    persons = person_outcomes(study, index, follow_up, config.items)
    wide = _arm_table(_grouped(persons, config.by_letter_type), config.items)
    return EvaluationResult(
        fiscal_year=int(fiscal_year),
        comparisons=_comparisons(wide, config, int(fiscal_year)),
        persons=persons,
        config=config,
    )


def format_estimate(row: dict) -> str:
    """``-0.35 [-0.52, -0.18]`` (proportions in percentage points)."""
    scale, unit = (100.0, " pt") if row["method"] == NEWCOMBE else (1.0, "")
    d, lo, hi = (row[k] for k in ("difference", "ci_low", "ci_high"))
    if d is None or (isinstance(d, float) and math.isnan(d)):
        return "–"
    digits = 1 if scale == 100.0 or row["measure"] == "change_sbp" else 2
    f = f"{{:+.{digits}f}}"
    return f"{f.format(d * scale)}{unit} [{f.format(lo * scale)}, {f.format(hi * scale)}]"
