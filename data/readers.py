"""Readers for the input bundle (docs/contract.md §Bundle): CSV (UTF-8 / CP932) and Parquet.

Every reader returns the table as *raw text* columns plus provenance (``_source_file``,
``_source_row``), so that normalisation and validation are one code path whatever the source.
File-level problems (unreadable, truncated, undecodable, missing required column) raise
:class:`kenshin.errors.BadInputError`; row-level problems are left for validation.

Other formats plug in through :data:`CHECKUP_READERS`: a function from a path to raw checkup
frames (the MHLW XML reader registers itself there).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.columns import CHECKUP_COLUMNS, JAPANESE_HEADERS, REQUIRED, TABLES
from data.errors import BadInputError

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"
PROVENANCE = (SOURCE_FILE, SOURCE_ROW)
#: Optional columns of a non-tabular reader's rows: its own reason to reject the row (e.g.
#: malformed XML) and the column concerned. Validation applies them before any other check.
REJECT_REASON = "_reject_reason"
REJECT_COLUMN = "_reject_column"
_VERDICT = (REJECT_REASON, REJECT_COLUMN)
#: Optional column of a non-tabular reader's rows: ``;``-joined flags it raised on the row (e.g.
#: ``dbp_above_range``: the value was at or beyond the measuring range); kept in ``soft_flags``.
READER_FLAGS = "_reader_flags"
#: Optional column of a non-tabular reader's rows: the questionnaire coding it knows its rows
#: are in (``by-year`` or ``current``); it wins over detection and configuration.
QUESTIONNAIRE_CODING = "_questionnaire_coding"
ENCODINGS = ("utf-8-sig", "cp932")


@dataclass
class RawTable:
    """One table as read: text columns in canonical names, provenance, and what else was there."""

    name: str
    frame: pd.DataFrame
    sources: list[Path]
    extra_columns: list[str] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)  # reader reports for the manifest (e.g. XML)


#: Readers for non-tabular checkup sources, keyed by file suffix (".xml", ".zip"); each is
#: called once with the bundle folder when files with one of its suffixes are there.
CHECKUP_READERS: dict[str, Callable[[Path], Iterable[pd.DataFrame]]] = {}
#: Run once over all frames of :data:`CHECKUP_READERS` (concatenated): each returns the frame
#: (e.g. duplicate documents across files marked) and notes for the manifest.
CHECKUP_FINALISERS: list[Callable[[pd.DataFrame], tuple[pd.DataFrame, dict]]] = []


def _register_plugins() -> None:
    """Import the readers that register themselves (lazily: no import cycle, no work at import)."""
    import data.mhlw_xml  # noqa: F401


#: Longest row a CSV may hold (bytes): a real checkup row is under 2 kB; a longer one is a
#: damaged file, and pandas would need many times its size in memory. Such a row is cut out
#: before parsing and rejected with the reason; a header that long stops the file.
MAX_CSV_LINE_BYTES = 1 << 20
#: Share of NUL bytes in the first 4 kB from which a file is taken for UTF-16 or binary (a few
#: NULs in text are damaged fields: their rows are rejected, the file is read).
NUL_SHARE_BINARY = 0.01
#: Stands in, in the first field, for a row cut out for its length (ASCII: any encoding).
_LONG_MARK = "\x01kenshin-row-too-long\x01"


def _record_ends(arr: np.ndarray) -> np.ndarray:
    """Offsets of the newlines that end a CSV record: those outside double quotes (a quoted
    field may hold newlines). 0x22 is never a trail byte in CP932, so bytes suffice."""
    ends = np.flatnonzero(arr == 10)
    quotes = np.flatnonzero(arr == 34)
    if len(quotes):
        ends = ends[np.searchsorted(quotes, ends) % 2 == 0]
    return ends


def _cut_long_records(raw: bytes, path: Path) -> tuple[bytes, dict[int, int]]:
    """``raw`` with every record over :data:`MAX_CSV_LINE_BYTES` replaced by a stand-in row,
    and ``{data row number: bytes}`` of those cut. Memory then stays near the file's size."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    ends = _record_ends(arr)
    bounds = np.concatenate(([-1], ends, [len(raw)]))
    lengths = np.diff(bounds) - 1
    long_rows = np.flatnonzero(lengths > MAX_CSV_LINE_BYTES)
    if not len(long_rows):
        return raw, {}
    if long_rows[0] == 0:
        raise BadInputError(
            f"{path.name}: the header is {int(lengths[0]):,} bytes long (limit "
            f"{MAX_CSV_LINE_BYTES:,}); a damaged or binary export?"
        )
    header = raw[: bounds[1]] if len(bounds) > 2 else raw
    fields = len(next(csv.reader([header.decode("latin-1")]), [""]))
    stand_in = (_LONG_MARK + "," * (fields - 1)).encode("ascii")
    parts, at = [], 0
    for row in long_rows:
        start, end = int(bounds[row]) + 1, int(bounds[row + 1])
        parts += [raw[at:start], stand_in + (b"\r" if raw[end - 1 : end] == b"\r" else b"")]
        at = end
    parts.append(raw[at:])
    return b"".join(parts), {int(r): int(lengths[r]) for r in long_rows}


def decode_text(path: Path, encoding: str | None = None) -> tuple[str, str, dict[int, int]]:
    """Decode a CSV file as UTF-8 (BOM optional) or CP932, whichever is valid, in that order.

    Also returns the rows cut out for their length (:func:`_cut_long_records`).
    """
    raw = path.read_bytes()
    head = raw[:4096]
    if head and head.count(b"\x00") > NUL_SHARE_BINARY * len(head):
        raise BadInputError(
            f"{path.name}: cannot decode as UTF-8 or CP932 text (NUL bytes: UTF-16 or binary?)"
        )
    raw, cut = _cut_long_records(raw, path)
    tried = (encoding,) if encoding else ENCODINGS
    error: UnicodeDecodeError | None = None
    for enc in tried:
        try:
            return raw.decode(enc), enc, cut
        except UnicodeDecodeError as exc:
            error = exc
    assert error is not None
    line = raw[: error.start].count(b"\n") + 1
    raise BadInputError(
        f"{path.name}: cannot decode as {' or '.join(tried)} "
        f"(byte 0x{raw[error.start]:02x} on line {line})"
    )


#: Stands in for a NUL byte while pandas parses (its C parser ends a field at NUL); rows that
#: held one are rejected with a reason (:func:`_nul_rejects`).
_NUL_MARK = "\ufffe"


def _parse_csv(text: str, name: str, index_col: bool | None) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # index_col=False warns when it drops the empty trailing fields (checked before).
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(
                io.StringIO(text),
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=False,
                index_col=index_col,
                engine="c",
            )
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise BadInputError(f"{name}: malformed CSV ({detail})") from exc


def _read_csv(path: Path, encoding: str | None) -> tuple[pd.DataFrame, str, dict[int, int]]:
    """The file's rows as text, its encoding, and the rows cut for their length."""
    text, enc, cut = decode_text(path, encoding)
    if "\x00" in text:
        text = text.replace("\x00", _NUL_MARK)
    if not text.strip():
        raise BadInputError(f"{path.name}: file is empty")
    if "\r" in text and "\n" not in text:  # classic Mac line ends: one CR per row
        text = text.replace("\r", "\n")
    try:
        header = next(csv.reader(io.StringIO(text[: text.find("\n") + 1 or len(text)])))
    except csv.Error as exc:
        raise BadInputError(f"{path.name}: malformed CSV header ({exc})") from None
    # pandas would rename a repeated header (sbp → sbp.1) and the second would be set aside.
    _stop_on_duplicates(header, header, path.name)
    frame = _parse_csv(text, path.name, index_col=None)
    if not isinstance(frame.index, pd.RangeIndex):
        # Every data row has one field more than the header: pandas took the first column as
        # an index. A comma after the last field (an empty extra field) is common in vendor
        # exports and is dropped; a value there has no column, so it is bad input.
        extra = frame[frame.columns[-frame.index.nlevels :]].notna().any(axis=1).to_numpy()
        if extra.any():
            line = int(np.argmax(extra)) + 2
            raise BadInputError(
                f"{path.name}: data rows have more fields than the header (line {line} has a "
                "value past the last column); fix the header or the rows"
            )
        frame = _parse_csv(text, path.name, index_col=False)
    # A header ending in a comma names an empty column; dropped when it holds nothing.
    if len(header) == len(frame.columns):
        blank = [c for c, h in zip(frame.columns, header, strict=True) if not h.strip()]
        frame = frame.drop(columns=[c for c in blank if frame[c].isna().all()])
    # A file cut off mid-row: no final newline and a short last row.
    if not text.endswith(("\n", "\r")) and len(frame):
        last = next(csv.reader(io.StringIO(text[text.rfind("\n") + 1 :])), [])
        if len(last) < len(header):
            raise BadInputError(
                f"{path.name}: file is truncated (line {len(frame) + 1} has {len(last)} of "
                f"{len(header)} fields and no line end)"
            )
    return frame, enc, cut


def _mark_long_rows(frame: pd.DataFrame, cut: dict[int, int]) -> None:
    """Give the stand-ins of rows cut for their length a reject reason (nothing else of them
    was read)."""
    long_row = frame[frame.columns[0]].eq(_LONG_MARK).fillna(False).to_numpy(dtype=bool)
    sizes = [cut[k] for k in sorted(cut)]
    reason = pd.Series(None, index=frame.index, dtype=object)
    reason[long_row] = [
        f"row is {n:,} bytes long (limit {MAX_CSV_LINE_BYTES:,}): not read; a damaged export "
        "or a field pasted by mistake?"
        for n in sizes[: int(long_row.sum())]
    ]
    frame.loc[long_row, frame.columns[0]] = None
    frame[REJECT_REASON] = reason
    frame[REJECT_COLUMN] = None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{path.name}: unreadable Parquet file ({exc})") from exc
    frame = table.to_pandas()
    # Text like CSV, so both go through the same normalisation; dates keep ISO form.
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.dt.strftime("%Y-%m-%d")
        elif pd.api.types.is_bool_dtype(s):
            out[col] = s.map({True: "true", False: "false"})
        else:
            txt = s.astype("string")
            # 1.0 -> "1": integral floats from Parquet must not fail integer-code checks.
            if pd.api.types.is_float_dtype(s):
                txt = txt.str.replace(r"\.0$", "", regex=True)
            # An empty or blank text is missing, as an empty CSV cell is.
            out[col] = txt.mask(txt.str.strip().eq("").fillna(False))
    return out.astype(object).where(out.notna(), None)


def fold_header(name: str) -> str:
    """Header as compared (列名の照合): NFKC (full-width → half-width), lower case, trimmed."""
    return unicodedata.normalize("NFKC", name).strip().lower()


def canonical_headers(headers: list[str], columns: Iterable[str], file: str) -> list[str]:
    """Rename headers that match a canonical column up to case and width (``SBP``, ``ｌｄｌ``).

    Two headers that name the same column (``sbp`` twice, or ``sbp`` and ``SBP``) are a
    file-level error: which one holds the value cannot be known.
    """
    columns = list(columns)
    by_fold = {fold_header(c): c for c in columns}
    japanese = {_unspaced(k): v for k, v in JAPANESE_HEADERS.items() if v in columns}
    out = [by_fold.get(fold_header(h), japanese.get(_unspaced(h), h)) for h in headers]
    _stop_on_duplicates(headers, out, file)
    return out


def _stop_on_duplicates(headers: list[str], names: list[str], file: str) -> None:
    """Bad input when two ``headers`` name the same column (``names`` their columns, compared
    by :func:`fold_header`); blank headers name none."""
    seen: dict[str, str] = {}
    for original, name in zip(headers, names, strict=True):
        key = fold_header(name)
        if not key:
            continue
        if key in seen:
            raise BadInputError(
                f"{file}: duplicate column {original!r} (also {seen[key]!r}); keep one of them"
            )
        seen[key] = original


def _unspaced(name: str) -> str:
    return re.sub(r"\s", "", fold_header(name))


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", fold_header(name))


def _stop_on_near_miss(unknown: list[str], absent: list[str], file: str) -> None:
    """Stop when a canonical column is absent and an unknown header looks like it (``LDL-C``,
    or a measurement's name with a unit or method beside it: ``sbp_mmhg``, ``HbA1c_NGSP``):
    loading on would silently drop a whole measurement."""
    for col in absent:
        target = _squash(col)
        for header in unknown:
            squashed = _squash(header)
            tokens = set(re.split(r"[^0-9a-z]+", fold_header(header)))
            if squashed and (
                squashed == target
                or difflib.SequenceMatcher(None, squashed, target).ratio() >= 0.8
                or (col in _MEASURED and set(col.split("_")) - {"cm", "kg"} <= tokens)
            ):
                raise BadInputError(
                    f"{file}: no column {col!r}, but {header!r} looks like it; rename it to "
                    f"{col!r} (docs/contract.md §Bundle) or rename it to something else if it is "
                    "another item"
                )


#: Measurements whose name, as one word of a header (``sbp`` in ``sbp_mmhg``), is a near miss
#: when the column is absent (BMI and eGFR are derived when absent: not among them).
_MEASURED = frozenset(
    c for c, kind in CHECKUP_COLUMNS.items() if kind == "float" or c in ("sbp", "dbp")
) - {"bmi", "egfr"}


def _mark_nul_rows(frame: pd.DataFrame, columns: list[str]) -> None:
    """Give rows with a NUL byte in a field a reject reason (the field would be cut short)."""
    if not columns or frame.empty:
        return
    texts = frame[columns].astype("string")
    has = texts.apply(lambda s: s.str.contains(_NUL_MARK, regex=False, na=False))
    if not has.to_numpy().any():
        return
    reason = frame.get(REJECT_REASON, pd.Series(None, index=frame.index, dtype=object)).copy()
    column = frame.get(REJECT_COLUMN, pd.Series(None, index=frame.index, dtype=object)).copy()
    rows = has.any(axis=1) & reason.isna()  # a row cut for its length keeps that reason
    reason[rows] = "NUL byte inside a field (a binary or damaged export?)"
    column[rows] = has.loc[rows].idxmax(axis=1)
    frame[REJECT_REASON] = reason
    frame[REJECT_COLUMN] = column
    for col in has.columns[has.any().to_numpy()]:  # the mark never reaches a stored value
        frame[col] = frame[col].where(~has[col], frame[col].str.replace(_NUL_MARK, "\\0"))


def find_table_files(bundle: Path, name: str) -> list[Path]:
    """The files that hold table ``name`` in a bundle folder (``NAME.csv`` / ``NAME.parquet``).

    Only regular files are read: a FIFO would hang the reader and a link to a device would fill
    memory, so either is bad input.
    """
    found = []
    # CHECKUPS.CSV as some systems write it: the name is matched ignoring case.
    names = sorted(p.name for p in bundle.iterdir()) if bundle.is_dir() else []
    for wanted in (f"{name}.csv", f"{name}.parquet"):
        same = [n for n in names if n.lower() == wanted]
        if len(same) > 1:
            raise BadInputError(
                f"{bundle}: {' and '.join(same)} are both table {name!r}; keep one of them"
            )
        p = bundle / (same[0] if same else wanted)
        if p.is_file():
            found.append(p)
        elif p.exists() or p.is_symlink():
            raise BadInputError(f"{p.name}: not a regular file (a FIFO, device or broken link?)")
    return found


def read_table(
    name: str, paths: list[Path], encoding: str | None = None, relative_to: Path | None = None
) -> RawTable:
    """Read one table from its files into canonical text columns with provenance."""
    columns = TABLES[name]
    frames, extras, encodings = [], [], {}
    for path in paths:
        cut: dict[int, int] = {}
        if path.suffix == ".parquet":
            frame = _read_parquet(path)
        else:
            frame, encodings[path.name], cut = _read_csv(path, encoding)
        frame.columns = canonical_headers(
            [str(c).strip().lstrip("\ufeff") for c in frame.columns], columns, path.name
        )
        missing = [c for c in REQUIRED[name] if c not in frame.columns]
        if missing and len(frame.columns) == 1 and re.search(r"[;\t|]", str(frame.columns[0])):
            raise BadInputError(
                f"{path.name}: one column only, its header holding ';', tab or '|': kenshin "
                "reads comma-separated files; export with commas (docs/contract.md §Bundle)"
            )
        if missing:
            raise BadInputError(
                f"{path.name}: missing required column {', '.join(repr(m) for m in missing)} "
                f"(table {name!r}, docs/contract.md §Bundle)"
            )
        unknown = [c for c in frame.columns if c not in columns]
        _stop_on_near_miss(unknown, [c for c in columns if c not in frame.columns], path.name)
        extras += [c for c in unknown if c not in extras]
        frame[SOURCE_FILE] = str(path.relative_to(relative_to) if relative_to else path.name)
        frame[SOURCE_ROW] = range(1, len(frame) + 1)
        if cut:
            _mark_long_rows(frame, cut)
        _mark_nul_rows(frame, [c for c in frame.columns if c not in (*PROVENANCE, *_VERDICT)])
        frames.append(frame)
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*columns, *PROVENANCE], dtype=object)
    )
    for col in columns:
        if col not in frame.columns:
            frame[col] = None
    return RawTable(name, frame, paths, extras, encodings)


def read_bundle(bundle: Path, encoding: str | None = None) -> dict[str, RawTable]:
    """Read all tables of a bundle: a folder, or one checkup file a reader takes (an XML
    document or an exchange ZIP archive). ``checkups`` (from CSV/Parquet/XML) is required."""
    _register_plugins()
    single = bundle.is_file() and bundle.suffix.lower() in CHECKUP_READERS
    if not bundle.is_dir() and not single:
        if bundle.exists():
            raise BadInputError(
                f"{bundle}: not a bundle folder, nor an XML document or ZIP archive of checkups"
            )
        raise BadInputError(f"{bundle}: bundle folder does not exist")
    tables = {}
    for name in TABLES:
        paths = [] if single else find_table_files(bundle, name)
        tables[name] = read_table(name, paths, encoding)
    # Each reader is called once with the whole folder, so it can parse its files in parallel.
    suffixes = {bundle.suffix.lower()} if single else {p.suffix.lower() for p in bundle.rglob("*")}
    wanted = {r: None for s, r in CHECKUP_READERS.items() if s in suffixes}
    xml_frames = [frame for reader in wanted for frame in reader(bundle)]
    if xml_frames:
        checkups = tables["checkups"]
        xml = pd.concat(xml_frames, ignore_index=True)
        if QUESTIONNAIRE_CODING not in xml:
            # The XML reader gives each answer in its fiscal year's coding (from the result OID).
            xml[QUESTIONNAIRE_CODING] = "by-year"
        for finalise in CHECKUP_FINALISERS:
            xml, notes = finalise(xml)
            checkups.notes.update(notes)
        parts = [checkups.frame] if checkups.sources else []
        checkups.frame = pd.concat([*parts, xml], ignore_index=True)
    if not tables["checkups"].sources and not xml_frames:
        raise BadInputError(f"{bundle}: no checkups.csv, checkups.parquet or checkup XML found")
    return tables
