"""models.lab_response: the within-person lever → body size and laboratory estimator, its
application to an edited checkup, and the grid split of a value recorded to 0.1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import alcohol_g_per_day
from models.lab_response import (
    BODY,
    COLUMNS,
    LABS,
    MIN_T,
    SCALE_COLUMNS,
    fit_item_scales,
    fit_lab_response,
    fit_response_tables,
    from_normal_score,
    grid_split,
    lab_shift,
    lever_terms,
    to_normal_score,
)


def _histories(n: int = 4_000, years: int = 3, seed: int = 0) -> pd.DataFrame:
    """Known responses, by term:

    * weight: +1.0 kg with no exercise (``q_exercise>=2``) — kept (a risky answer, more weight);
    * sbp: −1.0·Δweight — the wrong sign (weight loss may not raise SBP), zeroed;
    * hba1c: +0.05·Δweight — kept;
    * tg: −20 with no exercise — the wrong sign, zeroed; +15 with *daily* snacks only
      (``q_snacks<=1``), nothing from "sometimes" (``q_snacks<=2``);
    * alcohol amount: missing in both years for abstainers (no change, rows kept).
    """
    rng = np.random.default_rng(seed)
    weight = rng.normal(65, 10, n)
    sbp = rng.normal(125, 10, n)
    hba1c = rng.normal(5.6, 0.3, n)
    tg = rng.normal(120, 30, n)
    ex = rng.integers(1, 3, n).astype(float)
    snacks = rng.integers(1, 4, n).astype(float)
    amount = np.where(rng.random(n) < 0.5, np.nan, 2.0)
    rows = []
    for y in range(years):
        if y:
            new_ex = rng.integers(1, 3, n).astype(float)
            new_snacks = np.where(rng.random(n) < 0.3, rng.integers(1, 4, n), snacks)
            d_no_ex = (new_ex == 2).astype(float) - (ex == 2)
            d_daily = (new_snacks == 1).astype(float) - (snacks == 1)
            dw = rng.normal(0, 2, n) + 1.0 * d_no_ex
            weight += dw
            sbp += -1.0 * dw + rng.normal(0, 1, n)
            hba1c += 0.05 * dw + rng.normal(0, 0.05, n)
            tg += -20.0 * d_no_ex + 15.0 * d_daily + rng.normal(0, 5, n)
            ex, snacks = new_ex, new_snacks
        frame = {
            "pseudonym": [f"p{i:05d}" for i in range(n)], "fiscal_year": 2018 + y,
            "exam_date": pd.Timestamp(f"{2018 + y}-06-01"), "weight_kg": weight.copy(),
            "q_smoking": 3.0, "q_exercise": ex.copy(), "q_walking": 2.0, "q_late_dinner": 2.0,
            "q_snacks": snacks.copy(), "q_skip_breakfast": 2.0, "q_alcohol_amount": amount,
            "sbp": sbp.copy(), "hba1c": hba1c.copy(), "tg": tg.copy(),
        }  # fmt: skip
        for col in (*BODY, *LABS):
            frame.setdefault(col, np.full(n, np.nan))
        rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True)


def test_terms_follow_the_declared_risk_order():
    terms = {name: (lever, cut, side) for name, lever, cut, side in lever_terms()}
    assert terms["weight_kg"] == ("weight_kg", None, 0)
    assert terms["q_exercise>=2"] == ("q_exercise", 2.0, 1)  # 2 = no exercise, the risky answer
    assert {"q_snacks<=2", "q_snacks<=1"} <= set(terms)  # 1 daily > 2 sometimes > 3 hardly
    # drinking is one exposure, the pure alcohol of frequency × amount, not amount steps
    assert terms["alcohol_g_per_day"] == ("q_alcohol_amount", None, 0)
    assert not any(name.startswith("q_alcohol_amount>=") for name in terms)
    # 1 smokes > 2 quit > 3 never, but only "smokes now" is a step: before FY2024 the question
    # was yes / no, so quit and never are one answer there
    assert "q_smoking<=1" in terms and "q_smoking<=2" not in terms


@pytest.fixture(scope="module")
def table():
    return fit_lab_response(_histories())


def test_recovers_known_coefficients_and_zeroes_wrong_signs(table):
    assert tuple(table.columns) == COLUMNS
    assert len(table) == len(BODY + LABS) * len(lever_terms())
    t = table.set_index(["lab", "term"])
    assert t.loc[("weight_kg", "q_exercise>=2"), "beta"] == pytest.approx(1.0, abs=0.15)
    assert t.loc[("weight_kg", "q_exercise>=2"), "kept"]
    assert np.isnan(t.loc[("weight_kg", "weight_kg"), "beta"])  # body: habit terms only
    assert t.loc[("sbp", "weight_kg"), "beta"] == pytest.approx(-1.0, abs=0.02)
    assert t.loc[("sbp", "weight_kg"), "coef"] == 0  # weight loss may not raise SBP
    assert t.loc[("hba1c", "weight_kg"), "beta"] == pytest.approx(0.05, abs=0.005)
    assert t.loc[("hba1c", "weight_kg"), "coef"] == t.loc[("hba1c", "weight_kg"), "beta"]
    assert t.loc[("tg", "q_exercise>=2"), "beta"] == pytest.approx(-20.0, abs=0.6)
    assert t.loc[("tg", "q_exercise>=2"), "coef"] == 0
    # a step of its own: daily snacks, not "sometimes"
    assert t.loc[("tg", "q_snacks<=1"), "coef"] == pytest.approx(15.0, abs=0.6)
    assert abs(t.loc[("tg", "q_snacks<=2"), "beta"]) < 1.0
    # "sometimes" keeps its own size: ~0 (kept, or not, with the lever's clear daily step)
    assert abs(t.loc[("tg", "q_snacks<=2"), "coef"]) < 1.0
    # abstainers (amount missing throughout) are kept: body sizes use every yearly pair, labs
    # every checkup (within person)
    assert t.loc[("weight_kg", "q_exercise>=2"), "n"] == 4_000 * 2
    assert t.loc[("hba1c", "weight_kg"), "n"] == 4_000 * 3
    # labs without data and levers that never change: nothing kept
    assert (t.loc["ldl", "coef"] == 0).all()
    assert (table.loc[table["lever"] == "q_walking", "coef"] == 0).all()


_OTHER_COLUMNS = ("weight_kg", "q_smoking", "q_exercise", "q_walking", "q_late_dinner",
                  "q_skip_breakfast", "q_alcohol_amount", *BODY, *LABS)  # fmt: skip


def _yearly_checkups(years: list[dict], n: int, first_year: int = 2020) -> pd.DataFrame:
    """Yearly checkups of ``n`` persons, one per item of ``years`` (its columns); every other
    lever, body and lab column a constant answer (2) or missing."""
    rows = []
    for y, columns in enumerate(years):
        frame = {
            "pseudonym": [f"p{i:05d}" for i in range(n)],
            "fiscal_year": first_year + y,
            "exam_date": pd.Timestamp(f"{first_year + y}-06-01"),
            **columns,
        }
        for col in _OTHER_COLUMNS:
            frame.setdefault(col, np.full(n, 2.0 if col.startswith("q_") else np.nan))
        rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True)


def _snack_ldl(step2: float, step1: float, seed: int, n: int = 3_000) -> pd.DataFrame:
    """Two checkups; LDL rises by ``step2`` across 間食 "sometimes" (``q_snacks<=2``) and by
    ``step1`` more across "daily" (``q_snacks<=1``), under noise of sd 35 mg/dL."""
    rng = np.random.default_rng(seed)
    snacks = rng.integers(1, 4, n).astype(float)
    later = np.where(rng.random(n) < 0.3, rng.integers(1, 4, n), snacks)
    ldl = rng.normal(120, 25, n)
    step = step2 * ((later <= 2).astype(float) - (snacks <= 2))
    step += step1 * ((later <= 1).astype(float) - (snacks <= 1))
    later_ldl = ldl + step + rng.normal(0, 35, n)
    return _yearly_checkups(
        [{"q_snacks": snacks, "ldl": ldl}, {"q_snacks": later, "ldl": later_ldl}], n
    )


def test_a_lever_clear_as_a_whole_keeps_its_steps():
    steps = ["q_snacks<=2", "q_snacks<=1"]
    ldl = fit_lab_response(_snack_ldl(1.8, 1.8, seed=3)).set_index(["lab", "term"]).loc["ldl"]
    # neither step is clear alone; their sum, which a scenario to "hardly" crosses, is
    assert (ldl.loc[steps, "t"].abs() < MIN_T).all()
    assert (ldl.loc[steps, "lever_t"] > 2.5).all()
    assert ldl.loc[steps, "kept"].all()
    assert (ldl.loc[steps, "coef"] == ldl.loc[steps, "beta"]).all()
    alone = fit_lab_response(_snack_ldl(1.8, 1.8, seed=3), lever_test=False)
    assert not alone.set_index(["lab", "term"]).loc["ldl"].loc[steps, "kept"].any()  # as before
    # a lever not clear as a whole keeps nothing
    weak = fit_lab_response(_snack_ldl(0.5, 0.5, seed=3)).set_index(["lab", "term"]).loc["ldl"]
    assert (weak.loc[steps, "lever_t"].abs() < MIN_T).all()
    assert not weak.loc[steps, "kept"].any()
    assert (weak.loc[steps, "coef"] == 0).all()
    # a wrong-signed step of a clear lever stays 0: no step may raise the risk
    mixed = fit_lab_response(_snack_ldl(2.5, 2.5, seed=0)).set_index(["lab", "term"]).loc["ldl"]
    assert mixed.loc["q_snacks<=2", "beta"] < 0
    assert mixed.loc["q_snacks<=2", "lever_t"] > MIN_T
    assert not mixed.loc["q_snacks<=2", "kept"]
    assert mixed.loc["q_snacks<=2", "coef"] == 0
    assert mixed.loc["q_snacks<=1", "kept"]
    # one-step levers have no lever test
    assert ldl.loc[["weight_kg", "q_exercise>=2"], "lever_t"].isna().all()


def _drinkers(n: int = 4_000, seed: int = 0) -> pd.DataFrame:
    """Two checkups; γ-GT rises by 0.5 U/L per g/day of pure alcohol (frequency × amount)."""
    rng = np.random.default_rng(seed)
    freq = rng.choice([1.0, 3.0, 4.0, 8.0], n)
    amount = np.where(freq == 8, np.nan, rng.integers(1, 5, n)).astype(float)
    later_amount = np.where(
        (freq != 8) & (rng.random(n) < 0.4), rng.integers(1, 5, n), amount
    ).astype(float)
    grams = alcohol_g_per_day(freq, amount)
    later_grams = alcohol_g_per_day(freq, later_amount)
    ggt = rng.lognormal(3.3, 0.4, n)
    later_ggt = ggt + 0.5 * (later_grams - grams) + rng.normal(0, 5, n)
    first = {"q_alcohol_freq": freq, "q_alcohol_amount": amount, "ggt": ggt}
    second = {"q_alcohol_freq": freq, "q_alcohol_amount": later_amount, "ggt": later_ggt}
    return _yearly_checkups([first, second], n)


def test_drinking_less_moves_labs_by_the_grams_it_saves():
    table = fit_lab_response(_drinkers())
    t = table.set_index(["lab", "term"])
    assert t.loc[("ggt", "alcohol_g_per_day"), "coef"] == pytest.approx(0.5, abs=0.03)
    steps = fit_lab_response(_drinkers(), drinking="steps")  # as before, for benchmarks
    assert "alcohol_g_per_day" not in set(steps["term"])
    assert {f"q_alcohol_amount>={k}" for k in range(2, 6)} <= set(steps["term"])
    # 3 合 → under 1 合: a daily drinker saves 40 g/day, a 1-2 days a week drinker 8.6
    before = pd.DataFrame(
        {"q_alcohol_freq": [1.0, 4.0, 8.0], "q_alcohol_amount": [3.0, 3.0, np.nan],
         "ggt": [80.0, 80.0, 80.0]}
    )  # fmt: skip
    out = lab_shift(before, before.assign(q_alcohol_amount=[1.0, 1.0, np.nan]), table)
    saved = alcohol_g_per_day([1.0, 4.0], [3.0, 3.0]) - alcohol_g_per_day([1.0, 4.0], [1.0, 1.0])
    assert saved == pytest.approx([40.0, 40.0 * 1.5 / 7])
    coef = t.loc[("ggt", "alcohol_g_per_day"), "coef"]
    assert out["ggt"].to_numpy()[:2] == pytest.approx(80.0 - coef * saved, abs=1.0)  # whole U/L
    assert out.loc[2, "ggt"] == 80.0  # an abstainer does not move


def test_an_engine_fitted_with_drinking_steps_keeps_its_meaning():
    """A table registered before the g/day exposure has 飲酒量 in steps: still applied so."""
    table = pd.DataFrame(
        [("ggt", "q_alcohol_amount", f"q_alcohol_amount>={k}", b, 0.1, 10.0, np.nan, 1000,
          True, b, "value") for k, b in ((2, 5.0), (3, 10.0), (4, 0.0), (5, 0.0))],
        columns=list(COLUMNS),
    )  # fmt: skip
    before = pd.DataFrame({"q_alcohol_freq": [1.0], "q_alcohol_amount": [3.0], "ggt": [80.0]})
    out = lab_shift(before, before.assign(q_alcohol_amount=1.0), table)
    assert out.loc[0, "ggt"] == 80.0 - 15.0  # both steps crossed, whatever the frequency


def _noisy_levels(n: int = 3_000, years: int = 5, seed: int = 0) -> pd.DataFrame:
    """A person's TG is a stable level plus fresh measurement noise each year (sd 30), +10
    mg/dL while they snack daily; a third start or stop once, in a random year. Their snack
    answer is missing in one year for a tenth of them."""
    rng = np.random.default_rng(seed)
    level = rng.normal(120, 40, n)
    first = rng.integers(1, 4, n).astype(float)
    switch = np.where(rng.random(n) < 1 / 3, rng.integers(1, years, n), years)
    other = np.where(first == 1, 3.0, 1.0)
    gap = np.where(rng.random(n) < 0.1, rng.integers(0, years, n), -1)
    columns = []
    for y in range(years):
        snacks = np.where(y >= switch, other, first)
        tg = level + 10.0 * (snacks == 1) + rng.normal(0, 30, n)
        columns.append({"q_snacks": np.where(gap == y, np.nan, snacks), "tg": tg})
    return _yearly_checkups(columns, n, first_year=2018)


def test_labs_are_estimated_within_person_over_every_checkup():
    """Measurement noise is fresh each year, so a difference of two checkups carries it twice;
    a person's mean over all their checkups carries it once. Both estimate the +10, the
    within-person one with a smaller standard error (clustered by person)."""
    h = _noisy_levels()
    within = fit_lab_response(h).set_index(["lab", "term"]).loc[("tg", "q_snacks<=1")]
    diffs = fit_lab_response(h, labs="differences").set_index(["lab", "term"])
    diffs = diffs.loc[("tg", "q_snacks<=1")]
    assert within["beta"] == pytest.approx(10.0, abs=3 * within["se"])
    assert diffs["beta"] == pytest.approx(10.0, abs=3 * diffs["se"])
    assert within["se"] < 0.8 * diffs["se"]
    assert within["kept"] and within["coef"] == within["beta"]
    # every checkup with a TG counts, those with the snack answer missing too (no change there)
    assert within["n"] == len(h)


def test_with_two_checkups_each_the_estimators_agree():
    """Over two checkups a person's deviation from their mean is half their change: the same β."""
    within = fit_lab_response(_drinkers()).set_index(["lab", "term"])
    diffs = fit_lab_response(_drinkers(), labs="differences").set_index(["lab", "term"])
    key = ("ggt", "alcohol_g_per_day")
    assert within.loc[key, "beta"] == pytest.approx(diffs.loc[key, "beta"], rel=1e-9)
    assert within.loc[key, "n"] == 2 * diffs.loc[key, "n"]  # checkups, not pairs


def test_deterministic_and_training_years_only(table):
    pd.testing.assert_frame_equal(table, fit_lab_response(_histories()))
    early = fit_lab_response(_histories(), before_year=2020).set_index(["lab", "term"])
    assert early.loc[("weight_kg", "q_exercise>=2"), "n"] == 4_000
    assert early.loc[("hba1c", "weight_kg"), "n"] == 4_000 * 2


def test_shift_moves_body_then_labs_only_towards_lower_risk(table):
    before = pd.DataFrame(
        {"weight_kg": [80.0, 80.0, 80.0, 80.0], "bmi": [25.0, 25.0, 25.0, np.nan],
         "q_exercise": [2.0, 2.0, 2.0, 1.0], "hba1c": [6.0, np.nan, 3.02, 6.0],
         "sbp": pd.array([130, 130, 130, 130], dtype="Int64")}
    )  # fmt: skip
    coef = table.set_index(["lab", "term"])["coef"]
    dw = -coef[("weight_kg", "q_exercise>=2")]  # starting to exercise: the body response

    out = lab_shift(before, before.assign(q_exercise=1.0), table)
    assert out.loc[0, "weight_kg"] == pytest.approx(80.0 + dw)
    assert out.loc[0, "bmi"] == pytest.approx(25.0 * (80.0 + dw) / 80.0)  # BMI follows weight
    # the lab follows the weight the habit moved (its own habit coefficient is 0 here)
    assert out.loc[0, "hba1c"] == pytest.approx(6.0 + coef[("hba1c", "weight_kg")] * dw)
    assert np.isnan(out.loc[1, "hba1c"])  # missing stays missing
    assert out.loc[2, "hba1c"] == 3.0  # hard range floor
    assert (out["sbp"] == 130).all()  # the wrong-signed coefficient is not applied
    assert out["sbp"].dtype == before["sbp"].dtype
    assert np.isnan(out.loc[3, "bmi"])
    # someone who already exercised: no change at all
    assert out.loc[3, "weight_kg"] == 80.0 and out.loc[3, "hba1c"] == 6.0
    pd.testing.assert_frame_equal(lab_shift(before, before.copy(), table), before)

    # the scenario's own weight edit moves the labs, and no body response is added to it
    out = lab_shift(before, before.assign(weight_kg=77.0), table)
    assert out.loc[0, "weight_kg"] == 77.0
    assert out.loc[0, "hba1c"] == pytest.approx(6.0 - 3 * coef[("hba1c", "weight_kg")])


def test_a_move_under_one_recorded_step_lands_a_step_further_with_its_share():
    """SBP recorded in whole mmHg, moved by 0.4: rounding kept every value (the move was lost
    for everyone); now 40 % of residents, fixed by pseudonym, land one step lower, so the
    pooled move is the true one."""
    n = 20_000
    before = pd.DataFrame(
        {"pseudonym": [f"{i:016x}" for i in range(n)], "weight_kg": np.full(n, 80.0),
         "sbp": pd.array(np.full(n, 130), dtype="Int64"), "uric_acid": np.full(n, 6.0)}
    )  # fmt: skip
    table = pd.DataFrame(
        [("sbp", "weight_kg", "weight_kg", 0.4, 0.01, 40.0, np.nan, n, True, 0.4, "value"),
         ("uric_acid", "weight_kg", "weight_kg", 0.03, 0.001, 30.0, np.nan, n, True, 0.03,
          "value")],
        columns=list(COLUMNS),
    )  # fmt: skip
    out = lab_shift(before, before.assign(weight_kg=79.0), table)
    sbp = out["sbp"].to_numpy(dtype=float)
    assert set(np.unique(sbp)) == {129.0, 130.0}  # on the grid, never up
    assert (130 - sbp).mean() == pytest.approx(0.4, abs=0.015)
    ua = out["uric_acid"].to_numpy()
    assert set(np.round(np.unique(ua), 9)) == {5.9, 6.0}
    assert (6.0 - ua).mean() == pytest.approx(0.03, abs=0.003)
    # the same residents every time; a resident's draw differs between items
    again = lab_shift(before, before.assign(weight_kg=79.0), table)
    pd.testing.assert_frame_equal(out, again)
    assert ((sbp < 130) != (ua < 6.0)).any()
    # no move, no draw: values stay where they were recorded
    pd.testing.assert_frame_equal(lab_shift(before, before.copy(), table), before)


def test_grid_split_mixes_the_two_recorded_values():
    up, down, w = grid_split(np.array([6.37, 6.4, 6.35, np.nan, 5.0 - 1e-12]), 0.1)
    np.testing.assert_allclose(up[:3], [6.4, 6.4, 6.4])
    np.testing.assert_allclose(down[:3], [6.3, 6.4, 6.3])
    np.testing.assert_allclose(w[:3], [0.3, 0.0, 0.5])
    assert w[3] == 0.0 and w[4] == 0.0  # missing; on the grid up to rounding noise
    # the mix's expected value is the moved value itself
    np.testing.assert_allclose(((1 - w) * up + w * down)[:3], [6.37, 6.4, 6.35])


def test_a_table_from_before_terms_keeps_its_per_code_meaning():
    """An engine registered before the threshold terms: one coefficient per lever, on its raw
    code (``lab``, ``lever``, ``coef``); applied as it was fitted, no body response."""
    old = pd.DataFrame(
        {"lab": ["hba1c", "tg"], "lever": ["weight_kg", "q_exercise"], "coef": [0.02, 9.0]}
    )
    before = pd.DataFrame({"weight_kg": [80.0], "q_exercise": [2.0], "hba1c": [6.0],
                           "tg": [150.0]})  # fmt: skip
    out = lab_shift(before, before.assign(q_exercise=1.0), old)
    assert out.loc[0, "weight_kg"] == 80.0
    assert out.loc[0, "tg"] == pytest.approx(141.0) and out.loc[0, "hba1c"] == 6.0
    out = lab_shift(before, before.assign(weight_kg=77.0), old)
    assert out.loc[0, "hba1c"] == pytest.approx(5.94)


def test_grid_split_only_where_a_recorded_value_moved():
    moved = np.array([6.37, 6.4, 6.31, 6.2])
    recorded = np.array([6.4, 6.4, 6.33, 6.3])  # moved; unmoved; a finer record; moved
    up, down, w = grid_split(moved, 0.1, recorded)
    np.testing.assert_allclose(w, [0.3, 0.0, 0.0, 0.0])  # 6.2 is on the grid itself
    # a finer record keeps its exact move: its upper grid value (6.4) would lie above it
    assert up[2] > recorded[2]


def _skewed_histories(n: int = 6_000, years: int = 4, seed: int = 1) -> pd.DataFrame:
    """TG log-normal, exp(4.7 + 0.5·u): not exercising raises the latent u by 0.2 (so TG by
    the same *share*, ≈ 10 %, at every level); u = a stable part + a yearly AR(1) part."""
    rng = np.random.default_rng(seed)
    stable, ar = rng.normal(0, 0.9, n), rng.normal(0, 0.3, n)
    ex = rng.integers(1, 3, n).astype(float)
    rows = []
    for y in range(years):
        if y:
            ar = 0.6 * ar + np.sqrt(1 - 0.36) * rng.normal(0, 0.3, n)
            ex = np.where(rng.random(n) < 0.3, rng.integers(1, 3, n), ex).astype(float)
        u = stable + ar + 0.2 * (ex == 2)
        frame = {"pseudonym": [f"p{i:05d}" for i in range(n)], "fiscal_year": 2018 + y,
                 "exam_date": pd.Timestamp(f"{2018 + y}-06-01"), "sex": 1 + np.arange(n) % 2,
                 "weight_kg": 65.0, "q_smoking": 3.0, "q_exercise": ex.copy(),
                 "q_walking": 2.0, "q_late_dinner": 2.0, "q_snacks": 3.0,
                 "q_skip_breakfast": 2.0, "q_alcohol_amount": 1.0,
                 "tg": np.round(np.exp(4.7 + 0.5 * u))}  # fmt: skip
        for col in (*BODY, *LABS):
            frame.setdefault(col, np.full(n, np.nan))
        rows.append(pd.DataFrame(frame))
    return pd.concat(rows, ignore_index=True)


def test_item_scales_are_quantiles_by_sex_without_extreme_values():
    h = _skewed_histories()
    scales = fit_item_scales(h)
    assert tuple(scales.columns) == SCALE_COLUMNS
    assert set(scales["item"]) == {"tg"}  # the other labs have no values
    for sex, knots in scales.groupby("sex"):
        v, z = knots["value"].to_numpy(), knots["z"].to_numpy()
        assert (np.diff(v) > 0).all() and (np.diff(z) > 0).all()  # tied knots merged
        tg = h.loc[h["sex"] == sex, "tg"]
        assert v[0] >= tg.quantile(0.004) and v[-1] <= tg.quantile(0.996)  # no one's extreme
        assert 0.8 < knots["persistence"].iloc[0] < 1.0  # stable part + AR(1) 0.6
    # score ↔ value round trip, and the median near score 0
    x = np.array([60.0, 110.0, 250.0])
    back = from_normal_score(scales, "tg", [1, 1, 1], to_normal_score(scales, "tg", [1, 1, 1], x))
    np.testing.assert_allclose(back, x, rtol=1e-9)
    assert abs(to_normal_score(scales, "tg", [2], [h.loc[h["sex"] == 2, "tg"].median()])[0]) < 0.05
    # too few values in one sex: no scale for the item, which keeps recorded units
    few = h[(h["sex"] == 1) | (h.index % 40 == 0)]
    assert fit_item_scales(few).empty
    table = fit_lab_response(few, scales=fit_item_scales(few))
    assert (table.loc[table["lab"] == "tg", "scale"] == "value").all()
    # one value for everyone (a lab that only records its detection limit): no scale either
    assert fit_item_scales(h.assign(tg=30.0)).empty


def test_a_lab_moves_by_the_same_share_of_its_spread_at_every_level():
    """On the normal score a habit's move is the same everywhere, so in recorded units it is
    larger where the item is stretched out: TG 250 falls about three times as far as TG 80
    when exercise starts (the truth: 10 % of next year's expected level for both), where a
    move in recorded units gave both the population's average."""
    h = _skewed_histories()
    table, scales = fit_response_tables(h)
    tg = table[table["lab"] == "tg"].set_index("term")
    assert (tg["scale"] == "normal_score").all()
    assert tg.loc["q_exercise>=2", "kept"]
    before = pd.DataFrame({"pseudonym": ["a", "b"], "sex": [1, 1], "weight_kg": [65.0, 65.0],
                           "q_exercise": [2.0, 2.0], "tg": [80.0, 250.0]})  # fmt: skip
    out = lab_shift(before, before.assign(q_exercise=1.0), table, scales)
    move = before["tg"].to_numpy() - out["tg"].to_numpy(dtype=float)
    # the truth at each resident's expected level next year (its score × the persistence)
    rho = scales.loc[(scales["item"] == "tg") & (scales["sex"] == 1), "persistence"].iloc[0]
    z = to_normal_score(scales, "tg", [1, 1], before["tg"]) * rho
    level = from_normal_score(scales, "tg", [1, 1], z)
    np.testing.assert_allclose(move, level * (1 - np.exp(-0.1)), rtol=0.25, atol=1.0)
    assert move[1] > 2.5 * move[0]
    flat = lab_shift(before, before.assign(q_exercise=1.0), fit_lab_response(h))
    flat_move = before["tg"].to_numpy() - flat["tg"].to_numpy(dtype=float)
    assert abs(flat_move[1] - flat_move[0]) <= 1.0  # recorded units: one move for both
    # a table on the normal score without its scales moves no lab (nothing to read it back)
    pd.testing.assert_frame_equal(
        lab_shift(before, before.assign(q_exercise=1.0), table), before.assign(q_exercise=1.0)
    )


def test_shrinkage_keeps_clear_effects_and_pulls_noise_to_zero():
    """The benchmark variant ``selection="shrinkage"``: one prior over the labs' habit
    coefficients; a clear effect keeps most of its size, an estimate of a null effect is
    pulled towards 0, a wrong sign stays 0, and weight's coefficient is left as fitted."""
    from models.lab_response import shrink_habit_effects

    rng = np.random.default_rng(0)
    truth = np.r_[np.full(12, 0.10), np.zeros(60)]
    beta = truth + rng.normal(0, 0.02, len(truth))
    rows = pd.DataFrame({"lab": "tg", "lever": "q_exercise", "term": "q_exercise>=2",
                         "beta": beta, "se": 0.02, "t": beta / 0.02, "lever_t": np.nan,
                         "n": 1000, "kept": False, "coef": 0.0, "scale": "normal_score"})  # fmt: skip
    weight = rows.iloc[[0]].assign(term="weight_kg", lever="weight_kg", beta=0.04, coef=0.04)
    table = pd.concat([rows, weight], ignore_index=True)
    out = shrink_habit_effects(table)
    coef = out["coef"].to_numpy()
    assert (coef[:12] > 0.85 * beta[:12]).all()
    null_right = (truth == 0) & (beta > 0)
    assert np.abs(coef[:72][null_right]).mean() < 0.4 * beta[null_right].mean()
    assert (coef[:72][beta < 0] == 0).all()
    assert coef[72] == 0.04
