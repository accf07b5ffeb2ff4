"""Triggered arms fired from the live engine: a real project, a real SQLite online store fed
through ``Engine.ingest_sync`` (the engine's public entry point), a real local SMTP server.

People enter the built-in ``pricing_page_visitors`` segment in real time when they view the
Pricing page; the campaign's triggered arm must mail exactly the treated ones who consented,
did not unsubscribe, are not suppressed or erased, record the held-out ones as exposed to
control without mailing them, and fire once per person per trigger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from segone.campaigns.holdouts import TREATMENT, assign
from segone.campaigns.triggers import TriggerRunner, import_fired
from segone.online.engine import Engine
from segone.pipeline.publish import open_online
from segone.project import Project
from tests.test_destinations_email import free_port

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
N = 80


def identify(i: int, at: datetime, consent: bool) -> dict:
    return {
        "type": "identify",
        "userId": f"u{i}",
        "messageId": f"id-{i}",
        "timestamp": at.isoformat(),
        "receivedAt": at.isoformat(),
        "traits": {"email": f"p{i}@shop.test", "first_name": f"P{i}", "consent_email": consent},
    }


def pricing(i: int, at: datetime, k: int = 0) -> dict:
    return {
        "type": "page",
        "name": "Pricing",
        "userId": f"u{i}",
        "messageId": f"pr-{i}-{k}",
        "timestamp": at.isoformat(),
        "receivedAt": at.isoformat(),
        "properties": {"path": "/pricing"},
    }


@pytest.fixture
def smtp():
    got: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.extend(envelope.rcpt_tos)
            return "250 OK"

    ctl = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl.port, got
    ctl.stop()


def test_triggered_arm_fires_from_the_live_engine(tmp_path: Path, smtp) -> None:
    port, got = smtp
    proj = Project.init(tmp_path / "p")
    (proj.root / "campaigns").mkdir()
    (proj.root / "campaigns" / "pricing.yaml").write_text(
        "name: pricing\n"
        "audience: {segment: pricing_page_visitors}\n"
        "channel: email\n"
        "holdout: 0.25\n"
        "arms:\n"
        "  - {name: nudge, kind: triggered, offer: {title: A plan for you},\n"
        "     trigger: {transition: pricing_page_visitors, within_days: 60}}\n"
        "message: {subject: 'Hi {{ first_name }}', text: '{{ offer.title }}'}\n"
        "fields: [first_name]\n"
        f"send: {{smtp: {{host: 127.0.0.1, port: {port}, sender: shop@x.test, "
        "rate_per_second: 500}}\n"
    )
    store = open_online(proj.settings, create=True)
    assert store is not None
    now = [T0]
    engine = Engine(store, proj.settings, clock=lambda: now[0], writer="thread")
    engine.refresh(force=True)  # the segment catalogue, as start() loads it
    no_consent = set(range(0, 10))
    unsubscribed = set(range(10, 16))
    suppressed = {16, 17}
    msgs = [identify(i, T0, i not in no_consent) for i in range(N)]
    msgs += [
        {
            "type": "track",
            "event": "Email Unsubscribed",
            "userId": f"u{i}",
            "messageId": f"un-{i}",
            "timestamp": T0.isoformat(),
            "receivedAt": T0.isoformat(),
        }
        for i in unsubscribed
    ]
    engine.ingest_sync(msgs)
    with store.write() as tx:
        tx.docs.put(
            "suppression",
            {f"email:p{i}@shop.test": {"reason": "complaint"} for i in suppressed},
            T0,
        )
    runner = TriggerRunner(proj.root, proj.settings, store, clock=lambda: now[0])
    assert runner.active
    assert runner.run_once().fired == []  # no one has entered the segment yet

    at = T0 + timedelta(minutes=5)
    now[0] = at
    engine.ingest_sync([pricing(i, at) for i in range(N)])
    r = runner.run_once()
    # who each person is
    with store.read() as tx:
        pid_of = {i: tx.identity.lookup([f"user_id:u{i}"])[f"user_id:u{i}"] for i in range(N)}
    groups = assign(
        [pid_of[i] for i in range(N)],
        salt="campaign:pricing",
        holdout=0.25,
        arms={"nudge": 1.0},
    ).group
    group_of = {i: str(g) for i, g in zip(range(N), groups, strict=True)}
    reachable = set(range(N)) - no_consent - unsubscribed - suppressed
    fired = {f.person_id: f for f in r.fired}
    assert set(fired) == {pid_of[i] for i in reachable}
    mailed = {i for i in reachable if group_of[i] == TREATMENT}
    assert sorted(got) == sorted(f"p{i}@shop.test" for i in mailed)
    assert 0 < len(reachable - mailed) < len(reachable)  # some held out, recorded, not mailed
    for i in reachable - mailed:
        f = fired[pid_of[i]]
        assert not f.sent and f.group == group_of[i]
    assert r.skipped.get("no consent") == len(no_consent)
    assert r.skipped.get("opted out") == len(unsubscribed)
    assert r.skipped.get("suppressed") == len(suppressed)

    # once per person per trigger: a second pass fires nothing; people who leave the segment
    # (30 days without a pricing view) and enter it again within the trigger's 60 days neither
    assert runner.run_once().fired == []
    back = set(range(20, 30))
    d31, d35 = at + timedelta(days=31), at + timedelta(days=35)
    now[0] = d31
    engine.ingest_sync(
        [{**pricing(i, d31, 1), "name": "Home", "properties": {"path": "/"}} for i in back]
    )
    now[0] = d35
    engine.ingest_sync([pricing(i, d35, 2) for i in back])
    with store.read() as tx:
        entered = [
            e
            for e in tx.journey.after(0, 10_000)
            if e.kind == "segment_entered" and e.ts >= d35.isoformat()[:10]
        ]
    assert len(entered) == len(back)  # they did enter again
    r2 = runner.run_once()
    assert r2.fired == [] and r2.skipped.get("fired already") == len(back & reachable)
    assert len(got) == len(mailed)

    # an erased person is never fired: erase a newcomer, then their events are refused
    from segone.identity.erase import erase_everywhere

    newcomer = N + 1
    now[0] = d35 + timedelta(minutes=1)
    engine.ingest_sync([identify(newcomer, now[0], True)])
    erase_everywhere(proj.settings, None, store, f"email:p{newcomer}@shop.test")
    engine.ingest_sync([pricing(newcomer, now[0])])  # refused: the person is erased
    r3 = runner.run_once()
    assert r3.fired == [] and f"p{newcomer}@shop.test" not in got

    # the firings are measured with the batch runs: copied into the warehouse once
    with proj.warehouse() as wh:
        n = import_fired(wh, proj.root)
        assert n == len(fired)
        assert import_fired(wh, proj.root) == 0
        a = wh.execute(wh.table("campaign_assignments"))
        x = wh.execute(wh.table("campaign_exposures"))
    assert len(a) == n and set(a.run_id) == {"pricing-live"}
    assert set(x.customer_id) == {pid_of[i] for i in mailed}
    assert x.sent.all()
    store.close()


def test_segone_serve_runs_the_triggers(tmp_path: Path, smtp) -> None:
    """The server as ``segone serve`` builds it (``create_app(extend=...)`` with the triggers'
    hook): people who enter the segment over HTTP are mailed by the server itself."""
    import time

    import httpx

    from segone.api import background_server, create_app
    from segone.campaigns.triggers import extend_api
    from segone.config import Settings
    from segone.online.store import OnlineStore
    from tests.test_api_errors import basic

    port, got = smtp
    root = tmp_path / "p"
    Project.init(root)
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{root / 'online.db'}",
                "write_keys": ["wk"],
                # a writer process loads the segment catalogue only once a build has published;
                # this project never built, so the writer runs in the server's thread
                "writer": "thread",
            }
        },
    )
    (root / "campaigns").mkdir()
    (root / "campaigns" / "pricing.yaml").write_text(
        "name: pricing\n"
        "audience: {segment: pricing_page_visitors}\n"
        "holdout: 0\n"
        "arms: [{name: nudge, kind: triggered, trigger: {transition: pricing_page_visitors}}]\n"
        "message: {subject: 'Plans', text: 'Our plans'}\n"
        f"send: {{smtp: {{host: 127.0.0.1, port: {port}, sender: shop@x.test}}}}\n"
    )
    (root / "campaigns" / "settings.toml").write_text("global_control = 0.0\n")
    store = OnlineStore.open(settings.server.online_url)
    app = create_app(settings, Engine(store, settings), extend=extend_api)
    with background_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        for i in range(3):
            t = datetime.now(UTC).isoformat()
            r = http.post(
                "/v1/identify",
                json={
                    "userId": f"s{i}",
                    "traits": {"email": f"s{i}@shop.test", "consent_email": i != 2},
                    "timestamp": t,
                },
                headers=basic("wk"),
            )
            assert r.status_code == 200, r.text
            r = http.post(
                "/v1/page",
                json={"userId": f"s{i}", "name": "Pricing", "properties": {"path": "/pricing"}},
                headers=basic("wk"),
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    store.close()
    assert sorted(got) == ["s0@shop.test", "s1@shop.test"]  # s2 did not consent
