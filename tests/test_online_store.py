"""The online store on both engines: same answers from SQLite (WAL) and a real PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from segone.online.store import OnlineStore, OnlineStoreError

PG_URL = os.environ.get("SEGONE_TEST_POSTGRES_URL")
NEED_PG = (
    "PostgreSQL tests skipped: set SEGONE_TEST_POSTGRES_URL "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run them"
)


def pg_schema_url(schema: str) -> str:
    assert PG_URL
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"


def drop_pg_schema(schema: str) -> None:
    import psycopg

    assert PG_URL
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        s = OnlineStore.open(f"sqlite:///{tmp_path / 'online.db'}")
        yield s
        s.close()
        return
    if not PG_URL:
        pytest.skip(NEED_PG)
    schema = "t_" + uuid.uuid4().hex[:12]
    s = OnlineStore.open(pg_schema_url(schema))
    try:
        yield s
    finally:
        s.close()
        drop_pg_schema(schema)


NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def msg(mid: str, **kw: object) -> dict[str, object]:
    return {"messageId": mid, "type": "track", "event": "X", "receivedAt": NOW.isoformat(), **kw}


def test_events_are_deduplicated_by_message_id(store: OnlineStore) -> None:
    with store.write() as tx:
        first = tx.events.insert([msg("a"), msg("b"), msg("a")], ["p1", "p1", "p1"])
    assert first[0] is not None and first[1] is not None and first[2] is None
    with store.write() as tx:
        assert tx.events.insert([msg("b")], ["p2"]) == [None]
    with store.read() as tx:
        rows = tx.events.after(0, 10)
        assert [m["messageId"] for _, _, m in rows] == ["a", "b"]
        assert tx.events.seen(["a", "zz"]) == {"a"}


def test_a_failed_transaction_leaves_nothing(store: OnlineStore) -> None:
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.events.insert([msg("a")], ["p1"])
        raise RuntimeError("boom")
    with store.read() as tx:
        assert tx.count("events") == 0


def test_savepoint_rolls_back_one_job_only(store: OnlineStore) -> None:
    with store.write() as tx:
        tx.events.insert([msg("a")], ["p1"])
        with pytest.raises(ValueError), tx.savepoint():
            tx.events.insert([msg("b")], ["p1"])
            raise ValueError("bad job")
        tx.events.insert([msg("c")], ["p1"])
    with store.read() as tx:
        assert sorted(m["messageId"] for _, _, m in tx.events.after(0, 10)) == ["a", "c"]


def test_identities_docs_stats_and_merge(store: OnlineStore) -> None:
    with store.write() as tx:
        tx.identity.link("user_id:u1", "p1")
        tx.identity.link("anonymous_id:a1", "p2")
        tx.events.insert([msg("m1")], ["p2"])
        tx.docs.put("person", {"p1": {"events": 1}, "p2": {"events": 2}})
        tx.stats.add({"k": (1, 2)})
        tx.stats.add({"k": (0, 3), "j": (1, 1)})
        tx.identity.repoint("p2", "p1")
    with store.read() as tx:
        assert tx.identity.lookup(["user_id:u1", "anonymous_id:a1", "email:x"]) == {
            "user_id:u1": "p1",
            "anonymous_id:a1": "p1",
        }
        assert tx.events.after(0, 5)[0][1] == "p1"
        assert tx.docs.get("person", ["p1", "p2"]) == {"p1": {"events": 1}, "p2": {"events": 2}}
        assert tx.stats.get(["k", "j", "none"]) == {"k": (1.0, 5.0), "j": (1.0, 1.0)}


def test_outbox_retries_and_dead_letters(store: OnlineStore) -> None:
    with store.write() as tx:
        oid = tx.outbox.enqueue("p1", "segment_entered", {"segment": "vip"}, NOW)
    with store.read() as tx:
        assert [r.id for r in tx.outbox.due(NOW)] == [oid]
    with store.write() as tx:
        tx.outbox.failed(oid, "HTTP 500", NOW + timedelta(seconds=2))
    with store.read() as tx:
        assert tx.outbox.due(NOW) == []
        assert tx.outbox.due(NOW + timedelta(seconds=3))[0].attempts == 1
    with store.write() as tx:
        tx.outbox.dead(oid, "HTTP 500")
    with store.read() as tx:
        assert tx.outbox.due(NOW + timedelta(days=1)) == []
        dead = tx.outbox.dead_letters()
    assert dead[0].attempts == 2 and dead[0].payload == {"segment": "vip"}


def test_erase_person_removes_them_everywhere(store: OnlineStore) -> None:
    with store.write() as tx:
        tx.identity.link("email:ann@example.com", "p1")
        tx.identity.link("user_id:u2", "p2")
        tx.events.insert([msg("m1"), msg("m2")], ["p1", "p2"])
        tx.docs.put("person", {"p1": {}, "p2": {}})
        tx.docs.put("published", {"p1": {}})
        tx.journey.add("p1", NOW, "segment_entered", {"segment": "vip"})
        tx.outbox.enqueue("p1", "segment_entered", {}, NOW)
        tx.decisions.log("d1", "p1", NOW, "home", {"items": []})
        tx.decisions.log_feedback("d1", "i1", "click", NOW, {})
        tx.quarantine.add(
            [{"reason": "bad", "message": '{"email": "ann@example.com"}', "received_at": NOW}]
        )
        counts = tx.erasure.erase_person("p1")
    assert counts["events"] == 1 and counts["feedback"] == 1 and counts["quarantine"] == 1
    with store.read() as tx:
        assert tx.identity.lookup(["email:ann@example.com", "user_id:u2"]) == {"user_id:u2": "p2"}
        assert tx.docs.get("person", ["p1", "p2"]) == {"p2": {}}
        assert tx.docs.get("published", ["p1"]) == {}
        assert tx.journey.of("p1") == [] and tx.decisions.get("d1") is None
        assert tx.erasure.queued() == []  # the identifiers are not kept in plain text
        assert tx.count("events") == 1 and tx.count("quarantine") == 0


def test_read_transactions_cannot_write(store: OnlineStore) -> None:
    with store.read() as tx, pytest.raises(OnlineStoreError, match="read transaction"):
        tx.identity.link("user_id:u", "p")


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    OnlineStore.open(f"sqlite:///{tmp_path / 'o.db'}").close()
    conn = sqlite3.connect(tmp_path / "o.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_deferred_sync_commits_then_syncs_and_guards_its_wal(tmp_path: Path) -> None:
    """The writer process commits with synchronous=NORMAL and acknowledges after sync():
    commits are visible at once, sync() flushes the WAL file it holds, and refuses to pretend
    when that file is no longer the store's."""
    db = tmp_path / "online.db"
    s = OnlineStore.open(f"sqlite:///{db}")
    try:
        s.defer_sync()
        with s.write() as tx:
            tx.events.insert([msg("m1")], ["p1"])
        s.sync()
        s.checkpoint()  # beside the writer, which no longer checkpoints in its COMMITs
        other = sqlite3.connect(db)
        assert other.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
        busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames == copied  # all of the WAL is in the database file
        assert other.execute("PRAGMA synchronous").fetchone() == (2,)  # others: FULL
        other.close()
        wal = Path(f"{db}-wal")
        wal.rename(tmp_path / "moved-wal")
        wal.write_bytes(b"")
        with pytest.raises(OnlineStoreError, match="WAL file was replaced"):
            s.sync()
    finally:
        s.close()
    from segone.online.store import POSTGRES

    with pytest.raises(OnlineStoreError, match="SQLite"):
        OnlineStore("postgresql://x", POSTGRES, lambda: None).defer_sync()


def test_bad_urls_are_explained(tmp_path: Path) -> None:
    from segone.exceptions import ConfigError

    with pytest.raises(ConfigError, match="sqlite:///path"):
        OnlineStore.open("mysql://x/y")
    with pytest.raises(OnlineStoreError, match="cannot connect"):
        OnlineStore.open("postgresql://nobody@127.0.0.1:1/none")


def test_dead_letters_can_be_sent_again(store: OnlineStore) -> None:
    with store.write() as tx:
        oid = tx.outbox.enqueue("p1", "stage_changed", {"to": "active"}, NOW)
        tx.outbox.dead(oid, "HTTP 503")
        assert tx.outbox.retry_dead(NOW) == 1
    with store.read() as tx:
        assert tx.outbox.dead_letters() == []
        again = tx.outbox.due(NOW)
    assert [(r.kind, r.attempts, r.payload) for r in again] == [
        ("stage_changed", 0, {"to": "active"})
    ]


def test_dead_letters_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from segone.cli import app
    from segone.project import Project

    proj = Project.init(tmp_path / "p")
    runner = CliRunner()
    r = runner.invoke(app, ["dead-letters", "-p", str(proj.root)])
    assert r.exit_code != 0 and "no online store" in r.output
    with OnlineStore.open("sqlite:///online.db", root=proj.root) as s, s.write() as tx:
        tx.outbox.dead(tx.outbox.enqueue("p1", "segment_entered", {}, NOW), "ConnectError")
    r = runner.invoke(app, ["dead-letters", "-p", str(proj.root)])
    assert r.exit_code == 0 and "segment_entered" in r.output and "ConnectError" in r.output
    r = runner.invoke(app, ["dead-letters", "-p", str(proj.root), "--retry"])
    assert r.exit_code == 0 and "1 trigger(s) queued again" in r.output
