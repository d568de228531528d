"""True drivers of the synthetic ward (data.synth.truth.drivers): the two attributions.

``drivers_<outcome>`` credits an item's level to its upstream causes; ``drivers_observed_<outcome>``
credits a measured item with its current level and habits / adiposity / age only with the change
beyond it. Persons are built by hand and appended to a small reference population (``n_ref``),
so their drivers do not move the population means.
"""

from __future__ import annotations

import numpy as np
import pytest

from data.synth import model, truth

N_REF = 3000
AGE = 55


@pytest.fixture(scope="module")
def cal():
    return model.calibration()


@pytest.fixture(scope="module")
def population(cal):
    rng = np.random.default_rng(5)
    sex = np.where(rng.random(N_REF) < 0.5, 1, 2).astype(np.int8)
    age = rng.integers(40, 75, N_REF)
    return model.init_state(sex, age, rng, cal), age


def _average_person(st: dict) -> dict:
    """A man of 55 at every latent's mean, no medication, average-ish healthy habits, in steady
    state (adiposity's lifestyle part at what his habits sustain)."""
    p = {k: v[:1].copy() for k, v in st.items()}
    for k in p:
        if k[:1] in ("g", "x") and k[1:] in model.TRAIT | model.AR:
            p[k][:] = 0.0
    p["sex"][:], p["age"][:] = 1, AGE
    for m in model.MEDS:
        p["m_" + m][:] = False
    p["smk"][:] = 3
    p["exer"][:], p["walk"][:], p["late"][:], p["skipbf"][:] = True, True, False, False
    p["sleep_ok"][:], p["snack"][:], p["speed"][:] = True, 3, 2
    p["alc_y"][:], p["amt_y"][:], p["alc_quit"][:] = -3.0, -3.0, False
    p["LA"][:] = model.lifestyle_matrix(p) @ model.GAMMA[:, 0]
    return p


def _drivers(cal, population, persons: list[dict], view: str):
    st, age = population
    rows = {k: np.concatenate([st[k], *(p[k] for p in persons)]) for k in st}
    ages = np.concatenate([age, np.full(len(persons), AGE)])
    d = truth.drivers(rows, ages, cal, n_ref=N_REF, view=view)
    return d.iloc[N_REF:].reset_index(drop=True)


def test_observed_columns_and_unknown_view(cal, population):
    d = _drivers(cal, population, [_average_person(population[0])], "observed")
    assert list(d.columns) == [f"drivers_observed_{o}" for o in truth.OUTCOMES]
    with pytest.raises(ValueError, match="view"):
        truth.drivers(population[0], population[1], cal, view="latent")


def test_high_measured_hba1c_is_the_first_observed_driver(cal, population):
    p = _average_person(population[0])
    p["gG"][:] = 2.6  # a persistently high HbA1c; nothing else deviates
    obs = _drivers(cal, population, [p], "observed")["drivers_observed_diabetes"][0].split(";")
    assert obs[0] == "hba1c"
    assert not {"sex", "weight_kg"} & set(obs)


def test_level_from_weight_is_the_items_and_a_habit_change_is_the_habits(cal, population):
    st = population[0]
    # A: heavy and, in steady state, eating fast with daily snacks and late dinners → high
    # HbA1c, ALT, GGT made by adiposity and habits the checkup already sees.
    a = _average_person(st)
    a["gA"][:] = 2.0
    a["speed"][:], a["snack"][:], a["late"][:], a["exer"][:] = 1, 1, True, False
    a["LA"][:] = model.lifestyle_matrix(a) @ model.GAMMA[:, 0]
    # B: normal laboratory values, but the same habits taken up only this year: adiposity's
    # lifestyle part is still where the old, healthy habits held it, so it will rise.
    b = _average_person(st)
    b["speed"][:], b["snack"][:], b["late"][:], b["exer"][:] = 1, 1, True, False
    gen = _drivers(cal, population, [a, b], "generator")
    obs = _drivers(cal, population, [a, b], "observed")
    habits = {"q_eating_speed", "q_snacks", "q_late_dinner", "q_exercise"}
    # the generator credits A's weight with his glycaemia; the observed view his HbA1c
    assert "weight_kg" in gen["drivers_diabetes"][0].split(";")
    assert obs["drivers_observed_diabetes"][0].split(";")[0] in ("hba1c", "fpg")
    assert obs["drivers_observed_liver"][0].split(";")[0] in ("alt", "ggt")
    # B: his new habits drive next year's rise; in A they are already in the values
    for o in ("diabetes", "liver"):
        b_obs = set(obs[f"drivers_observed_{o}"][1].split(";"))
        a_obs = set(obs[f"drivers_observed_{o}"][0].split(";"))
        assert b_obs & habits, (o, b_obs)
        assert not a_obs & habits, (o, a_obs)


def test_observed_terms_add_up_to_the_expected_latent(population):
    """Current level + expected change (the observed split) = the generator's expected
    next-year latent, for every core."""
    st = population[0]
    dec = truth._decompose(st)
    now = model.cores(st)
    change = truth._decompose_change(st, slice(None))
    for core in model.CORE_ORDER:
        expected = np.broadcast_to(sum(dec[core].values()), (N_REF,))
        np.testing.assert_allclose(now[core] + sum(change[core].values()), expected, atol=1e-5)


def test_a_level_just_under_the_cut_is_the_at_risk_residents_driver(cal, population):
    """LDL just under 140 (not met yet) leads the observed drivers of dyslipidaemia."""
    p = _average_person(population[0])
    a1 = np.array([AGE + 1])
    cut = cal.threshold("ldl", 139.5, p["sex"], np.array([AGE]))
    p["gL"][:] = (cut - model.cores(p)["L"] - 0.15) / model.TRAIT["L"]
    assert (model.cores(p)["L"] < cal.threshold("ldl", 139.5, p["sex"], a1)).all()
    obs = _drivers(cal, population, [p], "observed")["drivers_observed_dyslipidemia"][0]
    assert obs.split(";")[0] == "ldl", obs
