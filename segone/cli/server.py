"""Commands around the real-time server: serve, dead-letters, repair, and the demo."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segone.cli._app import app
from segone.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    err,
    escape,
    missing,
    open_project,
    table,
    user_errors,
)

if TYPE_CHECKING:
    from segone.project import Project


@app.command("dead-letters")
def dead_letters(
    project: ProjectOpt = Path("."),
    retry: Annotated[
        bool, typer.Option("--retry", help="Put them all back in the outbox to be sent again.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Triggers the server gave up delivering (after [server] webhook_max_attempts)."""
    from segone.exceptions import SegoneError
    from segone.pipeline.publish import open_online

    with user_errors():
        proj = open_project(project)
        store = open_online(proj.settings)
        if store is None:
            raise SegoneError("this project has no online store yet (run `segone serve`)")
        try:
            if retry:
                with store.write() as tx:
                    n = tx.outbox.retry_dead(datetime.now(UTC))
                if as_json:
                    emit_json({"queued": n})
                else:
                    console.print(f"{n} trigger(s) queued again; a running server sends them now")
                return
            with store.read() as tx:
                rows = [d.as_dict() for d in tx.outbox.dead_letters(limit)]
        finally:
            store.close()
    if as_json:
        emit_json(rows)
        return
    t = table(
        "id",
        "kind",
        "person",
        "attempts",
        "last error",
        "given up at",
        title=f"dead letters ({len(rows)} shown)",
    )
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
    from segone.exceptions import SegoneError
    from segone.online.repair import repair as run_repair
    from segone.pipeline.publish import open_online

    with user_errors():
        proj = open_project(project)
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

    with user_errors():
        proj = open_project(project)
        s = proj.settings.server
        from segone.api.keys import KeyRing

        if not KeyRing.from_settings(s, proj.root).any_with("ingest"):
            err.print(
                "[yellow]no write keys configured:[/] every ingestion request will be refused "
                "(`segone keys create --kind write`, \\[server] write_keys or SEGONE_WRITE_KEYS)"
            )
        share_erasures(proj, online_url)
        from segone.campaigns.triggers import extend_api as triggers
        from segone.web import extend_api  # the dashboard at / of the same server

        def extend(app: Any, settings: Any, engine: Any) -> None:
            extend_api(app, settings, engine)
            triggers(app, settings, engine)  # triggered campaign arms, fired as people change

        run_server(proj.settings, host, port, online_url, extend=extend)


def share_erasures(proj: Project, online_url: str | None) -> None:
    """Before serving: the online store learns who was erased in the warehouse (and since when
    it last met it), so their live messages are refused from the first request."""
    from segone.exceptions import StoreError
    from segone.identity.erase import share_erasures as share
    from segone.online.store import OnlineStore

    s = proj.settings
    if not s.warehouse_path.exists():
        return
    try:
        with proj.warehouse() as wh:
            if not wh.count("erased_identifiers"):
                return
            with OnlineStore.open(online_url or s.server.online_url, root=s.root) as store:
                share(wh, store)
    except StoreError as exc:  # a build holds the warehouse: the next build shares them
        err.print(f"[yellow]erasures not shared with the online store yet:[/] {escape(str(exc))}")


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
    from segone.cli.data import ingest_one, print_status
    from segone.cli.segments import print_matrix, print_summary
    from segone.demo import run_demo

    with user_errors():
        run_demo(
            directory,
            show_segments=print_summary,
            show_matrix=print_matrix,
            show_predictions=print_predictions,
            customers=customers,
            seed=seed,
            console=console.get(),
            ingest=ingest_one,
            show_status=print_status,
            serve=serve,
        )


def print_predictions(wh: Any) -> None:
    """The five customers with the highest lifetime value, and what to offer each (by name and
    category when the catalogue has them)."""
    from segone.cli.build import product_label
    from segone.models.registry import top_value_customers

    df = top_value_customers(wh, 5)
    t = table(
        "customer",
        "stage",
        "P(alive)",
        "next 90d",
        "CLV 12m",
        "churn",
        "offer",
        "why",
        title="highest expected lifetime value",
    )
    for x in df.itertuples():
        t.add_row(
            x.customer_id,
            x.lifecycle_stage,
            f"{x.p_alive:.2f}",
            f"{x.expected_purchases:.1f}",
            f"{x.clv:,.0f}",
            "" if missing(x.churn_probability) else f"{x.churn_probability:.2f}",
            product_label(x.product_id, x.name, x.category),
            "" if missing(x.reason) else escape(str(x.reason)),
        )
    console.print(t)
