"""MHLW electronic standard checkup XML (特定健診情報ファイル, HL7 CDA R2): read and write.

- :mod:`data.mhlw_xml.items`: the V4 item table and the (analyte, identification) → column map;
- :mod:`data.mhlw_xml.reader`: documents, folders and exchange archives → raw checkup rows;
- :mod:`data.mhlw_xml.writer`: checkups → documents and exchange archives (schema-valid).

The schemas are the official V08 set (``data/reference/mhlw/xsd``, a byte copy of the MHLW
distribution, see data/reference/README.md): hc08 for checkup documents, ix08 / su08 for the
archive's index and summary in the MHLW exchange namespace, cc08 / gc08 / co08 for settlement and
hg08 for guidance. The reader recognises all of them and reads only checkups; the writer writes hc08
documents, the ix08 index and, on request, an su08 summary, each valid against its schema. An
earlier reduced copy of hc08 / ix08 was not official (it forbade ``interpretationCode``,
``methodCode``, ``referenceRange``, ``observation/author``, ``participant/functionCode`` and put the
index in ``urn:hl7-org:v3``); nothing here depends on those restrictions any more.

Importing this package registers the reader in :data:`data.readers.CHECKUP_READERS` (``.xml``,
``.zip``) and its duplicate/notes pass in :data:`data.readers.CHECKUP_FINALISERS`.
"""

from __future__ import annotations

from data.mhlw_xml.items import load_items, mapped_codes
from data.mhlw_xml.reader import finalise, read_checkup_xml, read_xml, read_xml_path
from data.mhlw_xml.writer import (
    ArchiveSpec,
    archive_fiscal_year,
    export_text,
    split_person_id,
    write_checkup_xml,
    write_exchange_archive,
)
from data.readers import CHECKUP_FINALISERS, CHECKUP_READERS

__all__ = [
    "ArchiveSpec",
    "archive_fiscal_year",
    "export_text",
    "finalise",
    "load_items",
    "mapped_codes",
    "read_checkup_xml",
    "read_xml",
    "read_xml_path",
    "split_person_id",
    "write_checkup_xml",
    "write_exchange_archive",
]

CHECKUP_READERS.setdefault(".xml", read_xml_path)
CHECKUP_READERS.setdefault(".zip", read_xml_path)
if finalise not in CHECKUP_FINALISERS:
    CHECKUP_FINALISERS.append(finalise)
