"""What the annual run does for memory changes nothing it computes.

The annual run reads only the enrollment periods covering the scoring day, a batch at a time
(``data.store.read_enrollment(covering=…)``), and hands freed memory back between steps
(:func:`kenshin.annual.release_memory`); the selection's streamed half is tested in
tests/scoring/test_selection_streamed.py, the whole run's outputs in tests/scoring/test_annual.py.
"""

from __future__ import annotations

import pandas as pd

from tests.conftest import checkup_row, write_bundle


def _store(tmp_path):
    from data.ingest import ingest

    rows = []
    for i in range(40):
        for year, fy_date in enumerate(("2022-06-10", "2023-07-01", "2024-05-20", "2025-09-03")):
            if (i + year) % 7 == 3:  # some residents skip a year
                continue
            rows.append(
                checkup_row(
                    person_id=f"12-{i:06d}",
                    exam_date=fy_date,
                    sex=str(1 + i % 2),
                    sbp=str(110 + (i * 3 + year * 5) % 60),
                    hba1c=f"{5.0 + (i % 15) / 10:.1f}",
                    birth_date=f"{1950 + i % 30}-04-0{1 + i % 9}",
                )  # fmt: skip
            )
    enrollment = []
    for i in range(40):  # open, ended before the day, ended after it, started after it, twice
        pid = f"12-{i:06d}"
        until = {1: "2025-12-31", 2: "2026-06-30", 3: ""}.get(i % 5, "")
        start = "2026-05-01" if i % 5 == 3 else "2015-04-01"
        enrollment.append({"person_id": pid, "enrolled_from": start, "enrolled_until": until})
        if i % 5 == 4:
            enrollment.append(
                {"person_id": pid, "enrolled_from": "2010-04-01", "enrolled_until": "2014-03-31"}
            )
    ingest(write_bundle(tmp_path / "bundle", rows, enrollment=enrollment), tmp_path / "store")
    return tmp_path / "store"


def test_enrollment_covering_the_day_is_read_in_batches_to_the_same_eligibility(
    tmp_path, monkeypatch
):
    import numpy as np
    import pyarrow as pa

    import data.store as store_module
    from data.store import read_checkup_columns, read_enrollment
    from scoring.score import ScoringConfig, eligible_residents, enrolled_on

    store = _store(tmp_path)
    whole = read_enrollment(store)
    assert len(whole) == 48
    candidates = read_checkup_columns(store, ["pseudonym", "exam_date", "age", "sex"], [2025, 2024])
    for day in ("2026-04-01", "2026-01-15", "2026-07-01"):
        day = pd.Timestamp(day)
        expected = eligible_residents(candidates, whole, 2025, day, ScoringConfig())
        for batch in (store_module.ENROLLMENT_BATCH, 7, 1):
            monkeypatch.setattr(store_module, "ENROLLMENT_BATCH", batch)
            covering = read_enrollment(store, covering=day)
            assert list(covering.columns) == list(whole.columns)
            # the same columns, text kept in Arrow (compact); the same periods
            arrow_text = pd.ArrowDtype(pa.string())
            assert covering.dtypes.equals(whole.dtypes.replace({np.dtype(object): arrow_text}))
            until = whole["enrolled_until"]
            kept = whole[(whole["enrolled_from"] <= day) & (until.isna() | (until >= day))]
            pd.testing.assert_frame_equal(
                covering.astype(whole.dtypes), kept.reset_index(drop=True), check_exact=True
            )
            assert enrolled_on(covering, day).equals(enrolled_on(whole, day))
            got = eligible_residents(candidates, covering, 2025, day, ScoringConfig())
            pd.testing.assert_frame_equal(got.index, expected.index, check_exact=True)
            assert got.counts == expected.counts


def test_enrollment_breaking_its_contract_in_a_later_batch_is_bad_input(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    import data.store as store_module
    from data.store import read_enrollment
    from kenshin.errors import BadInputError

    store = _store(tmp_path)
    path = store / "enrollment.parquet"
    table = pq.read_table(path)
    pids = table.column("pseudonym").to_pylist()
    pids[-1] = "not-a-pseudonym"
    table = table.set_column(0, "pseudonym", pa.array(pids, type=pa.string()))
    pq.write_table(table, path)
    monkeypatch.setattr(store_module, "ENROLLMENT_BATCH", 10)
    with pytest.raises(BadInputError, match="enrollment"):
        read_enrollment(store, covering=pd.Timestamp("2026-04-01"))


def test_release_memory_can_be_called_any_time():
    from kenshin.annual import release_memory

    release_memory()
    release_memory()


def test_eligibility_in_the_store_reads_only_the_pseudonyms_of_the_covering_periods(tmp_path):
    from data.store import read_checkup_columns, read_enrolled, read_enrollment
    from scoring.score import ScoringConfig, eligible_in_store, eligible_residents

    store = _store(tmp_path)
    candidates = read_checkup_columns(store, ["pseudonym", "exam_date", "age", "sex"], [2025, 2024])
    for day in ("2026-04-01", "2026-01-15", "2026-07-01", "2014-03-31"):
        day = pd.Timestamp(day)
        covering = read_enrollment(store, covering=day)
        assert read_enrolled(store, day).to_pylist() == covering["pseudonym"].tolist()
        for cfg in (ScoringConfig(), ScoringConfig(fallback_previous_year=False)):
            want = eligible_residents(candidates, covering, 2025, day, cfg)
            got = eligible_in_store(store, 2025, day, cfg)
            pd.testing.assert_frame_equal(got.index, want.index, check_exact=True)
            assert got.counts == want.counts


def test_enrollment_of_other_column_types_is_checked_by_the_schema(tmp_path):
    """Periods Arrow cannot vouch for (here: dates in microseconds, not the store's
    nanoseconds) are checked by the schema as frames: the same periods covering the day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from data.store import _covering_periods, _enrollment_surely_valid, read_enrollment

    store = _store(tmp_path)
    day = pd.Timestamp("2026-04-01")
    want = read_enrollment(store, covering=day).astype(object)
    path = store / "enrollment.parquet"
    table = pq.read_table(path)
    assert all(_enrollment_surely_valid(b) for b in table.to_batches())
    for name in ("enrolled_from", "enrolled_until"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).cast(pa.timestamp("us")))
    pq.write_table(table, path)
    assert not any(_enrollment_surely_valid(b) for b in table.to_batches())
    assert all(isinstance(p, pd.DataFrame) for p in _covering_periods(store, day))
    got = read_enrollment(store, covering=day)
    pd.testing.assert_frame_equal(
        got.astype(object), want.astype(object), check_dtype=False, check_exact=True
    )
