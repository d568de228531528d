"""Normalise raw checkup values into canonical form (正規化).

Everything here is vectorised over pandas Series/DataFrames. Text work is done once per distinct
value (factorise → clean the uniques → map back), so a million-row column with a few thousand
distinct spellings costs a few thousand string operations.

Contents:

- text: :func:`to_halfwidth` (全角→半角, NFKC);
- dates: :func:`parse_dates` (西暦・和暦 / Gregorian and Japanese era dates), :func:`fiscal_year`
  (年度), :func:`age_at_fiscal_year_end` (年度末年齢);
- HbA1c units: :func:`hba1c_jds_to_ngsp`, :func:`hba1c_ngsp_to_jds`, :func:`harmonise_hba1c`;
- questionnaire versions (標準的な質問票): :func:`harmonise_questionnaire`,
  :func:`to_legacy_questionnaire`, :data:`QUESTIONNAIRE_CODES`;
- derived values: :func:`derive_bmi`, :func:`derive_egfr`;
- numbers and codes: :func:`coerce_numeric`, :func:`coerce_int_code`.

Functions that may meet garbage return ``(values, bad)``: ``bad`` is True where the input held
something (not empty) that could not be read; such values come back missing. Empty stays
missing and is never bad.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from typing import Any, Literal

import numpy as np
import pandas as pd

from data.columns import QUESTIONNAIRE_COLUMNS

log = logging.getLogger(__name__)

__all__ = [
    "ERA_START_YEARS",
    "LAST_JDS_HBA1C_FY",
    "LAST_LEGACY_QUESTIONNAIRE_FY",
    "LEGACY_QUESTIONNAIRE_CODES",
    "QUESTIONNAIRE_CODES",
    "QUESTIONNAIRE_CODINGS",
    "QuestionnaireCoding",
    "age_at_fiscal_year_end",
    "coerce_int_code",
    "coerce_numeric",
    "decide_questionnaire_coding",
    "derive_bmi",
    "derive_egfr",
    "fiscal_year",
    "harmonise_hba1c",
    "harmonise_questionnaire",
    "harmonise_questionnaire_with_problems",
    "hba1c_jds_to_ngsp",
    "hba1c_ngsp_to_jds",
    "parse_dates",
    "to_halfwidth",
    "to_legacy_questionnaire",
]

# --------------------------------------------------------------------------------------------
# Text (全角→半角)
# --------------------------------------------------------------------------------------------

#: Dashes that always mean minus/hyphen in data fields: ‐ ‑ ‒ – − ﹣ (－ is handled by NFKC).
_ALWAYS_MINUS = "\u2010\u2011\u2012\u2013\u2212\ufe63"
#: Marks that are a minus only next to digits: ー (長音, also half-width ｰ after NFKC), — ―.
_CONTEXT_MINUS = "\u30fc\u2014\u2015"
_ALWAYS_MINUS_RE = re.compile(f"[{_ALWAYS_MINUS}]")
_CONTEXT_MINUS_RE = re.compile(
    f"(?:(?<=\\d)[{_CONTEXT_MINUS}](?=\\d)|^\\s*[{_CONTEXT_MINUS}](?=\\s*\\.?\\d))"
)
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def _factorize(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (−1 = missing) and distinct values of ``s`` as an object array."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


def _as_text(v: Any) -> str:
    """One distinct raw value as text; integral numbers lose their ``.0`` (2.0 → "2")."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return str(v)
    if isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    return str(v)


def _halfwidth_uniques(uniques: np.ndarray) -> np.ndarray:
    """:func:`to_halfwidth` on an array of distinct non-missing values (object array out)."""
    if len(uniques) == 0:
        return np.asarray(uniques, dtype=object)
    if pd.api.types.infer_dtype(uniques, skipna=False) != "string":
        uniques = np.array([_as_text(v) for v in uniques], dtype=object)
    t = pd.Series(uniques, dtype=object).str.normalize("NFKC")
    t = t.str.replace(_INVISIBLE_RE, "", regex=True)
    t = t.str.replace(_ALWAYS_MINUS_RE, "-", regex=True)
    t = t.str.replace(_CONTEXT_MINUS_RE, "-", regex=True)
    t = t.str.strip()
    return t.where(t != "", np.nan).to_numpy(dtype=object)


def to_halfwidth(s: pd.Series) -> pd.Series:
    """Full-width to half-width (全角→半角) and trim, for codes, numbers and dates.

    Unicode NFKC turns full-width digits, letters, punctuation and the ideographic space
    (``"１２０"`` → ``"120"``, ``"Ｒ６．５．１"`` → ``"R6.5.1"``, ``"－"`` → ``"-"``) and also
    half-width kana into full-width kana and era ligatures (㍻ ㋿) into 平成 令和. Other minus-like
    dashes (‐ ‑ ‒ – − ﹣) become ``-``; ー (長音符), — and ― become ``-`` only in a numeric context
    (between two digits, or leading before a number: ``"ー5"`` → ``"-5"``), so ``"データ"`` is
    untouched. Leading/trailing whitespace and zero-width characters are removed.

    Missing (None/NaN/NA) stays missing and so does anything that trims to ``""``; missing comes
    back as NaN in an object Series with the same index and name. Non-text values become text
    (``2.0`` → ``"2"``).
    """
    codes, uniques = _factorize(s)
    clean = np.append(_halfwidth_uniques(uniques), np.nan)
    return pd.Series(clean[codes], index=s.index, name=s.name, dtype=object)


# --------------------------------------------------------------------------------------------
# Dates (西暦・和暦)
# --------------------------------------------------------------------------------------------

#: First Gregorian year of each era (元年); era year N is ``base + N − 1``.
ERA_START_YEARS: dict[str, int] = {"M": 1868, "T": 1912, "S": 1926, "H": 1989, "R": 2019}
_ERA_ALIASES: dict[str, str] = {
    "明治": "M",
    "明": "M",
    "大正": "T",
    "大": "T",
    "昭和": "S",
    "昭": "S",
    "平成": "H",
    "平": "H",
    "令和": "R",
    "令": "R",
    **{k: k for k in ERA_START_YEARS},
}
_ERA = "(?P<era>明治|大正|昭和|平成|令和|[明大昭平令MTSHR])"
_ERA_YEAR = r"(?P<y>元|\d{1,2})"
_TIME = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
#: Accepted spellings, tried in order on half-width, upper-cased text.
_DATE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        # 2024-05-01, 2024/5/1, 2024.05.01, Excel's "2024-05-01 00:00:00"
        rf"^(?P<y>\d{{4}})(?P<sep>[-/.])(?P<m>\d{{1,2}})(?P=sep)(?P<d>\d{{1,2}}){_TIME}$",
        # 20240501
        r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$",
        # 2024年5月1日
        r"^(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日?$",
        # R6.5.1, H31/4/1, s39-4-15, 令6.5.1
        rf"^{_ERA}\s*{_ERA_YEAR}\s*(?P<sep>[-/.])\s*(?P<m>\d{{1,2}})\s*(?P=sep)\s*(?P<d>\d{{1,2}})$",
        # 令和6年5月1日, 令和元年5月1日, R6年5月1日
        rf"^{_ERA}\s*{_ERA_YEAR}\s*年\s*(?P<m>\d{{1,2}})\s*月\s*(?P<d>\d{{1,2}})\s*日?$",
    )
)


def _parse_date_texts(texts: np.ndarray) -> np.ndarray:
    """Parse an object array of distinct cleaned texts (NaN allowed) → datetime64[ns] array."""
    t = pd.Series(texts, dtype=object).str.upper()
    year = pd.Series(np.nan, index=t.index)
    month = year.copy()
    day = year.copy()
    todo = t.notna()
    for pat in _DATE_PATTERNS:
        if not todo.any():
            break
        m = t[todo].str.extract(pat)
        hit = m["y"].notna()
        if not hit.any():
            continue
        m = m[hit]
        y = m["y"].replace("元", "1").astype(float)
        if "era" in m:
            y = m["era"].map(_ERA_ALIASES).map(ERA_START_YEARS) + y - 1
            y = y.where(m["y"].ne("0"))  # 0年 does not exist
        year[m.index] = y
        month[m.index] = m["m"].astype(float)
        day[m.index] = m["d"].astype(float)
        todo[m.index] = False
    parts = pd.DataFrame({"year": year, "month": month, "day": day})
    parsed = pd.to_datetime(parts, errors="coerce")
    return parsed.to_numpy(dtype="datetime64[ns]")


def parse_dates(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Read dates written in any of the accepted ways (日付の読み取り).

    Accepted: ``2024-05-01``, ``20240501``, ``2024/05/01`` and ``2024/5/1`` (also ``.``
    separators and a trailing time as Excel writes it, ``2024-05-01 00:00:00``; the time is
    dropped), ``2024年5月1日``, full-width forms of all of these, and Japanese era dates (和暦):
    abbreviated ``R6.5.1``, ``H31/4/1``, ``s39-4-15``, ``T15.1.1`` (M 明治, T 大正, S 昭和, H 平成,
    R 令和; upper or lower case; ``.``, ``/`` or ``-``) and kanji ``令和6年5月1日``,
    ``令和元年5月1日`` (元年 = year 1). Era year N is ``ERA_START_YEARS[era] + N − 1``. A date past
    the end of its era (``H31.5.1``, which forms printed before the 2019 change still produce) is
    read arithmetically (2019-05-01), not rejected. Year-only or two-digit-year forms are not
    accepted. Datetime input (dtype datetime64) is returned unchanged; ``datetime``/``date``/
    ``Timestamp`` objects in an object column are taken as they are; integers such as 20240501
    are read as text.

    Returns ``(dates, bad)``: ``dates`` is datetime64[ns] with NaT where missing or unreadable;
    ``bad`` is True where the input was not empty but was unreadable or an impossible date
    (``2023-02-29``, ``2024-13-01``, ``H0.1.1``).
    """
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        return out.astype("datetime64[ns]"), pd.Series(False, index=s.index, name=s.name)

    codes, uniques = _factorize(s)
    is_dt = np.fromiter(
        (isinstance(v, _dt.date | np.datetime64) for v in uniques), dtype=bool, count=len(uniques)
    )
    parsed = np.full(len(uniques), np.datetime64("NaT"), dtype="datetime64[ns]")
    filled = np.zeros(len(uniques), dtype=bool)
    if is_dt.any():
        parsed[is_dt] = pd.to_datetime(pd.Series(uniques[is_dt]), errors="coerce").to_numpy(
            dtype="datetime64[ns]"
        )
        filled[is_dt] = True
    rest = ~is_dt
    if rest.any():
        texts = _halfwidth_uniques(uniques[rest])
        parsed[rest] = _parse_date_texts(texts)
        filled[rest] = pd.notna(texts)  # "" / "  " → missing, not bad
    bad_u = filled & np.isnat(parsed)

    dates = np.append(parsed, np.datetime64("NaT", "ns"))[codes]
    bad = np.append(bad_u, False)[codes]
    return (
        pd.Series(dates, index=s.index, name=s.name, dtype="datetime64[ns]"),
        pd.Series(bad, index=s.index, name=s.name, dtype=bool),
    )


def _as_dates(dates: Any) -> pd.Series:
    s = dates if isinstance(dates, pd.Series) else pd.Series(dates)
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = parse_dates(s)[0]
    return s


def fiscal_year(dates: pd.Series) -> pd.Series:
    """Japanese fiscal year (年度, April–March): the year if month ≥ 4, else the year − 1.

    ``2024-03-31`` → 2023, ``2024-04-01`` → 2024. Non-datetime input goes through
    :func:`parse_dates`. Missing → NA (Int64).
    """
    d = _as_dates(dates)
    year = d.dt.year.astype("Int64")
    before_april = (d.dt.month < 4).astype("Int64")
    return (year - before_april).rename(d.name)


def age_at_fiscal_year_end(birth_date: pd.Series, fiscal_year: pd.Series | int) -> pd.Series:
    """Age in completed years on 31 March of ``fiscal_year + 1`` (年度末年齢).

    Uses the plain calendar rule: the age goes up on the birthday itself. Someone born
    1984-04-01 is therefore 40, not 41, on 2025-03-31 (end of FY2024). Japanese law
    (年齢計算ニ関スル法律) instead adds the year at the end of the day *before* the birthday, which
    makes 1 April births one year older on 31 March. This is why they are counted in the earlier
    school year, and it matters at the 40/75 eligibility edges (「年度内に40歳に達する者」). The
    reference day is 31 March, after any 29 February, so leap-day births need no special case
    under either rule.

    ``birth_date``: datetime Series (other input goes through :func:`parse_dates`);
    ``fiscal_year``: Int64 Series aligned with it, or one year for all. Missing → NA (Int64).
    """
    b = _as_dates(birth_date)
    if isinstance(fiscal_year, pd.Series):
        fy = pd.to_numeric(fiscal_year, errors="coerce").astype("Int64")
    else:
        fy = int(fiscal_year)
    birth_year = b.dt.year.astype("Int64")
    birthday_after_march = (b.dt.month >= 4).astype("Int64")  # birthday not yet reached by 31 Mar
    age = fy + 1 - birth_year - birthday_after_march
    return age.astype("Int64").rename("age")


# --------------------------------------------------------------------------------------------
# HbA1c (JDS → NGSP)
# --------------------------------------------------------------------------------------------

#: Last fiscal year whose HbA1c results are in JDS units (from FY2013 on, NGSP).
LAST_JDS_HBA1C_FY = 2012
#: NGSP = JDS + this (percentage points).
_HBA1C_NGSP_MINUS_JDS = 0.4


def _round1(x: Any) -> Any:
    if isinstance(x, pd.Series):
        return x.round(1)
    return float(np.round(x, 1))


def _to_float(x: Any) -> Any:
    """Float Series for arithmetic; scalar → float.

    numpy int/float Series → float64 (NaN); nullable Series → Float64; text → Float64 via
    :func:`coerce_numeric` (unreadable → NA); other array-likes → float64 Series.
    """
    if isinstance(x, pd.Series):
        if pd.api.types.is_bool_dtype(x) or not pd.api.types.is_numeric_dtype(x):
            return coerce_numeric(x)[0]
        if isinstance(x.dtype, np.dtype):
            return x.astype("float64")
        return x.astype("Float64")
    if np.ndim(x) == 0:
        return np.nan if pd.isna(x) else float(x)
    return pd.Series(np.asarray(x, dtype=float))


def hba1c_jds_to_ngsp(x: Any) -> Any:
    """HbA1c JDS % → NGSP % (国際標準値), rounded to 0.1.

    Uses NGSP = JDS + 0.4, the JDS's practical rule (docs/domain.md §HbA1c units). It maps the old
    checkup thresholds exactly onto the new ones (JDS 5.2/6.1 → NGSP 5.6/6.5), and
    :func:`hba1c_ngsp_to_jds` inverts it exactly. The formal equation NGSP = 1.02 × JDS + 0.25
    differs from it by less than 0.1 over 4.0–9.9 % JDS; it is deliberately not used, because it
    is not an exact inverse after rounding. Scalar → float; Series → float64 for numpy input,
    Float64 otherwise.
    """
    return _round1(_to_float(x) + _HBA1C_NGSP_MINUS_JDS)


def hba1c_ngsp_to_jds(x: Any) -> Any:
    """HbA1c NGSP % → JDS %, rounded to 0.1; the exact inverse of :func:`hba1c_jds_to_ngsp`."""
    return _round1(_to_float(x) - _HBA1C_NGSP_MINUS_JDS)


def harmonise_hba1c(df: pd.DataFrame, last_jds_fy: int = LAST_JDS_HBA1C_FY) -> pd.DataFrame:
    """Return a copy with ``hba1c`` in NGSP for every row (HbA1c の国際標準化).

    Rows with ``fiscal_year ≤ last_jds_fy`` (default FY2012, the last year of JDS reporting)
    are converted JDS → NGSP; later rows and rows without a fiscal year are left alone. Apply
    once: it is not idempotent.
    """
    out = df.copy()
    if "hba1c" not in out:
        return out
    fy = pd.to_numeric(out["fiscal_year"], errors="coerce")
    old = (fy <= last_jds_fy).fillna(False).to_numpy(dtype=bool)
    hba1c = _to_float(out["hba1c"])  # float64 stays float64
    out["hba1c"] = hba1c.mask(old, hba1c_jds_to_ngsp(hba1c))
    return out


# --------------------------------------------------------------------------------------------
# Questionnaire versions (標準的な質問票)
# --------------------------------------------------------------------------------------------

#: Last fiscal year answered on the pre-2024 questionnaire (FY2018–2023 version).
LAST_LEGACY_QUESTIONNAIRE_FY = 2023

_YES_NO = (1, 2)
#: Allowed codes per item, canonical (2024) coding of docs/contract.md §Checkups.
QUESTIONNAIRE_CODES: dict[str, tuple[int, ...]] = {
    "q_med_bp": _YES_NO,
    "q_med_glucose": _YES_NO,
    "q_med_lipid": _YES_NO,
    "q_hist_stroke": _YES_NO,
    "q_hist_heart": _YES_NO,
    "q_hist_kidney": _YES_NO,
    "q_anemia": _YES_NO,
    "q_smoking": (1, 2, 3),  # 1 smokes, 2 quit (not in the last month), 3 no
    "q_weight_gain": _YES_NO,
    "q_exercise": _YES_NO,
    "q_walking": _YES_NO,
    "q_walk_fast": _YES_NO,
    "q_chewing": (1, 2, 3),
    "q_eating_speed": (1, 2, 3),
    "q_late_dinner": _YES_NO,
    "q_snacks": (1, 2, 3),
    "q_skip_breakfast": _YES_NO,
    "q_alcohol_freq": (1, 2, 3, 4, 5, 6, 7, 8),  # 1 daily … 6 <1 d/month, 7 quit, 8 never
    "q_alcohol_amount": (1, 2, 3, 4, 5),  # 合/day: <1, 1-2, 2-3, 3-5, ≥5
    "q_sleep": _YES_NO,
    "q_intention": (1, 2, 3, 4, 5),
    "q_guidance_received": _YES_NO,  # ever received 特定保健指導 (9N808)
}

#: Items whose codes differ before FY2024, with their old (FY2018–2023) codes
#: (docs/domain.md §Questionnaire versions).
LEGACY_QUESTIONNAIRE_CODES: dict[str, tuple[int, ...]] = {
    "q_smoking": (1, 2),  # 1 yes, 2 no
    "q_alcohol_freq": (1, 2, 3),  # 1 daily, 2 sometimes, 3 hardly ever (cannot drink)
    "q_alcohol_amount": (1, 2, 3, 4),  # <1, 1-2, 2-3, ≥3 合
    "q_guidance_received": (1, 2),  # old item 22 (9N806): wishes for health guidance 1 yes 2 no
}
#: Last fiscal year of the first form (FY2008–2017), whose items 13 and 16 asked other questions:
#: weight change ±3 kg in a year (where chewing is since FY2018) and late-evening snacks, yes/no
#: (where the three-level snacks item is). A CSV answer in those columns for such a year is not
#: an answer to today's question: it is set to missing and reported.
LAST_FIRST_FORM_FY = 2017
FIRST_FORM_OTHER_QUESTIONS = ("q_chewing", "q_snacks")
#: Old code → canonical code. An item with an empty mapping has no canonical counterpart.
_LEGACY_TO_CANONICAL: dict[str, dict[int, int]] = {
    "q_smoking": {1: 1, 2: 3},
    "q_alcohol_freq": {1: 1, 2: 3, 3: 8},
    "q_alcohol_amount": {1: 1, 2: 2, 3: 3, 4: 4},
    "q_guidance_received": {},
}
#: Canonical code → old code (for writing realistic old-format synthetic exports).
_CANONICAL_TO_LEGACY: dict[str, dict[int, int]] = {
    "q_smoking": {1: 1, 2: 2, 3: 2},
    "q_alcohol_freq": {1: 1, 2: 2, 3: 2, 4: 2, 5: 2, 6: 3, 7: 3, 8: 3},
    "q_alcohol_amount": {1: 1, 2: 2, 3: 3, 4: 4, 5: 4},
    "q_guidance_received": {1: 1, 2: 2},
}


def _recode(codes: pd.Series, mapping: dict[int, int]) -> pd.Series:
    """Map Int64 codes through ``mapping`` (vectorised lookup); unmapped → NA."""
    lookup = pd.Series(mapping, dtype="Int64")
    return codes.map(lookup).astype("Int64")


def _legacy_rows(df: pd.DataFrame, last_legacy_fy: int) -> tuple[np.ndarray, np.ndarray]:
    if "fiscal_year" not in df:
        raise KeyError("questionnaire harmonisation needs a 'fiscal_year' column")
    fy = pd.to_numeric(df["fiscal_year"], errors="coerce")
    unknown = fy.isna().to_numpy(dtype=bool)
    legacy = (fy <= last_legacy_fy).fillna(False).to_numpy(dtype=bool)
    return legacy, unknown


def harmonise_questionnaire_with_problems(
    df: pd.DataFrame,
    last_legacy_fy: int = LAST_LEGACY_QUESTIONNAIRE_FY,
    legacy: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`harmonise_questionnaire` that also returns its problem mask.

    The mask is a bool DataFrame with one column per ``q_`` column present. It is True where a
    value was present but could not be used: not an integer, or not a valid code for the
    questionnaire version of its row. The version-dependent items (smoking, alcohol,
    item 22) are also flagged on rows without a fiscal year, and the chewing and snacks answers
    of FY2008–2017 rows (:data:`FIRST_FORM_OTHER_QUESTIONS`). Those cells are missing in the
    harmonised frame. ``legacy`` (bool per row) says which rows carry the FY2018–2023 codes
    when the caller has decided it (:func:`decide_questionnaire_coding`); by default, every row
    of a fiscal year up to ``last_legacy_fy``.
    """
    by_year, unknown = _legacy_rows(df, last_legacy_fy)
    legacy = by_year if legacy is None else np.asarray(legacy, dtype=bool) & ~unknown
    fy = pd.to_numeric(df["fiscal_year"], errors="coerce")
    first_form = (fy <= LAST_FIRST_FORM_FY).fillna(False).to_numpy(dtype=bool)
    out = df.copy()
    problems = pd.DataFrame(index=df.index)
    for col in (c for c in QUESTIONNAIRE_COLUMNS if c in df):
        codes, bad = coerce_int_code(df[col], None)
        present = codes.notna().to_numpy(dtype=bool)
        new_ok = codes.isin(QUESTIONNAIRE_CODES[col]).to_numpy(dtype=bool)
        if col in _LEGACY_TO_CANONICAL:
            old_ok = codes.isin(LEGACY_QUESTIONNAIRE_CODES[col]).to_numpy(dtype=bool)
            ok = np.where(legacy, old_ok, new_ok & ~unknown)
            value = codes.where(~legacy, _recode(codes, _LEGACY_TO_CANONICAL[col]))
        else:
            ok = new_ok
            value = codes
        invalid = present & ~ok
        if col in FIRST_FORM_OTHER_QUESTIONS:
            invalid |= present & first_form
        out[col] = value.mask(invalid).astype("Int64")
        problems[col] = bad.to_numpy(dtype=bool) | invalid
    return out, problems


def harmonise_questionnaire(
    df: pd.DataFrame, last_legacy_fy: int = LAST_LEGACY_QUESTIONNAIRE_FY
) -> pd.DataFrame:
    """Bring every questionnaire answer to the canonical 2024 coding (質問票の版の統一).

    Rows with ``fiscal_year ≤ last_legacy_fy`` (default FY2023) carry the FY2018–2023 codes for
    four items, converted like this:

    - ``q_smoking`` (item 8): old 1 yes → 1 smokes; old 2 no → 3 no. Ex-smokers answered "no"
      before 2024 and cannot be told apart from never-smokers, so old "no" becomes 3, never 2.
    - ``q_alcohol_freq`` (item 18): old 1 daily → 1; old 2 sometimes (時々) → 3 (3–4 d/week), a
      deliberate mid-point choice because "sometimes" covered everything from 5–6 d/week to a
      few times a year; old 3 hardly ever / cannot drink → 8 do not (cannot) drink (old
      non-drinkers include ex-drinkers, canonical 7).
    - ``q_alcohol_amount`` (item 19): old 1 <1 合, 2 1–2, 3 2–3 keep their codes; old 4 ≥3 合 →
      4 (3–<5 合), so heavy drinkers of ≥5 合 are under-counted before FY2024.
    - ``q_guidance_received`` (item 22): the old item was a different question (wish for health
      guidance, 9N806), so the value is set to missing.

    Every ``q_`` column is coerced to Int64 (``"２"`` → 2). Codes that are not valid for their row's
    version (``q_smoking`` 3 in FY2022, 9 anywhere) or not integers become missing;
    :func:`harmonise_questionnaire_with_problems` also returns the per-cell mask (ingest counts
    them in the manifest). On rows without a fiscal year the four version-dependent items become missing
    (version unknown). Returns a new frame and does not change ``df``.
    """
    return harmonise_questionnaire_with_problems(df, last_legacy_fy)[0]


#: How the questionnaire answers of a file's pre-FY2024 rows are coded (質問票のコード体系).
#: ``by-year``: each fiscal year in its own version's codes; ``current``: every year already in
#: the 2024 coding; ``auto``: decided per file and fiscal year from the codes present.
QuestionnaireCoding = Literal["auto", "by-year", "current"]
QUESTIONNAIRE_CODINGS: tuple[str, ...] = ("auto", "by-year", "current")

#: Codes that exist only in the 2024 coding: seeing one in a pre-FY2024 row proves the file
#: was converted (2 quit smoking is ambiguous, old 2 meant "no").
_CURRENT_ONLY_CODES: dict[str, tuple[int, ...]] = {
    "q_smoking": (3,),
    "q_alcohol_freq": (4, 5, 6, 7, 8),
    "q_alcohol_amount": (5,),
}


#: Share of a (file, year)'s answered rows with a 2024-only code that proves the 2024 coding.
CURRENT_CODING_MIN_SHARE = 0.05


def decide_questionnaire_coding(
    codes: pd.DataFrame,
    group: pd.Series,
    coding: QuestionnaireCoding = "auto",
    last_legacy_fy: int = LAST_LEGACY_QUESTIONNAIRE_FY,
    stated: pd.Series | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Decide which rows carry the FY2018–2023 questionnaire codes (旧コード体系の判定).

    ``codes`` holds integer answers (Int64) and ``fiscal_year``; ``group`` names each row's
    source file. Rows of FY2024 on are always in the current coding. For earlier rows,
    ``coding`` decides: ``by-year`` (old codes), ``current`` (2024 codes), or ``auto``: per
    source file and fiscal year, a group in which at least :data:`CURRENT_CODING_MIN_SHARE` of
    the answered rows hold a code that exists only in the 2024 coding (smoking 3, drinking
    frequency 4-8, amount 5) is current; a group with none (or a stray few, which are faults)
    is ambiguous and read by year, which is what the old code list allows. ``stated`` (per row, optional)
    is a reader's own knowledge (e.g. the XML answer OIDs): where set, it wins.

    Returns the per-row ``legacy`` mask and one decision row per (file, fiscal year) of the
    pre-FY2024 rows: ``source_file``, ``fiscal_year``, ``rows``, ``coding``, ``basis``
    (``configured``, ``detected``, ``assumed`` when ambiguous, or ``stated by reader``).
    """
    fy = pd.to_numeric(codes["fiscal_year"], errors="coerce")
    old_era = (fy <= last_legacy_fy).fillna(False).to_numpy(dtype=bool)
    evidence = np.zeros(len(codes), dtype=bool)
    answered = np.zeros(len(codes), dtype=bool)
    for col, only in _CURRENT_ONLY_CODES.items():
        if col in codes:
            evidence |= codes[col].isin(only).fillna(False).to_numpy(dtype=bool)
            answered |= codes[col].notna().to_numpy(dtype=bool)
    keys = pd.DataFrame(
        {"source_file": group.astype("string").to_numpy(), "fiscal_year": fy.to_numpy()}
    ).loc[old_era]
    keys["evidence"] = evidence[old_era]
    keys["answered"] = answered[old_era]
    stated_arr = (
        pd.Series(stated, index=codes.index).astype("string").to_numpy(dtype=object)
        if stated is not None
        else np.full(len(codes), None, dtype=object)
    )
    keys["stated"] = stated_arr[old_era]
    current = np.zeros(len(codes), dtype=bool)
    if coding == "current":
        current[old_era] = True
        basis = "configured"
    elif coding == "by-year":
        basis = "configured"
    else:
        # A stray 3 in an old-form file is a fault, not a conversion: in a converted file the
        # 2024-only codes are common (never-smokers alone are most people aged 40-74).
        grouped = keys.groupby(["source_file", "fiscal_year"], dropna=False)
        share = grouped["evidence"].transform("sum") / grouped["answered"].transform("sum").clip(
            lower=1
        )
        current[old_era] = (share >= CURRENT_CODING_MIN_SHARE).to_numpy(dtype=bool)
        basis = None
    stated_rows = pd.notna(stated_arr) & old_era
    current[stated_rows] = stated_arr[stated_rows] == "current"
    keys["current"] = current[old_era]
    keys["is_stated"] = stated_rows[old_era]
    decisions = (
        keys.groupby(["source_file", "fiscal_year"], dropna=False, sort=True)
        .agg(
            rows=("current", "size"),
            current=("current", "all"),
            evidence=("evidence", "any"),
            is_stated=("is_stated", "all"),
        )
        .reset_index()
    )
    decisions["coding"] = np.where(decisions["current"], "current", "by-year")
    if basis is None:
        decisions["basis"] = np.select(
            [decisions["current"], decisions["evidence"]],
            ["detected", "assumed (stray 2024 codes flagged)"],
            "assumed",
        )
    else:
        decisions["basis"] = basis
    decisions.loc[decisions["is_stated"], "basis"] = "stated by reader"
    decisions["fiscal_year"] = decisions["fiscal_year"].astype("int64")
    decisions = decisions[["source_file", "fiscal_year", "rows", "coding", "basis"]]
    return old_era & ~current, decisions


def to_legacy_questionnaire(
    df: pd.DataFrame, last_legacy_fy: int = LAST_LEGACY_QUESTIONNAIRE_FY
) -> pd.DataFrame:
    """Encode canonical answers the way pre-FY2024 files carry them (旧様式への変換).

    Used by the synthetic-data writer for realistic old-format exports. It is the inverse of
    :func:`harmonise_questionnaire` up to the collapses below. On rows with
    ``fiscal_year ≤ last_legacy_fy``:

    - ``q_smoking``: 1 → 1 yes; 2 quit and 3 no → 2 no;
    - ``q_alcohol_freq``: 1 → 1 daily; 2–5 (5–6 d/week … 1–3 d/month) → 2 sometimes;
      6 (<1 d/month), 7 quit, 8 never → 3 hardly ever;
    - ``q_alcohol_amount``: 5 (≥5 合) → 4 (≥3 合); 1–4 unchanged;
    - ``q_guidance_received``: values kept as they are. In the old files, item 22 means "wishes
      for health guidance", so the generator's 1/2 answers stand in for that question. Harmonising
      blanks it.

    Codes outside the canonical set become missing on these rows. Later rows and other columns
    are untouched. Returns a new frame.
    """
    legacy, _ = _legacy_rows(df, last_legacy_fy)
    out = df.copy()
    for col, mapping in _CANONICAL_TO_LEGACY.items():
        if col not in out:
            continue
        codes = coerce_int_code(out[col], None)[0]
        out[col] = codes.where(~legacy, _recode(codes, mapping)).astype("Int64")
    return out


# --------------------------------------------------------------------------------------------
# Derived values (BMI, eGFR)
# --------------------------------------------------------------------------------------------


def _positive(x: Any) -> Any:
    if isinstance(x, pd.Series):
        return x.where(x > 0)
    return x if x > 0 else np.nan


def derive_bmi(height_cm: Any, weight_kg: Any) -> Any:
    """BMI = weight kg / (height m)², rounded to 0.1 (kg/m²).

    Non-positive or missing height/weight → missing. Scalars → float; Series → float64 when all
    inputs are numpy-typed, Float64 when any is nullable (Int64/Float64) or text.
    """
    h = _positive(_to_float(height_cm)) / 100.0
    w = _positive(_to_float(weight_kg))
    return _round1(w / (h * h))


def derive_egfr(creatinine: Any, age: Any, sex: Any) -> Any:
    """eGFR (mL/min/1.73 m²) by the JSN Japanese equation, rounded to 0.1 (推算GFR).

    194 × Cr^−1.094 × age^−0.287, × 0.739 for women (sex 2); Cr is serum creatinine in mg/dL
    (enzymatic). The equation is for adults, so age < 18 gives missing, as do a non-positive
    creatinine and a sex other than 1/2. Checks: man 60 y Cr 0.86 → 70.7; woman 58 y Cr 0.70 →
    66.0. Scalars → float; Series → float64 when all inputs are numpy-typed, Float64 when any is
    nullable (e.g. an Int64 age) or text.
    """
    cr = _positive(_to_float(creatinine))
    a = _to_float(age)
    a = a.where(a >= 18) if isinstance(a, pd.Series) else (a if a >= 18 else np.nan)
    sex_factor = {1: 1.0, 2: 0.739}
    if isinstance(sex, pd.Series):
        code = coerce_int_code(sex, (1, 2))[0].to_numpy(dtype=float, na_value=np.nan)
        f = pd.Series(np.select([code == 1, code == 2], [1.0, 0.739], np.nan), index=sex.index)
    else:
        f = sex_factor.get(int(sex), np.nan) if pd.notna(sex) else np.nan
    return _round1(194.0 * cr**-1.094 * a**-0.287 * f)


# --------------------------------------------------------------------------------------------
# Numbers and integer codes
# --------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def coerce_numeric(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Read numbers (数値の読み取り): ``"120"``, ``"１２０"``, ``" 5.6 "``, ``"－1"`` → Float64.

    Only plain decimal numbers are accepted (optional sign and exponent, full-width allowed).
    Decimal commas (``"5,6"``), thousands separators, qualifiers (``"<5"``, ``"5未満"``, ``"5以上"``),
    units (``"120mg"``) and ``inf`` are *bad*: missing in the values and True in ``bad``.
    Empty or missing → missing, not bad. Numeric dtypes pass straight through (±inf → bad).

    Returns ``(values: Float64, bad: bool)``, both with the index of ``s``.
    """
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.astype("Float64")
        inf = np.isinf(v.to_numpy(dtype=float, na_value=np.nan))
        return v.mask(inf), pd.Series(inf, index=s.index, name=s.name, dtype=bool)
    codes, uniques = _factorize(s)
    texts = pd.Series(_halfwidth_uniques(uniques), dtype=object)
    ok = texts.str.fullmatch(_NUMBER_RE, na=False).to_numpy(dtype=bool)
    vals = pd.to_numeric(texts.where(ok), errors="coerce").to_numpy(dtype=float)
    ok &= np.isfinite(vals)  # 1e999 → inf
    vals = np.where(ok, vals, np.nan)
    bad_u = texts.notna().to_numpy(dtype=bool) & ~ok
    values = pd.Series(np.append(vals, np.nan)[codes], index=s.index, name=s.name)
    bad = pd.Series(np.append(bad_u, False)[codes], index=s.index, name=s.name, dtype=bool)
    return values.astype("Float64"), bad


def coerce_int_code(
    s: pd.Series, allowed: tuple[int, ...] | None = None
) -> tuple[pd.Series, pd.Series]:
    """Read integer codes (コード値): ``"2"``, ``"2.0"``, ``"２"``, 2.0 → 2 (Int64).

    Bad (missing in the values, True in ``bad``): anything :func:`coerce_numeric` rejects,
    non-integers (``"2.5"``), and codes not in ``allowed`` (when given). Empty → missing, not bad.
    """
    if pd.api.types.is_integer_dtype(s):
        v = s.astype("Int64")
        bad = pd.Series(False, index=s.index, name=s.name)
    else:
        f, bad = coerce_numeric(s)
        raw = f.to_numpy(dtype=float, na_value=np.nan)
        whole = np.isfinite(raw) & (np.floor(raw) == raw) & (np.abs(raw) < 2**53)
        non_int = ~np.isnan(raw) & ~whole
        bad = bad | non_int
        v = pd.Series(np.where(whole, raw, np.nan), index=s.index, name=s.name).astype("Int64")
    if allowed is not None:
        outside = (v.notna() & ~v.isin(allowed)).to_numpy(dtype=bool)
        v = v.mask(outside)
        bad = bad | outside
    return v, bad.astype(bool)


def to_legacy_export(df: pd.DataFrame, questionnaire: bool = True) -> pd.DataFrame:
    """Encode canonical checkups as a municipal export of their year would carry them.

    The inverse of ingest's harmonisation: pre-2024 questionnaire codes for FY ≤ 2023
    (:func:`to_legacy_questionnaire`) and HbA1c in JDS units for FY ≤ 2012. Needs
    ``fiscal_year``. Used by the synthetic-data writers. ``questionnaire=False`` keeps the
    2024 answer codes in every year (an export that converted its history).
    """
    out = to_legacy_questionnaire(df) if questionnaire else df.copy()
    if "hba1c" in out:
        fy = pd.to_numeric(out["fiscal_year"], errors="coerce")
        old = (fy <= LAST_JDS_HBA1C_FY).fillna(False).to_numpy(dtype=bool)
        hba1c = _to_float(out["hba1c"])
        out["hba1c"] = hba1c.mask(old, hba1c_ngsp_to_jds(hba1c))
    return out
