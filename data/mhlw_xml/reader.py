"""Read MHLW checkup XML (HL7 CDA R2, 特定健診情報ファイル) into raw canonical checkup rows.

One document → one row of the canonical checkup columns (docs/contract.md §Checkups) as *raw
text*, exactly what a CSV export of the same checkup would carry, plus provenance and the
reader's own verdict:

- ``person_id`` = the card symbol (被保険者証記号, NFKC: full-width → half-width), number
  (番号) and branch (枝番), the ones present joined with ``-`` (``"12-000001"``, ``"12-000001-01"``).
  The insurer number (保険者番号) is not part of it: every member of one NHI shares it.
- ``exam_date`` = ``documentationOf/serviceEvent/effectiveTime`` (受診日), ``YYYYMMDD``.
- Body items of every section (01010 特定健診 first, then e.g. 01990 任意追加項目), walked
  recursively so grouped series and their ``entryRelationship`` children count, matched by
  analyte + identification field (:mod:`data.mhlw_xml.items`). An item given twice keeps its
  first value (01010 wins) and is counted; one left missing may be given in another section.
- Values: the PQ value of an observation is its measured value. A CD "H"/"L" beside it
  (codeSystem 2.16.840.1.113883.5.83) says the result is at or beyond the item's input range
  (入力最大値以上 / 入力最小値以下): it is kept as a flag (``<column>_above_range`` /
  ``_below_range`` in :data:`READER_FLAGS` and the notes), never taken for the value.
  ``negationInd="true"`` and ``nullFlavor`` → missing; free text (ST) is not read.
- Codes are read by their ``codeSystem``: the item table's result OID (or none) is the current
  list; an older list of the item (:data:`data.mhlw_xml.items.OLD_CODE_LISTS`, e.g. 採血時間
  1 "<10 h" / 2 "≥10 h") is mapped to the current codes where the meaning is recoverable and
  left missing (counted) where not; a code list the reader does not know → missing, counted.
  A questionnaire answer or a code never costs the document.
- BP: the "other" reading 9A755/9A765 when present, else the mean of the 1st and 2nd readings
  (9A751/9A752, 9A761/9A762) rounded half up, else whichever reading is there.
- Waist: measured (1601) > self-measured (1602) > self-reported (1603).
- TG: the fasting (0000) or random (1299) code, both → ``tg``; ``blood_draw_timing`` (9N141)
  says which. With both present, the one matching 9N141 wins (fasting when 9N141 is missing);
  a TG code that disagrees with 9N141 is kept and counted (``notes``).
- Glucose: 3D010 0000 → ``fpg``, 3D010 1299 → ``random_glucose``.
- The facility's judgements 9N501 (メタボリックシンドローム判定), 9N506 (保健指導レベル) and
  9N511 (医師の判断, only when coded) → ``facility_mets``, ``facility_guidance_level``,
  ``facility_doctor_judgement``.
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

Files that are not checkup documents are recognised by their root element and namespace and
counted in the notes (``non_checkup_files``), never as checkups: the archive's index (ix08
``index``) and summary (su08 ``summary``), settlement files (cc08 ``checkupClaim``, gc08
``healthGuidanceClaim``) and guidance documents (hg08: a ClinicalDocument of report category
21-25). One of them that cannot even be parsed is recognised by its name.

Bad documents become rows with ``_reject_reason`` (and ``_reject_column``), which validation
honours before any other check, so they land in the rejects table with their file name and are
counted in the row accounting: malformed XML, wrong namespace, an XML file of unknown kind, a
deletion request (report category 19), missing checkup date, a PQ value in the wrong unit, a
document larger than :data:`MAX_DOCUMENT_BYTES` (a file by its size, before it is opened; an
archive member by the bytes counted as it is inflated, or by a compression ratio over
:data:`MAX_COMPRESSION_RATIO`: a zip bomb), an archive member that cannot be read (encrypted,
unknown compression, bad CRC). Only regular files are opened (links followed): a FIFO, device,
socket or broken link named ``*.xml`` / ``*.zip`` is skipped unopened and listed in the notes
(``skipped_files``).
Unknown item codes do not reject: they are counted (``notes``). Duplicate documents (same
person, date and content, which includes the same file twice) are rejected by :func:`finalise`
across all files of a bundle.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import re
import stat
import unicodedata
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree

from data import normalise as nz
from data.columns import CHECKUP_COLUMNS
from data.mhlw_xml.items import (
    CURRENT_ANSWER_OIDS,
    CURRENT_CODES,
    LEGACY_ANSWER_OIDS,
    OID_INTERPRETATION,
    OLD_CODE_LISTS,
    RANGE_FLAGS,
    SECTION_TOKUTEI,
    SIGNIFICANT_IDENT,
    load_items,
    role_table,
)
from data.readers import READER_FLAGS, REJECT_COLUMN, REJECT_REASON, SOURCE_FILE, SOURCE_ROW
from data.workers import die_with_parent

HL7 = "urn:hl7-org:v3"
#: Namespace of the exchange files that are not CDA (ix08, su08, cc08, gc08).
MHLW_NS = "https://www.mhlw.go.jp/stf/seisakunitsuite/bunya/0000161103.html"
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

#: Per-row flags the reader found (``dbp_above_range;…``); kept in the frame for validation.
#: Hidden helper columns; :func:`finalise` uses and drops them.
DOC_KEY, NOTES, SOURCE_PATH = "_doc_key", "_xml_notes", "_source_path"
NON_CHECKUP = "_non_checkup"  # the kind of a file that is not a checkup document (ix08, cc08, …)
#: :data:`NON_CHECKUP` of a path that is not a regular file (FIFO, device …): never opened.
SKIPPED = "not_regular_file"
HELPERS = (DOC_KEY, NOTES, SOURCE_PATH, NON_CHECKUP)
CANONICAL = tuple(CHECKUP_COLUMNS)
OUT_COLUMNS = (
    *CANONICAL,
    SOURCE_FILE,
    SOURCE_ROW,
    REJECT_REASON,
    REJECT_COLUMN,
    READER_FLAGS,
    *HELPERS,
)
_IDX = {c: i for i, c in enumerate(OUT_COLUMNS)}

#: Root elements of the exchange archive's other files (any namespace) → their kind.
EXCHANGE_ROOTS = {
    "index": "ix08",  # 交換用基本情報
    "summary": "su08",  # 集計情報
    "checkupClaim": "cc08",  # 健診決済情報
    "healthGuidanceClaim": "gc08",  # 保健指導決済情報
}
#: Names of those files (and of guidance / settlement members: prefix g, c, p + 26 digits), to
#: recognise one that cannot be parsed.
_EXCHANGE_NAME = re.compile(
    r"(?:^|[/\\:])(?:(?P<ix>ix|su|cc|gc)\d{2}_V\d{2}|(?P<pre>[cgp])\d{26})\.xml$"
    r"|(?:^|[/\\:])(?P<dir>CLAIMS|GUIDANCE)[/\\][^/\\]+\.xml$",
    re.IGNORECASE,
)
_NAME_KIND = {"c": "cc08", "g": "hg08", "p": "gc08", "claims": "cc08", "guidance": "hg08"}
#: Report categories (報告区分, OID …1001) of 特定保健指導 documents (hg08).
GUIDANCE_CATEGORIES = frozenset({"21", "22", "23", "24", "25"})
DELETION_CATEGORY = "19"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
PARALLEL_MIN_DOCS = 1_500
BATCH = 500
#: Largest checkup document read, in bytes: a loose file (checked before it is opened) or an
#: archive member (counted while it is inflated). Real documents are a few kB; a larger one is
#: rejected with its reason and never held in memory whole. Parsing costs many times the
#: document's size in memory (measured: bench/README.md), so the cap also bounds the memory of
#: one parse in a worker.
MAX_DOCUMENT_BYTES = 8 * 2**20
#: Largest inflated ÷ compressed size of an archive member once it passes
#: :data:`RATIO_FLOOR` bytes. Checkup XML compresses 2-12:1; a zip bomb about 1000:1.
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR = 2**20
READ_CHUNK = 2**18
#: Non-regular paths named in the notes (all are counted).
SKIPPED_LISTED = 50


def _unit_norm(u: str | None) -> str:
    return (u or "").strip().lower()


#: An HL7 TS with a time of day (``20240415093000+0900``): the schema allows it for dates.
_TS_WITH_TIME = re.compile(r"^(\d{8})\d{2,6}(?:\.\d+)?(?:[+-]\d{4})?$")


def _ts_date(ts: str | None) -> str | None:
    """The ``YYYYMMDD`` of an HL7 timestamp (its time of day and zone dropped); other text as is
    (the date check rejects it with the reason)."""
    if ts and (m := _TS_WITH_TIME.match(ts.strip())):
        return m.group(1)
    return ts


def _birth_date(ts: str | None) -> str | None:
    """A birth date as :func:`_ts_date`; one given to the month (``197005``, allowed by HL7 TS)
    takes the 1st: the age at fiscal-year end (31 March) is the same for every day of it."""
    if ts and len(ts.strip()) == 6 and ts.strip().isdigit():
        return ts.strip() + "01"
    return _ts_date(ts)


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
    else:  # a code list we do not know: its codes mean nothing to us
        notes.append(f"unknown_code_system:{col}:{oid}")
        return None
    if is_legacy == want_legacy:
        return code
    mapping = _OLD_TO_NEW[col] if is_legacy else _NEW_TO_OLD[col]
    value = mapping.get(_int(code))
    notes.append(f"answer_version_converted:{col}")
    return str(value) if value is not None else code


def _old_code(role: str, code: str, mapping: dict[str, str | None], notes: list) -> str | None:
    new = mapping.get(code)
    notes.append(f"old_code_{'converted' if new is not None else 'unrecoverable'}:{role}")
    return new


def _interpret(role: str, code: str, oid: str | None, notes: list) -> str | None:
    """A coded value in the current code list of its item, read by its ``codeSystem``."""
    current = _CURRENT_OID.get(role)
    old = OLD_CODE_LISTS.get(role)
    if oid is None or oid == current or current is None:
        if old is not None and code not in CURRENT_CODES[role] and code in old[1]:
            # Only the old list has this code (e.g. 採血時間 1): its meaning is the old one.
            notes.append(f"old_code_under_current_code_system:{role}")
            return _old_code(role, code, old[1], notes)
        return code
    if old is not None and oid == old[0]:
        return _old_code(role, code, old[1], notes)
    notes.append(f"unknown_code_system:{role}:{oid}")
    return None


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


def _bp_sources(prefix: str, g) -> tuple[str, ...]:
    """The readings :func:`_bp` used for ``sbp``/``dbp`` (roles)."""
    if g(f"{prefix}_other") is not None:
        return (f"{prefix}_other",)
    return tuple(r for r in (f"{prefix}_1", f"{prefix}_2") if g(r) is not None)


def _reject_row(source: str, path: str, reason: str, column: str | None = None) -> tuple:
    row = [None] * len(OUT_COLUMNS)
    row[_IDX[SOURCE_FILE]], row[_IDX[SOURCE_ROW]], row[_IDX[SOURCE_PATH]] = source, 1, path
    row[_IDX[REJECT_REASON]], row[_IDX[REJECT_COLUMN]] = reason, column
    return tuple(row)


def _note_row(source: str, path: str, kind: str, note: str | None = None) -> tuple:
    """A file that is not a checkup document: counted by :func:`finalise`, then dropped."""
    row = [None] * len(OUT_COLUMNS)
    row[_IDX[SOURCE_FILE]], row[_IDX[SOURCE_ROW]], row[_IDX[SOURCE_PATH]] = source, 1, path
    row[_IDX[NON_CHECKUP]], row[_IDX[NOTES]] = kind, note
    return tuple(row)


def _exchange_kind_by_name(path: str) -> str | None:
    m = _EXCHANGE_NAME.search(path)
    if m is None:
        return None
    if m["ix"]:
        return m["ix"].lower() + "08"
    return _NAME_KIND[(m["pre"] or m["dir"]).lower()]


def _text_id(s: str | None) -> str | None:
    if s is None:
        return None
    s = unicodedata.normalize("NFKC", s).strip()
    return s or None


def read_checkup_xml(data: bytes | Path, source_name: str | None = None) -> dict:
    """Parse one CDA document into a raw canonical checkup row (a dict of :data:`OUT_COLUMNS`).

    A bad document gives a row whose ``_reject_reason`` says why (the caller's rejects); a file
    that is not a checkup document one whose ``_non_checkup`` names its kind.
    """
    if isinstance(data, Path):
        source_name = source_name or data.name
        path, data = str(data), read_regular_file(data)
    else:
        path = source_name or "<bytes>"
    return dict(zip(OUT_COLUMNS, parse_document(data, source_name or path, path), strict=True))


def _not_cda(root, source: str, path: str) -> tuple:
    """The row of a file whose root is not an HL7 ClinicalDocument."""
    tag = root.tag if isinstance(root.tag, str) else ""
    qn = etree.QName(root) if tag else None
    local = qn.localname if qn is not None else "?"
    ns = qn.namespace if qn is not None else None
    if local == "ClinicalDocument":
        return _reject_row(source, path, f"wrong XML namespace {ns or '(none)'} (expected {HL7})")
    kind = EXCHANGE_ROOTS.get(local)
    if kind is not None:
        note = None if ns == MHLW_NS else f"exchange_file_namespace:{kind}:{ns or '(none)'}"
        return _note_row(source, path, kind, note)
    return _reject_row(source, path, f"not a checkup document (root element <{local}>)")


def parse_document(data: bytes, source: str, path: str) -> tuple:
    """:func:`read_checkup_xml` as a tuple in :data:`OUT_COLUMNS` order (the fast path)."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        kind = _exchange_kind_by_name(path)
        if kind is not None:  # a broken index or claim is still not a checkup
            return _note_row(source, path, kind, f"unreadable_exchange_file:{kind}")
        msg = str(exc.msg if hasattr(exc, "msg") else exc).split("\n")[0][:160]
        return _reject_row(source, path, f"malformed XML: {msg}")
    if root.tag != T_DOC:
        return _not_cda(root, source, path)

    row: list = [None] * len(OUT_COLUMNS)
    notes: list[str] = []
    sections: list[tuple[bool, str | None, etree._Element]] = []
    symbol = number = branch = None
    for child in root:
        ctag = child.tag
        if ctag == T_CODE:
            cat = child.get("code")
            if cat in GUIDANCE_CATEGORIES:
                return _note_row(source, path, "hg08")
            if cat == DELETION_CATEGORY:
                return _reject_row(
                    source,
                    path,
                    "report category 19 (deletion request, OID …1001) is not a checkup result",
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
                            row[_IDX["birth_date"]] = _birth_date(p.get("value"))
        elif ctag == T_DOCOF:
            ev = child.find(T_EVENT)
            t = ev.find(T_TIME) if ev is not None else None
            if t is not None:
                value = t.get("value")
                if value is None and (low := t.find(T_LOW)) is not None:
                    value = low.get("value")
                row[_IDX["exam_date"]] = _ts_date(value)
        elif ctag == T_COMPONENT:
            body = child.find(T_BODY)
            if body is None:
                continue
            for comp in body:
                sec = comp.find(T_SECTION)
                if sec is None:
                    continue
                code = sec.find(T_CODE)
                sc = code.get("code") if code is not None else None
                sections.append((sc != SECTION_TOKUTEI, sc, sec))
    if len(sections) > 1:
        sections.sort(key=lambda s: s[0])  # 01010 first (stable): its values win
    parts = [p for p in (symbol, number, branch) if p]
    row[_IDX["person_id"]] = "-".join(parts) if parts else None
    row[_IDX[SOURCE_FILE]], row[_IDX[SOURCE_ROW]], row[_IDX[SOURCE_PATH]] = source, 1, path
    exam = row[_IDX["exam_date"]]
    fy = _fiscal_year(exam)

    found: dict[str, str | None] = {}
    found_oid: dict[str, str | None] = {}
    ranged: dict[str, str] = {}  # role → "above" / "below" its input range
    unit_flags: list[str] = []  # ``<column>_unit_unexpected``: the value was set aside
    error: tuple[str, str] | None = None
    for elsewhere, sc, section in sections:
        for obs in section.iter(T_OBS):
            code_el = None
            values = []
            for ch in obs:
                if ch.tag == T_VALUE:
                    values.append(ch)
                elif ch.tag == T_CODE and code_el is None:
                    code_el = ch
            code = code_el.get("code") if code_el is not None else None
            if code is None:
                continue  # a group parent (code nullFlavor="NA")
            kind, role, item, unit_norm, note = _CODE_INFO.get(code) or _code_info(code)
            if kind >= _LEGACY:
                notes.append(note)
                continue
            if found.get(role) is not None:  # a missing one may still be given elsewhere
                notes.append(f"repeated_item:{code[:5]}")
                continue
            if elsewhere:
                notes.append(f"read_from_section:{sc}")
            if not values or obs.get("negationInd") == "true":
                found[role] = None
                continue
            if kind == _PQ:
                pq = values[0] if len(values) == 1 else None
                if pq is None or pq.get("code") is not None:  # several values, or a flag
                    pq = None
                    for v in values:
                        flag = v.get("code")
                        if flag is not None:
                            where = RANGE_FLAGS.get(flag)
                            if where and v.get("codeSystem") in (OID_INTERPRETATION, None):
                                ranged[role] = where
                            else:
                                notes.append(f"unknown_value_flag:{code[:5]}:{flag}")
                        elif pq is None:
                            pq = v
                        elif v.get("value") is not None:
                            notes.append(f"extra_value_ignored:{code[:5]}")
                value = pq.get("value") if pq is not None else None
                if value is not None:
                    unit = pq.get("unit")
                    if unit != item.unit and _unit_norm(unit) != unit_norm:
                        # Another unit (or none) costs this value, not the checkup: the item
                        # is missing and flagged, the rest of the document loads.
                        unit_flags.append(f"{_ROLE_COLUMN.get(role, role)}_unit_unexpected")
                        notes.append(f"unit_unexpected:{code[:5]}:{unit}")
                        continue
                found[role] = value
            else:
                cv = values[0]
                if len(values) > 1 or cv.get("codeSystem") == OID_INTERPRETATION:
                    cv = next(
                        (
                            v
                            for v in values
                            if v.get("code") is not None
                            and v.get("codeSystem") != OID_INTERPRETATION
                        ),
                        cv,
                    )
                value = cv.get("code")
                found[role] = value
                if value is not None:
                    found_oid[role] = cv.get("codeSystem")

    # Codes by their code system (questionnaire answer versions are resolved below).
    for role, oid in found_oid.items():
        if role not in LEGACY_ANSWER_OIDS and (oid is not None or role in OLD_CODE_LISTS):
            found[role] = _interpret(role, found[role], oid, notes)

    # Resolve roles into canonical columns.
    for role, value in found.items():
        if role in _DIRECT:
            row[_IDX[role]] = value
    g = found.get
    waist_role = next((r for r in _WAIST if g(r) is not None), None)
    row[_IDX["waist_cm"]] = g(waist_role) if waist_role else None
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
    flags = list(unit_flags)
    if ranged:
        ranged_flags = _range_flags(
            ranged, row, g, waist_role, tg_role=f"tg_{kind}" if kind else None
        )
        notes.extend(ranged_flags)
        flags += ranged_flags
    row[_IDX[READER_FLAGS]] = ";".join(flags) if flags else None

    if exam is None:
        error = ("checkup date missing (documentationOf/serviceEvent/effectiveTime)", "exam_date")
    if error:
        row[_IDX[REJECT_REASON]], row[_IDX[REJECT_COLUMN]] = error
    digest = hashlib.blake2b(repr(row[: len(CANONICAL)]).encode(), digest_size=12)
    row[_IDX[DOC_KEY]] = digest.hexdigest()
    row[_IDX[NOTES]] = ";".join(notes) if notes else None
    return tuple(row)


def _range_flags(ranged: dict, row: list, g, waist_role: str | None, tg_role: str | None):
    """``<column>_above_range`` / ``_below_range`` for each column whose value came from a
    flagged reading, or that stayed missing although a reading of it was flagged."""
    used = {waist_role, tg_role, *_bp_sources("sbp", g), *_bp_sources("dbp", g)}
    used |= {"hba1c" if g("hba1c") is not None else "hba1c_jds"}
    flags = []
    for role, where in ranged.items():
        col = _ROLE_COLUMN.get(role, role)
        if role in used or role in _DIRECT or row[_IDX[col]] is None:
            flag = f"{col}_{where}_range"
            if flag not in flags:
                flags.append(flag)
    return flags


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
        _CURRENT_OID[role] = item.result_oid
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
_WAIST = ("waist_measured", "waist_self_measured", "waist_self_reported")
#: Column a variant role belongs to (for reject messages and flags).
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
    "q_guidance_wish_legacy": "q_guidance_received",
}
#: Result OID of the current code list of each mapped role (the item table's), filled by
#: :func:`_code_info` as roles are met.
_CURRENT_OID: dict[str, str | None] = {}


# ------------------------------------------------------------------------------------------
# Sources: a file, a folder, an exchange archive; batches parsed in parallel
# ------------------------------------------------------------------------------------------


def _is_xml_member(name: str) -> bool:
    """Every XML member is parsed: what a file is comes from its content, not its name."""
    return name.lower().endswith(".xml") and not name.endswith("/")


#: What a Mac leaves beside files it copies or zips (AppleDouble ``._NAME``, ``__MACOSX/``):
#: resource forks, not documents. Skipped and listed, never parsed as checkups.
MAC_METADATA = "macOS metadata (AppleDouble), not a document"


def _member_skipped(name: str) -> str | None:
    """Why an archive member is not parsed (None: it is): macOS metadata, a nested archive or
    another file (a PDF, a note) are listed with the reason; folders and the format's own
    schemas (``XSD/*.xsd``) are ``""``, not worth a line."""
    if name.endswith("/") or name.lower().endswith(".xsd"):
        return ""
    if _is_mac_metadata(name):
        return MAC_METADATA
    if _is_xml_member(name):
        return None
    if name.lower().endswith(".zip"):
        return "nested archive, not opened (the exchange format does not nest archives)"
    return "not an XML document"


def _is_mac_metadata(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return parts[-1].startswith("._") or "__MACOSX" in parts[:-1]


def _loose_source_name(path: Path) -> str:
    if path.parent.name in ("DATA", "CLAIMS", "GUIDANCE"):  # an unpacked exchange archive
        return f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
    return path.name


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _too_large(n: int | str, limit: int) -> str:
    got, cap = (n, _size(limit)) if isinstance(n, str) else (_size(n), _size(limit))
    if got == cap:  # just over: the rounded sizes would read the same
        got, cap = f"{n:,} bytes", f"{limit:,} bytes"
    return (
        f"document too large: {got} (limit {cap} per checkup document; real ones are a few "
        "kB) — not read"
    )


def _file_kind(mode: int) -> str:
    """What a non-regular file is, for the notes."""
    for test, kind in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _regular(path: Path) -> tuple[os.stat_result | None, str | None]:
    """``(stat, None)`` for a regular file (after following links), else ``(None, kind)``: what
    it is instead (FIFO, device, broken link …). Nothing is opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, "broken symbolic link"
    except OSError as exc:
        return None, f"cannot be examined ({exc.strerror or type(exc).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return None, _file_kind(st.st_mode)
    return st, None


def read_regular_file(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default
    :data:`MAX_DOCUMENT_BYTES`).

    Raises :class:`NotRegularFile` for a FIFO, device, socket or directory (never blocks on
    one: the file is opened non-blocking and checked again on the open descriptor, so a file
    swapped after listing is caught too) and :class:`DocumentTooLarge` beyond the limit (the
    size is checked before reading and the read stops one byte past it).
    """
    limit = MAX_DOCUMENT_BYTES if limit is None else limit
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(_file_kind(st.st_mode))
        if st.st_size > limit:
            raise DocumentTooLarge(_too_large(st.st_size, limit))
        data = f.read(limit + 1)  # a regular file's read returns what is there, up to that
        while len(data) <= limit and (more := f.read(limit + 1 - len(data))):
            data += more
    if len(data) > limit:
        raise DocumentTooLarge(_too_large(f"more than {_size(limit)}", limit))
    return data


class NotRegularFile(OSError):
    """A path that is not a regular file (FIFO, device, socket, directory)."""


class DocumentTooLarge(ValueError):
    """A document (file or archive member) beyond :data:`MAX_DOCUMENT_BYTES`."""


def read_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limit: int | None = None,
    max_ratio: float | None = None,
    ratio_floor: int | None = None,
) -> bytes:
    """One archive member, streamed: at most ``limit`` bytes (default
    :data:`MAX_DOCUMENT_BYTES`) uncompressed, and at most ``max_ratio``
    (:data:`MAX_COMPRESSION_RATIO`) times its compressed size once past ``ratio_floor``
    (:data:`RATIO_FLOOR`) bytes (a zip bomb).

    The bytes are counted as they are inflated (the header's declared size is checked first
    but not trusted); :class:`DocumentTooLarge` is raised as soon as either limit is passed, so
    a member is never inflated into memory whole.
    """
    limit = MAX_DOCUMENT_BYTES if limit is None else limit
    max_ratio = MAX_COMPRESSION_RATIO if max_ratio is None else max_ratio
    ratio_floor = RATIO_FLOOR if ratio_floor is None else ratio_floor
    if info.file_size > limit:
        raise DocumentTooLarge(_too_large(f"{_size(info.file_size)} declared", limit))
    ratio_cap = max(ratio_floor, max_ratio * max(info.compress_size, 1))
    chunks, n = [], 0
    with zf.open(info) as f:
        while chunk := f.read(READ_CHUNK):
            n += len(chunk)
            if n > limit:
                raise DocumentTooLarge(_too_large(f"more than {_size(limit)}", limit))
            if n > ratio_cap:
                raise DocumentTooLarge(
                    f"compression ratio over {max_ratio:g}:1 ({_size(n)} so far from "
                    f"{_size(info.compress_size)} compressed; a zip bomb?) — not read"
                )
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: Per-process cache of the open archive (workers parse many batches of one archive). Keyed by
#: process id too: a forked worker must never share the parent's file offset.
_ZIP_CACHE: dict[tuple[int, str], tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]] = {}


def _open_zip(path: str) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    key = (os.getpid(), path)
    hit = _ZIP_CACHE.get(key)
    if hit is None:
        for k in list(_ZIP_CACHE):
            if k[0] == key[0]:
                _ZIP_CACHE.pop(k)[0].close()
            else:
                del _ZIP_CACHE[k]  # inherited from the parent: not ours to close
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # swapped since it was listed
            raise NotRegularFile(_file_kind(st.st_mode))
        zf = zipfile.ZipFile(path)
        hit = _ZIP_CACHE[key] = (zf, zf.infolist())
    return hit


def _parse_batch(task: tuple[str | None, list]) -> list[tuple]:
    """Parse one batch: members (by index) of archive ``task[0]``, or loose files when None."""
    archive, items = task
    rows = []
    if archive is None:
        for name in items:
            p = Path(name)
            try:
                data = read_regular_file(name)
            except NotRegularFile as exc:  # swapped since it was listed: still never read
                rows.append(_skipped_row(_loose_source_name(p), name, str(exc)))
                continue
            except DocumentTooLarge as exc:
                rows.append(_reject_row(_loose_source_name(p), name, str(exc)))
                continue
            except OSError as exc:
                rows.append(_reject_row(_loose_source_name(p), name, f"unreadable file: {exc}"))
                continue
            rows.append(parse_document(data, _loose_source_name(p), name))
        return rows
    zname = Path(archive).name
    try:
        zf, infos = _open_zip(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [_reject_row(zname, archive, f"unreadable ZIP archive: {exc}")]
    for i in items:
        info = infos[i]
        source = f"{zname}:{info.filename}"
        where = f"{archive}:{info.filename}"
        try:
            data = read_member(zf, info)
        except DocumentTooLarge as exc:
            rows.append(_reject_row(source, where, str(exc)))
            continue
        except Exception as exc:  # any member that cannot be read rejects only itself
            reason = f"unreadable member: {type(exc).__name__}: {exc}"
            rows.append(_reject_row(source, where, reason[:300]))
            continue
        rows.append(parse_document(data, source, where))
    return rows


def _skipped_row(source: str, path: str, kind: str) -> tuple:
    """A path that is not a regular file: never opened, listed in the notes."""
    return _note_row(source, path, SKIPPED, kind)


def _tasks(path: Path) -> tuple[list[tuple[str | None, list]], int, list[tuple]]:
    """Batches to parse for ``path`` (file, folder or archive), their document count, and rows
    settled without parsing: an unreadable archive, an oversized file (rejects), a FIFO or
    device (skipped, never opened)."""
    if path.is_dir():
        files, archives, settled = [], [], []
        for p in sorted(path.rglob("*"), key=str):
            suffix = ".zip" if p.suffix == ".zip" else p.suffix.lower()
            if suffix not in (".xml", ".zip"):
                continue
            if _is_mac_metadata(p.relative_to(path).as_posix()):
                settled.append(_skipped_row(_loose_source_name(p), str(p), MAC_METADATA))
                continue
            st, kind = _regular(p)
            if st is None:
                if kind != "directory":  # a folder named *.xml is walked, not read
                    settled.append(_skipped_row(_loose_source_name(p), str(p), kind))
            elif suffix == ".zip":
                archives.append(p)
            elif st.st_size > MAX_DOCUMENT_BYTES:
                reason = _too_large(st.st_size, MAX_DOCUMENT_BYTES)
                settled.append(_reject_row(_loose_source_name(p), str(p), reason))
            else:
                files.append(str(p))
        tasks = [(None, files[i : i + BATCH]) for i in range(0, len(files), BATCH)]
        n = len(files)
        for a in sorted(archives):
            t, k, b = _tasks(a)
            tasks += t
            n += k
            settled += b
        return tasks, n, settled
    st, kind = _regular(path)
    if st is None:
        return [], 0, [_skipped_row(_loose_source_name(path), str(path), kind)]
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = [z.filename for z in zf.infolist()]
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            return [], 0, [_reject_row(path.name, str(path), f"unreadable ZIP archive: {exc}")]
        members, skipped = [], []
        for i, name in enumerate(names):
            kind = _member_skipped(name)
            if kind is None:
                members.append(i)
            elif kind:  # not a document: listed, never opened (folders and XSDs: not listed)
                skipped.append(_skipped_row(f"{path.name}/{name}", f"{path}/{name}", kind))
        tasks = [(str(path), members[i : i + BATCH]) for i in range(0, len(members), BATCH)]
        return tasks, len(members), skipped
    if st.st_size > MAX_DOCUMENT_BYTES:
        reason = _too_large(st.st_size, MAX_DOCUMENT_BYTES)
        return [], 0, [_reject_row(_loose_source_name(path), str(path), reason)]
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
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent) as pool:
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


#: Who parses the batches when set: ``mapper(fn, batches)`` → ``fn(batch)`` of each, in order
#: (``kenshin ingest --engine spark``: Spark tasks). Unset: this machine's processes (_run).
_BATCH_MAP: ContextVar[Callable | None] = ContextVar("xml_batch_map", default=None)


@contextmanager
def batch_map(mapper: Callable[[Callable, list], Iterable[list[tuple]]]) -> Iterator[None]:
    """Within the block, XML batches are parsed by ``mapper`` (same parser, same rows)."""
    token = _BATCH_MAP.set(mapper)
    try:
        yield
    finally:
        _BATCH_MAP.reset(token)


def read_xml_path(path: Path, workers: int | None = None) -> Iterator[pd.DataFrame]:
    """Raw checkup frames from a .xml file, a folder of them, or an exchange .zip archive.

    This is the :data:`data.readers.CHECKUP_READERS` entry; frames still carry the helper
    columns that :func:`finalise` turns into rejects and notes and then drops.
    """
    path = Path(path)
    tasks, n_docs, bad = _tasks(path)
    if bad:
        yield _frame(bad)
    mapper = _BATCH_MAP.get()
    batches = mapper(_parse_batch, tasks) if mapper and tasks else _run(tasks, n_docs, workers)
    for rows in batches:
        if rows:
            yield _frame(rows)


def finalise(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop and count the files that are not checkups, reject duplicate documents across all
    XML read, make file names unique, count notes.

    Registered in :data:`data.readers.CHECKUP_FINALISERS`; returns the checkup rows without
    the helper columns (possibly none) and ``{"xml": {...}}`` notes for the ingest manifest.
    """
    if DOC_KEY not in frame.columns:
        return frame, {}
    skipped = frame[NON_CHECKUP].eq(SKIPPED).fillna(False).to_numpy(dtype=bool)
    skipped_files = dict(
        zip(frame.loc[skipped, SOURCE_FILE], frame.loc[skipped, NOTES], strict=True)
    )
    n_skipped = int(skipped.sum())
    frame = frame.loc[~skipped].reset_index(drop=True)
    other = frame[NON_CHECKUP].notna()
    kinds = frame.loc[other, NON_CHECKUP].value_counts().sort_index()
    tokens = frame[NOTES].dropna().str.split(";").explode()
    frame = frame.loc[~other].reset_index(drop=True)
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
    is_unknown = tokens.str.startswith("unknown_item:")
    unknown = tokens[is_unknown].str.slice(len("unknown_item:")).value_counts().sort_index()
    notes = tokens[~is_unknown].value_counts().sort_index()
    report = {
        "documents": len(frame),
        "documents_rejected": int(frame[REJECT_REASON].notna().sum()),
        "duplicate_documents": int(dup.sum()),
        "non_checkup_files": {str(k): int(v) for k, v in kinds.items()},
        "unknown_item_codes": {str(k): int(v) for k, v in unknown.items()},
        "unknown_item_documents": int(tokens.index[is_unknown].nunique()),
        **{str(k): int(v) for k, v in notes.items()},
    }
    if skipped_files:  # FIFOs, devices, broken links: never opened
        report["skipped_files"] = {
            "count": n_skipped,
            "files": dict(list(sorted(skipped_files.items()))[:SKIPPED_LISTED]),
        }
    return frame.drop(columns=list(HELPERS)), {"xml": report}


def read_xml(paths: Path | Iterable[Path], workers: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Read XML checkups from files, folders or archives: one raw frame and the notes."""
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    frames = [f for p in paths for f in read_xml_path(p, workers)]
    if not frames:
        return _frame([]).drop(columns=list(HELPERS)), {}
    return finalise(pd.concat(frames, ignore_index=True))
