"""The user's path: a project, a campaign file, `segone campaign …`, then the API report."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import ibis
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from segone.cli import app
from segone.project import Project
from tests.test_campaigns_audience import NOW, random_store

CAMPAIGN = """
name: winback
audience:
  rule: {churn_probability: {gt: 0.2}}
channel: email
holdout: 0.3
arms:
  - {name: mass, kind: mass, offer: {title: "10% off"}}
  - {name: personal, kind: one_to_one}
message:
  subject: "{{ first_name or 'Hello' }}, {{ offer.title or 'for you' }}"
  text: "Hi {{ first_name }}\\n{{ unsubscribe_url }}"
  unsubscribe_url: "https://shop.example/u?c={customer_id}&t={token}"
fields: [first_name]
attribution: {window_days: 14}
conversion: order
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, dict]:
    root = tmp_path_factory.mktemp("proj")
    proj = Project.init(root)
    with proj.warehouse() as wh:
        truth = random_store(wh, 7, n=400)
        wh.insert(
            "products",
            ibis.memtable(
                pa.table({"product_id": ["P1"], "name": ["Camping Stove"], "category": ["Sports"]})
            ),
        )
    # what the API learnt since the build: suppressions, and erasures (one hashed with a salt
    # only the online store knows)
    from segone.identity.traces import hash_node
    from segone.pipeline.publish import open_online

    store = open_online(proj.settings, create=True)
    assert store is not None
    with store:
        store.ensure_schema()
        with store.write() as tx:
            tx.docs.put("suppression", truth["suppressions"])
            tx.erasure.add_erased(truth["online_hashes"], "api-1")
            tx.erasure.add_salts(["online-only-salt"])
            tx.erasure.add_erased([hash_node("online-only-salt", "user_id:u3")], "api-2")
    truth["erased"] = truth["erased"] | {"c7-0003"}
    (root / "campaigns").mkdir()
    (root / "campaigns" / "winback.yaml").write_text(CAMPAIGN)
    return proj, truth


def cli(*args: str) -> str:
    r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


def test_list_show_audience_preview_run_report(project: tuple[Project, dict]) -> None:
    proj, truth = project
    p = str(proj.root)
    at = NOW.isoformat()
    assert "winback" in cli("campaign", "list", "-p", p)
    assert "one_to_one" in cli("campaign", "show", "winback", "-p", p)
    out = cli("campaign", "audience", "winback", "-p", p, "--at", at)
    assert "consented" in out and "to contact" in out
    f = proj.root / "out.csv"
    exp = cli(
        "campaign", "audience", "winback", "-p", p, "--at", at, "--export", str(f), "--hashed"
    )
    import pyarrow.csv as pacsv

    rows = pacsv.read_csv(f).to_pylist()
    assert rows and set(rows[0]) == {"customer_id", "contact_sha256"}  # nothing else
    assert f"wrote {len(rows):,} people" in exp
    import hashlib

    c0 = rows[0]["customer_id"]
    assert rows[0]["contact_sha256"] == hashlib.sha256(truth["email_of"][c0].encode()).hexdigest()
    dry = cli("campaign", "run", "winback", "--dry-run", "-p", p, "--at", at)
    assert "nothing sent or stored" in dry
    with proj.warehouse() as wh:
        assert "campaign_assignments" not in wh.tables() or wh.count("campaign_assignments") == 0
    run = cli("campaign", "run", "winback", "-p", p, "--at", at)
    assert "SRM p" in run and "nothing delivered" in run
    with proj.warehouse() as wh:
        a = wh.execute(wh.table("campaign_assignments"))
        x = wh.execute(wh.table("campaign_exposures").filter(lambda t: t.campaign == "winback"))
    # only the treated are contacted, everyone reachable is assigned, nobody without consent
    assert set(x.customer_id) == set(a[a.group == "treatment"].customer_id)
    assert all(truth["consent"][c] is True for c in a.customer_id)
    assert not set(a.customer_id) & (truth["erased"] | truth["blocked"] | truth["opted"])
    assert sorted(r["customer_id"] for r in rows) == sorted(a[a.group == "treatment"].customer_id)
    treated = a[a.group == "treatment"].customer_id.iloc[0]
    held = a[a.group != "treatment"].customer_id.iloc[0]
    pre = cli("campaign", "preview", "winback", "--person", treated, "-p", p, "--at", at)
    assert "group treatment" in pre and "Subject:" in pre and "https://shop.example/u?c=" in pre
    assert "held out" in cli(
        "campaign", "preview", "winback", "--person", held, "-p", p, "--at", at
    )
    # orders after the send: every treated person of the mass arm buys, nobody else
    buyers = list(a[(a.group == "treatment") & (a.arm == "mass")].customer_id)
    with proj.warehouse() as wh:
        keys = [f"o-{c}" for c in buyers]
        wh.insert(
            "orders",
            ibis.memtable(
                pa.table(
                    {
                        "order_id": keys,
                        "ts": pa.array(
                            [NOW + timedelta(days=2)] * len(keys), pa.timestamp("us", tz="UTC")
                        ),
                        "amount": [30.0] * len(keys),
                    }
                )
            ),
        )
        wh.insert(
            "record_customers",
            ibis.memtable(
                pa.table(
                    {
                        "record_table": ["orders"] * len(keys),
                        "record_key": keys,
                        "customer_id": buyers,
                    }
                )
            ),
        )
    rep = json.loads(cli("campaign", "report", "winback", "--json", "-p", p))
    mass = next(r for r in rep["arms"] if r["arm"] == "mass")
    assert mass["treated"] == len(buyers) and mass["rate"] == 1.0
    assert mass["control_rate"] == 0.0 and mass["lift_ci"][0] > 0.5
    assert mass["revenue_per_person"] == pytest.approx(30.0)
    personal = next(r for r in rep["arms"] if r["arm"] == "personal")
    assert personal["rate"] == 0.0
    assert rep["groups"]["treatment"] + rep["groups"]["holdout"] + rep["groups"].get(
        "global_control", 0
    ) == len(a)
    table = cli("campaign", "report", "winback", "-p", p)
    assert "SRM" in table and "mass" in table

    # the same report through the server's own app (its scopes, its error envelope)
    from segone.api import background_server, create_app
    from segone.online.engine import Engine
    from segone.online.store import OnlineStore

    settings = type(proj.settings)(  # same project, with an admin token
        root=proj.settings.root,
        warehouse=proj.settings.warehouse,
        server=type(proj.settings.server)(
            admin_tokens=("t0ken",),
            writer="thread",
            online_url=f"sqlite:///{proj.root / 'online-api.db'}",
        ),
    )
    store = OnlineStore.open(settings.server.online_url)
    api = create_app(settings, Engine(store, settings))
    h = {"Authorization": "Bearer t0ken"}
    with background_server(api) as url, httpx.Client(base_url=url, timeout=30) as client:
        anon = client.get("/v1/campaigns")
        listed = client.get("/v1/campaigns", headers=h)
        report = client.get("/v1/campaigns/winback/report", headers=h)
        missing = client.get("/v1/campaigns/nope/report", headers=h)
    assert anon.status_code == 401
    got = listed.json()
    assert got["campaigns"][0]["name"] == "winback" and got["campaigns"][0]["runs"] == 1
    assert report.json()["arms"] == rep["arms"]
    assert missing.status_code == 404 and "no campaign" in missing.text
    store.close()


def test_user_mistakes_are_one_line_errors(project: tuple[Project, dict]) -> None:
    proj, _ = project
    r = CliRunner().invoke(app, ["campaign", "report", "nope", "-p", str(proj.root)])
    assert r.exit_code == 2 and "no campaign 'nope'" in r.output
    r = CliRunner().invoke(
        app, ["campaign", "audience", "winback", "-p", str(proj.root), "--at", "soon"]
    )
    assert r.exit_code == 2 and "not an ISO date" in r.output


def test_run_sends_over_smtp_to_exactly_the_treated(tmp_path: Path) -> None:
    """A real local SMTP server receives one message per treated person, nobody else.

    Runs once ``segone.campaigns.destinations.email`` (the SMTP transport) is present."""
    email = pytest.importorskip("segone.campaigns.destinations.email")
    assert hasattr(email, "SmtpSender")
    from aiosmtpd.controller import Controller

    got: list[tuple[str, list[str]]] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append((envelope.mail_from, list(envelope.rcpt_tos)))
            return "250 OK"

    from tests.test_destinations_email import free_port

    ctl = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        port = ctl.port
        proj = Project.init(tmp_path / "p")
        with proj.warehouse() as wh:
            truth = random_store(wh, 9, n=150)
        (proj.root / "campaigns").mkdir()
        (proj.root / "campaigns" / "w.yaml").write_text(
            CAMPAIGN.replace("name: winback", "name: w")
            + f"send: {{smtp: {{host: 127.0.0.1, port: {port}, sender: shop@example.com, "
            "rate_per_second: 200}}\n"
        )
        out = cli("campaign", "run", "w", "-p", str(proj.root), "--at", NOW.isoformat())
        assert "sent" in out
        with proj.warehouse() as wh:
            a = wh.execute(wh.table("campaign_assignments"))
        treated = a[a.group == "treatment"].customer_id
        want = sorted(truth["email_of"][c] for c in treated)
        assert sorted(r for _, rcpts in got for r in rcpts) == want
    finally:
        ctl.stop()
