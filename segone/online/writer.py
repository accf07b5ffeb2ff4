"""The write side of the engine: named operations on one write transaction, and where they run.

Everything the server writes is one of the operations of ``Writer`` (``ingest``, ``erase``,
``decision``, ...), called with plain, picklable arguments and the time the request was received
(``now``: the writer never reads a clock of its own). Two committers run them, both with group
commit (the requests that queue up while a transaction commits share the next one, each in its
own savepoint, and each is answered only after that COMMIT):

* ``GroupCommitter`` (``[server] writer = "thread"``): a writer thread of the server process.
* ``ProcessCommitter`` (``"process"``, the default for ``segone serve``): a writer *process*
  (``python -m segone.online.writer``) that the server starts, talking to it over a socket pair.
  The per-event work (identity stitching, the live profile, every segment, the stage) then runs
  on another core than HTTP, JSON and the decisions, with no GIL between them. The writer
  process exits when the server's end of the socket closes, which includes the server being
  killed; a writer that dies is replaced, and the requests it had not answered fail with a 503
  (they were not acknowledged, and a retry is de-duplicated by ``messageId``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import logging
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from segone.config import Settings
from segone.online.store import WAL_LIMIT_BYTES, OnlineStore, OnlineStoreError, Tx
from segone.segments.rules import Catalogue, RuleError

log = logging.getLogger(__name__)
WRITERS = ("process", "thread")


@dataclass
class Runtime:
    """What the server reads from the last publish: reloaded when a build publishes again."""

    version: str | None = None
    catalogue: Catalogue = field(default_factory=Catalogue)
    items: Any = field(default_factory=dict)  # a decisions.CatalogueIndex once refreshed
    median_gap_days: float | None = None
    decision_settings: Any = None
    checked: float = 0.0


def load_runtime(
    store: OnlineStore, settings: Settings, previous: Runtime, *, force: bool = False
) -> Runtime:
    """``previous``, or a new runtime when a build has published since (checked at most once
    a second unless ``force``), so the server follows builds without a restart."""
    if not force and time.monotonic() - previous.checked < 1.0:
        return previous
    with store.read() as tx:
        version = tx.get_meta("published_version")
        if version == previous.version and not force:
            previous.checked = time.monotonic()
            return previous
        items = tx.all_docs("catalogue")
        gap = tx.get_meta("median_gap_days")
    from segone.decisions import CatalogueIndex, DecisionSettings

    return Runtime(
        version=version,
        catalogue=_catalogue(settings),
        items=CatalogueIndex(items),
        decision_settings=DecisionSettings.from_settings(settings),
        median_gap_days=float(gap) if gap else None,
        checked=time.monotonic(),
    )


def _catalogue(settings: Settings) -> Catalogue:
    from segone.live.realtime import live_catalogue

    folder = settings.root / "segments"
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    try:
        return live_catalogue(files, settings.segments)
    except RuleError as exc:
        # serve the built-in segments rather than nothing; the error names file and line
        log.warning("segment files not used in real time: %s", exc)
        return live_catalogue((), settings.segments)


def person_of(tx: Tx, identifier: str, settings: Settings) -> str | None:
    """The person an identifier (``kind:value`` or a bare value) belongs to, if known."""
    from segone.live.identity import candidates

    found = tx.lookup(candidates(identifier, settings.identity))
    people = sorted(set(found.values()))
    return people[0] if people else None


def _counts(accepted: int, duplicates: int, refused: int) -> dict[str, int]:
    out = {"accepted": accepted, "duplicates": duplicates}
    if refused:
        out["refused_erased"] = refused
    return out


def _text(message: Any) -> str:
    return message if isinstance(message, str) else orjson.dumps(message, default=str).decode()


class Writer:
    """The operations that write the online store; ``call(tx, name, args)`` runs one."""

    OPERATIONS = frozenset(
        ("ingest", "quarantine", "erase", "suppress", "unsuppress", "decision", "feedback")
    )

    def __init__(self, store: OnlineStore, settings: Settings, runtime: Any = None) -> None:
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

    def call(self, tx: Tx, name: str, args: Sequence[Any]) -> Any:
        if name not in self.OPERATIONS:
            raise ValueError(f"unknown write operation {name!r}")
        return getattr(self, name)(tx, *args)

    # -- the operations ----------------------------------------------------------------------------
    def ingest(
        self,
        tx: Tx,
        now: datetime,
        messages: Sequence[dict[str, Any]],
        rejected: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, int]:
        """For each new message (duplicates by ``messageId`` are acknowledged, not stored
        twice): stitch the person's identity, append the event, update their live profile,
        re-evaluate real-time segments, lifecycle stage and taste, and record each transition
        in their journey and the webhook outbox. ``rejected`` rows of the same request go to
        the quarantine."""
        return self.ingest_many(tx, [(now, messages, rejected)])[0]

    def ingest_many(self, tx: Tx, requests: Sequence[Sequence[Any]]) -> list[dict[str, int]]:
        """``ingest`` of several requests ((now, messages[, rejected]) each) in turn, as one
        unit: the group's duplicates are looked up at once, and each person's documents are
        read in one query."""
        from segone.live import identity

        requests, refused = self._refuse_erased(tx, requests)
        rows = [r for req in requests if len(req) > 2 for r in req[2]]
        if rows:
            tx.quarantine(rows)
        if not any(req[1] for req in requests):
            return [_counts(0, 0, n) for n in refused]
        rt = self.runtime()
        seen = tx.seen([m["messageId"] for req in requests for m in req[1]])
        s = self.settings
        out: list[dict[str, int]] = []
        for req in requests:
            now, messages = req[0], req[1]
            accepted = duplicates = 0
            for msg in messages:
                mid = msg["messageId"]
                if mid in seen:
                    duplicates += 1
                    continue
                seen.add(mid)
                ids = identity.identifiers_of(msg, s.identity)
                pid = identity.stitch(tx, msg, ids, s.identity, now).person_id
                seq = tx.insert_events([msg], [pid])[0]
                if seq is None:  # pragma: no cover - seen() ruled this out in our transaction
                    duplicates += 1
                    continue
                accepted += 1
                docs = tx.docs_of(pid, ("published", "person"))
                u = self._update(docs.get("published"), docs.get("person"), msg, seq, now, pid, rt)
                tx.put_docs("person", {pid: u.doc}, now)
                for t in u.transitions:
                    payload = t.payload()
                    tx.add_journey(pid, now, t.kind, payload)
                    if s.server.webhook_url:
                        tx.enqueue(pid, t.kind, payload, now)
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

    def _refuse_erased(
        self, tx: Tx, requests: Sequence[Sequence[Any]]
    ) -> tuple[list[Sequence[Any]], list[int]]:
        """Messages (and rejected rows) carrying an erased identifier's hash are dropped before
        anything of them is stored, and counted (``refused_erased`` in ``meta``): an erased
        person does not come back through the API, as they do not through a file."""
        salts = tx.erasure_salts()
        if not salts or not tx.any_erased():
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
            [set(identifiers_of(m, s)) | contact_identifiers(_text(m), cc) for m in req[1]]
            for req in requests
        ]
        ids_rej: list[list[set[str]]] = [
            [
                text_identifiers(_text(r.get("message")), cc)
                for r in (req[2] if len(req) > 2 else ())
            ]
            for req in requests
        ]
        nodes = {n for group in ids_msg for ids in group for n in ids}
        nodes |= {n for group in ids_rej for ids in group for n in ids}
        by_hash = identifier_hashes(nodes, salts)
        gone_nodes = {by_hash[h] for h in tx.erased_among(sorted(by_hash))}
        if not gone_nodes:
            return list(requests), [0] * len(requests)
        kept: list[Sequence[Any]] = []
        refused: list[int] = []
        for req, im, ir in zip(requests, ids_msg, ids_rej, strict=True):
            msgs = [m for m, ids in zip(req[1], im, strict=True) if not gone_nodes & ids]
            rej = [
                r
                for r, ids in zip(req[2] if len(req) > 2 else (), ir, strict=True)
                if not gone_nodes & ids
            ]
            refused.append(
                len(req[1]) - len(msgs) + (len(req[2]) if len(req) > 2 else 0) - len(rej)
            )
            kept.append((req[0], msgs, rej))
        tx.count_refused(sum(refused))
        return kept, refused

    def quarantine(self, tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
        tx.quarantine(rows)

    def erase(self, tx: Tx, identifier: str, now: datetime | None = None) -> dict[str, Any] | None:
        """``DELETE /v1/profiles``: the person, and every row carrying one of their identifiers,
        from every online table; their identifiers' hashes refused from now on and queued for
        the warehouse (the next ``segone build`` erases them there); an audit line."""
        import secrets
        import uuid

        from segone.identity.traces import Mentions, identifier_hashes

        pid = person_of(tx, identifier, self.settings)
        if pid is None:
            return None
        at = now or datetime.now(UTC)
        nodes = tx.identifiers_of(pid)
        salts = tx.erasure_salts() or tx.add_erasure_salts([secrets.token_hex(32)])
        counts = tx.erase_people(
            [pid], nodes, Mentions(nodes, self.settings.identity.default_country_code)
        )
        erasure_id = uuid.uuid4().hex
        hashes = list(identifier_hashes(nodes, salts))
        tx.add_erased(hashes, erasure_id)
        tx.queue_erasure(hashes, at)
        tx.log_erasure(erasure_id, at, "api", 1, {"online_" + k: v for k, v in counts.items()})
        return {"erasure_id": erasure_id, "person_id": pid, "deleted": counts}

    def suppress(self, tx: Tx, key: str, doc: Mapping[str, Any]) -> None:
        tx.put_docs("suppression", {key: doc})

    def unsuppress(self, tx: Tx, key: str) -> bool:
        found = bool(tx.get_docs("suppression", [key]))
        tx.delete_docs("suppression", [key])
        return found

    def decision(
        self,
        tx: Tx,
        now: datetime,
        decision_id: str,
        who: str,
        placement: str,
        logged: Mapping[str, Any],
        stat_deltas: Any,
        person_id: str | None,
        planned: Mapping[str, Any] | None,
    ) -> None:
        """A decision's log (with its propensities), its policy counters and the contact it
        planned."""
        tx.log_decision(decision_id, who, now, placement, logged)
        if stat_deltas:
            tx.add_stats(stat_deltas)
        if planned is not None and person_id is not None:
            tx.put_docs("channel", {person_id: planned}, now)

    def feedback(self, tx: Tx, now: datetime, body: Mapping[str, Any]) -> dict[str, Any]:
        """An impression, click or conversion on a logged decision updates the policy."""
        from segone.decisions import apply_channel_delta, feedback_deltas
        from segone.online.engine import NotFound

        logged = tx.get_decision(str(body["decision_id"]))
        if logged is None:
            raise NotFound(f"no decision {body['decision_id']!r}")
        item = "" if body.get("item_id") is None else str(body["item_id"])
        kind = str(body["kind"])
        recorded = tx.feedback_kinds(logged["decision_id"], item)
        deltas, ch = feedback_deltas(
            logged["doc"], item, kind, recorded=recorded, channel=body.get("channel")
        )
        tx.log_feedback(logged["decision_id"], item, kind, now, dict(body))
        if deltas:
            tx.add_stats(deltas)
        pid = logged["person_id"]
        if ch is not None and not pid.startswith("unknown:"):
            doc = tx.get_docs("channel", [pid]).get(pid)
            tx.put_docs("channel", {pid: apply_channel_delta(doc, ch, now)}, now)
        return {"decision_id": logged["decision_id"], "kind": kind, "updated": len(deltas)}


Job = tuple[str, tuple[Any, ...]]


def commit_group(store: OnlineStore, writer: Writer, jobs: Sequence[Job]) -> list[tuple[bool, Any]]:
    """Run ``jobs`` in one transaction, each in its own savepoint; (ok, result or exception)
    for each. Raises only when the transaction itself fails (then nothing of it is kept).

    Consecutive ``ingest`` jobs run together first (``Writer.ingest_many``, one savepoint);
    should that fail, they run again one by one, so that only the failing one gets an error."""
    out: list[tuple[bool, Any]] = []
    with store.write() as tx:
        i = 0
        while i < len(jobs):
            j = i + 1
            if jobs[i][0] == "ingest":
                while j < len(jobs) and jobs[j][0] == "ingest":
                    j += 1
            if j - i > 1:
                try:
                    with tx.savepoint():
                        results = writer.ingest_many(tx, [args for _, args in jobs[i:j]])
                    out += [(True, r) for r in results]
                    i = j
                    continue
                except Exception:
                    pass  # rolled back: each on its own below
            for name, args in jobs[i:j]:
                try:
                    with tx.savepoint():
                        out.append((True, writer.call(tx, name, args)))
                except Exception as exc:
                    out.append((False, exc))
            i = j
    return out


# -- in a thread of the server -------------------------------------------------------------------
# Back-pressure: past this many requests waiting for the writer (in the writer process: all its
# unanswered requests; in thread mode: those not yet in a group), new ingest requests are
# refused at once (503, retried by the SDKs) rather than queued without bound while the writer is
# stalled (a slow disk, a long checkpoint). About 5 s of ingest at this machine's peak. Decision
# logs and the other operations are always queued (small, and at the rate of decisions).
MAX_PENDING = 10_000


# How long a request waits for a writer process that is being replaced (it died) before it is
# answered 503: a new writer starts in about 2.5 s on an idle 2-core machine.
RESTART_WAIT = 10.0


def _behind() -> OnlineStoreError:
    return OnlineStoreError("the online store's writer is behind; retry")


def _restarting() -> OnlineStoreError:
    return OnlineStoreError("the online store's writer is restarting; retry")


class GroupCommitter:
    """``await committer.submit(name, *args)`` returns the operation's result once committed;
    the operations run on one writer thread of this process."""

    def __init__(
        self, writer: Writer, *, max_jobs: int = 1000, max_pending: int = MAX_PENDING
    ) -> None:
        self.writer = writer
        self.max_jobs = max_jobs
        self.max_pending = max_pending
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # the writer connection is used from this one thread only
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="segone-writer")
        self.transactions = 0
        self.jobs = 0

    async def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="segone-group-commit")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        task, self._task = self._task, None
        while self._pending:
            await self._flush()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def submit(self, name: str, *args: Any) -> Any:
        return await self.enqueue(name, *args)

    def enqueue(self, name: str, *args: Any) -> asyncio.Future[Any]:
        """Queue an operation now (they run in the order they were queued); the future
        resolves after its commit."""
        if self._task is None or self._wake is None:
            raise RuntimeError("the group committer is not running (Engine.start() first)")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if name == "ingest" and len(self._pending) >= self.max_pending:
            fut.set_exception(_behind())
            return fut
        self._pending.append(((name, args), fut))
        self._wake.set()
        return fut

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending[: self.max_jobs], self._pending[self.max_jobs :]
        loop = asyncio.get_running_loop()
        jobs = [j for j, _ in batch]
        try:
            results = await loop.run_in_executor(
                self._thread, commit_group, self.writer.store, self.writer, jobs
            )
        except Exception as exc:  # the COMMIT itself failed: nobody in this batch is acknowledged
            _fail([f for _, f in batch], exc)
            return
        self.transactions += 1
        self.jobs += len(jobs)
        for (_, fut), result in zip(batch, results, strict=True):
            _resolve(fut, result)


def _resolve(fut: asyncio.Future[Any], result: tuple[bool, Any]) -> None:
    if fut.done():  # the request was cancelled (client went away); its job is committed
        return
    ok, value = result
    if ok:
        fut.set_result(value)
    elif isinstance(value, StopIteration):  # (a future refuses these)
        fut.set_exception(RuntimeError(f"{type(value).__name__} in a write operation"))
    else:
        fut.set_exception(value)


def _fail(futures: Sequence[asyncio.Future[Any]], exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)


# -- in a process of its own ---------------------------------------------------------------------
# Frames on the socket: a 4-byte big-endian length, a kind byte, then the content. Requests are
# (ticket, name, args); answers (ticket, ok, result or exception). Only the server and the
# writer it started hold the two ends of the socket pair. Content is a pickle, except for the
# hot path (an ingest request without rejected rows, and its answer), which is JSON: pickling a
# Segment message costs 25 times what orjson does.
_LEN = struct.Struct(">I")
_READY = -1  # the ticket of the writer's first answer: ready (or why it could not start)
_PICKLE, _INGEST, _INGESTED = b"P", b"I", b"A"


def _packed(kind: bytes, data: bytes) -> bytes:
    return _LEN.pack(len(data) + 1) + kind + data


def _frame(obj: Any) -> bytes:
    return _packed(_PICKLE, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _request_frame(ticket: int, name: str, args: tuple[Any, ...]) -> bytes:
    if name == "ingest" and (len(args) == 2 or (len(args) == 3 and not args[2])):
        try:  # [ticket, now, messages]
            return _packed(_INGEST, orjson.dumps([ticket, args[0].isoformat(), args[1]]))
        except (TypeError, AttributeError, orjson.JSONEncodeError):
            pass  # (e.g. an integer beyond 64 bits): as a pickle
    return _frame((ticket, name, args))


def _answer_frame(ticket: int, ok: bool, value: Any) -> bytes:
    if ok and type(value) is dict and value.keys() == {"accepted", "duplicates"}:
        return _packed(_INGESTED, orjson.dumps([ticket, value["accepted"], value["duplicates"]]))
    return _frame((ticket, ok, value))


def _decode(kind: bytes, data: bytes) -> Any:
    if kind == _PICKLE:
        return pickle.loads(data)
    doc = orjson.loads(data)
    if kind == _INGEST:
        return (doc[0], "ingest", (datetime.fromisoformat(doc[1]), doc[2]))
    return (doc[0], True, {"accepted": doc[1], "duplicates": doc[2]})


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return OnlineStoreError(f"the online store's writer failed: {type(exc).__name__}")


class ProcessCommitter:
    """``GroupCommitter``'s interface, the operations run by a writer process."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        max_jobs: int = 1000,
        start_timeout: float = 120.0,
        max_pending: int = MAX_PENDING,
        restart_wait: float = RESTART_WAIT,
    ) -> None:
        self.settings = settings
        self.url = url
        self.max_jobs = max_jobs
        self.max_pending = max_pending
        self.start_timeout = start_timeout
        self.restart_wait = restart_wait
        self._tickets = itertools.count()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._out: list[bytes] = []
        # while a writer is being replaced: since when, and the timer that fails what waits
        self._down_since: float | None = None
        self._give_up: asyncio.TimerHandle | None = None
        self.restarts = 0

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._cancel_give_up()  # (a writer that died during the last stop)
            self._down_since = None
            reader = await self._spawn()
            self._task = asyncio.create_task(self._answers(reader), name="segone-writer-answers")

    async def _spawn(self) -> asyncio.StreamReader:
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "segone.online.writer", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # its own process group: a Ctrl-C in the terminal reaches the server, which
                # finishes what is queued and then closes the socket (the writer exits then)
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=2**26)
        writer.write(_frame((self.settings, self.url, self.max_jobs)))
        try:
            ticket, ok, value = await asyncio.wait_for(_read(reader), self.start_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, EOFError, OSError) as exc:
            writer.close()
            self._kill()
            raise OnlineStoreError("the online store's writer process did not start") from exc
        if ticket != _READY or not ok:
            writer.close()
            self._kill()
            raise value if isinstance(value, BaseException) else OnlineStoreError(str(value))
        self._writer = writer
        return reader

    async def stop(self) -> None:
        """Wait for the answers still due, then close the socket (the writer exits)."""
        if self._task is None:
            return
        self._stopping = True
        if self._down_since is not None:  # no writer to answer them
            self._fail_waiting()
        if self._futures:
            await asyncio.gather(*self._futures.values(), return_exceptions=True)
        task, self._task = self._task, None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)
        if self._writer is not None:  # one started by a restart meanwhile
            self._writer.close()
            self._writer = None
        if self._proc is not None:
            try:
                await asyncio.to_thread(self._proc.wait, 30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck writer
                self._kill()
            self._proc = None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    async def submit(self, name: str, *args: Any) -> Any:
        return await self.enqueue(name, *args)

    def enqueue(self, name: str, *args: Any) -> asyncio.Future[Any]:
        if self._task is None:
            raise RuntimeError("the writer process is not running (Engine.start() first)")
        if name not in Writer.OPERATIONS:
            raise ValueError(f"unknown write operation {name!r}")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        since = self._down_since
        down = since is not None
        if since is not None and (self._stopping or time.monotonic() - since > self.restart_wait):
            fut.set_exception(_restarting())
            return fut
        if name == "ingest" and len(self._futures) >= self.max_pending:
            fut.set_exception(_behind())
            return fut
        ticket = next(self._tickets)
        try:
            frame = _request_frame(ticket, name, args)
        except Exception as exc:  # e.g. nested too deeply to pickle: this request fails alone
            fut.set_exception(
                OnlineStoreError(f"the request cannot be passed on: {type(exc).__name__}")
            )
            return fut
        self._futures[ticket] = fut
        # one write per turn of the event loop for every request handled in it: waking the
        # writer process costs more than the bytes. While the writer is being replaced, the
        # requests wait (up to ``restart_wait``) and go to the new one once it is ready.
        if not self._out and not down:
            asyncio.get_running_loop().call_soon(self._send)
        self._out.append(frame)
        return fut

    def _send(self) -> None:
        if self._writer is None or self._writer.is_closing():
            return  # they stay queued for the next writer (or fail with the old one)
        out, self._out = self._out, []
        if out:
            self._writer.write(b"".join(out))

    def _down(self) -> None:
        """The writer has died: fail what it was given (it may or may not have committed it;
        the clients retry, and ``messageId`` makes that safe), and hold what comes next until
        the replacement is ready or ``restart_wait`` has passed."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._fail_all(OnlineStoreError("the online store's writer stopped; retry"))
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._give_up = asyncio.get_running_loop().call_later(
                self.restart_wait, self._fail_waiting
            )

    def _fail_waiting(self) -> None:
        self._cancel_give_up()
        self._fail_all(_restarting())

    def _up(self) -> None:
        self._down_since = None
        self._cancel_give_up()
        self._send()

    def _fail_all(self, exc: BaseException) -> None:
        """Fail every request not yet answered, and drop those not yet sent."""
        self._out.clear()
        pending = list(self._futures.values())
        self._futures.clear()
        _fail(pending, exc)

    def _cancel_give_up(self) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None

    async def _answers(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        while True:
            answers: list[Any] = []
            try:  # every answer that has arrived, at once
                chunk = await reader.read(1 << 20)
                buf.extend(chunk)
                answers = _split(buf)
            except OSError:  # e.g. reset: the writer died with requests unread
                chunk = b""
            except Exception:  # an answer that cannot be read: start again with a new writer
                log.exception("unreadable answer from the online store's writer")
                chunk = b""
            if not chunk:
                buf.clear()
                self._down()
                if self._stopping:
                    self._fail_waiting()
                    return
                log.error("the online store's writer process stopped; starting another")
                self._kill()
                self.restarts += 1
                await asyncio.sleep(min(5.0, 0.1 * self.restarts))
                if self._stopping:
                    self._fail_waiting()
                    return
                try:
                    reader = await self._spawn()
                except Exception as exc:  # tried again after the next back-off
                    log.error("the online store's writer did not start: %s", exc)
                else:
                    self._up()
                continue
            for ticket, ok, value in answers:
                fut = self._futures.pop(ticket, None)
                if fut is not None:
                    _resolve(fut, (ok, value))


def _split(buf: bytearray) -> list[Any]:
    """The complete frames at the start of ``buf``, taken out of it (a partial one stays)."""
    out: list[Any] = []
    start = 0
    while len(buf) - start >= _LEN.size:
        n = _LEN.unpack_from(buf, start)[0]
        end = start + _LEN.size + n
        if len(buf) < end:
            break
        body = start + _LEN.size
        out.append(_decode(bytes(buf[body : body + 1]), bytes(buf[body + 1 : end])))
        start = end
    del buf[:start]
    return out


async def _read(reader: asyncio.StreamReader) -> Any:
    head = await reader.readexactly(_LEN.size)
    data = await reader.readexactly(_LEN.unpack(head)[0])
    return _decode(data[:1], data[1:])


def _serve_writer(sock: socket.socket) -> None:
    """The writer process: take every request that has arrived, run them in one transaction,
    answer each after its COMMIT is on disk; exit when the server closes its end.

    On SQLite the disk flush of one group overlaps the work of the next (``defer_sync``): the
    answers go out from a second thread once ``store.sync()`` has returned."""
    buf = bytearray()

    def frames(wait: bool) -> list[Any] | None:
        """The complete frames received so far, waiting for one if ``wait`` and there are
        none yet (a partial frame stays in ``buf``); None at the end of the stream."""
        out: list[Any] = []
        while True:
            out += _split(buf)
            # wait only while there is nothing to return yet; otherwise take what is there
            # (MSG_DONTWAIT rather than select(), which fails on descriptors from 1024 up)
            try:
                chunk = sock.recv(1 << 20, 0 if (wait and not out) else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            if not chunk:
                return out or None
            buf.extend(chunk)

    first = frames(True)
    if not first:
        return
    settings, url, max_jobs = first[0]
    try:
        store = OnlineStore.open(url, root=settings.root)
        writer = Writer(store, settings)
        writer.runtime()
        freeze_gc()
        deferred = store.path is not None
        if deferred:
            store.defer_sync()
    except Exception as exc:
        sock.sendall(_frame((_READY, False, _picklable(exc))))
        return
    sock.sendall(_frame((_READY, True, os.getpid())))
    answers = _Answers(sock, store, deferred)
    answers.start()
    stop_checkpoints = threading.Event()
    checkpoints = threading.Thread(
        target=_checkpoints, args=(store, stop_checkpoints), name="segone-checkpoint"
    )
    if deferred:
        checkpoints.start()
    queued: list[Any] = first[1:]
    max_events = MAX_GROUP_MESSAGES_SQLITE if deferred else MAX_GROUP_MESSAGES
    last_restart = 0.0
    try:
        while not answers.broken:
            got = frames(not queued)
            if got is None:
                if not queued:
                    return
                got = []
            queued += got
            batch, queued = _take(queued, max_jobs, max_events)
            try:
                results = commit_group(store, writer, [(name, args) for _, name, args in batch])
            except Exception as exc:  # the COMMIT failed: nobody in this batch is acknowledged
                results = [(False, exc)] * len(batch)
            answers.put([t for t, _, _ in batch], results)
            if (
                deferred
                and time.monotonic() - last_restart > 2.0
                and store.wal_size() > WAL_LIMIT_BYTES
            ):  # the next group starts the WAL over (at most every 2 s: this pauses us)
                store.checkpoint(on_writer=True)
                last_restart = time.monotonic()
    except ConnectionError:  # the server is gone
        return
    finally:
        stop_checkpoints.set()
        if checkpoints.is_alive():
            checkpoints.join(timeout=60)
        answers.stop()
        store.close()


# Events per transaction, past which the rest wait for the next one. On SQLite (deferred sync)
# groups are kept small: a writer that took every request queued made all the clients wait
# for one big group and then sent them all their answers at once, and while they came back
# it had nothing to do (it sat at 70-80% of a core at 128 clients). Groups of at most 64
# events keep several in flight, so the writer works on one while the answers of the last
# go out: +25% single events/s at 128 clients and +12% batches at 32, unchanged at 32
# clients (bench notes in BENCHMARKS.md). On PostgreSQL, whose server shares the machine's
# cores in our measurements, the smaller groups were not better (-10% at 128 clients).
MAX_GROUP_MESSAGES = 500
MAX_GROUP_MESSAGES_SQLITE = 64


def _take(
    queued: list[Any], max_jobs: int, max_events: int = MAX_GROUP_MESSAGES
) -> tuple[list[Any], list[Any]]:
    """The next group: requests in order, up to ``max_jobs`` and (after the first) about
    ``max_events`` events, so that big SDK batches under load still commit, and get their
    answers, every ``max_events`` events or so, and so that under load several groups are in
    flight."""
    events = 0
    n = 0
    while n < len(queued) and n < max_jobs:
        _, name, args = queued[n]
        size = len(args[1]) if name == "ingest" and len(args) > 1 else 1
        if n and events + size > max_events:
            break
        events += size
        n += 1
    return queued[:n], queued[n:]


def _checkpoints(store: OnlineStore, stop: threading.Event, every: float = 0.5) -> None:
    """Checkpoint the WAL twice a second beside the writer (instead of inside a COMMIT, where
    copying a thousand pages to the database would stall every request of that group)."""
    while not stop.wait(every):
        try:
            store.checkpoint()
        except Exception as exc:  # the next one will try again; SQLite stays consistent
            log.warning("WAL checkpoint failed: %s", type(exc).__name__)


class _Answers(threading.Thread):
    """Sends each group's answers once the group is on disk (one ``sync`` for every group
    committed meanwhile)."""

    def __init__(self, sock: socket.socket, store: OnlineStore, deferred: bool) -> None:
        super().__init__(name="segone-writer-answers", daemon=True)
        self.sock = sock
        self.store = store
        self.deferred = deferred
        self.broken = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put(self, tickets: list[int], results: list[tuple[bool, Any]]) -> None:
        self._queue.put((tickets, results))

    def stop(self) -> None:
        self._queue.put(None)
        self.join(timeout=60)

    def run(self) -> None:
        try:
            self._run()
        except BaseException:  # the main loop sees ``broken`` and stops: the server restarts us
            log.exception("the writer's answers thread failed")
            self.broken = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        done = False
        while not done:
            groups = [self._queue.get()]
            while not self._queue.empty():
                groups.append(self._queue.get())
            done = groups[-1] is None
            groups = [g for g in groups if g is not None]
            if not groups:
                continue
            failed: Exception | None = None
            if self.deferred:
                try:
                    self.store.sync()
                except Exception as exc:  # committed, but not known to be on disk: a 503
                    failed = exc
            data = b"".join(
                _answer_frame(t, ok and failed is None, _answer(ok, value, failed))
                for tickets, results in groups
                for t, (ok, value) in zip(tickets, results, strict=True)
            )
            try:
                self.sock.sendall(data)
            except OSError:  # the server is gone
                self.broken = True
                return


def _answer(ok: bool, value: Any, failed: Exception | None) -> Any:
    if failed is not None:
        return _picklable(failed)
    return value if ok else _picklable(value)


def freeze_gc() -> None:
    """Take what the process holds after start-up (the modules of pandas, scikit-learn, Ibis...,
    some 200,000 objects) out of the garbage collector's view: a full collection scanned them
    all, a 130-200 ms pause of every request in flight every few seconds. Only what is created
    from now on is collected (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m segone.online.writer FD``: started by ``ProcessCommitter`` only."""
    args = list(sys.argv[1:] if argv is None else argv)
    # the server decides when to stop: it closes the socket once its queue is empty
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the answers thread must get the GIL soon after its fsync returns, not up to 5 ms later
    # (the default switch interval) while the main thread works on the next group
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=int(args[0]))
    try:
        _serve_writer(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    main()


__all__ = [
    "WRITERS",
    "GroupCommitter",
    "ProcessCommitter",
    "Runtime",
    "Writer",
    "commit_group",
    "load_runtime",
    "person_of",
]
