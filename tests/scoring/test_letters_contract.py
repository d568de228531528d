"""LetterRequest contract and catalogue validation (no PDF rendering here)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scoring.letters import CatalogueError, load_catalogue, normalise_requests, render_letters
from scoring.letters.catalogue import DEFAULT_CATALOGUE
from scoring.letters.render import build_context, referral_items
from scoring.letters.schema import LetterRequestError
from tests.scoring.letter_helpers import config, requests


def _rows(df):
    from scoring.letters.render import _rows

    return _rows(normalise_requests(df))


def test_fixture_satisfies_contract():
    df = normalise_requests(requests())
    assert len(df) == 6
    assert list(df["language"]) == ["ja", "ja-easy", "en", "ja", "ja", "ja"]
    assert df.loc[5, "requested_language"] == "zh"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("risk", 1.4),
        ("letter_type", "reminder"),
        ("outcome", "cancer"),
        ("pseudonym", "Not-A-Pseudonym"),
        ("postal_code", "12-34"),
        ("risk_band", "extreme"),
    ],
)
def test_contract_refuses_bad_values(column, value):
    df = requests()
    df.loc[0, column] = value
    with pytest.raises(LetterRequestError) as e:
        normalise_requests(df)
    assert column in str(e.value) and "rows [0]" in str(e.value)
    assert str(value) not in str(e.value)  # names and addresses never reach a message


def test_advice_rows_need_a_risk():
    df = requests()
    df.loc[0, "risk"] = None
    with pytest.raises(LetterRequestError, match="advice rows need risk"):
        normalise_requests(df)


def test_duplicate_pseudonyms_refused():
    df = requests()
    df.loc[1, "pseudonym"] = df.loc[0, "pseudonym"]
    with pytest.raises(LetterRequestError, match="pseudonym"):
        normalise_requests(df)


def test_unknown_whatif_scenario_refused_before_rendering(tmp_path):
    df = requests()
    df.loc[0, "whatif_scenario"] = "grow_younger"
    with pytest.raises(ValueError, match="grow_younger"):
        render_letters(df, tmp_path / "out", config(workers=1))
    assert not (tmp_path / "out").exists()


def test_bundled_catalogue_covers_every_modifiable_feature():
    from features.declarations import modifiable_features

    cat = load_catalogue()
    assert set(cat.factors) == set(modifiable_features())
    for feat in ("age", "sex", "q_hist_heart", "hba1c", "sbp", "q_med_bp"):
        assert cat.topic_of(feat) is None


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CATALOGUE.read_text(encoding="utf-8"))
    mutate(raw)
    p = tmp_path / "catalogue.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return p


def test_catalogue_missing_language_is_a_clear_error(tmp_path):
    p = _write(tmp_path, lambda raw: raw["topics"]["weight"]["advice"].pop("en"))
    with pytest.raises(CatalogueError, match=r"topics\.weight\.advice.*missing.*'en'"):
        load_catalogue(p)


def test_catalogue_missing_factor_is_a_clear_error(tmp_path):
    p = _write(tmp_path, lambda raw: raw["factors"].pop("q_sleep"))
    with pytest.raises(CatalogueError, match="q_sleep"):
        load_catalogue(p)


def test_catalogue_unknown_field_is_a_clear_error(tmp_path):
    def mutate(raw):
        raw["ui"]["risk_people"]["ja"] = "{people}人"

    with pytest.raises(CatalogueError, match=r"ui\.risk_people\.ja.*people"):
        load_catalogue(_write(tmp_path, mutate))


def test_catalogue_advice_on_non_modifiable_factor_is_dropped(tmp_path):
    def mutate(raw):
        raw["topics"]["ageing"] = {
            "title": {"ja": "年齢", "ja-easy": "年齢", "en": "Age"},
            "advice": {"ja": "若返りましょう", "ja-easy": "若返り", "en": "Get younger"},
        }
        raw["factors"]["age"] = "ageing"
        raw["factors"]["q_hist_stroke"] = "ageing"
        raw["whatif"]["younger"] = {
            "factor": "age",
            "text": {lang: "{before} {after}" for lang in ("ja", "ja-easy", "en")},
        }

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cat = load_catalogue(_write(tmp_path, mutate))
    assert "age" not in cat.factors and "q_hist_stroke" not in cat.factors
    assert "younger" not in cat.whatif
    assert any("not modifiable" in str(w.message) for w in caught)
    # even if the scoring step asks for it, no advice on age
    row = _rows(requests())[0] | {"factor_1": "age", "factor_2": "q_hist_stroke", "factor_3": None}
    ctx, notes = build_context(row, cat, config())
    assert [f["title"] for f in ctx["factors"]] == []
    assert "若返り" not in str(ctx)
    assert any("'age' dropped" in n for n in notes)


def test_factors_sharing_a_topic_are_advised_once():
    row = _rows(requests())[0] | {"factor_1": "weight_kg", "factor_2": "bmi", "factor_3": "q_sleep"}
    ctx, _ = build_context(row, load_catalogue(), config())
    assert [f["title"] for f in ctx["factors"]] == ["体重を減らす", "睡眠で休養をとる"]


@pytest.mark.parametrize(
    ("change", "hits", "urgent"),
    [
        ({}, [], False),
        ({"sbp": 165.0}, ["sbp"], True),
        ({"dbp": 100.0}, ["dbp"], True),
        ({"sbp": 145.0}, ["sbp"], False),
        ({"ldl": 140.0}, ["ldl"], False),
        ({"egfr": 40.0}, ["egfr"], False),
        ({"hdl": 30.0}, [], False),  # no referral level for HDL since 2024
    ],
)
def test_referral_levels(change, hits, urgent):
    row = _rows(requests())[0] | change
    assert referral_items(row) == (hits, urgent)


def test_an_advice_request_with_a_referral_value_is_refused():
    """The selection alone decides the letter type: the renderer never upgrades a letter."""
    df = requests()
    df.loc[0, "sbp"] = 162.0
    with pytest.raises(LetterRequestError, match="referral-level value"):
        normalise_requests(df)
    row = _rows(requests())[0] | {"sbp": 162.0}
    with pytest.raises(LetterRequestError, match="referral-level value"):
        build_context(row, load_catalogue(), config())
    doctor = row | {"letter_type": "see_doctor"}
    ctx, _ = build_context(doctor, load_catalogue(), config())
    assert ctx["see_doctor"] and ctx["bp_urgent"] and ctx["doctor_items"]
    assert ctx["risk"] is None and ctx["whatif"] is None and ctx["factors"] == []


@pytest.mark.parametrize("seed", range(5))
def test_one_letters_referral_view_matches_the_selections(seed):
    import numpy as np
    import pandas as pd

    from data.judgements import REFERRAL_ITEMS, referral_values

    rng = np.random.default_rng(seed)
    base = _rows(requests())[0]
    rows = []
    for _ in range(200):
        row = dict(base)
        for item, (lo, hi) in {
            "hba1c": (5, 8),
            "fpg": (80, 160),
            "sbp": (100, 175),
            "dbp": (60, 110),
            "ldl": (80, 190),
            "tg": (50, 400),
            "alt": (10, 80),
            "ggt": (10, 150),
            "egfr": (30, 100),
        }.items():
            row[item] = float(np.round(rng.uniform(lo, hi), 1))  # fmt: skip
        rows.append(row)
    table = referral_values(pd.DataFrame(rows))
    for row, (_, expect) in zip(rows, table.iterrows(), strict=True):
        hits, urgent = referral_items(row)
        assert hits == [i for i in REFERRAL_ITEMS if expect[i]] and urgent == expect["bp_urgent"]


def test_whatif_omitted_when_it_does_not_lower_the_shown_risk():
    row = _rows(requests())[0] | {"whatif_risk_after": 0.238}
    ctx, notes = build_context(row, load_catalogue(), config())
    assert ctx["whatif"] is None
    assert any("omitted" in n for n in notes)


def test_intro_thanks_for_the_checkup_the_values_come_from():
    """A resident scored on last year's checkup (fallback) is thanked for that year's checkup."""
    df = requests().iloc[:1].assign(fiscal_year=2025, exam_date="2025-02-20")  # FY2024 checkup
    ctx, _ = build_context(_rows(df)[0], load_catalogue(), config())
    assert ctx["intro"].startswith("2024年度の特定健診")
    df = df.assign(exam_date="2025-04-01")  # FY2025 starts in April
    assert build_context(_rows(df)[0], load_catalogue(), config())[0]["intro"].startswith("2025")


_HOSTILE_TEXT = [
    "山田 太郎", "ｱｲｳ", "", " ", "\u3000\u3000", "\u00a0", "\t\n", "\u200b", "\u200e\u202e",
    "\ufe0f", "\U000e0100", "\u0301", "a\u0301", "\x00", "\x1f", "😀", "\u2028", "\u180e",
    "-", "〒", "\U00020bb7", "\ufeff", "\u2066x\u2069", None, "\ud7ff", "\U0010fffd",
]  # fmt: skip
_LONE_SURROGATES = ["李 \ud800美玲", "\udfff"]  # a broken decode: not UTF-8


def test_visible_is_has_visible_of_every_value():
    """The vectorised blank check answers as scoring.typeset.has_visible, value by value."""
    from scoring.letters.schema import _visible
    from scoring.typeset import has_visible

    for values in (_HOSTILE_TEXT * 3, _HOSTILE_TEXT + _LONE_SURROGATES):
        s = pd.Series(values, dtype=object)
        for series in (s, s.astype("string")):
            want = [has_visible(v) if isinstance(v, str) else False for v in s]
            assert _visible(series).tolist() == want


def test_postal_codes_are_normalised_as_nfkc_value_by_value():

    codes = pd.Series(
        [
            "100-0001",
            "１００－０００１",
            "〒 100-0001",
            " 1000001 ",
            None,
            "ｱ",
            "〒１２３",
            "",
            "\u3000",
        ],
        dtype=object,
    )
    _same_postal_codes(codes)
    _same_postal_codes(pd.concat([codes, pd.Series(["1\ud800"])], ignore_index=True))


def _same_postal_codes(codes: pd.Series) -> None:
    import unicodedata

    from scoring.letters.schema import normalise_postal_code

    s = codes.astype("string")
    s = s.map(lambda v: unicodedata.normalize("NFKC", v) if isinstance(v, str) else v)
    want = s.astype("string").str.strip().str.removeprefix("〒").str.strip()
    pd.testing.assert_series_equal(normalise_postal_code(codes), want)
