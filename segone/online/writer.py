"""The write side of the engine: ``Writer`` applies each write operation
(``segone.online.ops``) to one write transaction of the online store.

Where the operations run, and how they are grouped into transactions, is
``segone.online.commit`` (group commit, the committer in a thread, a fake for tests) and
``segone.online.process`` (the writer process the server starts, ``python -m
segone.online.writer FD``). What the writer reads of the last publish is
``segone.online.runtime``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import singledispatchmethod
from typing import Any

import orjson

from segone.config import Settings
from segone.exceptions import NotFoundError
from segone.online.ops import (
    Decision,
    Erase,
    Feedback,
    Ingest,
    Operation,
    Quarantine,
    Suppress,
    Unsuppress,
)
from segone.online.runtime import Runtime, load_runtime, person_of
from segone.online.store import OnlineStore, Tx

log = logging.getLogger(__name__)


def _counts(accepted: int, duplicates: int, refused: int) -> dict[str, int]:
    out = {"accepted": accepted, "duplicates": duplicates}
    if refused:
        out["refused_erased"] = refused
    return out


def _text(message: Any) -> str:
    return message if isinstance(message, str) else orjson.dumps(message, default=str).decode()


class Writer:
    """Applies the operations that write the online store: ``apply(op, tx)``."""

    def __init__(
        self,
        store: OnlineStore,
        settings: Settings,
        runtime: Callable[[], Runtime] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        # a function returning the current Runtime (the engine's, in the server process);
        # without one the writer follows publishes itself
        self._runtime_of = runtime
        self._runtime = Runtime()

    def runtime(self) -> Runtime:
        if self._runtime_of is not None:
            return self._runtime_of()
        self._runtime = load_runtime(self.store, self.settings, self._runtime)
        return self._runtime

    @singledispatchmethod
    def apply(self, op: Operation, tx: Tx) -> Any:
        """Run one operation in ``tx`` and return its result."""
        raise TypeError(f"not a write operation: {type(op).__name__}")

    # -- the operations ----------------------------------------------------------------------------
    @apply.register
    def ingest(self, op: Ingest, tx: Tx) -> dict[str, int]:
        """For each new message (duplicates by ``messageId`` are acknowledged, not stored
        twice): stitch the person's identity, append the event, update their live profile,
        re-evaluate real-time segments, lifecycle stage and taste, and record each transition
        in their journey and the webhook outbox. ``rejected`` rows of the same request go to
        the quarantine."""
        return self.ingest_many(tx, [op])[0]

    def ingest_many(self, tx: Tx, requests: Sequence[Ingest]) -> list[dict[str, int]]:
        """``ingest`` of several requests in turn, as one unit: the group's duplicates are
        looked up at once, and each person's documents are read in one query."""
        from segone.live import identity

        requests, refused = self._refuse_erased(tx, requests)
        rows = [r for req in requests for r in req.rejected]
        if rows:
            tx.quarantine.add(rows)
        if not any(req.messages for req in requests):
            return [_counts(0, 0, n) for n in refused]
        rt = self.runtime()
        seen = tx.events.seen([m["messageId"] for req in requests for m in req.messages])
        s = self.settings
        out: list[dict[str, int]] = []
        for req in requests:
            now, messages = req.now, req.messages
            accepted = duplicates = 0
            for msg in messages:
                mid = msg["messageId"]
                if mid in seen:
                    duplicates += 1
                    continue
                seen.add(mid)
                ids = identity.identifiers_of(msg, s.identity)
                pid = identity.stitch(tx, msg, ids, s.identity, now).person_id
                seq = tx.events.insert([msg], [pid])[0]
                if seq is None:  # pragma: no cover - seen() ruled this out in our transaction
                    duplicates += 1
                    continue
                accepted += 1
                docs = tx.docs.of(pid, ("published", "person"))
                u = self._update(docs.get("published"), docs.get("person"), msg, seq, now, pid, rt)
                tx.docs.put("person", {pid: u.doc}, now)
                for t in u.transitions:
                    payload = t.payload()
                    tx.journey.add(pid, now, t.kind, payload)
                    if s.server.webhook_url:
                        tx.outbox.enqueue(pid, t.kind, payload, now)
            out.append(_counts(accepted, duplicates, refused[len(out)]))
        return out

    def _update(
        self,
        published: dict[str, Any] | None,
        doc: dict[str, Any] | None,
        msg: Mapping[str, Any],
        seq: int,
        now: datetime,
        pid: str,
        rt: Runtime,
    ) -> Any:
        """``segone.live.person.update``; when the stored documents hold a value of the wrong
        type (an older version's), again on the checked documents; should that fail too (a
        bug), the event stays stored and the person's document checked but without it
        (``segone repair`` re-derives it): an accepted event never fails its request."""
        from segone.live import checked, person

        def update(published: Any, doc: Any) -> person.Update:
            return person.update(
                published,
                doc,
                msg,
                seq,
                now,
                person_id=pid,
                catalogue=rt.catalogue,
                lifecycle=self.settings.lifecycle,
                median_gap_days=rt.median_gap_days,
            )

        try:
            return update(published, doc)
        except Exception as exc:  # a stored value of the wrong type: the checked documents
            log.error("a live profile could not be updated as stored (%s)", type(exc).__name__)
            pub, mine = checked.published(published), checked.person(doc)
            try:
                return update(pub, mine)
            except Exception as again:  # a bug: keep the event, not its effect on the profile
                log.error(
                    "a live profile could not be updated (%s); run segone repair",
                    type(again).__name__,
                )
                from segone.live.profile import new_doc

                return person.Update(mine or new_doc(), {})

    def _refuse_erased(self, tx: Tx, requests: Sequence[Ingest]) -> tuple[list[Ingest], list[int]]:
        """Messages (and rejected rows) carrying an erased identifier's hash are dropped before
        anything of them is stored, and counted (``refused_erased`` in ``meta``): an erased
        person does not come back through the API, as they do not through a file."""
        salts = tx.erasure.salts()
        if not salts or not tx.erasure.any_erased():
            return list(requests), [0] * len(requests)
        from segone.identity.traces import (
            contact_identifiers,
            identifier_hashes,
            text_identifiers,
        )
        from segone.live.identity import identifiers_of

        s = self.settings.identity
        cc = s.default_country_code
        # the identifiers it stitches on, and any e-mail or phone anywhere else in it
        ids_msg: list[list[set[str]]] = [
            [set(identifiers_of(m, s)) | contact_identifiers(_text(m), cc) for m in req.messages]
            for req in requests
        ]
        ids_rej: list[list[set[str]]] = [
            [text_identifiers(_text(r.get("message")), cc) for r in req.rejected]
            for req in requests
        ]
        nodes = {n for group in ids_msg for ids in group for n in ids}
        nodes |= {n for group in ids_rej for ids in group for n in ids}
        by_hash = identifier_hashes(nodes, salts)
        gone_nodes = {by_hash[h] for h in tx.erasure.erased_among(sorted(by_hash))}
        if not gone_nodes:
            return list(requests), [0] * len(requests)
        kept: list[Ingest] = []
        refused: list[int] = []
        for req, im, ir in zip(requests, ids_msg, ids_rej, strict=True):
            msgs = [m for m, ids in zip(req.messages, im, strict=True) if not gone_nodes & ids]
            rej = [r for r, ids in zip(req.rejected, ir, strict=True) if not gone_nodes & ids]
            refused.append(len(req.messages) - len(msgs) + len(req.rejected) - len(rej))
            kept.append(replace(req, messages=msgs, rejected=rej))
        tx.erasure.count_refused(sum(refused))
        return kept, refused

    @apply.register
    def quarantine(self, op: Quarantine, tx: Tx) -> None:
        tx.quarantine.add(op.rows)

    @apply.register
    def erase(self, op: Erase, tx: Tx) -> dict[str, Any] | None:
        """``DELETE /v1/profiles``: the person, and every row carrying one of their identifiers,
        from every online table; their identifiers' hashes refused from now on and queued for
        the warehouse (the next ``segone build`` erases them there); an audit line."""
        import secrets
        import uuid

        from segone.identity.traces import Mentions, identifier_hashes

        pid = person_of(tx, op.identifier, self.settings)
        if pid is None:
            return None
        at = op.now or datetime.now(UTC)
        nodes = tx.identity.identifiers_of(pid)
        salts = tx.erasure.salts() or tx.erasure.add_salts([secrets.token_hex(32)])
        counts = tx.erasure.erase_people(
            [pid], nodes, Mentions(nodes, self.settings.identity.default_country_code)
        )
        erasure_id = uuid.uuid4().hex
        hashes = list(identifier_hashes(nodes, salts))
        tx.erasure.add_erased(hashes, erasure_id)
        tx.erasure.queue(hashes, at)
        tx.erasure.log(erasure_id, at, "api", 1, {"online_" + k: v for k, v in counts.items()})
        return {"erasure_id": erasure_id, "person_id": pid, "deleted": counts}

    @apply.register
    def suppress(self, op: Suppress, tx: Tx) -> None:
        tx.docs.put("suppression", {op.key: op.doc})

    @apply.register
    def unsuppress(self, op: Unsuppress, tx: Tx) -> bool:
        found = bool(tx.docs.get("suppression", [op.key]))
        tx.docs.delete("suppression", [op.key])
        return found

    @apply.register
    def decision(self, op: Decision, tx: Tx) -> None:
        """A decision's log (with its propensities), its policy counters and the contact it
        planned."""
        tx.decisions.log(op.decision_id, op.who, op.now, op.placement, op.logged)
        if op.stat_deltas:
            tx.stats.add(op.stat_deltas)
        if op.planned is not None and op.person_id is not None:
            tx.docs.put("channel", {op.person_id: op.planned}, op.now)

    @apply.register
    def feedback(self, op: Feedback, tx: Tx) -> dict[str, Any]:
        """An impression, click or conversion on a logged decision updates the policy."""
        from segone.decisions import apply_channel_delta, feedback_deltas

        now, body = op.now, op.body
        logged = tx.decisions.get(str(body["decision_id"]))
        if logged is None:
            raise NotFoundError(f"no decision {body['decision_id']!r}")
        item = "" if body.get("item_id") is None else str(body["item_id"])
        kind = str(body["kind"])
        recorded = tx.decisions.feedback_kinds(logged.decision_id, item)
        deltas, ch = feedback_deltas(
            logged.doc, item, kind, recorded=recorded, channel=body.get("channel")
        )
        tx.decisions.log_feedback(logged.decision_id, item, kind, now, dict(body))
        if deltas:
            tx.stats.add(deltas)
        pid = logged.person_id
        if ch is not None and not pid.startswith("unknown:"):
            doc = tx.docs.get("channel", [pid]).get(pid)
            tx.docs.put("channel", {pid: apply_channel_delta(doc, ch, now)}, now)
        return {"decision_id": logged.decision_id, "kind": kind, "updated": len(deltas)}


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m segone.online.writer FD``: the writer process (``segone.online.process``)."""
    from segone.online.process import main as run

    run(argv)


if __name__ == "__main__":
    main()


__all__ = ["Runtime", "Writer", "load_runtime", "person_of"]
