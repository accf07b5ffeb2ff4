"""``segone identity``: identity decisions made by hand (what the dashboard's unmerge and pair
review record), honoured by every later ``segone build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segone.cli._common import (
    ProjectOpt,
    console,
    open_project,
    project_warehouse,
    table,
    user_errors,
)

identity_app = typer.Typer(
    help="Split an identifier off its person, or link / keep apart two identifiers, by hand.",
    no_args_is_help=True,
)

Ident = Annotated[str, typer.Argument(help="An identifier with its type, e.g. email:jane@x.com.")]


def _node(identifier: str, settings: object) -> str:
    """The normalised ``type:value`` of a typed identifier (any spelling)."""
    from segone.exceptions import IdentityDecisionError
    from segone.identity.candidates import candidates

    kind, sep, value = identifier.partition(":")
    found = candidates(identifier, settings) if sep and value else []  # type: ignore[arg-type]
    if len(found) != 1 or not found[0].startswith(kind + ":"):
        raise IdentityDecisionError(
            f"{identifier!r}: name one identifier with its type, e.g. email:jane@x.com, "
            "phone:+15550100 or source_id:CRM-1"
        )
    return found[0]


def _record(project: Path, kind: str, a: str, b: str | None) -> None:
    from segone.identity import decisions

    proj = open_project(project)
    with user_errors():
        na = _node(a, proj.settings.identity)
        nb = _node(b, proj.settings.identity) if b is not None else None
        with proj.warehouse() as wh:
            decisions.record(wh, kind, na, nb, by="cli")
    console.print(f"recorded {kind}; the next `segone build` applies it", highlight=False)


@identity_app.command()
def split(identifier: Ident, project: ProjectOpt = Path(".")) -> None:
    """Split an identifier off its person: it links nothing from the next build on."""
    _record(project, "split", identifier, None)


@identity_app.command()
def link(a: Ident, b: Ident, project: ProjectOpt = Path(".")) -> None:
    """Link two identifiers: one person from the next build on (undoes an unlink)."""
    _record(project, "link", a, b)


@identity_app.command()
def unlink(a: Ident, b: Ident, project: ProjectOpt = Path(".")) -> None:
    """Keep two records apart that probabilistic matching joined (undoes a link)."""
    _record(project, "unlink", a, b)


@identity_app.command("decisions")
def list_decisions(project: ProjectOpt = Path(".")) -> None:
    """The decisions in force (the latest per identifier or pair)."""
    from segone.identity import decisions

    with project_warehouse(project, write=False) as (_, wh):
        rows: list[list[str]] = []
        if "identity_decisions" in wh.tables():
            df = wh.execute(decisions.current(wh).order_by("decided_at"))
            rows = [
                [str(r.kind), str(r.a), str(r.b or ""), str(r.decided_by), str(r.decided_at)]
                for r in df.itertuples(index=False)
            ]
    t = table("kind", "identifier", "other", "by", "at")
    for r in rows:
        t.add_row(*r)
    console.print(t)
