"""``kenshin train --engine spark`` trains the pandas engine's engine, booster for booster.

One module fixture: a small synthetic ward (some outcomes on LightGBM, some on the small-ward
fallback, one switched off; glucose pattern engines; value forecasts) trained by
``kenshin.commands.run_train`` with the pandas engine and with the Spark engine (local[2]:
features on Spark, every independent fit a Spark task). Skipped when pyspark or Java is
missing (CI installs the ``spark`` extra and checks Java); the missing-pyspark exit is tested
without Spark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kenshin.cli import app
from kenshin.spark.session import spark_available
from tests.conftest import TEST_KEY, assert_one_line_error, temporary_env

_MISSING = spark_available()
_SPARK_MARKS = (
    pytest.mark.skipif(_MISSING is not None, reason=f"Spark engine not testable: {_MISSING}"),
    pytest.mark.xdist_group("spark"),
    pytest.mark.slow,
)


def needs_spark(test):
    """The marks of a test that starts Spark (the CLI checks below run without it)."""
    for mark in _SPARK_MARKS:
        test = mark(test)
    return test


RESIDENTS, YEARS, SEED, FY = 1_500, 4, 7, 2025


def _config():
    """Every kind of outcome on this ward: LightGBM (≥ 8 training events), the logistic
    fallback (4-7) and switched off (< 4)."""
    from models.config import ModelConfig

    return ModelConfig(min_events=8, min_events_fallback=4)


@dataclass
class Trained:
    features: pd.DataFrame
    pandas: object  # (engine, report, run) of run_train
    spark: object
    tasks: list[int]  # items per runner.map call of a local training


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    from data.ingest import ingest
    from data.synth import SynthConfig, generate, write_bundle
    from features import build_training_tables
    from kenshin.commands import run_train
    from kenshin.spark.session import SparkSettings, get_session
    from models.train import LocalRunner

    tmp = tmp_path_factory.mktemp("spark_train")
    uri = "sqlite:///" + (tmp / "mlflow.db").resolve().as_posix()
    with temporary_env(KENSHIN_PSEUDONYM_KEY=TEST_KEY, MLFLOW_TRACKING_URI=uri):
        bundle = generate(
            SynthConfig(residents=RESIDENTS, years=YEARS, seed=SEED, last_fiscal_year=FY)
        )
        write_bundle(bundle, tmp / "bundle", fmt="csv")
        ingest(tmp / "bundle", tmp / "store")
        calls: list[int] = []  # items per runner.map call of the pandas engine
        local_map = LocalRunner.map

        def counting(self, fn, items):
            calls.append(len(items))
            return local_map(self, fn, items)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(LocalRunner, "map", counting)
            pandas_run = run_train(tmp / "store", tmp / "work", config=_config())
        conf = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}
        spark = get_session(SparkSettings(conf=conf), "local[2]")
        try:
            spark_run = run_train(
                tmp / "store", tmp / "work", config=_config(), engine="spark",
                spark_master="local[2]",
            )  # fmt: skip
        finally:
            spark.stop()  # the JVM does not outlive this module's tests

        features, _labels = build_training_tables(tmp / "store")
        return Trained(features, pandas_run, spark_run, calls)


def _test_rows(trained: Trained) -> np.ndarray:
    from features.build import to_matrix

    engine = trained.pandas[0]
    f = trained.features
    return to_matrix(f[f["fiscal_year"] == engine.test_year], engine.feature_names)


def _assert_same_calibrator(a, b) -> None:
    assert (a.method, a.a, a.b) == (b.method, b.a, b.b)
    assert (a.isotonic is None) == (b.isotonic is None)
    if a.isotonic is not None:
        for attr in ("X_thresholds_", "y_thresholds_"):
            np.testing.assert_array_equal(getattr(a.isotonic, attr), getattr(b.isotonic, attr))


def _assert_same_member(a, b, X: np.ndarray) -> None:
    assert (a.name, a.weight) == (b.name, b.weight)
    _assert_same_calibrator(a.calibrator, b.calibrator)
    assert (a.linear is None) == (b.linear is None)
    if a.linear is not None:
        la, lb = a.linear, b.linear
        assert (la.intercept, la.n_features, la.clipped) == (lb.intercept, lb.n_features,
                                                             lb.clipped)  # fmt: skip
        for attr in ("coef", "center", "owner"):
            np.testing.assert_array_equal(getattr(la, attr), getattr(lb, attr))
        np.testing.assert_array_equal(la.raw(X), lb.raw(X))


def _assert_same_engine(a, b, X: np.ndarray) -> None:
    """Identical engines: every booster's model string, calibrator, member, selection row,
    forecast and pattern engine; bit-identical predictions on ``X``."""
    assert a.outcomes == b.outcomes and a.small_outcomes == b.small_outcomes
    assert a.boosters.keys() == b.boosters.keys()
    for o in a.boosters:
        assert a.boosters[o].model_to_string() == b.boosters[o].model_to_string(), o
    assert a.best_iteration == b.best_iteration
    assert a.calibrators.keys() == b.calibrators.keys()
    for o in a.calibrators:
        _assert_same_calibrator(a.calibrators[o], b.calibrators[o])
    assert a.members.keys() == b.members.keys()
    for o in a.members:
        _assert_same_member(a.members[o], b.members[o], X)
    pd.testing.assert_frame_equal(a.selection, b.selection)
    assert a.forecast_items == b.forecast_items and a.quantiles == b.quantiles
    for item in a.forecast_items:
        strings = [[m.model_to_string() for m in e.forecasts[item]] for e in (a, b)]
        assert strings[0] == strings[1], item
    assert a.forecast_iteration == b.forecast_iteration
    assert a.forecast_offsets == b.forecast_offsets
    assert a.risk_shift == b.risk_shift
    assert a.pattern_engines.keys() == b.pattern_engines.keys()
    for p in a.pattern_engines:
        _assert_same_engine(a.pattern_engines[p], b.pattern_engines[p], X)
    for o in a.outcomes:
        np.testing.assert_array_equal(a.predict_outcome(X, o), b.predict_outcome(X, o))
        np.testing.assert_array_equal(a.contributions(X, o), b.contributions(X, o))
    if a.forecast_items:
        pd.testing.assert_frame_equal(a.predict_values(X), b.predict_values(X))


@needs_spark
def test_the_ward_has_every_kind_of_fit(trained):
    engine = trained.pandas[0]
    kinds = set(engine.selection["member"]) | {engine.member(o) for o in engine.outcomes}
    assert {"logistic", "off"} <= kinds and engine.boosters  # fallback, switched off, LightGBM
    assert engine.pattern_engines and engine.forecast_items
    # One runner.map per training: every outcome, forecast item and pattern engine outcome.
    subs = sum(len(e.outcomes) for e in engine.pattern_engines.values())
    assert trained.tasks == [len(engine.outcomes) + len(engine.forecast_items) + subs]


@needs_spark
def test_spark_trains_the_pandas_engines_engine(trained):
    X = _test_rows(trained)
    assert len(X) > 500
    _assert_same_engine(trained.pandas[0], trained.spark[0], X)
    pd.testing.assert_frame_equal(
        trained.pandas[0].predict_proba(X), trained.spark[0].predict_proba(X)
    )


@needs_spark
def test_spark_gives_the_same_evaluation(trained):
    """Every metric of the test year (engine, baselines, forecasts, splits, member choice)."""
    a, b = trained.pandas[1], trained.spark[1]
    assert a.test_year == b.test_year and len(a.metrics)
    for name in ("metrics", "synthetic", "forecasts", "splits", "selection"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    assert a.extra_metrics.keys() == b.extra_metrics.keys()


def test_train_without_pyspark_is_one_line_exit_2(without_pyspark, tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--store", str(tmp_path / "s"), "--workdir", str(tmp_path / "w"),
              "--engine", "spark"],
    )  # fmt: skip
    assert_one_line_error(result, "--engine spark needs pyspark", "kenshin[spark]")


def test_train_engine_is_pandas_or_spark(tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--store", str(tmp_path), "--workdir", str(tmp_path), "--engine", "dask"]
    )
    assert result.exit_code == 2
