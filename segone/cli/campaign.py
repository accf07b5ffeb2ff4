"""``segone campaign …``: list, show, count, preview, run and measure campaigns; the ladder.

Thin: every command parses its options, calls :mod:`segone.campaigns.service` (or the ladder
in :mod:`segone.campaigns.simulate`) and renders the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from segone.cli._common import ProjectOpt, console, err, escape, open_project
from segone.exceptions import SegoneError


def Table(*args: Any, **kwargs: Any) -> Any:
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


campaign_app = typer.Typer(
    help="Campaigns (the project's campaigns/*.yaml): audiences, holdouts, sends and lift.",
    no_args_is_help=True,
)

AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Run as of this time (ISO date or time, UTC); default now."),
]


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except SegoneError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise SegoneError(f"--at: not an ISO date or time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:+.2%}"


def _ci(ci: Any, fmt: str = "{:+.2%}") -> str:
    if not ci or ci[0] is None or ci[0] != ci[0]:
        return ""
    return "[" + fmt.format(ci[0]) + ", " + fmt.format(ci[1]) + "]"


@campaign_app.command("list")
def list_(project: ProjectOpt = Path(".")) -> None:
    """The project's campaigns."""
    from segone.campaigns import service

    with _user_errors():
        rows = service.summary(open_project(project))
    if not rows:
        console.print("no campaigns yet: add campaigns/NAME.yaml (see docs/campaigns.md)")
        return
    t = Table()
    for col in ("name", "channel", "audience", "arms", "holdout", "runs"):
        t.add_column(col)
    for r in rows:
        arms = ", ".join(f"{a['name']} ({a['kind']})" for a in r["arms"])
        t.add_row(
            r["name"], r["channel"], r["audience"], arms, f"{r['holdout']:.0%}", str(r["runs"])
        )
    console.print(t)


@campaign_app.command()
def show(name: str, project: ProjectOpt = Path(".")) -> None:
    """One campaign as segone reads it."""
    from segone.campaigns.campaign import get_campaign

    with _user_errors():
        c = get_campaign(open_project(project).root, name)
    console.print(f"[bold]{c.name}[/] ({c.source})", highlight=False)
    if c.description:
        console.print(f"  {c.description}", highlight=False)
    conv = c.conversion.kind + (f" {c.conversion.name}" if c.conversion.name else "")
    console.print(
        f"  audience: {c.audience.describe()}; channel {c.channel}; holdout {c.holdout:.0%}; "
        f"cap {c.caps.max_contacts} per {c.caps.days} days\n"
        f"  conversion: {conv}"
        f" within {c.window_days} days (pre-period {c.pre_days} days)",
        highlight=False,
    )
    for a in c.arms:
        extra = a.trigger or a.offers or a.offer
        console.print(
            f"  arm {a.name}: {a.kind}, weight {a.weight:g} {extra or ''}", highlight=False
        )


@campaign_app.command()
def audience(
    name: str,
    project: ProjectOpt = Path("."),
    at: AtOpt = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Write the people to contact to this .csv or .parquet file."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="a,b: profile fields to export besides id and contact (default none)."),
    ] = None,
    hashed: Annotated[
        bool, typer.Option("--hashed", help="Export the contact as SHA-256 of its normal form.")
    ] = False,
) -> None:
    """Count the campaign's audience step by step, and who would be held out."""
    from segone.campaigns import service

    with _user_errors():
        proj = open_project(project)
        if export is not None:
            cols = [c.strip() for c in (columns or "").split(",") if c.strip()]
            p, n = service.export(proj, name, export, columns=cols, hashed=hashed, at=_when(at))
            console.print(f"wrote {n:,} people to {export}", highlight=False)
        else:
            with proj.warehouse() as wh:
                p = service.make_plan(proj, wh, name, at=_when(at))
    t = Table(title=f"{name}: audience on {p.audience.channel}")
    t.add_column("step")
    t.add_column("people", justify="right")
    for s in p.audience.steps:
        t.add_row(s.label, f"{s.count:,}")
    c = p.counts()
    if p.not_triggered:
        t.add_row("without their trigger (triggered arms)", f"-{p.not_triggered:,}")
    t.add_row("held out: campaign holdout", f"{c['holdout']:,}")
    t.add_row("held out: global control", f"{c['global_control']:,}")
    t.add_row("to contact", f"{c['treatment']:,}")
    console.print(t)
    for arm, g in p.per_arm().items():
        console.print(f"  arm {arm}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(g.items())))
    if len(p.audiences) > 1:
        console.print(f"{p.reachable:,} reachable on at least one channel", highlight=False)
        for ch, g in p.per_channel().items():
            console.print(
                f"  channel {ch}: " + ", ".join(f"{k} {v:,}" for k, v in g.items()),
                highlight=False,
            )
    console.print(p.funnel(), highlight=False, soft_wrap=True)


@campaign_app.command()
def preview(
    name: str,
    person: Annotated[str, typer.Option("--person", help="customer_id to render the message for.")],
    project: ProjectOpt = Path("."),
    at: AtOpt = None,
) -> None:
    """Render the campaign's message for one person (or say why they get none)."""
    from segone.campaigns import service
    from segone.campaigns.campaign import campaign_settings
    from segone.campaigns.messages import render

    with _user_errors():
        proj = open_project(project)
        with proj.warehouse() as wh:
            p = service.make_plan(proj, wh, name, at=_when(at), only=person)
        if not p.people:
            last = next((s for s in p.audience.steps if s.count == 0), None)
            why = f"left out at step “{last.label}”" if last else "not reachable"
            raise SegoneError(f"{person} gets no message from {name}: {why}")
        x = p.people[0]
        console.print(
            f"{person}: group {x.group}, arm {x.arm}, channel {x.channel}, "
            f"send at {x.send_at:%Y-%m-%d %H:%M}"
        )
        if x.group != "treatment":
            console.print("held out: no message is sent; this is what they would get")
        if p.campaign.message is None:
            raise SegoneError(f"campaign {name} has no message")
        r = render(
            p.campaign.message,
            customer_id=x.customer_id,
            fields=x.fields,
            offer=x.offer,
            products=x.products,
            reason=x.reason,
            arm=x.arm,
            secret=campaign_settings(proj.root).secret,
        )
    console.print(f"[bold]Subject:[/] {escape(r.subject)}", highlight=False)
    console.print(escape(r.text), highlight=False)
    if r.html:
        console.print("[dim]--- html ---[/]")
        console.print(escape(r.html), highlight=False)


@campaign_app.command("run")
def run_(
    name: str,
    project: ProjectOpt = Path("."),
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Count and render every message; send and store nothing."),
    ] = False,
    at: AtOpt = None,
) -> None:
    """Assign holdouts, store the assignments, render and send the campaign."""
    from segone.campaigns import service
    from segone.campaigns.campaign import campaign_settings
    from segone.campaigns.run import messages

    with _user_errors():
        proj = open_project(project)
        if dry_run:
            with proj.warehouse() as wh:
                p = service.make_plan(proj, wh, name, at=_when(at))
            n = sum(1 for _ in messages(p, campaign_settings(proj.root)))
            console.print(p.funnel(), highlight=False, soft_wrap=True)
            console.print(f"dry run: {n:,} messages rendered, nothing sent or stored")
            return
        r = service.run_campaign(proj, name, at=_when(at))
    console.print(r.summary(), highlight=False, soft_wrap=True)
    if r.report and r.report.errors:
        for e in r.report.errors[:10]:
            err.print(f"  {escape(e)}", highlight=False)


@campaign_app.command()
def report(
    name: str,
    project: ProjectOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """What the campaign caused: per arm against its holdout, with 95% intervals."""
    from segone.campaigns import service

    with _user_errors():
        rep = service.report(open_project(project), name)
    if as_json:
        print(json.dumps(rep.to_dict(), indent=2))
        return
    print_report(rep.to_dict())


def print_report(d: dict[str, Any]) -> None:
    t = Table(title=f"{d['campaign']}: {d['window_days']}-day window, {d['runs']} run(s)")
    for col in (
        "arm",
        "treated",
        "rate",
        "control",
        "lift [95% CI]",
        "relative [95% CI]",
        "incr. conv.",
        "rev/person lift (CUPED) [95% CI]",
    ):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for a in d["arms"]:
        t.add_row(
            a["arm"],
            f"{a['treated']:,}",
            "" if a["rate"] is None else f"{a['rate']:.2%}",
            "" if a["control_rate"] is None else f"{a['control_rate']:.2%}",
            f"{_pct(a['lift'])} {_ci(a['lift_ci'])}",
            f"{_pct(a['relative_lift'])} {_ci(a['relative_lift_ci'])}",
            "" if a["incremental_conversions"] is None else f"{a['incremental_conversions']:+.1f}",
            ""
            if a["revenue_lift_per_person"] is None
            else f"{a['revenue_lift_per_person']:+.2f} {_ci(a['revenue_lift_ci'], '{:+.2f}')}",
        )
    console.print(t)
    s = d["srm"]
    console.print(
        f"groups {d['groups']}; SRM χ² = {s['chi2']:.2f}, p = {s['p_value']:.3g}"
        + (" [red]MISMATCH[/]" if s["mismatch"] else ""),
        highlight=False,
    )
    for w in d["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)


@campaign_app.command()
def ladder(
    project: ProjectOpt = Path("."),
    truth: Annotated[
        Path | None,
        typer.Option(help="Ground truth of the generated store (default: PROJECT/sample/truth)."),
    ] = None,
    window_days: Annotated[int, typer.Option(help="Attribution window in days.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the simulated responses.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Mass vs segment vs triggered vs one-to-one on a generated store, against a holdout.

    Responses come from the generator's documented response model driven by each person's
    true state (docs/campaigns.md); the order of the arms is whatever comes out."""
    from segone.campaigns.simulate import run_ladder

    with _user_errors():
        proj = open_project(project)
        res = run_ladder(
            proj,
            truth_dir=truth or proj.root / "sample" / "truth",
            window_days=window_days,
            seed=seed,
        )
    if as_json:
        print(json.dumps(res, indent=2))
        return
    console.print(res["funnel"], highlight=False, soft_wrap=True)
    print_report(res["report"])
    console.print(
        "truth (the response model's probabilities, not a draw): response rate of the treated "
        + ", ".join(f"{k} {v:.2%}" for k, v in res["true_rates"].items())
        + "; true lift "
        + ", ".join(f"{k} {v:+.2%}" for k, v in res["true_lift"].items()),
        highlight=False,
        soft_wrap=True,
    )
    for arm, r in res["replays"].items():
        console.print(
            f"  {arm}: over 200 replays of the same plan the 95% interval held the true lift "
            f"({r['true_lift']:+.2%}) {r['coverage']:.0%} of the time and excluded 0 "
            f"{r['significant']:.0%} of the time",
            highlight=False,
        )
