"""The annual run (年次処理) behind ``kenshin score``: score → select → explain → letters → report.

Reads the store and the registered model, calls the pure cores of :mod:`scoring`, and writes
the output folder of :mod:`scoring.contracts`. Only :func:`_letter_requests` reads contact
details, and only for residents whose letter is sent; everything else is keyed by pseudonym.

What the run needs is checked before any work (:func:`check_store`): a store without enrollment,
without checkups or without checkups of the scoring year is bad input (exit 2, one line); a
store without contacts is scored and selected with letters switched off (a note says so).
Residents whose contact cannot address a letter (no contacts row, or a name, postal code or
address that breaks the letter contract) get no letter: ``NO_CONTACT`` / ``CONTACT_INVALID`` in
the selection (with the fields at fault, never their values), so the selection,
``letters_sent.csv`` and the letters printed always agree.

All or nothing: the run writes into ``.<out>.partial`` next to the output folder, validating
every table against its contract, and moves its outputs into the output folder only once all of
them (letters and report included) are made. A failed run leaves the output folder as it was;
the letters it rendered are kept in the staging folder, so running it again renders only the
missing ones. A damaged store is bad input (exit 2), not a crash.
"""

from __future__ import annotations

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
import pyarrow.parquet as pq

from data.columns import OUTCOMES
from data.files import atomic_write, csv_bytes
from kenshin.errors import BadInputError, one_line, safe_message
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
from scoring.score import ScoringConfig, eligible_residents, explain, score_chunk
from scoring.selection import SELECTION_INPUTS, SelectionConfig, select

DEFAULT_MODEL = "models:/kenshin-risk@champion"
#: Columns of the scores table the selection needs in memory (the rest stays on disk).
_SELECTION_INPUTS = SELECTION_INPUTS


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


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
    atomic_write(path, buf.getvalue().to_pybytes())


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
    "letters are switched off: the store has no contacts table (the bundle had none), so no "
    "letter can be addressed; ingest contacts (docs/contract.md §Contacts) to send letters"
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
            f"the store {store} has no enrollment table (the bundle had none), so membership on "
            "the scoring date cannot be judged; ingest enrollment (docs/contract.md §Enrollment)"
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


def contact_status(store: Path) -> pd.Series:
    """Per pseudonym with a contacts row: ``""`` when a letter can be addressed, else the
    fields at fault (scoring.letters.schema.contact_problems: codes, never values)."""
    from data.store import read_contacts
    from scoring.letters.schema import contact_problems

    contacts = read_contacts(store)
    if contacts.empty:
        return pd.Series(dtype=object)
    for col in ("name", "postal_code", "address"):
        if col not in contacts:
            contacts[col] = pd.NA
    problems = contact_problems(contacts)
    return pd.Series(problems.to_numpy(), index=contacts["pseudonym"].astype(str).to_numpy())


def _opted_out(store: Path) -> pd.Series:
    """Opt-out flag per pseudonym: only these two columns of the private contacts are read."""
    from data.store import PRIVATE

    path = store / PRIVATE / "contacts.parquet"
    if not path.exists():
        return pd.Series(dtype=bool)
    t = pq.read_table(path, columns=["pseudonym", "opt_out"]).to_pandas()
    flag = pd.to_numeric(t["opt_out"], errors="coerce").fillna(0).astype(int) == 1
    return pd.Series(flag.to_numpy(), index=t["pseudonym"].astype(str))


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
    """
    from data.store import read_checkup_columns, read_enrollment, read_manifest

    t0 = time.perf_counter()
    store, out, fy = Path(cfg.store), Path(cfg.out), int(cfg.fiscal_year)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder")
    with store_readable(store):
        manifest = read_manifest(store)
    notes: list[str] = []
    if "contacts" in check_store(store, manifest, fy) and cfg.letters:
        cfg = replace(cfg, letters=False)
        notes.append(NO_CONTACTS_NOTE)
        if on_note is not None:
            on_note(NO_CONTACTS_NOTE)
    model = load_model(cfg.model_uri, cfg.workdir)
    sc = cfg.scoring
    load_seconds = time.perf_counter() - t0

    with store_readable(store):
        candidates = read_checkup_columns(
            store, ["pseudonym", "exam_date", "age", "sex"], [fy, fy - 1]
        )
        enrollment = read_enrollment(store)
    if not (candidates["fiscal_year"].astype(int) == fy).any() and not (
        sc.fallback_previous_year and len(candidates)
    ):
        raise BadInputError(f"the store {store} has no checkups in FY{fy}")
    elig = eligible_residents(candidates, enrollment, fy, cfg.day, sc)
    del candidates
    if elig.index.empty:
        raise BadInputError(f"nobody is eligible for scoring in FY{fy} on {cfg.day.date()}")

    work = staging_folder(out, seed_letters=cfg.letters)
    try:
        result = _write_outputs(cfg, work, model, elig, manifest, on_step, t0, load_seconds, notes)
    except BaseException:
        discard_staging(work)
        raise
    produced = {p.relative_to(work).parts[0] for p in result.paths.values()}
    swap_in(work, out, produced)
    result.out = out
    result.paths = {k: out / p.relative_to(work) for k, p in result.paths.items()}
    return result


#: Suffix of the staging folder next to the output folder (``.<name>.partial``).
STAGING_SUFFIX = ".partial"


def staging_folder(out: Path, seed_letters: bool = True) -> Path:
    """The folder a run writes into before its outputs are moved into ``out``.

    ``.<out name>.partial`` next to ``out`` (inside ``out`` if its parent cannot be written).
    What an earlier failed run left there is removed, except its ``letters/`` (resume). Without
    those, the letters of a finished run in ``out`` are linked in (same files, no copy), so
    :func:`scoring.letters.render_letters` reuses them.
    """
    target = Path(out).resolve()
    stage = target.parent / f".{target.name}{STAGING_SUFFIX}"
    try:
        stage.mkdir(parents=True, exist_ok=True)
    except OSError:
        target.mkdir(parents=True, exist_ok=True)
        stage = target / f".kenshin{STAGING_SUFFIX}"
        stage.mkdir(exist_ok=True)
    for p in stage.iterdir():
        if p.name != "letters":
            _remove(p)
    letters = stage / "letters"
    if seed_letters and not letters.exists() and (target / "letters" / "manifest.csv").exists():
        _seed_letters(target / "letters", letters)
    return stage


def _seed_letters(src: Path, dst: Path) -> None:
    """Hard-link the PDFs of a finished letters folder, copy its manifest (and journal)."""
    import shutil

    (dst / "letters").mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dst, 0o700)
    for name in ("manifest.csv", "manifest.journal.jsonl"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)  # rewritten in place: never shared
    for pdf in (src / "letters").glob("*.pdf"):
        try:
            os.link(pdf, dst / "letters" / pdf.name)  # render_letters replaces, never rewrites
        except OSError:
            shutil.copy2(pdf, dst / "letters" / pdf.name)


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
            if p.name != "letters":
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
    order = sorted(names, key=lambda n: (n == "run.json", not (stage / n).is_dir(), n))
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


def _write_outputs(
    cfg: AnnualRunConfig,
    out: Path,
    model: LoadedModel,
    elig,
    manifest: dict,
    on_step: Callable[[str, int, int], None] | None,
    t0: float,
    load_seconds: float,
    notes: list[str] | None = None,
) -> AnnualRunResult:
    """Every output of the run, written into ``out`` (the staging folder)."""
    from data.store import read_checkup_history
    from features.declarations import DECLARATIONS

    step = on_step or (lambda name, done, total: None)
    seconds: dict[str, float] = {"load_model": load_seconds}
    store, fy = Path(cfg.store), int(cfg.fiscal_year)
    store_sha = manifest.get("store_fingerprint", {}).get("sha256", "unknown")
    engine, sc = model.engine, cfg.scoring

    # --- scores, chunk by chunk -------------------------------------------------------------
    t1 = time.perf_counter()
    stamps = {
        "model_uri": cfg.model_uri,
        "model_version": model.summary.version,
        "feature_set_version": model.summary.feature_set_version,
        "config_hash": _config_hash(cfg),
        "store_sha256": store_sha,
        "scoring_date": cfg.day.date().isoformat(),
    }
    schema = scores_schema(tuple(engine.outcomes), sc.scenario_keys)
    ref = getattr(engine, "feature_reference", None)
    drift_counts: dict[str, np.ndarray] = {}
    keep: list[pd.DataFrame] = []
    # Per outcome: residents whose risk and value forecasts disagree (scoring.coherence); per
    # scenario and outcome: residents the what-if is offered to (it lowers their risk).
    forecast_conflicts: dict[str, dict[str, int]] = {}
    whatif_offered: dict[str, dict[str, int]] = {}
    paths = {"scores": out / "scores.parquet", "scores_csv": out / "scores.csv"}
    tmp_pq = paths["scores"].with_name(".scores.parquet.tmp")
    tmp_csv = paths["scores_csv"].with_name(".scores.csv.tmp")
    writer = None
    n = len(elig.index)
    try:
        for start in range(0, n, sc.chunk_size):
            index = elig.index.iloc[start : start + sc.chunk_size].reset_index(drop=True)
            with store_readable(store):
                history = read_checkup_history(store, index["pseudonym"], fy)
            scores, X = score_chunk(engine, history, index, sc, model.feature_config)
            scores = schema.validate(scores.assign(fiscal_year=fy, **stamps))
            if ref is not None:
                for name, c in ref.counts(X).items():
                    drift_counts[name] = drift_counts.get(name, 0) + c
            # Every chunk is written with the first chunk's schema (pandas metadata included).
            table = pa.Table.from_pandas(
                scores, schema=None if writer is None else writer.schema, preserve_index=False
            )
            if writer is None:
                writer = pq.ParquetWriter(tmp_pq, table.schema, compression="zstd")
            writer.write_table(table)
            with open(tmp_csv, "wb" if start == 0 else "ab") as f:  # spreadsheet-safe cells
                f.write(csv_bytes(scores, header=start == 0, date_format="%Y-%m-%d"))
            for o, kinds in conflict_counts(conflicts(scores)).items():
                for k, v in kinds.items():
                    forecast_conflicts.setdefault(o, dict.fromkeys(kinds, 0))[k] += v
            for c in scores.columns[scores.columns.str.contains("__", regex=False)]:
                outcome, key = c.removeprefix("risk_").split("__", 1)
                offered = whatif_offered.setdefault(key, {})
                offered[outcome] = offered.get(outcome, 0) + int(scores[c].notna().sum())
            cols = [*_SELECTION_INPUTS, *[c for c in scores if c.startswith("risk_")]]
            keep.append(scores[[c for c in dict.fromkeys(cols) if "__" not in c]])
            step("score", min(start + sc.chunk_size, n), n)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp_pq, paths["scores"])
    os.replace(tmp_csv, paths["scores_csv"])
    scored = pd.concat(keep, ignore_index=True)
    del keep
    seconds["score"] = time.perf_counter() - t1

    # --- selection ---------------------------------------------------------------------------
    t2 = time.perf_counter()
    with store_readable(store):
        opted_out = _opted_out(store)
        # Whether a letter can be addressed (codes only): checked before the selection, so a
        # resident who cannot be written to takes no letter or control place.
        contacts = contact_status(store) if cfg.letters else None
    selection = select(
        scored,
        cfg.selection,
        opted_out=opted_out,
        last_lettered=_letter_history(cfg.letter_history),
        scoring_date=cfg.day,
        contact_problems=contacts,
    )
    selection.insert(1, "fiscal_year", fy)
    seconds["select"] = time.perf_counter() - t2

    # --- explanations for everyone with a letter or a report page ----------------------------
    t3 = time.perf_counter()
    explained = selection.loc[selection["arm"].notna(), "pseudonym"]
    who = elig.index[elig.index["pseudonym"].isin(explained)].reset_index(drop=True)
    explanations = EXPLANATIONS_SCHEMA.validate(
        pd.DataFrame(columns=list(EXPLANATIONS_SCHEMA.columns))
    )
    factors = pd.DataFrame(columns=["pseudonym", "outcome", "factor_1", "factor_2", "factor_3"])
    if len(who):
        from scoring.score import index_features

        with store_readable(store):
            history = read_checkup_history(store, who["pseudonym"], fy)
        feats = index_features(history, who, model.feature_config)
        explanations, factors = explain(engine, feats, top=sc.explain_top)
        explanations = EXPLANATIONS_SCHEMA.validate(explanations)
    topic = selection[["pseudonym", "outcome"]].merge(
        factors, on=["pseudonym", "outcome"], how="left"
    )
    for i in (1, 2, 3):
        selection[f"factor_{i}"] = topic[f"factor_{i}"].astype("string").to_numpy()
    seconds["explain"] = time.perf_counter() - t3

    labels = {d.name: d.ja for d in DECLARATIONS}
    drift = drift_table(ref, drift_counts, list(engine.feature_names), labels)
    sent = selection.loc[selection["sent"], ["pseudonym"]].assign(
        letter_date=cfg.day.date().isoformat()
    )
    # Every table against its contract before it is written (checked, not coerced: the bytes
    # written stay those of the frames).
    SELECTION_SCHEMA.validate(selection, lazy=True)
    DRIFT_SCHEMA.validate(drift, lazy=True)
    LETTERS_SENT_SCHEMA.validate(sent, lazy=True)

    paths["selection"] = out / "selection.parquet"
    paths["selection_csv"] = out / "selection.csv"
    paths["explanations"] = out / "explanations.parquet"
    _write_parquet(selection, paths["selection"])
    _write_csv(selection, paths["selection_csv"])
    _write_parquet(explanations, paths["explanations"])
    paths["drift"] = out / "drift.csv"
    _write_csv(drift, paths["drift"])

    counts = {**elig.counts, "scored": n}
    counts.update({f"reason_{k}": int(v) for k, v in selection["reason"].value_counts().items()})
    counts["explained"] = int(len(who))

    # --- letters (the only step that reads names and addresses) -----------------------------
    if cfg.letters:
        t4 = time.perf_counter()
        from scoring.letters import LetterConfig, render_letters

        requests = _letter_requests(store, selection, paths["scores"], cfg)
        counts["letters_requested"] = len(requests)
        counts["letters_rendered"] = counts["letters_reused"] = 0
        printed: set[str] = set()
        if len(requests):
            requests["horizon_years"] = model.horizon_years
            letters_dir = out / "letters"
            manifest_letters = render_letters(
                requests,
                letters_dir,
                LetterConfig(workers=cfg.letter_workers),
                on_progress=lambda done, total: step("letters", done, total),
            )
            paths["letters"] = letters_dir
            paths["letters_manifest"] = manifest_letters.manifest_path
            counts["letters_rendered"] = manifest_letters.rendered
            counts["letters_reused"] = manifest_letters.skipped
            counts["letters_characters_replaced"] = int(
                manifest_letters.frame["replaced_characters"].sum()
            )
            # Advice letters whose forecast table contradicted the risk (scoring.coherence).
            notes_col = manifest_letters.frame["notes"].fillna("").astype(str)
            counts["letters_forecast_withheld"] = int(
                notes_col.str.contains("forecast table withheld", regex=False).sum()
            )
            printed = set(manifest_letters.frame["pseudonym"])
        # The selection, letters_sent.csv and the letters printed name the same residents.
        if printed != set(sent["pseudonym"]):
            raise RuntimeError(
                f"{len(set(sent['pseudonym']) - printed)} resident(s) marked sent have no letter "
                f"and {len(printed - set(sent['pseudonym']))} letter(s) were not selected"
            )
        paths["letters_sent"] = out / "letters_sent.csv"
        _write_csv(sent, paths["letters_sent"])
        seconds["letters"] = time.perf_counter() - t4

    # --- staff report ------------------------------------------------------------------------
    if cfg.report:
        t5 = time.perf_counter()
        step("report", 0, 1)
        paths.update(_report(cfg, out, selection, explanations, drift, model.summary, counts))
        step("report", 1, 1)
        seconds["report"] = time.perf_counter() - t5

    seconds["total"] = time.perf_counter() - t0
    result = AnnualRunResult(out, paths, counts, seconds, model.summary, notes=list(notes or []))
    run_info = {
        "fiscal_year": fy,
        **stamps,
        "letters": cfg.letters,
        "notes": list(notes or []),
        "counts": counts,
        "forecast_conflicts": forecast_conflicts,
        "whatif_offered": whatif_offered,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "residents_per_second": round(n / seconds["score"], 1) if seconds["score"] else None,
        "drift_reference_fiscal_year": getattr(ref, "fiscal_year", None),
        "finished_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "files": {k: str(p.relative_to(out)) for k, p in paths.items() if p.is_relative_to(out)},
    }
    paths["run"] = out / "run.json"
    atomic_write(paths["run"], (json.dumps(run_info, indent=2, ensure_ascii=False) + "\n").encode())
    if cfg.log_mlflow:
        result.mlflow_run_id = _log_scoring_run(cfg, run_info, drift, paths["run"], paths["drift"])
    return result


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

    sent = selection.loc[selection["sent"]].reset_index(drop=True)
    if sent.empty:
        return pd.DataFrame()
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
        contacts = read_contacts(store)
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


def _report(cfg, out: Path, selection, explanations, drift, summary, counts) -> dict[str, Path]:
    """The staff report (scoring.report) in ``out``: HTML with every explained resident, PDF."""
    from scoring.report import ReportConfig, ReportInputs, ScenarioLabel, build_report

    inputs = ReportInputs(
        scores=pd.read_parquet(out / "scores.parquet"),
        selection=selection,
        explanations=explanations,
        drift=drift,
        model=summary,
        fiscal_year=cfg.fiscal_year,
        scoring_date=cfg.day.date(),
        scenarios=tuple(ScenarioLabel(s.key, s.label_ja) for s in cfg.scoring.scenarios),
        summary={k: int(v) for k, v in counts.items()},
    )
    built = build_report(
        inputs,
        Path(out) / "report",
        config=ReportConfig(pdf_residents=cfg.report_pdf_residents),
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
) -> AnnualRunResult:
    """Parse the command's options into :class:`AnnualRunConfig` and run it with a progress bar.

    ``letter_budget`` (the demo's) caps both advice and see-doctor letters.
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
        report_pdf_residents=report_pdf_residents,
    )  # fmt: skip
    tasks: dict[str, int] = {}

    def on_step(name: str, done: int, total: int) -> None:
        if bar is None:
            return
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done)

    def on_note(line: str) -> None:
        from rich.text import Text

        text = Text("note:", style="bold yellow")
        text.append(" " + line)
        if bar is not None:
            bar.console.print(text, highlight=False, soft_wrap=True)
        else:
            print(f"note: {line}", file=sys.stderr)

    return run_annual(cfg, on_step, on_note)


def print_annual(console, result: AnnualRunResult) -> None:
    """Counts (scored, selected by reason, letters) and where every output is."""
    from rich.table import Table
    from rich.text import Text

    c = result.counts
    t = Table(title=Text(f"annual run → {result.out}"))
    t.add_column("what")
    t.add_column("residents", justify="right")
    for key in (
        "enrolled_on_scoring_date", "with_checkup", "not_enrolled", "age_out_of_range",
        "eligible", "eligible_by_fallback", "scored",
    ):  # fmt: skip
        t.add_row(key.replace("_", " "), f"{c.get(key, 0):,}")
    for key in sorted(k for k in c if k.startswith("reason_")):
        t.add_row("  " + key.removeprefix("reason_"), f"{c[key]:,}")
    for key in ("explained", "letters_rendered", "letters_reused", "letters_characters_replaced"):
        if key in c:
            t.add_row(key.replace("_", " "), f"{c[key]:,}")
    console.print(t)
    s = result.seconds
    rate = c.get("scored", 0) / s["score"] if s.get("score") else 0
    console.print(
        f"model {result.model.uri} (version {result.model.version or '?'}); scoring "
        f"{s.get('score', 0):.1f} s ({rate:,.0f} residents/s); total {s.get('total', 0):.1f} s",
        highlight=False,
        markup=False,
    )
    for key in ("scores", "selection", "explanations", "drift", "report_html", "report_pdf", "run"):
        if key in result.paths:
            console.print(f"  {key:<13} {result.paths[key]}", highlight=False, markup=False)
    if "letters" in result.paths:
        console.print(
            f"  letters       {result.paths['letters']}  (names and addresses: owner-only)",
            highlight=False,
            markup=False,
        )
