"""Selection: letter types, exclusions, budget, seeded stratified control arm, reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic
import pytest

from data.columns import OUTCOMES
from scoring.selection import REASONS, SelectionConfig, load_config, select

HEALTHY = {
    "hba1c": 5.4,
    "fpg": 92.0,
    "sbp": 118,
    "dbp": 72,
    "ldl": 110.0,
    "tg": 90.0,
    "hdl": 60.0,
    "non_hdl": 130.0,
    "waist_cm": 78.0,
    "egfr": 80.0,
    "urine_protein": 1,
    "alt": 20.0,
    "ggt": 25.0,
    "uric_acid": 5.0,
    "blood_draw_timing": 2,
    "q_med_bp": 2,
    "q_med_glucose": 2,
    "q_med_lipid": 2,
}


def resident(pid: str, age=55, sex=1, **kw) -> dict:
    row = {"pseudonym": pid, "age": age, "sex": sex, **HEALTHY}
    row.update({f"risk_{o}": 0.01 for o in OUTCOMES})
    row.update(kw)
    return row


def test_rules_give_each_resident_one_letter_type_and_a_reason():
    scores = pd.DataFrame(
        [
            resident("a", risk_diabetes=0.3),  # high risk, below referral → advice
            resident("b", hba1c=6.8, risk_diabetes=0.9),  # at referral, no medication
            resident("c", hba1c=6.8, q_med_glucose=1, risk_diabetes=0.9),  # treated
            resident("d", risk_diabetes=0.05),  # low risk
            resident("e", sbp=165, risk_diabetes=0.5),  # doctor letter wins over advice
            resident("f", risk_diabetes=0.3),
            resident("g", risk_diabetes=0.3),
            resident("h", risk_diabetes=0.3),
        ]
    )
    cfg = SelectionConfig(control_rate=0.0)
    sel = select(
        scores,
        cfg,
        opted_out=pd.Series({"f": True}),
        enrolled=pd.Series({"g": False}),
        last_lettered=pd.Series({"h": pd.Timestamp("2026-06-01")}),
        scoring_date=pd.Timestamp("2026-11-27"),
    ).set_index("pseudonym")
    assert sel.loc["a", ["letter_type", "outcome", "reason"]].tolist() == [
        "advice",
        "diabetes",
        "SENT_ADVICE",
    ]
    assert sel.loc["b", ["letter_type", "reason"]].tolist() == ["see_doctor", "SENT_SEE_DOCTOR"]
    assert sel.loc["c", "reason"] == "ON_MEDICATION" and pd.isna(sel.loc["c", "letter_type"])
    assert sel.loc["d", "reason"] == "BELOW_RISK_THRESHOLD"
    assert sel.loc["e", ["letter_type", "outcome"]].tolist() == ["see_doctor", "hypertension"]
    assert sel.loc["f", "reason"] == "OPTED_OUT"
    assert sel.loc["g", "reason"] == "NOT_ENROLLED"
    assert sel.loc["h", "reason"] == "RECENTLY_LETTERED"
    assert sel["reason"].notna().all() and set(sel["reason"]) <= set(REASONS)
    assert sel["sent"].sum() == 3


def test_the_selection_alone_turns_advice_into_a_doctor_letter_for_referral_values():
    scores = pd.DataFrame(
        [
            # On BP medication, so hypertension is in a doctor's hands, yet SBP 165 / AST-free:
            # the diabetes advice candidate gets a see-a-doctor letter on the same topic.
            resident("a", sbp=165, dbp=95, q_med_bp=1, risk_diabetes=0.4),
            # On lipid medication with LDL 150: a referral value of a treated outcome.
            resident("b", ldl=150.0, q_med_lipid=1, risk_hypertension=0.3),
            resident("c", risk_diabetes=0.3),  # below every referral value: advice
        ]
    )
    sel = select(scores, SelectionConfig(control_rate=0.0)).set_index("pseudonym")
    assert sel.loc["a", ["letter_type", "outcome", "reason"]].tolist() == [
        "see_doctor", "diabetes", "SENT_SEE_DOCTOR"
    ]  # fmt: skip
    assert sel.loc["a", "reason_detail"] == "referral:sbp,referral:dbp,referral:bp_urgent"
    assert sel.loc["b", ["letter_type", "outcome"]].tolist() == ["see_doctor", "hypertension"]
    assert sel.loc["b", "reason_detail"] == "referral:ldl"
    assert sel.loc["c", "letter_type"] == "advice" and pd.isna(sel.loc["c", "reason_detail"])


def test_a_referral_resting_on_an_implausible_value_goes_to_staff_to_verify():
    """A see-a-doctor letter that only a value outside its plausible range calls for (a keyed
    γ-GT of 1500, an SBP of 235) is held, no letter at all (an advice letter must not go to a
    referral-level value), the items named whatever the reason; other values that call for the
    same letter still send it; the division can switch this off."""
    scores = pd.DataFrame(
        [
            resident("a", ggt=1500.0),  # the γ-GT alone: nothing else, held
            resident("b", ggt=1500.0, sbp=165),  # a plausible SBP refers on its own topic
            resident("c", ggt=1500.0, alt=80.0),  # a plausible ALT meets liver too: sent
            resident("d", sbp=235, risk_diabetes=0.4),  # held, not turned into advice
            resident("e", hba1c=3.5, risk_diabetes=0.3),  # implausible, but refers nothing
            resident("f", hba1c=6.8),  # plausible referral
            # on BP medication, SBP 150: a diabetes letter upgraded by the SBP is another
            # topic than the γ-GT's, so held too
            resident("g", ggt=1500.0, sbp=150, q_med_bp=1, risk_diabetes=0.4),
            resident("h", ggt=1500.0),  # as "a", but the contact is at fault
        ]
    )
    contacts = pd.Series("", index=list("abcdefgh"))
    contacts["h"] = "address:too_long"
    cfg = SelectionConfig(control_rate=0.0)
    sel = select(scores, cfg, contact_problems=contacts).set_index("pseudonym")
    assert sel.loc["a", ["reason", "reason_detail"]].tolist() == ["VERIFY_VALUE", "verify:ggt"]
    assert pd.isna(sel.loc["a", "letter_type"]) and pd.isna(sel.loc["a", "outcome"])
    assert not sel.loc["a", "sent"] and pd.isna(sel.loc["a", "arm"])
    assert sel.loc["b", ["letter_type", "outcome", "reason"]].tolist() == [
        "see_doctor", "hypertension", "SENT_SEE_DOCTOR"
    ]  # fmt: skip
    assert sel.loc["c", ["letter_type", "outcome", "reason"]].tolist() == [
        "see_doctor", "liver", "SENT_SEE_DOCTOR"
    ]  # fmt: skip
    assert pd.isna(sel.loc["b", "reason_detail"]) and pd.isna(sel.loc["c", "reason_detail"])
    assert sel.loc["d", ["reason", "reason_detail"]].tolist() == ["VERIFY_VALUE", "verify:sbp"]
    assert pd.isna(sel.loc["d", "letter_type"])
    assert sel.loc["e", ["letter_type", "reason"]].tolist() == ["advice", "SENT_ADVICE"]
    assert pd.isna(sel.loc["e", "reason_detail"])
    assert sel.loc["f", "reason"] == "SENT_SEE_DOCTOR"
    assert sel.loc["g", ["reason", "reason_detail"]].tolist() == ["VERIFY_VALUE", "verify:ggt"]
    assert sel.loc["h", ["reason", "reason_detail"]].tolist() == [
        "CONTACT_INVALID", "address:too_long,verify:ggt"
    ]  # fmt: skip

    off = select(scores, SelectionConfig(control_rate=0.0, verify_implausible=False))
    off = off.set_index("pseudonym")
    assert off.loc["a", ["letter_type", "outcome", "reason"]].tolist() == [
        "see_doctor", "liver", "SENT_SEE_DOCTOR"
    ]  # fmt: skip
    assert off.loc["d", ["letter_type", "outcome"]].tolist() == ["see_doctor", "hypertension"]
    assert not off["reason_detail"].fillna("").str.contains("verify").any()


def _cohort(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        resident(
            f"p{i:05d}",
            age=int(rng.integers(40, 75)),
            sex=int(rng.integers(1, 3)),
            risk_diabetes=float(rng.uniform(0.1, 0.6)),
            risk_hypertension=float(rng.uniform(0.0, 0.6)),
        )
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_budget_and_control_arm():
    scores = _cohort(3000)
    cfg = SelectionConfig(budget={"advice": 400}, control_rate=0.1, seed=7)
    sel = select(scores, cfg)
    sent = sel[sel["reason"] == "SENT_ADVICE"]
    control = sel[sel["reason"] == "CONTROL_ARM"]
    assert len(sent) <= 400 and len(sent) >= 390
    assert abs(len(control) / (len(sent) + len(control)) - 0.10) < 0.015
    # The study population is the top of the ranking: everyone over budget ranks below it.
    study_ranks = pd.concat([sent, control])["rank"]
    assert study_ranks.max() < sel.loc[sel["reason"] == "OVER_BUDGET", "rank"].min()
    # Letter and control arms are alike in risk (randomised within the same population).
    assert abs(sent["priority"].mean() - control["priority"].mean()) < 0.03
    assert set(sel.loc[sel["arm"].notna(), "arm"]) == {"letter", "control"}


def test_control_arm_is_stratified_and_seeded():
    scores = _cohort(4000, seed=1)
    cfg = SelectionConfig(budget={"advice": 2000}, control_rate=0.2, seed=3)
    sel = select(scores, cfg).merge(scores[["pseudonym", "age", "sex"]], on="pseudonym")
    study = sel[sel["arm"].notna()]
    by_sex = study.groupby("sex")["arm"].apply(lambda a: (a == "control").mean())
    assert (by_sex - 0.2).abs().max() < 0.02
    other_seed = select(scores, cfg.model_copy(update={"seed": 4}))
    assert not other_seed["arm"].equals(sel.sort_values("pseudonym")["arm"].reset_index(drop=True))


def test_same_scores_in_any_order_give_the_same_selection():
    scores = _cohort(1500, seed=2)
    cfg = SelectionConfig(budget={"advice": 300}, control_rate=0.1, seed=11)
    a = select(scores, cfg).sort_values("pseudonym", ignore_index=True)
    b = select(scores.sample(frac=1, random_state=5), cfg).sort_values(
        "pseudonym", ignore_index=True
    )
    pd.testing.assert_frame_equal(a, b)


def test_config_file_is_validated():
    cfg = load_config()
    assert cfg.budget.advice == 1000 and cfg.control_rate == 0.1
    with pytest.raises(pydantic.ValidationError):
        SelectionConfig(budgett={"advice": 1})
    with pytest.raises(pydantic.ValidationError):
        SelectionConfig(min_risk={"gout": 0.2})
    with pytest.raises(pydantic.ValidationError):
        SelectionConfig(control_rate=1.5)


def test_values_to_verify_are_found_alike_in_text_and_in_categories():
    """The annual run holds reason_detail as categories: read by its categories, the rows
    naming values to verify are those the text names."""
    from scoring.selection import names_values_to_verify

    detail = pd.Series(
        ["verify:ggt", None, "referral:sbp", "address:too_long,verify:sbp", None, "verify:ggt"],
        dtype="string",
    )
    want = [True, False, False, True, False, True]
    assert names_values_to_verify(detail).tolist() == want
    assert names_values_to_verify(detail.astype("category")).tolist() == want
    assert not names_values_to_verify(pd.Series([None, None], dtype="category")).any()
