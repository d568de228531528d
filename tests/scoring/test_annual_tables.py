"""The run's per-resident tables after the selection: factors matched by position, the
selection checked part by part with the contract's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa
import pytest

from kenshin.annual import as_written, held, validate_in_parts, with_factors
from scoring.contracts import SELECTION_SCHEMA


def _selection(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    outcome = rng.choice(["diabetes", "liver", None], n)
    return pd.DataFrame(
        {
            "pseudonym": pd.Series([f"{i:016x}" for i in rng.permutation(n)],
                                   dtype=pd.ArrowDtype(pa.string())),
            "fiscal_year": 2025,
            "letter_type": pd.array(np.where(outcome == None, None, "advice"), dtype="string"),  # noqa: E711
            "outcome": pd.array(outcome, dtype="string"),
            "priority": rng.random(n),
            "rank": pd.array(np.arange(1, n + 1), dtype="Int64"),
            "arm": pd.array(rng.choice(["letter", "control", None], n), dtype="string"),
            "reason": pd.Categorical(["SENT_ADVICE"] * n),
            "reason_detail": pd.array([None] * n, dtype="string"),
            "sent": True,
        }
    )  # fmt: skip


def test_factors_are_those_of_a_merge_on_pseudonym_and_outcome():
    sel = _selection(500)
    rng = np.random.default_rng(1)
    rows = rng.choice(500, 120, replace=False)
    factors = pd.DataFrame(
        {
            "pseudonym": sel["pseudonym"].to_numpy(dtype=object)[rows],
            "outcome": rng.choice(["diabetes", "liver", "ckd"], 120),  # some another topic
            **{f"factor_{i}": [f"f{i}-{r}" for r in rows] for i in (1, 2, 3)},
        }
    ).astype("string")
    got = with_factors(sel, factors)
    want = sel.astype({"pseudonym": object, "outcome": object}).merge(
        factors.astype(object), on=["pseudonym", "outcome"], how="left"
    )
    written = as_written(got)
    for i in (1, 2, 3):
        assert isinstance(got[f"factor_{i}"].dtype, pd.CategoricalDtype)  # held: a code a row
        assert written[f"factor_{i}"].dtype == "string"
        assert written[f"factor_{i}"].tolist() == want[f"factor_{i}"].astype("string").tolist()
    assert got["factor_1"].notna().sum() > 10
    assert "factor_1" not in sel  # the caller's frame is left as it was
    pd.testing.assert_frame_equal(got[list(sel)], sel)


def test_the_selection_is_checked_part_by_part_and_unique_over_the_whole():
    none = pd.DataFrame(columns=["pseudonym", "outcome", "factor_1", "factor_2", "factor_3"])
    sel = with_factors(_selection(50), none)
    validate_in_parts(SELECTION_SCHEMA, sel, rows=7)
    twice = sel.copy()
    twice.loc[40, "pseudonym"] = twice.loc[3, "pseudonym"]  # in different parts
    with pytest.raises(pandera.errors.SchemaErrors, match="pseudonym"):
        validate_in_parts(SELECTION_SCHEMA, twice, rows=7)
    bad = sel.copy()
    bad.loc[45, "outcome"] = "gout"  # not an outcome, in the last part
    with pytest.raises(pandera.errors.SchemaErrors, match="gout"):
        validate_in_parts(SELECTION_SCHEMA, bad, rows=7)


def test_tables_written_in_parts_are_the_bytes_of_the_whole(tmp_path, monkeypatch):
    """TableWriter turns a frame into CSV text a few rows at a time: the same bytes as the
    whole frame's."""
    import kenshin.annual
    from data.files import csv_bytes

    none = pd.DataFrame(columns=["pseudonym", "outcome", "factor_1", "factor_2", "factor_3"])
    sel = with_factors(_selection(50), none)
    monkeypatch.setattr(kenshin.annual, "CSV_PART_ROWS", 7)
    with kenshin.annual.TableWriter(tmp_path / "s.parquet", tmp_path / "s.csv") as writer:
        writer.write(sel.iloc[:30])
        writer.write(sel.iloc[30:])
    assert (tmp_path / "s.csv").read_bytes() == csv_bytes(sel, date_format="%Y-%m-%d")


def test_a_table_in_fixed_row_groups_is_the_same_bytes_however_it_was_chunked(tmp_path):
    """The scores' chunks depend on the worker processes or Spark's ranges; their file must
    not: with ``row_group`` the Parquet and CSV bytes are those of the whole table. 100,000
    distinct pseudonyms overflow a row group's 1 MB string dictionary: where the writer falls
    back to plain encoding followed the chunks (a 1M-resident run's files differed so)."""
    import itertools

    import numpy as np
    import pyarrow.parquet as pq

    import kenshin.annual

    n = 250_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "pseudonym": pd.array([f"{i:016x}" for i in rng.permutation(n)], dtype="string"),
        "risk": rng.random(n),
    })  # fmt: skip
    files = []
    for i, cuts in enumerate(([0, n], [0, 3, 77_777, 150_001, 249_999, n])):
        parquet, csv = tmp_path / f"{i}.parquet", tmp_path / f"{i}.csv"
        with kenshin.annual.TableWriter(parquet, csv, row_group=100_000) as writer:
            for a, b in itertools.pairwise(cuts):
                writer.write(frame.iloc[a:b])
        meta = pq.ParquetFile(parquet).metadata
        groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert groups == [100_000, 100_000, 50_000]
        files.append((parquet.read_bytes(), csv.read_bytes()))
    assert files[0] == files[1]
    back = pd.read_parquet(tmp_path / "1.parquet")
    assert back["pseudonym"].tolist() == frame["pseudonym"].tolist()  # every row, in order


def test_the_selection_held_as_categories_is_written_as_it_was():
    """The run holds the selection's text columns as categories: the frame it writes (and
    checks) is the selection as it was."""
    none = pd.DataFrame(columns=["pseudonym", "outcome", "factor_1", "factor_2", "factor_3"])
    sel = as_written(with_factors(_selection(50), none))
    sel.loc[3, "reason_detail"] = "referral:hba1c"
    kept = held(sel.copy())
    assert all(isinstance(kept[c].dtype, pd.CategoricalDtype) for c in ("letter_type", "arm"))
    pd.testing.assert_frame_equal(as_written(kept), sel)
    pd.testing.assert_frame_equal(as_written(kept.iloc[10:20]), sel.iloc[10:20])
    assert as_written(sel) is sel  # nothing held: as it is
