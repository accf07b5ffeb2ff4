"""``tx.erasure``: deleting people from every online table, the salted hashes of erased
identifiers (refused from then on), the queue of erasures for the warehouse, and the audit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from segone.online.store.identity import Identity
from segone.online.store.meta import Meta
from segone.online.store.records import ErasureLogEntry
from segone.online.store.sql import (
    CHUNK,
    DOC_KINDS_OF_PERSON,
    Part,
    Sql,
    from_json,
    to_json,
    ts_text,
)


class Erasure(Part):
    __slots__ = ("_identity", "_meta")

    def __init__(self, sql: Sql, identity: Identity, meta: Meta) -> None:
        super().__init__(sql)
        self._identity = identity
        self._meta = meta

    # -- deleting people -------------------------------------------------------------------------
    def erase_person(self, person_id: str) -> dict[str, int]:
        """Delete one person from every online table (``erase_people`` without identifiers
        beyond theirs, quarantined messages matched by ``traces.Mentions`` with the default
        country code). Queues nothing: ``segone.identity.erase`` records and queues erasures."""
        from segone.identity.traces import Mentions

        nodes = self._identity.identifiers_of(person_id)
        return self.erase_people([person_id], nodes, Mentions(nodes))

    def erase_people(
        self,
        person_ids: Sequence[str],
        identifiers: Sequence[str],
        mentions: Callable[[str], bool] | None = None,
    ) -> dict[str, int]:
        """Delete people and every row carrying one of their ``identifiers`` from every online
        table: events, identities, documents (theirs and suppressions keyed by their
        identifiers), journey, outbox, dead letters, decisions (also those logged for them as
        an unknown identifier) and their feedback. ``mentions(text) -> bool`` says whether a
        quarantined message (raw text, no person id) is theirs; every quarantined message is
        read once for that (the quarantine holds rejected messages only, so it stays small)."""
        sql = self._sql
        sql.require_write()
        people = sorted(set(person_ids))
        counts: dict[str, int] = {}
        unknown = [
            "unknown:" + hashlib.sha256(v.encode()).hexdigest()[:16]
            for i in identifiers
            for v in (i, i.split(":", 1)[-1])
        ]
        decisions = [
            r[0]
            for r in sql.rows_in(
                "SELECT decision_id FROM decisions WHERE person_id IN ({in})", [*people, *unknown]
            )
        ]
        n = 0
        for i in range(0, len(decisions), CHUNK):
            chunk = decisions[i : i + CHUNK]
            marks = ",".join("?" * len(chunk))
            n += sql.exec(f"DELETE FROM feedback WHERE decision_id IN ({marks})", chunk).rowcount
        counts["feedback"] = n
        for table in ("events", "identities", "journey", "outbox", "dead_letters", "decisions"):
            counts[table] = sql.delete_in(table, "person_id", people)
        counts["decisions"] += sql.delete_in("decisions", "person_id", unknown)
        counts["identities"] += sql.delete_in("identities", "identifier", list(identifiers))
        counts["docs"] = 0
        for kind in DOC_KINDS_OF_PERSON:
            counts["docs"] += sql.delete_in("docs", "key", people, kind)
        counts["docs"] += sql.delete_in("docs", "key", list(identifiers), "suppression")
        q = 0
        if mentions is not None:
            hit = [i for i, m in sql.rows("SELECT id, message FROM quarantine") if mentions(m)]
            q = sql.delete_in("quarantine", "id", hit)
        counts["quarantine"] = q
        return counts

    # -- erased identifiers: salted hashes only --------------------------------------------------
    def salts(self) -> list[str]:
        """The salts erased identifiers are hashed with here (usually one; see
        ``segone.identity.erase``)."""
        raw = self._meta.get("erasure_salts")
        return list(from_json(raw)) if raw else []

    def add_salts(self, salts: Sequence[str]) -> list[str]:
        have = self.salts()
        new = [s for s in salts if s not in have]
        if new:
            self._meta.set("erasure_salts", to_json([*have, *new]))
        return [*have, *new]

    def add_erased(self, hashes: Iterable[str], erasure_id: str) -> int:
        """Refuse these hashes from now on; returns how many were new."""
        sql = self._sql
        sql.require_write()
        before = sql.count("erased_identifiers")
        sql.many(
            "INSERT INTO erased_identifiers (node_hash, erasure_id) VALUES (?, ?) "
            "ON CONFLICT (node_hash) DO NOTHING",
            [(h, erasure_id) for h in dict.fromkeys(hashes)],
        )
        return sql.count("erased_identifiers") - before

    def erased_among(self, hashes: Sequence[str]) -> set[str]:
        rows = self._sql.rows_in(
            "SELECT node_hash FROM erased_identifiers WHERE node_hash IN ({in})", hashes
        )
        return {r[0] for r in rows}

    def remove_erased(self, hashes: Sequence[str]) -> int:
        """Readmit: these hashes are no longer refused (``segone readmit``)."""
        self._sql.require_write()
        return self._sql.delete_in("erased_identifiers", "node_hash", list(hashes))

    def any_erased(self) -> bool:
        return bool(self._sql.rows("SELECT 1 FROM erased_identifiers LIMIT 1"))

    def erased_hashes(self) -> list[tuple[str, str]]:
        """(hash, erasure id) of every refused identifier."""
        rows = self._sql.rows("SELECT node_hash, erasure_id FROM erased_identifiers")
        return [(h, e) for h, e in rows]

    def count_refused(self, n: int) -> None:
        """Messages of erased people dropped by the API (a counter; nothing of them is kept)."""
        if n:
            self._meta.set("refused_erased", str(int(self._meta.get("refused_erased") or 0) + n))

    # -- the audit -------------------------------------------------------------------------------
    def log(
        self, erasure_id: str, at: datetime, route: str, people: int, rows: Mapping[str, int]
    ) -> None:
        """The audit line of an erasure: when, through which route, how many rows; no personal
        data. An erasure logged again (the warehouse's part, later) adds its counts."""
        sql = self._sql
        sql.require_write()
        got = sql.rows(
            "SELECT rows_removed, people FROM erasure_log WHERE erasure_id = ?", (erasure_id,)
        )
        if got:
            merged = dict(from_json(got[0][0]))
            for k, v in rows.items():
                merged[k] = merged.get(k, 0) + int(v)
            sql.exec(
                "UPDATE erasure_log SET rows_removed = ?, people = ? WHERE erasure_id = ?",
                (to_json(merged), max(int(got[0][1]), people), erasure_id),
            )
            return
        sql.exec(
            "INSERT INTO erasure_log (erasure_id, at, route, people, rows_removed) "
            "VALUES (?, ?, ?, ?, ?)",
            (erasure_id, ts_text(at), route, people, to_json(dict(rows))),
        )

    def audit(self, limit: int = 1000) -> list[ErasureLogEntry]:
        """The audit lines, newest first."""
        rows = self._sql.rows(
            "SELECT erasure_id, at, route, people, rows_removed FROM erasure_log "
            "ORDER BY at DESC LIMIT ?",
            (limit,),
        )
        return [ErasureLogEntry(e, a, r, int(p), from_json(d)) for e, a, r, p, d in rows]

    # -- the queue for the warehouse -------------------------------------------------------------
    def queue(self, hashes: Sequence[str], now: datetime) -> None:
        """Erased identifiers' hashes (``sha256:<hex>``) for the next ``segone build`` to erase
        from the warehouse: the server never holds the warehouse, and never keeps plain text."""
        self._sql.require_write()
        self._sql.many(
            "INSERT INTO erasures (identifier, requested_at) VALUES (?, ?)",
            [("sha256:" + h, ts_text(now)) for h in hashes],
        )

    def queued(self) -> list[tuple[int, str]]:
        """(id, ``sha256:<hex>``) of every erasure the warehouse has yet to do."""
        rows = self._sql.rows("SELECT id, identifier FROM erasures ORDER BY id")
        return [(int(i), v) for i, v in rows]

    def done(self, ids: Sequence[int]) -> None:
        """The warehouse has done these queued erasures."""
        self._sql.require_write()
        for i in ids:
            self._sql.exec("DELETE FROM erasures WHERE id = ?", (i,))
