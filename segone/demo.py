"""``segone demo``: a fresh project, a generated store, ingestion, and a readable summary."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
from rich.console import Console
from rich.table import Table

from segone.config import CONFIG_FILE
from segone.datasets import SAMPLE_FILES, generate_sample, load_cdnow, write_cdnow_orders
from segone.datasets.sample import SAMPLE_TOML, SampleConfig
from segone.datasets.truth import identity_scores, lifecycle_scores
from segone.ingest import LoadResult, ingest_file
from segone.models.btyd import BetaGeo
from segone.models.summary import rfm_summary
from segone.pipeline.backfill import backfill
from segone.pipeline.build import build
from segone.project import Project
from segone.segments import project_catalogue, summary
from segone.segments.history import transition_matrix
from segone.segments.lifecycle import STAGES
from segone.status import status_report
from segone.store.duckdb import DuckDBWarehouse


def run_demo(
    directory: Path,
    *,
    customers: int,
    seed: int,
    console: Console,
    ingest: Callable[..., LoadResult],
    show_status: Callable[[Project, dict[str, Any]], None],
    show_segments: Callable[[Any], None],
    show_matrix: Callable[[Any, tuple[str, ...]], None],
    show_predictions: Callable[[Any], None],
    serve: bool = True,
) -> None:
    t0 = time.perf_counter()
    directory = Path(directory)
    fresh = not (directory / CONFIG_FILE).exists()
    project = Project.init(directory, exist_ok=True)
    cfg = directory / CONFIG_FILE
    if "[ingest.mapping.customers_loyalty]" not in cfg.read_text():
        cfg.write_text(cfg.read_text() + SAMPLE_TOML)
    project = Project.open(directory)
    console.rule("[bold]segone demo")
    console.print(
        f"Project {directory} ({'new' if fresh else 'existing: loading again adds nothing'})"
    )

    sample_dir = directory / "sample"
    console.print(
        f"\n[bold]1. Generate[/] a multichannel store of {customers:,} people (seed {seed})"
    )
    t = time.perf_counter()
    truth = generate_sample(sample_dir, customers=customers, seed=seed)
    console.print(
        f"   files in {sample_dir / 'data'}, ground truth in {sample_dir / 'truth'} "
        f"({time.perf_counter() - t:.1f}s)",
        highlight=False,
    )

    console.print("\n[bold]2. Ingest[/] every file (bad rows go to quarantine, with a reason)")
    for kind, name in SAMPLE_FILES:
        r = ingest(project, kind, sample_dir / "data" / name)
        console.print(f"   {r.summary()}", highlight=False, soft_wrap=True)

    with project.warehouse(read_only=True) as wh:
        rep = status_report(wh)
    console.print("\n[bold]3. What the warehouse holds[/]")
    show_status(project, rep)

    console.print("\n[bold]4. Checked against the generator's ground truth[/]")
    tbl = Table()
    tbl.add_column("table")
    tbl.add_column("expected", justify="right")
    tbl.add_column("loaded", justify="right")
    tbl.add_column("", justify="center")
    ok = True
    for name in (
        "customers",
        "orders",
        "order_lines",
        "events",
        "interactions",
        "products",
        "quarantine",
    ):
        exp, got = int(truth[name]), rep["tables"][name]
        # on a re-run the quarantine already holds the rows; it is not added to
        good = exp == got
        ok &= good
        tbl.add_row(name, f"{exp:,}", f"{got:,}", "[green]ok[/]" if good else "[red]differs[/]")
    console.print(tbl)
    console.print("\n[bold]5. One customer per real person[/]: identity resolution and profiles")
    end = sample_as_of() + timedelta(microseconds=1)
    with project.warehouse() as wh:
        built = build(
            wh,
            as_of=sample_as_of(),
            identity=project.settings.identity,
            stages=project.settings.lifecycle,
            models=project.settings.models,
        )
        scores = identity_scores(wh, sample_dir / "truth")
        p = wh.table("profiles")
        top = wh.execute(
            p.filter(p.orders > 0)
            .order_by(ibis.desc(p.revenue))
            .select(
                "customer_id",
                "orders",
                "revenue",
                "top_category",
                "rfm_cell",
                "channels",
                "crm_stage",
            )
            .limit(5)
        )
    console.print(f"   {built.summary()}", highlight=False, soft_wrap=True)
    console.print(
        f"   against the truth: {scores['people']:,} real people -> {scores['customers']:,} "
        f"customers; {scores['split_rate']:.1%} of people still split over several ids "
        f"({scores['linkable_split_rate']:.1%} of those whose records could be linked at all: "
        f"{scores['split_by_design_rate']:.1%} of people hold records that share nothing, such "
        "as anonymous browsing never tied to a login), "
        f"{scores['mixed_rate']:.2%} of customers mix two people (family e-mails and kiosk "
        "devices were refused as links)",
        highlight=False,
        soft_wrap=True,
    )
    tp = Table(title="top customers by revenue", title_justify="left")
    for c in top.columns:
        tp.add_column(c)
    for r in top.itertuples(index=False):
        tp.add_row(*[_cell(v) for v in r])
    console.print(tp)
    console.print(
        f"   see one: segone profile -p {directory} {top.customer_id.iloc[0] if len(top) else ''}",
        highlight=False,
        soft_wrap=True,
    )

    console.print(
        "\n[bold]6. Segments that follow people[/]: monthly snapshots of the last half year"
    )
    with project.warehouse() as wh:
        cat = project_catalogue(project, wh)
        if wh.count("segment_snapshots") == 0:
            last = end - timedelta(microseconds=1)  # the final snapshot is the build's as-of
            backfill(
                wh,
                cat,
                last - timedelta(days=180),
                last,
                30,
                project.settings.lifecycle,
                models=project.settings.models,
            )
        sizes = summary(wh, cat, end - timedelta(microseconds=1))
        matrix = wh.execute(transition_matrix(wh))
    show_segments(sizes)
    show_matrix(matrix, STAGES)
    lc = lifecycle_scores_or_none(project, sample_dir)
    if lc:
        console.print(
            f"   lifecycle 'churned' vs the generator's true churn: accuracy "
            f"{lc['per_person_lifecycle']['accuracy']:.1%} per person, "
            f"{lc['global_180d']['accuracy']:.1%} with one global 180-day window",
            highlight=False,
            soft_wrap=True,
        )

    console.print("\n[bold]7. Predictions per person[/] (fitted at the build; `segone models`)")
    with project.warehouse(read_only=True) as wh:
        show_predictions(wh)
        shifts = wh.execute(
            wh.table("transitions").filter(lambda t: t.kind == "taste_shift").count()
        )
    console.print(
        f"   {built.models.summary() if built.models else ''}; {int(shifts):,} taste shifts "
        "recorded over the snapshots (see `segone profile ID`)",
        highlight=False,
        soft_wrap=True,
    )

    console.print("\n[bold]8. Real data[/]: the CDNOW purchase history (Fader & Hardie)")
    cd_dir = directory / "cdnow"
    cd_project = Project.init(cd_dir, exist_ok=True)
    csv = cd_dir / "cdnow_orders.csv"
    write_cdnow_orders(csv)
    r = ingest(cd_project, "orders", csv)
    console.print(f"   {r.summary()}", highlight=False, soft_wrap=True)
    bg = cdnow_bgnbd()
    got = ", ".join(f"{k}={v:.3f}" for k, v in bg.params_.items())
    console.print(
        f"   BG/NBD on the first 39 weeks: {got}, log-likelihood {bg.log_likelihood_:,.2f} "
        "(published: r=0.243, alpha=4.414, a=0.793, b=2.426, -9,582.43)",
        highlight=False,
        soft_wrap=True,
    )
    if not ok:
        raise SystemExit("the loaded counts differ from the ground truth: please report this")
    (directory / "demo_summary.json").write_text(
        json.dumps({"tables": rep["tables"], "identity": scores}, indent=2)
    )
    console.print(f"\nBatch part done in {time.perf_counter() - t0:.0f}s.", highlight=False)
    top_user = _user_id_of(project, str(top.customer_id.iloc[0])) if len(top) else None
    realtime_demo(directory, console, top_user, serve=serve)


def sample_as_of() -> datetime:
    """The last instant of the generated store's period: the as-of time of builds over it."""
    end = datetime.fromisoformat(SampleConfig().end).replace(tzinfo=UTC) + timedelta(days=1)
    return end - timedelta(microseconds=1)


def sample_project(directory: Path, *, customers: int, seed: int) -> Project:
    """A new project holding the generated store of ``customers`` people, every file ingested
    into its (DuckDB) warehouse, nothing built: the store that the Spark parity test and
    ``bench/scale_bench.py`` build on each engine."""
    project = Project.init(directory, exist_ok=True)
    cfg = Path(directory) / CONFIG_FILE
    cfg.write_text(cfg.read_text(encoding="utf-8") + SAMPLE_TOML, encoding="utf-8")
    project = Project.open(directory)
    sample_dir = Path(directory) / "sample"
    generate_sample(sample_dir, customers=customers, seed=seed)
    with project.warehouse() as wh:
        for kind, name in SAMPLE_FILES:
            ingest_file(
                wh,
                kind,
                sample_dir / "data" / name,
                settings=project.settings.ingest,
                identity=project.settings.identity,
            )
    return project


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}"
    if hasattr(v, "tolist") or isinstance(v, list):
        return ", ".join(map(str, list(v)))
    return str(v)


def lifecycle_scores_or_none(project: Project, sample_dir: Path) -> dict[str, Any] | None:
    with project.warehouse(read_only=True) as wh:
        return lifecycle_scores(wh, sample_dir / "truth")


def cdnow_bgnbd() -> BetaGeo:
    """BG/NBD fitted as Fader, Hardie & Lee did: weeks, calibration 1997-01-01..09-30."""
    df = load_cdnow().rename(columns={"date": "ts"})
    tx = ibis.memtable(df[["customer_id", "ts", "amount"]])
    with DuckDBWarehouse() as wh:
        summ = wh.execute(rfm_summary(tx, calibration_end="1997-09-30 23:59:59", unit_days=7.0))
    return BetaGeo().fit(summ)


def _user_id_of(project: Project, customer_id: str) -> str | None:
    with project.warehouse(read_only=True) as wh:
        cm = wh.table("customer_map")
        hit = wh.execute(
            cm.filter((cm.customer_id == customer_id) & (cm.id_type == "user_id")).node.min()
        )
    return str(hit) if hit else None


def _demo_secrets(directory: Path) -> dict[str, str]:
    """Keys for the demo project's server, generated once and kept in its segone.toml."""
    cfg = directory / CONFIG_FILE
    text = cfg.read_text(encoding="utf-8")
    keys = {}
    for name, prefix in (("write_keys", "wk"), ("admin_tokens", "adm"), ("decide_tokens", "dk")):
        found = re.search(rf'^{name} = \["([^"]+)"\]', text, re.M)
        value = found.group(1) if found else f"demo-{prefix}-{secrets.token_hex(8)}"
        text = re.sub(rf"^{name} = \[\]", f'{name} = ["{value}"]', text, count=1, flags=re.M)
        keys[name] = value
    cfg.write_text(text, encoding="utf-8")
    return keys


def realtime_demo(directory: Path, console: Console, user: str | None, *, serve: bool) -> None:
    """Step 9: publish to the online store, start the server, ask it for a decision."""
    import httpx

    from segone.api.app import create_app
    from segone.api.server import background_server
    from segone.online.engine import Engine
    from segone.pipeline.publish import open_online, publish

    console.print("\n[bold]9. Real time[/]: the server, fed by the last build")
    keys = _demo_secrets(directory)
    project = Project.open(directory)
    store = open_online(project.settings, create=True)
    assert store is not None
    with project.warehouse(read_only=True) as wh:
        pub = publish(wh, store, project.settings)
    console.print(f"   {pub.summary()}", highlight=False, soft_wrap=True)
    s = project.settings.server
    from segone.web import extend_api  # the dashboard at / too, as segone serve has it

    app = create_app(project.settings, Engine(store, project.settings), extend=extend_api)
    try:
        with _serving(background_server, app, s.host, s.port) as url:
            who = user or "user_id:demo-visitor"
            uid = who.split(":", 1)[1]
            track = {
                "userId": uid,
                "event": "Product Viewed",
                "properties": {"product_id": "demo", "category": "Outdoor"},
            }
            decide = {"identifier": who, "placement": "home", "limit": 3}
            with httpx.Client(base_url=url, timeout=10) as http:
                r = http.post("/v1/track", json=track, auth=(keys["write_keys"], ""))
                r.raise_for_status()
                r = http.post(
                    "/v1/decide",
                    json=decide,
                    headers={"Authorization": f"Bearer {keys['decide_tokens']}"},
                )
                r.raise_for_status()
                answer = r.json()
            tbl = Table(title=f"decision for {who} at placement 'home'", title_justify="left")
            for c in ("item", "score", "propensity", "why"):
                tbl.add_column(c)
            for it in answer.get("items", []):
                tbl.add_row(
                    f"{it['name']} ({it.get('id')})" if it.get("name") else str(it.get("id")),
                    f"{it.get('score', 0):.3f}",
                    f"{it.get('propensity', 0):.2f}",
                    "; ".join(it.get("reasons", [])),
                )
            console.print(tbl)
            ch = answer.get("channel") or {}
            console.print(
                f"   follow up on: {ch.get('name') or 'no channel'} ({ch.get('reason', '')})",
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                "   try it yourself (the server runs until Ctrl-C):\n"
                f"   curl -s -u {keys['write_keys']}: -H 'Content-Type: application/json' "
                f"-d '{json.dumps(track)}' {url}/v1/track\n"
                f"   curl -s -H 'Authorization: Bearer {keys['decide_tokens']}' "
                f"-H 'Content-Type: application/json' -d '{json.dumps(decide)}' {url}/v1/decide",
                highlight=False,
                soft_wrap=True,
            )
            console.print(f"   API docs: {url}/docs", highlight=False)
            if serve:
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    console.print("   stopped")
    finally:
        store.close()


@contextmanager
def _serving(start: Callable[..., Any], app: Any, host: str, port: int) -> Iterator[str]:
    """The server on the configured port, or on a free one if that is taken."""
    import socket

    with socket.socket() as probe:
        busy = probe.connect_ex((host, port)) == 0
    with start(app, host, 0 if busy else port) as url:
        yield url
