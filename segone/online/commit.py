"""Group commit: many concurrent requests, one durable transaction.

Each request hands over a job (a function of the write transaction). While one transaction is
being committed, new jobs queue up; the next transaction takes all of them at once, so the cost
of a durable commit (an fsync) is shared by every request that arrived meanwhile. Each job runs
in its own savepoint: a job that fails is rolled back alone and only its request gets the error.
A request is answered only after the COMMIT that holds its job has returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any

from segone.online.store import OnlineStore, Tx

Job = Callable[[Tx], Any]


class GroupCommitter:
    """``await committer.submit(job)`` returns ``job(tx)``'s result once it is committed."""

    def __init__(self, store: OnlineStore, *, max_jobs: int = 1000) -> None:
        self.store = store
        self.max_jobs = max_jobs
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

    async def submit(self, job: Job) -> Any:
        return await self.enqueue(job)

    def enqueue(self, job: Job) -> asyncio.Future[Any]:
        """Queue ``job`` now (jobs run in the order they were queued); the future resolves
        after its commit."""
        if self._task is None or self._wake is None:
            raise RuntimeError("the group committer is not running (Engine.start() first)")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
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
        try:
            results = await loop.run_in_executor(self._thread, self._commit, [j for j, _ in batch])
        except Exception as exc:  # the COMMIT itself failed: nobody in this batch is acknowledged
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), (ok, value) in zip(batch, results, strict=True):
            if fut.done():  # the request was cancelled (client went away); its job is committed
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _commit(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        out: list[tuple[bool, Any]] = []
        with self.store.write() as tx:
            for job in jobs:
                try:
                    with tx.savepoint():
                        out.append((True, job(tx)))
                except Exception as exc:
                    out.append((False, exc))
        self.transactions += 1
        self.jobs += len(jobs)
        return out

    def run_sync(self, job: Job) -> Any:
        """Run one job in its own transaction from synchronous code (CLI, tests, build)."""
        with self.store.write() as tx:
            return job(tx)
