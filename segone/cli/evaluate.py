"""``segone evaluate``: compare policies on the server's own decision log before switching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segone.cli._common import console, err, escape, open_project
from segone.exceptions import SegoneError


def Table(*args: Any, **kwargs: Any) -> Any:
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


app = typer.Typer(
    help="Estimate what another policy would have earned, from the decisions already logged.",
    no_args_is_help=True,
)


@app.command("policy")
def policy(
    candidate: Annotated[
        str,
        typer.Option(
            "--policy",
            help="Candidate policy: greedy (no exploration), uniform (random), popular "
            "(the same top items for everyone), logged (the policy that ran: a check).",
        ),
    ] = "greedy",
    placement: Annotated[
        str | None, typer.Option(help="Only the decisions of this placement.")
    ] = None,
    reward: Annotated[
        str, typer.Option(help="What counts as a reward: click (or conversion), conversion.")
    ] = "click",
    max_weight: Annotated[
        float, typer.Option(help="Importance weights above this are clipped in DR.")
    ] = 20.0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap draws for the intervals.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap draws.")] = 0,
    project: Annotated[
        Path,
        typer.Option("--project", "-p", envvar="SEGONE_PROJECT", help="Project directory."),
    ] = Path("."),
) -> None:
    """A candidate policy's rewards per decision by IPW, self-normalised IPW, the direct
    method and doubly robust (clipped weights), with 95% bootstrap intervals, against the
    logged policy's own."""
    from segone.decisions.evaluate import evaluate_policy
    from segone.pipeline.publish import open_online

    try:
        proj = open_project(project)
        store = open_online(proj.settings)
        if store is None:
            raise SegoneError("no online store yet: run `segone serve` and log decisions first")
        try:
            with store.read() as tx:
                rows = tx.decisions.history(placement)
        finally:
            store.close()
        ev = evaluate_policy(
            rows,
            candidate,
            reward=reward,
            max_weight=max_weight,
            n_bootstrap=bootstrap,
            random_state=seed,
        )
    except SegoneError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    t = Table(
        title=f"policy {ev.policy!r} on {ev.decisions:,} decisions ({ev.shown:,} items shown, "
        f"{ev.rewards:,} {reward}s)",
        title_justify="left",
    )
    for c in ("estimator", f"{reward}s per decision", "95% interval", "vs logged"):
        t.add_column(c)
    base = ev.logged.value
    for name, label in (("ipw", "IPW"), ("snipw", "SNIPW"), ("dr", "DR"), ("dm", "direct")):
        v = ev.values[name]
        t.add_row(
            label,
            f"{v.value:.4f}",
            f"{v.low:.4f} – {v.high:.4f}",
            f"{v.value / base:.2f}x" if base > 0 else "-",
        )
    lg = ev.logged
    t.add_row("logged (on-policy)", f"{lg.value:.4f}", f"{lg.low:.4f} – {lg.high:.4f}", "1.00x")
    console.print(t)
