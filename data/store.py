"""The Parquet store that ingest writes and later stages read.

Layout (``private/`` holds the only raw IDs and contact details; owner-only permissions)::

    store/
      manifest.json                      sources (sha256), row accounting, fingerprint
      checkups/fiscal_year=YYYY/part-0.parquet
      enrollment.parquet
      rejects.parquet
      private/contacts.parquet           pseudonym ↔ person_id, name, address (letter step only)
      private/extra_columns.parquet      unknown input columns kept aside

The store is written whole into a temporary sibling folder and swapped in, so a crash never
leaves half a store, and writing the same data twice gives byte-identical Parquet files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.files import pid_lock
from data.schemas import Rejects, StoredCheckups, StoredEnrollment

MANIFEST = "manifest.json"
PRIVATE = "private"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Rows per Parquet row group of a fiscal year's checkups. The rows are sorted by pseudonym, so
#: each group covers a narrow pseudonym range, and a scoring chunk (a pseudonym range of the
#: sorted eligibility index) decodes only the groups its range overlaps (the groups' min/max
#: statistics; :func:`read_checkup_history`) instead of the whole store at every chunk. Groups
#: of 16,384 decode less at a chunk's edges (score step ≈ 5 % faster at 124k residents) but
#: make every file's footer 4 × larger (≈ 28 MB of parsed metadata a fiscal year at 10M
#: residents, parsed again at every chunk): a 10M store's chunks read slower (8 chunks: 6.3
#: against 5.4 s; bench/README.md). Kept at 65,536.
CHECKUP_ROW_GROUP = 65_536


def _write_parquet(
    frame: pd.DataFrame, path: Path, private: bool = False, row_group_size: int | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if private:
        # Create owner-only before any byte is written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f, compression="zstd", row_group_size=row_group_size)
    else:
        pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)


def write_store(
    store: Path,
    checkups: pd.DataFrame,
    enrollment: pd.DataFrame,
    rejects: pd.DataFrame,
    contacts: pd.DataFrame,
    extra_columns: pd.DataFrame | None,
    manifest: dict,
) -> dict:
    """Validate against the declared schemas and write the whole store atomically."""
    StoredCheckups.validate(checkups)
    StoredEnrollment.validate(enrollment)
    Rejects.validate(rejects)
    store = store.resolve()
    tmp = store.with_name(f".{store.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for fy, part in checkups.groupby("fiscal_year", sort=True):
        # data.ingest sorts the checkups; the row groups' pseudonym ranges rely on it
        if not part["pseudonym"].is_monotonic_increasing:
            raise ValueError(f"FY{int(fy)} checkups are not sorted by pseudonym")
        _write_parquet(
            part.drop(columns="fiscal_year").reset_index(drop=True),
            tmp / "checkups" / f"fiscal_year={int(fy)}" / "part-0.parquet",
            row_group_size=CHECKUP_ROW_GROUP,
        )
    _write_parquet(enrollment, tmp / "enrollment.parquet")
    # Owner-only: a rejected value is whatever the export held there (a name typed into the
    # wrong column, say).
    _write_parquet(rejects, tmp / "rejects.parquet", private=True)
    (tmp / PRIVATE).mkdir(mode=0o700)
    _write_parquet(contacts, tmp / PRIVATE / "contacts.parquet", private=True)
    if extra_columns is not None and len(extra_columns.columns) > 2:
        _write_parquet(extra_columns, tmp / PRIVATE / "extra_columns.parquet", private=True)
    manifest = {**manifest, "store_fingerprint": fingerprint(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    old = store.with_name(f".{store.name}.old-{os.getpid()}")
    if store.exists():
        store.rename(old)
    tmp.rename(store)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def fingerprint(store: Path) -> dict:
    """Hash of the non-private data files (what models are trained on), and row counts."""
    h = hashlib.sha256()
    files = sorted(p for p in store.rglob("*.parquet") if PRIVATE not in p.relative_to(store).parts)
    rows = {}
    for p in files:
        rel = p.relative_to(store).as_posix()
        h.update(rel.encode() + b"\0" + sha256_file(p).encode())
        rows[rel] = pq.ParquetFile(p).metadata.num_rows
    return {"sha256": h.hexdigest(), "rows": rows}


#: Stores whose files were checked against their manifest in this process (path, manifest stat).
_VERIFIED: set[tuple[str, int, int]] = set()


def read_manifest(store: Path) -> dict:
    """The store's manifest, after checking that the data files are the ones it lists.

    A store a crash left mid-swap is completed or rolled back first. A missing, extra, changed
    or truncated data file (or a damaged manifest) is bad input naming the file and the fix;
    the check runs once per process and manifest.
    """
    from data.errors import BadInputError

    store = Path(store)
    path = store / MANIFEST
    recover_store(store)  # a swap a kill interrupted; leftovers that hold private contacts
    if not path.exists():
        raise BadInputError(f"{store}: not a kenshin store (no {MANIFEST}); run 'kenshin ingest'")
    fix = f"re-create it with 'kenshin ingest BUNDLE --store {store} --force'"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: damaged manifest ({exc}); {fix}") from None
    stat = path.stat()
    key = (str(store.resolve()), stat.st_mtime_ns, stat.st_size)
    expected = manifest.get("store_fingerprint")
    if not isinstance(expected, dict) or not {"sha256", "rows"} <= set(expected):
        # Without it a deleted or swapped data file would go unnoticed (scores of some
        # residents only, stamped as the whole store).
        raise BadInputError(
            f"{path}: the manifest lists no fingerprint of the data files, so they cannot be "
            f"checked (an edited manifest or an older kenshin?); {fix}"
        )
    if key not in _VERIFIED:
        problem = _verify_files(store, expected)
        if problem:
            raise BadInputError(f"{store}: {problem}; the store does not match its manifest: {fix}")
        _VERIFIED.add(key)
    return manifest


def _verify_files(store: Path, expected: dict) -> str | None:
    """What differs between the store's data files and its manifest's fingerprint, if any."""
    files = {
        p.relative_to(store).as_posix()
        for p in store.rglob("*.parquet")
        if PRIVATE not in p.relative_to(store).parts
    }
    listed = set(expected.get("rows", {}))
    if listed - files:
        return f"missing data file {sorted(listed - files)[0]}"
    if files - listed:
        return f"unexpected data file {sorted(files - listed)[0]}"
    for rel in sorted(files):
        try:
            pq.ParquetFile(store / rel).metadata  # noqa: B018 - reading the footer checks it
        except (pa.ArrowInvalid, OSError):
            return f"unreadable data file {rel} (truncated or not Parquet)"
    actual = fingerprint(store)
    if actual["sha256"] != expected["sha256"]:
        changed = [f for f, n in expected.get("rows", {}).items() if actual["rows"].get(f) != n]
        return f"changed data file {changed[0] if changed else '(contents differ)'}"
    if not (store / PRIVATE / "contacts.parquet").exists():
        return "missing private/contacts.parquet"
    return None


def recover_store(store: Path) -> None:
    """Finish or roll back a swap that a crash interrupted, and clear leftovers owner-only.

    :func:`write_store` renames ``store`` → ``.NAME.old-PID`` and then ``.NAME.tmp-PID`` →
    ``store``. A complete temporary store (its manifest is written last) wins; otherwise the old
    store is put back. Leftover temporary and old copies (they hold private contacts) are
    removed once a store is in place. Call it while holding the store's lock when writing.
    """
    store = Path(store).resolve()
    parent = store.parent
    if not parent.is_dir():
        return
    tmps = sorted(parent.glob(f".{store.name}.tmp-*"), key=lambda p: p.stat().st_mtime)
    olds = sorted(parent.glob(f".{store.name}.old-*"), key=lambda p: p.stat().st_mtime)
    # Only what a dead writer left: a live ingest may be between its two renames.
    tmps, olds = [t for t in tmps if _writer_gone(t)], [o for o in olds if _writer_gone(o)]
    if not store.exists():
        complete = [t for t in tmps if (t / MANIFEST).exists()]
        with contextlib.suppress(OSError):  # e.g. a read-only parent: "not a store" follows
            if complete:
                complete[-1].rename(store)
            elif olds:
                olds[-1].rename(store)
    if store.exists():
        for left in [*tmps, *olds]:
            if left.exists():
                shutil.rmtree(left, ignore_errors=True)


def _writer_gone(path: Path) -> bool:
    """True unless the process named in ``.NAME.tmp-PID`` is alive (and may be writing it)."""
    try:
        pid = int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Hold the store's write lock (one ingest at a time); say who holds it otherwise.

    ``flock`` on ``.NAME.lock`` beside the store: the kernel releases it when its holder dies,
    so a killed ingest never leaves a stale lock.
    """
    from data.errors import BadInputError

    store = Path(store).resolve()

    def busy(holder: str) -> Exception:
        return BadInputError(
            f"{store}: another ingest is writing this store (process {holder}); wait for it "
            "to finish"
        )

    with pid_lock(store.with_name(f".{store.name}.lock"), busy):
        yield


def _validated(schema, frame: pd.DataFrame, store: Path, table: str) -> pd.DataFrame:
    """Check a table read from the store; a store of another layout is bad input (re-ingest)."""
    from pandera.errors import SchemaError, SchemaErrors

    from data.errors import BadInputError
    from data.schema_check import validated

    try:
        return validated(schema, frame)
    except (SchemaError, SchemaErrors) as exc:
        column = getattr(exc, "column_name", None) or getattr(exc, "schema", None)
        what = f"column {column}" if isinstance(column, str) else "its layout"
        raise BadInputError(
            f"{store}: the stored {table} do not match this version of kenshin ({what}); "
            f"re-create the store with 'kenshin ingest BUNDLE --store {store} --force'"
        ) from None


def checked_checkups(frame: pd.DataFrame, store: Path) -> pd.DataFrame:
    """Checkup rows read from ``store`` (by this module or by another engine's reader), sorted
    by person and exam date and checked against the stored checkups' schema."""
    frame = frame.sort_values(["pseudonym", "exam_date"], kind="stable", ignore_index=True)
    return _validated(StoredCheckups, frame, store, "checkups")


def read_checkups(store: Path, fiscal_years: Iterable[int] | None = None) -> pd.DataFrame:
    """Stored checkups (optionally some fiscal years), schema-checked, sorted by person and date."""
    read_manifest(store)
    parts = []
    years = None if fiscal_years is None else set(fiscal_years)
    for fy, path in _checkup_files(store):
        if years is not None and fy not in years:
            continue
        part = pq.read_table(path).to_pandas()
        part.insert(2, "fiscal_year", pd.array([fy] * len(part), dtype="Int16"))
        parts.append(part)
    return checked_checkups(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), store)


def _checkup_dataset(store: Path):
    import pyarrow.dataset as ds

    read_manifest(store)
    return ds.dataset(store / "checkups", format="parquet", partitioning="hive")


def read_checkup_columns(
    store: Path, columns: list[str], fiscal_years: Iterable[int] | None = None
) -> pd.DataFrame:
    """Some columns of the stored checkups (plus ``fiscal_year``), without the full read
    (one file and batch decoded at a time: Arrow's read-ahead held ≈ 0.3 GB more at 10M
    residents, for no gain in time)."""
    table = pa.Table.from_batches(
        list(iter_checkup_batches(store, columns, fiscal_years)),
        schema=checkup_batch_schema(store, columns),
    )
    return checkup_columns_frame(table)


def iter_checkup_batches(
    store: Path, columns: list[str], fiscal_years: Iterable[int] | None = None
) -> Iterator[pa.RecordBatch]:
    """:func:`read_checkup_columns`' rows a batch at a time, as Arrow record batches (one file
    and batch decoded at a time), so a caller can reduce each batch before the next."""
    import pyarrow.dataset as ds

    dataset = _checkup_dataset(store)
    flt = None if fiscal_years is None else ds.field("fiscal_year").isin(list(fiscal_years))
    yield from dataset.to_batches(
        columns=[*columns, "fiscal_year"], filter=flt, fragment_readahead=1, batch_readahead=1
    )


def checkup_batch_schema(store: Path, columns: list[str]) -> pa.Schema:
    """The schema of :func:`iter_checkup_batches`' batches."""
    schema = _checkup_dataset(store).schema
    return pa.schema([schema.field(c) for c in [*columns, "fiscal_year"]])


def checkup_columns_frame(table: pa.Table) -> pd.DataFrame:
    """Checkup columns read in Arrow as :func:`read_checkup_columns` gives them (text kept in
    Arrow); ``table`` is consumed."""
    return table.to_pandas(types_mapper=_arrow_strings, self_destruct=True, split_blocks=True)


def _arrow_strings(t: pa.DataType) -> pd.ArrowDtype | None:
    """``to_pandas`` types: text stays in Arrow (``pd.ArrowDtype``), one buffer a column, not a
    Python ``str`` object a row (≈ 20 bytes a 16-character pseudonym instead of ≈ 70)."""
    return pd.ArrowDtype(t) if pa.types.is_string(t) or pa.types.is_large_string(t) else None


def read_checkup_history(
    store: Path, pseudonyms: Iterable[str], max_fiscal_year: int | None = None
) -> pd.DataFrame:
    """Checkups of some residents (up to a fiscal year), schema-checked like read_checkups.

    Decodes only the row groups whose pseudonym range holds one of the residents
    (:data:`CHECKUP_ROW_GROUP`), one file and one row group at a time, each filtered to the
    residents before the next: a scoring chunk's memory is bounded by the chunk, and a read
    of residents spread over the whole store by one row group and one file's footer (an Arrow
    dataset kept every file's footer to the end: +211 against +142 MB at 10M residents).
    """
    import pyarrow.compute as pc

    read_manifest(store)
    wanted = pa.array(sorted({p for p in pseudonyms if isinstance(p, str)}), type=pa.string())
    bounds = wanted.to_numpy(zero_copy_only=False)
    parts, schema = [], None
    for fy, path in _checkup_files(store, max_fiscal_year):
        file = pq.ParquetFile(path, pre_buffer=False)
        schema = schema or file.schema_arrow
        for group in _groups_meeting(file.metadata, file.schema_arrow, bounds):
            rows = file.read_row_group(group)
            rows = rows.filter(pc.is_in(rows.column("pseudonym"), value_set=wanted))
            if rows.num_rows:
                year = pa.array(np.full(rows.num_rows, fy, dtype=np.int16))
                parts.append(rows.append_column("fiscal_year", year))
        del file
    if schema is None:
        return checked_checkups(pd.DataFrame(), store)
    if not parts:
        parts = [schema.empty_table().append_column("fiscal_year", pa.array([], pa.int16()))]
    frame = pa.concat_tables(parts, promote_options="default").to_pandas()
    fy = frame.pop("fiscal_year")
    frame.insert(2, "fiscal_year", pd.array(fy.to_numpy(), dtype="Int16"))
    return checked_checkups(frame, store)


def _checkup_files(store: Path, max_fiscal_year: int | None = None) -> list[tuple[int, Path]]:
    """(fiscal year, file) of the stored checkups, in fiscal year order."""
    files = []
    for folder in sorted((store / "checkups").glob("fiscal_year=*")):
        fy = int(folder.name.split("=")[1])
        if max_fiscal_year is None or fy <= max_fiscal_year:
            files += [(fy, f) for f in sorted(folder.glob("*.parquet"))]
    return files


def _groups_meeting(metadata, schema: pa.Schema, wanted: np.ndarray) -> list[int]:
    """Row groups of a checkup file that may hold one of ``wanted`` (sorted pseudonyms): those
    whose pseudonym min/max statistics enclose one of them, and any without text statistics."""
    column = schema.get_field_index("pseudonym")
    groups = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.min, str):
            groups.append(group)
            continue
        first = np.searchsorted(wanted, stats.min, side="left")
        if first < len(wanted) and wanted[first] <= stats.max:
            groups.append(group)
    return groups


#: Enrollment rows checked and filtered at a time by ``read_enrollment(covering=…)``.
ENROLLMENT_BATCH = 250_000

#: How the store keeps enrollment periods (data.ingest writes them so).
_ENROLLMENT_TYPES = {
    "pseudonym": pa.string(),
    "enrolled_from": pa.timestamp("ns"),
    "enrolled_until": pa.timestamp("ns"),
    "end_reason": pa.string(),
}


def _enrollment_surely_valid(batch: pa.RecordBatch) -> bool:
    """True when ``batch`` passes StoredEnrollment for certain, checked in Arrow: the store's
    own column types (nothing to coerce), pseudonyms matching the schema's pattern, a start on
    every period, no end before its start. Anything else is left to the schema (its message)."""
    import pyarrow.compute as pc

    from data.pseudonym import PSEUDONYM_LENGTH

    names = batch.schema.names
    if any(n not in names or batch.schema.field(n).type != t for n, t in _ENROLLMENT_TYPES.items()):
        return False
    who, start = batch.column("pseudonym"), batch.column("enrolled_from")
    if who.null_count or start.null_count:
        return False
    pattern = f"^[0-9a-f]{{{PSEUDONYM_LENGTH}}}$"
    if pc.any(pc.invert(pc.match_substring_regex(who, pattern))).as_py():
        return False
    return not pc.any(pc.less(batch.column("enrolled_until"), start)).as_py()


def _covering_periods(
    store: Path, covering: pd.Timestamp
) -> Iterator[pa.RecordBatch | pd.DataFrame]:
    """The enrollment periods covering ``covering``, :data:`ENROLLMENT_BATCH` rows checked at a
    time: Arrow batches where Arrow could tell they are valid, else schema-checked frames."""
    import pyarrow.compute as pc

    day = pa.scalar(pd.Timestamp(covering).as_unit("ns").value, pa.timestamp("ns"))
    for batch in pq.ParquetFile(store / "enrollment.parquet").iter_batches(ENROLLMENT_BATCH):
        if _enrollment_surely_valid(batch):
            until = batch.column("enrolled_until")
            keep = pc.and_(
                pc.less_equal(batch.column("enrolled_from"), day),
                pc.or_kleene(pc.is_null(until), pc.greater_equal(until, day)),
            )
            yield batch.filter(keep)
            continue
        part = _validated(StoredEnrollment, batch.to_pandas(), store, "enrollment")
        until = part["enrolled_until"]
        keep = (part["enrolled_from"] <= covering) & (until.isna() | (until >= covering))
        yield part.loc[keep]


def read_enrollment(store: Path, covering: pd.Timestamp | None = None) -> pd.DataFrame:
    """The enrollment periods (資格期間), schema-checked; with ``covering``, only the periods
    that cover that day (from ≤ day ≤ until, or still open), read and checked
    :data:`ENROLLMENT_BATCH` rows at a time.

    Eligibility needs only those; the whole table (every period of every member, ever) and its
    check held ≈ 0.8 GB at 1M residents. The periods of a store as data.ingest writes it are
    checked and kept in Arrow, their text returned as ``pd.ArrowDtype`` (≈ 40 bytes a period
    instead of ≈ 115; the schema check of pandas frames took ≈ 0.4 GB and 9 s at 1M).
    """
    path = store / "enrollment.parquet"
    if covering is None:
        return _validated(StoredEnrollment, pd.read_parquet(path), store, "enrollment")
    parts = list(_covering_periods(store, covering))
    if not parts:
        return read_enrollment(store)  # empty: its columns as the store declares them
    if any(isinstance(p, pd.DataFrame) for p in parts):  # a store of other column types
        frames = [p if isinstance(p, pd.DataFrame) else p.to_pandas() for p in parts]
        return pd.concat(frames, ignore_index=True)
    table = pa.Table.from_batches(parts).combine_chunks()
    del parts
    return table.to_pandas(types_mapper=_arrow_strings, self_destruct=True)


def iter_enrolled(store: Path, covering: pd.Timestamp) -> Iterator[pa.Array]:
    """Pseudonyms of the enrollment periods covering ``covering`` (one per period), a batch at
    a time, checked as :func:`read_enrollment` checks them."""
    for p in _covering_periods(store, covering):
        if isinstance(p, pd.DataFrame):
            yield pa.array(p["pseudonym"].astype("string").array, type=pa.string())
        else:
            yield p.column("pseudonym")


def read_enrolled(store: Path, covering: pd.Timestamp) -> pa.ChunkedArray:
    """:func:`iter_enrolled` all together: only what eligibility needs of the enrollment
    (≈ 20 bytes a period, not the ≈ 40 of :func:`read_enrollment`'s frame)."""
    return pa.chunked_array(list(iter_enrolled(store, covering)), type=pa.string())


def read_rejects(store: Path) -> pd.DataFrame:
    return pd.read_parquet(store / "rejects.parquet")


def read_contacts(store: Path, pseudonyms: Iterable[str] | None = None) -> pd.DataFrame:
    """Contact details with raw IDs (of ``pseudonyms`` only, if given: filtered by Arrow as it
    reads). Only the letter step may call this."""
    path = store / PRIVATE / "contacts.parquet"
    if pseudonyms is None:
        return pd.read_parquet(path)
    wanted = pa.array(list(pseudonyms), type=pa.string())
    import pyarrow.dataset as ds

    return ds.dataset(path).to_table(filter=ds.field("pseudonym").isin(wanted)).to_pandas()


def iter_contact_batches(
    store: Path, columns: list[str], batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Some columns of the contacts as Arrow, ``batch_rows`` rows at a time (the columns the
    file lacks are left out): filtered in Arrow before any row becomes Python objects.

    Pages are read as they are decoded, one column after the other, not a row group's column
    chunks at once: the read then costs about the same whatever the row groups' size
    (bench/README.md, "Figures behind design choices")."""
    path = store / PRIVATE / "contacts.parquet"
    if not path.exists():
        return
    f = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    present = [c for c in columns if c in f.schema_arrow.names]
    yield from f.iter_batches(batch_rows, columns=present, use_threads=False)
