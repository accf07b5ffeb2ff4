"""Write operations are typed values, and the code that submits them can be tested against an
in-memory committer (``FakeCommitter``), as httpx code is against ``MockTransport``."""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from segone.config import Settings
from segone.exceptions import NotFoundError
from segone.online.commit import FakeCommitter, commit_group
from segone.online.engine import Engine
from segone.online.ops import Erase, Feedback, Ingest, Operation, Quarantine, Suppress, size
from segone.online.store import OnlineStore
from segone.online.writer import Writer

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def track(mid: str, user: str) -> dict[str, Any]:
    t = NOW.isoformat()
    return {
        "type": "track",
        "messageId": mid,
        "userId": user,
        "event": "Product Viewed",
        "properties": {},
        "timestamp": t,
        "receivedAt": t,
    }


def test_the_engine_submits_typed_operations_stamped_with_its_clock(tmp_path: Path) -> None:
    seen: list[Operation] = []

    def handler(op: Operation) -> Any:
        seen.append(op)
        if isinstance(op, Ingest):
            return {"accepted": len(op.messages), "duplicates": 0}
        if isinstance(op, Erase):
            return None  # nobody by that identifier
        return None

    fake = FakeCommitter(handler)
    store = OnlineStore.open(f"sqlite:///{tmp_path / 'o.db'}")
    engine = Engine(store, Settings.from_dict(tmp_path, {}), clock=lambda: NOW, committer=fake)

    async def run() -> tuple[Any, ...]:
        await engine.start()
        try:
            got = await engine.ingest([track("m1", "u1")], [{"reason": "bad", "message": "x"}])
            gone = await engine.erase("user_id:nobody")
            await engine.quarantine([{"reason": "r", "message": "y"}])
            return got, gone
        finally:
            await engine.stop()

    try:
        got, gone = asyncio.run(run())
    finally:
        store.close()
    assert got == {"accepted": 1, "duplicates": 0} and gone is None
    assert seen == fake.submitted
    assert seen == [
        Ingest(NOW, [track("m1", "u1")], [{"reason": "bad", "message": "x"}]),
        Erase("user_id:nobody", NOW),
        Quarantine([{"reason": "r", "message": "y"}]),
    ]
    assert [size(op) for op in seen] == [1, 1, 1]


def test_a_fake_over_a_writer_commits_for_real_and_fails_alone(tmp_path: Path) -> None:
    store = OnlineStore.open(f"sqlite:///{tmp_path / 'o.db'}")
    fake = FakeCommitter.over(Writer(store, Settings.from_dict(tmp_path, {})))

    async def run() -> Any:
        await fake.start()
        first = await fake.submit(Ingest(NOW, [track("m1", "u1"), track("m2", "u1")]))
        again = await fake.submit(Ingest(NOW, [track("m1", "u1")]))
        with pytest.raises(NotFoundError):
            await fake.submit(Feedback(NOW, {"decision_id": "nope", "kind": "click"}))
        await fake.submit(Suppress("email:a@x.com", {"channels": "*"}))
        await fake.stop()
        return first, again

    try:
        first, again = asyncio.run(run())
        assert first == {"accepted": 2, "duplicates": 0}
        assert again == {"accepted": 0, "duplicates": 1}
        with store.read() as tx:
            assert tx.count("events") == 2
            assert tx.docs.get("suppression", ["email:a@x.com"])
    finally:
        store.close()


def test_operations_cross_to_the_writer_process_as_they_are() -> None:
    """Frozen dataclasses of plain values: they pickle (the writer process gets them so)."""
    op = Ingest(NOW, [track("m1", "u1")], [{"reason": "r", "message": "x"}])
    assert pickle.loads(pickle.dumps(op)) == op
    with pytest.raises(AttributeError):
        op.now = NOW  # type: ignore[misc]


def test_something_else_is_not_an_operation(tmp_path: Path) -> None:
    store = OnlineStore.open(f"sqlite:///{tmp_path / 'o.db'}")
    writer = Writer(store, Settings.from_dict(tmp_path, {}))
    try:
        [(ok, err)] = commit_group(store, writer, [("ingest", (NOW, []))])  # type: ignore[list-item]
        assert not ok and isinstance(err, TypeError) and "not a write operation" in str(err)
    finally:
        store.close()
