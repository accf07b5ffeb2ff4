"""``tx.events`` (the durable event log) and ``tx.journey`` (what happened to a person)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from segone.online.store.records import JourneyEntry, JourneyStep, PersonEvent, StoredEvent
from segone.online.store.sql import Part, from_json, to_json, ts_text


class Events(Part):
    __slots__ = ()

    def seen(self, message_ids: Sequence[str]) -> set[str]:
        rows = self._sql.rows_in(
            "SELECT message_id FROM events WHERE message_id IN ({in})", message_ids
        )
        return {r[0] for r in rows}

    def insert(
        self, msgs: Sequence[Mapping[str, Any]], person_ids: Sequence[str]
    ) -> list[int | None]:
        """Append messages (``messageId``, ``type``, ``timestamp``, ``receivedAt`` required).
        Returns each one's sequence number, or None where the messageId was already stored."""
        self._sql.require_write()
        out: list[int | None] = []
        for msg, pid in zip(msgs, person_ids, strict=True):
            cur = self._sql.exec(
                "INSERT INTO events (message_id, person_id, type, ts, received_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING RETURNING seq",
                (
                    msg["messageId"],
                    pid,
                    msg["type"],
                    msg.get("timestamp") or msg["receivedAt"],
                    msg["receivedAt"],
                    to_json(msg),
                ),
            )
            row = cur.fetchone()
            out.append(None if row is None else int(row[0]))
        return out

    def after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Stored events after ``seq`` in order."""
        rows = self._sql.rows(
            "SELECT seq, person_id, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [StoredEvent(int(s), p, from_json(m)) for s, p, m in rows]

    def recent(self, person_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """One person's latest messages, newest first."""
        rows = self._sql.rows(
            "SELECT payload FROM events WHERE person_id = ? ORDER BY seq DESC LIMIT ?",
            (person_id, limit),
        )
        return [from_json(r[0]) for r in rows]

    def of_person(self, person_id: str) -> list[PersonEvent]:
        """All stored events of one person in order."""
        rows = self._sql.rows(
            "SELECT seq, received_at, payload FROM events WHERE person_id = ? ORDER BY seq",
            (person_id,),
        )
        return [PersonEvent(int(s), r, from_json(m)) for s, r, m in rows]

    def people(self) -> list[str]:
        """Every person with a stored event or a live document, in order."""
        rows = self._sql.rows(
            "SELECT person_id FROM events UNION SELECT key FROM docs WHERE kind = 'person' "
            "ORDER BY 1"
        )
        return [r[0] for r in rows]

    def received_since(self, since: datetime) -> int:
        """How many events arrived at or after ``since``."""
        return self._sql.one(
            "SELECT count(*) FROM events WHERE received_at >= ?", (ts_text(since),)
        )

    def per_minute(self, since: datetime) -> dict[str, int]:
        """Events received per minute since ``since``, keyed ``YYYY-MM-DDTHH:MM`` (UTC)."""
        rows = self._sql.rows(
            "SELECT substr(received_at, 1, 16) AS m, count(*) FROM events "
            "WHERE received_at >= ? GROUP BY m ORDER BY m",
            (ts_text(since),),
        )
        return {str(m): int(n) for m, n in rows}


class Journey(Part):
    __slots__ = ()

    def add(self, person_id: str, ts: datetime, kind: str, detail: Mapping[str, Any]) -> None:
        self._sql.require_write()
        self._sql.exec(
            "INSERT INTO journey (person_id, ts, kind, detail) VALUES (?, ?, ?, ?)",
            (person_id, ts_text(ts), kind, to_json(detail)),
        )

    def of(self, person_id: str, limit: int = 50) -> list[JourneyEntry]:
        """A person's journey, newest first."""
        rows = self._sql.rows(
            "SELECT ts, kind, detail FROM journey WHERE person_id = ? "
            "ORDER BY ts DESC, id DESC LIMIT ?",
            (person_id, limit),
        )
        return [JourneyEntry(t, k, from_json(d)) for t, k, d in rows]

    def after(self, journey_id: int, limit: int) -> list[JourneyStep]:
        """Every person's journey entries after ``journey_id``, in order: what campaigns'
        triggered arms follow (``segone.campaigns.triggers``)."""
        rows = self._sql.rows(
            "SELECT id, person_id, ts, kind, detail FROM journey WHERE id > ? ORDER BY id LIMIT ?",
            (journey_id, limit),
        )
        return [JourneyStep(int(i), p, t, k, from_json(d)) for i, p, t, k, d in rows]
