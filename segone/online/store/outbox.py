"""``tx.outbox``: webhooks waiting to be sent, retried with back-off, and dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from segone.online.store.records import DeadLetter, FailingDelivery, OutboxEntry
from segone.online.store.sql import Part, from_json, to_json, ts_text


class Outbox(Part):
    __slots__ = ()

    def enqueue(self, person_id: str, kind: str, payload: Mapping[str, Any], now: datetime) -> int:
        self._sql.require_write()
        at = ts_text(now)
        cur = self._sql.exec(
            "INSERT INTO outbox (person_id, kind, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (person_id, kind, to_json(payload), at, at),
        )
        return int(cur.fetchone()[0])

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        rows = self._sql.rows(
            "SELECT id, person_id, kind, payload, attempts, created_at FROM outbox "
            "WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (ts_text(now), limit),
        )
        return [OutboxEntry(int(i), p, k, from_json(d), int(a), c) for i, p, k, d, a, c in rows]

    def delivered(self, outbox_id: int) -> None:
        self._sql.require_write()
        self._sql.exec("DELETE FROM outbox WHERE id = ?", (outbox_id,))

    def failed(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        self._sql.require_write()
        self._sql.exec(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
            "WHERE id = ?",
            (error[:500], ts_text(next_attempt_at), outbox_id),
        )

    def dead(self, outbox_id: int, error: str, now: datetime | None = None) -> None:
        """Move an outbox row to ``dead_letters`` (counting this last failed attempt)."""
        self._sql.require_write()
        self._sql.exec(
            "INSERT INTO dead_letters (id, person_id, kind, payload, created_at, attempts, "
            "last_error, dead_at) SELECT id, person_id, kind, payload, created_at, attempts + 1, "
            "?, ? FROM outbox WHERE id = ?",
            (error[:500], ts_text(now or datetime.now(UTC)), outbox_id),
        )
        self._sql.exec("DELETE FROM outbox WHERE id = ?", (outbox_id,))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._sql.rows(
            "SELECT id, person_id, kind, payload, created_at, attempts, last_error, dead_at "
            "FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            DeadLetter(int(i), p, k, from_json(d), c, int(a), e, t)
            for i, p, k, d, c, a, e, t in rows
        ]

    def retry_dead(self, now: datetime) -> int:
        """Put every dead letter back in the outbox for a new round of attempts."""
        self._sql.require_write()
        n = self._sql.exec(
            "INSERT INTO outbox (person_id, kind, payload, created_at, attempts, next_attempt_at, "
            "last_error) SELECT person_id, kind, payload, created_at, 0, ?, last_error "
            "FROM dead_letters",
            (ts_text(now),),
        ).rowcount
        self._sql.exec("DELETE FROM dead_letters")
        return int(n)

    def backlog(self) -> tuple[int, int]:
        """(webhooks waiting, of which already failed at least once)."""
        ((n, retrying),) = self._sql.rows(
            "SELECT count(*), sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) FROM outbox"
        )
        return int(n or 0), int(retrying or 0)

    def failing(self, limit: int = 20) -> list[FailingDelivery]:
        """Webhooks that failed and wait for their next attempt, soonest first."""
        rows = self._sql.rows(
            "SELECT kind, attempts, last_error, next_attempt_at FROM outbox "
            "WHERE attempts > 0 ORDER BY next_attempt_at LIMIT ?",
            (limit,),
        )
        return [FailingDelivery(k, int(a), e, n) for k, a, e, n in rows]
