"""The online store: the server's durable event log, live profiles, published batch results,
journeys, webhook outbox, decisions and bandit statistics, in SQLite (WAL) or PostgreSQL.

This module is the only code that talks to the online database. Both engines run the same SQL
(SQLite >= 3.35 and PostgreSQL agree on ``ON CONFLICT``, ``RETURNING`` and savepoints); the few
dialect differences are in ``_Dialect``. Every write goes through ``OnlineStore.write()``, one
transaction on the one writer connection; an event is durable once that transaction commits
(SQLite: WAL with ``synchronous=FULL``, or ``defer_sync`` + ``sync``, which the writer process
uses; PostgreSQL: ``synchronous_commit`` as configured, on by default). Readers use their own
connections and never block the writer.

URLs: ``sqlite:///relative/or/absolute.db`` (``sqlite:////abs/path.db`` also works) or
``postgresql://user@host:port/db``; a ``?schema=NAME`` on a PostgreSQL URL keeps segone's tables
in that schema (created if missing).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson

from segone.exceptions import ConfigError, OnlineStoreError

SCHEMA_VERSION = "1"
DOC_KINDS_OF_PERSON = ("person", "published", "channel")


def ts_text(ts: datetime) -> str:
    """UTC ISO-8601 text with a fixed width, so text order is time order in both engines."""
    if ts.tzinfo is None:
        raise ValueError("online store timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _when(v: Any) -> str:
    if isinstance(v, datetime):
        return ts_text(v)
    return str(v) if v else ts_text(datetime.now(UTC))


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def _unjson(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)


_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq {serial}, message_id TEXT NOT NULL UNIQUE, person_id TEXT NOT NULL, type TEXT NOT NULL,
    ts TEXT NOT NULL, received_at TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_person ON events (person_id);
CREATE TABLE IF NOT EXISTS identities (
    identifier TEXT PRIMARY KEY, person_id TEXT NOT NULL, source TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS identities_person ON identities (person_id);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS journey (
    id {serial}, person_id TEXT NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS journey_person ON journey (person_id, ts);
CREATE TABLE IF NOT EXISTS outbox (
    id {serial}, person_id TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
    last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGINT PRIMARY KEY, person_id TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    created_at TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, dead_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, person_id TEXT NOT NULL, ts TEXT NOT NULL,
    placement TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_person ON decisions (person_id);
CREATE TABLE IF NOT EXISTS feedback (
    id {serial}, decision_id TEXT NOT NULL, item_id TEXT, kind TEXT NOT NULL, ts TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback (decision_id);
CREATE TABLE IF NOT EXISTS stats (
    key TEXT PRIMARY KEY, successes DOUBLE PRECISION NOT NULL, trials DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id {serial}, received_at TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS erasures (
    id {serial}, identifier TEXT NOT NULL, requested_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS erased_identifiers (
    node_hash TEXT PRIMARY KEY, erasure_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS erasure_log (
    erasure_id TEXT PRIMARY KEY, at TEXT NOT NULL, route TEXT NOT NULL, people INTEGER NOT NULL,
    rows_removed TEXT NOT NULL);
"""


@dataclass(frozen=True)
class _Dialect:
    name: str
    serial: str
    param: str

    def sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", self.param)


SQLITE = _Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "?")
POSTGRES = _Dialect("postgresql", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "%s")


class Tx:
    """One transaction on one connection. Created by ``OnlineStore.write()`` / ``read()``."""

    def __init__(self, conn: Any, dialect: _Dialect, *, writable: bool) -> None:
        self._conn = conn
        self._d = dialect
        self.writable = writable
        self._sp = 0

    # -- plumbing --------------------------------------------------------------------------------
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._conn.cursor()
        cur.execute(self._d.sql(sql), tuple(params))
        return cur

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._conn.cursor().executemany(self._d.sql(sql), rows)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._exec(sql, params).fetchall())

    def _in(
        self, sql: str, values: Sequence[Any], extra: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` containing ``{in}`` for the values, in chunks (parameter limits)."""
        out: list[tuple[Any, ...]] = []
        values = list(dict.fromkeys(values))
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out += self._rows(sql.replace("{in}", marks), [*extra, *chunk])
        return out

    def _write(self) -> None:
        if not self.writable:
            raise OnlineStoreError("this is a read transaction; writes go through store.write()")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit: rolled back alone if the block raises (the transaction goes on)."""
        self._sp += 1
        name = f"sp{self._sp}"
        self._exec(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._exec(f"ROLLBACK TO SAVEPOINT {name}")
            self._exec(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            self._exec(f"RELEASE SAVEPOINT {name}")

    # -- events ----------------------------------------------------------------------------------
    def seen(self, message_ids: Sequence[str]) -> set[str]:
        rows = self._in("SELECT message_id FROM events WHERE message_id IN ({in})", message_ids)
        return {r[0] for r in rows}

    def insert_events(
        self, msgs: Sequence[Mapping[str, Any]], person_ids: Sequence[str]
    ) -> list[int | None]:
        """Append messages (``messageId``, ``type``, ``timestamp``, ``receivedAt`` required).
        Returns each one's sequence number, or None where the messageId was already stored."""
        self._write()
        out: list[int | None] = []
        for msg, pid in zip(msgs, person_ids, strict=True):
            cur = self._exec(
                "INSERT INTO events (message_id, person_id, type, ts, received_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING RETURNING seq",
                (
                    msg["messageId"],
                    pid,
                    msg["type"],
                    msg.get("timestamp") or msg["receivedAt"],
                    msg["receivedAt"],
                    _json(msg),
                ),
            )
            row = cur.fetchone()
            out.append(None if row is None else int(row[0]))
        return out

    def events_after(self, seq: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        """Stored events after ``seq`` in order: (seq, person_id, message)."""
        rows = self._rows(
            "SELECT seq, person_id, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [(int(s), p, _unjson(m)) for s, p, m in rows]

    def events_of(self, person_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT payload FROM events WHERE person_id = ? ORDER BY seq DESC LIMIT ?",
            (person_id, limit),
        )
        return [_unjson(r[0]) for r in rows]

    def person_events(self, person_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        """All stored events of one person in order: (seq, received_at, message)."""
        rows = self._rows(
            "SELECT seq, received_at, payload FROM events WHERE person_id = ? ORDER BY seq",
            (person_id,),
        )
        return [(int(s), r, _unjson(m)) for s, r, m in rows]

    def people(self) -> list[str]:
        """Every person with a stored event or a live document, in order."""
        rows = self._rows(
            "SELECT person_id FROM events UNION SELECT key FROM docs WHERE kind = 'person' "
            "ORDER BY 1"
        )
        return [r[0] for r in rows]

    def count(self, table: str) -> int:
        if table not in _TABLE_NAMES:
            raise ValueError(f"unknown online table {table!r}")
        return int(self._rows(f"SELECT COUNT(*) FROM {table}")[0][0])

    # -- identities ------------------------------------------------------------------------------
    def lookup(self, identifiers: Sequence[str]) -> dict[str, str]:
        rows = self._in(
            "SELECT identifier, person_id FROM identities WHERE identifier IN ({in})", identifiers
        )
        return {i: p for i, p in rows}

    def link(
        self, identifier: str, person_id: str, source: str = "live", now: datetime | None = None
    ) -> None:
        self._write()
        self._exec(
            "INSERT INTO identities (identifier, person_id, source, updated_at) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (identifier) DO UPDATE SET person_id = excluded.person_id, "
            "source = excluded.source, updated_at = excluded.updated_at",
            (identifier, person_id, source, ts_text(now or datetime.now(UTC))),
        )

    def identifiers_of(self, person_id: str) -> list[str]:
        rows = self._rows(
            "SELECT identifier FROM identities WHERE person_id = ? ORDER BY identifier",
            (person_id,),
        )
        return [r[0] for r in rows]

    def repoint(self, from_person: str, to_person: str) -> None:
        """Everything recorded for ``from_person`` now belongs to ``to_person`` (a merge). Their
        documents are the caller's to combine."""
        self._write()
        for table in ("identities", "events", "journey", "outbox", "decisions"):
            self._exec(
                f"UPDATE {table} SET person_id = ? WHERE person_id = ?", (to_person, from_person)
            )

    # -- documents -------------------------------------------------------------------------------
    def get_docs(self, kind: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = self._in("SELECT key, doc FROM docs WHERE kind = ? AND key IN ({in})", keys, (kind,))
        return {k: _unjson(d) for k, d in rows}

    def docs_of(self, key: str, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The documents of one key, by kind (those that exist), in one query."""
        marks = ",".join("?" * len(kinds))
        sql = f"SELECT kind, doc FROM docs WHERE key = ? AND kind IN ({marks})"
        return {k: _unjson(d) for k, d in self._rows(sql, (key, *kinds))}

    def put_docs(
        self, kind: str, docs: Mapping[str, Mapping[str, Any]], now: datetime | None = None
    ) -> None:
        self._write()
        at = ts_text(now or datetime.now(UTC))
        self._many(
            "INSERT INTO docs (kind, key, doc, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, "
            "updated_at = excluded.updated_at",
            [(kind, k, _json(d), at) for k, d in docs.items()],
        )

    def delete_docs(self, kind: str, keys: Sequence[str] | None = None) -> None:
        """Delete the documents ``keys`` of ``kind`` (all of that kind when ``keys`` is None)."""
        self._write()
        if keys is None:
            self._exec("DELETE FROM docs WHERE kind = ?", (kind,))
            return
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            self._exec(f"DELETE FROM docs WHERE kind = ? AND key IN ({marks})", (kind, *chunk))

    def all_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            k: _unjson(d)
            for k, d in self._rows("SELECT key, doc FROM docs WHERE kind = ?", (kind,))
        }

    # -- journey ---------------------------------------------------------------------------------
    def add_journey(
        self, person_id: str, ts: datetime, kind: str, detail: Mapping[str, Any]
    ) -> None:
        self._write()
        self._exec(
            "INSERT INTO journey (person_id, ts, kind, detail) VALUES (?, ?, ?, ?)",
            (person_id, ts_text(ts), kind, _json(detail)),
        )

    def journey(self, person_id: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT ts, kind, detail FROM journey WHERE person_id = ? "
            "ORDER BY ts DESC, id DESC LIMIT ?",
            (person_id, limit),
        )
        return [{"ts": t, "kind": k, "detail": _unjson(d)} for t, k, d in rows]

    # -- webhook outbox --------------------------------------------------------------------------
    def enqueue(self, person_id: str, kind: str, payload: Mapping[str, Any], now: datetime) -> int:
        self._write()
        at = ts_text(now)
        cur = self._exec(
            "INSERT INTO outbox (person_id, kind, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (person_id, kind, _json(payload), at, at),
        )
        return int(cur.fetchone()[0])

    def due(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT id, person_id, kind, payload, attempts, created_at FROM outbox "
            "WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (ts_text(now), limit),
        )
        return [
            {
                "id": int(i),
                "person_id": p,
                "kind": k,
                "payload": _unjson(d),
                "attempts": int(a),
                "created_at": c,
            }
            for i, p, k, d, a, c in rows
        ]

    def delivered(self, outbox_id: int) -> None:
        self._write()
        self._exec("DELETE FROM outbox WHERE id = ?", (outbox_id,))

    def failed(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        self._write()
        self._exec(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
            "WHERE id = ?",
            (error[:500], ts_text(next_attempt_at), outbox_id),
        )

    def dead(self, outbox_id: int, error: str, now: datetime | None = None) -> None:
        """Move an outbox row to ``dead_letters`` (counting this last failed attempt)."""
        self._write()
        self._exec(
            "INSERT INTO dead_letters (id, person_id, kind, payload, created_at, attempts, "
            "last_error, dead_at) SELECT id, person_id, kind, payload, created_at, attempts + 1, "
            "?, ? FROM outbox WHERE id = ?",
            (error[:500], ts_text(now or datetime.now(UTC)), outbox_id),
        )
        self._exec("DELETE FROM outbox WHERE id = ?", (outbox_id,))

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT id, person_id, kind, payload, created_at, attempts, last_error, dead_at "
            "FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
        keys = (
            "id",
            "person_id",
            "kind",
            "payload",
            "created_at",
            "attempts",
            "last_error",
            "dead_at",
        )
        return [{**dict(zip(keys, r, strict=True)), "payload": _unjson(r[3])} for r in rows]

    def retry_dead(self, now: datetime) -> int:
        """Put every dead letter back in the outbox for a new round of attempts."""
        self._write()
        n = self._exec(
            "INSERT INTO outbox (person_id, kind, payload, created_at, attempts, next_attempt_at, "
            "last_error) SELECT person_id, kind, payload, created_at, 0, ?, last_error "
            "FROM dead_letters",
            (ts_text(now),),
        ).rowcount
        self._exec("DELETE FROM dead_letters")
        return int(n)

    # -- decisions -------------------------------------------------------------------------------
    def log_decision(
        self, decision_id: str, person_id: str, ts: datetime, placement: str, doc: Mapping[str, Any]
    ) -> None:
        self._write()
        self._exec(
            "INSERT INTO decisions (decision_id, person_id, ts, placement, doc) "
            "VALUES (?, ?, ?, ?, ?)",
            (decision_id, person_id, ts_text(ts), placement, _json(doc)),
        )

    def get_decision(self, decision_id: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT person_id, ts, placement, doc FROM decisions WHERE decision_id = ?",
            (decision_id,),
        )
        if not rows:
            return None
        p, t, pl, d = rows[0]
        return {
            "decision_id": decision_id,
            "person_id": p,
            "ts": t,
            "placement": pl,
            "doc": _unjson(d),
        }

    def log_feedback(
        self, decision_id: str, item_id: str | None, kind: str, ts: datetime, doc: Mapping[str, Any]
    ) -> None:
        self._write()
        self._exec(
            "INSERT INTO feedback (decision_id, item_id, kind, ts, doc) VALUES (?, ?, ?, ?, ?)",
            (decision_id, item_id, kind, ts_text(ts), _json(doc)),
        )

    def feedback_kinds(self, decision_id: str, item_id: str | None) -> list[str]:
        """Kinds of feedback already recorded for one item of a decision (repeats add nothing)."""
        if item_id is None:
            sql = "SELECT kind FROM feedback WHERE decision_id = ? AND item_id IS NULL ORDER BY id"
            return [r[0] for r in self._rows(sql, (decision_id,))]
        sql = "SELECT kind FROM feedback WHERE decision_id = ? AND item_id = ? ORDER BY id"
        return [r[0] for r in self._rows(sql, (decision_id, item_id))]

    def feedback_of(self, decision_id: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT item_id, kind, ts, doc FROM feedback WHERE decision_id = ? ORDER BY id",
            (decision_id,),
        )
        return [{"item_id": i, "kind": k, "ts": t, "doc": _unjson(d)} for i, k, t, d in rows]

    def decision_log(self, placement: str | None = None) -> list[dict[str, Any]]:
        """Every logged decision (of one placement, or all), oldest first, each with the item
        feedback recorded on it (``feedback``: (item_id, kind) pairs); for off-policy
        evaluation (``segone.decisions.evaluate``)."""
        where, params = ("WHERE placement = ?", (placement,)) if placement else ("", ())
        rows = self._rows(
            "SELECT decision_id, ts, placement, doc FROM decisions "
            f"{where} ORDER BY ts, decision_id",
            params,
        )
        fb: dict[str, list[tuple[str, str]]] = {}
        for d, i, k in self._rows(
            "SELECT decision_id, item_id, kind FROM feedback WHERE item_id IS NOT NULL ORDER BY id"
        ):
            fb.setdefault(d, []).append((i, k))
        return [
            {
                "decision_id": d,
                "ts": t,
                "placement": pl,
                "doc": _unjson(doc),
                "feedback": fb.get(d, []),
            }
            for d, t, pl, doc in rows
        ]

    # -- bandit statistics -----------------------------------------------------------------------
    def get_stats(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        rows = self._in("SELECT key, successes, trials FROM stats WHERE key IN ({in})", keys)
        return {k: (float(s), float(t)) for k, s, t in rows}

    def add_stats(self, deltas: Mapping[str, tuple[float, float]]) -> None:
        self._write()
        self._many(
            "INSERT INTO stats (key, successes, trials) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET successes = stats.successes + excluded.successes, "
            "trials = stats.trials + excluded.trials",
            [(k, float(s), float(t)) for k, (s, t) in sorted(deltas.items())],
        )

    # -- meta, quarantine, erasure ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write()
        self._exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def quarantine(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep rejected messages with the reason (``reason``, ``message``, ``received_at``)."""
        self._write()
        self._many(
            "INSERT INTO quarantine (received_at, reason, message) VALUES (?, ?, ?)",
            [
                (
                    _when(r.get("received_at")),
                    str(r["reason"]),
                    r["message"] if isinstance(r["message"], str) else _json(r["message"]),
                )
                for r in rows
            ],
        )

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT id, received_at, reason, message FROM quarantine ORDER BY id LIMIT ?", (limit,)
        )
        return [{"id": int(i), "received_at": t, "reason": r, "message": m} for i, t, r, m in rows]

    def erase_person(self, person_id: str, *, request_warehouse: bool = True) -> dict[str, int]:
        """Delete one person from every online table (``erase_people`` without identifiers
        beyond theirs, quarantined messages matched by ``traces.Mentions`` with the default
        country code). Queues nothing: ``segone.identity.erase`` records and queues erasures."""
        from segone.identity.traces import Mentions

        nodes = self.identifiers_of(person_id)
        return self.erase_people([person_id], nodes, Mentions(nodes))

    def people_of(self, identifiers: Sequence[str]) -> set[str]:
        """The people holding any of ``identifiers`` (``"type:value"``, normalised)."""
        return set(self.lookup(identifiers).values())

    def erase_people(
        self,
        person_ids: Sequence[str],
        identifiers: Sequence[str],
        mentions: Any = None,
    ) -> dict[str, int]:
        """Delete people and every row carrying one of their ``identifiers`` from every online
        table: events, identities, documents (theirs and suppressions keyed by their
        identifiers), journey, outbox, dead letters, decisions (also those logged for them as
        an unknown identifier) and their feedback. ``mentions(text) -> bool`` says whether a
        quarantined message (raw text, no person id) is theirs; every quarantined message is
        read once for that (the quarantine holds rejected messages only, so it stays small)."""
        import hashlib

        self._write()
        people = sorted(set(person_ids))
        counts: dict[str, int] = {}
        unknown = [
            "unknown:" + hashlib.sha256(v.encode()).hexdigest()[:16]
            for i in identifiers
            for v in (i, i.split(":", 1)[-1])
        ]
        decisions = [
            r[0]
            for r in self._in(
                "SELECT decision_id FROM decisions WHERE person_id IN ({in})", [*people, *unknown]
            )
        ]
        n = 0
        for i in range(0, len(decisions), 500):
            chunk = decisions[i : i + 500]
            marks = ",".join("?" * len(chunk))
            n += self._exec(f"DELETE FROM feedback WHERE decision_id IN ({marks})", chunk).rowcount
        counts["feedback"] = n
        for table in ("events", "identities", "journey", "outbox", "dead_letters", "decisions"):
            counts[table] = self._delete_in(table, "person_id", people)
        counts["decisions"] += self._delete_in("decisions", "person_id", unknown)
        counts["identities"] += self._delete_in("identities", "identifier", list(identifiers))
        counts["docs"] = 0
        for kind in DOC_KINDS_OF_PERSON:
            counts["docs"] += self._delete_in("docs", "key", people, kind)
        counts["docs"] += self._delete_in("docs", "key", list(identifiers), "suppression")
        q = 0
        if mentions is not None:
            hit = [i for i, m in self._rows("SELECT id, message FROM quarantine") if mentions(m)]
            q = self._delete_in("quarantine", "id", hit)
        counts["quarantine"] = q
        return counts

    def _delete_in(self, table: str, column: str, values: Sequence[Any], kind: str = "") -> int:
        n = 0
        values = list(dict.fromkeys(values))
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"DELETE FROM {table} WHERE {column} IN ({marks})"
            if kind:
                sql += " AND kind = ?"
            n += self._exec(sql, (*chunk, *([kind] if kind else []))).rowcount
        return n

    # -- erased identifiers: salted hashes only ----------------------------------------------------
    def erasure_salts(self) -> list[str]:
        """The salts erased identifiers are hashed with here (usually one; see
        ``segone.identity.erase``)."""
        raw = self.get_meta("erasure_salts")
        return list(_unjson(raw)) if raw else []

    def add_erasure_salts(self, salts: Sequence[str]) -> list[str]:
        have = self.erasure_salts()
        new = [s for s in salts if s not in have]
        if new:
            self.set_meta("erasure_salts", _json([*have, *new]))
        return [*have, *new]

    def add_erased(self, hashes: Iterable[str], erasure_id: str) -> int:
        self._write()
        before = self.count("erased_identifiers")
        self._many(
            "INSERT INTO erased_identifiers (node_hash, erasure_id) VALUES (?, ?) "
            "ON CONFLICT (node_hash) DO NOTHING",
            [(h, erasure_id) for h in dict.fromkeys(hashes)],
        )
        return self.count("erased_identifiers") - before

    def erased_among(self, hashes: Sequence[str]) -> set[str]:
        rows = self._in(
            "SELECT node_hash FROM erased_identifiers WHERE node_hash IN ({in})", hashes
        )
        return {r[0] for r in rows}

    def remove_erased(self, hashes: Sequence[str]) -> int:
        """Readmit: these hashes are no longer refused (``segone readmit``)."""
        self._write()
        return self._delete_in("erased_identifiers", "node_hash", list(hashes))

    def any_erased(self) -> bool:
        return bool(self._rows("SELECT 1 FROM erased_identifiers LIMIT 1"))

    def erased_hashes(self) -> list[tuple[str, str]]:
        return [
            (h, e) for h, e in self._rows("SELECT node_hash, erasure_id FROM erased_identifiers")
        ]

    def log_erasure(
        self, erasure_id: str, at: datetime, route: str, people: int, rows: Mapping[str, int]
    ) -> None:
        """The audit line of an erasure: when, through which route, how many rows; no personal
        data. An erasure logged again (the warehouse's part, later) adds its counts."""
        self._write()
        got = self._rows(
            "SELECT rows_removed, people FROM erasure_log WHERE erasure_id = ?", (erasure_id,)
        )
        if got:
            merged = dict(_unjson(got[0][0]))
            for k, v in rows.items():
                merged[k] = merged.get(k, 0) + int(v)
            self._exec(
                "UPDATE erasure_log SET rows_removed = ?, people = ? WHERE erasure_id = ?",
                (_json(merged), max(int(got[0][1]), people), erasure_id),
            )
            return
        self._exec(
            "INSERT INTO erasure_log (erasure_id, at, route, people, rows_removed) "
            "VALUES (?, ?, ?, ?, ?)",
            (erasure_id, ts_text(at), route, people, _json(dict(rows))),
        )

    def erasure_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT erasure_id, at, route, people, rows_removed FROM erasure_log "
            "ORDER BY at DESC LIMIT ?",
            (limit,),
        )
        return [
            {"erasure_id": e, "at": a, "route": r, "people": int(p), "rows_removed": _unjson(d)}
            for e, a, r, p, d in rows
        ]

    def count_refused(self, n: int) -> None:
        """Messages of erased people dropped by the API (a counter; nothing of them is kept)."""
        if n:
            self.set_meta("refused_erased", str(int(self.get_meta("refused_erased") or 0) + n))

    def queue_erasure(self, hashes: Sequence[str], now: datetime) -> None:
        """Erased identifiers' hashes (``sha256:<hex>``) for the next ``segone build`` to erase
        from the warehouse: the server never holds the warehouse, and never keeps plain text."""
        self._write()
        self._many(
            "INSERT INTO erasures (identifier, requested_at) VALUES (?, ?)",
            [("sha256:" + h, ts_text(now)) for h in hashes],
        )

    def erasures(self) -> list[tuple[int, str]]:
        return [
            (int(i), v) for i, v in self._rows("SELECT id, identifier FROM erasures ORDER BY id")
        ]

    def erasures_done(self, ids: Sequence[int]) -> None:
        self._write()
        for i in ids:
            self._exec("DELETE FROM erasures WHERE id = ?", (i,))


_TABLE_NAMES = [
    "meta",
    "events",
    "identities",
    "docs",
    "journey",
    "outbox",
    "dead_letters",
    "decisions",
    "feedback",
    "stats",
    "quarantine",
    "erasures",
    "erased_identifiers",
    "erasure_log",
]


class OnlineStore:
    """The online database: ``OnlineStore.open(url)``, then ``write()`` / ``read()``."""

    def __init__(self, url: str, dialect: _Dialect, connect: Any, *, readers: int = 8) -> None:
        self.url = url
        self.dialect = dialect
        self._connect = connect
        self._writer: Any = None
        self._write_lock = threading.Lock()
        self._readers: queue.LifoQueue[Any] = queue.LifoQueue()
        self._max_readers = readers
        self._opened = 0
        self._open_lock = threading.Lock()
        self._all: list[Any] = []
        self.path: Path | None = None  # the SQLite file
        self._deferred = False  # ``defer_sync`` was called
        self._wal_fd: int | None = None
        self._checkpointer: Any = None

    @classmethod
    def open(cls, url: str, *, root: Path | None = None) -> OnlineStore:
        """Open (and create the tables of) the store at ``url``; relative SQLite paths are taken
        from ``root`` (the project directory) when given."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("", "sqlite"):
            raw = url[len("sqlite:///") :] if scheme == "sqlite" else url
            if not raw:
                raise ConfigError(
                    f"online store URL {url!r} names no file (sqlite:///path/online.db)"
                )
            path = Path(raw)
            if not path.is_absolute() and root is not None:
                path = root / path
            path.parent.mkdir(parents=True, exist_ok=True)
            store = cls(url, SQLITE, lambda: _sqlite_connect(path))
            store.path = path
        elif scheme in ("postgresql", "postgres"):
            query = parse_qs(parts.query)
            schema = (query.pop("schema", [""]) or [""])[0]
            clean = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
            store = cls(url, POSTGRES, lambda: _pg_connect(clean, schema))
        else:
            raise ConfigError(
                f"online store URL {url!r}: use sqlite:///path/online.db or postgresql://user@host/db"
            )
        store.ensure_schema()
        return store

    @staticmethod
    def _defer(conn: Any) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")
        # checkpoints leave the COMMIT path too: ``checkpoint()`` runs them beside it, and
        # ``checkpoint(on_writer=True)`` between two groups lets the WAL start over
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")

    def _new(self) -> Any:
        conn = self._connect()
        with self._open_lock:
            self._all.append(conn)
        return conn

    def defer_sync(self) -> None:
        """SQLite: from now on the writer's COMMIT returns before the WAL is on disk, and
        ``sync()`` puts it there. A caller that acknowledges a transaction only after a
        ``sync()`` begun after its COMMIT keeps ``synchronous=FULL``'s durability, and can do
        the next transaction's work while the disk flushes (``segone.online.writer`` does).

        Why that holds: with ``synchronous=NORMAL`` SQLite still writes each committed
        transaction's frames to the WAL at COMMIT (only the fsync is skipped); frames after the
        last synced commit frame fail the WAL's cumulative checksum at recovery and are
        ignored; and the WAL is only overwritten from its start after a checkpoint that SQLite
        syncs into the database file. The WAL file is never replaced while a connection is
        open (``sync`` checks), so this process's descriptor on it stays the right one."""
        if self.dialect is not SQLITE or self.path is None:
            raise OnlineStoreError("deferred sync is for SQLite stores")
        with self.write():  # the writer connection exists (and, since the tables, the WAL)
            pass
        with self._write_lock:
            self._deferred = True
            self._defer(self._writer)
        self._wal_fd = os.open(self._wal_path(), os.O_RDONLY | os.O_CLOEXEC)

    def _wal_path(self) -> str:
        return str(self.path) + "-wal"

    def sync(self) -> None:
        """Put every transaction committed so far on disk (after ``defer_sync``)."""
        if self._wal_fd is None:
            return
        try:
            if os.fstat(self._wal_fd).st_ino != os.stat(self._wal_path()).st_ino:
                raise OnlineStoreError("the online store's WAL file was replaced")
            os.fdatasync(self._wal_fd)
        except OSError as exc:
            raise OnlineStoreError(f"the online store cannot sync: {type(exc).__name__}") from exc

    def checkpoint(self, *, on_writer: bool = False) -> None:
        """Copy what the WAL holds into the database file (SQLite; PASSIVE: it never waits
        for a reader), on a connection of its own (never blocking the writer), which syncs the
        WAL before and the database file after.

        A checkpoint beside a writer that never pauses never finishes, and SQLite starts the
        WAL over only when a write begins on a WAL that is entirely in the database file: so
        now and then (``wal_size() > WAL_LIMIT_BYTES``) the writer's own connection runs one
        between two of its transactions, copying what the other one has not yet."""
        if self.dialect is not SQLITE:
            return
        if on_writer:
            with self._write_lock, _unavailable():
                if self._writer is not None:
                    self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return
        conn = self._checkpointer
        if conn is None:
            conn = self._checkpointer = self._new()
        with _unavailable():
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def scrub(self) -> bool:
        """After an erasure: copy the WAL into the database file and truncate it, so deleted
        rows' old page images leave the WAL too (SQLite: ``secure_delete`` has already zeroed
        them in the pages). True when done; False when a reader kept the WAL from being reset
        (its frames are then overwritten as the WAL starts over, after the next checkpoint).
        PostgreSQL keeps dead tuples until ``VACUUM`` (see docs/server.md)."""
        if self.dialect is not SQLITE:
            return False
        conn = self._new()
        try:
            with _unavailable():
                # a TRUNCATE checkpoint holds off writers while it waits for readers: briefly
                conn.execute("PRAGMA busy_timeout=1000")
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return not busy
        finally:
            with self._open_lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()

    def wal_size(self) -> int:
        """Bytes in the SQLite WAL file (0 if there is none)."""
        try:
            return os.stat(self._wal_path()).st_size if self.path is not None else 0
        except OSError:
            return 0

    def ensure_schema(self) -> None:
        with self.write() as tx:
            for stmt in _TABLES.format(serial=self.dialect.serial).split(";"):
                if stmt.strip():
                    tx._exec(stmt)
            if tx.get_meta("schema_version") is None:
                tx.set_meta("schema_version", SCHEMA_VERSION)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """The writer's transaction: committed (durably) when the block ends, rolled back if it
        raises. Writers take turns; the Engine batches requests into one of these."""
        with self._write_lock:
            with _unavailable():
                if self._writer is None:
                    self._writer = self._new()
                    if self.dialect is SQLITE:  # the hot pages of a large store stay in memory
                        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
                        if self._deferred:  # a new connection after a failed COMMIT
                            self._defer(self._writer)
                conn = self._writer
                if self.dialect is SQLITE:
                    conn.execute("BEGIN IMMEDIATE")
                else:
                    # Writers take turns across servers too: several `segone serve` on one
                    # PostgreSQL each read and rewrite a person's live document, and under READ
                    # COMMITTED two of them would lose one another's update.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            try:
                yield Tx(conn, self.dialect, writable=True)
            except BaseException:
                with suppress(Exception):
                    conn.rollback()
                if _broken(conn):  # reconnect next time (e.g. PostgreSQL restarted)
                    self._writer = None
                raise
            else:
                try:
                    with _unavailable():
                        conn.commit()
                except OnlineStoreError:
                    # whatever state the failed COMMIT left (a transaction still open, holding
                    # the write lock) goes with the connection; the next write opens a new one
                    self._writer = None
                    with suppress(Exception):
                        conn.rollback()
                    with suppress(Exception):
                        conn.close()
                    raise

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot on a pooled connection."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            with _unavailable():
                conn = self._new()
        if _broken(conn):
            with _unavailable():
                conn = self._new()
        try:
            if self.dialect is SQLITE:
                conn.execute("BEGIN")
            yield Tx(conn, self.dialect, writable=False)
        finally:
            try:
                conn.rollback()
            finally:
                if self._readers.qsize() < self._max_readers:
                    self._readers.put(conn)
                else:
                    conn.close()

    def close(self) -> None:
        with self._open_lock:
            conns, self._all = self._all, []
        for c in conns:
            with suppress(Exception):
                c.close()
        self._writer = None
        self._checkpointer = None
        self._readers = queue.LifoQueue()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: PostgreSQL advisory lock held by each write transaction (any fixed 64-bit key)
WRITER_LOCK_KEY = 0x5E60E_0001


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        import psycopg

        errors.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(errors)


@contextmanager
def _unavailable() -> Iterator[None]:
    """The database being unreachable (or locked past the timeout) is an OnlineStoreError, which
    the API answers with 503: the client may retry; nothing was acknowledged."""
    try:
        yield
    except _driver_errors() as exc:
        raise OnlineStoreError(f"the online store is unavailable: {type(exc).__name__}") from exc


def _broken(conn: Any) -> bool:
    """A PostgreSQL connection that the server closed (sqlite connections do not break)."""
    return bool(getattr(conn, "closed", False))


WRITER_CACHE_KIB = 64 * 1024  # the SQLite writer's page cache (SQLite's default is 2 MiB)
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # past this, the writer lets the WAL start over


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it returns, so an acknowledged event survives a crash of
    # the machine, not only of the process
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    # statement journals (one per savepoint'ed statement) in memory, not as files in /var/tmp
    conn.execute("PRAGMA temp_store=MEMORY")
    # a deleted row's bytes are overwritten with zeros, not left in free space (erasure)
    conn.execute("PRAGMA secure_delete=ON")
    # isolation_level=None leaves transactions to us; sqlite3's commit()/rollback() still work
    return conn


def _pg_connect(url: str, schema: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise OnlineStoreError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from exc
    try:
        conn = psycopg.connect(url, autocommit=False, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise OnlineStoreError(f"cannot connect to the online store's PostgreSQL: {exc}") from None
    if schema:
        if not schema.replace("_", "").isalnum():
            raise ConfigError(f"online store schema {schema!r}: letters, digits and _ only")
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.commit()
    return conn
