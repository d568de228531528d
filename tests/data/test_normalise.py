"""Tests for data.normalise: full-width text, dates, fiscal years, HbA1c, questionnaire, numbers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from data.columns import QUESTIONNAIRE_COLUMNS
from data.normalise import (
    LAST_LEGACY_QUESTIONNAIRE_FY,
    LEGACY_QUESTIONNAIRE_CODES,
    QUESTIONNAIRE_CODES,
    age_at_fiscal_year_end,
    coerce_int_code,
    coerce_numeric,
    derive_bmi,
    derive_egfr,
    fiscal_year,
    harmonise_hba1c,
    harmonise_questionnaire,
    harmonise_questionnaire_with_problems,
    hba1c_jds_to_ngsp,
    hba1c_ngsp_to_jds,
    parse_dates,
    to_halfwidth,
    to_legacy_questionnaire,
)

# ---------------------------------------------------------------------------------------------
# to_halfwidth
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("１２０", "120"),
        ("　１２０　", "120"),  # ideographic spaces
        (" 5.6 ", "5.6"),
        ("５．６", "5.6"),
        ("ＡＢＣ１２３", "ABC123"),
        ("－１", "-1"),  # full-width hyphen-minus
        ("−3.5", "-3.5"),  # U+2212 minus sign
        ("‐2", "-2"),  # U+2010 hyphen
        ("ー5", "-5"),  # 長音 as a leading minus
        ("２０２４ー０５ー０１", "2024-05-01"),  # 長音 between digits
        ("データ", "データ"),  # 長音 in words untouched
        ("ｶﾅ", "カナ"),  # half-width kana → full-width (NFKC)
        ("\ufeff12\u200b", "12"),
    ],
)
def test_to_halfwidth(raw: str, expected: str) -> None:
    assert to_halfwidth(pd.Series([raw])).iloc[0] == expected


def test_to_halfwidth_missing_and_empty() -> None:
    s = pd.Series(["", "   ", "　", None, np.nan, "1"], index=list("abcdef"), name="x")
    out = to_halfwidth(s)
    assert out.isna().tolist() == [True, True, True, True, True, False]
    assert out.index.tolist() == list("abcdef")
    assert out.name == "x"


def test_to_halfwidth_non_text() -> None:
    assert to_halfwidth(pd.Series([2.0, 7, 1.5])).tolist() == ["2", "7", "1.5"]


# ---------------------------------------------------------------------------------------------
# parse_dates
# ---------------------------------------------------------------------------------------------

GOOD_DATES = [
    ("2024-05-01", "2024-05-01"),
    ("20240501", "2024-05-01"),
    ("2024/05/01", "2024-05-01"),
    ("2024/5/1", "2024-05-01"),
    ("2024.5.1", "2024-05-01"),
    ("2024-05-01 00:00:00", "2024-05-01"),  # Excel export
    ("2024/5/1 0:00", "2024-05-01"),
    ("２０２４－０５－０１", "2024-05-01"),
    ("２０２４０５０１", "2024-05-01"),
    ("２０２４／５／１", "2024-05-01"),
    ("2024年5月1日", "2024-05-01"),
    ("R6.5.1", "2024-05-01"),
    ("r6.5.1", "2024-05-01"),
    ("R6/5/1", "2024-05-01"),
    ("R6-5-1", "2024-05-01"),
    ("R06.05.01", "2024-05-01"),
    ("Ｒ６．５．１", "2024-05-01"),
    ("H31.4.1", "2019-04-01"),
    ("h31/4/1", "2019-04-01"),
    ("H31.4.30", "2019-04-30"),  # last day of 平成
    ("R1.5.1", "2019-05-01"),  # first day of 令和
    ("S39.4.15", "1964-04-15"),
    ("s39-4-15", "1964-04-15"),
    ("T15.1.1", "1926-01-01"),
    ("M45.7.29", "1912-07-29"),
    ("令和6年5月1日", "2024-05-01"),
    ("令和元年5月1日", "2019-05-01"),
    ("平成31年4月1日", "2019-04-01"),
    ("昭和39年4月15日", "1964-04-15"),
    ("大正15年1月1日", "1926-01-01"),
    ("明治45年7月29日", "1912-07-29"),
    ("令和６年５月１日", "2024-05-01"),
    ("令和 6年 5月 1日", "2024-05-01"),
    ("㍻31年4月1日", "2019-04-01"),  # era ligature
    ("㋿元年5月1日", "2019-05-01"),
    ("昭39.4.15", "1964-04-15"),
    ("H31.5.1", "2019-05-01"),  # past the end of 平成: read arithmetically
    ("2024-02-29", "2024-02-29"),  # leap day
    ("R6.2.29", "2024-02-29"),
    (" 2024-05-01 ", "2024-05-01"),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_DATES)
def test_parse_dates_accepts(raw: str, expected: str) -> None:
    dates, bad = parse_dates(pd.Series([raw]))
    assert dates.iloc[0] == pd.Timestamp(expected)
    assert not bad.iloc[0]


@pytest.mark.parametrize(
    "raw",
    [
        "2023-02-29",  # not a leap year
        "R5.2.29",
        "2024-13-01",
        "2024-04-31",
        "2024-00-10",
        "abc",
        "2024-05",
        "24/5/1",  # two-digit year
        "2024-05/01",  # mixed separators
        "H0.1.1",  # era year 0
        "X6.5.1",  # unknown era
        "令和6年13月1日",
        "2024050",
        "00000000",
    ],
)
def test_parse_dates_rejects(raw: str) -> None:
    dates, bad = parse_dates(pd.Series([raw]))
    assert pd.isna(dates.iloc[0])
    assert bad.iloc[0]


def test_parse_dates_missing_is_not_bad() -> None:
    dates, bad = parse_dates(pd.Series(["", "  ", "　", None, np.nan]))
    assert dates.isna().all()
    assert not bad.any()


def test_parse_dates_output_types_and_index() -> None:
    s = pd.Series(["R6.5.1", "abc", None], index=[10, 20, 30], name="exam_date")
    dates, bad = parse_dates(s)
    assert dates.dtype == "datetime64[ns]"
    assert bad.dtype == bool
    assert dates.index.tolist() == [10, 20, 30] and bad.index.tolist() == [10, 20, 30]
    assert dates.name == "exam_date"
    assert bad.tolist() == [False, True, False]


def test_parse_dates_datetime_input_unchanged() -> None:
    s = pd.Series(pd.to_datetime(["2024-05-01 09:30", None]))
    dates, bad = parse_dates(s)
    pd.testing.assert_series_equal(dates, s.astype("datetime64[ns]"))
    assert not bad.any()


def test_parse_dates_other_input_kinds() -> None:
    # integers as read from a numeric CSV column, date objects, Timestamps, string dtype
    assert parse_dates(pd.Series([20240501]))[0].iloc[0] == pd.Timestamp("2024-05-01")
    assert parse_dates(pd.Series([20240501.0, np.nan]))[0].iloc[0] == pd.Timestamp("2024-05-01")
    mixed = pd.Series([dt.date(2024, 5, 1), pd.Timestamp("2019-05-01"), "H31.4.30", ""])
    dates, bad = parse_dates(mixed)
    assert dates.tolist()[:3] == [
        pd.Timestamp(d) for d in ("2024-05-01", "2019-05-01", "2019-04-30")
    ]
    assert pd.isna(dates.iloc[3]) and not bad.any()
    dates, _ = parse_dates(pd.Series(["令和6年5月1日", pd.NA], dtype="string"))
    assert dates.iloc[0] == pd.Timestamp("2024-05-01") and pd.isna(dates.iloc[1])


def test_parse_dates_many_rows_few_values() -> None:
    """The real-data case: 1,000,000 strings drawn from ~3,000 distinct spellings."""
    rng = np.random.default_rng(0)
    days = pd.date_range("2019-05-01", periods=1000, freq="D")
    forms = np.concatenate(
        [
            days.strftime("%Y-%m-%d"),
            days.strftime("%Y%m%d"),
            [f"R{d.year - 2018}.{d.month}.{d.day}" for d in days],
        ]
    )
    forms = np.append(forms, ["", "abc", "2023-02-29"])
    raw = pd.Series(rng.choice(forms, size=1_000_000))
    dates, bad = parse_dates(raw)
    assert len(dates) == 1_000_000
    assert bad.sum() == raw.isin(["abc", "2023-02-29"]).sum()
    assert dates.isna().sum() == raw.isin(["", "abc", "2023-02-29"]).sum()
    first = raw == days[0].strftime("%Y%m%d")
    assert (dates[first] == days[0]).all()


def test_parse_dates_negative_era_year_text_is_bad() -> None:
    assert parse_dates(pd.Series(["R-1.5.1"]))[1].iloc[0]


# ---------------------------------------------------------------------------------------------
# fiscal year and age
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "fy"),
    [
        ("2024-03-31", 2023),
        ("2024-04-01", 2024),
        ("2024-12-31", 2024),
        ("2025-01-01", 2024),
        ("2025-03-31", 2024),
        ("2019-04-30", 2019),
    ],
)
def test_fiscal_year(date: str, fy: int) -> None:
    assert fiscal_year(pd.Series(pd.to_datetime([date]))).iloc[0] == fy


def test_fiscal_year_missing_and_text() -> None:
    out = fiscal_year(pd.Series(pd.to_datetime(["2024-04-01", None])))
    assert str(out.dtype) == "Int64"
    assert out.iloc[0] == 2024 and pd.isna(out.iloc[1])
    assert fiscal_year(pd.Series(["R6.3.31", "令和6年4月1日"])).tolist() == [2023, 2024]


@pytest.mark.parametrize(
    ("birth", "age"),
    [
        ("1984-04-01", 40),  # calendar rule: turns 41 on 2025-04-01 (legally 41 on 3/31)
        ("1984-04-02", 40),
        ("1984-03-31", 41),  # birthday is the reference day itself
        ("1984-03-30", 41),
        ("1984-02-29", 41),  # leap-day birth
        ("1950-04-01", 74),
        ("1950-03-31", 75),
    ],
)
def test_age_at_fiscal_year_end(birth: str, age: int) -> None:
    b = pd.Series(pd.to_datetime([birth]))
    assert age_at_fiscal_year_end(b, 2024).iloc[0] == age
    assert age_at_fiscal_year_end(b, pd.Series([2024])).iloc[0] == age


def test_age_at_fiscal_year_end_vector_and_missing() -> None:
    b = pd.Series(pd.to_datetime(["1984-04-01", None, "1984-04-01"]))
    fy = pd.Series([2024, 2024, pd.NA], dtype="Int64")
    out = age_at_fiscal_year_end(b, fy)
    assert str(out.dtype) == "Int64"
    assert out.iloc[0] == 40 and pd.isna(out.iloc[1]) and pd.isna(out.iloc[2])
    # text birth dates are parsed
    assert age_at_fiscal_year_end(pd.Series(["S59.4.2"]), 2024).iloc[0] == 40


# ---------------------------------------------------------------------------------------------
# HbA1c
# ---------------------------------------------------------------------------------------------


def test_hba1c_thresholds_map() -> None:
    assert hba1c_jds_to_ngsp(5.2) == 5.6
    assert hba1c_jds_to_ngsp(6.1) == 6.5
    assert hba1c_ngsp_to_jds(6.5) == 6.1


def test_hba1c_round_trip() -> None:
    jds = pd.Series(np.round(np.arange(3.0, 20.0, 0.1), 1))
    ngsp = hba1c_jds_to_ngsp(jds)
    assert ngsp.dtype == "float64"
    assert str(hba1c_jds_to_ngsp(jds.astype("Float64")).dtype) == "Float64"
    back = hba1c_ngsp_to_jds(ngsp)
    np.testing.assert_allclose(back.to_numpy(dtype=float), jds.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(ngsp.to_numpy(dtype=float), jds.to_numpy() + 0.4, atol=1e-9)


def test_hba1c_missing() -> None:
    assert pd.isna(hba1c_jds_to_ngsp(pd.Series([None], dtype="Float64")).iloc[0])
    assert np.isnan(hba1c_jds_to_ngsp(np.nan))


def test_harmonise_hba1c() -> None:
    df = pd.DataFrame({"fiscal_year": [2011, 2012, 2013, None], "hba1c": [5.2, 6.1, 5.6, 6.0]})
    out = harmonise_hba1c(df)
    assert out["hba1c"].tolist() == [5.6, 6.5, 5.6, 6.0]
    assert out["hba1c"].dtype == "float64"
    assert df["hba1c"].tolist() == [5.2, 6.1, 5.6, 6.0]  # input untouched
    out = harmonise_hba1c(df, last_jds_fy=2011)
    assert out["hba1c"].tolist() == [5.6, 6.1, 5.6, 6.0]


# ---------------------------------------------------------------------------------------------
# Questionnaire
# ---------------------------------------------------------------------------------------------


def test_questionnaire_codes_cover_columns() -> None:
    assert tuple(QUESTIONNAIRE_CODES) == QUESTIONNAIRE_COLUMNS
    assert QUESTIONNAIRE_CODES["q_smoking"] == (1, 2, 3)
    assert QUESTIONNAIRE_CODES["q_alcohol_freq"] == tuple(range(1, 9))
    assert QUESTIONNAIRE_CODES["q_alcohol_amount"] == tuple(range(1, 6))
    assert QUESTIONNAIRE_CODES["q_intention"] == tuple(range(1, 6))
    assert LAST_LEGACY_QUESTIONNAIRE_FY == 2023


def _frame(fy: int, **cols: list) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"fiscal_year": [fy] * n, **cols})


def test_harmonise_old_codes() -> None:
    df = pd.DataFrame(
        {
            "fiscal_year": [2022, 2022, 2022, 2022],
            "q_smoking": [1, 2, 1, 2],
            "q_alcohol_freq": [1, 2, 3, None],
            "q_alcohol_amount": [1, 2, 3, 4],
            "q_guidance_received": [1, 2, 1, 2],
            "q_sleep": [1, 2, 1, 2],
        }
    )
    out = harmonise_questionnaire(df)
    assert out["q_smoking"].tolist() == [1, 3, 1, 3]
    assert out["q_alcohol_freq"].tolist()[:3] == [1, 3, 8]
    assert pd.isna(out["q_alcohol_freq"].iloc[3])
    assert out["q_alcohol_amount"].tolist() == [1, 2, 3, 4]
    assert out["q_guidance_received"].isna().all()
    assert out["q_sleep"].tolist() == [1, 2, 1, 2]
    assert df["q_smoking"].tolist() == [1, 2, 1, 2]  # new frame, input untouched
    assert all(str(out[c].dtype) == "Int64" for c in QUESTIONNAIRE_COLUMNS if c in out)


def test_harmonise_new_codes_pass_through() -> None:
    df = _frame(
        2024,
        q_smoking=[1, 2, 3],
        q_alcohol_freq=[2, 6, 7],
        q_alcohol_amount=[5, 4, 1],
        q_guidance_received=[1, 2, 1],
    )
    out = harmonise_questionnaire(df)
    for col in ("q_smoking", "q_alcohol_freq", "q_alcohol_amount", "q_guidance_received"):
        assert out[col].tolist() == df[col].tolist()


def test_harmonise_invalid_codes_reported() -> None:
    df = pd.DataFrame(
        {
            "fiscal_year": [2022, 2022, 2024, 2024, None],
            "q_smoking": ["3", "２", "4", "x", "1"],  # 3 invalid before FY2024
            "q_alcohol_amount": [5, 4, 6, 5, None],
            "q_sleep": [1, 3, 2, 2.5, 1],
        }
    )
    out, problems = harmonise_questionnaire_with_problems(df)
    assert problems["q_smoking"].sum() == 4
    assert out["q_smoking"].isna().tolist() == [True, False, True, True, True]
    assert out["q_smoking"].iloc[1] == 3  # old 2 "no" → 3
    assert problems["q_smoking"].tolist() == [True, False, True, True, True]  # last: FY unknown
    assert out["q_alcohol_amount"].isna().tolist() == [True, False, True, False, True]
    assert problems["q_alcohol_amount"].tolist() == [True, False, True, False, False]
    assert out["q_sleep"].isna().tolist() == [False, True, False, True, False]
    assert problems["q_sleep"].tolist() == [False, True, False, True, False]


def test_harmonise_needs_fiscal_year() -> None:
    with pytest.raises(KeyError, match="fiscal_year"):
        harmonise_questionnaire(pd.DataFrame({"q_smoking": [1]}))


def test_legacy_boundary_parameter() -> None:
    df = pd.DataFrame({"fiscal_year": [2023, 2024], "q_smoking": [2, 2]})
    assert harmonise_questionnaire(df)["q_smoking"].tolist() == [3, 2]
    assert harmonise_questionnaire(df, last_legacy_fy=2022)["q_smoking"].tolist() == [2, 2]


def test_to_legacy_codes() -> None:
    df = _frame(
        2020,
        q_smoking=[1, 2, 3, 1, 1, 1, 1, 1],
        q_alcohol_freq=[1, 2, 3, 4, 5, 6, 7, 8],
        q_alcohol_amount=[1, 2, 3, 4, 5, 5, None, 1],
        q_guidance_received=[1, 2, 1, 2, 1, 2, 1, 2],
    )
    old = to_legacy_questionnaire(df)
    assert old["q_smoking"].tolist() == [1, 2, 2, 1, 1, 1, 1, 1]
    assert old["q_alcohol_freq"].tolist() == [1, 2, 2, 2, 2, 3, 3, 3]
    assert old["q_alcohol_amount"].tolist()[:6] == [1, 2, 3, 4, 4, 4]
    assert old["q_guidance_received"].tolist() == df["q_guidance_received"].tolist()
    for col, codes in LEGACY_QUESTIONNAIRE_CODES.items():
        assert old[col].dropna().isin(codes).all()
    # FY2024 rows untouched
    new = to_legacy_questionnaire(df.assign(fiscal_year=2024))
    assert new["q_smoking"].tolist() == df["q_smoking"].tolist()


def test_round_trip_legacy_then_harmonise() -> None:
    """harmonise(to_legacy(x)) == x where lossless, else the documented collapse."""
    collapse = {
        "q_smoking": {1: 1, 2: 3, 3: 3},
        "q_alcohol_freq": {1: 1, 2: 3, 3: 3, 4: 3, 5: 3, 6: 8, 7: 8, 8: 8},
        "q_alcohol_amount": {1: 1, 2: 2, 3: 3, 4: 4, 5: 4},
    }
    rng = np.random.default_rng(1)
    n = 2000
    canonical = pd.DataFrame(
        {
            "fiscal_year": rng.choice([2018, 2021, 2023, 2024, 2025], size=n),
            **{
                col: pd.array(rng.choice(QUESTIONNAIRE_CODES[col], size=n), dtype="Int64")
                for col in QUESTIONNAIRE_COLUMNS
            },
        }
    )
    back = harmonise_questionnaire(to_legacy_questionnaire(canonical))
    old = (canonical["fiscal_year"] <= LAST_LEGACY_QUESTIONNAIRE_FY).to_numpy()
    for col in QUESTIONNAIRE_COLUMNS:
        if col in collapse:
            expected = canonical[col].where(~old, canonical[col].map(collapse[col]))
            pd.testing.assert_series_equal(back[col], expected.astype("Int64"), check_names=False)
            lossless = [k for k, v in collapse[col].items() if k == v]
            keep = canonical[col].isin(lossless).to_numpy()
            assert (back[col][keep] == canonical[col][keep]).all()
        elif col == "q_guidance_received":
            assert back[col][old].isna().all()
            assert (back[col][~old] == canonical[col][~old]).all()
        else:
            pd.testing.assert_series_equal(back[col], canonical[col])


# ---------------------------------------------------------------------------------------------
# BMI and eGFR
# ---------------------------------------------------------------------------------------------


def test_derive_bmi() -> None:
    h = pd.Series([170.0, 160.0, 0.0, None, 150.0])
    w = pd.Series([65.0, 50.0, 60.0, 60.0, None])
    out = derive_bmi(h, w)
    assert out.dtype == "float64"
    assert str(derive_bmi(h.astype("Float64"), w).dtype) == "Float64"
    assert out.iloc[0] == 22.5 and out.iloc[1] == 19.5
    assert out.iloc[2:].isna().all()
    assert derive_bmi(170, 65) == 22.5


@pytest.mark.parametrize(
    ("cr", "age", "sex", "egfr"),
    [(0.86, 60, 1, 70.7), (0.70, 58, 2, 66.0), (1.00, 70, 1, 57.3)],
)
def test_derive_egfr_worked_checks(cr: float, age: int, sex: int, egfr: float) -> None:
    assert derive_egfr(cr, age, sex) == egfr
    out = derive_egfr(pd.Series([cr]), pd.Series([age]), pd.Series([sex]))
    assert out.iloc[0] == egfr


def test_derive_egfr_vector_and_invalid() -> None:
    cr = pd.Series([0.86, 0.70, 0.0, 1.0, 1.0, None])
    age = pd.Series([60, 58, 60, 10, 60, 60])
    sex = pd.Series([1, 2, 1, 1, 3, 1])
    out = derive_egfr(cr, age, sex)
    assert out.dtype == "float64"
    assert out.iloc[:2].tolist() == [70.7, 66.0]
    assert out.iloc[2:].isna().all()
    # nullable codes and ages (as validate passes them), text creatinine
    out = derive_egfr(cr.astype(str), age.astype("Int64"), sex.astype("Int64"))
    assert str(out.dtype) == "Float64"
    assert out.iloc[:2].tolist() == [70.7, 66.0]
    assert out.iloc[2:].isna().all()


# ---------------------------------------------------------------------------------------------
# Numbers and codes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("120", 120.0),
        ("１２０", 120.0),
        (" 5.6 ", 5.6),
        ("５．６", 5.6),
        ("－1.5", -1.5),
        ("+3", 3.0),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("007", 7.0),
    ],
)
def test_coerce_numeric_good(raw: str, value: float) -> None:
    values, bad = coerce_numeric(pd.Series([raw]))
    assert values.iloc[0] == value
    assert not bad.iloc[0]


@pytest.mark.parametrize(
    "raw", ["5,6", "1,200", "<5", "5未満", "5以上", "120mg", "abc", "inf", "nan", "1_000", "5.6.1"]
)
def test_coerce_numeric_bad(raw: str) -> None:
    values, bad = coerce_numeric(pd.Series([raw]))
    assert pd.isna(values.iloc[0])
    assert bad.iloc[0]


def test_coerce_numeric_missing_and_types() -> None:
    values, bad = coerce_numeric(pd.Series(["", " ", None, np.nan, "1"], index=list("abcde")))
    assert str(values.dtype) == "Float64" and bad.dtype == bool
    assert values.isna().tolist() == [True, True, True, True, False]
    assert not bad.any()
    assert values.index.tolist() == list("abcde")
    # numeric input passes through
    values, bad = coerce_numeric(pd.Series([1.5, np.nan, np.inf]))
    assert values.iloc[0] == 1.5 and values.iloc[1:].isna().all()
    assert bad.tolist() == [False, False, True]


def test_coerce_int_code() -> None:
    s = pd.Series(["2", "2.0", "２", " 1 ", "2.5", "9", "x", "", None, 3.0])
    values, bad = coerce_int_code(s, (1, 2, 3))
    assert str(values.dtype) == "Int64"
    assert values.tolist()[:4] == [2, 2, 2, 1]
    assert values.iloc[4:9].isna().all()
    assert values.iloc[9] == 3
    assert bad.tolist() == [False, False, False, False, True, True, True, False, False, False]
    values, bad = coerce_int_code(pd.Series(["9", "-1"]), None)
    assert values.tolist() == [9, -1] and not bad.any()
    values, bad = coerce_int_code(pd.Series([1, 2, 5], dtype="Int64"), (1, 2))
    assert values.isna().tolist() == [False, False, True] and bad.tolist() == [False, False, True]


def test_first_form_chewing_and_snacks_answers_are_not_read_as_todays_questions() -> None:
    # FY2008-2017: item 13 asked about weight change, item 16 about late-evening snacks (yes/no)
    df = pd.DataFrame(
        {
            "fiscal_year": [2015, 2017, 2018, 2024],
            "q_chewing": [1, 2, 1, 3],
            "q_snacks": [2, 1, 2, 3],
            "q_sleep": [1, 2, 1, 2],
        }
    )
    out, problems = harmonise_questionnaire_with_problems(df)
    assert out["q_chewing"].isna().tolist() == [True, True, False, False]
    assert out["q_snacks"].isna().tolist() == [True, True, False, False]
    assert problems["q_chewing"].tolist() == [True, True, False, False]
    assert out["q_sleep"].tolist() == [1, 2, 1, 2]  # other items of those years are read
