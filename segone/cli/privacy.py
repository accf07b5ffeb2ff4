"""Commands for the right to be forgotten: erase, readmit, erasures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segone.cli._app import app
from segone.cli._common import (
    EXIT_FAILED,
    ProjectOpt,
    console,
    err,
    open_project,
    table,
    user_errors,
)


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
    from segone.exceptions import NotFoundError
    from segone.identity.erase import compact_warehouse, erase_everywhere, find_people
    from segone.pipeline.publish import open_online

    with user_errors():
        proj = open_project(project)
        store = open_online(proj.settings)
        try:
            with proj.warehouse() as wh:
                customers, people = find_people(wh, store, identifier, proj.settings)
                if not customers and not people:
                    raise NotFoundError(
                        f"no customer or live profile has the identifier {identifier!r} "
                        "(run `segone build` after loading)"
                    )
                n = max(len(customers), 1)
                if not yes and not typer.confirm(
                    f"Erase {n} customer(s) and all their records, in the warehouse and the "
                    "online store?"
                ):
                    raise typer.Exit(EXIT_FAILED)
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
    from segone.pipeline.publish import open_online

    with user_errors():
        proj = open_project(project)
        if not yes and not typer.confirm(
            "Accept this identifier again in files and live messages?"
        ):
            raise typer.Exit(EXIT_FAILED)
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
    as_json: Annotated[
        bool,
        typer.Option("--json", help="JSON Lines on stdout (one object per erasure), nothing else."),
    ] = False,
) -> None:
    """Every erasure: when, through which route, how many people and rows (no personal data)."""
    import json

    from segone.cli._common import jsonable
    from segone.identity.erase import erasure_audit
    from segone.pipeline.publish import open_online

    with user_errors():
        proj = open_project(project)
        store = open_online(proj.settings)
        try:
            with proj.warehouse(read_only=True) as wh:
                audit = erasure_audit(wh, store)
        finally:
            if store is not None:
                store.close()
    if as_json:
        for e in audit:
            print(json.dumps(jsonable(e), sort_keys=True))
        return
    t = table("erasure", "at", "route", "people", "rows removed", title="erasures")
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
