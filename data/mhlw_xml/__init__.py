"""MHLW electronic standard checkup XML (特定健診情報ファイル, HL7 CDA R2): read and write.

- :mod:`data.mhlw_xml.items`: the V4 item table and the (analyte, identification) → column map;
- :mod:`data.mhlw_xml.reader`: documents, folders and exchange archives → raw checkup rows;
- :mod:`data.mhlw_xml.writer`: checkups → documents and exchange archives (schema-valid).

Where the published schema (``shared/spec/mhlw/xsd``) disagrees with domain.md §6, the writer
follows the schema (the reader tolerates both):

- ``observation`` allows only ``id``, ``code``, ``value``, ``entryRelationship``: no
  ``interpretationCode``, ``methodCode``, ``referenceRange`` or ``author`` (domain.md §6.4/§6.7
  show them; the physician's name must travel as item 9N516, not as an observation author);
- ``participant`` (自治体独自管理番号) holds only ``associatedEntity`` (+ ``typeCode``): no
  ``functionCode`` or ``time`` as in the §6.7 sample;
- the ix08 index is in the ``urn:hl7-org:v3`` namespace (not the mhlw.go.jp URL of §6.2) and
  has sender, receiver, creationTime, serviceEventType, totalRecordCount only (no
  interactionType); the receiver id's default root is 1.2.392.200119.6.105 (§6.2: …101);
- an observation ``code``'s default codeSystem is 1.2.392.100495.100.1051; the writer always
  states 1.2.392.200119.6.1005 (the item table's OID) explicitly;
- ``author/time`` and an organisation ``name`` are required; ``addr`` needs a ``postalCode``
  of the form ``NNN-NNNN``.

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
