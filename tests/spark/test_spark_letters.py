"""Letters rendered on Spark's executors are the pandas engine's, byte for byte.

One module fixture: the same dozen requests (the fixture letters of
tests/scoring/letter_helpers.py, twice over) rendered with the default runner (a local process
pool) and with :class:`kenshin.spark.letters.SparkLetterRunner` on local[2], then once more on
Spark (every letter reused). Skipped when pyspark or Java is missing (CI installs the
``spark`` extra and checks Java).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from kenshin.spark.session import spark_available
from scoring.letters import render_letters
from tests.scoring.letter_helpers import config, requests

_MISSING = spark_available()
pytestmark = [
    pytest.mark.skipif(_MISSING is not None, reason=f"Spark engine not testable: {_MISSING}"),
    pytest.mark.xdist_group("spark"),
    pytest.mark.slow,
]


def _requests() -> pd.DataFrame:
    """Twelve letters: the six fixture letters and six more (other pseudonyms, postal codes)."""
    base = requests()
    more = base.assign(
        pseudonym=base["pseudonym"].str.replace(r"^.", "f", regex=True),
        person_id=base["person_id"].str.replace("12-9", "12-8"),
        postal_code=["100-0021", "100-0022", "100-0023", "100-0024", "100-0025", "100-0026"],
    )
    return pd.concat([base, more], ignore_index=True)


@dataclass
class Rendered:
    pandas_out: Path
    spark_out: Path
    pandas: object  # LetterManifest
    spark: object
    again: object  # the second Spark run
    progress: list[tuple[int, int]]
    session: object


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    from kenshin.spark.letters import SparkLetterRunner
    from kenshin.spark.session import SparkSettings, get_session

    tmp = tmp_path_factory.mktemp("spark_letters")
    df = _requests()
    pandas_run = render_letters(df, tmp / "pandas", config(workers=2))
    conf = {"spark.default.parallelism": "2"}
    spark = get_session(SparkSettings(conf=conf), "local[2]")
    try:
        runner = SparkLetterRunner(spark)
        progress: list[tuple[int, int]] = []
        spark_run = render_letters(
            df.iloc[::-1], tmp / "spark", config(), lambda d, t: progress.append((d, t)), runner
        )
        again = render_letters(df, tmp / "spark", config(), runner=runner)
        yield Rendered(tmp / "pandas", tmp / "spark", pandas_run, spark_run, again, progress, spark)
    finally:
        spark.stop()  # the JVM does not outlive this module's tests


def test_spark_letters_are_byte_identical(rendered):
    a, b = rendered.pandas_out, rendered.spark_out
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "letters"]) == 12
    assert Path("manifest.csv") in files and Path("print/print_0001.pdf") in files
    for f in files:
        assert (b / f).read_bytes() == (a / f).read_bytes(), f
    pd.testing.assert_frame_equal(rendered.spark.frame, rendered.pandas.frame)
    assert (rendered.spark.rendered, rendered.spark.skipped) == (12, 0)


def test_spark_letters_are_owner_only(rendered):
    out = rendered.spark_out
    for d in (out, out / "letters", out / "print"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 14 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert not list(out.rglob("*.tmp")) and not (out / "manifest.journal.jsonl").exists()


def test_results_stream_back_task_by_task(rendered):
    """The progress bar moves as each task ends (not once at the end of the whole job)."""
    done = [d for d, _ in rendered.progress]
    assert len(done) > 1 and done == sorted(done)
    assert rendered.progress[-1] == (12, 12)


def test_second_spark_run_reuses_every_letter(rendered):
    assert (rendered.again.rendered, rendered.again.skipped) == (0, 12)
    assert (rendered.spark_out / "manifest.csv").read_bytes() == (
        rendered.pandas_out / "manifest.csv"
    ).read_bytes()


def test_typst_never_runs_on_the_driver(rendered):
    """The renderer (Typst) was built in the executors' Python workers only: a process that
    has typeset must not fork (scoring.letters.render.ProcessRunner)."""
    import scoring.letters.render as render

    assert render._WORKER is None


def test_letter_runner_uses_the_runs_session(rendered):
    from kenshin.spark.letters import letter_runner

    runner = letter_runner("local[2]")
    assert runner.spark is rendered.session and runner.workers == 2
