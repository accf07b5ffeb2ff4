"""The writer process: the write operations run on another core than HTTP and decisions.

``ProcessCommitter`` (``[server] writer = "process"``, the default for ``segone serve``) starts
``python -m segone.online.writer FD`` and talks to it over a socket pair. The per-event work
(identity stitching, the live profile, every segment, the stage) then runs with no GIL shared
with the server. The writer process exits when the server's end of the socket closes, which
includes the server being killed; a writer that dies is replaced, and the requests it had not
answered fail with a 503 (they were not acknowledged, and a retry is de-duplicated by
``messageId``).
"""

from __future__ import annotations

import asyncio
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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from segone.config import Settings
from segone.online.commit import (
    MAX_PENDING,
    RESTART_WAIT,
    _behind,
    _fail,
    _resolve,
    _restarting,
    commit_group,
)
from segone.online.ops import OPERATIONS, Ingest, Operation, size
from segone.online.store import WAL_LIMIT_BYTES, OnlineStore, OnlineStoreError
from segone.online.writer import Writer

log = logging.getLogger(__name__)


# Frames on the socket: a 4-byte big-endian length, a kind byte, then the content. Requests are
# (ticket, operation); answers (ticket, ok, result or exception). Only the server and the
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


def _request_frame(ticket: int, op: Operation) -> bytes:
    if isinstance(op, Ingest) and not op.rejected:
        try:  # [ticket, now, messages]
            return _packed(_INGEST, orjson.dumps([ticket, op.now.isoformat(), op.messages]))
        except (TypeError, AttributeError, orjson.JSONEncodeError):
            pass  # (e.g. an integer beyond 64 bits): as a pickle
    return _frame((ticket, op))


def _answer_frame(ticket: int, ok: bool, value: Any) -> bytes:
    if ok and type(value) is dict and value.keys() == {"accepted", "duplicates"}:
        return _packed(_INGESTED, orjson.dumps([ticket, value["accepted"], value["duplicates"]]))
    return _frame((ticket, ok, value))


def _decode(kind: bytes, data: bytes) -> Any:
    if kind == _PICKLE:
        return pickle.loads(data)
    doc = orjson.loads(data)
    if kind == _INGEST:
        return (doc[0], Ingest(datetime.fromisoformat(doc[1]), doc[2]))
    return (doc[0], True, {"accepted": doc[1], "duplicates": doc[2]})


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return OnlineStoreError(f"the online store's writer failed: {type(exc).__name__}")


class ProcessCommitter:
    """A ``Committer`` whose operations run in a writer process."""

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

    async def submit(self, op: Operation) -> Any:
        return await self.enqueue(op)

    def enqueue(self, op: Operation) -> asyncio.Future[Any]:
        if self._task is None:
            raise RuntimeError("the writer process is not running (Engine.start() first)")
        if not isinstance(op, OPERATIONS):
            raise TypeError(f"not a write operation: {type(op).__name__}")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        since = self._down_since
        down = since is not None
        if since is not None and (self._stopping or time.monotonic() - since > self.restart_wait):
            fut.set_exception(_restarting())
            return fut
        if isinstance(op, Ingest) and len(self._futures) >= self.max_pending:
            fut.set_exception(_behind())
            return fut
        ticket = next(self._tickets)
        try:
            frame = _request_frame(ticket, op)
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
                results = commit_group(store, writer, [op for _, op in batch])
            except Exception as exc:  # the COMMIT failed: nobody in this batch is acknowledged
                results = [(False, exc)] * len(batch)
            answers.put([t for t, _ in batch], results)
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
        k = size(queued[n][1])
        if n and events + k > max_events:
            break
        events += k
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
    """The writer process (``python -m segone.online.writer FD``): started by
    ``ProcessCommitter`` only."""
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
