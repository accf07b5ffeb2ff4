"""What both engines of the online store share: the tables, the two dialects, and ``Sql``, the
one transaction's connection that every part of ``Tx`` runs its statements through.

SQLite >= 3.35 and PostgreSQL agree on ``ON CONFLICT``, ``RETURNING`` and savepoints, so every
statement is written once, with ``?`` placeholders; ``_Dialect`` holds the few differences
(the placeholder, the auto-increment column).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from segone.exceptions import OnlineStoreError

SCHEMA_VERSION = "1"
DOC_KINDS_OF_PERSON = ("person", "published", "channel")
CHUNK = 500  # values per ``IN (...)``: below SQLite's and psycopg's parameter limits


def ts_text(ts: datetime) -> str:
    """UTC ISO-8601 text with a fixed width, so text order is time order in both engines."""
    if ts.tzinfo is None:
        raise ValueError("online store timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def when_text(v: Any) -> str:
    """A timestamp given as a datetime or text (now when missing), as stored."""
    if isinstance(v, datetime):
        return ts_text(v)
    return str(v) if v else ts_text(datetime.now(UTC))


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def to_json(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def from_json(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)


TABLES = """
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

TABLE_NAMES = (
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
)


@dataclass(frozen=True)
class _Dialect:
    name: str
    serial: str
    param: str

    def sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", self.param)


SQLITE = _Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "?")
POSTGRES = _Dialect("postgresql", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "%s")


class Sql:
    """One transaction's connection in one dialect: the parts of ``Tx`` share it."""

    __slots__ = ("_conn", "_d", "writable")

    def __init__(self, conn: Any, dialect: _Dialect, *, writable: bool) -> None:
        self._conn = conn
        self._d = dialect
        self.writable = writable

    def exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._conn.cursor()
        cur.execute(self._d.sql(sql), tuple(params))
        return cur

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._conn.cursor().executemany(self._d.sql(sql), rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.exec(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """The single number a ``SELECT count(*) ...`` answers (0 for NULL)."""
        return int(self.rows(sql, params)[0][0] or 0)

    def rows_in(
        self, sql: str, values: Sequence[Any], extra: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` containing ``{in}`` for the values, in chunks (parameter limits)."""
        out: list[tuple[Any, ...]] = []
        values = list(dict.fromkeys(values))
        for i in range(0, len(values), CHUNK):
            chunk = values[i : i + CHUNK]
            marks = ",".join("?" * len(chunk))
            out += self.rows(sql.replace("{in}", marks), [*extra, *chunk])
        return out

    def delete_in(self, table: str, column: str, values: Sequence[Any], kind: str = "") -> int:
        """Delete the rows of ``table`` whose ``column`` is one of ``values`` (and, when given,
        whose ``kind`` is ``kind``); returns how many."""
        n = 0
        values = list(dict.fromkeys(values))
        for i in range(0, len(values), CHUNK):
            chunk = values[i : i + CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"DELETE FROM {table} WHERE {column} IN ({marks})"
            if kind:
                sql += " AND kind = ?"
            n += self.exec(sql, (*chunk, *([kind] if kind else []))).rowcount
        return n

    def count(self, table: str) -> int:
        if table not in TABLE_NAMES:
            raise ValueError(f"unknown online table {table!r}")
        return self.one(f"SELECT COUNT(*) FROM {table}")

    def require_write(self) -> None:
        if not self.writable:
            raise OnlineStoreError("this is a read transaction; writes go through store.write()")


class Part:
    """A part of ``Tx`` owning one concern (its tables); all parts share one ``Sql``."""

    __slots__ = ("_sql",)

    def __init__(self, sql: Sql) -> None:
        self._sql = sql
