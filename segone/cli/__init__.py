"""The ``segone`` command line: thin over the library, clear errors, never a traceback for a
user mistake."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import ibis
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from segone.cli.users import users_app
from segone.exceptions import FileFormatError, IngestError, SegoneError
from segone.ingest import KINDS, LoadResult, ingest_file
from segone.ingest.kinds import get_kind
from segone.ingest.loads import list_loads, undo_load
from segone.ingest.mapping import parse_map_options
from segone.ingest.presets import all_presets, parse_value_maps, presets_table
from segone.ingest.readers import FORMATS
from segone.project import Project
from segone.segments.batch import require_profiles
from segone.status import status_report

app = typer.Typer(
    name="segone",
    help="segone: one profile, segment, forecast and decision per customer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dataset_app = typer.Typer(help="Real public data sets shipped with segone.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
segments_app = typer.Typer(
    help="Segments defined in YAML (the project's segments/ folder), evaluated on the profiles.",
    no_args_is_help=True,
)
app.add_typer(segments_app, name="segments")
loads_app = typer.Typer(
    help="Loads of files into the warehouse: list them (no command), or undo one.",
    invoke_without_command=True,
)
app.add_typer(loads_app, name="loads")
app.add_typer(__import__("segone.cli.keys", fromlist=["keys_app"]).keys_app, name="keys")
app.add_typer(__import__("segone.cli.evaluate", fromlist=["app"]).app, name="evaluate")
app.add_typer(users_app, name="users")

console = Console()
err = Console(stderr=True)

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        help="Project directory (default: $SEGONE_PROJECT or .).",
        envvar="SEGONE_PROJECT",
        show_default=False,
    ),
]


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except SegoneError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _ingest_one(project: Project, kind: str, path: Path, **kwargs: Any) -> LoadResult:
    get_kind(kind)
    if not path.is_file():
        raise IngestError(f"no such file: {path}")
    with _progress() as bar, project.warehouse() as wh:
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


def _print_result(r: LoadResult) -> None:
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
    with _user_errors():
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
            help=f"What the file holds: {', '.join(KINDS)}; or `presets` to list known layouts."
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
) -> None:
    """Load files into the warehouse; bad rows go to quarantine, loading twice adds nothing.

    Exit code 0 when every file loaded rows (or had only rows loaded before), 1 when a file
    loaded nothing (unreadable, empty, or every row rejected), 2 for a usage error.
    """
    if kind == "presets":
        with _user_errors():
            _print_presets(Project.open(project) if (project / "segone.toml").is_file() else None)
        return
    if not paths:
        err.print("[bold red]error:[/] name at least one file to ingest", highlight=False)
        raise typer.Exit(2)
    failed = False
    with _user_errors():
        if fmt is not None and fmt not in FORMATS:
            raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        proj = Project.open(project)
        explicit = parse_map_options(mapping or [])
        values = parse_value_maps(map_values or [])
        for path in paths:
            try:
                r = _ingest_one(
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
            _print_mapping(r)
            _print_result(r)
            failed = failed or r.loaded_nothing
    if failed:
        raise typer.Exit(1)


def _print_mapping(r: LoadResult) -> None:
    name = Path(r.path).name
    layout = f"layout {r.preset}" if r.preset else "columns matched by name"
    console.print(f"{name}: {layout}", highlight=False, soft_wrap=True)
    for f, src in r.mapping.items():
        console.print(f"    {f:<18} <- {src}", highlight=False, soft_wrap=True)
    if r.extra_columns:
        shown = ", ".join(r.extra_columns[:12]) + (" …" if len(r.extra_columns) > 12 else "")
        console.print(
            f"    kept under extra ({len(r.extra_columns)}): {shown}",
            highlight=False,
            soft_wrap=True,
        )


def _print_presets(proj: Project | None) -> None:
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
) -> None:
    """List the loads: id, kind, file, rows read / loaded / skipped / rejected, when."""
    if ctx.invoked_subcommand is not None:
        return
    with _user_errors(), Project.open(project).warehouse() as wh:
        df = list_loads(wh, limit)
    if df.empty:
        console.print("no loads yet")
        return
    t = Table(box=None)
    for c in ("load", "kind", "file", "read", "loaded", "skipped", "rejected", "when (UTC)"):
        t.add_column(c)
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
            "" if _missing(x.finished_at) else f"{x.finished_at:%Y-%m-%d %H:%M:%S}",
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
    with _user_errors(), Project.open(project).warehouse() as wh:
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

    with _user_errors():
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
def status(project: ProjectOpt = Path(".")) -> None:
    """What is loaded: rows per table, loads, and a quarantine summary."""
    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            rep = status_report(wh)
    _print_status(proj, rep)


def _print_status(proj: Project, rep: dict[str, Any]) -> None:
    t = Table(title=f"segone project {proj.root}", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in rep["tables"].items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    if rep["quarantine"]:
        q = Table(title="quarantine (rejected rows by kind and problem)", title_justify="left")
        q.add_column("kind")
        q.add_column("problem")
        q.add_column("rows", justify="right")
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
) -> None:
    """Show quarantined rows: file, line and what is wrong.

    By default only problem codes are printed: reasons quote the rejected values, which may be
    personal data. ``--values`` prints the reasons; records are never printed.
    """
    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            q = wh.table("quarantine")
            if kind:
                q = q.filter(q.kind == kind)
            df = wh.execute(
                q.order_by([q.source_file, q.line])
                .select("kind", "source_file", "line", "problems", "reason")
                .limit(limit)
            )
    t = Table()
    for c in ("kind", "file", "line", "reason" if values else "problems"):
        t.add_column(c)
    for r in df.itertuples():
        t.add_row(r.kind, Path(r.source_file).name, str(r.line), r.reason if values else r.problems)
    console.print(t)


@app.command()
def build(
    project: ProjectOpt = Path("."),
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Build from data up to this date (YYYY-MM-DD or ISO time, UTC); default now.",
        ),
    ] = None,
    online: Annotated[
        bool,
        typer.Option(
            "--online/--no-online",
            help="Pick up the server's events before the build and publish the results to the "
            "online store after it (when the project has one).",
        ),
    ] = True,
) -> None:
    """Resolve identities and rebuild one profile per customer (as of now or a past date)."""
    from segone.online.sync import build_project

    with _user_errors():
        proj = Project.open(project)
        r, pub = build_project(proj, as_of=_parse_when(as_of), online=online, status=err.status)
        if pub is not None and pub.erased:
            from segone.identity.erase import compact_warehouse

            # erasures asked through the API: their bytes leave the warehouse file too
            with err.status("rewriting the warehouse file"):
                compact_warehouse(proj.settings.warehouse_path)
    console.print(r.summary(), highlight=False, soft_wrap=True)
    if pub is not None:
        console.print(pub.summary(), highlight=False, soft_wrap=True)


@app.command()
def models(
    project: ProjectOpt = Path("."),
    history: Annotated[bool, typer.Option("--all", help="Every fit, not only the latest.")] = False,
) -> None:
    """Fitted models: version, the data window each was fitted on, and its parameters."""
    import json

    import ibis

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            if "models" not in wh.tables():
                raise SegoneError("no models yet: run `segone build`")
            t = wh.table("models")
            if not history:
                last = t.group_by("name").aggregate(version=t.version.max())
                t = t.semi_join(last, ["name", "version"])
            df = wh.execute(t.order_by(["name", ibis.desc("version")]))
    tbl = Table(title="models", title_justify="left")
    for c in ("model", "version", "data up to", "rows", "parameters"):
        tbl.add_column(c)
    for r in df.itertuples():
        params = json.loads(r.params)
        shown = params.get("params", params)
        text = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in shown.items()
            if not isinstance(v, dict | list)
        )
        tbl.add_row(r.name, str(r.version), _when(r.window_end), f"{r.rows:,}", text)
    console.print(tbl)


def _parse_when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SegoneError(f"--as-of: cannot read {text!r} as a date (use YYYY-MM-DD)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if len(text) == 10:  # a date means the end of that day
        when = when + timedelta(days=1) - timedelta(microseconds=1)
    return when


@app.command()
def profile(
    identifier: Annotated[
        str,
        typer.Argument(
            help="A customer id, e-mail, phone, user id, cookie, handle, CRM or loyalty id."
        ),
    ],
    project: ProjectOpt = Path("."),
    timeline: Annotated[int, typer.Option(help="Recent records to show.")] = 15,
) -> None:
    """Show one person: profile, identifiers and recent timeline (this prints personal data)."""
    from segone.profiles.lookup import find_customers, profile_of

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            require_profiles(wh)
            ids = find_customers(wh, identifier, proj.settings.identity.default_country_code)
            if not ids:
                raise SegoneError(f"no customer has the identifier {identifier!r}")
            for cid in ids:
                _print_profile(profile_of(wh, cid, timeline))


def _print_profile(p: dict[str, Any]) -> None:
    prof = p["profile"]
    t = Table(title=f"customer {prof.get('customer_id')}", title_justify="left", show_header=False)
    t.add_column("feature")
    t.add_column("value")
    for k, v in prof.items():
        if k == "customer_id" or _missing(v):
            continue
        t.add_row(k, _fmt(v))
    console.print(t)
    ids = Table(title="identifiers", title_justify="left")
    for c in ("type", "identifier", "first seen", "last seen"):
        ids.add_column(c)
    for r in p["identifiers"].itertuples():
        ids.add_row(
            r.id_type,
            r.node.split(":", 1)[1],
            _when(r.first_seen),
            _when(r.last_seen),
        )
    console.print(ids)
    if len(p["journey"]):
        j = Table(title="journey (segments and lifecycle stages over time)", title_justify="left")
        for c in ("segment", "entered", "left"):
            j.add_column(c)
        for r in p["journey"].itertuples():
            left = _when(r.exited_at)
            j.add_row(r.segment, _when(r.entered_at), left)
        console.print(j)
    if len(p["transitions"]):
        mv = Table(title="moves (lifecycle, segments, taste shifts)", title_justify="left")
        for c in ("when", "kind", "from", "to"):
            mv.add_column(c)
        for r in p["transitions"].itertuples():
            mv.add_row(
                _when(r.at),
                str(r.kind),
                "" if _missing(r.from_segment) else str(r.from_segment),
                "" if _missing(r.to_segment) else str(r.to_segment),
            )
        console.print(mv)
    if len(p["recommendations"]):
        rc = Table(title="next products", title_justify="left")
        for c in ("#", "product", "score", "why"):
            rc.add_column(c)
        for r in p["recommendations"].itertuples():
            name = "" if _missing(r.name) else f" {r.name}"
            rc.add_row(str(r.rank), f"{r.product_id}{name}", f"{r.score:.3f}", str(r.reason))
        console.print(rc)
    tl = Table(title="recent timeline", title_justify="left")
    for c in ("when", "kind", "what"):
        tl.add_column(c)
    for r in p["timeline"].itertuples():
        tl.add_row(_when(r.ts, "%Y-%m-%d %H:%M"), str(r.kind), str(r.what))
    console.print(tl)


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, list | tuple | dict) or (hasattr(v, "__len__") and not isinstance(v, str)):
        return False
    try:
        return bool(v != v) or str(v) == "NaT"  # NaN and NaT are not equal to themselves
    except (TypeError, ValueError):
        return False


def _when(v: Any, fmt: str = "%Y-%m-%d") -> str:
    """A date or time as text; empty when there is none (a record without a date, such as a
    Shopify customer export, has NaT)."""
    return "" if _missing(v) else format(v, fmt)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x:.0%}" for k, x in v.items())
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    if hasattr(v, "strftime"):
        return f"{v:%Y-%m-%d %H:%M}"
    return str(v)


@app.command()
def erase(
    identifier: Annotated[
        str,
        typer.Argument(help="Any identifier of the person (any spelling), or their customer id."),
    ],
    project: ProjectOpt = Path("."),
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    all_matches: Annotated[
        bool, typer.Option("--all", help="Erase every customer the identifier matches.")
    ] = False,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact/--no-compact",
            help="Rewrite the warehouse file afterwards so the deleted rows' bytes leave it.",
        ),
    ] = True,
) -> None:
    """Erase a person everywhere (right to be forgotten): the warehouse and the online store,
    by every identifier of theirs; their data is refused if loaded or sent again."""
    from segone.identity.erase import compact_warehouse, erase_everywhere, find_people
    from segone.online.sync import open_online

    with _user_errors():
        proj = Project.open(project)
        store = open_online(proj.settings)
        try:
            with proj.warehouse() as wh:
                customers, people = find_people(wh, store, identifier, proj.settings)
                if not customers and not people:
                    raise SegoneError(
                        f"no customer or live profile has the identifier {identifier!r} "
                        "(run `segone build` after loading)"
                    )
                n = max(len(customers), 1)
                if not yes and not typer.confirm(
                    f"Erase {n} customer(s) and all their records, in the warehouse and the "
                    "online store?"
                ):
                    raise typer.Exit(1)
                r = erase_everywhere(
                    proj.settings, wh, store, identifier, route="cli", all_matches=all_matches
                )
        finally:
            if store is not None:
                store.close()
        if compact:
            with err.status("rewriting the warehouse file"):
                compact_warehouse(proj.settings.warehouse_path)
    console.print(r.summary(), highlight=False, soft_wrap=True)


@app.command()
def readmit(
    identifier: Annotated[
        str, typer.Argument(help="The erased identifier to accept again, e.g. email:jane@x.com.")
    ],
    project: ProjectOpt = Path("."),
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Accept an erased identifier again (the person signed up anew, with consent); audited.
    Nothing erased comes back: only new records and messages carrying it are accepted."""
    from segone.identity.erase import readmit as run_readmit
    from segone.online.sync import open_online

    with _user_errors():
        proj = Project.open(project)
        if not yes and not typer.confirm(
            "Accept this identifier again in files and live messages?"
        ):
            raise typer.Exit(1)
        store = open_online(proj.settings)
        try:
            with proj.warehouse() as wh:
                r = run_readmit(proj.settings, wh, store, identifier, route="cli")
        finally:
            if store is not None:
                store.close()
    n = sum(r.rows_removed.values())
    console.print(f"readmission {r.erasure_id}: {n} refusal(s) lifted", highlight=False)


@app.command()
def erasures(
    project: ProjectOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Every erasure: when, through which route, how many people and rows (no personal data)."""
    import json

    from segone.identity.erase import erasure_audit
    from segone.online.sync import open_online

    with _user_errors():
        proj = Project.open(project)
        store = open_online(proj.settings)
        try:
            with proj.warehouse(read_only=True) as wh:
                audit = erasure_audit(wh, store)
        finally:
            if store is not None:
                store.close()
    if as_json:
        for e in audit:
            print(json.dumps(e, sort_keys=True))
        return
    t = Table(title="erasures", title_justify="left")
    for c in ("erasure", "at", "route", "people", "rows removed"):
        t.add_column(c)
    for e in audit:
        rows = e["rows_removed"]
        t.add_row(
            e["erasure_id"],
            str(e["at"])[:19],
            e["route"],
            str(e["people"]),
            f"{sum(rows.values()):,}",
        )
    console.print(t)


def _catalogue(proj: Project, wh: Any, extra: list[Path] | None = None) -> Any:
    from segone.segments import project_catalogue

    return project_catalogue(proj, wh, extra)


def _require_segment(cat: Any, name: str) -> None:
    if name not in cat.segments:
        raise SegoneError(f"no segment {name!r}; known: {', '.join(cat.segments) or 'none'}")


def _as_of_of(wh: Any) -> datetime:
    p = wh.table("profiles")
    return wh.execute(p.as_of.max()).to_pydatetime()


def _print_summary(df: Any) -> None:
    t = Table()
    for c in ("segment", "members", "share", "description"):
        t.add_column(c, justify="right" if c in ("members", "share") else "left")
    for r in df.itertuples():
        t.add_row(r.segment, f"{r.members:,}", f"{r.share:.1%}", r.description)
    console.print(t)


@segments_app.command("list")
def segments_list(project: ProjectOpt = Path(".")) -> None:
    """Every segment of the project, with its members as of the last build."""
    from segone.segments import summary

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            cat = _catalogue(proj, wh)
            if not len(cat):
                raise SegoneError(f"no segments: add YAML files to {proj.root / 'segments'}")
            _print_summary(summary(wh, cat, _as_of_of(wh)))


@segments_app.command("preview")
def segments_preview(
    file: Annotated[Path, typer.Argument(help="A YAML file of segment definitions.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Check a segment file and show how many people each of its segments holds."""
    from segone.segments import summary

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            cat = _catalogue(proj, wh, [file])  # a bad file fails here, naming the line
            names = _names_in(file)
            df = summary(wh, cat, _as_of_of(wh))
    _print_summary(df[df.segment.isin(names)])


def _names_in(file: Path) -> list[str]:
    import yaml

    data = yaml.safe_load(file.read_text(encoding="utf-8")) or []
    items = data.get("segments", data) if isinstance(data, dict) else data
    return [str(i["name"]) for i in (items if isinstance(items, list) else [items])]


@segments_app.command("show")
def segments_show(
    name: Annotated[str, typer.Argument(help="Segment name.")],
    project: ProjectOpt = Path("."),
    limit: Annotated[int, typer.Option(help="Members to list.")] = 10,
) -> None:
    """A segment's definition, size and a few members."""
    from segone.segments import memberships
    from segone.segments.rules import describe

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            cat = _catalogue(proj, wh)
            _require_segment(cat, name)
            seg = cat[name]
            m = memberships(wh, cat, _as_of_of(wh))
            m = m.filter(m.segment == name)
            n = int(wh.execute(m.count()))
            sample = wh.execute(m.select("customer_id").order_by("customer_id").limit(limit))
    console.print(f"[bold]{seg.name}[/]  ({seg.source})\n{seg.description}", highlight=False)
    console.print(f"rule: {describe(seg.rule)}", highlight=False, soft_wrap=True)
    console.print(
        f"{n:,} members; first {len(sample)}: {', '.join(sample.customer_id)}",
        highlight=False,
        soft_wrap=True,
    )


@segments_app.command("export")
def segments_export(
    name: Annotated[str, typer.Argument(help="Segment name.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    project: ProjectOpt = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write a segment's members with their profile (an audience file for a channel)."""
    from segone.segments import memberships

    with _user_errors():
        if fmt not in ("csv", "parquet"):
            raise SegoneError(f"--format must be csv or parquet, not {fmt!r}")
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            cat = _catalogue(proj, wh)
            _require_segment(cat, name)
            m = memberships(wh, cat, _as_of_of(wh))
            p = wh.table("profiles")
            members = m.filter(m.segment == name).select("customer_id")
            keep = [c for c, t in p.schema().items() if not (t.is_map() or t.is_array())]
            df = wh.execute(
                p.semi_join(members, "customer_id").select(*keep).order_by("customer_id")
            )
        if fmt == "csv":
            df.to_csv(out, index=False)
        else:
            df.to_parquet(out, index=False)
    console.print(f"wrote {len(df):,} members of {name} to {out}", highlight=False)


@segments_app.command("snapshot")
def segments_snapshot(
    project: ProjectOpt = Path("."),
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date (default: the last build's).")
    ] = None,
) -> None:
    """Record who is in which segment and lifecycle stage now, and who moved since last time."""
    from segone.segments.history import record_snapshot

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse() as wh:
            cat = _catalogue(proj, wh)
            when = _parse_when(as_of)
            r = record_snapshot(
                wh,
                cat,
                when or _as_of_of(wh),
                proj.settings.lifecycle,
                rebuild_profiles=when is not None,
                models=proj.settings.models,
            )
    console.print(
        f"snapshot {r.at:%Y-%m-%d}: {r.members:,} memberships, {r.entered:,} entered, "
        f"{r.exited:,} left, {r.moves:,} moves",
        highlight=False,
    )


@segments_app.command("backfill")
def segments_backfill(
    start: Annotated[str, typer.Option("--from", help="First snapshot date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="Last snapshot date (YYYY-MM-DD).")],
    every: Annotated[int, typer.Option("--every", help="Days between snapshots.")] = 7,
    project: ProjectOpt = Path("."),
) -> None:
    """Record snapshots over a date range (identity as resolved by the last build)."""
    from segone.segments.history import backfill

    with _user_errors():
        proj = Project.open(project)
        t0, t1 = _parse_when(start), _parse_when(end)
        assert t0 is not None and t1 is not None
        with proj.warehouse() as wh, _progress() as bar:
            cat = _catalogue(proj, wh)
            task = bar.add_task("snapshots", total=None)

            def hook(i: int, n: int, d: datetime) -> None:
                bar.update(task, total=n, completed=i, description=f"snapshot {d:%Y-%m-%d}")

            rs = backfill(
                wh,
                cat,
                t0,
                t1,
                every,
                proj.settings.lifecycle,
                progress=hook,
                models=proj.settings.models,
            )
    console.print(
        f"{len(rs)} snapshots from {rs[0].at:%Y-%m-%d} to {rs[-1].at:%Y-%m-%d}; "
        f"{sum(r.moves for r in rs):,} moves recorded",
        highlight=False,
    )


@segments_app.command("transitions")
def segments_transitions(project: ProjectOpt = Path(".")) -> None:
    """The lifecycle transition matrix: how many people moved from each stage to each other."""
    from segone.segments.history import transition_matrix
    from segone.segments.lifecycle import STAGES

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse(read_only=True) as wh:
            m = wh.execute(transition_matrix(wh))
    if m.empty:
        raise typer.Exit(_say("no transitions yet: run `segone segments backfill` or `snapshot`"))
    _print_matrix(m, STAGES)


def _say(text: str) -> int:
    console.print(text)
    return 0


def _print_matrix(m: Any, stages: tuple[str, ...]) -> None:
    rows = ["(first seen)", *stages]
    t = Table(title="lifecycle moves (rows: from, columns: to)", title_justify="left")
    t.add_column("from \\ to")
    for s in stages:
        t.add_column(s, justify="right")
    got = {(r.from_stage, r.to_stage): int(r.moves) for r in m.itertuples()}
    for f in rows:
        if any((f, s) in got for s in stages):
            t.add_row(f, *[f"{got.get((f, s), 0):,}" if (f, s) in got else "" for s in stages])
    console.print(t)


@segments_app.command("macro")
def segments_macro(
    project: ProjectOpt = Path("."),
    k: Annotated[int, typer.Option(help="Number of k-means clusters.")] = 6,
) -> None:
    """Macro baselines: RFM-grid segments and k-means clusters on behaviour (macro_segments)."""
    from segone.segments.macro import build_macro_segments

    with _user_errors():
        proj = Project.open(project)
        with proj.warehouse() as wh:
            require_profiles(wh)
            sizes = build_macro_segments(wh, k=k)
            m = wh.table("macro_segments")
            grid = wh.execute(
                m.group_by("rfm_segment").aggregate(people=m.count()).order_by(ibis.desc("people"))
            )
    t = Table(title="RFM grid", title_justify="left")
    t.add_column("segment")
    t.add_column("people", justify="right")
    for r in grid.itertuples():
        t.add_row(r.rfm_segment, f"{r.people:,}")
    console.print(t)
    console.print(
        "k-means clusters of buyers: " + ", ".join(f"{c} {n:,}" for c, n in sizes.items()),
        highlight=False,
        soft_wrap=True,
    )


@dataset_app.command("cdnow")
def dataset_cdnow(
    out: Annotated[Path, typer.Argument(help="Orders CSV to write.")] = Path("cdnow_orders.csv"),
) -> None:
    """Write the CDNOW purchase history (2,357 customers, 1997-98) as an orders file."""
    from segone.datasets import write_cdnow_orders

    n = write_cdnow_orders(out)
    console.print(f"Wrote {n:,} CDNOW orders to {out}; load them with `segone ingest orders {out}`")


@app.command("dead-letters")
def dead_letters(
    project: ProjectOpt = Path("."),
    retry: Annotated[
        bool, typer.Option("--retry", help="Put them all back in the outbox to be sent again.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
) -> None:
    """Triggers the server gave up delivering (after [server] webhook_max_attempts)."""
    from segone.online.sync import open_online

    with _user_errors():
        proj = Project.open(project)
        store = open_online(proj.settings)
        if store is None:
            raise SegoneError("this project has no online store yet (run `segone serve`)")
        try:
            if retry:
                with store.write() as tx:
                    n = tx.retry_dead(datetime.now(UTC))
                console.print(f"{n} trigger(s) queued again; a running server sends them now")
                return
            with store.read() as tx:
                rows = tx.dead_letters(limit)
        finally:
            store.close()
    t = Table(title=f"dead letters ({len(rows)} shown)", title_justify="left")
    for c in ("id", "kind", "person", "attempts", "last error", "given up at"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            str(r["id"]),
            r["kind"],
            r["person_id"],
            str(r["attempts"]),
            escape(str(r["last_error"] or "")),
            r["dead_at"],
        )
    console.print(t)


@app.command()
def repair(
    project: ProjectOpt = Path("."),
    person: Annotated[
        list[str] | None,
        typer.Option(
            "--person",
            metavar="ID",
            help="An identifier of the person to repair (e.g. user_id:u-1001); repeatable. "
            "Default: everyone with stored events.",
        ),
    ] = None,
) -> None:
    """Re-derive live profiles from the events in the online store, typed as the server types
    them today (a running server can stay up)."""
    from segone.online.repair import repair as run_repair
    from segone.online.sync import open_online

    with _user_errors():
        proj = Project.open(project)
        store = open_online(proj.settings)
        if store is None:
            raise SegoneError("this project has no online store yet (run `segone serve`)")
        try:
            done = run_repair(store, proj.settings, person or ())
        finally:
            store.close()
    console.print(done.summary())


@app.command()
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str | None, typer.Option(help="Address to listen on ([server] host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port ([server] port, default 8321).")] = None,
    online_url: Annotated[
        str | None,
        typer.Option(
            "--online-url", help="Online store: sqlite:///file.db or postgresql://user@host/db."
        ),
    ] = None,
) -> None:
    """Run the real-time API: Segment-compatible ingestion, live profiles, triggers, decisions."""
    from segone.api.server import serve as run_server

    with _user_errors():
        proj = Project.open(project)
        s = proj.settings.server
        if not s.write_keys:
            err.print(
                "[yellow]no write keys configured:[/] every ingestion request will be refused "
                "(set [server] write_keys or SEGONE_WRITE_KEYS)"
            )
        _share_erasures(proj, online_url)
        run_server(proj.settings, host, port, online_url)


def _share_erasures(proj: Project, online_url: str | None) -> None:
    """Before serving: the online store learns who was erased in the warehouse (and since when
    it last met it), so their live messages are refused from the first request."""
    from segone.exceptions import StoreError
    from segone.identity.erase import share_erasures
    from segone.online.store import OnlineStore

    s = proj.settings
    if not s.warehouse_path.exists():
        return
    try:
        with proj.warehouse() as wh:
            if not wh.count("erased_identifiers"):
                return
            with OnlineStore.open(online_url or s.server.online_url, root=s.root) as store:
                share_erasures(wh, store)
    except StoreError as exc:  # a build holds the warehouse: the next build shares them
        err.print(f"[yellow]erasures not shared with the online store yet:[/] {exc}")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Project directory for the demo.")] = Path(
        "demo-project"
    ),
    customers: Annotated[int, typer.Option(help="People in the generated store.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="Keep the real-time server running at the end (until Ctrl-C).",
        ),
    ] = True,
) -> None:
    """Init a project, generate a store, ingest it, show what segone sees, then serve it."""
    from segone.demo import run_demo

    with _user_errors():
        run_demo(
            directory,
            show_segments=_print_summary,
            show_matrix=_print_matrix,
            show_predictions=_print_predictions,
            customers=customers,
            seed=seed,
            console=console,
            ingest=_ingest_one,
            show_status=_print_status,
            serve=serve,
        )


def _print_predictions(wh: Any) -> None:
    """The five customers with the highest lifetime value, and what to offer each."""
    import ibis

    p = wh.table("profiles")
    r = wh.table("recommendations")
    top = p.filter(p.clv.notnull()).order_by(ibis.desc("clv")).limit(5)
    first = r.filter(r["rank"] == 1).select("customer_id", "product_id", "reason")
    df = wh.execute(
        top.left_join(first, "customer_id").select(
            "customer_id",
            "orders",
            "lifecycle_stage",
            "p_alive",
            "expected_purchases",
            "clv",
            "churn_probability",
            "product_id",
            "reason",
        )
    ).sort_values("clv", ascending=False)
    t = Table(title="highest expected lifetime value", title_justify="left")
    for c in ("customer", "stage", "P(alive)", "next 90d", "CLV 12m", "churn", "offer", "why"):
        t.add_column(c)
    for x in df.itertuples():
        t.add_row(
            x.customer_id,
            x.lifecycle_stage,
            f"{x.p_alive:.2f}",
            f"{x.expected_purchases:.1f}",
            f"{x.clv:,.0f}",
            "" if _missing(x.churn_probability) else f"{x.churn_probability:.2f}",
            "" if _missing(x.product_id) else str(x.product_id),
            "" if _missing(x.reason) else str(x.reason),
        )
    console.print(t)


from segone.cli.campaign import campaign_app  # noqa: E402  (registered last: it imports nothing here)

app.add_typer(campaign_app, name="campaign")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``segone`` script."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app(args=argv)
    except KeyboardInterrupt:
        err.print("interrupted; nothing of the interrupted load was committed")
        sys.exit(130)
