"""Commands that put data in and say what is there: init, ingest, loads, sample, status,
quarantine, dataset."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segone.cli._app import app, dataset_app, loads_app
from segone.cli._common import (
    EXIT_FAILED,
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    err,
    escape,
    fail,
    missing,
    open_project,
    project_warehouse,
    table,
    user_errors,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from segone.ingest import LoadResult
    from segone.project import Project

# the kinds, for help text only (segone.ingest.kinds imports the readers; checked again there)
KINDS_HELP = "events, orders, products, customers, interactions, enrichment"


def progress_bar() -> Progress:
    """A byte-counting progress bar on stderr, shown only on a terminal."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err.get(),
        transient=True,
        disable=not err.get().is_terminal,
    )


def ingest_one(project: Project, kind: str, path: Path, **kwargs: Any) -> LoadResult:
    """Load one file with a progress bar (also used by ``segone demo``)."""
    from segone.exceptions import IngestError
    from segone.ingest import ingest_file
    from segone.ingest.kinds import get_kind

    get_kind(kind)
    if not path.is_file():
        raise IngestError(f"no such file: {path}")
    with progress_bar() as bar, project.warehouse() as wh:
        task = bar.add_task(f"{kind} {path.name}", total=max(path.stat().st_size, 1))

        def hook(phase: str, done: int, total: int) -> None:
            if phase == "read":
                bar.update(task, completed=done)
            else:
                bar.update(task, description=f"{kind} {path.name}: {phase}")

        return ingest_file(
            wh,
            kind,
            path,
            settings=project.settings.ingest,
            progress=hook,
            identity=project.settings.identity,
            **kwargs,
        )


def print_result(r: LoadResult) -> None:
    console.print(r.summary(), highlight=False, soft_wrap=True)
    for code, n in r.problems.items():
        console.print(f"    {n:>8,} x {code}", highlight=False)
    for line, reason in r.examples:
        console.print(f"    line {line}: {escape(reason)}", highlight=False, soft_wrap=True)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Project directory to create.")] = Path("."),
) -> None:
    """Create a project: segone.toml and an empty DuckDB warehouse."""
    from segone.project import Project

    with user_errors():
        project = Project.init(directory)
    console.print(
        f"Initialised segone project in {project.root} "
        f"(warehouse: {project.settings.warehouse_path.name})"
    )


@app.command()
def ingest(
    kind: Annotated[
        str,
        typer.Argument(
            help=f"What the file holds: {KINDS_HELP}; or `presets` to list known layouts."
        ),
    ],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="CSV, Parquet, JSON Lines or JSON files (.gz ok).", show_default=False),
    ] = None,
    project: ProjectOpt = Path("."),
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, parquet, jsonl or json (default: from the extension)."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Read the file as this export layout (default: recognised from the header; "
            "`segone ingest presets` lists them)."
        ),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=COLUMN: read canonical FIELD from COLUMN (repeatable)."),
    ] = None,
    map_values: Annotated[
        list[str] | None,
        typer.Option(
            "--map-values",
            help="FIELD:FROM=TO: read value FROM of FIELD as TO, e.g. status:paid=completed "
            "(repeatable; FROM without case).",
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name for the rows (default: the file's stem).")
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="Time zone of timestamps without an offset (default: [ingest] timezone)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Read and check the first 10,000 rows, show the layout, the mapping and the "
            "problems found; write nothing.",
        ),
    ] = False,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding, e.g. cp1252 (default: detected).")
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(help="Column delimiter: a character, tab or whitespace (default: sniffed)."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="a,b,c: the file has no header line; these are its column names."),
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(help="DMY or MDY: how to read dates like 05/06/2024 (default: from values)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load files into the warehouse; bad rows go to quarantine, loading twice adds nothing.

    Exit code 0 when every file loaded rows (or had only rows loaded before), 1 when a file
    loaded nothing (unreadable, empty, or every row rejected), 2 for a usage error.
    """

    if kind == "presets":
        with user_errors():
            print_presets(open_project(project) if (project / "segone.toml").is_file() else None)
        return
    if not paths:
        fail("name at least one file to ingest")
    from segone.exceptions import FileFormatError, IngestError
    from segone.ingest.mapping import parse_map_options
    from segone.ingest.presets import parse_value_maps
    from segone.ingest.readers import FORMATS

    failed = False
    results: list[dict[str, Any]] = []
    with user_errors():
        if fmt is not None and fmt not in FORMATS:
            raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        proj = open_project(project)
        explicit = parse_map_options(mapping or [])
        values = parse_value_maps(map_values or [])
        for path in paths:
            try:
                r = ingest_one(
                    proj,
                    kind,
                    path,
                    fmt=fmt,
                    mapping=explicit,
                    source=source,
                    timezone=timezone,
                    preset=preset,
                    value_maps=values,
                    dry_run=dry_run,
                    encoding=encoding,
                    delimiter=delimiter,
                    columns=columns,
                    date_format=date_format,
                )
            except FileFormatError as exc:  # this file cannot be read: say so, go on
                err.print(
                    f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
                )
                failed = True
                continue
            if as_json:
                results.append({**asdict(r), "loaded_nothing": r.loaded_nothing})
            else:
                print_mapping(r)
                print_result(r)
            failed = failed or r.loaded_nothing
    if as_json:
        emit_json(results)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def print_mapping(r: LoadResult) -> None:
    name = Path(r.path).name
    layout = f"layout {r.preset}" if r.preset else "columns matched by name"
    console.print(f"{name}: {layout}", highlight=False, soft_wrap=True)
    for line in r.formats:
        console.print(f"    {line}", highlight=False, soft_wrap=True)
    for f, src in r.mapping.items():
        console.print(f"    {f:<18} <- {src}", highlight=False, soft_wrap=True)
    if r.extra_columns:
        shown = ", ".join(r.extra_columns[:12]) + (" …" if len(r.extra_columns) > 12 else "")
        console.print(
            f"    kept under extra ({len(r.extra_columns)}): {shown}",
            highlight=False,
            soft_wrap=True,
        )


def print_presets(proj: Project | None) -> None:
    from segone.ingest.presets import all_presets, presets_table

    rows = presets_table(all_presets(proj.settings.ingest.presets if proj else None))
    for row in rows:
        console.print(
            f"[bold]{row['name']}[/] ({row['tool']}, {row['kind']}, {row['origin']}): "
            f"{escape(row['doc'])}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"    recognised by: {escape(row['detect'])}", highlight=False, soft_wrap=True
        )
        console.print(f"    maps: {escape(row['mapping'])}", highlight=False, soft_wrap=True)


@loads_app.callback()
def loads_list(
    ctx: typer.Context,
    project: ProjectOpt = Path("."),
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List the loads: id, kind, file, rows read / loaded / skipped / rejected, when."""
    if ctx.invoked_subcommand is not None:
        return
    from segone.ingest.loads import list_loads

    with user_errors(), project_warehouse(project, write=True) as (_, wh):
        df = list_loads(wh, limit)
    if as_json:
        emit_json(df)
        return
    if df.empty:
        console.print("no loads yet")
        return
    t = table(
        "load", "kind", "file", "read", "loaded", "skipped", "rejected", "when (UTC)", box=None
    )
    for x in df.itertuples():
        loaded = f"{x.rows_loaded:,}" + (
            f" ({x.lines_loaded:,} lines)"  # type: ignore[str-bytes-safe]
            if x.kind == "orders" and x.lines_loaded
            else ""
        )
        t.add_row(
            str(x.load_id),
            str(x.kind),
            Path(str(x.path)).name,
            f"{x.rows_read:,}",
            loaded,
            f"{x.rows_duplicate:,}",
            f"{x.rows_rejected:,}",
            "" if missing(x.finished_at) else f"{x.finished_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(t)


@loads_app.command("undo")
def loads_undo(
    load_id: Annotated[str, typer.Argument(help="The load to remove (see `segone loads`).")],
    project: ProjectOpt = Path("."),
) -> None:
    """Remove exactly what one load added (its rows and quarantine entries), in one transaction.

    Erasure records stay. Run `segone build` afterwards to refresh profiles and segments.
    """
    from segone.ingest.loads import undo_load

    with user_errors(), project_warehouse(project, write=True) as (_, wh):
        removed = undo_load(wh, load_id)
    what = ", ".join(f"{n:,} from {t}" for t, n in removed.items()) or "no rows"
    console.print(f"undid {load_id}: removed {what}; run `segone build` to refresh profiles")


@app.command()
def sample(
    customers: Annotated[int, typer.Option(help="Number of real people to generate.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory (data/ and truth/ inside).")] = Path(
        "sample"
    ),
) -> None:
    """Generate a realistic multichannel store with ground truth."""
    from segone.datasets import generate_sample
    from segone.exceptions import SegoneError

    with user_errors():
        if customers <= 0:
            raise SegoneError("--customers must be positive")
        t = time.perf_counter()
        with err.status(f"generating {customers:,} people"):
            counts = generate_sample(out, customers=customers, seed=seed)
    console.print(
        f"Wrote {out / 'data'} and ground truth in {out / 'truth'} "
        f"in {time.perf_counter() - t:.1f}s:",
        highlight=False,
    )
    for k in ("customers", "orders", "order_lines", "events", "interactions", "quarantine"):
        console.print(f"  {k:<14} {counts[k]:>12,}", highlight=False)


@app.command()
def status(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """What is loaded: rows per table, loads, and a quarantine summary."""
    from segone.status import status_report

    with user_errors(), project_warehouse(project, write=False) as (proj, wh):
        rep = status_report(wh)
    if as_json:
        emit_json({"project": str(proj.root), **rep})
        return
    print_status(proj, rep)


def print_status(proj: Project, rep: dict[str, Any]) -> None:
    t = table("table", "rows", title=f"segone project {proj.root}")
    for name, n in rep["tables"].items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    if rep["quarantine"]:
        q = table("kind", "problem", "rows", title="quarantine (rejected rows by kind and problem)")
        for row in rep["quarantine"]:
            q.add_row(row["kind"], row["problem"], f"{row['rows']:,}")
        console.print(q)
    else:
        console.print("quarantine is empty")


@app.command()
def quarantine(
    project: ProjectOpt = Path("."),
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    values: Annotated[
        bool, typer.Option("--values", help="Show the full reasons, with the rejected values.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show quarantined rows: file, line and what is wrong.

    By default only problem codes are printed: reasons quote the rejected values, which may be
    personal data. --values prints the reasons; records are never printed.
    """
    from segone.status import quarantine_rows

    with user_errors(), project_warehouse(project, write=False) as (_proj, wh):
        rows = quarantine_rows(wh, kind, limit)
    if not values:
        rows = [{k: v for k, v in r.items() if k != "reason"} for r in rows]
    if as_json:
        emit_json(rows)
        return
    t = table("kind", "file", "line", "reason" if values else "problems")
    for r in rows:
        t.add_row(
            r["kind"],
            Path(r["source_file"]).name,
            str(r["line"]),
            escape(r["reason"] if values else r["problems"]),
        )
    console.print(t)


@dataset_app.command("cdnow")
def dataset_cdnow(
    out: Annotated[Path, typer.Argument(help="Orders CSV to write.")] = Path("cdnow_orders.csv"),
) -> None:
    """Write the CDNOW purchase history (2,357 customers, 1997-98) as an orders file."""
    from segone.datasets import write_cdnow_orders

    n = write_cdnow_orders(out)
    console.print(f"Wrote {n:,} CDNOW orders to {out}; load them with `segone ingest orders {out}`")
