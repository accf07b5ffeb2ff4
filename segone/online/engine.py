"""The Engine: what the server does with each request, over the online store.

* ``ingest``: for each new message (duplicates by ``messageId`` are acknowledged, not stored
  twice) stitch the person's identity, append the event, update their live profile, re-evaluate
  real-time segments, lifecycle stage and taste, and record each transition in their journey
  and in the webhook outbox, all in the group-committed transaction that acknowledges it
  (``segone.online.writer``: on a writer process by default, or a writer thread).
* ``decide`` / ``feedback``: next best items and follow-up channel from the live profile plus
  the last published batch results; every decision is logged with its propensities.
* ``profile`` / ``erase``: one person's view, and their removal from every online table.

The per-person logic lives in ``segone.live`` and ``segone.decisions``; this module loads what
they need, calls them, and writes what they return.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np

from segone.config import Settings
from segone.online.commit import WRITERS, Committer, GroupCommitter, commit_group
from segone.online.ops import (
    Decision,
    Erase,
    Feedback,
    Ingest,
    Quarantine,
    Suppress,
    Unsuppress,
)
from segone.online.process import ProcessCommitter
from segone.online.runtime import Runtime, load_runtime, person_of
from segone.online.store import JourneyEntry, OnlineStore, OnlineStoreError
from segone.online.writer import Writer

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)

# up to this many items a decision is computed on the event loop (SQLite); beyond, in a thread
# (its posterior draws grow with the catalogue: ~1 ms at 100 items on a 2-core VM)
INLINE_DECIDE_ITEMS = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _bought_live(doc: Mapping[str, Any] | None) -> list[str]:
    """Products in the orders of a person's live events (their kept event records)."""
    out: set[str] = set()
    for r in (doc or {}).get("events", []):
        for line in (r.get("order") or {}).get("lines", []):
            if line.get("product_id"):
                out.add(str(line["product_id"]))
    return sorted(out)


class Engine:
    """Real-time engine over one online store; ``await start()`` before use, ``stop()`` after."""

    def __init__(
        self,
        store: OnlineStore,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        writer: str | None = None,
        committer: Committer | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.runtime = Runtime()
        # the write operations, run here by ``ingest_sync`` and by the "thread" writer
        self.writer = Writer(store, settings, runtime=self.refresh)
        mode = writer or settings.server.writer
        if mode not in WRITERS:
            raise ValueError(f"writer must be one of {WRITERS}, not {mode!r}")
        # ``committer``: another one, e.g. ``FakeCommitter`` in tests
        self.committer: Committer = committer or (
            # the writer opens the very file this store has (a relative URL resolved here)
            ProcessCommitter(
                settings, f"sqlite:///{store.path.resolve()}" if store.path else store.url
            )
            if mode == "process"
            else GroupCommitter(self.writer)
        )
        # one generator for every decision (numpy's are not thread-safe: used under a lock)
        self._np_rng = np.random.default_rng()
        self._rng_lock = threading.Lock()
        # decisions of one person one at a time; contacts they planned, until committed
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._planned: dict[str, dict[str, Any]] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.committer.start()
        await asyncio.to_thread(self.refresh, force=True)
        s = self.settings.server
        if s.webhook_url:
            from segone.live.webhooks import WebhookDispatcher

            dispatcher = WebhookDispatcher(
                self.store,
                s.webhook_url,
                s.webhook_secret,
                max_attempts=s.webhook_max_attempts,
                backoff_seconds=s.webhook_backoff_seconds,
            )
            self._tasks.append(asyncio.create_task(dispatcher.run_forever(self._stop)))

    async def stop(self) -> None:
        self._stop.set()
        if self._pending:  # decision logs not yet committed
            await asyncio.gather(*self._pending, return_exceptions=True)
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                t.cancel()
        self._tasks = []
        await self.committer.stop()

    async def _current(self) -> Runtime:
        """The runtime, re-checked against the store at most once a second (off the loop)."""
        if time.monotonic() - self.runtime.checked < 1.0:
            return self.runtime
        return await asyncio.to_thread(self.refresh)

    def refresh(self, *, force: bool = False) -> Runtime:
        """The runtime of the last publish (re-read at most once a second unless ``force``)."""
        self.runtime = load_runtime(self.store, self.settings, self.runtime, force=force)
        return self.runtime

    # -- ingestion -------------------------------------------------------------------------------
    async def ingest(
        self,
        messages: Sequence[dict[str, Any]],
        rejected: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, int]:
        """Store and apply validated messages (and quarantine the ``rejected`` ones of the same
        request, in the same transaction); returns once they are durably committed."""
        if not messages and not rejected:
            return {"accepted": 0, "duplicates": 0}
        return await self.committer.submit(Ingest(self.clock(), messages, rejected))

    def ingest_sync(self, messages: Sequence[dict[str, Any]]) -> dict[str, int]:
        """``ingest`` for synchronous callers (tests, replay), in this process; one
        transaction."""
        [(ok, result)] = commit_group(self.store, self.writer, [Ingest(self.clock(), messages)])
        if not ok:
            raise result
        return dict(result)

    async def quarantine(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            await self.committer.submit(Quarantine(rows))

    # -- people ----------------------------------------------------------------------------------
    def _person_of(self, tx: Any, identifier: str) -> str | None:
        return person_of(tx, identifier, self.settings)

    async def profile(self, identifier: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._profile, identifier)

    def _profile(self, identifier: str) -> dict[str, Any] | None:
        from segone.live import checked

        now = self.clock()
        with self.store.read() as tx:
            pid = self._person_of(tx, identifier)
            if pid is None:
                return None
            live = tx.docs.get("person", [pid]).get(pid) or {}
            published = tx.docs.get("published", [pid]).get(pid) or {}
            identifiers = tx.identity.identifiers_of(pid)
            journey = tx.journey.of(pid, 50)
        try:
            return self._profile_of(pid, live, published, identifiers, journey, now)
        except Exception as exc:  # a stored value of the wrong type: read the checked documents
            log.error(
                "a person's documents held an odd value (%s); segone repair fixes them",
                type(exc).__name__,
            )
            live = checked.person(live) or {}
            published = checked.published(published) or {}
            return self._profile_of(pid, live, published, identifiers, journey, now)

    def _profile_of(
        self,
        pid: str,
        live: dict[str, Any],
        published: dict[str, Any],
        identifiers: list[str],
        journey: list[JourneyEntry],
        now: datetime,
    ) -> dict[str, Any]:
        from segone.live.profile import safe_view

        rt = live.get("rt") or {}
        p = safe_view(
            published or None,
            live or None,
            now,
            person_id=pid,
            identifiers=identifiers,
            lifecycle=self.settings.lifecycle,
            median_gap_days=self.runtime.median_gap_days,
        )
        return {
            "person_id": pid,
            "identifiers": identifiers,
            "profile": p,
            "segments": sorted(rt.get("segments", published.get("segments", []))),
            "lifecycle_stage": rt.get("stage") or p.get("lifecycle_stage"),
            "recommendations": published.get("recommendations", []),
            "published_at": published.get("_published_at"),
            "journey": [j.as_dict() for j in journey],
        }

    async def erase(self, identifier: str) -> dict[str, Any] | None:
        result = await self.committer.submit(Erase(identifier, self.clock()))
        if result is not None:
            # the deleted rows' old page images leave the WAL (secure_delete zeroed the pages)
            with contextlib.suppress(OnlineStoreError):
                await asyncio.to_thread(self.store.scrub)
        return None if result is None else dict(result)

    async def erasures(self) -> list[dict[str, Any]]:
        """The audit of every erasure (no personal data)."""

        def read() -> list[dict[str, Any]]:
            with self.store.read() as tx:
                return [e.as_dict() for e in tx.erasure.audit()]

        return await asyncio.to_thread(read)

    # -- suppression lists -----------------------------------------------------------------------
    def _suppression_key(self, identifier: str) -> str:
        from segone.decisions import DecisionError
        from segone.live.identity import candidates

        value = identifier.partition(":")[2]
        found = candidates(identifier, self.settings.identity) if value else []
        if len(found) != 1 or not identifier.startswith(found[0].split(":", 1)[0] + ":"):
            raise DecisionError(
                "a suppression names one identifier with its kind, e.g. email:jane@example.com, "
                "phone:+15550100 or user_id:u-1001"
            )
        return found[0]

    async def suppress(self, identifier: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Never contact (some channels of) this identifier, or never show it some items."""
        from segone.decisions import DecisionError

        key = self._suppression_key(identifier)
        channels = body.get("channels", "*")
        items = body.get("items", [])
        if not (
            channels == "*"
            or (isinstance(channels, list) and all(isinstance(c, str) and c for c in channels))
        ):
            raise DecisionError('channels must be "*" or a list of channel names')
        if not (isinstance(items, list) and all(isinstance(i, str) and i for i in items)):
            raise DecisionError("items must be a list of item ids")
        doc = {
            "channels": channels,
            "items": items,
            "reason": str(body.get("reason", ""))[:200],
            "since": self.clock().isoformat(),
        }
        await self.committer.submit(Suppress(key, doc))
        return {"identifier": key, **doc}

    async def unsuppress(self, identifier: str) -> bool:
        return bool(await self.committer.submit(Unsuppress(self._suppression_key(identifier))))

    async def suppression(self, identifier: str) -> dict[str, Any] | None:
        key = self._suppression_key(identifier)

        def read() -> dict[str, Any] | None:
            with self.store.read() as tx:
                doc = tx.docs.get("suppression", [key]).get(key)
            return None if doc is None else {"identifier": key, **doc}

        return await asyncio.to_thread(read)

    # -- decisions -------------------------------------------------------------------------------
    async def decide(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Rank items for the person and pick a follow-up channel.

        The answer is computed on a reader connection and returned at once; its log (with the
        propensities) and the planned contact are written by the next group commit. Decisions
        of one person are computed one at a time, each seeing the contacts planned by the
        previous ones even before they are committed, so frequency caps hold under concurrent
        requests (within this process, the only writer of its online store).
        """
        rt = await self._current()
        if self.store.path is not None and len(rt.items) <= INLINE_DECIDE_ITEMS:
            # SQLite: a millisecond of Python and reads from the page cache, run on the event
            # loop: a worker thread would only add a hop and fight the loop for the GIL (p99
            # at 200 decisions/s: 5-6 ms inline, 8-17 ms in threads, same run)
            answer, job, committed = self._decide(body, rt)
        else:  # PostgreSQL's network round trips, or a large catalogue, would stall the loop
            answer, job, committed = await asyncio.to_thread(self._decide, body, rt)
        # queued before we answer: a feedback on this decision is always written after it
        task = self.committer.enqueue(job)
        self._pending.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._pending.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("a decision could not be logged: %s", type(t.exception()).__name__)
            else:
                committed()

        task.add_done_callback(done)
        return answer

    def _decide(
        self, body: Mapping[str, Any], rt: Runtime
    ) -> tuple[dict[str, Any], Decision, Callable[[], None]]:
        from segone.decisions import DecisionError, apply_channel_delta, decide, decision_keys
        from segone.live import checked
        from segone.live.profile import safe_view

        now = self.clock()
        identifier = str(body["identifier"])
        with self.store.read() as tx:
            pid = self._person_of(tx, identifier)
        # an unknown visitor is answered from the crowd and logged under a pseudonym
        who = pid or "unknown:" + hashlib.sha256(identifier.encode()).hexdigest()[:16]
        with self._person_lock(who), self.store.read() as tx:
            live = published = channel = None
            supp: dict[str, dict[str, Any]] = {}
            identifiers: list[str] = []
            if pid is not None:
                live = tx.docs.get("person", [pid]).get(pid)
                published = tx.docs.get("published", [pid]).get(pid)
                channel = self._planned.get(pid) or tx.docs.get("channel", [pid]).get(pid)
                identifiers = tx.identity.identifiers_of(pid)
                supp = tx.docs.get("suppression", identifiers)

            def run(live: Any, published: Any) -> Any:
                person_view = safe_view(
                    published,
                    live,
                    now,
                    person_id=pid,
                    identifiers=identifiers,
                    lifecycle=self.settings.lifecycle,
                    median_gap_days=rt.median_gap_days,
                )
                # what they bought since the last build is not offered again either
                person_view["products_bought"] = _bought_live(live)
                ds = rt.decision_settings
                stats = tx.stats.get(decision_keys(person_view, body, rt.items, ds, published))
                with self._rng_lock:
                    return decide(
                        person_view,
                        published,
                        body,
                        rt.items,
                        stats,
                        channel,
                        ds,
                        now,
                        self._np_rng,
                        suppressions=supp,
                    )

            try:
                d = run(live, published)
            except DecisionError:  # the request's fault: answered 400
                raise
            except Exception as exc:  # a stored value of the wrong type: the checked documents
                log.error(
                    "a person's documents held an odd value (%s); segone repair fixes them",
                    type(exc).__name__,
                )
                d = run(checked.person(live), checked.published(published))
            planned = None
            if d.channel_delta and pid is not None:
                planned = apply_channel_delta(channel, d.channel_delta, now)
                self._planned[pid] = planned

        job = Decision(now, d.decision_id, who, d.placement, d.log, d.stat_deltas, pid, planned)

        def committed() -> None:  # the store has the contact now: drop it from the overlay
            with self._locks_guard:
                if planned is not None and pid is not None and self._planned.get(pid) is planned:
                    del self._planned[pid]

        return d.response(), job, committed

    @contextmanager
    def _person_lock(self, who: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(who, threading.Lock())
        with lock:
            yield
        with self._locks_guard:
            if not lock.locked() and who not in self._planned:
                self._locks.pop(who, None)

    async def feedback(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """An impression, click or conversion on a logged decision updates the policy."""
        return dict(await self.committer.submit(Feedback(self.clock(), dict(body))))
