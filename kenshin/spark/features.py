"""Features and labels on Spark: the store read as it is, the pandas feature code per group.

* The store's ``checkups/fiscal_year=YYYY/`` folders are read by Spark directly (no copy; the
  manifest is checked first, as the pandas engine does).
* Rows are grouped so that all checkups of a person are in one group: a group is a hash bucket
  of the pseudonym (``xxhash64 mod buckets``), about ``residents_per_group`` residents, not one
  person (a Python call per person would be far too slow).
* Each group goes through ``applyInPandas`` calling exactly :func:`features.build.build_features`
  and :func:`features.labels.build_labels` on the frame ``data.store.read_checkups`` would
  give for those residents (:mod:`kenshin.spark.frames`), so the two engines cannot drift
  apart. Every feature and label of a person depends on that person's checkups only, except
  the labels' last fiscal year of the data, which is the store's and is passed to every group.
* The result is sorted as the pandas engine sorts it (pseudonym, exam date).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from kenshin.spark.frames import from_spark, spark_schema, stored_dtypes, to_spark, to_stored
from kenshin.spark.session import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["build_training_tables_spark", "checkups_frame", "with_buckets"]

BUCKET = "_kenshin_bucket"


def checkups_frame(
    spark: SparkSession, store: Path, max_fiscal_year: int | None = None
) -> DataFrame:
    """The stored checkups as a Spark DataFrame (manifest checked; dates as int64 ns)."""
    from pyspark.sql import functions as F

    from data.store import read_manifest

    store = Path(store)
    read_manifest(store)
    df = spark.read.option("basePath", str(store / "checkups")).parquet(str(store / "checkups"))
    if max_fiscal_year is not None:
        df = df.where(F.col("fiscal_year") <= int(max_fiscal_year))
    return df


def with_buckets(df: DataFrame, buckets: int) -> DataFrame:
    """``df`` with the hash bucket of its pseudonym (all rows of a person share one)."""
    from pyspark.sql import functions as F

    return df.withColumn(BUCKET, F.pmod(F.xxhash64("pseudonym"), F.lit(int(buckets))))


def bucket_count(df: DataFrame, residents_per_group: int) -> int:
    """Buckets for about ``residents_per_group`` residents each."""
    from pyspark.sql import functions as F

    residents = df.select(F.approx_count_distinct("pseudonym")).first()[0] or 0
    return max(1, math.ceil(residents / residents_per_group))


def _sample(store: Path, residents: int = 20) -> pd.DataFrame:
    """A few residents' stored checkups, read by the pandas engine (output dtypes): residents
    of the newest Parquet part, not the store's every pseudonym on the driver."""
    import pyarrow.parquet as pq

    from data.store import read_checkup_history

    newest = sorted((Path(store) / "checkups").glob("fiscal_year=*/*.parquet"))[-1]
    ids = pq.read_table(newest, columns=["pseudonym"]).column("pseudonym").to_pylist()
    return read_checkup_history(store, sorted(set(ids))[:residents])


def build_training_tables_spark(
    spark: SparkSession, store: Path, config=None, settings: SparkSettings | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, labels) of the store, equal to :func:`features.build_training_tables`."""
    from features.build import build_features
    from features.labels import build_labels
    from features.tables import TrainingTablesConfig

    config = config or TrainingTablesConfig()
    settings = settings or SparkSettings()
    store = Path(store)
    dtypes = stored_dtypes(store)
    df = checkups_frame(spark, store)
    last_fy = int(df.agg({"fiscal_year": "max"}).first()[0])
    df = with_buckets(df, bucket_count(df, settings.residents_per_group))
    sample = _sample(store)
    feature_ddl, feature_dtypes = spark_schema(build_features(sample, config.features))
    label_ddl, label_dtypes = spark_schema(
        build_labels(sample, config.labels, last_fiscal_year=last_fy)
    )
    checkup_cols = list(dtypes)

    def features_of(group: pd.DataFrame) -> pd.DataFrame:
        return to_spark(build_features(_stored(group, dtypes, store), config.features))

    def labels_of(group: pd.DataFrame) -> pd.DataFrame:
        stored = _stored(group, dtypes, store)
        return to_spark(build_labels(stored, config.labels, last_fiscal_year=last_fy))

    grouped = df.select(*checkup_cols, BUCKET).groupBy(BUCKET)
    feats = grouped.applyInPandas(features_of, feature_ddl).toPandas()
    labels = grouped.applyInPandas(labels_of, label_ddl).toPandas()
    return _sorted(from_spark(feats, feature_dtypes)), _sorted(from_spark(labels, label_dtypes))


def _stored(group: pd.DataFrame, dtypes: dict[str, str], store: Path) -> pd.DataFrame:
    """A group's rows as data.store.read_checkup_history gives them (typed, sorted, checked)."""
    from data.store import checked_checkups

    return checked_checkups(to_stored(group, dtypes), store)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the pandas engine's order: pseudonym, then exam date."""
    return frame.sort_values(["pseudonym", "exam_date"], kind="stable", ignore_index=True)
