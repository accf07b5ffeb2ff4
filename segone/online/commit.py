"""Group commit: write operations run together in one transaction, each in its own savepoint,
each answered only after that COMMIT.

A ``Committer`` takes operations (``segone.online.ops``) and resolves each one's future once
it is committed. Three implement it: ``GroupCommitter`` (``[server] writer = "thread"``: a
writer thread of the server process), ``segone.online.process.ProcessCommitter`` (the
default: a writer process), and ``FakeCommitter``, in memory, for tests of the code that
submits operations — segone's ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from segone.online.ops import Ingest, Operation
from segone.online.store import OnlineStore, OnlineStoreError
from segone.online.writer import Writer

#: ``[server] writer``: where the write operations run.
WRITERS = ("process", "thread")


class Committer(Protocol):
    """Runs write operations with group commit; ``start()`` before use, ``stop()`` after."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Commit (and answer) what is queued, then stop."""

    def enqueue(self, op: Operation) -> asyncio.Future[Any]:
        """Queue ``op`` now (operations run in the order they are queued); the future
        resolves with its result after its commit, or fails with its error."""

    async def submit(self, op: Operation) -> Any:
        """``await enqueue(op)``."""


def commit_group(
    store: OnlineStore, writer: Writer, jobs: Sequence[Operation]
) -> list[tuple[bool, Any]]:
    """Run ``jobs`` in one transaction, each in its own savepoint; (ok, result or exception)
    for each. Raises only when the transaction itself fails (then nothing of it is kept).

    Consecutive ``Ingest`` jobs run together first (``Writer.ingest_many``, one savepoint);
    should that fail, they run again one by one, so that only the failing one gets an error."""
    out: list[tuple[bool, Any]] = []
    with store.write() as tx:
        i = 0
        while i < len(jobs):
            j = i + 1
            if isinstance(jobs[i], Ingest):
                while j < len(jobs) and isinstance(jobs[j], Ingest):
                    j += 1
            if j - i > 1:
                try:
                    with tx.savepoint():
                        results = writer.ingest_many(
                            tx, [op for op in jobs[i:j] if isinstance(op, Ingest)]
                        )
                    out += [(True, r) for r in results]
                    i = j
                    continue
                except Exception:
                    pass  # rolled back: each on its own below
            for op in jobs[i:j]:
                try:
                    with tx.savepoint():
                        out.append((True, writer.apply(op, tx)))
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
    """``await committer.submit(op)`` returns the operation's result once committed; the
    operations run on one writer thread of this process."""

    def __init__(
        self, writer: Writer, *, max_jobs: int = 1000, max_pending: int = MAX_PENDING
    ) -> None:
        self.writer = writer
        self.max_jobs = max_jobs
        self.max_pending = max_pending
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
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

    async def submit(self, op: Operation) -> Any:
        return await self.enqueue(op)

    def enqueue(self, op: Operation) -> asyncio.Future[Any]:
        """Queue an operation now (they run in the order they were queued); the future
        resolves after its commit."""
        if self._task is None or self._wake is None:
            raise RuntimeError("the group committer is not running (Engine.start() first)")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if isinstance(op, Ingest) and len(self._pending) >= self.max_pending:
            fut.set_exception(_behind())
            return fut
        self._pending.append((op, fut))
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


class FakeCommitter:
    """A committer in memory, for tests of the code that submits operations: every operation
    is recorded in ``submitted`` and answered at once by ``handler`` (an exception it raises
    fails the operation), with no thread, process or group."""

    def __init__(self, handler: Callable[[Operation], Any]) -> None:
        self.handler = handler
        self.submitted: list[Operation] = []
        self.running = False

    @classmethod
    def over(cls, writer: Writer) -> FakeCommitter:
        """Each operation committed alone, on the calling thread, through ``writer``."""

        def commit(op: Operation) -> Any:
            [(ok, value)] = commit_group(writer.store, writer, [op])
            if not ok:
                raise value
            return value

        return cls(commit)

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def enqueue(self, op: Operation) -> asyncio.Future[Any]:
        if not self.running:
            raise RuntimeError("the fake committer is not running (start() first)")
        self.submitted.append(op)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self.handler(op))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    async def submit(self, op: Operation) -> Any:
        return await self.enqueue(op)
