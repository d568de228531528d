"""kenshin.spark.tasks: partitions streamed back as their tasks end; errors keep their kind."""

from __future__ import annotations

import pytest

from kenshin.errors import BadInputError
from kenshin.spark.session import spark_available
from kenshin.spark.tasks import stream_partitions, task_error
from scoring.letters.render import LetterRenderError

_MISSING = spark_available()


def _trace(line: str) -> RuntimeError:
    return RuntimeError(
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "render.py", line 1, in render\n'
        f"{line}\n\tat org.apache.spark.api.python.BasePythonRunner"
    )


def test_a_task_error_keeps_its_kind_and_message():
    err = task_error(
        _trace(
            "scoring.letters.render.LetterRenderError: the letter for 0a1b could not be "
            "typeset (error: …)"
        ),
        BadInputError,
        LetterRenderError,
    )
    assert isinstance(err, LetterRenderError)
    assert str(err) == "the letter for 0a1b could not be typeset (error: …)"
    err = task_error(_trace("kenshin.errors.BadInputError: the store /s is damaged"), BadInputError)
    assert isinstance(err, BadInputError) and str(err) == "the store /s is damaged"
    assert task_error(RuntimeError("Task failed: OutOfMemoryError"), BadInputError) is None


@pytest.mark.skipif(_MISSING is not None, reason=f"Spark not available: {_MISSING}")
@pytest.mark.xdist_group("spark")
@pytest.mark.slow
def test_partitions_come_back_in_order_or_as_they_end_and_a_failure_stops_the_rest():
    from kenshin.spark.session import SparkSettings, get_session

    conf = {"spark.default.parallelism": "2"}
    spark = get_session(SparkSettings(conf=conf), "local[2]")

    def square(part):
        import time

        for x in part:
            time.sleep(1.0 if x == 0 else 0.0)  # the first partition ends last
            yield x * x

    items = list(range(7))
    got = list(stream_partitions(spark, items, 7, square, "test", ordered=True))
    assert got == [x * x for x in items]
    unordered = list(stream_partitions(spark, items, 7, square, "test"))
    assert sorted(unordered) == got and unordered != got  # partition 0 came back last

    def fail(part):
        for x in part:
            if x == 3:
                raise BadInputError("the store /s is damaged")
            yield x

    with pytest.raises(Exception) as caught:
        list(stream_partitions(spark, items, 7, fail, "test", ordered=True))
    err = task_error(caught.value, BadInputError)
    assert isinstance(err, BadInputError) and str(err) == "the store /s is damaged"
