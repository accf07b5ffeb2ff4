"""Commands over the batch build: build, models, profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segone.cli._app import app
from segone.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    escape,
    fmt_value,
    missing,
    open_project,
    parse_when,
    project_warehouse,
    table,
    user_errors,
    when,
)


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
    as_json: JsonOpt = False,
) -> None:
    """Resolve identities and rebuild one profile per customer (as of now or a past date).

    Each stage is reported on stderr as it ends, with its time and what it produced; on a
    terminal a live line shows the running stage, the time so far and the time left (estimated
    from the previous build).
    """
    from segone.cli.progress import BuildDisplay
    from segone.pipeline.build import build_project

    with user_errors():
        proj = open_project(project)
        with BuildDisplay(proj.root) as show:
            r, pub = build_project(
                proj,
                as_of=parse_when(as_of),
                online=online,
                status=show.status,
                progress=show.progress,
            )
            if pub is not None and pub.erased:
                from segone.identity.erase import compact_warehouse

                # erasures asked through the API: their bytes leave the warehouse file too
                with show.status("rewriting the warehouse file"):
                    compact_warehouse(proj.settings.warehouse_path)
    if as_json:
        from dataclasses import asdict

        emit_json(
            {
                "as_of": r.as_of,
                "profiles": r.profiles,
                "identity": asdict(r.identity),
                "summary": r.summary(),
                "published": None if pub is None else pub.summary(),
            }
        )
        return
    console.print(r.summary(), highlight=False, soft_wrap=True)
    if pub is not None:
        console.print(pub.summary(), highlight=False, soft_wrap=True)


@app.command()
def models(
    project: ProjectOpt = Path("."),
    history: Annotated[bool, typer.Option("--all", help="Every fit, not only the latest.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fitted models: version, the data window each was fitted on, and its parameters."""
    from segone.models.registry import fitted_models

    with user_errors(), project_warehouse(project, write=False) as (_proj, wh):
        fits = fitted_models(wh, history=history)
    if as_json:
        emit_json(fits)
        return
    if not fits:
        console.print("no fitted models yet: `segone build` fits them (when the data allow)")
        return
    tbl = table("model", "version", "data up to", "rows", "parameters", title="models")
    for f in fits:
        params = f["params"]
        shown = params.get("params", params)
        text = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in shown.items()
            if not isinstance(v, dict | list)
        )
        tbl.add_row(f["name"], str(f["version"]), when(f["window_end"]), f"{f['rows']:,}", text)
    console.print(tbl)


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
    as_json: JsonOpt = False,
) -> None:
    """Show one person: profile, identifiers and recent timeline (this prints personal data).

    With --json: a list with one object per customer the identifier names (profile,
    identifiers, journey, transitions, recommendations, timeline).
    """
    from segone.exceptions import NotFoundError
    from segone.profiles.lookup import find_customers, profile_of
    from segone.segments.batch import require_profiles

    with user_errors(), project_warehouse(project, write=False) as (proj, wh):
        require_profiles(wh)
        ids = find_customers(wh, identifier, proj.settings.identity.default_country_code)
        if not ids:
            raise NotFoundError(f"no customer has the identifier {identifier!r}")
        people = [profile_of(wh, cid, timeline) for cid in ids]
    if as_json:
        emit_json(people)
        return
    for p in people:
        print_profile(p)


def product_label(product_id: Any, name: Any, category: Any) -> str:
    """A product as a table cell: its name and category when the catalogue has them, else
    its id (escaped for the console)."""
    if missing(product_id):
        return ""
    if missing(name):
        return escape(str(product_id))
    return escape(f"{name} ({category})" if not missing(category) else str(name))


def print_profile(p: dict[str, Any]) -> None:
    prof = p["profile"]
    t = table("feature", "value", title=f"customer {prof.get('customer_id')}", show_header=False)
    for k, v in prof.items():
        if k == "customer_id" or missing(v):
            continue
        t.add_row(k, escape(fmt_value(v)))
    console.print(t)
    ids = table("type", "identifier", "first seen", "last seen", title="identifiers")
    for r in p["identifiers"].itertuples():
        ids.add_row(
            r.id_type, escape(r.node.split(":", 1)[1]), when(r.first_seen), when(r.last_seen)
        )
    console.print(ids)
    if len(p["journey"]):
        j = table(
            "segment", "entered", "left", title="journey (segments and lifecycle stages over time)"
        )
        for r in p["journey"].itertuples():
            j.add_row(r.segment, when(r.entered_at), when(r.exited_at))
        console.print(j)
    if len(p["transitions"]):
        mv = table("when", "kind", "from", "to", title="moves (lifecycle, segments, taste shifts)")
        for r in p["transitions"].itertuples():
            mv.add_row(
                when(r.at),
                str(r.kind),
                "" if missing(r.from_segment) else str(r.from_segment),
                "" if missing(r.to_segment) else str(r.to_segment),
            )
        console.print(mv)
    if len(p["recommendations"]):
        rc = table("#", "product", "score", "why", title="next products")
        for r in p["recommendations"].itertuples():
            rc.add_row(
                str(r.rank),
                product_label(r.product_id, r.name, r.category),
                f"{r.score:.3f}",
                escape(str(r.reason)),
            )
        console.print(rc)
    tl = table("when", "kind", "what", title="recent timeline")
    for r in p["timeline"].itertuples():
        tl.add_row(when(r.ts, "%Y-%m-%d %H:%M"), str(r.kind), escape(str(r.what)))
    console.print(tl)
