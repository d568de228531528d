"""``--engine spark`` gives the pandas engine's results: features, scores, selection, letters.

One module fixture: a small synthetic ward → ingest → train → promote → the annual run with
the pandas engine and with the Spark engine (local[2], few partitions), letters on. Skipped
only when pyspark or Java is missing (CI installs the ``spark`` extra and checks Java).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kenshin.spark.session import spark_available
from tests.conftest import TEST_KEY, temporary_env, trained_ward

_MISSING = spark_available()
pytestmark = [
    pytest.mark.skipif(_MISSING is not None, reason=f"Spark engine not testable: {_MISSING}"),
    pytest.mark.xdist_group("spark"),
    pytest.mark.slow,
]

RESIDENTS, YEARS, SEED, FY = 700, 4, 7, 2025
#: Scores agree to this (relative and absolute): the same code and model on the same rows;
#: only floating-point summation order may differ with the batch a row is predicted in.
TOLERANCE = 1e-12


@dataclass
class Runs:
    tmp: Path
    store: Path
    workdir: Path
    spark: object
    cfg: object
    pandas: object
    sparked: object


def _settings(**kw):
    from kenshin.spark.session import SparkSettings

    conf = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}
    return SparkSettings(conf=conf, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    from kenshin.annual import AnnualRunConfig, run_annual
    from kenshin.spark.session import get_session
    from scoring.score import load_scoring_config
    from scoring.selection import Budget, load_config

    tmp = tmp_path_factory.mktemp("spark")
    uri = "sqlite:///" + (tmp / "mlflow.db").resolve().as_posix()
    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY, MLFLOW_TRACKING_URI=uri):
        trained_ward(tmp, RESIDENTS, YEARS, SEED, FY)
        spark = get_session(_settings(), "local[2]")
        selection = load_config().model_copy(update={"budget": Budget(advice=6, see_doctor=3)})
        # Small chunks: several chunks per run, re-cut from Spark's groups of another size.
        scoring = load_scoring_config().model_copy(update={"chunk_size": 150})
        cfg = AnnualRunConfig(
            store=tmp / "store", fiscal_year=FY, out=tmp / "pandas", workdir=tmp / "work",
            scoring=scoring, selection=selection, letter_workers=1, report=False,
            log_mlflow=False,
        )  # fmt: skip
        pandas_run = run_annual(cfg)
        config = tmp / "spark.toml"
        config.write_text(
            "residents_per_group = 110\n[conf]\n"
            '"spark.sql.shuffle.partitions" = 2\n"spark.default.parallelism" = 2\n'
        )
        spark_cfg = replace(
            cfg, out=tmp / "spark", engine="spark", spark_master="local[2]", spark_config=config
        )
        spark_run = run_annual(spark_cfg)
        try:
            yield Runs(tmp, tmp / "store", tmp / "work", spark, cfg, pandas_run, spark_run)
        finally:
            spark.stop()  # the JVM does not outlive this module's tests


@pytest.fixture(autouse=True)
def _env(monkeypatch, runs):
    monkeypatch.setenv("KENSHIN_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + (runs.tmp / "mlflow.db").as_posix())


def _assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal frames: same columns, dtypes and rows; floats to TOLERANCE, the rest exactly."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    floats = [c for c in a.columns if a[c].dtype == "float64"]
    pd.testing.assert_frame_equal(a.drop(columns=floats), b.drop(columns=floats))
    for c in floats:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        assert (np.isnan(x) == np.isnan(y)).all(), c
        np.testing.assert_allclose(x, y, rtol=TOLERANCE, atol=TOLERANCE, err_msg=c)


def test_scores_are_the_pandas_engines(runs):
    a = pd.read_parquet(runs.pandas.paths["scores"])
    b = pd.read_parquet(runs.sparked.paths["scores"])
    assert len(a) == runs.pandas.counts["scored"] > 200
    _assert_same_frame(a, b)
    risk = [c for c in a.columns if c.startswith("risk_")]
    worst = np.nanmax(np.abs(a[risk].to_numpy() - b[risk].to_numpy()))
    assert worst <= TOLERANCE
    for name in ("scores", "scores_csv"):  # in fact the same bytes (fixed row groups)
        assert runs.pandas.paths[name].read_bytes() == runs.sparked.paths[name].read_bytes()


def test_selection_is_the_same_residents_reasons_and_control_arm(runs):
    a = pd.read_parquet(runs.pandas.paths["selection"])
    b = pd.read_parquet(runs.sparked.paths["selection"])
    _assert_same_frame(a, b)
    assert a["reason"].eq("CONTROL_ARM").any() and a["sent"].any()


def test_letters_and_counts_are_the_same(runs):
    a = pd.read_csv(runs.pandas.paths["letters_manifest"], dtype=str)
    b = pd.read_csv(runs.sparked.paths["letters_manifest"], dtype=str)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)  # same letters, byte for byte (sha256 of each PDF)
    assert runs.pandas.counts == runs.sparked.counts
    for name in ("drift", "letters_sent"):
        pd.testing.assert_frame_equal(
            pd.read_csv(runs.pandas.paths[name]), pd.read_csv(runs.sparked.paths[name])
        )


def test_explanations_are_the_same(runs):
    a = pd.read_parquet(runs.pandas.paths["explanations"])
    b = pd.read_parquet(runs.sparked.paths["explanations"])
    _assert_same_frame(a, b)


def test_partitioning_does_not_change_spark_results(runs):
    """Other range sizes (other tasks, other chunks): the same numbers, to the bit."""
    from data.store import read_checkup_columns, read_enrollment
    from kenshin.annual import load_model
    from kenshin.spark.score import spark_score_chunks
    from scoring.score import eligible_residents

    sc = runs.cfg.scoring
    model = load_model(runs.cfg.model_uri, runs.workdir)
    cand = read_checkup_columns(runs.store, ["pseudonym", "exam_date", "age", "sex"], [FY, FY - 1])
    elig = eligible_residents(cand, read_enrollment(runs.store), FY, runs.cfg.day, sc)
    results = []
    for per_group in (1000, 37):
        chunks = list(
            spark_score_chunks(
                runs.spark, runs.store, FY, elig.index, model.engine, sc, model.feature_config,
                runs.tmp, _settings(residents_per_group=per_group),
            )
        )  # fmt: skip
        assert max(len(s) for s, _ in chunks) <= min(per_group, sc.chunk_size)
        if per_group < sc.chunk_size:  # a chunk per range: a multiple of Spark's 2 cores
            assert len(chunks) % 2 == 0 and len(chunks) >= math.ceil(len(elig.index) / per_group)
        results.append(pd.concat([s for s, _ in chunks], ignore_index=True))
    pd.testing.assert_frame_equal(results[0], results[1])  # exactly, not to a tolerance
    reference = pd.read_parquet(runs.sparked.paths["scores"])
    risk = [c for c in results[0].columns if c.startswith("risk_")]
    assert results[0]["pseudonym"].tolist() == reference["pseudonym"].tolist()
    np.testing.assert_allclose(
        results[0][risk].to_numpy(dtype="float64"), reference[risk].to_numpy(dtype="float64"),
        rtol=TOLERANCE, atol=TOLERANCE,
    )  # fmt: skip


def test_explanations_of_many_residents_are_explained_on_spark_as_on_pandas(runs):
    """Every eligible resident explained (as with an unbudgeted see-doctor arm): the same
    chunks of the same explanations and factors, computed on the executors."""
    from data.store import read_checkup_columns, read_enrollment
    from kenshin.annual import explain_chunks, load_model
    from kenshin.spark.score import spark_explain_chunks
    from scoring.score import eligible_residents

    sc = runs.cfg.scoring.model_copy(update={"explain_chunk_size": 100})
    model = load_model(runs.cfg.model_uri, runs.workdir)
    cand = read_checkup_columns(runs.store, ["pseudonym", "exam_date", "age", "sex"], [FY, FY - 1])
    elig = eligible_residents(cand, read_enrollment(runs.store), FY, runs.cfg.day, sc)
    who = elig.index.sort_values("pseudonym", ignore_index=True)
    args = (runs.store, FY, who, model.engine, sc, model.feature_config)
    local = list(explain_chunks(*args))
    assert len(local) > 2  # several chunks
    runs.spark.conf.set("spark.sql.shuffle.partitions", "3")
    remote = list(
        spark_explain_chunks(runs.spark, *args, runs.tmp, _settings(residents_per_group=200))
    )
    for i in (0, 1):
        a = pd.concat([c[i] for c in local], ignore_index=True)
        b = pd.concat([c[i] for c in remote], ignore_index=True)
        if i == 0:
            assert a["pseudonym"].nunique() == len(who)
        else:
            assert len(a) == len(who) * len(model.engine.outcomes)
        b = b.astype(a.dtypes.to_dict())
        pd.testing.assert_frame_equal(a, b)  # exactly, not to a tolerance


def test_features_and_labels_are_the_pandas_engines(runs):
    from features import build_training_tables
    from kenshin.spark.features import build_training_tables_spark

    features, labels = build_training_tables(runs.store)
    f, lab = build_training_tables_spark(
        runs.spark, runs.store, settings=_settings(residents_per_group=90)
    )
    pd.testing.assert_frame_equal(features, f)
    pd.testing.assert_frame_equal(labels, lab)


def test_xml_ingest_on_spark_writes_the_same_store(runs, tmp_path):
    """The exchange archives parsed by Spark tasks: the same rows, rejects and accounting."""
    import json

    from kenshin.commands import run_ingest, run_synth

    bundle = tmp_path / "bundle"
    run_synth(bundle, 300, 2, 3, FY, "xml")
    run_ingest(bundle, tmp_path / "pandas")
    run_ingest(bundle, tmp_path / "spark", engine="spark", spark_master="local[2]")
    a, b = (json.loads((tmp_path / s / "manifest.json").read_text()) for s in ("pandas", "spark"))
    assert a["store_fingerprint"] == b["store_fingerprint"]  # every data file, byte for byte
    assert a["accounting"] == b["accounting"] and a["accounting"]["checkups"]["loaded"] > 0
    assert a.get("reader_notes") == b.get("reader_notes")
