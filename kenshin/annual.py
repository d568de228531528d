"""The annual run (年次処理) behind ``kenshin score``: score → select → explain → letters → report.

Reads the store and the registered model, calls the pure cores of :mod:`scoring`, and writes
the output folder declared once by :class:`scoring.outputs.AnnualOutputs` (its tables:
:mod:`scoring.contracts`). :func:`run_annual` is a short list of steps, each a function with
declared inputs and outputs: :func:`eligible`, then into the staging folder
:func:`write_scores` → :func:`select_residents` → :func:`explain_selected` →
:func:`write_tables` → :func:`write_letters` → :func:`_report` → :func:`write_run_record`,
then :func:`publish`. The steps on frames (:class:`ScoreTally`,
:func:`with_factors`, :func:`letters_sent`, :func:`run_counts`) read and write nothing.

Only :func:`_letter_requests` reads contact details, and only for residents whose letter is
sent; everything else is keyed by pseudonym.

What the run needs is checked before any work (:func:`check_store`): a store without enrollment,
without checkups or without checkups of the scoring year is bad input (exit 2, one line); a
store without contacts is scored and selected with letters switched off (a note says so).
Residents whose contact cannot address a letter (no contacts row, or a name, postal code or
address that breaks the letter contract) get no letter: ``NO_CONTACT`` / ``CONTACT_INVALID`` in
the selection (with the fields at fault, never their values), so the selection,
``letters_sent.csv`` and the letters printed always agree.

Before any work the output folder is checked (a probe file: read-only is exit 2) and locked
(a second run into it is exit 2 naming the first's process): :func:`output_place`,
:func:`output_lock`. All or nothing: the run writes into ``.<out>.partial`` next to the output
folder (inside it when it is a mount point: the final moves never cross file systems), validating
every table against its contract, and moves its outputs into the output folder only once all of
them (letters and report included) are made. A failed run leaves the output folder as it was;
the letters it rendered are kept in the staging folder, so running it again renders only the
missing ones. A damaged store is bad input (exit 2), not a crash.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.columns import OUTCOMES
from data.files import atomic_write, csv_bytes, pid_lock
from data.schema_check import validated
from kenshin.errors import BadInputError, one_line, safe_message
from kenshin.workers import SCORE_WORKERS, chunk_bounds, ordered_map
from models.drift import drift_table
from scoring.coherence import conflict_counts, conflicts
from scoring.contracts import (
    DRIFT_SCHEMA,
    EXPLANATIONS_SCHEMA,
    LETTERS_SENT_SCHEMA,
    SCORE_STAMPS,
    SELECTION_SCHEMA,
    ModelSummary,
    scores_schema,
)
from scoring.outputs import LETTERS, STAGING_SUFFIX, AnnualOutputs, staging_for
from scoring.score import Eligibility, ScoringConfig, explain_chunk, score_chunk
from scoring.selection import SelectionConfig, decide, names_values_to_verify, select_decided

DEFAULT_MODEL = "models:/kenshin-risk@champion"


class ModelMismatchError(BadInputError):
    """The model's feature schema is not the one this kenshin builds from the data."""


@dataclass(frozen=True)
class AnnualRunConfig:
    """One annual run: which store, year and model; where to write; which steps."""

    store: Path
    fiscal_year: int
    out: Path
    workdir: Path
    model_uri: str = DEFAULT_MODEL
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    #: Enrollment is checked on this day; default 1 April after the fiscal year.
    scoring_date: date | None = None
    letters: bool = True
    report: bool = True
    letter_workers: int = 2
    #: Resident pages in the report's PDF (the HTML has every explained resident).
    report_pdf_residents: int = 2000
    #: Earlier letters (pseudonym, letter_date), e.g. last year's ``letters_sent.csv``.
    letter_history: Path | None = None
    log_mlflow: bool = True
    #: Where the scores are computed: ``pandas`` (this process) or ``spark`` (kenshin.spark:
    #: the same chunks through the same code on Spark; master and settings below).
    engine: str = "pandas"
    spark_master: str | None = None
    spark_config: Path | None = None
    #: Predict with the boosters compiled to machine code (models.compiled: LightGBM's bits,
    #: ≈ 6× faster; compiled once per model and machine into ``<workdir>/compiled``): ``on``,
    #: ``off``, or ``auto`` (default): on when the model is already in the cache or at least
    #: :data:`AUTO_COMPILE_RESIDENTS` residents are scored. ``KENSHIN_COMPILED_PREDICTION``
    #: sets the default.
    compiled_prediction: str = field(
        default_factory=lambda: os.environ.get("KENSHIN_COMPILED_PREDICTION") or "auto"
    )

    @property
    def day(self) -> pd.Timestamp:
        return pd.Timestamp(self.scoring_date or date(self.fiscal_year + 1, 4, 1))


@dataclass
class AnnualRunResult:
    out: Path
    paths: dict[str, Path]
    counts: dict[str, int]
    seconds: dict[str, float]
    model: ModelSummary
    mlflow_run_id: str | None = None
    #: What the run decided on its own (e.g. letters switched off: no contacts table).
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    engine: object  # models.train.TrainedEngine
    feature_config: object  # features.FeatureConfig
    summary: ModelSummary
    #: Fiscal years ahead the risk refers to (the labels the model was trained on).
    horizon_years: int = 1


def load_model(uri: str, workdir: Path) -> LoadedModel:
    """Load the pyfunc engine, check its feature schema, and gather what staff see about it."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from features.build import FeatureConfig
    from features.declarations import FEATURE_SET_VERSION, feature_names
    from models.registry import configure_tracking

    configure_tracking(workdir)
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as e:
        raise BadInputError(
            f"cannot load model {uri!r}: {str(e).splitlines()[0]} "
            "(train and promote one first: 'kenshin train' then 'kenshin promote')"
        ) from None
    wrapper = pyfunc.unwrap_python_model()
    engine = wrapper.engine
    expected = feature_names()
    if wrapper.feature_set_version != FEATURE_SET_VERSION or list(engine.feature_names) != expected:
        missing = sorted(set(expected) - set(engine.feature_names))
        extra = sorted(set(engine.feature_names) - set(expected))
        raise ModelMismatchError(
            f"model {uri} was trained on feature set {wrapper.feature_set_version}, this kenshin "
            f"builds {FEATURE_SET_VERSION} (model lacks {missing[:5]}, has extra {extra[:5]}); "
            "retrain with 'kenshin train' or score with the matching kenshin version"
        )
    tables = getattr(wrapper, "tables_config", None)
    feature_config = getattr(tables, "features", None) or FeatureConfig()
    info = pyfunc.metadata
    run_id = info.run_id or ""
    name, version = "", ""
    client = MlflowClient()
    if uri.startswith("models:/"):
        ref = uri.removeprefix("models:/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
        else:
            name, _, version = ref.partition("/")
    summary = ModelSummary(
        uri=uri,
        name=name,
        version=version,
        run_id=run_id,
        feature_set_version=wrapper.feature_set_version,
        test_year=int(engine.test_year),
        outcomes=tuple(engine.outcomes),
        **_run_artifacts(client, run_id),
    )
    horizon = int(getattr(getattr(tables, "labels", None), "horizon_years", 1) or 1)
    return LoadedModel(engine, feature_config, summary, horizon)


def _run_artifacts(client, run_id: str) -> dict:
    """Metrics summary, calibration bins and model card of the training run (when logged)."""
    import tempfile

    out: dict = {}
    if not run_id:
        return out
    with tempfile.TemporaryDirectory(prefix="kenshin-card-") as tmp:
        for key, rel in (
            ("metrics", "evaluation/summary.csv"),
            ("calibration", "evaluation/calibration_bins.csv"),
            ("model_card", "model_card.md"),
        ):
            try:
                path = Path(client.download_artifacts(run_id, rel, tmp))
            except Exception:
                continue
            out[key] = path.read_text() if key == "model_card" else pd.read_csv(path)
    return out


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """A spreadsheet-safe CSV (data.files.csv_bytes: no cell is run as a formula)."""
    atomic_write(path, csv_bytes(frame, date_format="%Y-%m-%d"))


@contextmanager
def store_readable(store: Path) -> Iterator[None]:
    """A damaged or incomplete store (unreadable Parquet, broken manifest, missing part, a table
    that no longer matches its schema) is bad input naming the store, not a crash."""
    from pandera.errors import SchemaError, SchemaErrors

    try:
        yield
    except BadInputError:
        raise
    except (
        pa.ArrowException, json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError,
        NotADirectoryError, IsADirectoryError, SchemaError, SchemaErrors,
    ) as e:  # fmt: skip
        raise BadInputError(
            f"the store {store} is damaged or incomplete ({type(e).__name__}: "
            f"{one_line(safe_message(e), 160)}); run 'kenshin ingest' again"
        ) from None


NO_CONTACTS_NOTE = (
    "letters are switched off: the store has no contacts (the bundle had no contacts table, or "
    "one without rows), so no letter can be addressed; ingest contacts (docs/contract.md "
    "§Contacts) to send letters"
)


def check_store(store: Path, manifest: dict, fiscal_year: int) -> list[str]:
    """What ``kenshin score`` needs from the store, checked before any work.

    Raises :class:`BadInputError` (one line) when the store has no enrollment table, no
    checkups, or no checkups of ``fiscal_year``; returns the tables it lacks but can do without
    (``contacts``: the run goes on without letters).
    """
    missing = set(manifest.get("missing_tables") or [])
    if "enrollment" in missing:
        raise BadInputError(
            f"the store {store} has no enrollment (the bundle had no enrollment table, or one "
            "without rows), so membership on the scoring date cannot be judged; ingest "
            "enrollment (docs/contract.md §Enrollment)"
        )
    years = manifest.get("fiscal_years")
    if years is None:  # an older manifest: the partitions say it
        years = [
            int(d.name.split("=", 1)[1])
            for d in (Path(store) / "checkups").glob("fiscal_year=*")
            if d.name.split("=", 1)[1].isdigit()
        ]
    loaded = manifest.get("accounting", {}).get("checkups", {}).get("loaded")
    if not years or loaded == 0:
        raise BadInputError(
            f"the store {store} has no checkups; ingest a bundle with checkups "
            "(docs/contract.md §Checkups)"
        )
    if int(fiscal_year) not in {int(y) for y in years}:
        have = sorted(int(y) for y in years)
        span = f"FY{have[0]}" if len(have) == 1 else f"FY{have[0]}-FY{have[-1]}"
        raise BadInputError(
            f"the store {store} has no checkups in FY{fiscal_year} (it holds {span}); score a "
            "year the store holds, or ingest that year's checkups"
        )
    return sorted(missing & {"contacts"})


_ADDRESS_COLUMNS = ["pseudonym", "name", "postal_code", "address"]


def contact_status(store: Path, among: pd.Series | None = None) -> pd.Series:
    """Per pseudonym with a contacts row: ``""`` when a letter can be addressed, else the
    fields at fault (scoring.letters.schema.contact_problems: codes, never values). The
    contacts are read a batch at a time, only the address columns: every member's contact held
    at once took ≈ 3.4 GB at 1M residents.

    With ``among``: per pseudonym of ``among`` (unique), in its order, missing where it has no
    contacts row, as a categorical (a code a resident, not a pointer: the selection asks it of
    every scored resident). Without: the pseudonyms as Arrow text (the index of the result),
    the codes as shared Python strings."""
    from data.store import iter_contact_batches
    from scoring.keys import arrow_text

    if among is not None:
        return _contact_status_of(store, arrow_text(among))
    keys: list[pa.Array] = []
    parts: list[np.ndarray] = []
    for rows in iter_contact_batches(store, _ADDRESS_COLUMNS):
        parts.append(_contact_problems(rows).to_numpy(dtype=object))
        keys.append(pc.cast(rows.column("pseudonym"), pa.string()))
    if not parts:
        return pd.Series(dtype=object)
    index = pd.Index(pd.arrays.ArrowExtensionArray(pa.chunked_array(keys, type=pa.string())))
    return pd.Series(np.concatenate(parts), index=index, dtype=object)


def _contact_status_of(store: Path, among: pa.ChunkedArray) -> pd.Series:
    """:func:`contact_status` of the pseudonyms ``among`` (Arrow text)."""
    from data.store import iter_contact_batches
    from scoring.keys import PseudonymIndex

    where = PseudonymIndex(among)
    codes = np.full(len(among), -1, dtype=np.int16)
    vocabulary: dict[str, int] = {}
    for rows in iter_contact_batches(store, _ADDRESS_COLUMNS):
        at, found = where.positions(pc.cast(rows.column("pseudonym"), pa.string()))
        if not found.any():
            continue
        # Filtered in Arrow: the others never become Python objects.
        rows, at = rows.filter(pa.array(found)), at[found]
        if (codes[at] >= 0).any() or len(np.unique(at)) != len(at):  # as positions() would
            raise ValueError("Reindexing only valid with uniquely valued Index objects")
        got, values = pd.factorize(_contact_problems(rows).to_numpy(dtype=object))
        # One entry per distinct problem (a handful), not per row.
        codes[at] = np.array([vocabulary.setdefault(v, len(vocabulary)) for v in values])[got]
    problems = pd.Categorical.from_codes(codes, categories=pd.Index(list(vocabulary), dtype=object))
    return pd.Series(problems, index=pd.Index(pd.arrays.ArrowExtensionArray(among)))


def _contact_problems(rows: pa.RecordBatch) -> pd.Series:
    """scoring.letters.schema.contact_problems of a batch of contacts (a missing column is
    missing values)."""
    from scoring.letters.schema import contact_problems

    batch = rows.to_pandas()
    for col in ("name", "postal_code", "address"):
        if col not in batch:
            batch[col] = pd.NA
    return contact_problems(batch.reset_index(drop=True))


def _opted_out(store: Path) -> pd.Series:
    """The pseudonyms that opted out (flag True; everyone else has not): only two columns of
    the private contacts are read, a batch at a time."""
    from data.store import iter_contact_batches

    parts = []
    for rows in iter_contact_batches(store, ["pseudonym", "opt_out"]):
        if "opt_out" not in rows.schema.names:
            break
        opt_out = rows.column("opt_out").to_pandas()
        flag = (pd.to_numeric(opt_out, errors="coerce").fillna(0).astype(int) == 1).to_numpy()
        # Only the flagged pseudonyms become Python strings.
        parts.append(pd.Series(pc.cast(rows.column("pseudonym"), pa.string()).filter(flag)))
    who = pd.concat(parts).astype(str) if parts else pd.Series(dtype=str)
    return pd.Series(True, index=who.to_numpy(), dtype=bool)


def _letter_history(path: Path | None) -> pd.Series | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"letter history {path} does not exist or is not a file")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError, pa.ArrowException) as e:
        raise BadInputError(
            f"letter history {path} is not a readable "
            f"{'Parquet' if path.suffix == '.parquet' else 'UTF-8 CSV'} file "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not {"pseudonym", "letter_date"} <= set(df.columns):
        raise BadInputError(f"letter history {path} needs columns pseudonym, letter_date")
    when = pd.to_datetime(df["letter_date"], errors="coerce")
    return when.groupby(df["pseudonym"].astype(str)).max()


def run_annual(
    cfg: AnnualRunConfig,
    on_step: Callable[[str, int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> AnnualRunResult:
    """Score, select, explain, write letters and the staff report for ``cfg.fiscal_year``.

    The store is checked first (:func:`check_store`); ``on_note(line)`` hears what the run
    decided on its own (letters switched off for want of contacts), before any work.

    All or nothing: every output is written into a staging folder next to ``cfg.out``
    (:func:`staging_folder`), each table validated against its contract as it is made, and
    moved into ``cfg.out`` only when the whole run has succeeded. A failed run leaves the output
    folder as it was; the letters it had rendered stay in the staging folder, so running again
    renders only the missing ones (as do letters of a finished run in ``cfg.out``).

    Before any work ``cfg.out`` is checked (:func:`output_place`: it can be written; the
    staging folder is on its file system) and locked (:func:`output_lock`): a second run into
    the same folder meanwhile is bad input naming this run's process.
    """
    clock = Stopwatch(time.perf_counter())
    out = Path(cfg.out)
    place = output_place(out)  # before any work: --out can be written, where to stage
    with output_lock(place, out):  # one run at a time into an output folder
        return _run_annual(cfg, out, place, clock, on_step, on_note)


def _run_annual(
    cfg: AnnualRunConfig,
    out: Path,
    place: OutputPlace,
    clock: Stopwatch,
    on_step: Callable[[str, int, int], None] | None,
    on_note: Callable[[str], None] | None,
) -> AnnualRunResult:
    """:func:`run_annual` once ``out`` is checked and locked."""
    manifest = read_store_manifest(Path(cfg.store))
    cfg, notes = decide_letters(cfg, manifest, on_note)
    if cfg.engine == "spark":  # Spark and its Python workers start meanwhile
        from kenshin.spark import start_session

        spark_started = start_session(cfg.spark_master, cfg.spark_config)
    model = load_model(cfg.model_uri, cfg.workdir)
    clock.seconds["load_model"] = time.perf_counter() - clock.start
    elig = eligible(cfg)
    if use_compiled_prediction(cfg, model.engine, len(elig.index)):
        with clock.time("compile_prediction"):  # before the workers fork: they inherit it
            notes.append(compile_prediction(model.engine, Path(cfg.workdir)))
        if on_note is not None:
            on_note(notes[-1])
    if cfg.engine == "spark":
        with clock.time("spark_start_wait"):  # what was left of Spark's start
            spark_started.result()
    work = staging_folder(out, seed_letters=cfg.letters, stage=place.stage)
    try:
        outs = AnnualOutputs(work)
        with frozen_garbage_collector():
            result = _write_outputs(cfg, outs, model, elig, manifest, notes, on_step, clock)
    except BaseException:
        discard_staging(work)
        raise
    return publish(result, work, out)


# --- the steps before any output: store, letters switch, eligibility ------------------------


#: Residents from which ``compiled_prediction="auto"`` compiles a model the cache lacks.
#: Compiling the 100k-resident ward's engine (46 boosters, 3,004 trees) took 34.6 s on 2
#: cores; it then saved 7.2 s of the score step's 18.7 s at 124,557 residents (≈ 0.06 ms a
#: resident, bench/README.md "Compiled prediction"), so a first compile pays for itself from
#: ≈ 600,000 residents; every later run of the model gains (the cache), but a yearly run seldom
#: meets its cache again on a new model, hence no lower.
AUTO_COMPILE_RESIDENTS = 600_000
COMPILED_PREDICTION_MODES = ("auto", "on", "off")


def use_compiled_prediction(cfg: AnnualRunConfig, engine, residents: int) -> bool:
    """Whether this run predicts with compiled boosters (:attr:`AnnualRunConfig.compiled_prediction`)."""
    mode = cfg.compiled_prediction
    if mode not in COMPILED_PREDICTION_MODES:
        raise BadInputError(
            f"compiled prediction {mode!r} is not one of {', '.join(COMPILED_PREDICTION_MODES)} "
            "(KENSHIN_COMPILED_PREDICTION)"
        )
    if mode != "auto":
        return mode == "on"
    if residents >= AUTO_COMPILE_RESIDENTS:
        return True
    from models.compiled import all_cached

    return all_cached(engine, Path(cfg.workdir) / "compiled")


def compile_prediction(engine, workdir: Path) -> str:
    """The engine's boosters compiled (models.compiled.attach; cached in
    ``<workdir>/compiled``) before the workers fork, so every worker predicts with them; the
    line for the run's notes."""
    from kenshin.workers import SCORE_WORKERS
    from models.compiled import attach, available

    if (why := available()) is not None:
        return f"compiled prediction off: {why}"
    try:
        r = attach(engine, workdir / "compiled", workers=SCORE_WORKERS)
    except OSError as e:  # no room or no right to write the cache: LightGBM predicts
        return f"compiled prediction off: cannot write {workdir / 'compiled'} ({e.strerror})"
    line = (
        f"compiled prediction: {r.used} boosters ({r.trees:,} trees; {r.compiled} compiled now, "
        f"{r.cached} from the cache) in {r.seconds:.1f} s"
    )
    if r.on_lightgbm:
        line += (
            f"; {len(r.on_lightgbm)} on LightGBM ({'; '.join(sorted({*r.on_lightgbm.values()}))})"
        )
    return line


def read_store_manifest(store: Path) -> dict:
    """The store's manifest (a damaged store is bad input, not a crash)."""
    from data.store import read_manifest

    with store_readable(store):
        return read_manifest(store)


def decide_letters(
    cfg: AnnualRunConfig, manifest: dict, on_note: Callable[[str], None] | None = None
) -> tuple[AnnualRunConfig, list[str]]:
    """:func:`check_store`, then letters switched off (with a note) when the store has no
    contacts: the run's config and what it decided on its own."""
    notes: list[str] = []
    if "contacts" in check_store(Path(cfg.store), manifest, int(cfg.fiscal_year)) and cfg.letters:
        cfg = replace(cfg, letters=False)
        notes.append(NO_CONTACTS_NOTE)
        if on_note is not None:
            on_note(NO_CONTACTS_NOTE)
    return cfg, notes


def eligible(cfg: AnnualRunConfig):
    """Who is scored (scoring.score.eligible_in_store: the store's checkups of FY and FY-1
    and its enrollment periods covering the scoring day); nobody eligible is bad input."""
    from scoring.score import eligible_in_store

    store, fy, sc = Path(cfg.store), int(cfg.fiscal_year), cfg.scoring
    with store_readable(store):
        elig = eligible_in_store(store, fy, cfg.day, sc)
    c = elig.counts
    if c["checkup_in_fy"] == 0 and not (sc.fallback_previous_year and c["with_checkup"]):
        raise BadInputError(f"the store {store} has no checkups in FY{fy}")
    release_memory()
    if elig.index.empty:
        raise BadInputError(f"nobody is eligible for scoring in FY{fy} on {cfg.day.date()}")
    return elig


def publish(result: AnnualRunResult, work: Path, out: Path) -> AnnualRunResult:
    """Move what the run made in the staging folder ``work`` into ``out``; paths point there."""
    produced = {p.relative_to(work).parts[0] for p in result.paths.values()}
    swap_in(work, out, produced)
    result.out = out
    result.paths = {k: out / p.relative_to(work) for k, p in result.paths.items()}
    return result


#: Names inside the output folder of its staging folder and lock file, used when they cannot
#: be beside it (:func:`output_place`).
INSIDE_STAGING = f".kenshin{STAGING_SUFFIX}"
INSIDE_LOCK = ".kenshin.lock"


@dataclass(frozen=True)
class OutputPlace:
    """Where a run into an output folder writes: the folder itself (resolved), its staging
    folder and its lock file."""

    target: Path
    stage: Path
    lock: Path


def output_place(out: Path) -> OutputPlace:
    """Check that a run can write ``out`` and say where it stages and locks; before any work.

    A file cannot be created in ``out`` (or, while it does not exist, in its nearest existing
    ancestor): bad input (exit 2, one line), tried with a probe file (``os.access`` says yes to
    root and on read-only mounts). The staging folder is ``.<name>.partial`` beside ``out``,
    except inside ``out`` (``.kenshin.partial``) when ``out`` is on another file system than
    its parent (a mount point: the final moves would cross devices, EXDEV) or its parent cannot
    be written; the lock file is ``.<name>.lock`` beside ``out``, inside it (``.kenshin.lock``)
    only when the parent cannot be written.
    """
    from data.files import unwritable_reason
    from kenshin.paths import check_no_symlink_loop, check_writable_folder, same_device

    check_no_symlink_loop(out, "--out")
    target = Path(out).resolve()
    if target.exists() and not target.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder")
    check_writable_folder(out, "--out")
    parent = target.parent
    parent_ok = unwritable_reason(parent) is None
    if not target.exists():  # made in its parent: on the parent's file system
        return OutputPlace(target, staging_for(target), parent / f".{target.name}.lock")
    inside = not parent_ok or not same_device(target, parent)
    stage = target / INSIDE_STAGING if inside else staging_for(target)
    lock = parent / f".{target.name}.lock" if parent_ok else target / INSIDE_LOCK
    return OutputPlace(target, stage, lock)


@contextmanager
def output_lock(place: OutputPlace, out: Path) -> Iterator[None]:
    """Hold the output folder's lock for the whole run; a second run into the same folder is
    bad input naming the holder's process.

    ``flock`` on the lock file (:func:`output_place`): the kernel releases it when its holder
    dies, so a killed run never leaves a stale lock. The lock file stays (removing it would let
    a third run lock a new file while the second still holds the old one).
    """

    def busy(holder: str) -> Exception:
        return BadInputError(
            f"--out {out}: another kenshin run is writing this output folder (process "
            f"{holder}); wait for it to finish or choose another --out"
        )

    with pid_lock(place.lock, busy):
        yield


def staging_folder(out: Path, seed_letters: bool = True, stage: Path | None = None) -> Path:
    """The folder a run writes into before its outputs are moved into ``out``.

    ``stage`` (default ``.<out name>.partial`` next to ``out``; :func:`output_place` says
    where), inside ``out`` if that cannot be made. What an earlier failed run left there is
    removed, except its ``letters/`` (resume). Without those, the letters of a finished run in
    ``out`` are linked in (same files, no copy), so :func:`scoring.letters.render_letters`
    reuses them.
    """
    target = Path(out).resolve()
    stage = staging_for(target) if stage is None else stage
    try:
        stage.mkdir(parents=True, exist_ok=True)
    except OSError:
        target.mkdir(parents=True, exist_ok=True)
        stage = target / INSIDE_STAGING
        stage.mkdir(exist_ok=True)
    for p in stage.iterdir():
        if p.name != LETTERS:
            _remove(p)
    done, staged = AnnualOutputs(target), AnnualOutputs(stage)
    if seed_letters and not staged.letters.exists() and done.letters_manifest.exists():
        _seed_letters(done, staged)
    return stage


def _seed_letters(src: AnnualOutputs, dst: AnnualOutputs) -> None:
    """Hard-link the PDFs of a finished letters folder, copy its manifest (and journal)."""
    import shutil

    dst.letter_pdfs.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dst.letters, 0o700)
    for name in ("letters_manifest", "letters_journal"):
        if getattr(src, name).exists():  # rewritten in place: never shared
            shutil.copy2(getattr(src, name), getattr(dst, name))
    for pdf in src.letter_pdfs.glob("*.pdf"):
        try:
            os.link(pdf, dst.letter_pdf(pdf.stem))  # render_letters replaces, never rewrites
        except OSError:
            shutil.copy2(pdf, dst.letter_pdf(pdf.stem))


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def discard_staging(stage: Path) -> None:
    """After a failed run: remove the staging folder except the letters it rendered."""
    try:
        for p in stage.iterdir():
            if p.name != LETTERS:
                _remove(p)
        if not any(stage.iterdir()):
            stage.rmdir()
    except OSError:
        pass


def swap_in(stage: Path, out: Path, names: set[str]) -> None:
    """Move the top-level entries ``names`` of ``stage`` into ``out``; remove ``stage``.

    Folders (letters/, report/) replace the earlier ones whole; ``run.json`` comes last. Files
    in ``out`` that this run does not produce are left alone.
    """
    out.mkdir(parents=True, exist_ok=True)
    last = AnnualOutputs(stage).run.name
    order = sorted(names, key=lambda n: (n == last, not (stage / n).is_dir(), n))
    for name in order:
        src, dst = stage / name, out / name
        old = None
        if src.is_dir() and (dst.exists() or dst.is_symlink()):
            old = out / f".{name}.old-{os.getpid()}"
            if old.exists():
                _remove(old)
            os.replace(dst, old)
        elif dst.is_dir() and not dst.is_symlink():
            _remove(dst)
        os.replace(src, dst)
        if old is not None:
            _remove(old)
    _remove(stage)


@dataclass
class Stopwatch:
    """Seconds of each step of the run (``seconds``, in step order), from ``start``."""

    start: float
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t


def _write_outputs(
    cfg: AnnualRunConfig,
    outs: AnnualOutputs,
    model: LoadedModel,
    elig: Eligibility,
    manifest: dict,
    notes: list[str],
    on_step: Callable[[str, int, int], None] | None,
    clock: Stopwatch,
) -> AnnualRunResult:
    """Every output of the run, written into ``outs`` (the staging folder), step by step."""
    step = on_step or (lambda name, done, total: None)
    stamps = score_stamps(cfg, model.summary, manifest)
    with clock.time("score"):
        tally = write_scores(cfg, model, elig, stamps, outs, step)
    with clock.time("select"):
        selection = select_residents(cfg, tally.decisions())
    with clock.time("explain"):
        explained = explain_selected(cfg, model, elig, selection, outs, step)
        selection = with_factors(selection, explained.factors)
    drift = drift_report(model.engine, tally.drift_counts)
    sent = letters_sent(selection, cfg.day)
    paths = write_tables(outs, selection, drift, sent)
    counts = run_counts(elig, selection, explained.residents)
    if cfg.letters:
        with clock.time("letters"):
            letters = write_letters(cfg, model, selection, sent, outs, step)
        paths.update(letters.paths)
        counts.update(letters.counts)
    if cfg.report:
        with clock.time("report"):
            step("report", 0, 1)
            paths.update(_report(cfg, outs, selection, drift, model.summary, counts))
            step("report", 1, 1)
    clock.seconds["total"] = time.perf_counter() - clock.start
    result = AnnualRunResult(outs.root, paths, counts, clock.seconds, model.summary)
    result.notes = list(notes)
    info = run_record(cfg, stamps, notes, counts, tally, clock.seconds, paths, outs.root)
    paths["run"] = write_run_record(outs, info)
    if cfg.log_mlflow:
        result.mlflow_run_id = _log_scoring_run(cfg, info, drift, paths["run"], paths["drift"])
    return result


def score_stamps(cfg: AnnualRunConfig, summary: ModelSummary, manifest: dict) -> dict[str, str]:
    """What every scores row carries of the run (scoring.contracts.SCORE_STAMPS)."""
    return {
        "model_uri": cfg.model_uri,
        "model_version": summary.version,
        "feature_set_version": summary.feature_set_version,
        "config_hash": _config_hash(cfg),
        "store_sha256": manifest.get("store_fingerprint", {}).get("sha256", "unknown"),
        "scoring_date": cfg.day.date().isoformat(),
    }


@dataclass
class ScoreTally:
    """What the run keeps of the scores as they are written chunk by chunk (:meth:`add`)."""

    #: The engine's feature reference (models.drift) of its training rows, if it has one.
    reference: object | None = None
    #: Per feature: counts of the scored residents in the reference's bins.
    drift_counts: dict[str, np.ndarray] = field(default_factory=dict)
    #: Per outcome: residents whose risk and value forecasts disagree (scoring.coherence).
    forecast_conflicts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per scenario and outcome: residents the what-if is offered to (it lowers their risk).
    whatif_offered: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The selection rules: each chunk's letter decisions are made as it is added.
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    #: The selection's row-wise half (scoring.selection.decide) of every chunk: about 40 bytes
    #: a resident, all the run keeps of the scores (the rest is on disk).
    decided: list[pd.DataFrame] = field(default_factory=list)
    #: The pseudonyms the chunks come in, in order (the eligibility index's): the decisions
    #: then keep none of their own (≈ 20 bytes a resident), :meth:`decisions` puts these back.
    pseudonyms: pd.Series | None = None
    added: int = 0

    def add(self, scores: pd.DataFrame, drift_counts: dict[str, np.ndarray]) -> None:
        """Count one chunk's scores and its drift bin counts (``reference.counts`` of its
        feature matrix) and decide its residents' letters (nothing else is kept)."""
        self.merge(count_chunk(scores, drift_counts, self.selection))

    def merge(self, counts: ChunkCounts) -> None:
        """Add one chunk's counts and letter decisions (:func:`count_chunk`)."""
        decided = counts.decided
        if self.pseudonyms is not None:
            _check_order(decided["pseudonym"], self.pseudonyms, self.added)
            decided = decided.drop(columns="pseudonym")
        for name, c in counts.drift_counts.items():
            self.drift_counts[name] = self.drift_counts.get(name, 0) + c
        for o, kinds in counts.forecast_conflicts.items():
            for k, v in kinds.items():
                self.forecast_conflicts.setdefault(o, dict.fromkeys(kinds, 0))[k] += v
        for key, by_outcome in counts.whatif_offered.items():
            offered = self.whatif_offered.setdefault(key, {})
            for outcome, v in by_outcome.items():
                offered[outcome] = offered.get(outcome, 0) + v
        self.decided.append(decided)
        self.added += len(decided)

    def decisions(self) -> pd.DataFrame:
        """Every scored resident's letter decisions, in scoring order (the chunks are
        released)."""
        decided = pd.concat(self.decided, ignore_index=True)
        self.decided = []
        if self.pseudonyms is not None:
            if self.added != len(self.pseudonyms):  # pragma: no cover - write_scores counts
                raise RuntimeError(f"{self.added:,} of {len(self.pseudonyms):,} were scored")
            decided.insert(0, "pseudonym", self.pseudonyms.reset_index(drop=True))
        return decided


@dataclass
class ChunkCounts:
    """What :class:`ScoreTally` keeps of one chunk of scores (:func:`count_chunk`)."""

    drift_counts: dict[str, np.ndarray]
    forecast_conflicts: dict[str, dict[str, int]]
    whatif_offered: dict[str, dict[str, int]]
    #: The chunk's letter decisions (scoring.selection.decide), pseudonym first.
    decided: pd.DataFrame


def count_chunk(
    scores: pd.DataFrame, drift_counts: dict[str, np.ndarray], selection: SelectionConfig
) -> ChunkCounts:
    """One chunk's forecast conflicts, what-if offers and letter decisions, beside its drift
    bin counts: computed where the chunk is scored (a worker process, kenshin.workers), so the
    run's own process only adds them up."""
    offered: dict[str, dict[str, int]] = {}
    for c in scores.columns[scores.columns.str.contains("__", regex=False)]:
        outcome, key = c.removeprefix("risk_").split("__", 1)
        offered.setdefault(key, {})[outcome] = int(scores[c].notna().sum())
    return ChunkCounts(
        drift_counts, conflict_counts(conflicts(scores)), offered, decide(scores, selection)
    )


@dataclass
class FinishedChunk:
    """A chunk of scores as the run writes and counts it (:func:`finish_chunk`)."""

    scores: pd.DataFrame  # stamped and checked against the scores contract
    csv: bytes  # its CSV rows, no header (:func:`csv_rows`)
    counts: ChunkCounts


def finish_chunk(
    scores: pd.DataFrame,
    drift_counts: dict[str, np.ndarray],
    schema,
    stamps: dict[str, object],
    selection: SelectionConfig,
) -> FinishedChunk:
    """A scored chunk stamped with the run (``stamps``, fiscal year included), checked against
    ``schema``, turned into CSV rows and counted: everything of a chunk that does not need the
    chunks before it, so that worker processes do it beside the scoring. Text columns are made
    ``string`` here, as the contract declares them (pandera would convert them; then the
    check is data.schema_check's single pass)."""
    n = len(scores)
    text = {k: pd.array(np.full(n, v, dtype=object), dtype="string") for k, v in stamps.items()
            if isinstance(v, str)}  # fmt: skip
    scores = scores.assign(**{**stamps, **text})
    if scores["pseudonym"].dtype == object:
        scores["pseudonym"] = scores["pseudonym"].astype("string")
    scores = validated(schema, scores)
    return FinishedChunk(scores, csv_rows(scores), count_chunk(scores, drift_counts, selection))


def _check_order(got: pd.Series, pseudonyms: pd.Series, start: int) -> None:
    """A scored chunk's pseudonyms are the next of ``pseudonyms`` (compared in Arrow)."""
    from scoring.keys import arrow_text

    want = arrow_text(pseudonyms.iloc[start : start + len(got)])
    text = arrow_text(got)
    if len(want) != len(text) or (len(text) and not pc.all(pc.equal(text, want)).as_py()):
        raise RuntimeError("scores came back out of the eligibility index's order")


#: Rows of a table checked against its contract or turned into CSV text at a time: each cell
#: is copied a few times over meanwhile (500,000 selection rows at a time added ≈ 0.25 GB to
#: the peak, bench/bench_driver.py). A row's check and text do not depend on the rows beside
#: it.
CSV_PART_ROWS = 100_000


#: How the output tables' CSV files write dates.
DATE_FORMAT = "%Y-%m-%d"


def csv_rows(frame: pd.DataFrame) -> bytes:
    """``frame``'s rows as spreadsheet-safe CSV (data.files.csv_bytes), no header, made
    :data:`CSV_PART_ROWS` rows at a time."""
    return b"".join(
        csv_bytes(frame.iloc[s : s + CSV_PART_ROWS], header=False, date_format=DATE_FORMAT)
        for s in range(0, len(frame), CSV_PART_ROWS)
    )


#: Rows of a row group of ``scores.parquet``, whatever the chunks it was written in: the
#: chunks' size depends on the worker processes (the machine's cores) or Spark's ranges, and
#: the file's bytes must not.
SCORES_ROW_GROUP = 65_536


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns an output table's Parquet file dictionary-encodes: all but floats (risks,
    forecasts, contributions: nearly every value distinct) and the pseudonym (one a row).
    Trying a dictionary on those and falling back took ≈ 40% of the scores file's writing
    and made it larger (22.5 against 19.2 MB for 41,519 rows)."""
    return [f.name for f in schema if not pa.types.is_floating(f.type) and f.name != "pseudonym"]


class TableWriter:
    """One output table (Parquet, and CSV if ``csv`` is given) written chunk by chunk into temp
    files moved into place when the last chunk is written. Every chunk is written with the
    first chunk's Parquet schema (pandas metadata included); ``empty`` (the table's columns and
    types, no rows) is written if no chunk came. The CSV's cells are spreadsheet-safe
    (data.files.csv_bytes). ``row_group``: Parquet row groups of exactly that many rows (the
    last one fewer), so the file's bytes do not depend on how the rows were chunked (at most
    that many rows wait in memory); default: a row group per chunk written."""

    def __init__(
        self,
        parquet: Path,
        csv: Path | None = None,
        empty: pd.DataFrame | None = None,
        row_group: int | None = None,
    ) -> None:
        self.targets = (parquet, csv)
        self.parquet_tmp = parquet.with_name(f".{parquet.name}.tmp")
        self.csv_tmp = None if csv is None else csv.with_name(f".{csv.name}.tmp")
        self.empty = empty
        self.row_group = row_group
        self._writer: pq.ParquetWriter | None = None
        self._waiting: list[pa.Table] = []

    def write(self, frame: pd.DataFrame, csv: bytes | None = None) -> None:
        """Append ``frame``; ``csv``: its CSV rows already made (:func:`csv_rows`)."""
        first = self._writer is None
        schema = None if self._writer is None else self._writer.schema
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.parquet_tmp,
                table.schema,
                compression="zstd",
                use_dictionary=dictionary_columns(table.schema),
            )
        if self.row_group is None:
            self._writer.write_table(table)
        else:
            self._waiting.append(table)
            self._flush(whole_groups_only=True)
        if self.csv_tmp is not None:
            with open(self.csv_tmp, "wb" if first else "ab") as f:
                if first:
                    f.write(csv_bytes(frame.iloc[:0], header=True, date_format=DATE_FORMAT))
                f.write(csv_rows(frame) if csv is None else csv)

    def __enter__(self) -> TableWriter:
        return self

    def _flush(self, whole_groups_only: bool) -> None:
        """Write the waiting rows in row groups of ``row_group`` (only whole ones: the rest
        waits for the next chunk)."""
        rows, size = sum(t.num_rows for t in self._waiting), self.row_group
        ready = rows - rows % size if whole_groups_only else rows
        if not ready:
            return
        waiting = pa.concat_tables(self._waiting) if len(self._waiting) > 1 else self._waiting[0]
        # One contiguous array per column: the writer's pages and its switch from dictionary
        # to plain encoding (a row group's 65,536 pseudonyms fill the 1 MB dictionary) happen
        # at batch boundaries, which would otherwise follow the chunks.
        self._writer.write_table(waiting.slice(0, ready).combine_chunks(), row_group_size=size)
        rest = waiting.slice(ready)
        self._waiting = [rest] if rest.num_rows else []

    def __exit__(self, kind, value, tb) -> None:
        if kind is None and self._writer is None and self.empty is not None:
            self.write(self.empty)
        if kind is None and self._waiting:
            self._flush(whole_groups_only=False)
        if self._writer is not None:
            self._writer.close()
        if kind is None:
            os.replace(self.parquet_tmp, self.targets[0])
            if self.csv_tmp is not None:
                os.replace(self.csv_tmp, self.targets[1])


def write_scores(
    cfg: AnnualRunConfig,
    model: LoadedModel,
    elig: Eligibility,
    stamps: dict[str, str],
    outs: AnnualOutputs,
    step: Callable[[str, int, int], None],
) -> ScoreTally:
    """Score the eligible residents chunk by chunk (:func:`score_chunks`, or the same chunks
    computed on Spark: kenshin.spark.score) into ``outs.scores`` / ``outs.scores_csv``, each
    stamped with the run and checked against the scores contract; the tally keeps what the
    next steps need.

    Nothing of a chunk outlives it but its tally (counts and letter decisions): the memory of
    the run is a chunk's, plus about 40 bytes a resident (bench/README.md)."""
    store, fy, sc = Path(cfg.store), int(cfg.fiscal_year), cfg.scoring
    schema = scores_schema(tuple(model.engine.outcomes), sc.scenario_keys)

    def finish(scores: pd.DataFrame, drift_counts: dict[str, np.ndarray]) -> FinishedChunk:
        return finish_chunk(scores, drift_counts, schema, {"fiscal_year": fy, **stamps},
                            cfg.selection)  # fmt: skip

    if cfg.engine == "spark":
        from kenshin.spark import open_session
        from kenshin.spark.score import spark_score_chunks

        session, settings = open_session(cfg.spark_master, cfg.spark_config)
        chunks: Iterator[FinishedChunk] = spark_score_chunks(
            session, store, fy, elig.index, model.engine, sc, model.feature_config,
            Path(settings.scratch or outs.root), settings, finish=finish,
        )  # fmt: skip
    else:
        chunks = score_chunks(
            store, fy, elig.index, model.engine, sc, model.feature_config, finish=finish
        )
    tally = ScoreTally(
        getattr(model.engine, "feature_reference", None),
        selection=cfg.selection,
        pseudonyms=elig.index["pseudonym"],
    )
    n, done = len(elig.index), 0
    with TableWriter(outs.scores, outs.scores_csv, row_group=SCORES_ROW_GROUP) as writer:
        for chunk in chunks:
            tally.merge(chunk.counts)
            writer.write(chunk.scores, chunk.csv)
            done += len(chunk.scores)
            del chunk  # before the next chunk is read, not after
            release_memory()
            step("score", done, n)
    return tally


def score_chunks(
    store: Path,
    fiscal_year: int,
    index: pd.DataFrame,
    engine,
    config: ScoringConfig,
    feature_config,
    workers: int | None = None,
    finish: Callable[[pd.DataFrame, dict[str, np.ndarray]], object] | None = None,
) -> Iterator:
    """The pandas engine: (scores, drift bin counts) per chunk of at most
    ``config.chunk_size`` residents of ``index``, in its order, each chunk's checkups read
    from the store (scoring.score.score_chunk; the contract columns minus the run's stamps),
    or ``finish(scores, drift_counts)`` of each when given (:func:`finish_chunk`).

    The chunks are computed, and finished, in ``workers`` forked processes (kenshin.workers;
    default ``KENSHIN_SCORE_WORKERS``): a chunk's scores do not depend on where or beside
    which residents it is computed (tests/scoring/test_annual.py)."""
    workers = SCORE_WORKERS if workers is None else workers

    def one(bounds: tuple[int, int]):
        chunk = index.iloc[bounds[0] : bounds[1]].reset_index(drop=True)
        return score_range(store, fiscal_year, chunk, engine, config, feature_config, finish)

    bounds = chunk_bounds(len(index), config.chunk_size, workers)
    # a worker gives back what a chunk left before the next one (the run does so itself)
    yield from ordered_map(one, bounds, workers, after_each=release_memory)


def score_range(
    store: Path,
    fiscal_year: int,
    chunk: pd.DataFrame,
    engine,
    config: ScoringConfig,
    feature_config,
    finish: Callable[[pd.DataFrame, dict[str, np.ndarray]], object] | None = None,
):
    """One chunk of index rows scored: its residents' checkups read from the store,
    (scores, drift bin counts) of :func:`scoring.score.score_chunk`, or ``finish`` of them.
    What a worker process (:func:`score_chunks`) or a Spark task (kenshin.spark.score) runs."""
    ref = getattr(engine, "feature_reference", None)
    history = _chunk_history(store, fiscal_year, chunk)
    scores, X = score_chunk(engine, history, chunk, config, feature_config)
    counts = ref.counts(X) if ref is not None else {}
    del history, X  # only the scores go on
    return (scores, counts) if finish is None else finish(scores, counts)


def explain_range(
    store: Path, fiscal_year: int, chunk: pd.DataFrame, engine, config: ScoringConfig,
    feature_config,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(explanations, factors) of one chunk of index rows (scoring.score.explain_chunk), its
    residents' checkups read from the store."""
    history = _chunk_history(store, fiscal_year, chunk)
    return explain_chunk(engine, history, chunk, feature_config, top=config.explain_top)


def _chunk_history(store: Path, fiscal_year: int, chunk: pd.DataFrame) -> pd.DataFrame:
    """The stored checkups, up to ``fiscal_year``, of the residents of ``chunk`` (index rows)."""
    from data.store import read_checkup_history

    with store_readable(store):
        return read_checkup_history(store, chunk["pseudonym"], fiscal_year)


def release_memory() -> None:
    """Free what a step left behind and give it back to the system before the next one.

    A scored chunk leaves frames in reference cycles that only Python's full garbage
    collection frees: left to its own schedule, two to four chunks' worth (≈ 0.5 GB at 1M
    residents) waited for it, on top of the next chunk's peak. Freed memory otherwise stays
    with the process too: Arrow's allocator keeps its pages, and glibc keeps freed heap
    (raising its mmap threshold after large frees, so later large arrays come from the heap
    too). Only garbage is collected and only freed memory returned; nothing is computed
    differently. About 0.1-0.2 s a call (bench/README.md); ≈ 0.03 s at 100k in a run, whose
    long-lived objects are left out (:func:`frozen_garbage_collector`).
    """
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            _libc().malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


@contextmanager
def frozen_garbage_collector() -> Iterator[None]:
    """Leave what is alive now (modules, the model, the eligibility index: ≈ 0.4M objects at
    100k residents, just collected by :func:`eligible`) out of Python's garbage collections
    until the block ends: each :func:`release_memory` then scans only what was made since
    (≈ 0.03 s, not ≈ 0.2 s). Garbage made in the block is collected as before; what was alive
    at its start and becomes garbage in it waits for the block's end."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _libc():
    import ctypes

    return ctypes.CDLL(None)


def select_residents(cfg: AnnualRunConfig, decided: pd.DataFrame) -> pd.DataFrame:
    """The selection (scoring.selection.select) of the scored residents, ``fiscal_year`` second,
    from their letter decisions (:meth:`ScoreTally.decisions`).

    Reads the opt-outs and, letters on, whether each contact can be addressed (codes only:
    checked before the selection, so a resident who cannot be written to takes no letter or
    control place); earlier letters from ``cfg.letter_history``. Its text columns are held as
    categories (:func:`held`; :func:`as_written` gives them back).
    """
    store = Path(cfg.store)
    with store_readable(store):
        opted_out = _opted_out(store)
        release_memory()  # each reads every contact a batch at a time: give the batches back
        contacts = contact_status(store, decided["pseudonym"]) if cfg.letters else None
        release_memory()
    selection = select_decided(
        decided,
        cfg.selection,
        opted_out=opted_out,
        last_lettered=_letter_history(cfg.letter_history),
        scoring_date=cfg.day,
        contact_problems=contacts,
        categories=True,  # held from its codes: no text column made only to be factorized
    )
    selection.insert(1, "fiscal_year", int(cfg.fiscal_year))
    return held(selection)


@dataclass(frozen=True)
class Explained:
    """What the run keeps of the explanations (written to ``outs.explanations``)."""

    #: pseudonym, outcome, factor_1, factor_2, factor_3 of the selection's rows only
    factors: pd.DataFrame
    residents: int


def explain_selected(
    cfg: AnnualRunConfig,
    model: LoadedModel,
    elig: Eligibility,
    selection: pd.DataFrame,
    outs: AnnualOutputs,
    step: Callable[[str, int, int], None],
) -> Explained:
    """SHAP explanations (scoring.score.explain) of everyone the selection put in an arm,
    chunk by chunk (:func:`explain_chunks`, or the same chunks on Spark's executors:
    kenshin.spark.score) into ``outs.explanations``, each chunk checked against its contract.

    Only the factors of the selection's own rows (resident × the outcome of their letter) are
    kept: the run's memory does not grow with the number of residents explained."""
    in_arm = selection.loc[selection["arm"].notna(), ["pseudonym", "outcome"]]
    who = elig.index[elig.index["pseudonym"].isin(in_arm["pseudonym"])].sort_values(
        "pseudonym", ignore_index=True
    )
    store, fy, sc = Path(cfg.store), int(cfg.fiscal_year), cfg.scoring
    # Only residents in an arm are explained: their topics are all the factors are kept for.
    topics = in_arm.astype("string")
    empty = None  # written only when no resident is explained
    if not len(who):
        empty = EXPLANATIONS_SCHEMA.validate(
            pd.DataFrame(columns=list(EXPLANATIONS_SCHEMA.columns))
        )
        chunks: Iterator[tuple[pd.DataFrame, pd.DataFrame]] = iter(())
    elif cfg.engine == "spark":
        from kenshin.spark import open_session
        from kenshin.spark.score import spark_explain_chunks

        session, settings = open_session(cfg.spark_master, cfg.spark_config)
        chunks = spark_explain_chunks(
            session, store, fy, who, model.engine, sc, model.feature_config,
            Path(settings.scratch or outs.root), settings,
        )  # fmt: skip
    else:
        chunks = explain_chunks(store, fy, who, model.engine, sc, model.feature_config)
    kept: list[pd.DataFrame] = []
    done = 0
    with TableWriter(outs.explanations, empty=empty) as writer:
        for explanations, factors in chunks:
            writer.write(validated(EXPLANATIONS_SCHEMA, explanations))
            factors = factors.astype({"pseudonym": "string", "outcome": "string"})
            kept.append(factors.merge(topics, on=["pseudonym", "outcome"], how="inner"))
            done += factors["pseudonym"].nunique()
            del explanations, factors
            release_memory()
            step("explain", done, len(who))
    if done != len(who):
        raise RuntimeError(f"{done:,} of {len(who):,} residents in an arm were explained")
    if not kept:
        kept = [pd.DataFrame(columns=["pseudonym", "outcome", *(f"factor_{i}" for i in (1, 2, 3))])]
    return Explained(pd.concat(kept, ignore_index=True), int(len(who)))


def explain_chunks(
    store: Path,
    fiscal_year: int,
    who: pd.DataFrame,
    engine,
    config: ScoringConfig,
    feature_config,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """The pandas engine: (explanations, factors) per chunk of ``config.explain_chunk_size``
    residents of ``who`` (their index rows), each chunk's checkups read from the store
    (scoring.score.explain_chunk)."""
    size = config.explain_chunk_size
    for start in range(0, len(who), size):
        chunk = who.iloc[start : start + size].reset_index(drop=True)
        yield explain_range(store, fiscal_year, chunk, engine, config, feature_config)


def with_factors(selection: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """The selection with each resident's top three factors for the outcome of their row
    (missing where none were kept), as categories (:data:`HELD_AS_CATEGORIES`). Matched by
    position in Arrow, only on the rows of residents with factors: no copy of the selection's
    pseudonyms as Python strings or keys, nor a merge over every scored resident."""
    from scoring.keys import PseudonymSet, arrow_text, positions

    n = len(selection)
    f = factors.drop_duplicates(["pseudonym", "outcome"], keep="first")
    text, wanted = arrow_text(selection["pseudonym"]), arrow_text(f["pseudonym"])
    among = PseudonymSet(wanted)
    near = np.flatnonzero(
        np.concatenate(
            [np.zeros(0, dtype=bool)]
            + [among.contains(text.slice(s, _LOOKUP_ROWS)) for s in range(0, n, _LOOKUP_ROWS)]
        )
    )
    at, found = positions(wanted, text.take(near))
    at = near[at] if len(near) else np.zeros(len(at), dtype=np.int64)
    outcome = np.full(len(at), None, dtype=object)
    outcome[found] = selection["outcome"].iloc[at[found]].to_numpy(dtype=object, na_value=None)
    same = found & (outcome == f["outcome"].to_numpy(dtype=object, na_value=None))
    rows = at[same]
    selection = selection.copy(deep=False)
    for i in (1, 2, 3):
        got, names = pd.factorize(pd.array(f[f"factor_{i}"], dtype="string")[same])
        codes = np.full(n, -1, dtype=np.int32)
        codes[rows] = got
        selection[f"factor_{i}"] = pd.Categorical.from_codes(codes, categories=names)
    return selection


#: Residents' rows looked up at a time.
_LOOKUP_ROWS = 1_000_000

#: The selection's text columns of a few distinct values, held as categories from
#: :func:`select_residents` on (a byte a resident, not a pointer: ≈ 0.5 GB at 10M with the
#: factors) and turned back into the text of its contract where rows leave the run
#: (:func:`as_written`: the tables, the letters, the report).
HELD_AS_CATEGORIES = (
    "letter_type", "outcome", "arm", "reason_detail", "factor_1", "factor_2", "factor_3",
)  # fmt: skip


def held(selection: pd.DataFrame) -> pd.DataFrame:
    """``selection`` (scoring.selection.select's table) with :data:`HELD_AS_CATEGORIES` as
    categories, in place, a column at a time."""
    for c in HELD_AS_CATEGORIES:
        if c in selection and not isinstance(selection[c].dtype, pd.CategoricalDtype):
            selection[c] = selection[c].astype("category")
    return selection


def as_written(selection: pd.DataFrame) -> pd.DataFrame:
    """(Some rows of) a :func:`held` selection with its text columns as the text they were
    (``string``): the frame whose bytes the run writes."""
    held_ = [
        c
        for c in HELD_AS_CATEGORIES
        if c in selection and isinstance(selection[c].dtype, pd.CategoricalDtype)
    ]
    return selection.astype(dict.fromkeys(held_, "string")) if held_ else selection


def drift_report(engine, drift_counts: dict[str, np.ndarray]) -> pd.DataFrame:
    """PSI per feature (models.drift): the scored population vs the engine's training rows."""
    from features.declarations import DECLARATIONS

    labels = {d.name: d.ja for d in DECLARATIONS}
    ref = getattr(engine, "feature_reference", None)
    return drift_table(ref, drift_counts, list(engine.feature_names), labels)


def letters_sent(selection: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """``letters_sent.csv``: the residents marked sent and the letter date (the scoring day)."""
    sent = selection.loc[selection["sent"], ["pseudonym"]]
    return sent.assign(letter_date=pd.array([day.date().isoformat()] * len(sent), dtype="string"))


def write_tables(
    outs: AnnualOutputs,
    selection: pd.DataFrame,
    drift: pd.DataFrame,
    sent: pd.DataFrame,
) -> dict[str, Path]:
    """Selection and drift into ``outs``, after every table (``sent`` too) is checked against
    its contract (checked, not coerced: the bytes written stay those of the frames, the
    selection's :func:`as_written`, a part at a time). The paths of the run's tables so far
    (scores and explanations were written chunk by chunk)."""
    validate_in_parts(SELECTION_SCHEMA, selection)
    validated(DRIFT_SCHEMA, drift, lazy=True)
    validated(LETTERS_SENT_SCHEMA, sent, lazy=True)
    with TableWriter(outs.selection, outs.selection_csv) as writer:
        for start in range(0, max(len(selection), 1), TABLE_PART_ROWS):
            writer.write(as_written(selection.iloc[start : start + TABLE_PART_ROWS]))
    _write_csv(drift, outs.drift)
    return {
        "scores": outs.scores, "scores_csv": outs.scores_csv, "selection": outs.selection,
        "selection_csv": outs.selection_csv, "explanations": outs.explanations,
        "drift": outs.drift,
    }  # fmt: skip


#: Rows of a per-resident table written at a time (a Parquet row group each), checked and
#: made CSV text by smaller parts (:data:`CSV_PART_ROWS`), never the whole table (≈ 1 GB of
#: CSV alone for 10M residents).
TABLE_PART_ROWS = 500_000


def validate_in_parts(schema, frame: pd.DataFrame, rows: int = CSV_PART_ROWS) -> None:
    """``schema.validate(frame, lazy=True)``, ``rows`` at a time (:func:`as_written`); its
    uniqueness of ``pseudonym`` over the whole frame, checked on sorted keys
    (scoring.keys.hex_keys) or in Arrow (the rows that break it are then validated together,
    so the error is the schema's own)."""
    from scoring.keys import arrow_text

    part = copy.deepcopy(schema)  # the schema's checks but the whole-frame one
    part.unique = None
    for start in range(0, max(len(frame), 1), rows):
        validated(part, as_written(frame.iloc[start : start + rows]), lazy=True)
    text = arrow_text(frame["pseudonym"])
    if not _distinct(text):
        counts = pc.value_counts(text)
        twice = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        schema.validate(as_written(frame[pc.is_in(text, value_set=twice).to_numpy()]), lazy=True)


def _distinct(text: pa.ChunkedArray) -> bool:
    """Whether no value of ``text`` is there twice: on 64-bit keys when they are the store's
    hex pseudonyms (8 bytes a row; Arrow's hash table of 10M pseudonyms took ≈ 1.2 GB)."""
    from scoring.keys import hex_keys

    keys = hex_keys(text) if len(text) > 1 else None
    if keys is None:
        return pc.count_distinct(text, mode="all").as_py() == len(text)
    if not (keys[1:] > keys[:-1]).all():  # the run's selection comes sorted
        keys.sort()
    return not (keys[1:] == keys[:-1]).any()


def run_counts(elig: Eligibility, selection: pd.DataFrame, explained: int) -> dict[str, int]:
    """Residents per step: eligibility, scored, selection reasons, explained."""
    counts = {**elig.counts, "scored": len(elig.index)}
    counts.update({f"reason_{k}": int(v) for k, v in selection["reason"].value_counts().items()})
    counts["values_to_verify"] = int(names_values_to_verify(selection["reason_detail"]).sum())
    counts["explained"] = int(explained)
    return counts


@dataclass(frozen=True)
class LettersMade:
    paths: dict[str, Path]
    counts: dict[str, int]


def write_letters(
    cfg: AnnualRunConfig,
    model: LoadedModel,
    selection: pd.DataFrame,
    sent: pd.DataFrame,
    outs: AnnualOutputs,
    step: Callable[[str, int, int], None],
) -> LettersMade:
    """The letters of the residents marked sent into ``outs.letters`` (the only step that reads
    names and addresses: :func:`_letter_requests`), and ``letters_sent.csv``.

    The selection, ``letters_sent.csv`` and the letters printed name the same residents.
    """
    from scoring.letters import LetterConfig, render_letters
    from scoring.letters.render import FORECAST_WITHHELD

    requests = _letter_requests(Path(cfg.store), selection, outs.scores, cfg)
    paths: dict[str, Path] = {}
    counts: dict[str, int] = {}
    counts["letters_requested"] = len(requests)
    counts["letters_rendered"] = counts["letters_reused"] = 0
    printed: set[str] = set()
    if len(requests):
        requests["horizon_years"] = model.horizon_years
        runner = None
        if cfg.engine == "spark":  # typeset and written on the executors
            from kenshin.spark.letters import letter_runner

            runner = letter_runner(cfg.spark_master, cfg.spark_config)
        made = render_letters(
            requests,
            outs.letters,
            LetterConfig(workers=cfg.letter_workers),
            on_progress=lambda done, total: step("letters", done, total),
            runner=runner,
        )
        paths["letters"] = outs.letters
        paths["letters_manifest"] = outs.letters_manifest
        counts["letters_rendered"] = made.rendered
        counts["letters_reused"] = made.skipped
        counts["letters_characters_replaced"] = int(made.frame["replaced_characters"].sum())
        # Advice letters whose forecast table contradicted the risk (scoring.coherence).
        notes_col = made.frame["notes"].fillna("").astype(str)
        counts["letters_forecast_withheld"] = int(
            notes_col.str.contains(FORECAST_WITHHELD, regex=False).sum()
        )
        printed = set(made.frame["pseudonym"])
    if printed != set(sent["pseudonym"]):
        raise RuntimeError(
            f"{len(set(sent['pseudonym']) - printed)} resident(s) marked sent have no letter "
            f"and {len(printed - set(sent['pseudonym']))} letter(s) were not selected"
        )
    paths["letters_sent"] = outs.letters_sent
    _write_csv(sent, outs.letters_sent)
    return LettersMade(paths, counts)


def run_record(
    cfg: AnnualRunConfig,
    stamps: dict[str, str],
    notes: list[str],
    counts: dict[str, int],
    tally: ScoreTally,
    seconds: dict[str, float],
    paths: dict[str, Path],
    root: Path,
) -> dict:
    """``run.json``: stamps, counts, timings and the files of the run (relative to ``root``)."""
    n = counts["scored"]
    return {
        "fiscal_year": int(cfg.fiscal_year),
        **stamps,
        "letters": cfg.letters,
        "notes": list(notes),
        "counts": counts,
        "forecast_conflicts": tally.forecast_conflicts,
        "whatif_offered": tally.whatif_offered,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "residents_per_second": round(n / seconds["score"], 1) if seconds["score"] else None,
        "drift_reference_fiscal_year": getattr(tally.reference, "fiscal_year", None),
        "finished_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "files": {k: str(p.relative_to(root)) for k, p in paths.items() if p.is_relative_to(root)},
    }


def write_run_record(outs: AnnualOutputs, info: dict) -> Path:
    """``run.json`` (the last file of the run)."""
    atomic_write(outs.run, (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode())
    return outs.run


def _config_hash(cfg: AnnualRunConfig) -> str:
    import hashlib

    text = cfg.scoring.digest() + cfg.selection.model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _letter_requests(
    store: Path, selection: pd.DataFrame, scores_path: Path, cfg: AnnualRunConfig
) -> pd.DataFrame:
    """LetterRequest rows for the letters being sent: scores + factors + contacts (PII)."""
    from data.store import read_contacts
    from scoring.letters.schema import contact_problems, normalise_postal_code

    sent = as_written(selection.loc[selection["sent"]]).reset_index(drop=True)
    if sent.empty:
        return pd.DataFrame()
    sent["pseudonym"] = sent["pseudonym"].to_numpy(dtype=object)  # as the scores read back
    pids = sent["pseudonym"].astype(str).tolist()
    scores = pd.read_parquet(scores_path, filters=[("pseudonym", "in", pids)])
    df = sent[["pseudonym", "letter_type", "outcome", "factor_1", "factor_2", "factor_3"]].merge(
        scores, on="pseudonym", how="left", validate="one_to_one"
    )
    topic = df["outcome"].astype(str).to_numpy()
    pick = {
        c: np.full(len(df), None, dtype=object) for c in ("risk", "risk_after", "best_scenario")
    }
    for o in OUTCOMES:
        rows = topic == o
        if rows.any() and f"risk_{o}" in df:
            for col in pick:
                pick[col][rows] = df.loc[rows, f"{col}_{o}"].to_numpy(dtype=object)
    risk = pd.to_numeric(pd.Series(pick["risk"]), errors="coerce").to_numpy()
    after = pd.to_numeric(pd.Series(pick["risk_after"]), errors="coerce").to_numpy()
    scenario = pd.Series(pick["best_scenario"], dtype="string")
    advice = df["letter_type"].eq("advice").to_numpy()
    with store_readable(store):
        contacts = read_contacts(store, pids)
    cols = ["pseudonym", "person_id", "name", "name_kana", "postal_code", "address", "language"]
    for col in cols:
        if col not in contacts:
            contacts[col] = pd.NA
    contacts = contacts[cols].assign(postal_code=normalise_postal_code(contacts["postal_code"]))
    df = df.merge(contacts, on="pseudonym", how="left", validate="one_to_one")
    df["risk"] = np.where(advice, risk, np.nan)
    df["risk_band"] = np.where(advice, cfg.scoring.risk_bands.band(risk), None)
    has = advice & scenario.notna().to_numpy()
    df["whatif_scenario"] = pd.array(
        np.where(has, scenario.to_numpy(dtype=object), None), dtype="string"
    )
    df["whatif_risk_before"] = np.where(has, risk, np.nan)
    df["whatif_risk_after"] = np.where(has, after, np.nan)
    df["tg_fasting"] = pd.to_numeric(df["blood_draw_timing"], errors="coerce").fillna(2).eq(2)
    # Where the letter's risk and its outcome's value forecasts disagree, the letter keeps the
    # risk (it chose the resident) and withholds the forecast table (scoring.coherence).
    kinds = conflicts(df)
    withheld = np.full(len(df), "", dtype=object)
    for o in kinds.columns:
        rows = advice & (topic == o)
        withheld[rows] = kinds.loc[rows, o].to_numpy(dtype=object)
    df["forecast_withheld"] = pd.array(withheld, dtype="string")
    df["fiscal_year"] = cfg.fiscal_year
    # The selection gave a letter only to residents whose contact meets the letter contract
    # (contact_status): every row here can be addressed.
    bad = contact_problems(df[["name", "postal_code", "address"]]) != ""
    if bad.any():
        raise RuntimeError(f"{int(bad.sum())} selected resident(s) cannot be addressed")
    return df


def _report(
    cfg: AnnualRunConfig,
    outs: AnnualOutputs,
    selection: pd.DataFrame,
    drift: pd.DataFrame,
    summary: ModelSummary,
    counts: dict[str, int],
) -> dict[str, Path]:
    """The staff report (scoring.report) in ``outs.report``: HTML with every explained
    resident, PDF."""
    from scoring.report import ReportConfig, ReportInputs, ScenarioLabel, build_report

    inputs = ReportInputs(
        scores=pd.read_parquet(outs.scores),
        selection=as_written(selection),
        explanations=pd.read_parquet(outs.explanations),
        drift=drift,
        model=summary,
        fiscal_year=cfg.fiscal_year,
        scoring_date=cfg.day.date(),
        scenarios=tuple(ScenarioLabel(s.key, s.label_ja) for s in cfg.scoring.scenarios),
        summary={k: int(v) for k, v in counts.items()},
    )
    built = build_report(
        inputs, outs.report, config=ReportConfig(pdf_residents=cfg.report_pdf_residents)
    )
    paths = {"report_html": Path(built.html)}
    if built.pdf is not None:
        paths["report_pdf"] = Path(built.pdf)
    return paths


def _log_scoring_run(
    cfg: AnnualRunConfig, info: dict, drift: pd.DataFrame, run_json: Path, drift_path: Path
) -> str:
    """An MLflow run of kind ``score``: parameters, counts and drift; no resident rows."""
    import mlflow

    from models.registry import _own_run, configure_tracking

    exp_id = configure_tracking(cfg.workdir)
    with _own_run(exp_id, f"score FY{cfg.fiscal_year}") as run:
        mlflow.set_tags({"kenshin.kind": "score", "model_uri": cfg.model_uri})
        mlflow.log_params({k: info[k] for k in ("fiscal_year", *SCORE_STAMPS)})
        metrics = {f"count.{k}": float(v) for k, v in info["counts"].items()}
        metrics.update({f"seconds.{k}": float(v) for k, v in info["seconds"].items()})
        if info.get("residents_per_second"):
            metrics["residents_per_second"] = float(info["residents_per_second"])
        metrics["drift.features_shifted"] = float((drift["status"] == "shift").sum())
        metrics["drift.features_watch"] = float((drift["status"] == "watch").sum())
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(run_json))
        if drift_path.exists():
            mlflow.log_artifact(str(drift_path))
        return run.info.run_id


# ------------------------------------------------------------------------------------------
# CLI edge
# ------------------------------------------------------------------------------------------


def run_scoring_command(
    store: Path,
    year: int,
    out: Path,
    model: str,
    workdir: Path,
    scoring_config: Path | None,
    selection_config: Path | None,
    scoring_date: str | None,
    letter_history: Path | None,
    letters: bool,
    report: bool,
    bar=None,
    letter_budget: int | None = None,
    report_pdf_residents: int = 2000,
    engine: str = "pandas",
    spark_master: str | None = None,
    spark_config: Path | None = None,
    compiled_prediction: str | None = None,
) -> AnnualRunResult:
    """Parse the command's options into :class:`AnnualRunConfig` and run it with a progress bar.

    ``letter_budget`` (the demo's) caps both advice and see-doctor letters. ``engine="spark"``:
    its settings, pyspark and Java are checked here, before any work (exit 2, one line).
    """
    from pydantic import ValidationError

    from scoring.score import load_scoring_config
    from scoring.selection import Budget, load_config

    try:
        scoring = load_scoring_config(scoring_config)
        selection = load_config(selection_config)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise BadInputError(
            f"invalid configuration ({e.error_count()} error(s)): {where}: {first['msg']}"
        ) from None
    except (OSError, ValueError) as e:
        raise BadInputError(f"invalid configuration: {e}") from None
    if letter_budget is not None:
        budget = Budget(advice=letter_budget, see_doctor=letter_budget)
        selection = selection.model_copy(update={"budget": budget})
    day = None
    if scoring_date:
        try:
            day = date.fromisoformat(scoring_date)
        except ValueError:
            raise BadInputError(f"--scoring-date {scoring_date!r} is not YYYY-MM-DD") from None
    cfg = AnnualRunConfig(
        store=Path(store), fiscal_year=year, out=Path(out), workdir=Path(workdir),
        model_uri=model, scoring=scoring, selection=selection, scoring_date=day,
        letters=letters, report=report, letter_history=letter_history,
        report_pdf_residents=report_pdf_residents, engine=engine, spark_master=spark_master,
        spark_config=spark_config,
    )  # fmt: skip
    if compiled_prediction is not None:
        cfg = replace(cfg, compiled_prediction=compiled_prediction)
    if engine == "spark":
        from kenshin.spark.session import check_prerequisites, load_spark_settings

        load_spark_settings(spark_config)
        check_prerequisites()
    tasks: dict[str, int] = {}

    def on_step(name: str, done: int, total: int) -> None:
        if bar is None:
            return
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done)

    def on_note(line: str) -> None:
        from rich.text import Text

        from kenshin.printable import printable

        text = Text("note:", style="bold yellow")
        text.append(" " + printable(line))
        if bar is not None:
            bar.console.print(text, highlight=False, soft_wrap=True)
        else:
            print(f"note: {printable(line)}", file=sys.stderr)

    return run_annual(cfg, on_step, on_note)


def print_annual(console, result: AnnualRunResult) -> None:
    """Counts (scored, selected by reason, letters) and where every output is. Paths and the
    model URI are data: printed through :mod:`kenshin.printable`, never as markup, without
    control characters."""
    from rich.table import Table

    from kenshin.printable import data_text

    def say(line: str) -> None:
        console.print(data_text(line), highlight=False)

    c = result.counts
    t = Table(title=data_text(f"annual run → {result.out}"))
    t.add_column("what")
    t.add_column("residents", justify="right")
    for key in (
        "enrolled_on_scoring_date", "with_checkup", "not_enrolled", "age_out_of_range",
        "eligible", "eligible_by_fallback", "scored",
    ):  # fmt: skip
        t.add_row(key.replace("_", " "), f"{c.get(key, 0):,}")
    for key in sorted(k for k in c if k.startswith("reason_")):
        t.add_row(data_text("  " + key.removeprefix("reason_")), f"{c[key]:,}")
    for key in ("explained", "letters_rendered", "letters_reused", "letters_characters_replaced"):
        if key in c:
            t.add_row(key.replace("_", " "), f"{c[key]:,}")
    console.print(t)
    if c.get("values_to_verify"):
        say(
            f"{c['values_to_verify']:,} resident(s) with values outside their plausible range "
            "that alone call for a see-a-doctor letter: no letter sent; verify the values listed "
            "in the staff report (section 1) with the facility"
        )
    s = result.seconds
    rate = c.get("scored", 0) / s["score"] if s.get("score") else 0
    say(
        f"model {result.model.uri} (version {result.model.version or '?'}); scoring "
        f"{s.get('score', 0):.1f} s ({rate:,.0f} residents/s); total {s.get('total', 0):.1f} s"
    )
    for key in ("scores", "selection", "explanations", "drift", "report_html", "report_pdf", "run"):
        if key in result.paths:
            say(f"  {key:<13} {result.paths[key]}")
    if "letters" in result.paths:
        say(f"  letters       {result.paths['letters']}  (names and addresses: owner-only)")
