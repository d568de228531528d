"""The Spark session of ``--engine spark``: settings (``spark.toml``), master, prerequisites.

* Settings: :class:`SparkSettings` from the shipped ``kenshin/spark/spark.toml`` or
  ``--spark-config FILE`` (same layout), validated like every other kenshin config; a bad file
  is bad input (exit 2, one line).
* Master: ``--spark-master``, else ``$SPARK_MASTER``, else the file's ``master``, else
  ``local[*]``. Under ``spark-submit`` the session already exists and is used as it is.
* Prerequisites: pyspark (the optional extra ``kenshin[spark]``) and a Java runtime; either
  missing is bad input with one line saying what to install, before any work.

Local masters run the Python workers on this interpreter (``PYSPARK_PYTHON``, unless set), so
they import the same kenshin; on a cluster the executors need kenshin installed (README
§Running on Spark). The JVM logs errors only (``log4j2.properties``): stderr stays for
kenshin's own one-line errors.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kenshin.errors import BadInputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_CONFIG = Path(__file__).with_name("spark.toml")
LOG4J = Path(__file__).with_name("log4j2.properties")
DEFAULT_MASTER = "local[*]"
ENGINES = ("pandas", "spark")


class SparkSettings(BaseModel):
    """``spark.toml``: master, group size and ``spark.*`` settings of the session."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    master: str | None = None
    #: Residents per Spark task at most (results do not depend on it; worker memory does).
    residents_per_group: int = Field(20_000, ge=1, le=1_000_000)
    #: Folder the executors write scored groups into, read back by the driver (on a cluster:
    #: storage both see, e.g. a shared mount); default: the run's staging folder.
    scratch: str | None = None
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _spark_keys(cls, v: object) -> object:
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            if not str(key).startswith("spark."):
                raise ValueError(f"{key!r} is not a Spark setting (spark.* keys only)")
            if isinstance(value, dict | list):
                raise ValueError(f"{key}: give a single value, not a table or a list")
            out[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


def load_spark_settings(path: Path | None = None) -> SparkSettings:
    """Read and validate a Spark TOML (default: the shipped ``spark.toml``); bad input: exit 2."""
    path = Path(path or DEFAULT_CONFIG)
    try:
        with path.open("rb") as f:
            return SparkSettings.model_validate(tomllib.load(f))
    except FileNotFoundError:
        raise BadInputError(f"--spark-config {path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInputError(f"--spark-config {path}: not a readable TOML file ({e})") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise BadInputError(f"--spark-config {path}: {where}: {first['msg']}") from None


def spark_master(option: str | None, settings: SparkSettings) -> str:
    """``--spark-master``, else ``$SPARK_MASTER``, else the settings' master, else local[*]."""
    return option or os.environ.get("SPARK_MASTER") or settings.master or DEFAULT_MASTER


def check_prerequisites() -> None:
    """pyspark importable and a Java runtime present, else one line saying what to install."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise BadInputError(
            "--engine spark needs pyspark: install the extra (uv sync --extra spark, or "
            "pip install 'kenshin[spark]')"
        ) from None
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and (Path(java_home) / "bin" / "java").exists()) and not shutil.which("java"):
        raise BadInputError(
            "--engine spark needs Java 17 or later: no java on PATH or in JAVA_HOME"
        )


def spark_available() -> str | None:
    """None when pyspark and Java are present, else the reason (for tests that skip)."""
    try:
        check_prerequisites()
    except BadInputError as e:
        return str(e)
    return None


def get_session(settings: SparkSettings | None = None, master: str | None = None) -> SparkSession:
    """The active SparkSession (spark-submit), or a new one on the chosen master."""
    check_prerequisites()
    from pyspark.sql import SparkSession

    settings = settings or load_spark_settings()
    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in settings.conf.items():
            if not key.startswith(("spark.driver.", "spark.executor.", "spark.master")):
                try:
                    active.conf.set(key, value)
                except Exception:  # static settings of a running session stay as they are
                    pass
        _runtime_conf(active)
        return active
    url = spark_master(master, settings)
    if url.startswith("local"):
        # The Python workers run this interpreter (the one with kenshin and its dependencies).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(url).appName("kenshin")
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile={LOG4J.as_uri()}",
        **settings.conf,
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    _runtime_conf(session)
    return session


def _runtime_conf(session: SparkSession) -> None:
    """Settings kenshin's reading of the store relies on (not left to the file)."""
    # The store's exam dates are Parquet TIMESTAMP(NANOS) (pandas datetime64[ns]): Spark reads
    # them as nanoseconds since the epoch (int64), turned back into dates in the pandas code.
    session.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
