"""A letter on any declared outcome names it and shows the items that define it (data.outcomes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.outcomes import OUTCOME_DECLARATIONS
from scoring.letters import render_letters
from scoring.letters.catalogue import load_catalogue
from scoring.selection import SELECTION_INPUTS, SelectionConfig, select
from tests.scoring.letter_helpers import _base, config, flat

UA = next(o for o in OUTCOME_DECLARATIONS if "uric_acid" in o.letter_items)


def test_a_uric_acid_at_its_cut_gets_a_see_a_doctor_letter_on_that_outcome():
    row = dict.fromkeys(SELECTION_INPUTS, np.nan) | {"pseudonym": "p1", "age": 58, "sex": 1}
    row |= {"uric_acid": 7.6} | {f"risk_{o.name}": 0.01 for o in OUTCOME_DECLARATIONS}
    sel = select(pd.DataFrame([row]), SelectionConfig())
    assert sel[["letter_type", "outcome"]].iloc[0].tolist() == ["see_doctor", UA.name]


def _letter(tmp_path, **kw) -> str:
    req = pd.DataFrame([_base(outcome=UA.name, **kw)])
    manifest = render_letters(req, tmp_path, config(workers=1))
    return flat(tmp_path / manifest.frame["file"].iloc[0])


#: ruby prints the reading after its kanji, unbracketed; flat() drops spaces
PLAIN = str.maketrans("", "", "() ")


@pytest.mark.parametrize("language", ["ja", "ja-easy", "en"])
def test_an_advice_letter_names_the_outcome_and_prints_its_item(tmp_path, language):
    text = _letter(tmp_path, language=language, uric_acid=6.4, risk=0.31, risk_band="very_high")
    cat = load_catalogue()
    assert cat.items["uric_acid"].label[language].translate(PLAIN) in text
    assert "6.4" in text
    assert cat.outcomes[UA.name][language].translate(PLAIN) in text


def test_a_see_a_doctor_letter_lists_the_item_at_its_cut(tmp_path):
    text = _letter(
        tmp_path, letter_type="see_doctor", uric_acid=7.6, risk=np.nan, risk_band=None,
        factor_1=None, factor_2=None, factor_3=None, whatif_scenario=None,
        whatif_risk_before=np.nan, whatif_risk_after=np.nan,
    )  # fmt: skip
    label = load_catalogue().items["uric_acid"].label["ja"]
    assert "7.6" in text and text.count(label) >= 2  # the results table and the doctor items
