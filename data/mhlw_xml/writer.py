"""Write checkups as MHLW checkup XML (HL7 CDA R2) and exchange archives (送付用ファイルアーカイブ).

One document per checkup, valid against the official ``hc08_V08.xsd``; one ZIP archive per
fiscal year:

```
{sender10}_{receiver8}_{yyyymmdd}{split1}_{type1}.zip
└── {same name}/ ix08_V08.xml, [su08_V08.xml,] DATA/h{sender10}{yyyymmdd}{split1}{type1}{serial6}.xml,
                 XSD/… (the official V08 set)
```

The index (ix08, 交換用基本情報) and the optional summary (su08, 集計情報) are in the MHLW
exchange namespace (:data:`MHLW_NS`), valid against ``ix08_V08.xsd`` / ``su08_V08.xsd``. The
summary is written only on request (:attr:`ArchiveSpec.summary`): it belongs with settlement
files, which a synthetic ward does not have, so its amounts are 0.

``yyyymmdd`` is the archive's creation date, set to 31 May after the fiscal year (so archives of
different years never share a name, and output is reproducible). The XSDs are copied from
the shipped official set (:func:`data.mhlw_xml.items.xsd_dir`) at write time.

Header encoding of ``person_id`` (reversible, see :mod:`data.mhlw_xml.reader`): split at ``-``;
one part → card number only; two → symbol, number; three or more → symbol, the middle parts
(joined with ``-``) as number, the last part as branch (枝番). The symbol is written in
full-width characters (as many insurers' systems do), the reader folds it back with NFKC.

Values: what a CSV export of the same fiscal year carries. ``checkups`` is taken in the canonical
coding (2024 questionnaire, NGSP HbA1c, as :func:`data.synth.generate` returns it); rows of
FY ≤ 2023 are written with the FY2018-2023 answer codes and result OIDs (smoking …2003,
alcohol …2005 / …2006, item 22 as 9N806), rows of FY ≤ 2012 with JDS HbA1c (3D045). Pass
``legacy_coded=True`` when the frame already carries those codes. Missing values are left out,
except the mandatory items (height, weight, waist, BP, medication items, smoking), which are
written with ``nullFlavor="NI"`` as facilities do. Uric acid goes in section 01990 (任意追加項目,
an insurer's optional item); the facility's 9N501 / 9N506 judgements are written when the row
has them (9N511 is free text in the item table: the writer does not invent a coded form).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import shutil
import unicodedata
import zipfile
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from data import normalise as nz
from data.columns import CHECKUP_COLUMNS, QUESTIONNAIRE_COLUMNS
from data.mhlw_xml.items import (
    CURRENT_ANSWER_OIDS,
    ITEM_CODE_OID,
    LEGACY_ANSWER_OIDS,
    SECTION_TOKUTEI,
    writer_codes,
    xsd_dir,
)
from data.workers import die_with_parent

INDEX_NAME = "ix08_V08.xml"
SUMMARY_NAME = "su08_V08.xml"
#: Namespace of the index, summary and settlement files (not CDA).
MHLW_NS = "https://www.mhlw.go.jp/stf/seisakunitsuite/bunya/0000161103.html"
INTERACTION_TYPE = "6"  # 種別 (別表1): 健診機関 → 保険者
DEFAULT_INSURER = "00139999"  # fictitious 8-digit insurer number (保険者番号)
DEFAULT_SENDER = "1399999999"  # fictitious 10-digit facility number (機関番号)
FACILITIES = ("1311100011", "1311100029", "1311100037", "1311100045")
_FACILITY_NAMES = {
    "1399999999": "架空健診センター",
    "1311100011": "架空内科クリニック",
    "1311100029": "架空すぎなみ医院",
    "1311100037": "架空中央病院",
    "1311100045": "架空健康クリニック",
}
SERVICE_TYPE = "1"  # 実施区分 1 = 特定健診
MAX_DOCS_PER_ARCHIVE = 999_999


def split_person_id(person_id: str) -> tuple[str | None, str, str | None]:
    """(symbol, number, branch) for the header; the reader's join gives ``person_id`` back."""
    parts = str(person_id).split("-")
    if any(not p for p in parts) or unicodedata.normalize("NFKC", person_id) != person_id:
        raise ValueError(f"person_id {person_id!r} cannot be encoded reversibly in the header")
    if len(parts) == 1:
        return None, parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1], None
    return parts[0], "-".join(parts[1:-1]), parts[-1]


def to_fullwidth(s: str) -> str:
    """ASCII letters/digits → full-width (全角), as card symbols often come."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


# ------------------------------------------------------------------------------------------
# One document
# ------------------------------------------------------------------------------------------

_MANDATORY = (
    "height_cm",
    "weight_kg",
    "waist_cm",
    "sbp",
    "dbp",
    "q_med_bp",
    "q_med_glucose",
    "q_med_lipid",
    "q_smoking",
)


def _obs(code: str, value_xml: str, display: str, children: str = "") -> str:
    return (
        f'<observation classCode="OBS" moodCode="EVN"><code code="{code}" '
        f'codeSystem="{ITEM_CODE_OID}" displayName={quoteattr(display)}/>'
        f"{value_xml}{children}</observation>"
    )


def _pq(value: str | None, unit: str | None) -> str:
    if value is None:
        return '<value xsi:type="PQ" nullFlavor="NI"/>'
    return f'<value xsi:type="PQ" value="{value}" unit={quoteattr(unit or "")}/>'


def _cd(code: str | None, oid: str | None, xsi: str = "CD") -> str:
    if code is None:
        return f'<value xsi:type="{xsi}" nullFlavor="NI"/>'
    return f'<value xsi:type="{xsi}" code="{code}" codeSystem="{oid}"/>'


def _entry(role: str, value: str | None, oid: str | None = None) -> str:
    item = writer_codes()[role]
    if item.xml_type == "PQ":
        v = _pq(value, item.unit)
    else:
        v = _cd(value, oid or item.result_oid, item.xml_type)
    return f"<entry>{_obs(item.code, v, item.name)}</entry>"


#: Canonical column → writer role, in the order of the MHLW table.
_BODY_ORDER = (
    ("height_cm", "height_cm"),
    ("weight_kg", "weight_kg"),
    ("bmi", "bmi"),
    ("waist_cm", "waist_measured"),
    ("sbp", "sbp_other"),
    ("dbp", "dbp_other"),
    ("blood_draw_timing", "blood_draw_timing"),
    ("tg", None),  # fasting or random code by blood_draw_timing
    ("hdl", "hdl"),
    ("ldl", "ldl"),
    ("non_hdl", "non_hdl"),
    ("ast", "ast"),
    ("alt", "alt"),
    ("ggt", "ggt"),
    ("fpg", "fpg"),
    ("random_glucose", "random_glucose"),
    ("hba1c", None),  # NGSP, or JDS in FY <= 2012
    ("urine_glucose", "urine_glucose"),
    ("urine_protein", "urine_protein"),
)
#: The facility's judgements (医師の判断), after the detailed items as in the item table.
_JUDGEMENTS = (
    ("facility_mets", "facility_mets"),
    ("facility_guidance_level", "facility_guidance_level"),
)
#: Section 01990 (任意追加項目): items an insurer adds to 特定健診.
_OPTIONAL_ORDER = (("uric_acid", "uric_acid"),)


def _group(members: str, reason_code: str | None = None, reason: str | None = None) -> str:
    rson = ""
    if reason_code:
        rson = (
            '<entryRelationship typeCode="RSON">'
            + _obs(reason_code, f'<value xsi:type="ST">{escape(reason or "")}</value>', "実施理由")
            + "</entryRelationship>"
        )
    return (
        '<entry><observation classCode="OBS" moodCode="EVN"><code nullFlavor="NA"/>'
        f"{members}{rson}</observation></entry>"
    )


def _comp(role: str, value: str) -> str:
    item = writer_codes()[role]
    return (
        '<entryRelationship typeCode="COMP">'
        + _obs(item.code, _pq(value, item.unit), item.name)
        + "</entryRelationship>"
    )


def write_checkup_xml(
    row: Mapping[str, str | None],
    contact: Mapping[str, str | None] | None = None,
    *,
    insurer: str = DEFAULT_INSURER,
    facility: str = DEFAULT_SENDER,
    created: str = "20250531",
    fullwidth_symbol: bool = True,
) -> bytes:
    """One CDA document (UTF-8 bytes) for one checkup.

    ``row`` holds the canonical columns as text in the coding a CSV export of its fiscal year
    carries (``exam_date``/``birth_date`` as ``YYYYMMDD``); missing = None. ``contact`` may give
    ``name_kana``, ``postal_code`` and ``address`` for the header.
    """
    g = row.get
    symbol, number, branch = split_person_id(str(g("person_id")))
    exam = str(g("exam_date"))
    fy = int(exam[:4]) - (1 if int(exam[4:6]) < 4 else 0)
    legacy_q = fy <= nz.LAST_LEGACY_QUESTIONNAIRE_FY
    fac_name = escape(_FACILITY_NAMES.get(facility, "架空健診機関"))
    org = (
        f'<representedOrganization><id root="1.2.392.200119.6.102" extension="{facility}"/>'
        f"<name>{fac_name}</name></representedOrganization>"
    )
    ids = [f'<id root="1.2.392.200119.6.101" extension="{insurer}"/>']
    if symbol:
        sym = to_fullwidth(symbol) if fullwidth_symbol else symbol
        ids.append(f'<id root="1.2.392.200119.6.204" extension={quoteattr(sym)}/>')
    ids.append(f'<id root="1.2.392.200119.6.205" extension={quoteattr(number)}/>')
    if branch:
        ids.append(f'<id root="1.2.392.200119.6.211" extension={quoteattr(branch)}/>')
    addr = name = ""
    if contact:
        digits = "".join(
            ch
            for ch in unicodedata.normalize("NFKC", contact.get("postal_code") or "")
            if ch.isdigit()
        )
        if len(digits) == 7:
            addr = (
                f"<addr><postalCode>{digits[:3]}-{digits[3:]}</postalCode>"
                f"{escape(contact.get('address') or '')}</addr>"
            )
        kana = contact.get("name_kana") or contact.get("name")
        if kana:
            name = f"<name>{escape(kana)}</name>"
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ClinicalDocument xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="urn:hl7-org:v3 ../XSD/hc08_V08.xsd">'
        '<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>'
        '<id nullFlavor="NI"/>'
        '<code code="10" codeSystem="1.2.392.200119.6.1001"/>'
        f'<effectiveTime value="{created}"/>'
        '<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>'
        f"<recordTarget><patientRole>{''.join(ids)}{addr}<patient>{name}"
        f'<administrativeGenderCode code="{g("sex")}" codeSystem="1.2.392.200119.6.1104"/>'
        f'<birthTime value="{g("birth_date")}"/></patient></patientRole></recordTarget>'
        f'<author><time value="{created}"/><assignedAuthor>'
        f'<id root="1.2.392.200119.6.102" extension="{facility}"/>{org}</assignedAuthor></author>'
        "<custodian><assignedCustodian><representedCustodianOrganization>"
        f'<id root="1.2.392.200119.6.102" extension="{facility}"/>'
        "</representedCustodianOrganization></assignedCustodian></custodian>"
        '<documentationOf><serviceEvent><code code="010" codeSystem="1.2.392.200119.6.1002"/>'
        f'<effectiveTime value="{exam}"/><performer typeCode="PRF"><assignedEntity>'
        f'<id root="1.2.392.200119.6.102" extension="{facility}"/>{org}'
        "</assignedEntity></performer></serviceEvent></documentationOf>"
        "<component><structuredBody><component><section>"
        f'<code code="{SECTION_TOKUTEI}" codeSystem="1.2.392.200119.6.1010"/>'
        "<title>特定健診検査・問診結果</title>"
    )
    body: list[str] = []
    for col, role in _BODY_ORDER:
        v = g(col)
        if v is None and col not in _MANDATORY:
            continue
        if col == "tg":
            role = "tg_random" if g("blood_draw_timing") in ("3", "4") else "tg_fasting"
        elif col == "hba1c":
            role = "hba1c_jds" if fy <= nz.LAST_JDS_HBA1C_FY else "hba1c"
        body.append(_entry(role, v))
    cr, egfr = g("creatinine"), g("egfr")
    if cr is not None or egfr is not None:
        members = (_comp("creatinine", cr) if cr is not None else "") + (
            _comp("egfr", egfr) if egfr is not None else ""
        )
        body.append(_group(members, "3C015161002399949", "詳細な健診の基準に該当"))
    hb = g("hemoglobin")
    if hb is not None:
        body.append(_group(_comp("hemoglobin", hb), "2A020161001930149", "詳細な健診の基準に該当"))
    for col, role in _JUDGEMENTS:
        if (v := g(col)) is not None:
            body.append(_entry(role, v))
    for col in QUESTIONNAIRE_COLUMNS:
        v = g(col)
        if v is None and col not in _MANDATORY:
            continue
        if col in LEGACY_ANSWER_OIDS:
            oid = LEGACY_ANSWER_OIDS[col] if legacy_q else CURRENT_ANSWER_OIDS[col]
            body.append(_entry(col, v, oid))
        elif col == "q_guidance_received" and legacy_q:
            body.append(_entry("q_guidance_wish_legacy", v))
        else:
            body.append(_entry(col, v))
    optional = [_entry(role, g(col)) for col, role in _OPTIONAL_ORDER if g(col) is not None]
    if optional:
        body.append(
            "</section></component><component><section>"
            '<code code="01990" codeSystem="1.2.392.200119.6.1010"/>'
            "<title>任意追加項目</title>" + "".join(optional)
        )
    tail = "</section></component></structuredBody></component></ClinicalDocument>\n"
    return (head + "".join(body) + tail).encode("utf-8")


# ------------------------------------------------------------------------------------------
# Frames → text rows (the CSV form of each fiscal year)
# ------------------------------------------------------------------------------------------


def _fmt_float(x: float) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return repr(float(x))


def export_text(checkups: pd.DataFrame, legacy_coded: bool = False) -> pd.DataFrame:
    """Canonical checkups → text columns as a CSV export of each fiscal year carries them."""
    df = checkups.copy()
    exam = pd.to_datetime(df["exam_date"])
    df["fiscal_year"] = nz.fiscal_year(exam)
    if not legacy_coded:
        df = nz.to_legacy_questionnaire(df)
        old = (df["fiscal_year"] <= nz.LAST_JDS_HBA1C_FY).to_numpy(dtype=bool)
        if old.any():
            h = pd.to_numeric(df["hba1c"], errors="coerce").astype("float64")
            df["hba1c"] = h.mask(old, nz.hba1c_ngsp_to_jds(h))
    out = pd.DataFrame(index=df.index)
    out["fiscal_year"] = df["fiscal_year"].astype("int64")
    for col, kind in CHECKUP_COLUMNS.items():
        s = df[col] if col in df else pd.Series(None, index=df.index, dtype=object)
        if kind == "date":
            d = pd.to_datetime(s)
            out[col] = d.dt.strftime("%Y%m%d").where(d.notna(), None)
        elif kind == "str":
            out[col] = s.astype(object).where(s.notna(), None)
        elif kind == "int" or col in ("sbp", "dbp"):
            v = pd.to_numeric(s, errors="coerce")
            txt = v.round().astype("Int64").astype("string")
            out[col] = txt.astype(object).where(v.notna(), None)
        else:
            v = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
            out[col] = np.array([_fmt_float(x) for x in v], dtype=object)
    return out


# ------------------------------------------------------------------------------------------
# Exchange archives
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveSpec:
    """Sender (機関番号, 10 digits) and receiver (保険者番号, 8 digits) of the archives."""

    sender: str = DEFAULT_SENDER
    insurer: str = DEFAULT_INSURER
    summary: bool = False  # also write su08_V08.xml (集計情報; amounts 0: no settlement here)


def _exchange_head(element: str, xsd: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{element} xmlns="{MHLW_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{MHLW_NS} XSD/{xsd}">'
    )


def _index_xml(spec: ArchiveSpec, created: str, n: int) -> bytes:
    """交換用基本情報 (ix08): facility (…102) → insurer (…101), 実施区分 1 特定健診."""
    return (
        _exchange_head("index", "ix08_V08.xsd") + f'<interactionType code="{INTERACTION_TYPE}"/>'
        f'<creationTime value="{created}"/>'
        f'<sender><id root="1.2.392.200119.6.102" extension="{spec.sender}"/></sender>'
        f'<receiver><id root="1.2.392.200119.6.101" extension="{spec.insurer}"/></receiver>'
        f'<serviceEventType code="{SERVICE_TYPE}"/>'
        f'<totalRecordCount value="{n}"/>'
        "</index>\n"
    ).encode()


def _summary_xml(n: int) -> bytes:
    """集計情報 (su08): ``n`` subjects; cost, payment and claim totals 0 (no settlement)."""
    amounts = "".join(
        f'<{e} value="0"/>' for e in ("totalCostAmount", "totalPaymentAmount", "totalClaimAmount")
    )
    return (
        _exchange_head("summary", "su08_V08.xsd")
        + f'<serviceEventType code="{SERVICE_TYPE}"/><totalSubjectCount value="{n}"/>'
        + amounts
        + "</summary>\n"
    ).encode()


def _write_archive(args) -> Path:
    rows, contacts, out_dir, spec, created, split, compresslevel = args
    root = f"{spec.sender}_{spec.insurer}_{created}{split}_{SERVICE_TYPE}"
    path = Path(out_dir) / f"{root}.zip"
    tmp = path.with_suffix(".zip.part")
    with zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
    ) as zf:
        zf.writestr(f"{root}/{INDEX_NAME}", _index_xml(spec, created, len(rows)))
        if spec.summary:
            zf.writestr(f"{root}/{SUMMARY_NAME}", _summary_xml(len(rows)))
        for serial, row in enumerate(rows, start=1):
            pid = row["person_id"]
            facility = FACILITIES[sum(map(ord, str(pid))) % len(FACILITIES)]
            doc = write_checkup_xml(
                row, contacts.get(pid), insurer=spec.insurer, facility=facility, created=created
            )
            name = f"h{spec.sender}{created}{split}{SERVICE_TYPE}{serial:06d}.xml"
            zf.writestr(f"{root}/DATA/{name}", doc)
        xsd = xsd_dir()
        for f in sorted(xsd.rglob("*.xsd")):
            zf.write(f, f"{root}/XSD/{f.relative_to(xsd).as_posix()}")
    tmp.replace(path)
    return path


def archive_fiscal_year(path: Path) -> int:
    """Fiscal year of an archive written here (its creation date is 31 May after the year)."""
    return int(Path(path).stem.split("_")[2][:4]) - 1


def write_exchange_archive(
    checkups: pd.DataFrame,
    contacts: pd.DataFrame | None,
    out_dir: Path,
    *,
    spec: ArchiveSpec | None = None,
    legacy_coded: bool = False,
    workers: int = 2,
    compresslevel: int = 1,
) -> list[Path]:
    """Write ``checkups`` as exchange archives, one per fiscal year; return their paths."""
    spec = spec or ArchiveSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = export_text(checkups, legacy_coded=legacy_coded)
    text = text.sort_values(["fiscal_year", "exam_date", "person_id"], kind="stable")
    con: dict[str, dict] = {}
    if contacts is not None and len(contacts):
        cols = [
            c for c in ("person_id", "name", "name_kana", "postal_code", "address") if c in contacts
        ]
        c = contacts[cols].astype(object).where(contacts[cols].notna(), None)
        con = {r["person_id"]: r for r in c.to_dict("records")}
    jobs = []
    cols = list(CHECKUP_COLUMNS)
    for fy, part in text.groupby("fiscal_year", sort=True):
        created = date(int(fy) + 1, 5, 31).strftime("%Y%m%d")
        records = part[cols].to_dict("records")
        for i in range(0, len(records), MAX_DOCS_PER_ARCHIVE):
            chunk = records[i : i + MAX_DOCS_PER_ARCHIVE]
            split = i // MAX_DOCS_PER_ARCHIVE + 1
            wanted = {r["person_id"] for r in chunk}
            sub = {p: con[p] for p in wanted if p in con}
            jobs.append((chunk, sub, str(out_dir), spec, created, split, compresslevel))
    if workers <= 1 or len(jobs) < 2:
        return [_write_archive(j) for j in jobs]
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    # workers die with the command (a kill -9 of it leaves no writer behind)
    with ProcessPoolExecutor(
        min(workers, len(jobs)), mp_context=ctx, initializer=die_with_parent
    ) as pool:
        return list(pool.map(_write_archive, jobs))


def copy_xsd(dest: Path) -> Path:
    """Copy the official V08 schema set (hc08 … su08, coreschemas) into ``dest``."""
    shutil.copytree(xsd_dir(), dest, dirs_exist_ok=True)
    return dest
