"""``tx.decisions`` (logged decisions and the feedback on them, for off-policy evaluation) and
``tx.stats`` (the bandit's success/trial counts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from segone.online.store.records import Decision, Feedback, LoggedDecision
from segone.online.store.sql import Part, from_json, to_json, ts_text


class Decisions(Part):
    __slots__ = ()

    def log(
        self, decision_id: str, person_id: str, ts: datetime, placement: str, doc: Mapping[str, Any]
    ) -> None:
        self._sql.require_write()
        self._sql.exec(
            "INSERT INTO decisions (decision_id, person_id, ts, placement, doc) "
            "VALUES (?, ?, ?, ?, ?)",
            (decision_id, person_id, ts_text(ts), placement, to_json(doc)),
        )

    def get(self, decision_id: str) -> Decision | None:
        rows = self._sql.rows(
            "SELECT person_id, ts, placement, doc FROM decisions WHERE decision_id = ?",
            (decision_id,),
        )
        if not rows:
            return None
        p, t, pl, d = rows[0]
        return Decision(decision_id, p, t, pl, from_json(d))

    def log_feedback(
        self, decision_id: str, item_id: str | None, kind: str, ts: datetime, doc: Mapping[str, Any]
    ) -> None:
        self._sql.require_write()
        self._sql.exec(
            "INSERT INTO feedback (decision_id, item_id, kind, ts, doc) VALUES (?, ?, ?, ?, ?)",
            (decision_id, item_id, kind, ts_text(ts), to_json(doc)),
        )

    def feedback_kinds(self, decision_id: str, item_id: str | None) -> list[str]:
        """Kinds of feedback already recorded for one item of a decision (repeats add nothing)."""
        if item_id is None:
            sql = "SELECT kind FROM feedback WHERE decision_id = ? AND item_id IS NULL ORDER BY id"
            return [r[0] for r in self._sql.rows(sql, (decision_id,))]
        sql = "SELECT kind FROM feedback WHERE decision_id = ? AND item_id = ? ORDER BY id"
        return [r[0] for r in self._sql.rows(sql, (decision_id, item_id))]

    def feedback_of(self, decision_id: str) -> list[Feedback]:
        rows = self._sql.rows(
            "SELECT item_id, kind, ts, doc FROM feedback WHERE decision_id = ? ORDER BY id",
            (decision_id,),
        )
        return [Feedback(i, k, t, from_json(d)) for i, k, t, d in rows]

    def history(self, placement: str | None = None) -> list[LoggedDecision]:
        """Every logged decision (of one placement, or all), oldest first, each with the item
        feedback recorded on it; for off-policy evaluation (``segone.decisions.evaluate``)."""
        where, params = ("WHERE placement = ?", (placement,)) if placement else ("", ())
        rows = self._sql.rows(
            "SELECT decision_id, ts, placement, doc FROM decisions "
            f"{where} ORDER BY ts, decision_id",
            params,
        )
        fb: dict[str, list[tuple[str, str]]] = {}
        for d, i, k in self._sql.rows(
            "SELECT decision_id, item_id, kind FROM feedback WHERE item_id IS NOT NULL ORDER BY id"
        ):
            fb.setdefault(d, []).append((i, k))
        return [LoggedDecision(d, t, pl, from_json(doc), fb.get(d, [])) for d, t, pl, doc in rows]

    def count_since(self, since: datetime) -> int:
        """How many decisions were logged at or after ``since``."""
        return self._sql.one("SELECT count(*) FROM decisions WHERE ts >= ?", (ts_text(since),))


class Stats(Part):
    __slots__ = ()

    def get(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        """(successes, trials) per key that has any."""
        rows = self._sql.rows_in(
            "SELECT key, successes, trials FROM stats WHERE key IN ({in})", keys
        )
        return {k: (float(s), float(t)) for k, s, t in rows}

    def add(self, deltas: Mapping[str, tuple[float, float]]) -> None:
        self._sql.require_write()
        self._sql.many(
            "INSERT INTO stats (key, successes, trials) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET successes = stats.successes + excluded.successes, "
            "trials = stats.trials + excluded.trials",
            [(k, float(s), float(t)) for k, (s, t) in sorted(deltas.items())],
        )
