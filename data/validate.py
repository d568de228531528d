"""Row-level validation of raw tables: typed frames out, rejects with reasons.

The rules: docs/contract.md §Validation and rejects.

Every raw row ends either in the typed frame or in the rejects frame with exactly one reason (the
first check it fails), so ``rows read = loaded + rejected`` holds per table before duplicates are
merged. Hard-range failures are rejected; soft-range outliers are kept and listed in
``soft_flags``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data import normalise as nz
from data.columns import CHECKUP_COLUMNS, END_REASON_WORDS, END_REASONS
from data.readers import (
    QUESTIONNAIRE_CODING,
    READER_FLAGS,
    REJECT_COLUMN,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
)

#: (hard_low, hard_high, soft_low, soft_high) per item; an engineering choice
#: (docs/domain.md §Plausible ranges).
RANGES: dict[str, tuple[float, float, float, float]] = {
    "height_cm": (100, 220, 130, 200),
    "weight_kg": (20, 250, 30, 160),
    "bmi": (10, 70, 14, 45),
    "waist_cm": (40, 200, 55, 150),
    "sbp": (50, 300, 80, 220),
    "dbp": (20, 200, 40, 130),
    "tg": (5, 5000, 20, 1500),
    "hdl": (5, 250, 20, 130),
    "ldl": (5, 600, 30, 300),
    "non_hdl": (10, 700, 50, 350),
    "ast": (1, 5000, 5, 500),
    "alt": (1, 5000, 5, 500),
    "ggt": (1, 3000, 5, 1000),
    "fpg": (20, 900, 60, 400),
    "random_glucose": (20, 900, 60, 400),
    "hba1c": (3.0, 20.0, 4.0, 14.0),
    "creatinine": (0.1, 20, 0.3, 3.0),
    "egfr": (1, 250, 15, 130),
    "uric_acid": (0.5, 20, 2, 12),
    "hemoglobin": (3, 25, 8, 20),
}

#: Allowed codes of the coded checkup columns (docs/contract.md §Codes).
CODES: dict[str, tuple[int, ...]] = {
    "sex": (1, 2),
    "blood_draw_timing": (2, 3, 4),
    "urine_glucose": (1, 2, 3, 4, 5),
    "urine_protein": (1, 2, 3, 4, 5),
    "facility_mets": (1, 2, 3, 4),  # 9N501 (OID …1008)
    "facility_guidance_level": (1, 2, 3, 4),  # 9N506 (OID …3001)
    "facility_doctor_judgement": tuple(range(10)),  # 9N511 coded: no national list, one digit
    **nz.QUESTIONNAIRE_CODES,
}

#: Oldest age a checkup row can carry (the store's contract); older means a placeholder birth
#: date (1900-01-01 for "unknown" in some systems), which no later stage could use.
MAX_AGE = 120

#: 特定健診 began in April 2008: an earlier exam date is a wrong date, not a checkup.
FIRST_TOKUTEI_FY = 2008

#: Coded columns whose bad code rejects the row; any other bad code becomes missing + a flag.
REJECTING_CODES = ("sex",)

REJECT_COLUMNS = ("table", "source_file", "source_row", "column", "reason", "value")
#: Raw values of these columns never reach the rejects table (PII or quasi-identifiers).
WITHHELD = {"person_id", "birth_date", "name", "name_kana", "postal_code", "address"}


@dataclass
class Validated:
    """Typed rows that passed, the rejects (one reason each) with provenance, and a report of
    what was decided or set aside without rejecting (for the manifest)."""

    frame: pd.DataFrame
    rejects: pd.DataFrame
    report: dict = field(default_factory=dict)


class _Rejector:
    """Collects the first failure reason per row, vectorised."""

    def __init__(self, raw: pd.DataFrame, table: str):
        self.raw, self.table = raw, table
        n = len(raw)
        self.reason = np.full(n, None, dtype=object)
        self.column = np.full(n, None, dtype=object)
        if REJECT_REASON in raw:  # a reader's own verdict (e.g. malformed XML) comes first
            pre = raw[REJECT_REASON].notna().to_numpy(dtype=bool)
            self.reason[pre] = raw[REJECT_REASON].to_numpy(dtype=object)[pre]
            if REJECT_COLUMN in raw:
                col = raw[REJECT_COLUMN]
                self.column[pre] = col.where(col.notna(), None).to_numpy(dtype=object)[pre]

    def fail(self, mask: pd.Series | np.ndarray, column: str, reason: str | pd.Series) -> None:
        if isinstance(mask, pd.Series):
            mask = mask.astype("boolean").fillna(False).to_numpy(dtype=bool)
        mask = np.asarray(mask, dtype=bool) & (self.reason == None)  # noqa: E711
        if not mask.any():
            return
        self.reason[mask] = reason if isinstance(reason, str) else np.asarray(reason)[mask]
        self.column[mask] = column

    @property
    def rejected(self) -> np.ndarray:
        return self.reason != None  # noqa: E711

    def result(self, typed: pd.DataFrame) -> Validated:
        bad = self.rejected
        raw_bad = self.raw.loc[bad]
        cols = self.column[bad]
        # Contacts are private whichever column a value sits in: none reaches the rejects.
        withheld = set(raw_bad.columns) if self.table == "contacts" else WITHHELD
        values = [
            None if c in withheld or c is None else raw_bad[c].iat[i]
            for i, c in enumerate(cols)  # only over rejected rows, a small minority
        ]
        rejects = pd.DataFrame(
            {
                "table": self.table,
                "source_file": raw_bad[SOURCE_FILE].to_numpy(),
                "source_row": raw_bad[SOURCE_ROW].to_numpy(dtype="int64"),
                "column": cols,
                "reason": self.reason[bad],
                "value": pd.array(
                    [None if v is None or v is pd.NA else str(v) for v in values], dtype="string"
                ),
            }
        )
        return Validated(typed.loc[~bad].reset_index(drop=True), rejects)


def _dates(r: _Rejector, column: str, required: bool) -> pd.Series:
    parsed, bad = nz.parse_dates(r.raw[column])
    r.fail(
        bad, column, f"{column} is not a date (expected YYYY-MM-DD, YYYYMMDD, YYYY/MM/DD or era)"
    )
    if required:
        r.fail(parsed.isna(), column, f"{column} is missing")
    return parsed


def _person_ids(r: _Rejector, raw: pd.DataFrame) -> pd.Series:
    """``person_id`` half-width folded; rows without one are rejected."""
    pid = nz.to_halfwidth(raw["person_id"])
    r.fail(pid.isna(), "person_id", "person_id is missing")
    return pid.astype("string")


def validate_checkups(
    raw: pd.DataFrame,
    today: pd.Timestamp | None = None,
    coding: nz.QuestionnaireCoding = "auto",
    min_fiscal_year: int = FIRST_TOKUTEI_FY,
) -> Validated:
    """Type, normalise and check raw checkup rows; derive fiscal year, age, BMI and eGFR.

    ``coding`` says how pre-FY2024 questionnaire answers are coded
    (:func:`data.normalise.decide_questionnaire_coding`); exams before fiscal year
    ``min_fiscal_year`` are rejected. Steps: keys and dates → numbers → codes (questionnaire
    harmonised) → ranges and derived items → soft flags.
    """
    r = _Rejector(raw, "checkups")
    out = _keys_and_dates(r, raw, today or pd.Timestamp.today().normalize(), min_fiscal_year)
    markers = _numbers(r, raw, out)
    codes = _codes(r, raw, out, coding)
    derived = _ranges_and_derived(r, out)
    out["soft_flags"] = _soft_flags(raw, out, codes.invalid, derived)
    for col in ("sbp", "dbp", "age", "fiscal_year"):
        out[col] = _as_int16(out[col])
    out[SOURCE_FILE] = raw[SOURCE_FILE].to_numpy()
    out[SOURCE_ROW] = raw[SOURCE_ROW].to_numpy()
    result = r.result(out)
    kept = ~r.rejected
    result.report = {
        # Years whose rows were all rejected (an exam in 1900) are not a coding decision.
        "questionnaire_coding": codes.decisions.loc[
            codes.decisions["fiscal_year"].isin(out.loc[kept, "fiscal_year"].dropna().unique())
        ].to_dict(orient="records")
        if len(codes.decisions)
        else [],
        "invalid_codes": _invalid_code_counts(codes.invalid.loc[kept], codes.coding_of_row[kept]),
        "derived_out_of_range": {
            "bmi": int((derived.bmi_out & kept).sum()),
            "egfr": int((derived.egfr_out & kept).sum()),
        },
        "missing_markers": {c: int((m & kept).sum()) for c, m in markers.items()},
    }
    return result


def _keys_and_dates(
    r: _Rejector, raw: pd.DataFrame, today: pd.Timestamp, min_fiscal_year: int
) -> pd.DataFrame:
    """Person ID, exam and birth dates (checked), fiscal year and 年度末年齢."""
    out = pd.DataFrame(index=raw.index)
    out["person_id"] = _person_ids(r, raw)
    out["exam_date"] = _dates(r, "exam_date", required=True)
    out["birth_date"] = _dates(r, "birth_date", required=True)
    r.fail(out["exam_date"] > today, "exam_date", "exam_date is in the future")
    r.fail(
        out["birth_date"] >= out["exam_date"], "birth_date", "birth_date is not before exam_date"
    )
    out["fiscal_year"] = nz.fiscal_year(out["exam_date"])
    r.fail(
        out["fiscal_year"] < min_fiscal_year,
        "exam_date",
        f"exam_date before FY{min_fiscal_year} (特定健診 began in FY{FIRST_TOKUTEI_FY}; "
        "the floor is the setting min_fiscal_year)",
    )
    out["age"] = nz.age_at_fiscal_year_end(out["birth_date"], out["fiscal_year"])
    r.fail(out["age"] < 18, "birth_date", "age at fiscal-year end is under 18")
    r.fail(
        out["age"] > MAX_AGE,
        "birth_date",
        f"age at fiscal-year end is over {MAX_AGE} (a placeholder birth date such as 1900-01-01?)",
    )
    return out


#: What exports write for "not measured" in a number column (欠測の表記), read as missing and
#: counted per column in the manifest. Compared after NFKC, trimmed, case-folded.
MISSING_MARKERS = frozenset(
    {"-", "--", "―", "—", "na", "n/a", "nan", "null", "none", "未実施", "未測定", "欠測", "未検査"}
)


def _folded(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """``(codes, texts)``: each row's index into its column's distinct values, and those values
    NFKC-folded, trimmed and lower case (a column holds few distinct texts: fold each once)."""
    codes, uniques = pd.factorize(values)
    return codes, pd.Series(uniques, dtype="string").str.normalize("NFKC").str.strip().str.lower()


def _missing_markers(values: pd.Series) -> np.ndarray:
    codes, folded = _folded(values)
    hit = folded.isin(MISSING_MARKERS).fillna(False).to_numpy(dtype=bool)
    return np.append(hit, False)[codes]


def _numbers(r: _Rejector, raw: pd.DataFrame, out: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every numeric measurement as float64 (a value that is not a number rejects the row).

    Returns, per column, the rows whose value was a "not measured" marker (now missing).
    """
    markers = {}
    for col, kind in CHECKUP_COLUMNS.items():
        if col in out.columns or kind == "str" or kind == "date":
            continue
        if col in CODES:
            continue  # after questionnaire harmonisation (_codes)
        column = raw[col]
        marked = _missing_markers(column) if column.dtype == object else None
        if marked is not None and marked.any():
            markers[col] = marked
            column = column.where(~marked, None)
        values, bad = nz.coerce_numeric(column)
        r.fail(bad, col, f"{col} is not a number")
        out[col] = values.astype("float64")
    return markers


@dataclass(frozen=True)
class _Codes:
    invalid: pd.DataFrame  # ``<code>_invalid`` flags per row
    decisions: pd.DataFrame  # questionnaire coding per source file and fiscal year
    coding_of_row: np.ndarray  # "by-year" / "current"


def _codes(
    r: _Rejector, raw: pd.DataFrame, out: pd.DataFrame, coding: nz.QuestionnaireCoding
) -> _Codes:
    """Coded items, questionnaire answers harmonised to the 2024 codes.

    A bad questionnaire answer, urine dipstick or blood-draw timing code never costs the row
    its measurements: it becomes missing and is flagged (sex stays a reject).
    """
    codes = pd.DataFrame(index=raw.index)
    code_bad: dict[str, np.ndarray] = {}
    for col in CODES:
        column = _sex_words(raw[col]) if col == "sex" else raw[col]
        values, bad = nz.coerce_int_code(column, allowed=None)
        if col in REJECTING_CODES:
            r.fail(bad, col, f"{col} is not an integer code")
        code_bad[col] = bad.to_numpy(dtype=bool)
        codes[col] = values
    codes["fiscal_year"] = out["fiscal_year"]
    legacy, decisions = nz.decide_questionnaire_coding(
        codes,
        _coding_groups(raw),
        coding,
        stated=raw[QUESTIONNAIRE_CODING] if QUESTIONNAIRE_CODING in raw else None,
    )
    harmonised, problems = nz.harmonise_questionnaire_with_problems(codes, legacy=legacy)
    flags: dict[str, np.ndarray] = {}
    for col, allowed in CODES.items():
        v = harmonised[col]
        wrong = (v.notna() & ~v.isin(allowed)).fillna(False).to_numpy(dtype=bool)
        if col in problems.columns:
            wrong |= problems[col].to_numpy(dtype=bool)
        if col in REJECTING_CODES:
            r.fail(wrong, col, f"{col} code not allowed (allowed: {', '.join(map(str, allowed))})")
        else:
            wrong |= code_bad[col]
            flags[f"{col}_invalid"] = wrong
            v = v.mask(wrong)
        out[col] = v.astype("Int8")
    r.fail(out["sex"].isna(), "sex", "sex is missing")
    return _Codes(
        pd.DataFrame(flags, index=raw.index), decisions, np.where(legacy, "by-year", "current")
    )


#: Words exports write for sex instead of the code (1 male, 2 female), after NFKC and lower case.
SEX_WORDS = {"男": "1", "男性": "1", "m": "1", "male": "1", "女": "2", "女性": "2", "f": "2",
             "female": "2"}  # fmt: skip


def _sex_words(values: pd.Series) -> pd.Series:
    if values.dtype != object:
        return values
    codes, folded = _folded(values)
    words = np.append(folded.map(SEX_WORDS).to_numpy(dtype=object), None)[codes]
    return values.where(pd.isna(words), words).astype(object)


@dataclass(frozen=True)
class _Derived:
    bmi_mismatch: pd.Series
    egfr_mismatch: pd.Series
    bmi_out: np.ndarray  # derived BMI outside its hard range (left missing)
    egfr_out: np.ndarray
    bp_pair_invalid: np.ndarray


def _ranges_and_derived(r: _Rejector, out: pd.DataFrame) -> _Derived:
    """HbA1c in NGSP, hard ranges, the SBP/DBP pair, BMI and eGFR where the export left them out."""
    out["hba1c"] = nz.harmonise_hba1c(out)["hba1c"]
    hba1c = out["hba1c"]
    r.fail(
        (hba1c >= 20) & (hba1c <= 130),
        "hba1c",
        "hba1c looks like mmol/mol, not % (NGSP); convert before export",
    )
    for col, (hard_lo, hard_hi, _, _) in RANGES.items():
        v = out[col]
        r.fail((v < hard_lo) | (v > hard_hi), col, f"{col} outside hard range {hard_lo}-{hard_hi}")
    # A pair that cannot be one reading (SBP not above DBP) loses the pair, not the row.
    bp_pair_invalid = (out["sbp"] <= out["dbp"]).fillna(False).to_numpy(dtype=bool)
    out.loc[bp_pair_invalid, ["sbp", "dbp"]] = np.nan
    # A derived value outside the hard range of its item (e.g. eGFR 793 from a creatinine of
    # 0.1) is left missing and flagged.
    bmi = nz.derive_bmi(out["height_cm"], out["weight_kg"])
    bmi_mismatch = (out["bmi"] - bmi).abs() > 0.3
    bmi, bmi_out = _within_hard_range(bmi, "bmi")
    bmi_out &= out["bmi"].isna().to_numpy(dtype=bool)
    out["bmi"] = out["bmi"].fillna(bmi)
    egfr = nz.derive_egfr(out["creatinine"], out["age"], out["sex"])
    egfr_mismatch = (out["egfr"] - egfr).abs() > 1.0
    egfr, egfr_out = _within_hard_range(egfr, "egfr")
    egfr_out &= out["egfr"].isna().to_numpy(dtype=bool)
    out["egfr"] = out["egfr"].fillna(egfr)
    return _Derived(bmi_mismatch, egfr_mismatch, bmi_out, egfr_out, bp_pair_invalid)


def outside_plausible_range(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row and measured item of :data:`RANGES` in ``frame``: the value lies outside the
    item's plausible (soft) range — a soft flag at ingest; a see-a-doctor letter resting on one
    is held for staff to verify (scoring.selection)."""
    cols = {}
    for item, (_, _, lo, hi) in RANGES.items():
        if item in frame:
            v = pd.to_numeric(frame[item], errors="coerce").to_numpy("float64", na_value=np.nan)
            cols[item] = (v < lo) | (v > hi)
    return pd.DataFrame(cols, index=frame.index)


def _soft_flags(
    raw: pd.DataFrame, out: pd.DataFrame, invalid: pd.DataFrame, d: _Derived
) -> pd.Series:
    """``;``-joined soft flags per row (values kept): soft ranges, mismatches, invalid codes,
    and what the reader flagged."""
    soft = (
        pd.DataFrame(
            dict(outside_plausible_range(out).items())
            | {
                "bmi_mismatch": d.bmi_mismatch,
                "egfr_mismatch": d.egfr_mismatch,
                "age_outside_40_74": ~out["age"].between(40, 74),
                "bmi_derived_out_of_range": d.bmi_out,
                "egfr_derived_out_of_range": d.egfr_out,
                "sbp_not_above_dbp": d.bp_pair_invalid,
            }
            | {c: invalid[c] for c in invalid.columns}
        )
        .fillna(False)
        .astype(bool)
    )
    any_soft = soft.any(axis=1)
    flags = soft.loc[any_soft].dot(soft.columns + ";").str.rstrip(";")
    flags = flags.reindex(out.index).astype("string")
    if READER_FLAGS in raw:  # e.g. an XML value at the edge of the measuring range
        reader = raw[READER_FLAGS].astype("string").where(lambda f: f.str.len() > 0)
        flags = (flags.fillna("") + ";" + reader.fillna("")).str.strip(";").replace("", pd.NA)
    return flags.astype("string")


def _as_int16(values: pd.Series) -> pd.Series:
    """Round to Int16; a value beyond Int16 belongs to a rejected row (its range check failed)
    and becomes missing instead of failing the cast."""
    v = pd.to_numeric(values, errors="coerce").astype("float64").round()
    return v.where(v.abs() < 2**15).astype("Int16")


def _coding_groups(raw: pd.DataFrame) -> pd.Series:
    """The unit of a coding decision: the source file; documents whose reader stated their
    coding (XML, one file per checkup) are reported together."""
    group = raw[SOURCE_FILE].astype("string")
    if QUESTIONNAIRE_CODING in raw:
        group = group.mask(raw[QUESTIONNAIRE_CODING].notna(), "(XML documents)")
    return group


def _within_hard_range(values: pd.Series, col: str) -> tuple[pd.Series, np.ndarray]:
    lo, hi = RANGES[col][:2]
    outside = ((values < lo) | (values > hi)).fillna(False).to_numpy(dtype=bool)
    return values.mask(outside), outside


def _invalid_code_counts(invalid: pd.DataFrame, coding: np.ndarray) -> list[dict]:
    """Answers set to missing, per item and per coding the row was read in."""
    rows = []
    for flag in invalid.columns:
        mask = invalid[flag].to_numpy(dtype=bool)
        for name in ("by-year", "current"):
            n = int((mask & (coding == name)).sum())
            if n:
                rows.append({"item": flag.removesuffix("_invalid"), "coding": name, "rows": n})
    return rows


def validate_enrollment(raw: pd.DataFrame) -> Validated:
    """Type and check NHI membership periods (資格期間)."""
    r = _Rejector(raw, "enrollment")
    out = pd.DataFrame(index=raw.index)
    out["person_id"] = _person_ids(r, raw)
    out["enrolled_from"] = _dates(r, "enrolled_from", required=True)
    # 9999-12-31 is how many systems write "still a member" (the contract's empty cell).
    until = raw["enrolled_until"].astype("string").str.strip()
    still = until.str.fullmatch(_OPEN_END, na=False).to_numpy(dtype=bool)
    r.raw = raw.assign(enrolled_until=raw["enrolled_until"].where(~still, None))
    out["enrolled_until"] = _dates(r, "enrolled_until", required=False)
    r.fail(
        out["enrolled_until"] < out["enrolled_from"],
        "enrolled_until",
        "enrolled_until is before enrolled_from",
    )
    reason = raw["end_reason"].astype("string").str.normalize("NFKC").str.strip()
    reason = reason.replace(END_REASON_WORDS).str.lower()
    r.fail(
        reason.notna() & ~reason.isin(END_REASONS),
        "end_reason",
        f"end_reason not one of {', '.join(END_REASONS)}",
    )
    out["end_reason"] = reason
    out[SOURCE_FILE] = raw[SOURCE_FILE].to_numpy()
    out[SOURCE_ROW] = raw[SOURCE_ROW].to_numpy()
    result = r.result(out)
    result.report = {"open_end_dates": int((still & ~r.rejected).sum())}
    return result


#: ``enrolled_until`` texts read as "still a member" (open-ended period).
_OPEN_END = r"9999[-/.]?12[-/.]?31|99999999"

_TRUE = {"true", "1", "yes", "y", "t", "はい", "○"}
_FALSE = {"false", "0", "no", "n", "f", "いいえ", ""}


def validate_contacts(raw: pd.DataFrame) -> Validated:
    """Type and check the contact side table (連絡先). Raw values never reach the rejects."""
    r = _Rejector(raw, "contacts")
    out = pd.DataFrame(index=raw.index)
    out["person_id"] = _person_ids(r, raw)
    for col in ("name", "name_kana", "address"):
        out[col] = raw[col].astype("string").str.strip()
    out["postal_code"] = nz.to_halfwidth(raw["postal_code"]).astype("string")
    out["language"] = raw["language"].astype("string").str.strip().str.lower().fillna("ja")
    opt = raw["opt_out"].astype("string").str.strip().str.lower().fillna("")
    r.fail(~opt.isin(_TRUE | _FALSE), "opt_out", "opt_out is not true/false")
    out["opt_out"] = opt.isin(_TRUE)
    out[SOURCE_FILE] = raw[SOURCE_FILE].to_numpy()
    out[SOURCE_ROW] = raw[SOURCE_ROW].to_numpy()
    return r.result(out)
