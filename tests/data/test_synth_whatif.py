"""True what-if counterfactuals of the synthetic ward (data.synth.whatif, truth columns
``p_true_<outcome>__<scenario>``): they mirror scoring.toml's scenarios, exist exactly where a
scenario applies, and use common random numbers with the baseline truth."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.columns import OUTCOMES
from data.normalise import fiscal_year
from data.synth import TRUTH_COLUMNS, WHATIF_KEYS, SynthConfig, generate, whatif
from data.synth import truth as synth_truth
from data.synth.model import calibration
from data.synth.observe import observe
from data.synth.ward import Ward

SCORING_TOML = Path(__file__).resolve().parents[2] / "scoring" / "scoring.toml"


def _scenarios() -> list[dict]:
    return tomllib.loads(SCORING_TOML.read_text(encoding="utf-8"))["scenario"]


def test_interventions_mirror_the_scoring_scenarios():
    """Same keys in the same order, and the same ``when`` conditions; the edited ``add`` items
    must be present (the ward also needs the height to turn kilograms into adiposity)."""
    scenarios = _scenarios()
    assert tuple(s["key"] for s in scenarios) == WHATIF_KEYS == tuple(whatif.INTERVENTIONS)
    for s in scenarios:
        iv = whatif.INTERVENTIONS[s["key"]]
        when = tuple((c["column"], c["op"], float(c["value"])) for c in s.get("when", []))
        assert iv.when == when, s["key"]
        assert set(s.get("add", {})) <= set(iv.needs), s["key"]
        assert set(iv.needs) <= set(s.get("add", {})) | {"height_cm"}, s["key"]


@pytest.fixture(scope="module")
def ward():
    cfg = SynthConfig(residents=2500, years=3, seed=11)
    return cfg, generate(cfg)


def test_counterfactual_columns_exist_and_are_nan_exactly_where_no_scenario_applies(ward):
    cfg, bundle = ward
    tr = bundle.truth
    assert list(tr.columns) == list(TRUTH_COLUMNS)
    ch = bundle.checkups.assign(fiscal_year=fiscal_year(bundle.checkups["exam_date"]).astype(int))
    both = tr.merge(ch, on=["person_id", "fiscal_year"], how="left", validate="1:1")
    assert both["sex"].notna().all()  # every truth row is one generated checkup
    recent = (both["fiscal_year"] > cfg.last_fiscal_year - cfg.whatif_years).to_numpy()
    assert recent.any() and (~recent).any()
    for s in _scenarios():
        expected = recent.copy()
        for c in s.get("when", []):
            x = both[c["column"]].to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                expected &= {"eq": x == c["value"], "ge": x >= c["value"], "le": x <= c["value"]}[
                    c["op"]
                ]
        for col in [*s.get("add", {}), *(["height_cm"] if "add" in s else [])]:
            expected &= both[col].notna().to_numpy()
        assert 20 < expected.sum() < recent.sum(), s["key"]  # the test is not vacuous
        for o in OUTCOMES:
            got = tr[f"p_true_{o}__{s['key']}"]
            np.testing.assert_array_equal(got.notna().to_numpy(), expected, err_msg=s["key"])
            assert got.dropna().between(0, 1).all()


def test_counterfactual_effects_have_the_generators_direction(ward):
    """Weight loss, exercise, fewer late dinners, snacks and skipped breakfasts lower the
    next-year risks (their latent effects all point one way): with common random numbers
    hardly any future turns an outcome on — only through the measurement law's rare
    non-monotone paths (a medication not started, so the untreated value is measured while the
    medication answer is missing; TG falling under 400 so LDL gets measured). Quitting smoking
    while keeping weight (the advice) lowers the diabetes risk and raises none."""
    _, bundle = ward
    tr = bundle.truth
    for key in ("weight_loss_3kg", "exercise", "no_late_dinner", "no_snacks", "eat_breakfast"):
        for o in OUTCOMES:
            d = (tr[f"p_true_{o}__{key}"] - tr[f"p_true_{o}"]).dropna()
            assert (d > 0).mean() < 0.005 and d.max() <= 1 / 64, (key, o, d.max())
            assert (d < 0).mean() > 0.05 and d.mean() < 0, (key, o)
        d = (tr[f"p_true_metabolic_syndrome__{key}"] - tr["p_true_metabolic_syndrome"]).dropna()
        assert d.mean() < -0.005, key
    quit_ = {o: (tr[f"p_true_{o}__quit_smoking"] - tr[f"p_true_{o}"]).dropna() for o in OUTCOMES}
    assert quit_["diabetes"].mean() < 0
    for o, d in quit_.items():
        assert (d > 0).mean() < 0.005 and d.max() <= 1 / 64, (o, d.max())


def test_quitting_keeps_weight_only_in_the_what_if():
    """The ward's quitters gain weight (raising some next-year hypertension and metabolic
    syndrome risks, no direct BP effect); the quit-smoking counterfactual — the advice to quit
    without gaining weight — keeps adiposity on the smoker's path, so with the same futures it
    raises no risk, and it still lowers the diabetes risk."""
    st, age, obs, cal = _examinees(n=4000, seed=4)
    cfs = whatif.counterfactual_states(
        st, obs, age, cal, {"quit_smoking": whatif.INTERVENTIONS["quit_smoking"]}
    )
    rows = cfs["quit_smoking"][0]  # answered "smokes" (the state's smokers, answers missing aside)
    assert len(rows) > 300 and (st["smk"][rows] == 1).all()
    assert cfs["quit_smoking"][1]["keeps_weight"].all()
    plain = {k: v[rows].copy() for k, v in st.items()}
    plain["smk"][:] = 2
    cfs["plain"] = (rows, plain)
    n = len(age)
    base, cf = synth_truth.p_true_with_counterfactuals(
        st, age, age, np.full(n, 1970), np.random.SeedSequence(9), cal, cfs, k=64, workers=1
    )
    j = {o: OUTCOMES.index(o) for o in ("hypertension", "metabolic_syndrome", "diabetes")}
    gain = cf["plain"] - base[rows]
    keeps = cf["quit_smoking"] - base[rows]
    assert (gain[:, j["hypertension"]] > 0).sum() + (gain[:, j["metabolic_syndrome"]] > 0).sum()
    assert (keeps[:, [j["hypertension"], j["metabolic_syndrome"]]] <= 1 / 64).all()
    assert keeps[:, j["diabetes"]].mean() < 0
    # less adiposity lowers every risk on average (single futures flip either way only
    # through the measurement law's rare non-monotone paths)
    assert (keeps.mean(axis=0) <= gain.mean(axis=0) + 1e-12).all()
    assert (keeps > gain).mean() < 0.01


def _examinees(n: int = 1200, seed: int = 3):
    cal = calibration()
    w = Ward(SynthConfig(residents=n, years=1, seed=seed), cal)
    w.run_year(2025, first=True)
    st, age = w.st, w.st["age"]
    obs = observe(st, age, age, np.full(len(age), 1970), np.random.default_rng(seed), cal)
    return st, age, obs, cal


def test_common_random_numbers_a_no_op_changes_nothing():
    """An intervention that changes nothing gives exactly the baseline (no Monte-Carlo noise),
    and the baseline is exactly p_true's, whatever the thread pool."""
    st, age, obs, cal = _examinees()
    n = len(age)
    rows = np.arange(0, n, 3)
    noop = {"noop": (rows, {k: v[rows] for k, v in st.items()})}

    def args():  # a fresh seed each call (spawning advances a SeedSequence)
        return (st, age, age, np.full(n, 1970), np.random.SeedSequence(5), cal)

    base, cf = synth_truth.p_true_with_counterfactuals(*args(), noop, k=64, workers=1)
    np.testing.assert_array_equal(cf["noop"], base[rows])
    np.testing.assert_array_equal(base, synth_truth.p_true(*args()))
    # several chunks (k = 512 → 256 persons a chunk) on two threads: still exact
    base, cf = synth_truth.p_true_with_counterfactuals(*args(), noop, k=512, workers=2)
    np.testing.assert_array_equal(cf["noop"], base[rows])
    # …while a real intervention does change some futures
    cfs = whatif.counterfactual_states(st, obs, age, cal)
    base, cf = synth_truth.p_true_with_counterfactuals(*args(), cfs, k=64, workers=1)
    rows, _ = cfs["weight_loss_3kg"]
    delta = cf["weight_loss_3kg"] - base[rows]
    assert (delta < 0).mean() > 0.05 and (delta > 0).mean() < 0.005


def test_weight_loss_is_three_kilograms_of_reported_weight():
    st, age, obs, cal = _examinees(800)
    iv = whatif.INTERVENTIONS["weight_loss_3kg"]
    rows = np.flatnonzero(iv.applies(obs))
    sub = {k: v[rows] for k, v in st.items()}
    shift = whatif.weight_shift(sub, obs["height_cm"][rows], age[rows], cal)
    from data.synth.model import cores

    a = cores(sub)["A"]
    h2 = (obs["height_cm"][rows] / 100) ** 2
    kg = (
        cal.value("bmi", a + shift, sub["sex"], age[rows])
        - cal.value("bmi", a, sub["sex"], age[rows])
    ) * h2
    np.testing.assert_allclose(kg, -3.0, atol=1e-6)


def test_replay_refuses_a_different_draw_sequence():
    tape = synth_truth._Tape(np.random.default_rng(0))
    tape.random(10)
    tape.standard_normal(10, dtype=np.float32)
    rows = np.array([1, 4, 7])
    replay = synth_truth._Replay(tape.draws, rows)
    np.testing.assert_array_equal(replay.random(3), tape.draws[0][1][rows])
    with pytest.raises(RuntimeError, match="differs"):
        replay.standard_normal(3)  # float64 asked, float32 recorded
    replay = synth_truth._Replay(tape.draws, rows)
    replay.random(3)
    with pytest.raises(RuntimeError, match="fewer"):
        replay.done()


def test_no_whatif_years_leaves_every_counterfactual_missing():
    bundle = generate(SynthConfig(residents=400, years=2, seed=2, whatif_years=0))
    cf = [c for c in bundle.truth.columns if "__" in c]
    assert len(cf) == len(OUTCOMES) * len(WHATIF_KEYS)
    assert bundle.truth[cf].isna().all().all()
    assert pd.api.types.is_float_dtype(bundle.truth[cf[0]])
