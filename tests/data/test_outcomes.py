"""Outcomes are declared once (data.outcomes) and every consumer derives from, or checks, it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from data.columns import OUTCOMES
from data.judgements import OUTCOME_INPUTS, REFERRAL_ITEMS, outcome_evaluable, outcomes_met
from data.outcomes import OUTCOME_DECLARATIONS, Criterion, Outcome, declaration
from models.baselines import POINT_ITEMS
from scoring.letters.catalogue import load_catalogue
from scoring.report.labels import OUTCOME_JA
from scoring.selection import SELECTION_INPUTS, SelectionConfig, load_config, select


def test_every_table_keyed_by_outcome_covers_exactly_the_declared_outcomes():
    names = tuple(o.name for o in OUTCOME_DECLARATIONS)
    assert OUTCOMES == names
    assert set(load_catalogue().outcomes) >= set(names)
    assert set(load_config().min_risk) == set(names)  # the shipped selection.toml
    assert set(POINT_ITEMS) == set(OUTCOME_JA) == set(names)


#: A value at each MHLW-judged criterion's cut (eGFR: just under 60).
AT_CUT = {
    "hba1c": 6.5, "fpg": 126, "sbp": 140, "dbp": 90, "ldl": 140, "tg": 300, "non_hdl": 170,
    "egfr": 59, "urine_protein": 3, "alt": 51, "ggt": 101,
}  # fmt: skip


def test_each_criterion_alone_meets_its_outcome_and_only_where_measured():
    for o in OUTCOME_DECLARATIONS:
        for c in o.criteria:
            value = c.cut if c.cut is not None else AT_CUT[c.item]
            df = pd.DataFrame({c.item: [value, np.nan]})
            met = outcomes_met(df)[o.name].tolist()
            assert met == [True, False], (o.name, c.item)
            assert outcome_evaluable(df)[o.name].tolist() == [True, False], (o.name, c.item)


def test_a_medication_yes_meets_the_outcomes_that_declare_it():
    for o in OUTCOME_DECLARATIONS:
        for col in o.medication:
            met = outcomes_met(pd.DataFrame({col: [1.0, 2.0]}))[o.name].tolist()
            assert met == ([True, False] if o.medication_meets else [False, False]), o.name


def test_selection_refuses_a_scores_table_without_one_of_its_inputs():
    # Dropping sbp used to turn a see-a-doctor hypertension letter into diabetes advice.
    row = dict.fromkeys(SELECTION_INPUTS, np.nan) | {"pseudonym": "p1", "age": 55, "sex": 1}
    row |= {"sbp": 165.0, "risk_hypertension": 0.5, "risk_diabetes": 0.5}
    scores = pd.DataFrame([row])
    assert select(scores, SelectionConfig())["letter_type"].tolist() == ["see_doctor"]
    with pytest.raises(ValueError, match=r"\['sbp'\]"):
        select(scores.drop(columns="sbp"), SelectionConfig())


def test_a_selection_config_without_an_outcomes_threshold_is_refused_by_name():
    partial = dict.fromkeys(OUTCOMES[:-1], 0.1)
    with pytest.raises(ValidationError, match=OUTCOMES[-1]):
        SelectionConfig(min_risk=partial)


def test_inputs_and_referral_items_derive_from_the_declarations():
    for o in OUTCOME_DECLARATIONS:
        assert {c.item for c in o.criteria} <= set(OUTCOME_INPUTS)
        assert set(o.medication) <= set(OUTCOME_INPUTS)
        assert set(o.referral_items) <= set(REFERRAL_ITEMS)
    assert declaration("ckd").label_ja == "慢性腎臓病"
    with pytest.raises(ValueError, match="declared"):
        declaration("gout")


def test_a_declaration_must_say_how_it_is_met_and_judged():
    with pytest.raises(ValueError, match="criteria"):
        Outcome("x", "x", "x")
    with pytest.raises(ValueError, match="evaluable"):
        Outcome("x", "x", "x", criteria=(Criterion("alt", "alt"),))
    with pytest.raises(ValueError, match="exactly one"):
        Criterion("alt")
