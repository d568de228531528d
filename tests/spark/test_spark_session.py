"""``--engine spark`` settings, master and prerequisites (no Spark started here)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kenshin.cli import app
from kenshin.errors import BadInputError
from kenshin.spark.session import (
    DEFAULT_CONFIG,
    SparkSettings,
    check_prerequisites,
    load_spark_settings,
    spark_master,
)
from tests.conftest import assert_one_line_error

runner = CliRunner()


def test_shipped_settings_load_and_only_spark_keys_pass(tmp_path):
    settings = load_spark_settings()
    assert settings.residents_per_group > 0
    assert settings.conf["spark.sql.session.timeZone"] == "UTC"
    assert settings.conf["spark.ui.enabled"] == "false"  # TOML booleans as Spark spells them
    assert load_spark_settings(DEFAULT_CONFIG) == settings
    bad = tmp_path / "bad.toml"
    bad.write_text('[conf]\n"sql.shuffle.partitions" = 4\n')
    with pytest.raises(BadInputError, match="not a Spark setting"):
        load_spark_settings(bad)
    bad.write_text("residents_per_group = 0\n")
    with pytest.raises(BadInputError, match="residents_per_group"):
        load_spark_settings(bad)
    bad.write_text("workers = 3\n")
    with pytest.raises(BadInputError, match="workers"):
        load_spark_settings(bad)
    with pytest.raises(BadInputError, match="no such file"):
        load_spark_settings(tmp_path / "missing.toml")


def test_master_comes_from_option_then_environment_then_file(monkeypatch):
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    assert spark_master(None, SparkSettings()) == "local[*]"
    assert spark_master(None, SparkSettings(master="spark://f:7077")) == "spark://f:7077"
    monkeypatch.setenv("SPARK_MASTER", "local[3]")
    assert spark_master(None, SparkSettings(master="spark://f:7077")) == "local[3]"
    assert spark_master("local[1]", SparkSettings()) == "local[1]"


def test_missing_java_is_one_line_exit_2(monkeypatch, tmp_path):
    pytest.importorskip("pyspark")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BadInputError, match="Java 17"):
        check_prerequisites()
    result = runner.invoke(
        app, ["features", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
              "--engine", "spark"],
    )  # fmt: skip
    assert_one_line_error(result, "--engine spark needs Java")


def test_missing_pyspark_is_one_line_exit_2(without_pyspark, tmp_path):
    result = runner.invoke(
        app, ["features", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
              "--engine", "spark"],
    )  # fmt: skip
    assert_one_line_error(result, "--engine spark needs pyspark", "kenshin[spark]")


def test_engine_is_pandas_or_spark(tmp_path):
    result = runner.invoke(
        app, ["features", "--store", str(tmp_path), "--out", str(tmp_path), "--engine", "dask"]
    )
    assert result.exit_code == 2
