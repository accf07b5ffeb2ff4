"""``segone segments ...``: sizes, definitions, previews, audiences, snapshots, transitions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from segone.cli._app import segments_app
from segone.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    escape,
    open_project,
    parse_when,
    project_warehouse,
    table,
    user_errors,
)


def catalogue(proj: Any, wh: Any, extra: list[Path] | None = None, *, check: bool = False) -> Any:
    """The project's segments (and ``extra`` files); with ``check``, their values are also
    checked against the values in the warehouse (a typo close to a known value is an error)."""
    from segone.segments import project_catalogue

    cat = project_catalogue(proj, wh, extra)
    if check:
        from segone.segments.vocabulary import check_catalogue, data_vocabulary

        check_catalogue(cat, data_vocabulary(wh))
    return cat


def print_summary(df: Any) -> None:
    """Segment sizes as a table (also used by ``segone demo``)."""
    from rich.table import Table

    t = Table()
    for c in ("segment", "members", "share", "description"):
        t.add_column(c, justify="right" if c in ("members", "share") else "left")
    for r in df.itertuples():
        t.add_row(r.segment, f"{r.members:,}", f"{r.share:.1%}", escape(str(r.description)))
    console.print(t)


def _sizes_json(df: Any) -> list[dict[str, Any]]:
    return [
        {
            "segment": r.segment,
            "members": int(r.members),
            "share": float(r.share),
            "description": r.description,
        }
        for r in df.itertuples()
    ]


@segments_app.command("list")
def segments_list(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Every segment of the project, with its members as of the last build."""
    from segone.exceptions import SegoneError
    from segone.segments.queries import segment_sizes

    with user_errors(), project_warehouse(project, write=False) as (proj, wh):
        cat = catalogue(proj, wh, check=True)
        if not len(cat):
            raise SegoneError(f"no segments: add YAML files to {proj.root / 'segments'}")
        df = segment_sizes(wh, cat)
    if as_json:
        emit_json(_sizes_json(df))
        return
    print_summary(df)


@segments_app.command("preview")
def segments_preview(
    file: Annotated[Path, typer.Argument(help="A YAML file of segment definitions.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Check a segment file and show how many people each of its segments holds."""
    from segone.segments.queries import names_in, segment_sizes

    with user_errors(), project_warehouse(project, write=False) as (proj, wh):
        cat = catalogue(proj, wh, [file], check=True)  # a bad file fails here, with its line
        df = segment_sizes(wh, cat, names_in(file))
    if as_json:
        emit_json(_sizes_json(df))
        return
    print_summary(df)


@segments_app.command("show")
def segments_show(
    name: Annotated[str, typer.Argument(help="Segment name.")],
    project: ProjectOpt = Path("."),
    limit: Annotated[int, typer.Option(help="Members to list.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """A segment's definition, size and a few members."""
    from dataclasses import asdict

    from segone.segments.queries import segment_detail

    with user_errors(), project_warehouse(project, write=False) as (proj, wh):
        d = segment_detail(wh, catalogue(proj, wh, check=True), name, limit)
    if as_json:
        emit_json(asdict(d))
        return
    console.print(f"[bold]{escape(d.name)}[/]  ({escape(d.source)})\n{escape(d.description)}")
    console.print(f"rule: {escape(d.rule)}", highlight=False, soft_wrap=True)
    console.print(
        f"{d.members:,} members; first {len(d.sample)}: {', '.join(d.sample)}",
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
    from segone.exceptions import SegoneError
    from segone.segments.queries import segment_members

    with user_errors():
        if fmt not in ("csv", "parquet"):
            raise SegoneError(f"--format must be csv or parquet, not {fmt!r}")
        with project_warehouse(project, write=False) as (proj, wh):
            df = wh.execute(segment_members(wh, catalogue(proj, wh), name))
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
    from segone.pipeline.backfill import record_snapshot
    from segone.segments.queries import last_as_of

    with user_errors(), project_warehouse(project, write=True) as (proj, wh):
        cat = catalogue(proj, wh)
        at = parse_when(as_of)
        r = record_snapshot(
            wh,
            cat,
            at or last_as_of(wh),
            proj.settings.lifecycle,
            rebuild_profiles=at is not None,
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
    from segone.cli.data import progress_bar
    from segone.pipeline.backfill import backfill

    with user_errors():
        proj = open_project(project)
        t0, t1 = parse_when(start, "--from"), parse_when(end, "--to")
        assert t0 is not None and t1 is not None
        with proj.warehouse() as wh, progress_bar() as bar:
            cat = catalogue(proj, wh)
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
def segments_transitions(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """The lifecycle transition matrix: how many people moved from each stage to each other."""
    from segone.segments.history import transition_matrix
    from segone.segments.lifecycle import STAGES

    with user_errors(), project_warehouse(project, write=False) as (_proj, wh):
        m = wh.execute(transition_matrix(wh))
    if as_json:
        emit_json(
            [
                {"from": r.from_stage, "to": r.to_stage, "moves": int(r.moves)}
                for r in m.itertuples()
            ]
        )
        return
    if m.empty:
        console.print("no transitions yet: run `segone segments backfill` or `snapshot`")
        return
    print_matrix(m, STAGES)


def print_matrix(m: Any, stages: tuple[str, ...]) -> None:
    """The lifecycle moves as a from/to table (also used by ``segone demo``)."""
    rows = ["(first seen)", *stages]
    t = table("from \\ to", title="lifecycle moves (rows: from, columns: to)")
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
    from segone.segments.batch import require_profiles
    from segone.segments.macro import build_macro_segments
    from segone.segments.queries import rfm_grid

    with user_errors(), project_warehouse(project, write=True) as (_proj, wh):
        require_profiles(wh)
        sizes = build_macro_segments(wh, k=k)
        grid = rfm_grid(wh)
    t = table("segment", "people", title="RFM grid")
    for r in grid.itertuples():
        t.add_row(r.rfm_segment, f"{r.people:,}")
    console.print(t)
    console.print(
        "k-means clusters of buyers: " + ", ".join(f"{c} {n:,}" for c, n in sizes.items()),
        highlight=False,
        soft_wrap=True,
    )
