"""The ``LetterRequest`` table: the contract between the scoring/selection step and the letters.

One row per resident who gets a letter (the control arm and "none" rows never reach this table).
It is the only table in kenshin that carries names and addresses: the selection joins
``contacts`` onto its selected rows here and nowhere else. The renderer reads nothing else about
a resident, so whatever the scoring step computes must be expressed in these columns.

Columns (``?`` = optional column; every value column may be missing/NaN unless said otherwise):

Identity and address (PII; never written to a manifest or log)
    ``pseudonym``      str, required, unique, ``^[0-9a-f]{16,}$`` (data.pseudonym). Names the PDF.
    ``person_id``      str, required. Kept for the municipality's trace; not printed.
    ``name``           str, required. Printed as given (髙, 﨑 … are in the bundled IPAex font;
                       characters outside it are reported in the manifest ``notes``).
    ``name_kana``      str, may be empty.
    ``postal_code``    str, 7 digits, with or without a hyphen (printed as 〒123-4567).
    ``address``        str, required.
    ``language``       ``ja`` | ``ja-easy`` | ``en``; anything else (or missing) → ``ja``, with a
                       note in the manifest.

What the letter is about
    ``letter_type``    ``advice`` (below referral levels, high predicted risk) |
                       ``see_doctor`` (urge a doctor's visit; no prediction framing).
                       Safety override: an ``advice`` row with any key value at a 受診勧奨判定値
                       or blood pressure ≥160/100 is rendered as ``see_doctor``
                       (manifest ``requested_letter_type`` keeps what was asked).
    ``outcome``        diabetes | hypertension | dyslipidemia | metabolic_syndrome | ckd | liver.
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

import pandas as pd
import pandera.pandas as pa

from data.columns import OUTCOMES
from data.pseudonym import PSEUDONYM_LENGTH

__all__ = [
    "BANDS",
    "FORECAST_ITEMS",
    "KEY_ITEMS",
    "LANGUAGES",
    "LETTER_REQUEST_SCHEMA",
    "LETTER_TYPES",
    "normalise_requests",
]

LANGUAGES = ("ja", "ja-easy", "en")
LETTER_TYPES = ("advice", "see_doctor")
BANDS = ("low", "moderate", "high", "very_high")
#: Latest values shown against the judgement values, in the order of the letter's table.
KEY_ITEMS = (
    "hba1c", "fpg", "sbp", "dbp", "ldl", "tg", "hdl",
    "waist_cm", "bmi", "weight_kg", "alt", "ggt", "egfr",
)  # fmt: skip
#: Items that may carry a next-year forecast (p10/p50/p90).
FORECAST_ITEMS = KEY_ITEMS
QUANTILES = ("p10", "p50", "p90")

_PROB = [pa.Check.in_range(0.0, 1.0)]


def _opt(dtype: str, checks=None, required: bool = True) -> pa.Column:
    return pa.Column(dtype, checks or [], nullable=True, required=required, coerce=True)


def _rows_ok_for_advice(df: pd.DataFrame) -> pd.Series:
    adv = df["letter_type"] == "advice"
    return ~adv | (df["risk"].notna() & df["risk_band"].notna())


def _forecast_ordered(df: pd.DataFrame) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for item in FORECAST_ITEMS:
        cols = [f"{item}_{q}" for q in QUANTILES]
        if all(c in df.columns for c in cols):
            lo, mid, hi = (pd.to_numeric(df[c], errors="coerce") for c in cols)
            bad = lo.notna() & mid.notna() & hi.notna() & ~((lo <= mid) & (mid <= hi))
            ok &= ~bad
    return ok


def letter_request_schema() -> pa.DataFrameSchema:
    """The pandera schema of a ``LetterRequest`` table (see the module docstring)."""
    cols: dict[str, pa.Column] = {
        "pseudonym": pa.Column(
            "string", pa.Check.str_matches(rf"^[0-9a-f]{{{PSEUDONYM_LENGTH},64}}$"), coerce=True
        ),
        "person_id": pa.Column("string", coerce=True),
        "name": pa.Column("string", pa.Check.str_length(1, 100), coerce=True),
        "name_kana": _opt("string"),
        "postal_code": pa.Column("string", pa.Check.str_matches(r"^\d{3}-?\d{4}$"), coerce=True),
        "address": pa.Column("string", pa.Check.str_length(1, 300), coerce=True),
        "language": _opt("string"),
        "letter_type": pa.Column("string", pa.Check.isin(LETTER_TYPES), coerce=True),
        "outcome": pa.Column("string", pa.Check.isin(OUTCOMES), coerce=True),
        "risk": _opt("float64", _PROB),
        "risk_band": _opt("string", [pa.Check.isin(BANDS)]),
        "horizon_years": _opt("Int64", [pa.Check.in_range(1, 3)], required=False),
        **{item: _opt("float64", [pa.Check.ge(0)]) for item in KEY_ITEMS},
        "sex": _opt("Int64", [pa.Check.isin([1, 2])], required=False),
        "tg_fasting": _opt("boolean", required=False),
        **{
            f"{item}_{q}": _opt("float64", [pa.Check.ge(0)], required=False)
            for item in FORECAST_ITEMS
            for q in QUANTILES
        },
        **{f"factor_{i}": _opt("string") for i in (1, 2, 3)},
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
            pa.Check(_forecast_ordered, error="forecast quantiles must satisfy p10 ≤ p50 ≤ p90"),
        ],
        strict=False,
        unique=["pseudonym"],
        name="LetterRequest",
    )


#: Schema of the LetterRequest table (built once at import: pure, no side effects).
LETTER_REQUEST_SCHEMA = letter_request_schema()


def normalise_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Validate against :data:`LETTER_REQUEST_SCHEMA` and fill optional columns.

    Adds ``requested_language`` (as given) and sets ``language`` to a supported one (``ja`` when
    the given one is not supported). Raises ``pandera.errors.SchemaErrors`` naming every bad
    column and row (lazy validation).
    """
    df = LETTER_REQUEST_SCHEMA.validate(requests.copy(), lazy=True)
    df = df.reset_index(drop=True)
    given = df["language"].astype("string").str.strip().str.lower()
    df["requested_language"] = given.fillna("")
    df["language"] = given.where(given.isin(LANGUAGES), "ja").astype("string")
    if "horizon_years" not in df.columns:
        df["horizon_years"] = pd.array([1] * len(df), dtype="Int64")
    df["horizon_years"] = df["horizon_years"].fillna(1)
    if "sex" not in df.columns:
        df["sex"] = pd.array([pd.NA] * len(df), dtype="Int64")
    if "tg_fasting" not in df.columns:
        df["tg_fasting"] = pd.array([True] * len(df), dtype="boolean")
    df["tg_fasting"] = df["tg_fasting"].fillna(True)
    for item in FORECAST_ITEMS:
        for q in QUANTILES:
            c = f"{item}_{q}"
            if c not in df.columns:
                df[c] = float("nan")
    df["postal_code"] = df["postal_code"].str.replace("-", "", regex=False)
    return df
