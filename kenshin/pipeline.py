"""Command implementations shared by the CLI and MLproject: call the stage cores, report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from data.ingest import INGEST_STEPS, IngestConfig, IngestResult, ingest


def run_synth(
    out: Path,
    residents: int,
    years: int,
    seed: int,
    last_fiscal_year: int,
    fmt: str = "csv",
    dirty: bool = False,
    bar: Progress | None = None,
) -> tuple[dict[str, Path], dict]:
    """Generate a synthetic ward and write its bundle; ``dirty`` injects export faults."""
    from data.dirty import make_dirty, write_dirty
    from data.synth import SynthConfig, generate, write_bundle

    task = bar.add_task("synth", total=2) if bar else None
    bundle = generate(
        SynthConfig(residents=residents, years=years, last_fiscal_year=last_fiscal_year, seed=seed)
    )
    if bar:
        bar.advance(task)
    summary: dict = {
        "checkups": len(bundle.checkups),
        "enrollment": len(bundle.enrollment),
        "contacts": len(bundle.contacts),
        "truth": len(bundle.truth),
    }
    if dirty:
        if fmt != "csv":
            from kenshin.errors import BadInputError

            raise BadInputError(f"--dirty writes CSV exports; drop --format {fmt}")
        paths = write_bundle(bundle, out, fmt="csv")
        tables, report = make_dirty(bundle.checkups, bundle.enrollment, bundle.contacts, seed=seed)
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
        paths = write_bundle(bundle, out, fmt=fmt)
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
) -> IngestResult:
    task = bar.add_task("ingest", total=len(INGEST_STEPS)) if bar else None
    seen: list[str] = []

    def on_step(step: str) -> None:
        if bar:
            if seen:
                bar.advance(task)
            bar.update(task, description=f"ingest: {step}")
        seen.append(step)

    result = ingest(
        bundle, store, IngestConfig(encoding=encoding, force=force, today=today), on_step=on_step
    )
    if bar:
        bar.update(task, completed=len(INGEST_STEPS))
    return result


def print_ingest_summary(console: Console, result: IngestResult, store: Path) -> None:
    """Row accounting per table, reject reasons, and extras: what was read, written, rejected."""
    table = Table(title=f"row accounting → {store}")
    for col in ("table", "read", "loaded", "rejected", "merged duplicates", "adds up"):
        table.add_column(col, justify="right" if col != "table" else "left")
    for name, a in result.accounting.items():
        table.add_row(
            name,
            f"{a.read:,}",
            f"{a.loaded:,}",
            f"{a.rejected:,}",
            f"{a.merged_duplicates:,}",
            "yes" if a.balanced else "[red]NO[/]",
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
            rt.add_row(r["table"], str(r["column"]), r["reason"], f"{r['rows']:,}")
        console.print(rt)
        first = result.rejects.head(5)
        for r in first.itertuples():
            console.print(
                f"  e.g. {r.source_file} row {r.source_row}, column {r.column}: {r.reason}",
                highlight=False,
            )
    for name, notes in result.manifest.get("reader_notes", {}).items():
        for source, report in notes.items():
            console.print(f"{name} from {source}: {report}", highlight=False)
    for name, cols in result.extra_columns.items():
        console.print(
            f"unknown columns in {name} kept aside (private/extra_columns.parquet): {cols}"
        )
