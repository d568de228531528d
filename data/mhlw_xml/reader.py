"""Read MHLW checkup XML (HL7 CDA R2, 特定健診情報ファイル) into raw canonical checkup rows.

One document → one row of the canonical checkup columns (spec §1.1) as *raw text*, exactly what
a CSV export of the same checkup would carry, plus provenance and the reader's own verdict:

- ``person_id`` = the card symbol (被保険者証記号, NFKC: full-width → half-width), number
  (番号) and branch (枝番), the ones present joined with ``-`` (``"12-000001"``, ``"12-000001-01"``).
  The insurer number (保険者番号) is not part of it: every member of one NHI shares it.
- ``exam_date`` = ``documentationOf/serviceEvent/effectiveTime`` (受診日), ``YYYYMMDD``.
- Body items of section 01010 (walked recursively, so grouped series and their
  ``entryRelationship`` children count), matched by analyte + identification field
  (:mod:`data.mhlw_xml.items`).
- BP: the "other" reading 9A755/9A765 when present, else the mean of the 1st and 2nd readings
  (9A751/9A752, 9A761/9A762) rounded half up, else whichever reading is there.
- Waist: measured (1601) > self-measured (1602) > self-reported (1603).
- TG: the fasting (0000) or random (1299) code, both → ``tg``; ``blood_draw_timing`` (9N141)
  says which. With both present, the one matching 9N141 wins (fasting when 9N141 is missing);
  a TG code that disagrees with 9N141 is kept and counted (``notes``).
- Glucose: 3D010 0000 → ``fpg``, 3D010 1299 → ``random_glucose``.
- Versioned answers follow the CSV convention of the row's fiscal year, because ingest
  harmonises by fiscal year (data.normalise): FY ≤ 2023 rows carry the FY2018-2023 codes,
  later rows the 2024 codes. The result OID tells the version of each answer (smoking 2003 vs
  24060, alcohol frequency 2005 vs 24040, amount 2006 vs 24050); an answer in the other version
  than its year's is converted (old → 2024 exactly; 2024 → old with the collapses of
  :func:`data.normalise.to_legacy_questionnaire`) and counted. Item 22: 9N806 (old question,
  wish for guidance) fills ``q_guidance_received`` only in FY ≤ 2023 rows, where ingest blanks
  it as it does for CSV; in later rows it is ignored and counted. 9N776 / 9N761 (pre-2018
  items) are recognised, ignored and counted.
- HbA1c: likewise, 3D046 (NGSP) is written as is from FY2013 on; JDS 3D045 is converted
  (+0.4, :func:`data.normalise.hba1c_jds_to_ngsp`) there. In FY ≤ 2012 rows the JDS value is
  what the CSV carries (ingest converts), so an NGSP value is converted back (−0.4, the exact
  inverse).
- ``nullFlavor`` → missing; ST items are ignored.

Bad documents become rows with ``_reject_reason`` (and ``_reject_column``), which validation
honours before any other check, so they land in the rejects table with their file name and are
counted in the row accounting: malformed XML, wrong namespace, not a checkup document, missing
checkup date, a PQ value in the wrong unit. Unknown item codes do not reject: they are counted
(``notes``). Duplicate documents (same person, date and content, which includes the same file
twice) are rejected by :func:`finalise` across all files of a bundle.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import re
import unicodedata
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree

from data import normalise as nz
from data.columns import CHECKUP_COLUMNS
from data.mhlw_xml.items import (
    CURRENT_ANSWER_OIDS,
    LEGACY_ANSWER_OIDS,
    SECTION_TOKUTEI,
    SIGNIFICANT_IDENT,
    load_items,
    role_table,
)
from data.readers import REJECT_COLUMN, REJECT_REASON, SOURCE_FILE, SOURCE_ROW

HL7 = "urn:hl7-org:v3"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
OID_INSURER = "1.2.392.200119.6.101"
OID_FACILITY = "1.2.392.200119.6.102"
OID_SYMBOL = "1.2.392.200119.6.204"
OID_NUMBER = "1.2.392.200119.6.205"
OID_BRANCH = "1.2.392.200119.6.211"


def _t(name: str) -> str:
    return f"{{{HL7}}}{name}"


T_DOC, T_OBS, T_CODE, T_VALUE = _t("ClinicalDocument"), _t("observation"), _t("code"), _t("value")
T_RECORD, T_ROLE, T_ID, T_PATIENT = _t("recordTarget"), _t("patientRole"), _t("id"), _t("patient")
T_GENDER, T_BIRTH, T_DOCOF = _t("administrativeGenderCode"), _t("birthTime"), _t("documentationOf")
T_EVENT, T_TIME, T_LOW = _t("serviceEvent"), _t("effectiveTime"), _t("low")
T_COMPONENT, T_BODY, T_SECTION = _t("component"), _t("structuredBody"), _t("section")

#: Hidden helper columns; :func:`finalise` uses and drops them.
DOC_KEY, NOTES, SOURCE_PATH = "_doc_key", "_xml_notes", "_source_path"
CANONICAL = tuple(CHECKUP_COLUMNS)
OUT_COLUMNS = (
    *CANONICAL,
    SOURCE_FILE,
    SOURCE_ROW,
    REJECT_REASON,
    REJECT_COLUMN,
    DOC_KEY,
    NOTES,
    SOURCE_PATH,
)
_IDX = {c: i for i, c in enumerate(OUT_COLUMNS)}

#: Index, summary and settlement files of an exchange archive: not checkup documents.
_NOT_CHECKUP_FILE = re.compile(r"^(ix|su|cc|gc)\d{2}_V\d{2}\.xml$", re.IGNORECASE)
#: Report categories (報告区分, OID …1001) that are not checkup results.
_NOT_CHECKUP_CODES = {"19", "21", "22", "23", "24", "25"}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
PARALLEL_MIN_DOCS = 1_500
BATCH = 500


def _unit_norm(u: str | None) -> str:
    return (u or "").strip().lower()


def _fiscal_year(ts: str | None) -> int | None:
    if not ts or len(ts) < 8 or not ts[:8].isdigit():
        return None
    y, m = int(ts[:4]), int(ts[4:6])
    return y if m >= 4 else y - 1


_LEGACY_FY = nz.LAST_LEGACY_QUESTIONNAIRE_FY
_JDS_FY = nz.LAST_JDS_HBA1C_FY
# The conversion tables of data.normalise, so XML and CSV paths cannot drift apart.
_OLD_TO_NEW = nz._LEGACY_TO_CANONICAL
_NEW_TO_OLD = nz._CANONICAL_TO_LEGACY


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _versioned_answer(col: str, code: str | None, oid: str | None, fy: int | None, notes: list):
    """The answer code a CSV export of fiscal year ``fy`` carries (see module doc)."""
    if code is None or fy is None:
        return code
    want_legacy = fy <= _LEGACY_FY
    if oid == LEGACY_ANSWER_OIDS[col]:
        is_legacy = True
    elif oid == CURRENT_ANSWER_OIDS[col] or oid is None:
        is_legacy = want_legacy if oid is None else False
    else:
        notes.append(f"unexpected_answer_oid:{col}:{oid}")
        return code
    if is_legacy == want_legacy:
        return code
    mapping = _OLD_TO_NEW[col] if is_legacy else _NEW_TO_OLD[col]
    value = mapping.get(_int(code))
    notes.append(f"answer_version_converted:{col}")
    return str(value) if value is not None else code


def _hba1c(ngsp: str | None, jds: str | None, fy: int | None, notes: list) -> str | None:
    """HbA1c as a CSV export of fiscal year ``fy`` carries it (JDS up to FY2012, then NGSP)."""
    want_jds = fy is not None and fy <= _JDS_FY
    have, other = (jds, ngsp) if want_jds else (ngsp, jds)
    if have is not None or other is None:
        return have
    try:
        x = float(other)
    except ValueError:
        return other
    notes.append("hba1c_jds_ngsp_converted")
    conv = nz.hba1c_ngsp_to_jds(x) if want_jds else nz.hba1c_jds_to_ngsp(x)
    return f"{conv:.1f}"


def _bp(other: str | None, first: str | None, second: str | None) -> str | None:
    if other is not None:
        return other
    if first is not None and second is not None:
        try:
            return str(int(np.floor((float(first) + float(second)) / 2 + 0.5)))
        except ValueError:
            return first
    return first if first is not None else second


def _reject_row(source: str, path: str, reason: str, column: str | None = None) -> tuple:
    row = [None] * len(OUT_COLUMNS)
    row[_IDX[SOURCE_FILE]], row[_IDX[SOURCE_ROW]], row[_IDX[SOURCE_PATH]] = source, 1, path
    row[_IDX[REJECT_REASON]], row[_IDX[REJECT_COLUMN]] = reason, column
    return tuple(row)


def _text_id(s: str | None) -> str | None:
    if s is None:
        return None
    s = unicodedata.normalize("NFKC", s).strip()
    return s or None


def read_checkup_xml(data: bytes | Path, source_name: str | None = None) -> dict:
    """Parse one CDA document into a raw canonical checkup row (a dict of :data:`OUT_COLUMNS`).

    A bad document gives a row whose ``_reject_reason`` says why (the caller's rejects).
    """
    if isinstance(data, Path):
        source_name = source_name or data.name
        path, data = str(data), data.read_bytes()
    else:
        path = source_name or "<bytes>"
    return dict(zip(OUT_COLUMNS, parse_document(data, source_name or path, path), strict=True))


def parse_document(data: bytes, source: str, path: str) -> tuple:
    """:func:`read_checkup_xml` as a tuple in :data:`OUT_COLUMNS` order (the fast path)."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        msg = str(exc.msg if hasattr(exc, "msg") else exc).split("\n")[0][:160]
        return _reject_row(source, path, f"malformed XML: {msg}")
    tag = root.tag if isinstance(root.tag, str) else ""
    if tag != T_DOC:
        qn = etree.QName(root) if tag else None
        if qn is not None and qn.localname == "ClinicalDocument":
            ns = qn.namespace or "(none)"
            return _reject_row(source, path, f"wrong XML namespace {ns} (expected {HL7})")
        name = qn.localname if qn is not None else "?"
        return _reject_row(source, path, f"not a checkup document (root element <{name}>)")

    row: list = [None] * len(OUT_COLUMNS)
    notes: list[str] = []
    sections = []
    symbol = number = branch = None
    for child in root:
        ctag = child.tag
        if ctag == T_CODE:
            cat = child.get("code")
            if cat in _NOT_CHECKUP_CODES:
                return _reject_row(
                    source, path, f"report category {cat} (OID …1001) is not a checkup result"
                )
        elif ctag == T_RECORD:
            prole = child.find(T_ROLE)
            if prole is None:
                continue
            for el in prole:
                if el.tag == T_ID:
                    r = el.get("root")
                    if r == OID_SYMBOL:
                        symbol = _text_id(el.get("extension"))
                    elif r == OID_NUMBER:
                        number = _text_id(el.get("extension"))
                    elif r == OID_BRANCH:
                        branch = _text_id(el.get("extension"))
                elif el.tag == T_PATIENT:
                    for p in el:
                        if p.tag == T_GENDER:
                            row[_IDX["sex"]] = p.get("code")
                        elif p.tag == T_BIRTH:
                            row[_IDX["birth_date"]] = p.get("value")
        elif ctag == T_DOCOF:
            ev = child.find(T_EVENT)
            t = ev.find(T_TIME) if ev is not None else None
            if t is not None:
                value = t.get("value")
                if value is None and (low := t.find(T_LOW)) is not None:
                    value = low.get("value")
                row[_IDX["exam_date"]] = value
        elif ctag == T_COMPONENT:
            body = child.find(T_BODY)
            if body is None:
                continue
            for comp in body:
                sec = comp.find(T_SECTION)
                if sec is None:
                    continue
                code = sec.find(T_CODE)
                if code is not None and code.get("code") == SECTION_TOKUTEI:
                    sections.append(sec)
                else:
                    n = sum(1 for _ in sec.iter(T_OBS))
                    notes.extend(["other_section_item"] * n)
    parts = [p for p in (symbol, number, branch) if p]
    row[_IDX["person_id"]] = "-".join(parts) if parts else None
    row[_IDX[SOURCE_FILE]], row[_IDX[SOURCE_ROW]], row[_IDX[SOURCE_PATH]] = source, 1, path
    exam = row[_IDX["exam_date"]]
    fy = _fiscal_year(exam)

    found: dict[str, str | None] = {}
    found_oid: dict[str, str | None] = {}
    error: tuple[str, str] | None = None
    for section in sections:
        for obs in section.iter(T_OBS):
            code_el = value_el = None
            for ch in obs:
                if ch.tag == T_CODE and code_el is None:
                    code_el = ch
                elif ch.tag == T_VALUE and value_el is None:
                    value_el = ch
            code = code_el.get("code") if code_el is not None else None
            if code is None:
                continue  # a group parent (code nullFlavor="NA")
            kind, role, item, unit_norm, note = _CODE_INFO.get(code) or _code_info(code)
            if kind >= _LEGACY:
                notes.append(note)
                continue
            if role in found:
                notes.append(f"repeated_item:{code[:5]}")
                continue
            if value_el is None or value_el.get("nullFlavor") is not None:
                found[role] = None
                continue
            if kind == _PQ:
                value = value_el.get("value")
                unit = value_el.get("unit")
                if value is not None and unit != item.unit and _unit_norm(unit) != unit_norm:
                    if not error:
                        col = _ROLE_COLUMN.get(role, role)
                        error = (
                            f"{code} ({item.name}): unit {unit!r} is not the expected "
                            f"{item.unit!r}",
                            col,
                        )
                found[role] = value
            else:
                found[role] = value_el.get("code")
                found_oid[role] = value_el.get("codeSystem")

    # Resolve roles into canonical columns.
    for role, value in found.items():
        if role in _DIRECT:
            row[_IDX[role]] = value
    g = found.get
    row[_IDX["waist_cm"]] = next(
        (
            g(r)
            for r in ("waist_measured", "waist_self_measured", "waist_self_reported")
            if g(r) is not None
        ),
        None,
    )
    row[_IDX["sbp"]] = _bp(g("sbp_other"), g("sbp_1"), g("sbp_2"))
    row[_IDX["dbp"]] = _bp(g("dbp_other"), g("dbp_1"), g("dbp_2"))
    timing = g("blood_draw_timing")
    fasting, random_ = g("tg_fasting"), g("tg_random")
    if fasting is not None and random_ is not None:
        tg, kind = (random_, "random") if timing in ("3", "4") else (fasting, "fasting")
    elif fasting is not None:
        tg, kind = fasting, "fasting"
    else:
        tg, kind = random_, "random" if random_ is not None else None
    if kind and timing in ("2", "3", "4") and (kind == "fasting") != (timing == "2"):
        notes.append("tg_code_disagrees_with_9N141")
    row[_IDX["tg"]] = tg
    row[_IDX["hba1c"]] = _hba1c(g("hba1c"), g("hba1c_jds"), fy, notes)
    for col in LEGACY_ANSWER_OIDS:
        if g(col) is not None:
            row[_IDX[col]] = _versioned_answer(col, g(col), found_oid.get(col), fy, notes)
    wish = g("q_guidance_wish_legacy")
    if fy is not None and fy <= _LEGACY_FY:
        if row[_IDX["q_guidance_received"]] is None:
            row[_IDX["q_guidance_received"]] = wish
    elif wish is not None:
        notes.append("legacy_item_ignored:9N806")

    if exam is None:
        error = ("checkup date missing (documentationOf/serviceEvent/effectiveTime)", "exam_date")
    if error:
        row[_IDX[REJECT_REASON]], row[_IDX[REJECT_COLUMN]] = error
    digest = hashlib.blake2b(repr(row[: len(CANONICAL)]).encode(), digest_size=12)
    row[_IDX[DOC_KEY]] = digest.hexdigest()
    row[_IDX[NOTES]] = ";".join(notes) if notes else None
    return tuple(row)


_PQ, _CODED, _LEGACY, _NOT_MAPPED, _UNKNOWN = range(5)
#: Per-process memo of :func:`_code_info` by full code (codes repeat across documents).
_CODE_INFO: dict[str, tuple] = {}


def _code_info(code: str) -> tuple:
    """(kind, role, item, normalised unit, note) of an item code, looked up by analyte (5) +
    identification (4): the memo only saves repeating that lookup."""
    ident = code[5:9]
    key = (code[:5], ident if ident in SIGNIFICANT_IDENT else "0000")
    hit = role_table().get(key)
    if hit is None:
        known = key in load_items()
        info = (
            (_NOT_MAPPED, None, None, "", "known_item_not_mapped")
            if known
            else (_UNKNOWN, None, None, "", f"unknown_item:{code}")
        )
    elif hit[0] == "legacy_ignored":
        info = (_LEGACY, None, None, "", f"legacy_item_ignored:{code[:5]}")
    else:
        role, item = hit
        kind = _PQ if item.xml_type == "PQ" else _CODED
        info = (kind, role, item, _unit_norm(item.unit), None)
    if len(_CODE_INFO) < 10_000:
        _CODE_INFO[code] = info
    return info


#: Roles that are canonical columns themselves (copied as they are).
_DIRECT = frozenset(
    c
    for c in CHECKUP_COLUMNS
    if c not in ("waist_cm", "sbp", "dbp", "tg", "hba1c")
    and c not in LEGACY_ANSWER_OIDS
    and c != "person_id"
)
#: Column a variant role belongs to (for reject messages).
_ROLE_COLUMN = {
    "waist_measured": "waist_cm",
    "waist_self_measured": "waist_cm",
    "waist_self_reported": "waist_cm",
    "sbp_other": "sbp",
    "sbp_1": "sbp",
    "sbp_2": "sbp",
    "dbp_other": "dbp",
    "dbp_1": "dbp",
    "dbp_2": "dbp",
    "tg_fasting": "tg",
    "tg_random": "tg",
    "hba1c_jds": "hba1c",
}


# ------------------------------------------------------------------------------------------
# Sources: a file, a folder, an exchange archive; batches parsed in parallel
# ------------------------------------------------------------------------------------------


def _is_data_member(name: str) -> bool:
    if not name.lower().endswith(".xml") or name.endswith("/"):
        return False
    base = name.rsplit("/", 1)[-1]
    return not _NOT_CHECKUP_FILE.match(base) and "/CLAIMS/" not in f"/{name}"


def _loose_source_name(path: Path) -> str:
    if path.parent.name == "DATA":
        return f"{path.parent.parent.name}/DATA/{path.name}"
    return path.name


#: Per-process cache of the open archive (workers parse many batches of one archive). Keyed by
#: process id too: a forked worker must never share the parent's file offset.
_ZIP_CACHE: dict[tuple[int, str], zipfile.ZipFile] = {}


def _open_zip(path: str) -> zipfile.ZipFile:
    key = (os.getpid(), path)
    zf = _ZIP_CACHE.get(key)
    if zf is None:
        for k in list(_ZIP_CACHE):
            if k[0] == key[0]:
                _ZIP_CACHE.pop(k).close()
            else:
                del _ZIP_CACHE[k]  # inherited from the parent: not ours to close
        zf = _ZIP_CACHE[key] = zipfile.ZipFile(path)
    return zf


def _parse_batch(task: tuple[str | None, list[str]]) -> list[tuple]:
    """Parse one batch: members of archive ``task[0]``, or loose files when it is None."""
    archive, names = task
    rows = []
    if archive is None:
        for name in names:
            p = Path(name)
            try:
                data = p.read_bytes()
            except OSError as exc:
                rows.append(_reject_row(_loose_source_name(p), name, f"unreadable file: {exc}"))
                continue
            rows.append(parse_document(data, _loose_source_name(p), name))
        return rows
    zf = _open_zip(archive)
    zname = Path(archive).name
    for member in names:
        source = f"{zname}:{member}"
        try:
            data = zf.read(member)
        except (zipfile.BadZipFile, OSError, ValueError, zlib.error) as exc:
            rows.append(_reject_row(source, f"{archive}:{member}", f"unreadable member: {exc}"))
            continue
        rows.append(parse_document(data, source, f"{archive}:{member}"))
    return rows


def _tasks(path: Path) -> tuple[list[tuple[str | None, list[str]]], int, list[tuple]]:
    """Batches to parse for ``path`` (file, folder or archive), their document count, and rows
    for whole-source failures (an unreadable archive)."""
    if path.is_dir():
        files = sorted(
            str(p)
            for p in path.rglob("*")
            if p.suffix.lower() == ".xml" and not _NOT_CHECKUP_FILE.match(p.name)
        )
        archives = sorted(p for p in path.rglob("*.zip"))
        tasks = [(None, files[i : i + BATCH]) for i in range(0, len(files), BATCH)]
        n, bad = len(files), []
        for a in archives:
            t, k, b = _tasks(a)
            tasks += t
            n += k
            bad += b
        return tasks, n, bad
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [i.filename for i in zf.infolist() if _is_data_member(i.filename)]
        except (zipfile.BadZipFile, OSError) as exc:
            return [], 0, [_reject_row(path.name, str(path), f"unreadable ZIP archive: {exc}")]
        tasks = [(str(path), members[i : i + BATCH]) for i in range(0, len(members), BATCH)]
        return tasks, len(members), []
    if _NOT_CHECKUP_FILE.match(path.name):
        return [], 0, []
    return [(None, [str(path)])], 1, []


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run(tasks: list, n_docs: int, workers: int | None) -> Iterator[list[tuple]]:
    workers = _workers() if workers is None else workers
    if workers <= 1 or n_docs < PARALLEL_MIN_DOCS or len(tasks) < 2:
        for task in tasks:
            yield _parse_batch(task)
        return
    # fork: workers start at once and need nothing pickled but the batches. (forkserver/spawn
    # would re-import the caller's main module, which breaks unguarded scripts.) Pages a
    # worker inherits from a large caller are shared copy-on-write, not copied.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        pending: deque = deque()
        it = iter(tasks)
        for task in it:  # keep a bounded number of batches in flight: memory stays flat
            pending.append(pool.submit(_parse_batch, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(OUT_COLUMNS))
    frame[SOURCE_ROW] = frame[SOURCE_ROW].astype("int64")
    return frame


def read_xml_path(path: Path, workers: int | None = None) -> Iterator[pd.DataFrame]:
    """Raw checkup frames from a .xml file, a folder of them, or an exchange .zip archive.

    This is the :data:`data.readers.CHECKUP_READERS` entry; frames still carry the helper
    columns that :func:`finalise` turns into rejects and notes and then drops.
    """
    path = Path(path)
    tasks, n_docs, bad = _tasks(path)
    if bad:
        yield _frame(bad)
    for rows in _run(tasks, n_docs, workers):
        if rows:
            yield _frame(rows)


def finalise(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Reject duplicate documents across all XML read, make file names unique, count notes.

    Registered in :data:`data.readers.CHECKUP_FINALISERS`; returns the frame without the
    helper columns and ``{"xml": {...}}`` notes for the ingest manifest.
    """
    if DOC_KEY not in frame.columns:
        return frame, {}
    frame = frame.reset_index(drop=True)
    reason = frame[REJECT_REASON].copy()
    ok = frame[DOC_KEY].notna() & reason.isna()
    keys = frame.loc[ok, DOC_KEY]
    dup = keys.duplicated(keep="first")
    if dup.any():
        first_file = frame.loc[ok].groupby(DOC_KEY, sort=False)[SOURCE_FILE].transform("first")
        idx = dup[dup].index
        reason.loc[idx] = (
            "duplicate document: same person, checkup date and content as "
            + first_file.loc[idx].astype(str)
        )
        frame[REJECT_REASON] = reason
        frame.loc[idx, REJECT_COLUMN] = None
    # Two different files with the same short name: fall back to their full paths.
    clash = frame.duplicated([SOURCE_FILE, SOURCE_ROW], keep=False)
    if clash.any():
        frame.loc[clash, SOURCE_FILE] = frame.loc[clash, SOURCE_PATH]
        # A ZIP may even hold two members of one name: number the repeats.
        nth = frame.groupby([SOURCE_FILE, SOURCE_ROW], sort=False).cumcount()
        again = nth > 0
        frame.loc[again, SOURCE_FILE] = (
            frame.loc[again, SOURCE_FILE] + "#" + (nth[again] + 1).astype(str)
        )
    notes = Counter()
    unknown = Counter()
    for text in frame[NOTES].dropna():
        for token in text.split(";"):
            if token.startswith("unknown_item:"):
                unknown[token.split(":", 1)[1]] += 1
            else:
                notes[token] += 1
    rejected = frame[REJECT_REASON].notna()
    report = {
        "documents": len(frame),
        "documents_rejected": int(rejected.sum()),
        "duplicate_documents": int(dup.sum()),
        "unknown_item_codes": dict(sorted(unknown.items())),
        "unknown_item_documents": int(frame[NOTES].str.contains("unknown_item:", na=False).sum()),
        **dict(sorted(notes.items())),
    }
    return frame.drop(columns=[DOC_KEY, NOTES, SOURCE_PATH]), {"xml": report}


def read_xml(paths: Path | Iterable[Path], workers: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Read XML checkups from files, folders or archives: one raw frame and the notes."""
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    frames = [f for p in paths for f in read_xml_path(p, workers)]
    if not frames:
        return _frame([]).drop(columns=[DOC_KEY, NOTES, SOURCE_PATH]), {}
    return finalise(pd.concat(frames, ignore_index=True))
