"""The MHLW item table (XML用特定健診項目情報, V4) and how its items map to canonical columns.

Items are matched by the analyte part of the code (its first 5 characters) plus the 4-character
identification field (characters 6-9), never by all 17 characters: specimen, method and
result-type digits vary by laboratory (docs/domain.md §XML format). The table's 同一性項目コード groups
variants of one quantity (9A750 = SBP 1st / 2nd / other reading). Where the identification field
matters it is part of the key (1299 random vs 0000 fasting TG/glucose, 1601/1602/1603 waist
method, 1616/1610 detailed-item target/reason); any other identification field of a known analyte
falls back to the analyte's ``0000`` entry.

The table is read once (cached) from the shipped copy in ``data/reference/mhlw/`` (a byte copy
of the MHLW files, see data/reference/README.md; ``KENSHIN_MHLW_SPEC_DIR`` overrides the folder).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ITEM_TABLE = "tokutei_kenshin_items_v4.csv"
ITEM_CODE_OID = "1.2.392.200119.6.1005"
#: Section of 特定健診 results (OID 1.2.392.200119.6.1010).
SECTION_TOKUTEI = "01010"

#: Identification fields that change what an item is; any other falls back to "0000".
SIGNIFICANT_IDENT = ("1299", "1601", "1602", "1603", "1607", "1608", "1610", "1616")


def spec_dir() -> Path:
    """Item table and ``xsd/``: ``KENSHIN_MHLW_SPEC_DIR``, else the copy in ``data/reference``.

    The shipped files are byte copies of the MHLW files (data/reference/README.md; a test checks
    them against the originals when those are beside the checkout).
    """
    env = os.environ.get("KENSHIN_MHLW_SPEC_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "reference" / "mhlw"


def xsd_dir() -> Path:
    return spec_dir() / "xsd"


@dataclass(frozen=True)
class Item:
    """One row of the item table (or a legacy item the V4 table no longer lists)."""

    code: str  # a 17-character code of the table
    name: str
    xml_type: str  # PQ, CD, CO, ST
    unit: str | None  # XML用単位 (PQ only)
    identity: str  # 同一性項目コード
    result_oid: str | None  # 結果コードOID (coded items)
    legacy: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return item_key(self.code)


def item_key(code: str) -> tuple[str, str]:
    """(analyte 5 chars, identification 4 chars or "0000") of a 17-character item code."""
    ident = code[5:9]
    return code[:5], ident if ident in SIGNIFICANT_IDENT else "0000"


#: Canonical target of each mapped (analyte, identification). Values are a "role": the
#: canonical column, or a variant that the reader resolves (BP readings, waist methods,
#: fasting/random TG, JDS HbA1c, old questionnaire items).
ROLES: dict[tuple[str, str], str] = {
    ("9N001", "0000"): "height_cm",
    ("9N006", "0000"): "weight_kg",
    ("9N011", "0000"): "bmi",
    ("9N016", "1601"): "waist_measured",
    ("9N016", "1602"): "waist_self_measured",
    ("9N016", "1603"): "waist_self_reported",
    ("9A755", "0000"): "sbp_other",
    ("9A751", "0000"): "sbp_1",
    ("9A752", "0000"): "sbp_2",
    ("9A765", "0000"): "dbp_other",
    ("9A761", "0000"): "dbp_1",
    ("9A762", "0000"): "dbp_2",
    ("9N141", "0000"): "blood_draw_timing",
    ("3F015", "0000"): "tg_fasting",
    ("3F015", "1299"): "tg_random",
    ("3F070", "0000"): "hdl",
    ("3F077", "0000"): "ldl",
    ("3F069", "0000"): "non_hdl",
    ("3B035", "0000"): "ast",
    ("3B045", "0000"): "alt",
    ("3B090", "0000"): "ggt",
    ("3D010", "0000"): "fpg",
    ("3D010", "1299"): "random_glucose",
    ("3D046", "0000"): "hba1c",
    ("3D045", "0000"): "hba1c_jds",  # legacy (pre-FY2013) JDS HbA1c
    ("1A020", "0000"): "urine_glucose",
    ("1A010", "0000"): "urine_protein",
    ("3C015", "0000"): "creatinine",
    ("8A065", "0000"): "egfr",
    ("3C020", "0000"): "uric_acid",
    ("2A030", "0000"): "hemoglobin",
    # The facility's own judgements (医師の判断), kept beside kenshin's for comparison.
    ("9N501", "0000"): "facility_mets",  # メタボリックシンドローム判定 (OID …1008)
    ("9N506", "0000"): "facility_guidance_level",  # 保健指導レベル (OID …3001)
    ("9N511", "0000"): "facility_doctor_judgement",  # 医師の診断(判定): ST; read only if coded
    # Standard questionnaire (標準的な質問票) items 1-22.
    ("9N701", "0000"): "q_med_bp",
    ("9N706", "0000"): "q_med_glucose",
    ("9N711", "0000"): "q_med_lipid",
    ("9N716", "0000"): "q_hist_stroke",
    ("9N721", "0000"): "q_hist_heart",
    ("9N726", "0000"): "q_hist_kidney",
    ("9N731", "0000"): "q_anemia",
    ("9N736", "0000"): "q_smoking",
    ("9N741", "0000"): "q_weight_gain",
    ("9N746", "0000"): "q_exercise",
    ("9N751", "0000"): "q_walking",
    ("9N756", "0000"): "q_walk_fast",
    ("9N872", "0000"): "q_chewing",
    ("9N766", "0000"): "q_eating_speed",
    ("9N771", "0000"): "q_late_dinner",
    ("9N782", "0000"): "q_snacks",
    ("9N781", "0000"): "q_skip_breakfast",
    ("9N786", "0000"): "q_alcohol_freq",
    ("9N791", "0000"): "q_alcohol_amount",
    ("9N796", "0000"): "q_sleep",
    ("9N801", "0000"): "q_intention",
    ("9N808", "0000"): "q_guidance_received",
    # Older questionnaire items (docs/domain.md §Questionnaire versions).
    ("9N806", "0000"): "q_guidance_wish_legacy",  # old item 22: wish for health guidance
    ("9N776", "0000"): "legacy_ignored",  # pre-2018 late-night meals (yes/no)
    ("9N761", "0000"): "legacy_ignored",  # pre-2018 weight change ±3 kg in a year
}

#: Items the V4 table no longer lists but older files carry
#: (docs/domain.md §Questionnaire versions, §XML format).
LEGACY_ITEMS = (
    Item("3D045000001906202", "HbA1c(JDS値)", "PQ", "%", "3D045", None, legacy=True),
    Item("9N806000000000011", "保健指導の希望", "CD", None, "9N806", "1.2.392.200119.6.2003", True),
    Item("9N776000000000011", "夜食・間食", "CD", None, "9N776", "1.2.392.200119.6.2003", True),
    Item("9N761000000000011", "体重変化(±3kg)", "CD", None, "9N761", "1.2.392.200119.6.2003", True),
)

OID = "1.2.392.200119.6."
#: HL7 ObservationInterpretation: a CD value "H"/"L" beside the PQ value marks a result at or
#: beyond the item's input range (入力最大値以上 / 入力最小値以下; since FY2013 the measured value
#: is given as well). Not the facility's reference-range flag, which is ``interpretationCode``.
OID_INTERPRETATION = "2.16.840.1.113883.5.83"
RANGE_FLAGS = {"H": "above", "L": "below"}

#: Older code lists of coded items. Codes are read by their ``codeSystem``: role → (old result
#: OID, {old code: current code, or None where the old meaning cannot be recovered}). A code
#: that the current list lacks but the old one has is read by the old list whatever its OID.
OLD_CODE_LISTS: dict[str, tuple[str, dict[str, str | None]]] = {
    # 採血時間(食後) before the 3.5 h split: 1 食後10時間未満, 2 食後10時間以上 (…2201, inferred
    # from the code-list names 随時血糖食後時間区分 / …区分2); now …2202: 2 ≥10 h, 3 3.5-10 h,
    # 4 <3.5 h. "Under 10 h" is 3 or 4: not recoverable, so missing.
    "blood_draw_timing": (OID + "2201", {"2": "2", "1": None}),
}
#: Current codes of the items that have an old list (the rest are checked by validation).
CURRENT_CODES: dict[str, frozenset[str]] = {"blood_draw_timing": frozenset({"2", "3", "4"})}

#: Result-code OIDs of old questionnaire answer versions (FY2018-2023 coding), by item.
LEGACY_ANSWER_OIDS: dict[str, str] = {
    "q_smoking": OID + "2003",  # 1 yes, 2 no  (2024: 24060, 1 yes / 2 quit / 3 no)
    "q_alcohol_freq": OID + "2005",  # 1 daily, 2 sometimes, 3 hardly (2024: 24040, 1-8)
    "q_alcohol_amount": OID + "2006",  # <1, 1-2, 2-3, >=3 合 (2024: 24050, 1-5)
}
CURRENT_ANSWER_OIDS: dict[str, str] = {
    "q_smoking": OID + "24060",
    "q_alcohol_freq": OID + "24040",
    "q_alcohol_amount": OID + "24050",
}


def _clean(s: str) -> str | None:
    s = s.strip()
    return s or None


@lru_cache(maxsize=1)
def load_items() -> dict[tuple[str, str], Item]:
    """The item table keyed by (analyte, identification); first listed code per key wins."""
    path = spec_dir() / ITEM_TABLE
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    header = [h.replace("\n", "") for h in rows[1]]  # line 2, one heading has a newline
    ix = {name: header.index(name) for name in header if name}
    items: dict[tuple[str, str], Item] = {}
    for row in rows[2:]:
        row = row + [""] * (len(header) - len(row))
        code = row[ix["項目コード（17桁）"]].strip()
        if len(code) != 17:
            continue
        item = Item(
            code=code,
            name=row[ix["項目名"]].strip(),
            xml_type=row[ix["XMLデータ型"]].strip(),
            unit=_clean(row[ix["XML用単位"]]),
            identity=row[ix["同一性項目コード"]].strip() or code[:5],
            result_oid=_clean(row[ix["結果コードOID"]]),
        )
        items.setdefault(item.key, item)
    for item in LEGACY_ITEMS:
        items.setdefault(item.key, item)
    missing = [k for k in ROLES if k not in items]
    if missing:  # pragma: no cover - the table and ROLES disagree
        raise RuntimeError(f"item table {path} lacks mapped items {missing}")
    return items


@lru_cache(maxsize=1)
def role_table() -> dict[tuple[str, str], tuple[str, Item]]:
    """(analyte, identification) → (role, item) for every mapped item."""
    items = load_items()
    return {k: (role, items[k]) for k, role in ROLES.items()}


@lru_cache(maxsize=1)
def writer_codes() -> dict[str, Item]:
    """Role → the item (17-character code, unit) the writer uses for it."""
    items = load_items()
    return {role: items[k] for k, role in ROLES.items() if role != "legacy_ignored"}


def mapped_codes() -> list[tuple[str, str, str, str]]:
    """(analyte, identification, role, table code) of every mapped item, for documentation."""
    return [(k[0], k[1], role, item.code) for k, (role, item) in role_table().items()]
