"""The ``LetterRequest`` table: the contract between the scoring/selection step and the letters.

One row per resident who gets a letter (the control arm and "none" rows never reach this table).
It is the only table in kenshin that carries names and addresses: the selection joins
``contacts`` onto its selected rows here and nowhere else. The renderer reads nothing else about
a resident, so whatever the scoring step computes must be expressed in these columns.

Columns (``?`` = optional column; every value column may be missing/NaN unless said otherwise):

Identity and address (PII; never written to a manifest or log)
    ``pseudonym``      str, required, unique, ``^[0-9a-f]{16,}$`` (data.pseudonym). Names the PDF.
    ``person_id``      str, required. Kept for the municipality's trace; not printed.
    ``name``           str, required, 1-100 characters, not blank. Printed as given (髙, 﨑 … are
                       in the bundled IPAex font); a character outside the font prints as 〓
                       (counted in the manifest's ``replaced_characters``), control and
                       direction characters are removed (scoring.typeset.printable).
    ``name_kana``      str, may be empty (not printed when longer than 100 characters).
    ``postal_code``    str, 7 ASCII digits, with or without a hyphen (printed as 〒123-4567).
    ``address``        str, required, 1-300 characters, not blank; printed like the name.
                       The address block grows with the address (never over the name and
                       title); one longer than the envelope window (≈ 4 lines) is noted.
    ``language``       ``ja`` | ``ja-easy`` | ``en``; anything else (or missing) → ``ja``, with a
                       note in the manifest (a value that is not a language code at all is
                       recorded as ``(invalid)``, never copied).

A contact that breaks these rules is refused by :func:`normalise_requests` with an error that
names columns, checks and row numbers, never values (:class:`LetterRequestError`). The annual
run checks contacts first (:func:`contact_problems`) and gives such a resident no letter and the
reason ``CONTACT_INVALID`` with the fields at fault.

What the letter is about
    ``letter_type``    ``advice`` (below referral levels, high predicted risk) |
                       ``see_doctor`` (urge a doctor's visit; no prediction framing).
                       Safety override: an ``advice`` row with any key value at a 受診勧奨判定値
                       or blood pressure ≥160/100 is rendered as ``see_doctor``
                       (manifest ``requested_letter_type`` keeps what was asked).
    ``outcome``        one of data.columns.OUTCOMES (declared in data.outcomes).
    ``risk``           float in [0, 1], calibrated probability of meeting the outcome within
                       ``horizon_years``. Required for ``advice`` rows.
    ``risk_band``      low | moderate | high | very_high. Required for ``advice`` rows.
    ``horizon_years``? int 1-3, default 1.

Key values at the latest checkup (units as in data.columns)
    ``hba1c`` % (NGSP), ``fpg`` mg/dL, ``sbp``/``dbp`` mmHg, ``ldl``/``tg``/``hdl`` mg/dL,
    ``waist_cm`` cm, ``bmi`` kg/m², ``weight_kg`` kg, ``alt``/``ggt`` U/L,
    ``egfr`` mL/min/1.73m². Compared with MHLW 令和6年度版 judgement values (data.judgements).
    ``sex``?           1 male / 2 female: only picks the waist cut (85 / 90 cm); never advised on.
    ``tg_fasting``?    bool, default True: picks the fasting (150) or random (175) TG cut.

Next year's forecasts (optional, any subset of the key items above)
    ``<item>_p10``, ``<item>_p50``, ``<item>_p90``: quantiles of next year's value; a forecast is
    shown only when all three are present and p10 ≤ p50 ≤ p90.
    ``forecast_withheld``? ``""`` (default) or why the table is left out: the forecasts of the
    letter's outcome contradict its risk (scoring.coherence); the renderer notes it.

Explanation (canonical feature names of features.declarations)
    ``factor_1`` … ``factor_3``: top drivers by SHAP, strongest first. Only features declared
    ``modifiable`` are ever advised on; others (age, sex, history, lab values …) are dropped.

What-if (one scenario)
    ``whatif_scenario``: a scenario key of the catalogue (``whatif:`` in catalogue.yaml, e.g.
    ``weight_loss_3kg``, ``quit_smoking``); ``whatif_risk_before`` / ``whatif_risk_after`` in
    [0, 1]. The line is printed only when the scenario lowers the risk. An unknown scenario key
    is refused before anything is rendered.

When
    ``exam_date``      date of the latest checkup.
    ``fiscal_year``    int, the scoring fiscal year.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from data.columns import OUTCOMES
from data.judgements import referral_values
from data.outcomes import OUTCOME_DECLARATIONS, declaration
from data.pseudonym import PSEUDONYM_LENGTH
from data.schemas import matches
from scoring.typeset import has_visible

__all__ = [
    "ADDRESS_MAX",
    "BANDS",
    "FORECAST_ITEMS",
    "KEY_ITEMS",
    "OUTCOME_ITEMS",
    "LANGUAGES",
    "LETTER_REQUEST_SCHEMA",
    "LETTER_TYPES",
    "NAME_MAX",
    "LetterRequestError",
    "contact_problems",
    "letter_items",
    "normalise_postal_code",
    "normalise_requests",
]

LANGUAGES = ("ja", "ja-easy", "en")
#: Longest name and address a letter prints (characters).
NAME_MAX, ADDRESS_MAX = 100, 300
_POSTAL = r"^[0-9]{3}-?[0-9]{4}$"
#: What a language code looks like (ISO 639 with subtags); anything else is not copied anywhere.
_LANGUAGE_CODE = r"^[a-z]{2,3}(-[a-z0-9]{2,8}){0,3}$"


LETTER_TYPES = ("advice", "see_doctor")
BANDS = ("low", "moderate", "high", "very_high")
#: Latest values shown against the judgement values, in the order of the letter's table.
KEY_ITEMS = (
    "hba1c", "fpg", "sbp", "dbp", "ldl", "tg", "hdl",
    "waist_cm", "bmi", "weight_kg", "alt", "ggt", "egfr",
)  # fmt: skip
#: Items only the letters on some outcome show (data.outcomes ``letter_items``): optional
#: request columns.
OUTCOME_ITEMS: tuple[str, ...] = tuple(
    dict.fromkeys(i for o in OUTCOME_DECLARATIONS for i in o.letter_items if i not in KEY_ITEMS)
)
#: Items that may carry a next-year forecast (p10/p50/p90).
FORECAST_ITEMS = KEY_ITEMS


def letter_items(outcome: str) -> tuple[str, ...]:
    """The results table of a letter on ``outcome``: the key items, then its own items."""
    return KEY_ITEMS + tuple(i for i in declaration(outcome).letter_items if i not in KEY_ITEMS)


QUANTILES = ("p10", "p50", "p90")


class LetterRequestError(ValueError):
    """A LetterRequest table breaks its contract. The message names the columns, checks and
    rows (by number) at fault and never a value: the table holds names and addresses."""


_PROB = [pa.Check.in_range(0.0, 1.0)]


def _opt(dtype: str, checks=None, required: bool = True) -> pa.Column:
    return pa.Column(dtype, checks or [], nullable=True, required=required, coerce=True)


def _rows_ok_for_advice(df: pd.DataFrame) -> pd.Series:
    adv = df["letter_type"] == "advice"
    return ~adv | (df["risk"].notna() & df["risk_band"].notna())


def _advice_rows_below_referral(df: pd.DataFrame) -> pd.Series:
    """Advice rows hold no value at its 受診勧奨判定値 and no blood pressure ≥160/100: such a
    resident gets a see-a-doctor letter, and only the selection decides that (scoring.selection)."""
    items = (*KEY_ITEMS, *OUTCOME_ITEMS)
    values = df[[c for c in items if c in df.columns]].apply(pd.to_numeric, errors="coerce")
    hit = referral_values(values).any(axis=1)
    return ~(df["letter_type"] == "advice") | ~hit


def forecast_quantiles_ordered(df: pd.DataFrame, items=None) -> pd.Series:
    """Rows whose forecast quantiles are ordered (p10 ≤ p50 ≤ p90) wherever all three exist."""
    ok = pd.Series(True, index=df.index)
    for item in FORECAST_ITEMS if items is None else items:
        cols = [f"{item}_{q}" for q in QUANTILES]
        if all(c in df.columns for c in cols):
            lo, mid, hi = (pd.to_numeric(df[c], errors="coerce") for c in cols)
            bad = lo.notna() & mid.notna() & hi.notna() & ~((lo <= mid) & (mid <= hi))
            ok &= ~bad
    return ok


#: A letter, digit, punctuation mark or symbol: a character that surely prints (never a
#: space, control, format character or variation selector, which are the only ones
#: scoring.typeset.has_visible passes over).
_SURELY_VISIBLE = r"[\p{L}\p{N}\p{P}\p{S}]"


def _visible(s: pd.Series) -> pd.Series:
    """``s.map(has_visible)``, vectorised: a value holding a letter, digit, punctuation mark
    or symbol is visible (Arrow's regex, one pass over the column); only the rest (blank,
    missing, only marks or spaces) go through has_visible one by one."""
    values = s.to_numpy(dtype=object, na_value=None)
    try:
        text = pyarrow.array(values, type=pyarrow.string())
    except (pyarrow.ArrowException, UnicodeError):  # not UTF-8 (a lone surrogate): one by one
        return pd.Series([has_visible(v) for v in values], index=s.index, dtype=bool)
    surely = pc.fill_null(pc.match_substring_regex(text, _SURELY_VISIBLE), False)
    out = surely.to_numpy(zero_copy_only=False).copy()
    rest = np.flatnonzero(~out)
    if len(rest):
        out[rest] = [has_visible(v) for v in values[rest]]
    return pd.Series(out, index=s.index, dtype=bool)


_NOT_BLANK = pa.Check(_visible, element_wise=False, name="not_blank", error="blank")


def letter_request_schema() -> pa.DataFrameSchema:
    """The pandera schema of a ``LetterRequest`` table (see the module docstring)."""
    cols: dict[str, pa.Column] = {
        "pseudonym": pa.Column(
            "string", matches(rf"^[0-9a-f]{{{PSEUDONYM_LENGTH},64}}$"), coerce=True
        ),
        "person_id": pa.Column("string", coerce=True),
        "name": pa.Column("string", [pa.Check.str_length(1, NAME_MAX), _NOT_BLANK], coerce=True),
        "name_kana": _opt("string"),
        "postal_code": pa.Column("string", pa.Check.str_matches(_POSTAL), coerce=True),
        "address": pa.Column(
            "string", [pa.Check.str_length(1, ADDRESS_MAX), _NOT_BLANK], coerce=True
        ),
        "language": _opt("string"),
        "letter_type": pa.Column("string", pa.Check.isin(LETTER_TYPES), coerce=True),
        "outcome": pa.Column("string", pa.Check.isin(OUTCOMES), coerce=True),
        "risk": _opt("float64", _PROB),
        "risk_band": _opt("string", [pa.Check.isin(BANDS)]),
        "horizon_years": _opt("Int64", [pa.Check.in_range(1, 3)], required=False),
        **{item: _opt("float64", [pa.Check.ge(0)]) for item in KEY_ITEMS},
        **{item: _opt("float64", [pa.Check.ge(0)], required=False) for item in OUTCOME_ITEMS},
        "sex": _opt("Int64", [pa.Check.isin([1, 2])], required=False),
        "tg_fasting": _opt("boolean", required=False),
        **{
            f"{item}_{q}": _opt("float64", [pa.Check.ge(0)], required=False)
            for item in FORECAST_ITEMS
            for q in QUANTILES
        },
        **{f"factor_{i}": _opt("string") for i in (1, 2, 3)},
        "forecast_withheld": _opt("string", required=False),
        "whatif_scenario": _opt("string"),
        "whatif_risk_before": _opt("float64", _PROB),
        "whatif_risk_after": _opt("float64", _PROB),
        "exam_date": pa.Column("datetime64[ns]", coerce=True),
        "fiscal_year": pa.Column("int64", pa.Check.in_range(2008, 2100), coerce=True),
    }
    return pa.DataFrameSchema(
        cols,
        checks=[
            pa.Check(_rows_ok_for_advice, error="advice rows need risk and risk_band"),
            pa.Check(
                _advice_rows_below_referral,
                error="advice rows may not hold a referral-level value (a see_doctor letter)",
            ),
            pa.Check(
                forecast_quantiles_ordered, error="forecast quantiles must satisfy p10 ≤ p50 ≤ p90"
            ),
        ],
        strict=False,
        unique=["pseudonym"],
        name="LetterRequest",
    )


#: Schema of the LetterRequest table (built once at import: pure, no side effects).
LETTER_REQUEST_SCHEMA = letter_request_schema()


def _summary(exc) -> str:
    """Columns, checks and row numbers of a pandera error; never the failing values."""
    fc = getattr(exc, "failure_cases", None)
    if fc is None or not len(fc):
        return "LetterRequest: validation failed"
    parts = []
    for (col, check), g in fc.groupby(["column", "check"], dropna=False, sort=True):
        rows = sorted({int(i) for i in g["index"].dropna() if isinstance(i, int | float)})
        where = f" (rows {rows[:10]}{' …' if len(rows) > 10 else ''})" if rows else ""
        parts.append(f"column {col!r} failed {check}{where}")
    return "LetterRequest: " + "; ".join(parts)


def normalise_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Validate against :data:`LETTER_REQUEST_SCHEMA` and fill optional columns.

    Adds ``requested_language`` (as given when it looks like a language code, else
    ``(invalid)``) and sets ``language`` to a supported one (``ja`` when the given one is not
    supported). Raises :class:`LetterRequestError` naming every bad column, check and row, but
    no value (lazy validation).
    """
    from pandera.errors import SchemaError, SchemaErrors

    try:
        df = LETTER_REQUEST_SCHEMA.validate(requests.copy(), lazy=True)
    except (SchemaErrors, SchemaError) as e:
        raise LetterRequestError(_summary(e)) from None
    df = df.reset_index(drop=True)
    given = df["language"].astype("string").str.strip().str.lower()
    code = given.str.fullmatch(_LANGUAGE_CODE).fillna(False).astype(bool)
    df["requested_language"] = given.where(code | given.isna(), "(invalid)").fillna("")
    df["language"] = given.where(given.isin(LANGUAGES), "ja").astype("string")
    if "horizon_years" not in df.columns:
        df["horizon_years"] = pd.array([1] * len(df), dtype="Int64")
    df["horizon_years"] = df["horizon_years"].fillna(1)
    if "sex" not in df.columns:
        df["sex"] = pd.array([pd.NA] * len(df), dtype="Int64")
    if "forecast_withheld" not in df.columns:
        df["forecast_withheld"] = pd.array([""] * len(df), dtype="string")
    df["forecast_withheld"] = df["forecast_withheld"].fillna("")
    if "tg_fasting" not in df.columns:
        df["tg_fasting"] = pd.array([True] * len(df), dtype="boolean")
    df["tg_fasting"] = df["tg_fasting"].fillna(True)
    for item in FORECAST_ITEMS:
        for q in QUANTILES:
            c = f"{item}_{q}"
            if c not in df.columns:
                df[c] = float("nan")
    for item in OUTCOME_ITEMS:
        if item not in df.columns:
            df[item] = float("nan")
    df["postal_code"] = df["postal_code"].str.replace("-", "", regex=False)
    return df


def normalise_postal_code(codes: pd.Series) -> pd.Series:
    """Postal codes as the letters print them: full-width digits and hyphens made ASCII (NFKC),
    spaces and a leading 〒 dropped. Anything else is left for :func:`contact_problems`."""
    s = codes.astype("string")
    # NFKC leaves ASCII as it is: only the other values are normalised one by one.
    values = s.to_numpy(dtype=object, na_value=None)
    try:
        ascii_ = pc.string_is_ascii(pyarrow.array(values, pyarrow.string()))
        other = np.flatnonzero(~pc.fill_null(ascii_, True).to_numpy(zero_copy_only=False))
    except (pyarrow.ArrowException, UnicodeError):  # not UTF-8 (a lone surrogate): all of them
        other = np.flatnonzero(pd.notna(values))
    if len(other):
        values[other] = [unicodedata.normalize("NFKC", v) for v in values[other]]
        s = pd.Series(values, index=s.index).astype("string")
    return s.str.strip().str.removeprefix("〒").str.strip()


def contact_problems(contacts: pd.DataFrame) -> pd.Series:
    """Per contact row: ``""`` when name, postal code and address meet the LetterRequest
    contract, else the fields at fault as codes, comma-separated — ``name:blank``,
    ``name:too_long``, ``postal_code:missing``, ``postal_code:malformed``, ``address:blank``,
    ``address:too_long``. The codes never carry a value (they go into the selection table)."""
    out = pd.Series([""] * len(contacts), index=contacts.index, dtype=object)

    def add(mask: pd.Series, code: str) -> None:
        m = mask.fillna(False).to_numpy(dtype=bool)
        out[m] = [f"{v},{code}" if v else code for v in out[m]]

    for field, limit in (("name", NAME_MAX), ("postal_code", None), ("address", ADDRESS_MAX)):
        if field == "postal_code":
            code = normalise_postal_code(contacts[field])
            missing = code.isna() | (code == "")
            add(missing, "postal_code:missing")
            add(~missing & ~code.str.fullmatch(_POSTAL).fillna(False), "postal_code:malformed")
            continue
        text = contacts[field].astype("string")
        add(~_visible(text), f"{field}:blank")
        add(text.str.len() > limit, f"{field}:too_long")
    return out
