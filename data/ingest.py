"""Ingest a bundle into the store: read → validate → pseudonymise → reconcile → write.

Row accounting per table: ``read = loaded + rejected + merged_duplicates``. It is computed here,
checked here (a mismatch is a bug and raises), printed by the CLI and stored in the manifest.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data import store as store_mod
from data.columns import CHECKUP_COLUMNS, TABLES
from data.errors import BadInputError
from data.files import require_writable
from data.judgements import facility_agreement
from data.normalise import QUESTIONNAIRE_CODINGS, QuestionnaireCoding
from data.pseudonym import key_check, load_or_create_key, pseudonymise
from data.readers import PROVENANCE, SOURCE_FILE, SOURCE_ROW, RawTable, read_bundle
from data.validate import (
    FIRST_TOKUTEI_FY,
    REJECT_COLUMNS,
    Validated,
    validate_checkups,
    validate_contacts,
    validate_enrollment,
)

STORE_VERSION = 1  # bump when the stored layout or normalisation changes


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ingest run."""

    encoding: str | None = None  # force a CSV encoding instead of detecting UTF-8 / CP932
    today: str | None = None  # ISO date that counts as "today" for future-date checks
    key_file: Path | None = None  # pseudonym key file when KENSHIN_PSEUDONYM_KEY is unset
    force: bool = False  # rewrite the store even when the bundle is unchanged
    #: How pre-FY2024 questionnaire answers are coded: auto (detect per file and year),
    #: by-year (each year its own version's codes) or current (all in the 2024 coding).
    questionnaire_coding: QuestionnaireCoding = "auto"
    #: Stop (exit 2) when more than this share of a table's rows is rejected ...
    max_reject_share: float = 0.2
    #: ... unless the user accepts it (``--accept-rejects``).
    accept_rejects: bool = False
    #: Checkups before this fiscal year are rejected (特定健診 began in FY2008).
    min_fiscal_year: int = FIRST_TOKUTEI_FY

    def __post_init__(self) -> None:
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise BadInputError(f"unknown encoding {self.encoding!r}") from None
        if self.today is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.today):
            raise BadInputError(f"--today {self.today!r} is not a date in YYYY-MM-DD form")
        if self.today is not None:
            try:
                pd.Timestamp(self.today)
            except ValueError:
                raise BadInputError(f"--today {self.today!r} is not a valid date") from None
        if self.questionnaire_coding not in QUESTIONNAIRE_CODINGS:
            raise BadInputError(
                f"questionnaire coding {self.questionnaire_coding!r} is not one of "
                f"{', '.join(QUESTIONNAIRE_CODINGS)}"
            )
        if not 0.0 <= self.max_reject_share <= 1.0:
            raise BadInputError(f"max reject share {self.max_reject_share} is not between 0 and 1")


class IngestSettings(BaseModel):
    """The division's ingest settings file (``ingest.toml``); command-line options win."""

    model_config = ConfigDict(extra="forbid")

    encoding: str | None = None
    questionnaire_coding: QuestionnaireCoding = "auto"
    max_reject_share: float = Field(0.2, ge=0.0, le=1.0)
    accept_rejects: bool = False
    min_fiscal_year: int = Field(FIRST_TOKUTEI_FY, ge=1900, le=2100)


def load_ingest_settings(path: Path) -> IngestSettings:
    """Read and check ``ingest.toml``; a bad file is bad input naming the value."""
    try:
        with path.open("rb") as f:
            return IngestSettings.model_validate(tomllib.load(f))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such ingest settings file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not a TOML file ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInputError(f"{path}: {where} = {first.get('input')!r}: {first['msg']}") from None


@dataclass
class TableAccounting:
    """Where every read row of one table went."""

    read: int = 0
    loaded: int = 0
    rejected: int = 0
    merged_duplicates: int = 0

    @property
    def balanced(self) -> bool:
        return self.read == self.loaded + self.rejected + self.merged_duplicates


@dataclass
class IngestResult:
    accounting: dict[str, TableAccounting]
    rejects: pd.DataFrame
    extra_columns: dict[str, list[str]]
    manifest: dict
    unchanged: bool = False
    reject_reasons: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The pseudonym key file this ingest created (the first run without a key), else None.
    key_created: Path | None = None


def _reject_rows(frame: pd.DataFrame, mask: pd.Series, table: str, column: str, reason: str):
    bad = frame.loc[mask]
    return pd.DataFrame(
        {
            "table": table,
            "source_file": bad[SOURCE_FILE].to_numpy(),
            "source_row": bad[SOURCE_ROW].to_numpy(dtype="int64"),
            "column": column,
            "reason": reason,
            "value": pd.array([None] * len(bad), dtype="string"),
            "person_id": bad["person_id"].to_numpy(),
        }
    )


def _modal_conflicts(frame: pd.DataFrame, column: str) -> pd.Series:
    """Rows whose ``column`` differs from the person's most frequent value (ties: smallest)."""
    counts = frame.groupby(["person_id", column], sort=True, observed=True).size()
    counts = counts.rename("n").reset_index()
    counts = counts.sort_values(["person_id", "n", column], ascending=[True, False, True])
    modal = counts.drop_duplicates("person_id").set_index("person_id")[column]
    return frame[column].ne(frame["person_id"].map(modal)).fillna(False)


def _merge_duplicates(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Merge rows with the same keys: first non-missing value per column, in source order."""
    dup = frame.duplicated(keys, keep=False)
    if not dup.any():
        return frame
    merged = frame.loc[dup].groupby(keys, sort=False, dropna=False).first().reset_index()
    out = pd.concat([frame.loc[~dup], merged[frame.columns]], ignore_index=True)
    return out.astype(frame.dtypes.to_dict())


def _extra_columns(raw: RawTable, pseudonyms: pd.Series) -> pd.DataFrame | None:
    if not raw.extra_columns:
        return None
    extra = raw.frame[[*PROVENANCE, *raw.extra_columns]].copy()
    extra.insert(0, "pseudonym", pseudonyms)
    extra.insert(0, "table", raw.name)
    return extra.astype({c: "string" for c in raw.extra_columns})


INGEST_STEPS = ("read", "validate", "reconcile", "write")


def ingest(
    bundle: Path,
    store: Path,
    config: IngestConfig | None = None,
    on_step: Callable[[str], None] = lambda step: None,
) -> IngestResult:
    """Load ``bundle`` into ``store``; return the accounting and the rejects.

    ``on_step`` is called with each name of :data:`INGEST_STEPS` as it starts (progress display).
    """
    config = config or IngestConfig()
    _check_store_target(Path(bundle), Path(store))
    key, created = load_or_create_key(config.key_file)
    _check_writable(store)
    with store_mod.store_lock(store):
        store_mod.recover_store(store)
        result = _ingest_locked(bundle, store, config, key, on_step)
    result.key_created = created
    return result


def _check_store_target(bundle: Path, store: Path) -> None:
    """Refuse a store path whose replacement would destroy something that is not a store.

    Writing a store replaces the whole folder, so ``--store .``, ``--store BUNDLE`` or a
    folder of other files would be deleted. Only a missing path, an empty folder or an earlier
    kenshin store (it has a manifest, or the checkups and private folders) may be replaced.
    """
    try:
        store, bundle = store.resolve(), bundle.resolve()
    except (RuntimeError, OSError) as exc:  # a symbolic link loop, say
        raise BadInputError(f"{store}: cannot resolve the path ({exc})") from None
    if store == bundle or store in bundle.parents or bundle in store.parents:
        raise BadInputError(
            f"{store}: the store cannot be the bundle, hold it or lie inside it; "
            "choose a folder of its own (e.g. --store store)"
        )
    if store in Path.cwd().resolve().parents or store == Path.cwd().resolve():
        raise BadInputError(
            f"{store}: the store cannot be the current folder or one above it; "
            "choose a folder of its own (e.g. --store store)"
        )
    if not store.exists() and not store.is_symlink():
        return
    if not store.is_dir():
        raise BadInputError(f"{store}: exists and is not a folder; choose another --store")
    if (store / store_mod.MANIFEST).exists() or (
        (store / "checkups").is_dir() and (store / store_mod.PRIVATE).is_dir()
    ):
        return
    if any(store.iterdir()):
        raise BadInputError(
            f"{store}: a folder that holds other files and is not a kenshin store; writing "
            "the store would replace it — choose a new or empty folder"
        )


def _check_writable(store: Path) -> None:
    """Fail before reading anything when the store cannot be written (it is made beside its
    final place, in its parent folder)."""
    require_writable(Path(store).parent, str(store), "the store", "choose a writable --store")


def _ingest_locked(
    bundle: Path,
    store: Path,
    config: IngestConfig,
    key: bytes,
    on_step: Callable[[str], None],
) -> IngestResult:
    on_step("read")
    raw = read_bundle(bundle, config.encoding)
    sources = _source_info(bundle, raw)
    fingerprint = _bundle_fingerprint(sources, key, config)
    if not config.force and (same := _unchanged(store, fingerprint)) is not None:
        return same
    on_step("validate")
    valid = _validate(bundle, raw, config)
    on_step("reconcile")
    tables = _reconcile(raw, valid, key)
    acct = _accounting(raw, tables)
    _check_loaded(bundle, tables.rejects, acct, config, len(tables.checkups))
    extra_frame = _extra_frame(raw, key)
    reasons = _reject_reasons(tables.rejects)
    manifest = _manifest(raw, config, key, fingerprint, sources, acct, tables, valid, reasons)
    on_step("write")
    manifest = store_mod.write_store(
        store, tables.checkups, tables.enrollment, tables.rejects, tables.contacts, extra_frame,
        manifest,
    )  # fmt: skip
    return IngestResult(
        acct, tables.rejects, manifest["extra_columns"], manifest, reject_reasons=reasons
    )


def _source_info(bundle: Path, raw: dict[str, RawTable]) -> list[dict]:
    """File, sha256 and size of every source file of the bundle (XML/ZIP included)."""
    if bundle.is_file():  # one XML document or ZIP archive
        return [{"file": bundle.name, "sha256": store_mod.sha256_file(bundle),
                 "bytes": bundle.stat().st_size}]  # fmt: skip
    sources = sorted(
        {str(p.relative_to(bundle)): p for t in raw.values() for p in t.sources}.items()
    )
    extra_sources = sorted(  # regular files only: a FIFO or device is never opened
        p for p in bundle.rglob("*") if p.suffix.lower() in (".xml", ".zip") and p.is_file()
    )
    return [
        {"file": name, "sha256": store_mod.sha256_file(p), "bytes": p.stat().st_size}
        for name, p in sources + [(str(p.relative_to(bundle)), p) for p in extra_sources]
    ]


def _bundle_fingerprint(source_info: list[dict], key: bytes, config: IngestConfig) -> str:
    """What makes the store: the source files, the key, the store version and the settings
    that change what is stored. The same fingerprint: nothing to ingest again."""
    return hashlib.sha256(
        json_dumps(
            [
                source_info,
                key_check(key),
                STORE_VERSION,
                config.encoding,
                config.questionnaire_coding,
                config.min_fiscal_year,
            ]
        ).encode()
    ).hexdigest()


def _unchanged(store: Path, fingerprint: str) -> IngestResult | None:
    """The result of the store's last ingest when it was of the same bundle, else None."""
    if not (store / store_mod.MANIFEST).exists():
        return None
    try:
        old = store_mod.read_manifest(store)
    except BadInputError:
        return None  # a damaged store is rewritten
    if old.get("bundle_fingerprint") != fingerprint:
        return None
    return IngestResult(
        accounting={k: TableAccounting(**v) for k, v in old["accounting"].items()},
        rejects=store_mod.read_rejects(store),
        extra_columns=old.get("extra_columns", {}),
        manifest=old,
        unchanged=True,
    )


@dataclass(frozen=True)
class _Valid:
    """Each table of the bundle validated (data.validate)."""

    checkups: Validated
    enrollment: Validated
    contacts: Validated


def _validate(bundle: Path, raw: dict[str, RawTable], config: IngestConfig) -> _Valid:
    """Type and check every table; a bundle without checkup rows is bad input."""
    if not len(raw["checkups"].frame):
        raise BadInputError(f"{bundle}: {_why_no_checkups(raw['checkups'])}")
    today = pd.Timestamp(config.today) if config.today else None
    checkups = validate_checkups(
        raw["checkups"].frame,
        today=today,
        coding=config.questionnaire_coding,
        min_fiscal_year=config.min_fiscal_year,
    )
    return _Valid(
        checkups, validate_enrollment(raw["enrollment"].frame),
        validate_contacts(raw["contacts"].frame),
    )  # fmt: skip


@dataclass(frozen=True)
class _Tables:
    """The store's tables, pseudonymised and reconciled, and the rows merged per table."""

    checkups: pd.DataFrame
    enrollment: pd.DataFrame
    contacts: pd.DataFrame
    rejects: pd.DataFrame
    merged_duplicates: dict[str, int]


def _reconcile(raw: dict[str, RawTable], valid: _Valid, key: bytes) -> _Tables:
    """Person-level consistency, pseudonyms, duplicates merged, columns in the stored order."""
    chk, conflicts = _person_conflicts(valid.checkups.frame)
    rejects_raw = pd.concat(
        [
            _with_person_id(valid.checkups.rejects, raw["checkups"].frame),
            *conflicts,
            _with_person_id(valid.enrollment.rejects, raw["enrollment"].frame),
            _with_person_id(valid.contacts.rejects, raw["contacts"].frame),
        ],
        ignore_index=True,
    )
    rejects = rejects_raw.drop(columns="person_id")
    rejects["pseudonym"] = pseudonymise(rejects_raw["person_id"].astype("string"), key)
    rejects = rejects[[*REJECT_COLUMNS, "pseudonym"]]
    merged: dict[str, int] = {}

    chk = chk.assign(pseudonym=pseudonymise(chk["person_id"], key))
    before = len(chk)
    chk = _merge_duplicates(chk, ["pseudonym", "exam_date"])
    merged["checkups"] = before - len(chk)
    order = ["pseudonym", "exam_date", "fiscal_year", "age"]
    rest = [c for c in CHECKUP_COLUMNS if c not in ("person_id", "birth_date", "exam_date")]
    checkups = chk[[*order, *rest, "soft_flags", *PROVENANCE]]
    checkups = checkups.sort_values(["fiscal_year", "pseudonym", "exam_date"], ignore_index=True)
    checkups = checkups.astype({"sex": "Int8"})

    v_enr = valid.enrollment
    enr = v_enr.frame.assign(pseudonym=pseudonymise(v_enr.frame["person_id"], key))
    before = len(enr)
    enr = _merge_duplicates(enr, ["pseudonym", "enrolled_from"])
    merged["enrollment"] = before - len(enr)
    enrollment = enr[["pseudonym", "enrolled_from", "enrolled_until", "end_reason"]]
    enrollment = enrollment.sort_values(["pseudonym", "enrolled_from"], ignore_index=True)

    v_con = valid.contacts
    con = v_con.frame.assign(pseudonym=pseudonymise(v_con.frame["person_id"], key))
    before = len(con)
    con = _merge_duplicates(con, ["pseudonym"])
    merged["contacts"] = before - len(con)
    contacts = con.drop(columns=list(PROVENANCE)).sort_values("pseudonym", ignore_index=True)
    contacts = contacts[["pseudonym", *[c for c in contacts.columns if c != "pseudonym"]]]
    return _Tables(checkups, enrollment, contacts, rejects, merged)


def _person_conflicts(chk: pd.DataFrame) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """One birth date and one sex per person: the checkups that agree, and the rejects (with
    the raw person_id) of those that do not (file and row named)."""
    conflicts = []
    for column, reason in (
        ("birth_date", "birth_date conflicts with this person's other checkups"),
        ("sex", "sex conflicts with this person's other checkups"),
    ):
        mask = _modal_conflicts(chk, column)
        conflicts.append(_reject_rows(chk, mask, "checkups", column, reason))
        chk = chk.loc[~mask]
    return chk, conflicts


def _accounting(raw: dict[str, RawTable], tables: _Tables) -> dict[str, TableAccounting]:
    """Where every read row of each table went; a mismatch is a bug and raises."""
    acct = {name: TableAccounting(read=len(t.frame)) for name, t in raw.items()}
    for name, n_loaded in (
        ("checkups", len(tables.checkups)),
        ("enrollment", len(tables.enrollment)),
        ("contacts", len(tables.contacts)),
    ):
        acct[name].merged_duplicates = tables.merged_duplicates[name]
        acct[name].loaded = n_loaded
        acct[name].rejected = int((tables.rejects["table"] == name).sum())
        if not acct[name].balanced:  # pragma: no cover - a bug, never bad input
            raise RuntimeError(f"row accounting does not add up for {name}: {acct[name]}")
    return acct


def _check_loaded(
    bundle: Path,
    rejects: pd.DataFrame,
    acct: dict[str, TableAccounting],
    config: IngestConfig,
    loaded_checkups: int,
) -> None:
    """Stop before anything is written: no checkup loaded, or too many rows rejected."""
    if not loaded_checkups:
        raise BadInputError(
            f"{bundle}: no checkup row could be loaded ({acct['checkups'].rejected:,} rejected); "
            f"{_top_reasons(rejects, 'checkups')}"
        )
    if not config.accept_rejects:
        _reject_guard(acct, rejects, config.max_reject_share)


def _extra_frame(raw: dict[str, RawTable], key: bytes) -> pd.DataFrame | None:
    """The bundle's columns kenshin does not know, per pseudonym (None: there are none)."""
    extras = [
        _extra_columns(t, pseudonymise(t.frame["person_id"].astype("string"), key))
        for t in raw.values()
    ]
    extras = [e for e in extras if e is not None]
    return pd.concat(extras, ignore_index=True) if extras else None


def _reject_reasons(rejects: pd.DataFrame) -> pd.DataFrame:
    """Rows rejected per table, column and reason."""
    return (
        rejects.groupby(["table", "column", "reason"], dropna=False).size().rename("rows")
    ).reset_index()


def _manifest(
    raw: dict[str, RawTable],
    config: IngestConfig,
    key: bytes,
    fingerprint: str,
    sources: list[dict],
    acct: dict[str, TableAccounting],
    tables: _Tables,
    valid: _Valid,
    reasons: pd.DataFrame,
) -> dict:
    """The store's manifest (data.store completes it with the store's fingerprint)."""
    report = valid.checkups.report
    return {
        "kenshin_store_version": STORE_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bundle_fingerprint": fingerprint,
        "pseudonym_key_check": key_check(key),
        "sources": sources,
        "encodings": {k: v for t in raw.values() for k, v in t.encodings.items()},
        "accounting": {k: asdict(v) for k, v in acct.items()},
        "extra_columns": {t.name: t.extra_columns for t in raw.values() if t.extra_columns},
        "reader_notes": {t.name: t.notes for t in raw.values() if t.notes},
        "fiscal_years": sorted(int(y) for y in tables.checkups["fiscal_year"].dropna().unique()),
        "reject_reasons": reasons.to_dict(orient="records"),
        # The facility's 9N501/9N506 beside kenshin's own: disagreement is a finding, not an error.
        "facility_agreement": facility_agreement(tables.checkups),
        # A table whose files hold no row (header only) is as missing as one never sent.
        "missing_tables": [n for n in TABLES if n != "checkups" and not len(raw[n].frame)],
        "empty_tables": [
            n for n in TABLES if n != "checkups" and raw[n].sources and not len(raw[n].frame)
        ],
        "questionnaire_coding": {
            "setting": config.questionnaire_coding,
            "decisions": report["questionnaire_coding"],
        },
        "invalid_codes": report["invalid_codes"],
        "derived_out_of_range": report["derived_out_of_range"],
        # Values read as missing: "not measured" markers, enrolled_until 9999-12-31 (open).
        "read_as_missing": {
            "checkups": report["missing_markers"],
            "enrollment": {"enrolled_until": valid.enrollment.report["open_end_dates"]},
        },
        "reject_guard": {
            "max_share": config.max_reject_share,
            "accepted": config.accept_rejects,
        },
    }


def _why_no_checkups(table: RawTable) -> str:
    others = table.notes.get("xml", {}).get("non_checkup_files", {}) if table.notes else {}
    skipped = table.notes.get("xml", {}).get("skipped_files", {}) if table.notes else {}
    if skipped and not others:
        files = ", ".join(f"{n} ({kind})" for n, kind in list(skipped["files"].items())[:5])
        return (
            f"no checkup document: {skipped['count']:,} XML/ZIP entries were skipped unopened: "
            f"{files}"
        )
    if others:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
        return f"no checkup document among the XML files (only other exchange files: {kinds})"
    return "the checkups table has no rows (header only?)"


def _top_reasons(rejects: pd.DataFrame, table: str, n: int = 3) -> str:
    """The commonest reject reasons of ``table`` and one example row, for a one-line error."""
    mine = rejects.loc[rejects["table"] == table]
    if mine.empty:
        return "no reason recorded"
    top = mine.groupby("reason", sort=False).size().sort_values(ascending=False, kind="stable")
    reasons = "; ".join(f"{reason} ({rows:,})" for reason, rows in top.head(n).items())
    first = mine.loc[mine["reason"] == top.index[0]].iloc[0]
    value = "" if pd.isna(first["value"]) else f" value {first['value']!r}"
    column = "" if pd.isna(first["column"]) else f", column {first['column']}"
    return (
        f"top reasons: {reasons}; e.g. {first['source_file']} row {first['source_row']}"
        f"{column}{value}"
    )


def _reject_guard(acct: dict[str, TableAccounting], rejects: pd.DataFrame, share: float) -> None:
    """Stop before anything is written when a table lost more than ``share`` of its rows."""
    for name, a in acct.items():
        if a.read and a.rejected / a.read > share:
            raise BadInputError(
                f"{name}: {a.rejected:,} of {a.read:,} rows rejected "
                f"({a.rejected / a.read:.0%} > {share:.0%}), nothing written; "
                f"{_top_reasons(rejects, name)} (details: rerun with --accept-rejects and read "
                "rejects.parquet)"
            )


def _with_person_id(rejects: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """Attach the raw person_id (for pseudonymising only) by file and row."""
    from data.normalise import to_halfwidth

    key = raw[[SOURCE_FILE, SOURCE_ROW]].assign(person_id=to_halfwidth(raw["person_id"]))
    key = key.rename(columns={SOURCE_FILE: "source_file", SOURCE_ROW: "source_row"})
    key["source_row"] = key["source_row"].astype("int64")
    return rejects.merge(key, on=["source_file", "source_row"], how="left", validate="m:1")


def json_dumps(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True, default=str)
