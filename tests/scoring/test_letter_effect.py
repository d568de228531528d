"""介入効果の評価: interval statistics, the evaluation core, the synthetic letter effect, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from data.columns import OUTCOMES
from data.normalise import fiscal_year
from data.synth import SynthConfig, generate, ward_person_ids
from kenshin.cli import app
from scoring.letter_effect import (
    COMPARISON_COLUMNS,
    EvaluationConfig,
    evaluate,
    newcombe_difference,
    welch_difference,
    wilson_interval,
)
from scoring.outputs import AnnualOutputs
from tests.conftest import TEST_KEY, assert_one_line_error

pytestmark = pytest.mark.xdist_group("synth_letters")
runner = CliRunner()
Z95 = 1.959963984540054

# --- interval statistics -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k1", "n1", "k0", "n0", "lo", "hi"),
    [  # Newcombe (1998), Stat Med 17:873, Table II, method 10
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        (10, 10, 0, 10, 0.6075, 1.0000),
    ],
)
def test_newcombe_published_examples(k1, n1, k0, n0, lo, hi):
    d, a, b = newcombe_difference(k1, n1, k0, n0)
    assert d == pytest.approx(k1 / n1 - k0 / n0)
    assert (round(float(a), 4), round(float(b), 4)) == (lo, hi)


def test_wilson_limits_solve_the_score_equation():
    k, n = np.array([0, 3, 81, 40]), np.array([10, 17, 263, 40])
    lo, hi = wilson_interval(k, n)
    p = k / n
    for limit in (lo, hi):
        assert np.allclose(np.abs(p - limit), Z95 * np.sqrt(limit * (1 - limit) / n))
    assert np.all((lo <= p) & (p <= hi))
    assert np.isnan(wilson_interval(0, 0)[0])


def test_welch_matches_scipy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(-1.0, 2.0, 40), rng.normal(0.0, 0.7, 25)
    d, lo, hi = welch_difference(x.mean(), x.var(ddof=1), 40, y.mean(), y.var(ddof=1), 25)
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(x.mean() - y.mean())
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_intervals_cover_the_truth():
    """95% intervals over 4,000 simulated trials cover the true difference 93-97% of the time."""
    rng = np.random.default_rng(7)
    reps, n1, n0, p1, p0 = 4000, 300, 250, 0.25, 0.32
    _, lo, hi = newcombe_difference(rng.binomial(n1, p1, reps), n1, rng.binomial(n0, p0, reps), n0)
    assert 0.93 <= np.mean((lo <= p1 - p0) & (p1 - p0 <= hi)) <= 0.97
    x, y = rng.normal(-0.4, 2.0, (reps, 60)), rng.normal(0.1, 1.0, (reps, 45))
    _, lo, hi = welch_difference(x.mean(1), x.var(1, ddof=1), 60, y.mean(1), y.var(1, ddof=1), 45)
    cover = np.mean((lo <= -0.5) & (-0.5 <= hi))
    assert 0.93 <= cover <= 0.97


def test_zero_difference_gives_symmetric_interval_around_zero():
    d, lo, hi = newcombe_difference(30, 100, 30, 100)
    assert d == 0 and lo == pytest.approx(-hi) and lo < 0 < hi
    d, lo, hi = welch_difference(1.5, 4.0, 50, 1.5, 4.0, 50)
    assert d == 0 and lo == pytest.approx(-hi) and lo < 0 < hi
    d, lo, hi = welch_difference(2.0, 0.0, 5, 2.0, 0.0, 5)  # no spread at all
    assert (d, lo, hi) == (0.0, 0.0, 0.0)
    assert np.isnan(welch_difference(1.0, np.nan, 1, 0.0, 1.0, 9)[0])


# --- the evaluation core on hand-made data -----------------------------------------------------


def _checkup(pid, date, hba1c=6.0, sbp=130, weight=70.0, **kw):
    return {"pseudonym": pid, "exam_date": pd.Timestamp(date), "sex": 1, "hba1c": hba1c,
            "sbp": sbp, "dbp": 80, "weight_kg": weight, "q_med_glucose": 2, **kw}  # fmt: skip


def _hand_made():
    arms = {"L1": "letter", "L2": "letter", "L3": "letter", "L4": "letter", "L5": "letter"}
    arms |= {"C1": "control", "C2": "control", "C3": "control", "C4": "control", "C5": "control"}
    selection = pd.DataFrame(
        {
            "pseudonym": list(arms) + ["X1", "X2"],
            "letter_type": ["advice"] * 10 + ["advice", None],
            "outcome": ["diabetes"] * 10 + ["diabetes", None],
            "arm": list(arms.values()) + [None, None],  # X*: not randomised
            "reason": "SENT_ADVICE",
            "fiscal_year": 2023,
        }
    )
    index = pd.DataFrame(
        [
            _checkup("L1", "2023-06-01", hba1c=5.6),  # superseded by the later FY2023 checkup
            _checkup("L1", "2023-09-01"),
            _checkup("L2", "2023-06-01"),
            _checkup("L3", "2023-06-01"),
            _checkup("L4", "2023-06-01"),
            _checkup("L5", "2022-07-01"),  # scored on FY-1 (fallback)
            _checkup("C1", "2023-06-01"),
            _checkup("C2", "2023-06-01"),
            _checkup("C3", "2023-06-01"),
            _checkup("C4", "2023-06-01", hba1c=6.6),  # meets diabetes already: not at risk
            _checkup("C5", "2023-06-01"),
            _checkup("X1", "2023-06-01"),
        ]
    )
    follow = pd.DataFrame(
        [
            _checkup("L1", "2024-06-01", hba1c=5.8, sbp=125, weight=68.0),
            _checkup("L1", "2024-11-01", hba1c=7.5),  # later FY2024 checkup: not used
            _checkup("L2", "2024-06-01", hba1c=5.9, sbp=128, weight=69.0),
            _checkup("L3", "2024-06-01", hba1c=6.6, sbp=130, weight=70.0),  # event
            # L4 does not attend
            _checkup("L5", "2024-07-01", hba1c=6.0, sbp=127, weight=69.0),
            _checkup("C1", "2024-06-01", hba1c=6.0, sbp=130, weight=70.0),
            _checkup("C2", "2024-06-01", hba1c=6.7, sbp=132, weight=71.0),  # event
            _checkup("C3", "2024-06-01", hba1c=6.5, sbp=131, weight=70.0),  # event
            _checkup("C4", "2024-06-01", hba1c=6.8, sbp=129, weight=70.0),
            _checkup("C5", "2024-06-01", hba1c=np.nan, sbp=128, weight=70.0),  # not judgeable
            _checkup("X1", "2024-06-01", weight=50.0),
        ]
    )
    return selection, index, follow


def test_hand_made_known_differences():
    selection, index, follow = _hand_made()
    result = evaluate(selection, index, follow, 2023)
    c = result.comparisons
    assert list(c.columns) == list(COMPARISON_COLUMNS)
    assert c["group"].unique().tolist() == ["all"]  # one letter type only
    row = c.set_index("measure").to_dict("index")

    att = row["attendance"]
    assert (att["k_letter"], att["n_letter"], att["k_control"], att["n_control"]) == (4, 5, 5, 5)
    assert att["difference"] == pytest.approx(4 / 5 - 1)
    expect = newcombe_difference(4, 5, 5, 5)
    assert (att["ci_low"], att["ci_high"]) == (pytest.approx(expect[1]), pytest.approx(expect[2]))

    inc = row["incidence"]  # L1, L2, L3, L5 at risk (1 event); C1, C2, C3 (2 events)
    assert (inc["k_letter"], inc["n_letter"], inc["k_control"], inc["n_control"]) == (1, 4, 2, 3)
    assert inc["difference"] == pytest.approx(1 / 4 - 2 / 3)
    assert inc["method"].startswith("Newcombe")

    w = row["change_weight_kg"]  # letter −2, −1, 0, −1; control 0, 1, 0, 0, 0
    lw, cw = np.array([-2.0, -1, 0, -1]), np.array([0.0, 1, 0, 0, 0])
    assert (w["n_letter"], w["n_control"]) == (4, 5)
    assert w["difference"] == pytest.approx(lw.mean() - cw.mean())
    ci = stats.ttest_ind(lw, cw, equal_var=False).confidence_interval(0.95)
    assert (w["ci_low"], w["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert w["sd_letter"] == pytest.approx(lw.std(ddof=1))
    h = row["change_hba1c"]  # C5 has no HbA1c at follow-up
    assert (h["n_letter"], h["n_control"]) == (4, 4)
    assert h["difference"] == pytest.approx(
        np.mean([-0.2, -0.1, 0.6, 0.0]) - np.mean([0, 0.7, 0.5, 0.2])
    )

    persons = result.persons.set_index("pseudonym")
    assert "X1" not in persons.index and len(persons) == 10
    assert not persons.loc["C4", "at_risk"] and not persons.loc["C5", "at_risk"]
    assert not persons.loc["L4", "attended"]
    json.dumps(result.to_dict(), allow_nan=False)


def test_zero_difference_when_arms_are_alike():
    rows_i, rows_f, pids = [], [], []
    for arm in ("letter", "control"):
        for i, (dw, a1c) in enumerate([(-1.0, 6.6), (0.0, 6.0), (1.0, 5.9), (2.0, 6.1)]):
            pid = f"{arm[0]}{i}"
            pids.append((pid, arm))
            rows_i.append(_checkup(pid, "2023-06-01"))
            rows_f.append(_checkup(pid, "2024-06-01", hba1c=a1c, sbp=130 + 3 * dw, weight=70 + dw))
    sel = pd.DataFrame({"pseudonym": [p for p, _ in pids], "arm": [a for _, a in pids]}).assign(
        letter_type="advice", outcome="diabetes"
    )
    c = evaluate(sel, pd.DataFrame(rows_i), pd.DataFrame(rows_f), 2023).comparisons
    for r in c.to_dict("records"):
        assert r["difference"] == pytest.approx(0.0, abs=1e-12), r["measure"]
        assert r["ci_low"] < 0 < r["ci_high"] or r["measure"] == "attendance"
        assert r["ci_low"] == pytest.approx(-r["ci_high"])


def test_groups_per_letter_type_and_config():
    selection, index, follow = _hand_made()
    selection.loc[selection["pseudonym"].isin(["L5", "C5", "C4"]), "letter_type"] = "see_doctor"
    c = evaluate(selection, index, follow, 2023, EvaluationConfig(items=("weight_kg",))).comparisons
    assert c["group"].unique().tolist() == ["all", "advice", "see_doctor"]
    assert c["measure"].unique().tolist() == [
        "attendance", "incidence", "treatment_started", "change_weight_kg",
    ]  # fmt: skip
    sd = c[(c["group"] == "see_doctor") & (c["measure"] == "attendance")].iloc[0]
    assert (sd["n_letter"], sd["n_control"]) == (1, 2)
    only = evaluate(selection, index, follow, 2023, EvaluationConfig(by_letter_type=False))
    assert only.comparisons["group"].unique().tolist() == ["all"]


def test_treatment_started_counts_the_topics_medication():
    """治療開始: "no" at the index checkup, "yes" at follow-up, for the topic's own question."""
    arms = {"T1": "letter", "T2": "letter", "T3": "letter", "T4": "letter", "T5": "letter",
            "T6": "letter", "U1": "control", "U2": "control", "U3": "control"}  # fmt: skip
    topic = {p: "hypertension" for p in arms} | {"T6": "metabolic_syndrome"}
    sel = pd.DataFrame(
        {"pseudonym": list(arms), "arm": list(arms.values()), "outcome": list(topic.values())}
    ).assign(letter_type="see_doctor")
    before = {"T3": 1}  # already treated: not counted
    after = {"T1": 1, "T2": 2, "T3": 1, "T4": np.nan, "T6": 1, "U1": 2, "U2": 1, "U3": 2}
    index = pd.DataFrame([_checkup(p, "2023-06-01", q_med_bp=before.get(p, 2)) for p in arms])
    follow = pd.DataFrame(  # T5 does not attend; T4 leaves the question blank
        [_checkup(p, "2024-06-01", q_med_bp=q, q_med_glucose=1) for p, q in after.items()]
    )
    result = evaluate(sel, index, follow, 2023)
    row = result.comparisons.set_index("measure").loc["treatment_started"]
    assert (row["k_letter"], row["n_letter"], row["k_control"], row["n_control"]) == (1, 2, 1, 3)
    assert row["difference"] == pytest.approx(1 / 2 - 1 / 3)
    persons = result.persons.set_index("pseudonym")
    assert persons["untreated"].to_dict() == {
        "T1": True, "T2": True, "T3": False, "T4": False, "T5": False, "T6": False,
        "U1": True, "U2": True, "U3": True,
    }  # fmt: skip
    # without a control arm (see_doctor letters are not held back by default): the letter
    # arm's rate, and no difference
    alone = sel.assign(arm=np.where(sel["arm"] == "control", "letter", "letter"))
    alone = pd.concat(
        [alone, sel.head(1).assign(pseudonym="Z", arm="control", letter_type="advice")]
    )
    c = evaluate(alone, index, follow, 2023).comparisons
    sd = c[(c["group"] == "see_doctor") & (c["measure"] == "treatment_started")].iloc[0]
    assert sd["n_control"] == 0 and sd["letter"] == pytest.approx(2 / 5)
    assert np.isnan(sd["difference"])


def test_bad_selection_is_rejected():
    selection, index, follow = _hand_made()
    with pytest.raises(ValueError, match="control arm"):
        evaluate(selection[selection["arm"] != "control"], index, follow, 2023)
    with pytest.raises(ValueError, match="lacks columns"):
        evaluate(selection.drop(columns="outcome"), index, follow, 2023)
    with pytest.raises(ValueError, match="twice"):
        evaluate(pd.concat([selection, selection.head(1)]), index, follow, 2023)


# --- the synthetic letter effect ----------------------------------------------------------------

FY = 2023
CFG = SynthConfig(residents=3000, years=3, last_fiscal_year=FY + 1, seed=21)


def _fy(frame: pd.DataFrame) -> pd.Series:
    return fiscal_year(frame["exam_date"]).astype(int)


@pytest.fixture(scope="module")
def base():
    return generate(CFG)


@pytest.fixture(scope="module")
def selection(base):
    """Half letter, half control among FY's examinees (seeded); topics by hand."""
    ch = base.checkups
    ids = np.sort(ch.loc[_fy(ch) == FY, "person_id"].unique())
    rng = np.random.default_rng(0)
    arm = np.where(rng.permutation(len(ids)) < len(ids) // 2, "letter", "control")
    topic = rng.choice(["diabetes", "hypertension", "metabolic_syndrome"], len(ids))
    return pd.DataFrame({"pseudonym": ids, "letter_type": "advice", "outcome": topic, "arm": arm})


@pytest.fixture(scope="module")
def letters(selection):
    return frozenset(selection.loc[selection["arm"] == "letter", "pseudonym"])


@pytest.fixture(scope="module")
def lettered(letters):
    return generate(replace(CFG, letters=letters, letter_year=FY, letter_effect=3.0))


def _evaluate(bundle, selection):
    ch = bundle.checkups.rename(columns={"person_id": "pseudonym"})
    fy = _fy(ch)
    return evaluate(selection, ch[fy <= FY], ch[fy == FY + 1], FY).comparisons


def test_strong_effect_is_found(lettered, selection):
    c = _evaluate(lettered, selection).set_index("measure")
    for measure in ("change_weight_kg", "change_hba1c", "change_sbp"):
        assert c.loc[measure, "ci_high"] < 0, c.loc[measure]
    assert c.loc["attendance", "ci_low"] > 0
    assert c.loc["change_weight_kg", "difference"] < -2.0


def test_no_letters_no_effect(base, selection):
    c = _evaluate(base, selection).set_index("measure")
    assert abs(c.loc["change_weight_kg", "difference"]) < 0.4
    assert abs(c.loc["attendance", "difference"]) < 0.06


def _frames(bundle):
    return {n: getattr(bundle, n) for n in ("checkups", "enrollment", "contacts", "truth")}


def test_zero_effect_is_identical_to_no_letters(base, letters):
    zero = generate(replace(CFG, letters=letters, letter_year=FY, letter_effect=0.0))
    for name, frame in _frames(zero).items():
        pd.testing.assert_frame_equal(frame, getattr(base, name), obj=name)


def test_letters_change_nothing_before_or_beside_them(base, lettered, letters):
    pd.testing.assert_frame_equal(lettered.enrollment, base.enrollment)
    pd.testing.assert_frame_equal(lettered.contacts, base.contacts)

    def upto(frame, fy):
        return frame[fy <= FY].reset_index(drop=True)

    for name, fy in (("checkups", _fy), ("truth", lambda t: t["fiscal_year"])):
        a, b = getattr(base, name), getattr(lettered, name)
        pd.testing.assert_frame_equal(upto(b, fy(b)), upto(a, fy(a)), obj=f"{name} ≤ FY")
        others_a = a[~a["person_id"].isin(letters)].reset_index(drop=True)
        others_b = b[~b["person_id"].isin(letters)].reset_index(drop=True)
        pd.testing.assert_frame_equal(others_b, others_a, obj=f"{name} without letters")
    # … while the lettered residents' next checkups did change, and more of them came
    after = {
        k: b[(_fy(b) == FY + 1) & b["person_id"].isin(letters)].set_index("person_id")
        for k, b in (("base", base.checkups), ("letters", lettered.checkups))
    }
    assert len(after["letters"]) > len(after["base"])
    both = after["base"].index
    diff = after["letters"].loc[both, "weight_kg"] - after["base"]["weight_kg"]
    assert diff.mean() < -2.0


def test_see_doctor_letters_start_treatment(base, selection, letters):
    """A strong see-a-doctor effect shows as more treatment started, and only among them."""
    rng = np.random.default_rng(4)
    doctor = selection.assign(
        letter_type="see_doctor",
        outcome=rng.choice(["diabetes", "hypertension", "dyslipidemia"], len(selection)),
    )
    sent = doctor[doctor["arm"] == "letter"]
    bundle = generate(
        replace(CFG, letters=letters, letter_year=FY, letter_effect=3.0,
                doctor_letters=frozenset(zip(sent["pseudonym"], sent["outcome"], strict=True)))
    )  # fmt: skip
    c = _evaluate(bundle, doctor).set_index("measure")
    assert c.loc["treatment_started", "ci_low"] > 0.3, c.loc["treatment_started"]
    unlettered = _evaluate(base, doctor).set_index("measure")  # the same residents, no letters
    assert abs(unlettered.loc["treatment_started", "difference"]) < 0.05


def test_letter_config_is_checked(letters):
    with pytest.raises(ValueError, match="letter_year"):
        SynthConfig(letters=letters)
    with pytest.raises(ValueError, match="not a generated fiscal year"):
        replace(CFG, letters=letters, letter_year=FY + 5)
    with pytest.raises(ValueError, match="letter_effect"):
        replace(CFG, letter_effect=-1.0)
    cfg = SynthConfig(residents=300, years=2, last_fiscal_year=2024, letter_year=2023,
                      letters={"00-000000"})  # fmt: skip
    assert isinstance(cfg.letters, frozenset)
    with pytest.raises(ValueError, match="never members"):
        generate(cfg)
    with pytest.raises(ValueError, match="not among letters"):
        replace(cfg, doctor_letters={("99-999999", "diabetes")})
    with pytest.raises(ValueError, match="unknown outcomes"):
        replace(cfg, doctor_letters={("00-000000", "gout")})


def test_ward_person_ids_are_the_bundles(base):
    ids = set(ward_person_ids(CFG, FY))
    ch = base.checkups
    assert set(ch.loc[_fy(ch) <= FY, "person_id"]) <= ids <= set(base.contacts["person_id"])
    assert set(ward_person_ids(CFG)) == set(base.contacts["person_id"])


# --- command line: synth --letters, evaluate ----------------------------------------------------


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


SYNTH = ["--residents", "2000", "--years", "3", "--last-fiscal-year", str(FY + 1), "--seed", "5"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """synth → ingest → hand-made selection → synth --letters → ingest → evaluate."""
    from data.store import read_checkups

    work = tmp_path_factory.mktemp("letters")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KENSHIN_PSEUDONYM_KEY", TEST_KEY)
        mp.setenv("HOME", str(work / "home"))
        _ok(runner.invoke(app, ["synth", "--out", str(work / "b1"), *SYNTH]))
        _ok(runner.invoke(app, ["ingest", str(work / "b1"), "--store", str(work / "s1")]))
        ps = np.sort(read_checkups(work / "s1", [FY])["pseudonym"].unique())
        rng = np.random.default_rng(3)
        arm = np.where(rng.random(len(ps)) < 0.5, "letter", "control")
        doctor = rng.random(len(ps)) < 0.3  # see-a-doctor letters on a treatable topic
        outcome = np.where(
            doctor, rng.choice(["diabetes", "hypertension", "dyslipidemia"], len(ps)),
            rng.choice(OUTCOMES, len(ps)),
        )  # fmt: skip
        out = work / "out"
        out.mkdir()
        outs = AnnualOutputs(out)
        pd.DataFrame(
            {"pseudonym": ps, "letter_type": np.where(doctor, "see_doctor", "advice"),
             "outcome": outcome, "priority": 0.3, "rank": np.arange(1, len(ps) + 1), "arm": arm,
             "reason": "x", "sent": arm == "letter", "fiscal_year": FY}
        ).to_parquet(outs.selection, index=False)  # fmt: skip
        synth = runner.invoke(
            app,
            ["synth", "--out", str(work / "b2"), *SYNTH, "--letters", str(outs.selection),
             "--letter-effect", "3"],
        )  # fmt: skip
        _ok(synth)
        _ok(runner.invoke(app, ["ingest", str(work / "b2"), "--store", str(work / "s2")]))
        args = ["evaluate", "--store", str(work / "s2"), "--year", str(FY), "--scores", str(out)]
        evaluation = _ok(runner.invoke(app, args))
    n_letter = int((arm == "letter").sum())
    n_doctor = int(((arm == "letter") & doctor).sum())
    return {"work": work, "out": out, "synth": synth, "evaluate": evaluation,
            "n_letter": n_letter, "n_doctor": n_doctor}  # fmt: skip


def test_cli_synth_letters_and_evaluate(cli_run):
    assert f"{cli_run['n_letter']:,} residents of the letter arm respond" in cli_run["synth"].output
    assert "介入効果の評価" in cli_run["evaluate"].output
    outs = AnnualOutputs(cli_run["out"])
    table = pd.read_csv(outs.evaluation_csv(FY))
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert f"{cli_run['n_doctor']:,} see-a-doctor letters may start treatment" in " ".join(
        cli_run["synth"].output.split()
    )
    groups = {g: t.set_index("measure") for g, t in table.groupby("group")}
    assert sorted(groups) == ["advice", "all", "see_doctor"]
    assert groups["all"].loc["change_weight_kg", "ci_high"] < 0
    assert groups["all"].loc["change_hba1c", "ci_high"] < 0
    assert groups["all"].loc["attendance", "ci_low"] > 0
    assert groups["see_doctor"].loc["treatment_started", "ci_low"] > 0.2
    meta = json.loads(outs.evaluation_json(FY).read_text())
    assert meta["follow_up_year"] == FY + 1
    assert meta["randomised"]["letter"] == cli_run["n_letter"]


def test_cli_evaluate_bad_input(cli_run, tmp_path):
    store, sel = cli_run["work"] / "s2", pd.read_parquet(AnnualOutputs(cli_run["out"]).selection)

    def run(year, scores):
        return runner.invoke(
            app, ["evaluate", "--store", str(store), "--year", str(year), "--scores", str(scores)]
        )

    assert_one_line_error(run(FY, tmp_path), "selection.parquet", "kenshin score")
    for year in (FY + 1, FY - 1):
        folder = tmp_path / f"fy{year}"
        folder.mkdir()
        sel.assign(fiscal_year=year).to_parquet(AnnualOutputs(folder).selection)
    assert_one_line_error(run(FY + 1, tmp_path / f"fy{FY + 1}"), f"no FY{FY + 2} checkups")
    assert_one_line_error(run(FY, tmp_path / f"fy{FY - 1}"), f"selection of FY{FY - 1}, not FY{FY}")


def test_cli_synth_bad_letters(cli_run, tmp_path):
    base = ["synth", "--out", str(tmp_path / "b"), *SYNTH, "--letters"]
    assert_one_line_error(
        runner.invoke(app, [*base, str(tmp_path / "nope.parquet")]), "nope.parquet"
    )
    strangers = pd.read_parquet(AnnualOutputs(cli_run["out"]).selection).assign(
        pseudonym=lambda d: [f"{i:016x}" for i in range(len(d))]
    )
    strangers.to_parquet(tmp_path / "sel.parquet")
    assert_one_line_error(runner.invoke(app, [*base, str(tmp_path / "sel.parquet")]), "none of the")
