"""Re-derive live profiles from the stored events (``segone repair``).

A person's live document is a fold of their events (``segone.live.person.update``, one event
after the other); the events are the truth, kept as received. ``repair`` replays them into a
new document, typing each message as the door does today (``segone.live.spec``: fields of the
wrong type dropped, event times outside the accepted window replaced by the time received), so
a document written by an older version, which let an amount of 1e300 or a timestamp in the year
9999 through, comes out as this version would have written it. Transitions found on the way
are not recorded again (the journey and the webhooks had them).

Each person is re-derived in one write transaction (the server's writer waits for it), so a
running server can stay up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from segone.config import Settings
from segone.exceptions import NotFoundError
from segone.live import person, spec
from segone.live.aggregate import parse_ts
from segone.online.runtime import Runtime, load_runtime, person_of
from segone.online.store import OnlineStore, Tx


@dataclass
class Repaired:
    """What ``repair`` did."""

    people: int = 0  # re-derived
    changed: int = 0  # whose document differed from the one stored
    events: int = 0  # replayed
    dropped: int = 0  # fields dropped from stored messages on the way (as the door does now)
    retimed: int = 0  # event times outside the window, replaced by the time received

    def summary(self) -> str:
        return (
            f"re-derived {self.people} live profile(s) from {self.events} stored event(s): "
            f"{self.changed} changed; {self.dropped} field(s) of the wrong type dropped, "
            f"{self.retimed} event time(s) outside the window replaced by the time received"
        )


def typed_message(msg: dict[str, Any], received_at: str, settings: Settings) -> tuple[int, bool]:
    """``msg`` (a stored message) typed as the door types one today, in place: (fields dropped,
    whether its time was replaced)."""
    dropped = spec.typed(msg)
    s = settings.server
    received = parse_ts(msg.get("receivedAt")) or parse_ts(received_at)
    t = parse_ts(msg.get("timestamp"))
    retimed = False
    if received is not None and (
        t is None
        or not spec.in_window(t, received, s.earliest(), timedelta(days=s.timestamp_future_days))
    ):
        msg["timestamp"] = msg.get("receivedAt") or received_at
        retimed = True
    return len(dropped), retimed


def rederive(
    tx: Tx, person_id: str, settings: Settings, runtime: Runtime, out: Repaired
) -> dict[str, Any] | None:
    """The person's live document from their stored events (None when they have none),
    written to the store."""
    events = tx.events.of_person(person_id)
    docs = tx.docs.of(person_id, ("published", "person"))
    published = docs.get("published")
    doc: dict[str, Any] | None = None
    for seq, received_at, msg in events:
        n, retimed = typed_message(msg, received_at, settings)
        out.dropped += n
        out.retimed += retimed
        now = parse_ts(received_at) or parse_ts(msg.get("receivedAt"))
        if now is None:  # pragma: no cover - the store writes received_at itself
            continue
        doc = person.update(
            published,
            doc,
            msg,
            seq,
            now,
            person_id=person_id,
            catalogue=runtime.catalogue,
            lifecycle=settings.lifecycle,
            median_gap_days=runtime.median_gap_days,
        ).doc
        out.events += 1
    out.people += 1
    before = docs.get("person")
    if doc is None:
        if before is not None:
            tx.docs.delete("person", [person_id])
            out.changed += 1
        return None
    if before is None or orjson.dumps(before) != orjson.dumps(doc):
        out.changed += 1
    tx.docs.put("person", {person_id: doc})
    return doc


def _people(store: OnlineStore, settings: Settings, identifiers: Sequence[str]) -> list[str]:
    with store.read() as tx:
        if not identifiers:
            return tx.events.people()
        found = []
        for ident in identifiers:
            pid = person_of(tx, ident, settings)
            if pid is None:
                raise NotFoundError(f"no person is known by the identifier {ident!r}")
            found.append(pid)
    return list(dict.fromkeys(found))


def repair(store: OnlineStore, settings: Settings, identifiers: Sequence[str] = ()) -> Repaired:
    """Re-derive the live profiles of the people with these identifiers (``user_id:u-1``, any
    kind ``GET /v1/profiles`` takes), or of everyone, from their stored events."""
    runtime = load_runtime(store, settings, Runtime(), force=True)
    out = Repaired()
    for pid in _people(store, settings, identifiers):
        with store.write() as tx:
            rederive(tx, pid, settings, runtime, out)
    return out
