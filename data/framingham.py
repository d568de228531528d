"""Framingham teaching dataset → the checkup contract (実データ検証); the benchmark that trains
on it is models.framingham.

Purpose: run the same pipeline (bundle → ingest → features → labels → models) on a real
longitudinal cohort and report LightGBM against logistic regression. The data are the NHLBI
Framingham Heart Study **teaching** dataset ``frmgham2.csv`` (11,627 exams of 4,434 persons,
exam periods 1-3 about 6 years apart). The NHLBI documentation calls it *"inappropriate for
publication purposes"* (anonymised with methods that perturb it): figures computed on it are
for engineering validation inside this project only, never for publication. The file is read
from ``../shared/data/external/framingham/frmgham2.csv`` beside the repository (or the path in
``KENSHIN_FRAMINGHAM_CSV``) and is **never copied into the repository**.

Mapping (one exam period = one checkup; only the items the dataset has):

=================  =======================================================================
contract column    from frmgham2
=================  =======================================================================
person_id          ``"FHS"`` + RANDID
sex                SEX (1 male, 2 female — the same codes)
exam_date          period *p* in fiscal year ``BASE_FISCAL_YEAR + p − 1`` (see below)
birth_date         exam date of the person's first exam − AGE at that exam (− ½ year)
bmi                BMI (height and weight are not in the data: left missing)
sbp, dbp           SYSBP, DIABP (rounded)
random_glucose     GLUCOSE (casual, non-fasting); ``blood_draw_timing`` 4 (<3.5 h) when present
hdl, ldl           HDLC, LDLC (measured at period 3 only)
q_med_bp           BPMEDS (1 → 1 yes, 0 → 2 no)
q_med_glucose      DIABETES (1 → 1, 0 → 2): *diagnosed diabetes*, treated or not (see below)
q_hist_stroke      PREVSTRK (1 → 1, 0 → 2)
q_hist_heart       PREVCHD (1 → 1, 0 → 2)
q_smoking          CURSMOKE, written in the FY2018-2023 questionnaire codes (1 yes, 2 no) that
                   ingest harmonises to the canonical 1 smokes / 3 no
=================  =======================================================================

TOTCHOL (total cholesterol) has no contract column and is dropped; HEARTRTE, CIGPDAY, educ and
the event/time columns are not 特定健診 items and are dropped too.

**Time.** kenshin's horizon is "the next fiscal year's checkup"; Framingham's exams are ~6 years
apart. To make *next checkup = next exam* the adapter places period 1, 2, 3 in three
consecutive fiscal years (FY2021-2023, exam dates 1 May + TIME mod 180 days, so all in the
fiscal year). The model horizon is therefore "next exam, about 6 years later in reality".
Side effect: a person has one birth date, so the stored age advances by 1 year per exam instead
of ~6 (age at periods 2 and 3 is understated by ~5 and ~10 years). Two labelled transitions
(1→2, 2→3) are too few index years for the temporal split, so the benchmark uses the
person-grouped split (``SplitConfig(group="person")``): persons, not years, are held out.

**Outcomes.** Hypertension uses the judgement of docs/contract.md §Outcomes unchanged (SBP ≥140 or
DBP ≥90 or on BP medication). Diabetes there needs HbA1c or fasting glucose, which Framingham lacks,
so the adapter judges it itself (:func:`relabel_diabetes`): met when DIABETES = 1 (mapped to
``q_med_glucose`` = 1, the teaching dataset's "diabetic according to criteria of first exam treated
or first exam with casual glucose of 200 mg/dL or more") or casual glucose ≥ 200 mg/dL; judgeable
when either is known.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "BASE_FISCAL_YEAR",
    "adapt",
    "default_path",
    "read_framingham",
    "relabel_diabetes",
    "write_framingham_bundle",
]

BASE_FISCAL_YEAR = 2021
CASUAL_GLUCOSE_DIABETES = 200.0  # mg/dL
_ENV = "KENSHIN_FRAMINGHAM_CSV"


def default_path() -> Path:
    """``$KENSHIN_FRAMINGHAM_CSV`` or ``../shared/data/external/framingham/frmgham2.csv``."""
    env = os.environ.get(_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    return repo.parent / "shared" / "data" / "external" / "framingham" / "frmgham2.csv"


def read_framingham(path: Path | None = None) -> pd.DataFrame:
    """The raw teaching dataset (FileNotFoundError with a hint when it is absent)."""
    path = Path(path) if path else default_path()
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: Framingham teaching dataset not found (set {_ENV} or place the shared "
            "data folder beside the repository; it is not shipped with kenshin)"
        )
    return pd.read_csv(path)


def _yes_no(x: pd.Series) -> pd.Series:
    """0/1 flag → questionnaire code 1 yes / 2 no (missing stays missing)."""
    return x.map({1: 1, 0: 2}).astype("Int8")


def adapt(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(checkups, enrollment) in the contract columns, as strings/numbers.

    Columns: docs/contract.md §Checkups, §Enrollment.
    """
    df = raw.sort_values(["RANDID", "PERIOD"]).reset_index(drop=True)
    fy = BASE_FISCAL_YEAR + df["PERIOD"].astype(int) - 1
    start = pd.to_datetime(fy.astype(str) + "-05-01")
    exam = start + pd.to_timedelta(df["TIME"].astype(int) % 180, unit="D")
    first = df.groupby("RANDID").cumcount() == 0
    birth0 = exam - pd.to_timedelta(df["AGE"] * 365.25 + 182, unit="D")
    birth = birth0.where(first).groupby(df["RANDID"]).transform("first").dt.normalize()
    pid = "FHS" + df["RANDID"].astype(str)
    glucose = df["GLUCOSE"].astype("float64")
    checkups = pd.DataFrame(
        {
            "person_id": pid,
            "exam_date": exam.dt.strftime("%Y-%m-%d"),
            "sex": df["SEX"].astype("Int8"),
            "birth_date": birth.dt.strftime("%Y-%m-%d"),
            "bmi": df["BMI"].astype("float64"),
            "sbp": df["SYSBP"].round().astype("Int16"),
            "dbp": df["DIABP"].round().astype("Int16"),
            "blood_draw_timing": pd.array(np.where(glucose.notna(), 4, pd.NA), dtype="Int8"),
            "random_glucose": glucose,
            "hdl": df["HDLC"].astype("float64"),
            "ldl": df["LDLC"].astype("float64"),
            "q_med_bp": _yes_no(df["BPMEDS"]),
            "q_med_glucose": _yes_no(df["DIABETES"]),
            "q_hist_stroke": _yes_no(df["PREVSTRK"]),
            "q_hist_heart": _yes_no(df["PREVCHD"]),
            "q_smoking": _yes_no(df["CURSMOKE"]),  # FY2018-2023 codes: 1 yes, 2 no
        }
    )
    persons = pid.drop_duplicates()
    enrollment = pd.DataFrame(
        {
            "person_id": persons.to_numpy(),
            "enrolled_from": f"{BASE_FISCAL_YEAR}-04-01",
            "enrolled_until": f"{BASE_FISCAL_YEAR + 3}-03-31",
            "end_reason": "other",
        }
    )
    return checkups, enrollment


def write_framingham_bundle(out: Path, path: Path | None = None) -> Path:
    """Adapt the CSV at ``path``; write ``checkups.csv``, ``enrollment.csv`` and a
    ``contacts.csv`` of bare IDs (no names or addresses exist) into the bundle folder ``out``."""
    checkups, enrollment = adapt(read_framingham(path))
    out.mkdir(parents=True, exist_ok=True)
    checkups.to_csv(out / "checkups.csv", index=False)
    enrollment.to_csv(out / "enrollment.csv", index=False)
    enrollment[["person_id"]].to_csv(out / "contacts.csv", index=False)
    return out


def _diabetes_status(checkups: pd.DataFrame) -> pd.DataFrame:
    """Per (pseudonym, fiscal_year): the adapter's diabetes judgement (met, judgeable)."""
    med = checkups["q_med_glucose"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    rpg = checkups["random_glucose"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    met = (med == 1) | (rpg >= CASUAL_GLUCOSE_DIABETES)
    ok = ~np.isnan(med) | ~np.isnan(rpg)
    s = pd.DataFrame(
        {
            "pseudonym": checkups["pseudonym"].astype("string").to_numpy(),
            "fy": checkups["fiscal_year"].astype("int64").to_numpy(),
            "met": met,
            "ok": ok,
        }
    )
    return s.groupby(["pseudonym", "fy"], sort=False).any().reset_index()


def relabel_diabetes(checkups: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with ``y_diabetes`` / ``at_risk_diabetes`` judged the Framingham way.

    ``checkups``: the store's checkups (data.store.read_checkups). Horizon: next fiscal year
    (= next exam). y = 1 if met at the next exam, 0 if judgeable there and not met, else <NA>;
    at risk = judgeable and not met at the index exam.
    """
    s = _diabetes_status(checkups)
    key = pd.DataFrame(
        {
            "pseudonym": labels["pseudonym"].astype("string").to_numpy(),
            "fy": labels["fiscal_year"].astype("int64").to_numpy(),
        }
    )
    now = key.merge(s, on=["pseudonym", "fy"], how="left", validate="m:1")
    nxt = key.assign(fy=key["fy"] + 1).merge(s, on=["pseudonym", "fy"], how="left", validate="m:1")
    met_n = nxt["met"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    ok_n = nxt["ok"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    y = np.where(met_n, 1.0, np.where(ok_n, 0.0, np.nan))
    y[~labels["in_window"].to_numpy(dtype=bool)] = np.nan
    mask = np.isnan(y)
    out = labels.copy()
    out["y_diabetes"] = pd.arrays.IntegerArray(np.where(mask, 0, y).astype("int8"), mask)
    met_0 = now["met"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    ok_0 = now["ok"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    out["at_risk_diabetes"] = ok_0 & ~met_0
    return out
