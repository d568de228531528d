"""The ``kenshin`` command line: a thin edge over the stage packages.

The commands, options and exit codes: docs/contract.md §Command line, §Exit codes.

Every command exits 0 on success, 2 on bad input with a one-line reason on stderr, and 3 on an
internal error (a bug): one line on stderr naming a log file with the traceback, which never
reaches the terminal. It prints a summary of what it read, wrote and rejected.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from kenshin.errors import (
    BadInputError,
    error_kind,
    one_line,
    short_message,
    write_error_log,
)
from kenshin.paths import check_writable_folder
from kenshin.printable import data_text, printable

app = typer.Typer(
    add_completion=False,
    # Plain click help: it wraps at the terminal width instead of truncating option names and
    # defaults in a table (readable at 80 columns).
    rich_markup_mode=None,
    no_args_is_help=True,
    help="kenshin: lifestyle-disease risk from 特定健診 checkups, explained, with advice letters.",
    # Internal errors are caught by handles_bad_input; should anything slip through, never
    # print local variables (they hold residents' rows).
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)
# MLflow's own artifact-download bars would write tqdm lines into stderr, which carries only
# the command's one-line errors; kenshin shows its own progress.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


#: Exit codes (docs/contract.md §Exit codes).
EXIT_BAD_INPUT, EXIT_INTERNAL = 2, 3


def _log_folders(kwargs: dict) -> list[Path]:
    """Where a command's error log goes: its work folder, else the parent of --out / --store."""
    folders: list[Path] = []
    if kwargs.get("workdir") is not None:
        folders.append(Path(kwargs["workdir"]))
    for key in ("out", "store", "scores"):
        if kwargs.get(key) is not None:
            folders.append(Path(kwargs[key]).parent)
    return folders


def print_error(message: str) -> None:
    """``error: <message>`` as one line on stderr, printed literally (no console markup)."""
    text = Text("error:", style="bold red")
    text.append(" " + printable(one_line(message)))
    err_console.print(text, highlight=False, soft_wrap=True)


def say(line: object) -> None:
    """Print a line that holds data (paths, names): literally, control characters removed."""
    console.print(data_text(line), highlight=False)


def prepare_tracking(workdir: Path) -> None:
    """Before a command that writes to MLflow does any work: the work folder and tracking store
    must be writable (else exit 2), and runs a killed kenshin left RUNNING are marked FAILED."""
    from models.registry import prepare_tracking as prepare

    for run in prepare(workdir):
        note = Text("note:", style="yellow")
        note.append(
            printable(
                f" MLflow run {run['run_id']} ({run['name']}) was left RUNNING by process "
                f"{run['pid']}, which has ended: marked FAILED"
            )
        )
        err_console.print(note, highlight=False, soft_wrap=True)


def fiscal_year(option: str, value: int | None) -> int | None:
    """A fiscal year option: four digits, 2008 (the first year of 特定健診) to 2100; a two-digit
    year gets a suggestion (``--year 25`` → did you mean 2025?). Bad input: exit 2, one line."""
    if value is None or 2008 <= value <= 2100:
        return value
    if 8 <= value < 100:
        raise BadInputError(
            f"{option} {value} is not a fiscal year: give four digits (did you mean "
            f"{2000 + value}?)"
        )
    raise BadInputError(f"{option} {value} is not a fiscal year of 特定健診 (2008-2100)")


#: Path parameters given as arguments, not options (the rest are ``--name``).
_ARGUMENTS = {"bundle": "BUNDLE"}


def _option_name(key: str) -> str:
    """How the user wrote the parameter ``key``: ``--out``, or ``BUNDLE`` for an argument."""
    return _ARGUMENTS.get(key) or "--" + key.replace("_", "-")


def check_path_options(kwargs: dict) -> None:
    """Before any work: a path option that is a symbolic link loop is bad input (exit 2, one
    line), never a ``RuntimeError: Symlink loop`` from wherever the command resolves it."""
    from kenshin.paths import check_no_symlink_loop

    for key, value in kwargs.items():
        if isinstance(value, Path):
            check_no_symlink_loop(value, _option_name(key))


def handles_bad_input(func: Callable) -> Callable:
    """Exit codes of docs/contract.md §Exit codes for a command.

    :class:`BadInputError` → exit 2 with its one-line reason on stderr. Any other exception is a
    bug → exit 3 with one line on stderr naming a log file (in the command's work folder) that
    holds the traceback; the traceback never reaches the terminal. typer/click's own exits and
    usage errors pass through (exit 2 for usage errors).
    """
    command = func.__name__.split("_")[0]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            check_path_options(kwargs)
            return func(*args, **kwargs)
        except BadInputError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            kind = error_kind(exc)
            try:
                log = write_error_log(exc, _log_folders(kwargs), command, kwargs)
                where = f"details in {log}"
            except Exception as log_exc:  # pragma: no cover - nowhere to write
                where = f"no log could be written ({type(log_exc).__name__})"
            text = Text("internal error:", style="bold red")
            text.append(printable(f" {kind}: {short_message(exc)} — {where}; please report it"))
            err_console.print(text, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        # Not on a terminal (a job log, a pipe) a bar is noise: rich would still end it with
        # an empty line before the one-line result.
        disable=not sys.stderr.isatty(),
    )


@app.command()
@handles_bad_input
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the bundle into.")],
    residents: Annotated[int, typer.Option(min=100, help="NHI members aged 40-74.")] = 10_000,
    years: Annotated[int, typer.Option(min=2, max=20, help="Fiscal years of checkups.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bundle.")] = 0,
    last_fiscal_year: Annotated[int, typer.Option(help="Last fiscal year generated.")] = 2025,
    fmt: Annotated[
        Literal["csv", "parquet", "xml"],
        typer.Option(
            "--format", help="Bundle file format (xml: checkups as MHLW exchange archives)."
        ),
    ] = "csv",
    dirty: Annotated[bool, typer.Option(help="Inject the faults real exports have.")] = False,
    questionnaire_coding: Annotated[
        Literal["by-year", "current"],
        typer.Option(
            help="Pre-FY2024 answers in their own form's codes (by-year) or the 2024 codes."
        ),
    ] = "by-year",
    letters: Annotated[
        Path | None,
        typer.Option(
            help="selection.parquet of a scoring run: simulate its letter arm's response."
        ),
    ] = None,
    letter_year: Annotated[
        int | None,
        typer.Option(help="Scoring FY of --letters (default: its fiscal_year)."),
    ] = None,
    letter_effect: Annotated[
        float, typer.Option(min=0.0, max=20.0, help="Strength of the letters' effect (0 = none).")
    ] = 0.3,
) -> None:
    """Write a synthetic ward's input bundle (+ truth.csv)."""
    from kenshin.commands import run_synth

    fiscal_year("--last-fiscal-year", last_fiscal_year)
    fiscal_year("--letter-year", letter_year)
    check_writable_folder(out, "--out")  # before any work (a read-only place: exit 2)

    with progress() as bar:
        paths, summary = run_synth(
            out, residents, years, seed, last_fiscal_year, fmt, dirty, bar=bar,
            letters=letters, letter_year=letter_year, letter_effect=letter_effect,
            questionnaire_coding=questionnaire_coding,
        )  # fmt: skip
    table = Table(title=data_text(f"synthetic bundle → {out}"))
    for col in ("table", "rows", "file"):
        table.add_column(col)
    for name, path in paths.items():
        table.add_row(data_text(name), f"{summary.get(name, ''):,}", data_text(path.name))
    console.print(table)
    if dirty:
        say(f"injected faults: {summary['faults']}")
    if letters is not None:
        say(
            f"letters: {summary['letters']:,} residents of the letter arm respond (effect "
            f"{letter_effect}; {summary['see_doctor_letters']:,} see-a-doctor letters may start "
            f"treatment); {summary['letters_unmatched']:,} lettered pseudonyms not in the ward"
        )


@app.command("evaluate")
@handles_bad_input
def evaluate_letters(
    store: Annotated[Path, typer.Option(help="Store folder holding next year's checkups.")],
    year: Annotated[
        int,
        typer.Option(help="Scoring fiscal year whose letters are evaluated."),
    ],
    scores: Annotated[
        Path, typer.Option(help="That year's scoring output folder (selection.parquet).")
    ],
) -> None:
    """Letter vs control arm at next year's checkups: ITT effects with CIs.

    介入効果の評価 (evaluation of the letters).
    """
    from kenshin.commands import print_evaluation, run_evaluate

    fiscal_year("--year", year)
    if scores.is_dir():  # the evaluation is written beside the selection
        check_writable_folder(scores, "--scores")
    result, paths = run_evaluate(store, year, scores)
    print_evaluation(console, result)
    for path in paths.values():
        say(f"wrote {path}")


#: --engine / --spark-master / --spark-config (README §Running on Spark).
EngineOption = Annotated[
    Literal["pandas", "spark"],
    typer.Option(help="Where the work runs: pandas (this process) or spark."),
]
SparkMasterOption = Annotated[
    str | None,
    typer.Option(help="Spark master (default: $SPARK_MASTER, else local[*])."),
]
SparkConfigOption = Annotated[
    Path | None,
    typer.Option(help="Spark TOML (default: kenshin/spark/spark.toml)."),
]


@app.command()
@handles_bad_input
def ingest(
    bundle: Annotated[Path, typer.Argument(help="Input bundle folder (CSV / Parquet / XML).")],
    store: Annotated[Path, typer.Option(help="Store folder to write.")],
    encoding: Annotated[
        str | None, typer.Option(help="Force CSV encoding (default: detect UTF-8 / CP932).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rewrite even if the bundle is unchanged.")] = False,
    today: Annotated[str | None, typer.Option(help="Date that counts as today (ISO).")] = None,
    questionnaire_coding: Annotated[
        Literal["auto", "by-year", "current"] | None,
        typer.Option(
            help="How pre-FY2024 questionnaire answers are coded: auto (detect per file and "
            "year; default), by-year (each year its own form's codes), current (2024 codes)."
        ),
    ] = None,
    accept_rejects: Annotated[
        bool | None,
        typer.Option(
            "--accept-rejects", help="Load even when more than the allowed share is rejected."
        ),
    ] = None,
    max_reject_share: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Stop when a table loses more (default 0.2)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="ingest.toml with defaults for the options above.")
    ] = None,
    engine: Annotated[
        Literal["pandas", "spark"],
        typer.Option(help="Where XML documents are parsed: pandas (this machine) or spark."),
    ] = "pandas",
    spark_master: SparkMasterOption = None,
    spark_config: SparkConfigOption = None,
) -> None:
    """Validate a bundle and load it into the pseudonymised Parquet store."""
    from kenshin.commands import print_ingest_summary, run_ingest

    with progress() as bar:
        result = run_ingest(
            bundle, store, encoding=encoding, force=force, today=today, bar=bar,
            questionnaire_coding=questionnaire_coding, accept_rejects=accept_rejects,
            max_reject_share=max_reject_share, settings_file=config, engine=engine,
            spark_master=spark_master, spark_config=spark_config,
        )  # fmt: skip
    print_ingest_summary(console, result, store)


@app.command()
@handles_bad_input
def features(
    store: Annotated[Path, typer.Option(help="Store folder (from 'kenshin ingest').")],
    out: Annotated[Path, typer.Option(help="Folder for features, labels and follow-up report.")],
    truth: Annotated[
        Path | None, typer.Option(help="truth.csv of a synthetic bundle (adds true risks).")
    ] = None,
    engine: EngineOption = "pandas",
    spark_master: SparkMasterOption = None,
    spark_config: SparkConfigOption = None,
) -> None:
    """Build the as-of features and labels; report who has no follow-up checkup."""
    from kenshin.commands import print_follow_up, run_features

    check_writable_folder(out, "--out")  # before any work (a read-only place: exit 2)
    result = run_features(
        store, out, truth, engine=engine, spark_master=spark_master, spark_config=spark_config
    )
    print_follow_up(console, result["follow_up"])
    for name, path in result["paths"].items():
        say(f"{name}: {path}")
    say(f"{result['rows']:,} index rows")


@app.command()
@handles_bad_input
def train(
    store: Annotated[Path, typer.Option(help="Store folder (from 'kenshin ingest').")],
    workdir: Annotated[Path, typer.Option(help="Work folder (MLflow store lives here).")] = Path(
        "work"
    ),
    truth: Annotated[
        Path | None, typer.Option(help="truth.csv of a synthetic bundle (oracle metrics).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Training TOML (default: models/train.toml).")
    ] = None,
    engine: EngineOption = "pandas",
    spark_master: SparkMasterOption = None,
    spark_config: SparkConfigOption = None,
) -> None:
    """Train, evaluate, log to MLflow and register kenshin-risk@challenger."""
    from kenshin.commands import print_train_summary, run_train
    from models.train_config import load_train_config

    load_train_config(config)  # a bad file stops here (exit 2), before any work
    prepare_tracking(workdir)
    with progress() as bar:
        _engine, report, run = run_train(
            store, workdir, truth, config, bar=bar, engine=engine,
            spark_master=spark_master, spark_config=spark_config,
        )  # fmt: skip
    print_train_summary(console, report, run)


@app.command()
@handles_bad_input
def promote(
    workdir: Annotated[Path, typer.Option(help="Work folder (MLflow store lives here).")] = Path(
        "work"
    ),
    store: Annotated[
        Path | None, typer.Option(help="Store to rebuild the test rows from (default: logged).")
    ] = None,
    auc_tolerance: Annotated[float, typer.Option(help="Largest AUC drop allowed.")] = 0.01,
    ece_max: Annotated[float, typer.Option(help="Largest ECE allowed.")] = 0.05,
    slope_tolerance: Annotated[float, typer.Option(help="Largest |cal. slope − 1|.")] = 0.3,
    force: Annotated[bool, typer.Option(help="Promote even if the gate fails.")] = False,
) -> None:
    """Compare challenger with champion on the same test rows; move champion if it passes."""
    from kenshin.commands import print_promotion, run_promote
    from models.registry import PromotionPolicy

    policy = PromotionPolicy(auc_tolerance, ece_max, slope_tolerance)
    prepare_tracking(workdir)
    print_promotion(console, run_promote(workdir, store, force, policy))


@app.command()
@handles_bad_input
def score(
    store: Annotated[Path, typer.Option(help="Store folder written by 'kenshin ingest'.")],
    year: Annotated[
        int,
        typer.Option(help="Fiscal year to score (its checkups, or FY-1's)."),
    ],
    out: Annotated[Path, typer.Option(help="Output folder (scores, selection, letters, report).")],
    model: Annotated[str, typer.Option(help="Model URI.")] = "models:/kenshin-risk@champion",
    workdir: Annotated[Path, typer.Option(help="Work folder (MLflow store lives here).")] = Path(
        "work"
    ),
    scoring_config: Annotated[
        Path | None, typer.Option(help="Scoring TOML (default: scoring/scoring.toml).")
    ] = None,
    selection_config: Annotated[
        Path | None, typer.Option(help="Selection TOML (default: scoring/selection.toml).")
    ] = None,
    scoring_date: Annotated[
        str | None, typer.Option(help="Enrollment date checked, YYYY-MM-DD (default: 1 April).")
    ] = None,
    letter_history: Annotated[
        Path | None,
        typer.Option(
            help="Earlier letters (pseudonym, letter_date), e.g. last year's letters_sent.csv."
        ),
    ] = None,
    letters: Annotated[bool, typer.Option(help="Render advice letters.")] = True,
    report: Annotated[bool, typer.Option(help="Write the staff report.")] = True,
    report_pdf_residents: Annotated[
        int, typer.Option(min=0, help="Resident pages in the report PDF (HTML has all).")
    ] = 2000,
    engine: EngineOption = "pandas",
    spark_master: SparkMasterOption = None,
    spark_config: SparkConfigOption = None,
    compiled_prediction: Annotated[
        Literal["auto", "on", "off"] | None,
        typer.Option(
            help="Predict with the boosters compiled to machine code (LightGBM's results, "
            "faster): auto = when cached or ≥ 600,000 residents (default: "
            "$KENSHIN_COMPILED_PREDICTION, else auto)."
        ),
    ] = None,
) -> None:
    """Score FY's eligible residents, select letters (with a control arm), write letters + report."""
    from kenshin.annual import print_annual, run_scoring_command

    fiscal_year("--year", year)
    prepare_tracking(workdir)
    with progress() as bar:
        result = run_scoring_command(
            store, year, out, model, workdir, scoring_config, selection_config, scoring_date,
            letter_history, letters, report, bar, report_pdf_residents=report_pdf_residents,
            engine=engine, spark_master=spark_master, spark_config=spark_config,
            compiled_prediction=compiled_prediction,
        )  # fmt: skip
    print_annual(console, result)


@app.command()
@handles_bad_input
def demo(
    residents: Annotated[int, typer.Option(min=100, help="Synthetic NHI members.")] = 10_000,
    workdir: Annotated[Path, typer.Option(help="Work folder for everything.")] = Path("work"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    demo_letters: Annotated[
        int, typer.Option(min=0, help="Advice-letter budget of the demo run.")
    ] = 200,
) -> None:
    """The whole annual run on a generated ward: synth, ingest, train, promote, score, select,
    letters, report."""
    from data.pseudonym import demo_key
    from kenshin.annual import print_annual, run_scoring_command
    from kenshin.commands import (
        mlflow_ui_hint,
        print_ingest_summary,
        print_promotion,
        print_train_summary,
        run_ingest,
        run_promote,
        run_synth,
        run_train,
    )

    bundle, store = workdir / "bundle", workdir / "store"
    prepare_tracking(workdir)
    with progress() as bar:
        run_synth(bundle, residents, 6, seed, 2025, "csv", dirty=True, bar=bar)
        with demo_key():  # the same pseudonyms, split and figures on every machine
            result = run_ingest(bundle, store, force=True, bar=bar)
    print_ingest_summary(console, result, store)
    say("pseudonyms: the demo's own public key (synthetic residents only), so every machine "
        "trains on the same residents; a real ward's key is never used or created here")  # fmt: skip
    with progress() as bar:
        _engine, report, run = run_train(store, workdir, bundle / "truth.csv", bar=bar)
    print_train_summary(console, report, run)
    print_promotion(console, run_promote(workdir))
    with progress() as bar:
        annual = run_scoring_command(
            store, 2025, workdir / "annual_FY2025", "models:/kenshin-risk@champion", workdir,
            None, None, None, None, True, True, bar, letter_budget=demo_letters,
        )  # fmt: skip
    print_annual(console, annual)
    console.print(Text("demo done.", style="bold") + data_text(f" bundle: {bundle}  store: {store}"),
                  highlight=False)  # fmt: skip
    say(f"MLflow: {run.tracking_uri}  — browse with: {mlflow_ui_hint(workdir)}")


def main() -> None:  # pragma: no cover
    app()
