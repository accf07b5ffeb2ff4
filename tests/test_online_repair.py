"""``segone repair``: live profiles re-derived from the events in the online store (a real SQLite
file), typed as the server types them now; the same document as the live path wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from segone.api.segment import parse_doc
from segone.cli import app
from segone.online.engine import Engine
from segone.online.repair import repair
from segone.online.store import OnlineStore
from segone.project import Project

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
runner = CliRunner()


def _ingest(engine: Engine, *messages: dict[str, Any]) -> None:
    for m in messages:
        (msg,) = parse_doc(m, m["type"], now=NOW).messages
        engine.ingest_sync([msg])


def _setup(tmp_path: Path) -> tuple[Project, OnlineStore, Engine]:
    proj = Project.init(tmp_path / "p")
    store = OnlineStore.open(proj.settings.server.online_url, root=proj.root)
    engine = Engine(store, proj.settings, clock=lambda: NOW, writer="thread")
    engine.refresh(force=True)
    return proj, store, engine


def _doc(store: OnlineStore, identifier: str) -> tuple[str, dict[str, Any]]:
    with store.read() as tx:
        pid = tx.identity.lookup([identifier])[identifier]
        return pid, tx.docs.get("person", [pid])[pid]


ORDER = {
    "type": "track",
    "userId": "u1",
    "event": "Order Completed",
    "timestamp": "2026-02-01T10:00:00Z",
    "properties": {
        "order_id": "o1",
        "total": 30,
        "products": [{"product_id": "p1", "category": "Books", "price": 30}],
    },
}


def test_repair_gives_the_document_the_live_path_wrote(tmp_path: Path) -> None:
    proj, store, engine = _setup(tmp_path)
    _ingest(
        engine,
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"city": "Lyon"}},
        {"type": "page", "anonymousId": "a1", "name": "Pricing"},
        ORDER,
    )
    pid, live = _doc(store, "user_id:u1")
    with store.write() as tx:  # lost or broken: re-derived all the same
        tx.docs.put("person", {pid: {"agg": {"revenue": None}, "events": 7, "traits": []}})
    done = repair(store, proj.settings, ["anonymous_id:a1"])
    assert (done.people, done.events, done.changed, done.dropped) == (1, 3, 1, 0)
    _, again = _doc(store, "user_id:u1")
    # the same but for the real-time state's clock (re-derived as of each event's receipt)
    assert {k: v for k, v in again.items() if k != "rt"} == {
        k: v for k, v in live.items() if k != "rt"
    }
    assert again["agg"]["n"]["orders"] == 1 and again["agg"]["revenue"] == 30.0
    store.close()


def test_repair_types_what_an_older_version_stored(tmp_path: Path) -> None:
    """Events stored before the door typed them: a price of 1e300 and a time in 9999."""
    proj, store, engine = _setup(tmp_path)
    _ingest(engine, ORDER)
    pid, _ = _doc(store, "user_id:u1")
    with store.read() as tx:
        [(_, _, msg)] = tx.events.of_person(pid)
    msg = {
        **msg,
        "messageId": "old-1",
        "timestamp": "9999-12-31T23:59:59.999999+00:00",
        "properties": {
            "order_id": "o2",
            "total": "NaN",
            "products": [{"product_id": "p2", "category": "Garden", "price": 1e300}],
        },
    }
    with store.write() as tx:
        tx.events.insert([msg], [pid])
    done = repair(store, proj.settings)
    assert (done.people, done.events, done.dropped, done.retimed) == (1, 2, 2, 1)
    _, doc = _doc(store, "user_id:u1")
    agg = doc["agg"]
    assert agg["n"]["orders"] == 2 and agg["revenue"] == 30.0  # the odd order counts for 0
    assert agg["last_order_at"] < "2100" and all(
        v is not None and v < 1e200 for v in agg["aff"].values()
    )
    assert orjson.dumps(doc)  # storable as JSON
    store.close()


def test_the_repair_command(tmp_path: Path) -> None:
    bare = Project.init(tmp_path / "bare")
    r = runner.invoke(app, ["repair", "-p", str(bare.root)])
    assert r.exit_code == 2 and "no online store yet" in r.output
    proj, store, engine = _setup(tmp_path)
    _ingest(engine, ORDER)
    store.close()
    r = runner.invoke(app, ["repair", "-p", str(proj.root), "--person", "user_id:u1"])
    assert r.exit_code == 0, r.output
    assert "re-derived 1 live profile(s) from 1 stored event(s)" in r.output
    r = runner.invoke(app, ["repair", "-p", str(proj.root), "--person", "user_id:nobody"])
    assert r.exit_code == 2 and "no person is known" in r.output
    assert "Traceback" not in r.output
