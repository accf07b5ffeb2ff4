"""What each destination last received, per list, so a sync sends only adds and removes.

One SQLite file (``<state_dir>/destinations.sqlite``) holds, per (destination, list):

* ``synced``: every member the destination holds now — a key (the customer id), a digest of
  what was sent (a changed e-mail or field re-sends the person) and a removal token (what the
  destination needs to remove them later: a Mailchimp subscriber hash, Meta/Google hashes, a
  customer id). A row is written only after the destination accepted its batch, so a failed or
  interrupted sync is simply resumed by the next one.
* ``lists``: an epoch that grows when a sync completes. Request ids are derived from
  (destination, list, epoch, operation, batch content): a retry, or a re-run after a crash,
  sends the same id (the receiver de-duplicates); a later sync of the same content is a new
  request.
* ``sent``: one row per message sent (SMS, e-mail) per list, so a re-run never messages a person
  twice.

SQLite rather than the warehouse: the state is tiny, written batch by batch during a sync, and
must survive the warehouse being rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

STATE_FILE = "destinations.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS synced (
    destination TEXT NOT NULL, list_id TEXT NOT NULL, key TEXT NOT NULL,
    digest TEXT NOT NULL, token TEXT NOT NULL, synced_at TEXT NOT NULL,
    PRIMARY KEY (destination, list_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (
    destination TEXT NOT NULL, list_id TEXT NOT NULL, epoch INTEGER NOT NULL,
    last_sync_at TEXT, PRIMARY KEY (destination, list_id)
);
CREATE TABLE IF NOT EXISTS sent (
    channel TEXT NOT NULL, list_id TEXT NOT NULL, key TEXT NOT NULL, sent_at TEXT NOT NULL,
    PRIMARY KEY (channel, list_id, key)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Synced:
    """What a destination holds for one member: the digest sent and how to remove it."""

    digest: str
    token: str


def digest(payload: Any) -> str:
    """A stable hash of a JSON-able payload (sorted keys), used for change detection and ids."""
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SyncState:
    """The incremental sync state of every destination of one project (see the module doc)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / STATE_FILE
        # one short-lived connection per call: syncs may run from worker threads
        with self._connect() as db:
            # WAL: a sync writing batch by batch does not block a report reading the state
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
        try:
            with db:
                yield db
        finally:
            db.close()

    def load(self, destination: str, list_id: str) -> dict[str, Synced]:
        """Every member ``destination`` holds in ``list_id``, by key."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, digest, token FROM synced WHERE destination = ? AND list_id = ?",
                (destination, list_id),
            ).fetchall()
        return {k: Synced(d, t) for k, d, t in rows}

    def epoch(self, destination: str, list_id: str) -> int:
        """How many syncs of this list completed (part of every request id)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT epoch FROM lists WHERE destination = ? AND list_id = ?",
                (destination, list_id),
            ).fetchone()
        return int(row[0]) if row else 0

    def added(self, destination: str, list_id: str, items: Iterable[tuple[str, Synced]]) -> None:
        """Record members the destination accepted (after their batch succeeded)."""
        stamp = _now()
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO synced VALUES (?, ?, ?, ?, ?, ?)",
                [(destination, list_id, k, s.digest, s.token, stamp) for k, s in items],
            )

    def removed(self, destination: str, list_id: str, keys: Iterable[str]) -> None:
        """Forget members the destination removed (their removal token goes with them)."""
        with self._connect() as db:
            db.executemany(
                "DELETE FROM synced WHERE destination = ? AND list_id = ? AND key = ?",
                [(destination, list_id, k) for k in keys],
            )

    def completed(self, destination: str, list_id: str) -> None:
        """A sync finished without failures: the next one gets new request ids."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO lists VALUES (?, ?, 1, ?) ON CONFLICT (destination, list_id) "
                "DO UPDATE SET epoch = epoch + 1, last_sync_at = excluded.last_sync_at",
                (destination, list_id, _now()),
            )

    def was_sent(self, channel: str, list_id: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` already got a message on ``channel`` for ``list_id``."""
        wanted = list(keys)
        found: set[str] = set()
        with self._connect() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key FROM sent WHERE channel = ? AND list_id = ? AND key IN ({marks})"
                found.update(r[0] for r in db.execute(sql, (channel, list_id, *chunk)))
        return found

    def mark_sent(self, channel: str, list_id: str, keys: Iterable[str]) -> None:
        stamp = _now()
        with self._connect() as db:
            db.executemany(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?)",
                [(channel, list_id, k, stamp) for k in keys],
            )


def request_id(destination: str, list_id: str, epoch: int, op: str, body: Any) -> str:
    """The idempotency key of one batch: equal for a retry or a resumed sync of the same batch."""
    return digest([destination, list_id, epoch, op, body])[:32]


# --- retries -------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter; ``Retry-After`` (seconds or a date) wins when longer."""

    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError("max_attempts must be >= 1 and back-off seconds >= 0")

    def delay(self, attempt: int, retry_after: str | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
        wait = base * rng.uniform(0.5, 1.5)
        told = parse_retry_after(retry_after)
        if told is not None:
            wait = max(wait, min(told, self.max_backoff_seconds))
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retrying(
    attempt: Callable[[], tuple[int | None, Mapping[str, str], str | None]],
    policy: RetryPolicy,
    *,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int | None, int, str | None]:
    """Run ``attempt`` until it succeeds, fails for good, or attempts run out.

    ``attempt`` returns (status or None for a transport error, response headers, error label).
    A 2xx ends it; 429, 5xx and transport errors are retried; any other status is final.
    Returns (last status, retries made, error label or None).
    """
    retries = 0
    status: int | None = None
    error: str | None = None
    for k in range(policy.max_attempts):
        status, headers, error = attempt()
        if status is not None and 200 <= status < 300:
            return status, retries, None
        if status is not None and status not in RETRY_STATUSES:
            return status, retries, error or f"HTTP {status}"
        if k + 1 < policy.max_attempts:
            retries += 1
            sleep(policy.delay(k, headers.get("retry-after"), rng))
    return status, retries, error or (f"HTTP {status}" if status else "transport error")
