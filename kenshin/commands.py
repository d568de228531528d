"""Command implementations shared by the CLI and MLproject: call the stage cores, report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from data.ingest import (
    INGEST_STEPS,
    IngestConfig,
    IngestResult,
    IngestSettings,
    ingest,
    load_ingest_settings,
)
from kenshin.printable import data_text

if TYPE_CHECKING:
    import pandas as pd


def run_synth(
    out: Path,
    residents: int,
    years: int,
    seed: int,
    last_fiscal_year: int,
    fmt: str = "csv",
    dirty: bool = False,
    bar: Progress | None = None,
    letters: Path | None = None,
    letter_year: int | None = None,
    letter_effect: float = 0.3,
    questionnaire_coding: str = "by-year",
) -> tuple[dict[str, Path], dict]:
    """Generate a synthetic ward and write its bundle; ``dirty`` injects export faults.

    ``letters``: a selection table (OUT/selection.parquet) whose ``letter`` arm is simulated
    to respond with strength ``letter_effect`` from ``letter_year + 1`` on
    (:func:`letters_from_selection`). ``questionnaire_coding``: ``by-year`` writes pre-FY2024
    answers in their own form's codes, ``current`` in the 2024 codes (CSV/Parquet).
    """
    from data.dirty import make_dirty, write_dirty
    from data.synth import SynthConfig, generate, write_bundle

    task = bar.add_task("synth", total=2) if bar else None
    config = SynthConfig(
        residents=residents, years=years, last_fiscal_year=last_fiscal_year, seed=seed
    )
    lettered: dict = {}
    if letters is not None:
        config, lettered = letters_from_selection(letters, config, letter_year, letter_effect)
    bundle = generate(config)
    if bar:
        bar.advance(task)
    summary: dict = {
        "checkups": len(bundle.checkups),
        "enrollment": len(bundle.enrollment),
        "contacts": len(bundle.contacts),
        "truth": len(bundle.truth),
        **lettered,
    }
    legacy = questionnaire_coding == "by-year"
    if last_fiscal_year - years + 1 < 2008:
        from kenshin.errors import BadInputError

        raise BadInputError(
            f"--years {years} up to FY{last_fiscal_year} starts before FY2008, when 特定健診 began"
        )
    if fmt == "xml" and not legacy:
        from kenshin.errors import BadInputError

        raise BadInputError(
            "--questionnaire-coding current is for CSV/Parquet: XML answers name their form's "
            "code list themselves"
        )
    if dirty:
        if fmt != "csv":
            from kenshin.errors import BadInputError

            raise BadInputError(f"--dirty writes CSV exports; drop --format {fmt}")
        paths = write_bundle(bundle, out, fmt="csv", legacy_codes=legacy)
        tables, report = make_dirty(
            bundle.checkups, bundle.enrollment, bundle.contacts, seed=seed, legacy_codes=legacy
        )
        paths.update(write_dirty(tables, out))
        summary.update({name: len(t) for name, t in tables.items()})
        summary["faults"] = report.summary()
    elif fmt == "xml":  # checkups as MHLW exchange archives, the other tables as CSV
        from data.mhlw_xml import archive_fiscal_year, write_exchange_archive

        paths = write_bundle(bundle, out, fmt="csv")
        paths.pop("checkups").unlink()
        for path in write_exchange_archive(bundle.checkups, bundle.contacts, out):
            name = f"checkups FY{archive_fiscal_year(path)}"
            paths[name], summary[name] = path, _zip_documents(path)
    else:
        paths = write_bundle(bundle, out, fmt=fmt, legacy_codes=legacy)
    if bar:
        bar.advance(task)
    return paths, summary


def _zip_documents(path: Path) -> int:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return sum("/DATA/" in n for n in zf.namelist())


def run_ingest(
    bundle: Path,
    store: Path,
    encoding: str | None = None,
    force: bool = False,
    today: str | None = None,
    bar: Progress | None = None,
    questionnaire_coding: str | None = None,
    accept_rejects: bool | None = None,
    max_reject_share: float | None = None,
    settings_file: Path | None = None,
    engine: str = "pandas",
    spark_master: str | None = None,
    spark_config: Path | None = None,
) -> IngestResult:
    """Ingest with settings from ``settings_file`` (ingest.toml), overridden by the options.

    ``engine="spark"``: the XML documents are parsed by Spark tasks (kenshin.spark.ingest; the
    same reader, the same rows); everything else as with the pandas engine.
    """
    settings = load_ingest_settings(settings_file) if settings_file else IngestSettings()
    chosen = {
        "encoding": encoding,
        "questionnaire_coding": questionnaire_coding,
        "accept_rejects": accept_rejects,
        "max_reject_share": max_reject_share,
    }
    merged = settings.model_dump() | {k: v for k, v in chosen.items() if v is not None}
    config = IngestConfig(force=force, today=today, **merged)
    task = bar.add_task("ingest", total=len(INGEST_STEPS)) if bar else None
    seen: list[str] = []

    def on_step(step: str) -> None:
        if bar:
            if seen:
                bar.advance(task)
            bar.update(task, description=f"ingest: {step}")
        seen.append(step)

    if engine == "spark":
        from data.mhlw_xml.reader import batch_map
        from kenshin.spark import open_session
        from kenshin.spark.ingest import spark_batch_map

        session, _settings = open_session(spark_master, spark_config)
        with batch_map(spark_batch_map(session)):
            result = ingest(bundle, store, config, on_step=on_step)
    else:
        result = ingest(bundle, store, config, on_step=on_step)
    if bar:
        bar.update(task, completed=len(INGEST_STEPS))
    return result


def print_ingest_summary(console: Console, result: IngestResult, store: Path) -> None:
    """Row accounting per table, reject reasons, and extras: what was read, written, rejected."""
    import pandas as pd

    table = Table(title=data_text(f"row accounting → {store}"))
    for col in ("table", "read", "loaded", "rejected", "merged duplicates", "adds up"):
        table.add_column(col, justify="right" if col != "table" else "left")
    for name, a in result.accounting.items():
        table.add_row(
            data_text(name),
            f"{a.read:,}",
            f"{a.loaded:,}",
            f"{a.rejected:,}",
            f"{a.merged_duplicates:,}",
            Text("yes") if a.balanced else Text("NO", style="red"),
        )
    console.print(table)
    if result.unchanged:
        console.print("bundle unchanged since the last ingest: store left as it was")
    reasons = result.manifest.get("reject_reasons", [])
    if reasons:
        rt = Table(title="rejected rows by reason (details: rejects.parquet)")
        for col in ("table", "column", "reason", "rows"):
            rt.add_column(col)
        for r in reasons:
            rt.add_row(
                data_text(r["table"]), data_text("—" if pd.isna(r["column"]) else r["column"]),
                data_text(r["reason"]),
                f"{r['rows']:,}",
            )  # fmt: skip
        console.print(rt)
        first = result.rejects.head(5)
        for r in first.itertuples():
            column = "" if pd.isna(r.column) else f", column {r.column}"  # a whole document
            _say(console, f"  e.g. {r.source_file} row {r.source_row}{column}: {r.reason}")
    for name, notes in result.manifest.get("reader_notes", {}).items():
        for source, report in notes.items():
            _say(console, f"{name} from {source}: {report}")
            skipped = report.get("skipped_files") if isinstance(report, dict) else None
            if skipped:
                _say(console, f"warning: {name}: {_skipped_line(skipped)}")
    for name, cols in result.extra_columns.items():
        _say(console, f"unknown columns in {name} kept aside (private/extra_columns.parquet): "
             f"{cols}")  # fmt: skip
    print_questionnaire_coding(console, result.manifest)
    for line in _read_as_missing_lines(result.manifest) + _agreement_lines(result.manifest):
        _say(console, line)
    empty = set(result.manifest.get("empty_tables", []))
    for name in result.manifest.get("missing_tables", []):
        what = (
            f"the {name} table has no rows" if name in empty else f"no {name} table in the bundle"
        )
        _say(console, f"warning: {what}: {MISSING_TABLE_EFFECT.get(name)}")
    if getattr(result, "key_created", None) is not None:
        _say(console, KEY_CREATED.format(path=result.key_created))


#: What the first ingest without a key says (the key is the only way back to real IDs).
KEY_CREATED = (
    "new pseudonym key created at {path} (readable by you alone). Back it up somewhere safe: "
    "without it no pseudonym can ever be traced back to a resident, and a new key gives every "
    "resident a new pseudonym, so this store, its models and letter histories no longer match."
)


def _say(console: Console, line: object) -> None:
    """Print a line holding data: never read as markup, control characters removed."""
    console.print(data_text(line), highlight=False, soft_wrap=False)


def _read_as_missing_lines(manifest: dict) -> list[str]:
    """Values an export marked as not measured (``-``, ``未実施``…) or open (9999-12-31)."""
    lines = []
    for table, counts in manifest.get("read_as_missing", {}).items():
        shown = ", ".join(f"{col} {n:,}" for col, n in counts.items() if n)
        if shown:
            what = "open end (9999-12-31)" if table == "enrollment" else "'not measured' marks"
            lines.append(f"{table}: {what} read as missing: {shown}")
    return lines


#: The facility's judgement items, as the summary names them.
_FACILITY_LABELS = {
    "metabolic_syndrome": "metabolic syndrome (9N501)",
    "guidance_level": "guidance level (9N506)",
}


def _agreement_lines(manifest: dict) -> list[str]:
    """How often the facility's own judgements agree with kenshin's (where it gave one)."""
    lines = []
    for name, a in manifest.get("facility_agreement", {}).items():
        if a.get("compared"):
            lines.append(
                f"facility judgement, {_FACILITY_LABELS.get(name, name)}: kenshin agrees on "
                f"{a['agree']:,} of {a['compared']:,} checkups"
                + (f" ({a['disagree']:,} to review)" if a["disagree"] else "")
            )
    return lines


def _skipped_line(skipped: dict) -> str:
    """``skipped N files that are not regular files (…): name (FIFO), …`` (reader notes)."""
    files = skipped.get("files", {})
    shown = ", ".join(f"{name} ({kind})" for name, kind in list(files.items())[:10])
    more = skipped.get("count", len(files)) - min(len(files), 10)
    return (
        f"skipped {skipped.get('count', len(files)):,} XML/ZIP entries that are not checkup "
        f"files (never opened): {shown}" + (f" and {more:,} more" if more > 0 else "")
    )


#: What a store without this table cannot do (ingest loads the rest with a warning).
MISSING_TABLE_EFFECT = {
    "enrollment": "eligibility on a scoring date cannot be judged; 'kenshin score' will stop "
    "until enrollment (docs/contract.md §Enrollment) is ingested",
    "contacts": "letters cannot be addressed; 'kenshin score' writes no letters",
}


def print_questionnaire_coding(console: Console, manifest: dict) -> None:
    """Which coding each file's pre-FY2024 answers were read in, and answers set aside."""
    coding = manifest.get("questionnaire_coding", {})
    decisions = coding.get("decisions", [])
    if decisions:
        t = Table(
            title=data_text(
                f"questionnaire coding before FY2024 (setting: {coding.get('setting')})"
            )
        )
        for col in ("file", "fiscal year", "rows", "read as", "because"):
            t.add_column(col)
        for d in decisions:
            t.add_row(
                data_text(d["source_file"]), data_text(d["fiscal_year"]), f"{d['rows']:,}",
                data_text(d["coding"]), data_text(d["basis"]),
            )  # fmt: skip
        console.print(t)
        if any(str(d["basis"]).startswith("assumed") for d in decisions):
            _say(
                console,
                "  'assumed': only codes both forms share; read in the old form's codes. If the "
                "export converted earlier years to the 2024 codes, re-run with "
                "--questionnaire-coding current.",
            )
    invalid = manifest.get("invalid_codes", [])
    if invalid:
        text = ", ".join(f"{c['item']} {c['rows']:,} ({c['coding']})" for c in invalid)
        _say(console, f"codes set to missing and flagged (row kept): {text}")
    derived = {k: v for k, v in manifest.get("derived_out_of_range", {}).items() if v}
    if derived:
        text = ", ".join(f"{k} {v:,}" for k, v in derived.items())
        _say(console, f"derived values outside their range, left missing and flagged: {text}")


# ------------------------------------------------------------------ features / train / promote


def read_truth(path: Path, store: Path | None = None) -> pd.DataFrame:
    """truth.csv of a synthetic bundle with person_id pseudonymised with the key ``store`` was
    made with (the user's or ``kenshin demo``'s: data.pseudonym.key_of_store; without a store,
    the user's)."""
    import pandas as pd

    from data.pseudonym import key_of_store, load_key, pseudonymise
    from data.store import read_manifest
    from kenshin.errors import BadInputError

    if not Path(path).is_file():
        raise BadInputError(f"{path}: no such truth file")
    truth = pd.read_csv(path, dtype={"person_id": "string"})
    if "person_id" not in truth or "fiscal_year" not in truth:
        raise BadInputError(f"{path}: a truth file needs person_id and fiscal_year columns")
    if store is None:
        key = load_key()
    else:
        check = read_manifest(store).get("pseudonym_key_check")
        try:
            key = key_of_store(check)
        except BadInputError as exc:  # the key's fault, not the store's: name the truth file
            raise BadInputError(f"{path}: {exc}") from None
    truth["pseudonym"] = pseudonymise(truth["person_id"], key)
    return truth.drop(columns="person_id")


def run_features(
    store: Path,
    out: Path,
    truth: Path | None = None,
    engine: str = "pandas",
    spark_master: str | None = None,
    spark_config: Path | None = None,
) -> dict:
    """Build features + labels from ``store``; write them and the follow-up report to ``out``.

    ``engine="spark"``: built on Spark (kenshin.spark.features; the same feature code, the
    same rows) on ``spark_master`` with the settings of ``spark_config``.
    """
    from data.store import read_enrollment
    from features import build_training_tables, follow_up_report

    if engine == "spark":
        from kenshin.spark import open_session
        from kenshin.spark.features import build_training_tables_spark

        session, settings = open_session(spark_master, spark_config)
        features, labels = build_training_tables_spark(session, store, settings=settings)
    else:
        features, labels = build_training_tables(store)
    truth_df = read_truth(truth, store) if truth else None
    report = follow_up_report(labels, truth_df, read_enrollment(store))
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "features": out / "features.parquet",
        "labels": out / "labels.parquet",
        "follow_up": out / "follow_up.csv",
    }
    features.to_parquet(paths["features"], index=False)
    labels.to_parquet(paths["labels"], index=False)
    from data.files import csv_bytes  # spreadsheet-safe CSV (no cell runs as a formula)

    paths["follow_up"].write_bytes(csv_bytes(report))
    return {"paths": paths, "rows": len(features), "follow_up": report}


def run_train(
    store: Path,
    workdir: Path,
    truth: Path | None = None,
    config=None,
    bar: Progress | None = None,
    engine: str = "pandas",
    spark_master: str | None = None,
    spark_config: Path | None = None,
):
    """Features → train + evaluate → log + register ``kenshin-risk@challenger``.

    ``config``: a training TOML (path; default: the shipped models/train.toml), a
    models.train_config.TrainConfig, or a models.config.ModelConfig (default training tables).
    ``engine="spark"``: the features and labels built on Spark (kenshin.spark.features) and
    the independent fits run as Spark tasks (kenshin.spark.train), on ``spark_master`` with
    the settings of ``spark_config``; the same engine as the pandas engine's.
    """
    from data.store import read_enrollment
    from features import build_training_tables, follow_up_report
    from models import ModelConfig, train_and_evaluate
    from models.registry import log_training_run
    from models.train_config import TrainConfig, load_train_config

    if isinstance(config, ModelConfig):
        train_config = TrainConfig.from_model(config)
    elif isinstance(config, TrainConfig):
        train_config = config
    else:  # a path or None (the shipped defaults): a bad file stops here, before any work
        train_config = load_train_config(config)
    model_config = train_config.model

    steps = ("features", "train + evaluate", "log to MLflow")
    task = bar.add_task(steps[0], total=len(steps)) if bar else None

    def step(i: int) -> None:
        if bar:
            bar.update(task, completed=i, description=steps[min(i, len(steps) - 1)])

    tables_config = train_config.tables
    runner = None
    if engine == "spark":
        from kenshin.spark import open_session
        from kenshin.spark.features import build_training_tables_spark
        from kenshin.spark.train import SparkRunner

        session, settings = open_session(spark_master, spark_config)
        features, labels = build_training_tables_spark(
            session, store, tables_config, settings=settings
        )
        runner = SparkRunner(session)
    else:
        features, labels = build_training_tables(store, tables_config)
    truth_df = read_truth(truth, store) if truth else None
    follow_up = follow_up_report(labels, truth_df, read_enrollment(store))
    step(1)
    engine, report = train_and_evaluate(features, labels, model_config, truth_df, runner)
    from data.store import read_checkups
    from models.evaluate import ReportTable
    from models.lab_response import fit_response_tables

    checkups = read_checkups(store)
    # what-if: laboratory values follow the lever (training years only; pickled with the
    # engine), each lab on its normal score (the quantiles of the training years by sex)
    engine.lab_response, engine.lab_scale = fit_response_tables(checkups, report.test_year)
    report.extra["lab_response"] = ReportTable(
        "What-if: within-year response of laboratory values to the levers",
        engine.lab_response,
        f"Each resident against themselves, fiscal years before {report.test_year}: body size "
        "(recorded units) by OLS of first differences between consecutive yearly checkups, "
        "Δitem ~ Σ β·Δlever with intercept (n: pairs); each lab (its normal score by sex, "
        "scale) within person over all of a resident's checkups, its deviation from their mean "
        "~ Σ β·the levers' deviations + year, standard errors clustered by person (n: "
        "checkups). coef = β where |t| ≥ 2, or the "
        "lever's summed steps have |lever_t| ≥ 2 with the same sign, and its sign "
        "lowers risk when the lever improves (declared directions), else 0; a what-if moves "
        "the edited checkup's items by coef·Δlever, a lab along its quantile function from "
        "where its value is expected next year (models.lab_response).",
    )
    report.extra["lab_scale"] = ReportTable(
        "What-if: quantile knots of each laboratory item (normal score → value, by sex)",
        engine.lab_scale,
        f"Quantiles of the checkups of fiscal years before {report.test_year} at normal "
        "scores −2.576…2.576 (0.5 %-99.5 %; tied knots merged at their mean score); "
        "persistence: the correlation of an item's score between consecutive yearly "
        "checkups (models.lab_response.fit_item_scales).",
    )
    from scoring.whatif_effect import fit_training_effects

    # what-if: the engine's per-resident what-if (through the value forecasts where every item
    # of the outcome is forecast) pooled into one odds ratio per scenario × outcome × dose,
    # over the year before the test year (scoring.whatif_effect)
    engine.whatif_effect = fit_training_effects(
        engine, checkups, labels, report.test_year - 1, tables_config.features
    )
    report.extra["whatif_effect"] = ReportTable(
        "What-if: pooled effect of each scenario (odds ratio)",
        engine.whatif_effect,
        f"Index checkups of fiscal year {report.test_year - 1}, each outcome over the "
        "residents at risk for it: the p·(1 − p)-weighted mean of the engine's per-resident "
        "log-odds change, over all residents (dose *) and per value the scenario changes from "
        "(≥ 50 residents). method 'forecasts': the change of the chance that next year's "
        "defining items cross their cuts, their value forecasts moved by the lab response "
        "(scoring.whatif_liability); 'joint' (metabolic syndrome): the same read through the "
        "items' joint spread, pooled as the change that keeps the mean risk; 'trees': the "
        "edited checkup re-scored, labs following the lever. The "
        "annual run applies it as an odds ratio to each resident's risk "
        "(scoring.whatif_effect; scoring.toml scenario_effect).",
    )
    if truth_df is not None:  # synthetic ward: what-if against the true counterfactual
        from scoring.whatif_truth import whatif_truth_report

        whatif = whatif_truth_report(
            engine, checkups, labels, truth_df, report.test_year,
            model_config, tables_config.features,
        )  # fmt: skip
        if whatif is not None:
            report.extra["whatif_truth"] = whatif.table
            report.extra["whatif_letters"] = whatif.letters
            report.extra_metrics.update(whatif.metrics)
    step(2)
    run = log_training_run(
        engine, report, features, labels, store, workdir, tables_config=tables_config,
        truth_used=truth_df is not None, follow_up=follow_up,
    )  # fmt: skip
    log_train_config(run, train_config, config)
    step(3)
    return engine, report, run


def log_train_config(run, train_config, source) -> None:
    """The resolved training config on the training run (models.registry.TrainingRun):
    artifact ``config/train.toml``, its origin and digest as parameters."""
    import hashlib

    from mlflow import MlflowClient

    text = train_config.to_toml()
    run_id, client = run.run_id, MlflowClient(run.tracking_uri)
    client.log_text(run_id, text, "config/train.toml")
    if source is None:
        origin = "models/train.toml (shipped)"
    elif isinstance(source, Path | str):
        origin = str(Path(source).resolve())[-500:]
    else:
        origin = f"{type(source).__name__} (Python)"
    client.log_param(run_id, "config.source", origin)
    client.log_param(run_id, "config.sha256", hashlib.sha256(text.encode()).hexdigest()[:16])


def run_promote(workdir: Path, store: Path | None = None, force: bool = False, policy=None):
    from models.registry import promote

    return promote(workdir, policy=policy, store=store, force=force)


def _f(v, fmt: str = "{:.3f}") -> str:
    try:
        return "–" if v is None or v != v else fmt.format(v)
    except (TypeError, ValueError):
        return str(v)


def _pair(share, baseline) -> str:
    """A share and its constant-guess baseline as "73/86%" (the share alone without one)."""
    if baseline is None or baseline != baseline or share is None or share != share:
        return _f(share, "{:.0%}")
    return f"{share * 100:.0f}/{baseline * 100:.0f}%"


def print_train_summary(console: Console, report, run) -> None:
    """Per outcome: AUC, oracle ratio, ECE, LR / points AUC, driver agreement; forecasts."""
    s = report.summary().set_index("outcome")
    from rich import box

    table = Table(
        title=data_text(f"kenshin-risk v{run.version} (challenger), test year {report.test_year}"),
        caption="ratio: AUC ÷ AUC of the true probabilities (synthetic truth); LR, points: "
        "baselines' AUC",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    cols = ["outcome", "AUC", "ratio", "ECE", "slope", "LR", "points"]
    for c in cols:
        table.add_column(c, justify="left" if c == "outcome" else "right",
                         no_wrap=True)  # fmt: skip
    members = []
    drivers = Table(
        title="driver agreement: model / constant guess",
        caption="residents with ≥1 true driver among the model's top 3 clinical items (high: "
        "the top 10% of predicted risk; act.: age, sex, height, history left out; life: "
        "habits and body size only, against the observed truth)",
        box=box.SIMPLE_HEAD,
    )
    for c in ("outcome", "all rows", "high risk", "high, act.", "high, life"):
        drivers.add_column(c, justify="left" if c == "outcome" else "right", no_wrap=True)
    for o, r in s.iterrows():
        pairs = [_pair(r.get(k), r.get(k + "_baseline")) for k in
                 ("driver_any", "driver_high_any", "driver_high_actionable_any",
                  "driver_observed_high_lifestyle_any")]  # fmt: skip
        if any(p != "–" for p in pairs):
            drivers.add_row(data_text(o), *pairs)
        member = str(r.get("member", "lightgbm"))
        if member != "lightgbm":
            members.append(f"{o}: {member} (weight {_f(r.get('member_weight'), '{:.2f}')})")
        table.add_row(
            data_text(o), _f(r.get("engine_auc", r.get("lightgbm_auc"))), _f(r.get("auc_ratio")),
            _f(r.get("ece")), _f(r.get("cal_slope"), "{:.2f}")[:6], _f(r.get("logistic_auc")),
            _f(r.get("points_auc")),
        )  # fmt: skip
    console.print(table)
    if drivers.row_count:
        console.print(drivers)
    if members:
        _say(console, "not LightGBM alone (chosen on validation): " + "; ".join(members))
    for note in getattr(report, "notes", []):  # small outcomes: fallback member or switched off
        _say(console, f"note: {note}")
    if len(report.forecasts):
        ft = Table(title="value forecasts, next year (80% interval)")
        for c in ("item", "coverage", "mean width", "MAE p50", "MAE same as now"):
            ft.add_column(c, justify="left" if c == "item" else "right")
        for r in report.forecasts.to_dict("records"):
            ft.add_row(data_text(r["item"]), _f(r["coverage_80"], "{:.0%}"),
                       _f(r["mean_width"], "{:.2f}"),
                       _f(r["mae_p50"], "{:.2f}"), _f(r["mae_persistence"], "{:.2f}"))  # fmt: skip
        console.print(ft)
    _say(console, f"MLflow run {run.run_id} → {run.tracking_uri}")


def print_promotion(console: Console, decision) -> None:
    fig = decision.figures
    if len(fig):
        t = Table(title="promotion gate (challenger's test rows)")
        for c in ("outcome", "n", "challenger AUC", "champion AUC", "drop", "ECE", "cal slope",
                  "ok"):  # fmt: skip
            t.add_column(c, justify="left" if c == "outcome" else "right", no_wrap=c == "outcome")
        for r in fig.to_dict("records"):
            ok = r["auc_ok"] and r["ece_ok"] and r["slope_ok"]
            t.add_row(data_text(r["outcome"]), f"{r['n']:,}", _f(r["challenger_auc"]),
                      _f(r["champion_auc"]), _f(r["auc_drop"], "{:+.3f}"),
                      _f(r["challenger_ece"]), _f(r["challenger_cal_slope"], "{:.2f}"),
                      Text("yes") if ok else Text("no", style="red"))  # fmt: skip
        console.print(t)
    before = decision.champion_version and f"v{decision.champion_version}" or "none"
    verdict = (
        Text("promoted", style="bold green")
        if decision.promoted
        else Text("not promoted", style="bold yellow")
    )
    line = data_text(f"challenger v{decision.challenger_version} ")
    line.append_text(verdict)
    line.append_text(data_text(f" (champion before: {before}): {decision.reason}"))
    console.print(line, highlight=False)


def mlflow_ui_hint(workdir: Path) -> str:
    from models.registry import tracking_uri

    uri = tracking_uri(workdir)
    return f".venv/bin/mlflow ui --backend-store-uri {uri}"


def print_follow_up(console: Console, report: pd.DataFrame) -> None:
    """Per outcome: at-risk index rows with and without a follow-up checkup."""
    t = Table(title="follow-up: at-risk index rows (without follow-up: left out of training)")
    cols = ["outcome", "at risk", "with follow-up", "without", "share without", "event rate"]
    extra = "p_true_ratio_without_vs_with" in report
    if extra:
        cols.append("true risk without ÷ with")
    for c in cols:
        t.add_column(c, justify="left" if c == "outcome" else "right", no_wrap=c == "outcome")
    for r in report.to_dict("records"):
        row = [data_text(r["outcome"]), f"{r['at_risk']:,}", f"{r['with_follow_up']:,}",
               f"{r['without_follow_up']:,}", _f(r["share_without_follow_up"], "{:.1%}"),
               _f(r["event_rate"], "{:.1%}")]  # fmt: skip
        if extra:
            row.append(_f(r["p_true_ratio_without_vs_with"], "{:.2f}"))
        t.add_row(*row)
    console.print(t)


# ------------------------------------------------------------------ letters: synth and evaluate


def read_selection(path: Path) -> pd.DataFrame:
    """A scoring run's selection table (Parquet or CSV) with the columns evaluation needs."""
    import pandas as pd

    from kenshin.errors import BadInputError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no selection table (run 'kenshin score' first)")
    try:
        if path.suffix == ".csv":
            sel = pd.read_csv(path, dtype={"pseudonym": "string", "arm": "string"})
        else:
            sel = pd.read_parquet(path)
    except Exception as exc:  # any unreadable file is bad input
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BadInputError(f"{path}: not a readable selection table ({reason})") from None
    missing = {"pseudonym", "arm", "letter_type", "outcome"} - set(sel.columns)
    if missing:
        raise BadInputError(f"{path}: selection table lacks columns {sorted(missing)}")
    return sel


def _selection_year(sel: pd.DataFrame, path: Path, year: int | None) -> int | None:
    """The selection's scoring FY (its ``fiscal_year`` column), checked against ``year``."""
    from kenshin.errors import BadInputError

    years = sorted({int(y) for y in sel["fiscal_year"].dropna()}) if "fiscal_year" in sel else []
    if len(years) > 1:
        raise BadInputError(f"{path}: selection mixes fiscal years {years}")
    if years and year is not None and years[0] != year:
        raise BadInputError(f"{path}: selection of FY{years[0]}, not FY{year}")
    return years[0] if years else year


def letters_from_selection(path: Path, config, letter_year: int | None, letter_effect: float):
    """``config`` with the selection's ``letter`` arm as ``letters`` (person_ids) and its
    see-a-doctor letters as ``doctor_letters`` (person_id, outcome), and a summary.

    The selection is keyed by pseudonym: the ward's person_ids (members by ``letter_year``) are
    pseudonymised with the same key (:mod:`data.pseudonym`) and matched.
    """
    from dataclasses import replace

    import pandas as pd

    from data.pseudonym import DEMO_KEY, load_key, pseudonymise
    from data.synth import ward_person_ids
    from kenshin.errors import BadInputError

    sel = read_selection(path)
    letter_year = _selection_year(sel, path, letter_year)
    if letter_year is None:
        raise BadInputError(f"{path}: no fiscal_year column; give --letter-year")
    if letter_year not in config.fiscal_years:
        raise BadInputError(
            f"--letter-year {letter_year} is not a generated fiscal year "
            f"({config.fiscal_years.start}-{config.fiscal_years.stop - 1})"
        )
    sent = sel[sel["arm"].astype("string").eq("letter").fillna(False).to_numpy()]
    wanted = set(sent["pseudonym"])
    if not wanted:
        raise BadInputError(f"{path}: no resident in the letter arm")
    doctor = sent[sent["letter_type"].astype("string").eq("see_doctor").fillna(False).to_numpy()]
    topic = dict(zip(doctor["pseudonym"], doctor["outcome"].astype(str), strict=True))
    ids = pd.Series(ward_person_ids(config, letter_year), dtype="string")
    pseudonyms = pseudonymise(ids, load_key())
    hit = pseudonyms.isin(wanted).to_numpy()
    if not hit.any():  # a selection of `kenshin demo`, whose ward has its own key
        pseudonyms = pseudonymise(ids, DEMO_KEY)
        hit = pseudonyms.isin(wanted).to_numpy()
    if not hit.any():
        raise BadInputError(
            f"{path}: none of the {len(wanted):,} lettered pseudonyms is a resident of this ward "
            f"(seed {config.seed}, {config.residents:,} residents) under this pseudonym key"
        )
    config = replace(
        config,
        letters=frozenset(ids[hit].tolist()),
        letter_year=letter_year,
        letter_effect=letter_effect,
        doctor_letters=frozenset(
            (i, topic[p]) for i, p in zip(ids[hit], pseudonyms[hit], strict=True) if p in topic
        ),
    )
    return config, {
        "letters": int(hit.sum()),
        "see_doctor_letters": len(config.doctor_letters),
        "letters_unmatched": len(wanted) - int(hit.sum()),
    }


def run_evaluate(store: Path, year: int, scores: Path, config=None):
    """介入効果の評価 of FY ``year``'s letters; writes OUT/evaluation_FY{year}.csv and .json."""
    import json

    from data.store import read_checkups, read_manifest
    from kenshin.errors import BadInputError
    from scoring.letter_effect import evaluate
    from scoring.outputs import AnnualOutputs

    outs = AnnualOutputs(scores)
    sel_path = outs.selection
    sel = read_selection(sel_path)
    _selection_year(sel, sel_path, year)
    read_manifest(store)
    present = {int(d.name.split("=")[1]) for d in (Path(store) / "checkups").glob("fiscal_year=*")}
    if year + 1 not in present:
        raise BadInputError(
            f"{store}: no FY{year + 1} checkups yet — FY{year}'s letters are evaluated at the "
            f"next year's checkups"
        )
    checkups = read_checkups(store, sorted({year - 1, year, year + 1} & present))
    fy = checkups["fiscal_year"].astype("int64")
    try:
        result = evaluate(sel, checkups[fy < year + 1], checkups[fy == year + 1], year, config)
    except ValueError as exc:
        raise BadInputError(f"{sel_path}: {exc}") from None
    paths = {"csv": outs.evaluation_csv(year), "json": outs.evaluation_json(year)}
    from data.files import csv_bytes  # spreadsheet-safe CSV (no cell runs as a formula)

    paths["csv"].write_bytes(csv_bytes(result.comparisons))
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return result, paths


def print_evaluation(console: Console, result) -> None:
    """Letter vs control per group and measure: values, difference [CI]."""
    from scoring.letter_effect import format_estimate

    t = Table(
        title=data_text(
            f"介入効果の評価: FY{result.fiscal_year} letters at FY{result.follow_up_year} "
            f"checkups (ITT, {result.config.confidence:.0%} CI)"
        ),
        caption="shares: letter − control in percentage points (Newcombe); "
        "changes: mean change, letter − control (Welch)",
    )
    for c in ("group", "measure", "letter (n)", "control (n)", "difference [CI]"):
        t.add_column(c, justify="left" if c in ("group", "measure") else "right")
    for r in result.comparisons.to_dict("records"):
        share = r["method"] != "Welch t"

        def cell(v, n, share=share):
            return f"{_f(v, '{:.1%}' if share else '{:+.2f}')} ({n:,})"

        t.add_row(data_text(r["group"]), data_text(r["measure"]),
                  cell(r["letter"], r["n_letter"]), cell(r["control"], r["n_control"]),
                  data_text(format_estimate(r)))  # fmt: skip
    console.print(t)
