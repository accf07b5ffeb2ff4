"""The writer's group commit: requests of one group share a transaction; one that fails is
rolled back alone; ingest requests grouped together give what they give one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from segone.config import Settings
from segone.online.commit import commit_group
from segone.online.ops import Erase, Ingest, Quarantine, Suppress
from segone.online.store import OnlineStore
from segone.online.writer import Writer

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def track(mid: str, user: str, event: str = "Product Viewed", **props: Any) -> dict[str, Any]:
    t = (NOW - timedelta(minutes=5)).isoformat()
    return {
        "type": "track",
        "messageId": mid,
        "userId": user,
        "event": event,
        "properties": props,
        "timestamp": t,
        "receivedAt": t,
    }


def open_writer(root: Path) -> tuple[OnlineStore, Writer]:
    store = OnlineStore.open(f"sqlite:///{root / 'online.db'}")
    return store, Writer(store, Settings.from_dict(root, {}))


def requests() -> list[list[dict[str, Any]]]:
    return [
        [track("m1", "u1", category="Books")],
        [track("m2", "u2"), track("m3", "u1", "Order Completed", order_id="o1", revenue=20)],
        [track("m1", "u1")],  # an SDK retry of m1, in the same group
        [track("m4", "u3", category="Garden"), track("m4", "u3")],
    ]


def state(store: OnlineStore) -> dict[str, Any]:
    with store.read() as tx:
        people = {}
        for user in ("u1", "u2", "u3"):
            pid = tx.identity.lookup([f"user_id:{user}"]).get(f"user_id:{user}")
            doc = tx.docs.get("person", [pid]).get(pid) if pid else None
            people[user] = None if doc is None else (doc["agg"], doc.get("rt"))
        return {"events": tx.count("events"), "people": people}


def test_grouped_ingest_equals_one_by_one(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    grouped, w1 = open_writer(tmp_path / "a")
    alone, w2 = open_writer(tmp_path / "b")
    try:
        together = commit_group(grouped, w1, [Ingest(NOW, r) for r in requests()])
        each = [commit_group(alone, w2, [Ingest(NOW, r)])[0] for r in requests()]
        assert together == each
        assert [r for _, r in together] == [
            {"accepted": 1, "duplicates": 0},
            {"accepted": 2, "duplicates": 0},
            {"accepted": 0, "duplicates": 1},
            {"accepted": 1, "duplicates": 1},
        ]
        assert state(grouped) == state(alone)
        assert state(grouped)["people"]["u1"][0]["n"]["orders"] == 1
    finally:
        grouped.close()
        alone.close()


def test_a_failing_request_is_rolled_back_alone(tmp_path: Path) -> None:
    store, writer = open_writer(tmp_path)
    broken = {"type": "track", "userId": "u9", "event": "E"}  # no messageId: a KeyError
    try:
        out = commit_group(
            store,
            writer,
            [
                Ingest(NOW, [track("a1", "u1")]),
                Ingest(NOW, [track("a2", "u2"), broken]),
                Ingest(NOW, [track("a3", "u3")]),
                Erase("user_id:u1"),
            ],
        )
        assert [ok for ok, _ in out] == [True, False, True, True]
        assert isinstance(out[1][1], KeyError)
        with store.read() as tx:
            # a2 went with its request; u1's event went with u1 (erased in the same group)
            assert tx.events.seen(["a1", "a2", "a3"]) == {"a3"}
    finally:
        store.close()


def test_the_writer_process_writes_to_the_servers_store(tmp_path: Path, monkeypatch: Any) -> None:
    """A store opened by a relative URL (from the working directory) is the one the writer
    process writes, whatever the project directory."""
    import asyncio

    from segone.online.engine import Engine

    (tmp_path / "project").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    store = OnlineStore.open("sqlite:///rel.db")
    engine = Engine(store, Settings.from_dict(tmp_path / "project", {}), writer="process")

    async def run() -> dict[str, int]:
        await engine.start()
        try:
            return await engine.ingest([track("w1", "u1")])
        finally:
            await engine.stop()

    try:
        assert asyncio.run(run()) == {"accepted": 1, "duplicates": 0}
        with store.read() as tx:
            assert tx.events.seen(["w1"]) == {"w1"}
        assert not (tmp_path / "project" / "rel.db").exists()
    finally:
        store.close()


def test_frames_between_the_server_and_its_writer_round_trip() -> None:
    """The hot path (an ingest request without rejected rows, and its answer) travels as JSON,
    everything else as a pickle; both decode to what was sent."""
    from segone.online.process import _answer_frame, _request_frame, _split

    msgs = [track("f1", "u1", category="Books", price=9.5)]
    sent = [
        (1, Ingest(NOW, msgs)),
        (2, Ingest(NOW.replace(microsecond=0), msgs, [])),
        (3, Ingest(NOW, msgs, [{"reason": "r", "message": {}, "received_at": NOW}])),
        (4, Ingest(NOW, [track("f2", "u2", big=2**70)])),  # beyond JSON's 64-bit integers
        (5, Erase("user_id:u1")),
    ]
    frames = b"".join(_request_frame(*r) for r in sent)
    kinds = []
    offset = 0
    while offset < len(frames):
        n = int.from_bytes(frames[offset : offset + 4], "big")
        kinds.append(frames[offset + 4 : offset + 5])
        offset += 4 + n
    assert kinds == [b"I", b"I", b"P", b"P", b"P"]
    buf = bytearray(frames[:-3])  # the last frame incomplete: it stays in the buffer
    got = _split(buf)
    assert got[0] == (1, Ingest(NOW, msgs))
    assert got[1] == (2, Ingest(NOW.replace(microsecond=0), msgs))
    assert got[1][1].now.tzinfo is not None
    assert got[2:] == sent[2:4]
    buf += frames[-3:]
    assert _split(buf) == [sent[4]] and not buf
    answers = [
        _answer_frame(1, True, {"accepted": 1, "duplicates": 0}),
        _answer_frame(2, False, KeyError("messageId")),
        _answer_frame(3, True, {"person_id": "p", "deleted": {"events": 1}}),
    ]
    back = _split(bytearray(b"".join(answers)))
    assert back[0] == (1, True, {"accepted": 1, "duplicates": 0})
    assert back[1][:2] == (2, False) and isinstance(back[1][2], KeyError)
    assert back[2] == (3, True, {"person_id": "p", "deleted": {"events": 1}})


def test_a_request_that_cannot_be_passed_on_fails_alone(tmp_path: Path) -> None:
    """Something the frame cannot carry (nested too deeply to pickle) fails that request at
    once; the writer keeps serving and the server still stops."""
    import asyncio

    from segone.online.process import ProcessCommitter
    from segone.online.store import OnlineStoreError

    store, _ = open_writer(tmp_path)
    store.close()
    committer = ProcessCommitter(
        Settings.from_dict(tmp_path, {}), f"sqlite:///{tmp_path}/online.db"
    )
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]

    async def run() -> dict[str, int]:
        await committer.start()
        try:
            bad = committer.enqueue(Quarantine([{"reason": "r", "message": deep}]))
            try:
                await bad
            except OnlineStoreError as exc:
                assert "cannot be passed on" in str(exc)
            else:
                raise AssertionError("a frame that cannot be built was sent")
            return dict(await committer.submit(Ingest(NOW, [track("d1", "u1")])))
        finally:
            await asyncio.wait_for(committer.stop(), 60)

    assert asyncio.run(run()) == {"accepted": 1, "duplicates": 0}


def test_rejected_messages_are_kept_as_json_text_or_a_note() -> None:
    from segone.api.app import _storable

    assert _storable({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert _storable("as sent") == "as sent"
    deep: list[Any] = []
    for _ in range(300):  # beyond orjson's 255 levels
        deep = [deep]
    assert _storable(deep).startswith("(not kept")


def test_the_fast_path_reads_a_large_body_within_the_cap_whole() -> None:
    import asyncio

    from starlette.datastructures import Headers

    from segone.api.app import _receive_body

    chunk = b"x" * (1 << 20)  # 10 of them: more than the 8 MiB drained past a cap

    async def run() -> bytes:
        left = [10]

        async def receive() -> dict[str, Any]:
            left[0] -= 1
            return {"type": "http.request", "body": chunk, "more_body": left[0] > 0}

        return await _receive_body(receive, Headers({}), 16 << 20)

    assert len(asyncio.run(run())) == 10 << 20


def test_a_group_holds_about_500_events_at_most() -> None:
    from segone.online.process import MAX_GROUP_MESSAGES, _take

    batch = [track(f"b{i}", "u1") for i in range(20)]
    queued = [(t, Ingest(NOW, batch)) for t in range(100)] + [(100, Erase("u"))]
    group, rest = _take(queued, 1000)
    assert len(group) == MAX_GROUP_MESSAGES // 20 and rest[0][0] == len(group)
    huge = [(0, Ingest(NOW, batch * 50)), (1, Ingest(NOW, batch))]
    assert _take(huge, 1000) == (huge[:1], huge[1:])  # one request alone may be larger
    assert _take(queued, 3)[0] == queued[:3]
    assert len(_take(queued, 1000, 64)[0]) == 3  # 60 events: a fourth batch would pass 64


def test_a_serving_process_freezes_its_heap_once_started(tmp_path: Path) -> None:
    """``segone serve`` takes its start-up heap out of the collector's view (a full collection
    of it paused every request for 130-200 ms); an embedded app leaves the process alone."""
    import gc

    import httpx

    from segone.api import background_server, create_app
    from segone.online.engine import Engine

    settings = Settings.from_dict(
        tmp_path, {"server": {"online_url": f"sqlite:///{tmp_path}/o.db"}}
    )
    gc.unfreeze()
    try:
        for freeze, frozen in ((False, False), (True, True)):
            store = OnlineStore.open(settings.server.online_url)
            app = create_app(settings, Engine(store, settings, writer="thread"), freeze_gc=freeze)
            with background_server(app) as url:
                assert httpx.get(url + "/health").status_code == 200
                assert (gc.get_freeze_count() > 0) is frozen
            store.close()
    finally:
        gc.unfreeze()


def test_ingest_is_refused_at_once_while_the_writer_is_behind(tmp_path: Path) -> None:
    """Past ``max_pending`` requests waiting for the writer, an ingest request fails at once (a
    503 to the client, which retries) instead of queueing without bound; other operations still
    queue, and once the writer catches up ingest is accepted again."""
    import asyncio

    import pytest

    from segone.online.commit import GroupCommitter
    from segone.online.process import ProcessCommitter
    from segone.online.store import OnlineStoreError

    store, writer = open_writer(tmp_path)
    committers = [
        GroupCommitter(writer, max_pending=2),
        ProcessCommitter(Settings.from_dict(tmp_path, {}), store.url, max_pending=2),
    ]

    async def run(committer: Any, k: int) -> None:
        await committer.start()
        try:
            waiting = [committer.enqueue(Ingest(NOW, [track(f"{k}-{i}", "u1")])) for i in range(2)]
            refused = committer.enqueue(Ingest(NOW, [track(f"{k}-x", "u1")]))
            other = committer.enqueue(Suppress(f"email:{k}@x.com", {"channels": "*"}))
            with pytest.raises(OnlineStoreError, match="behind"):
                await refused
            assert [r["accepted"] for r in await asyncio.gather(*waiting)] == [1, 1]
            await other
            assert (await committer.submit(Ingest(NOW, [track(f"{k}-y", "u1")])))["accepted"] == 1
        finally:
            await asyncio.wait_for(committer.stop(), 60)

    try:
        for k, committer in enumerate(committers):
            asyncio.run(run(committer, k))
        with store.read() as tx:
            assert tx.events.seen(["0-x", "1-x"]) == set()
            assert tx.events.seen(["0-0", "0-y", "1-1", "1-y"]) == {"0-0", "0-y", "1-1", "1-y"}
    finally:
        store.close()


def test_a_new_writer_connection_keeps_the_deferred_sync_mode(tmp_path: Path) -> None:
    """After a failed COMMIT the writer connection is replaced; the new one commits the way
    ``defer_sync`` set up (not with SQLite's in-COMMIT checkpoints and full sync)."""
    store = OnlineStore.open(f"sqlite:///{tmp_path}/o.db")
    try:
        store.defer_sync()
        store._writer = None  # what a failed COMMIT leaves
        with store.write() as tx:
            pragmas = [
                tx._sql.rows(f"PRAGMA {p}")[0][0] for p in ("synchronous", "wal_autocheckpoint")
            ]
        assert pragmas == [1, 0]  # NORMAL, and no checkpoints inside COMMIT
    finally:
        store.close()


def test_requests_wait_for_a_replaced_writer_process(tmp_path: Path) -> None:
    """When the writer process dies, what it was given fails (503: the client retries); what
    comes next waits for the replacement and is committed by it. Past ``restart_wait`` the
    waiting requests fail instead of hanging."""
    import asyncio
    import os
    import signal

    import pytest

    from segone.online.process import ProcessCommitter
    from segone.online.store import OnlineStoreError

    store, _ = open_writer(tmp_path)
    settings = Settings.from_dict(tmp_path, {})

    async def killed(committer: ProcessCommitter) -> None:
        assert committer._proc is not None
        os.kill(committer._proc.pid, signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 30
        while committer._down_since is None:  # the server notices (EOF on the socket)
            assert asyncio.get_running_loop().time() < deadline, "the kill went unnoticed"
            await asyncio.sleep(0.01)

    async def waits() -> None:
        committer = ProcessCommitter(settings, store.url, restart_wait=60)
        await committer.start()
        try:
            first = committer._proc.pid if committer._proc else None
            await killed(committer)
            result = await asyncio.wait_for(
                committer.submit(Ingest(NOW, [track("after", "u1")])), 60
            )
            assert result["accepted"] == 1
            assert committer._proc is not None and committer._proc.pid != first
            assert committer.restarts == 1
        finally:
            await asyncio.wait_for(committer.stop(), 60)

    async def gives_up() -> None:
        committer = ProcessCommitter(settings, store.url, restart_wait=0.05)
        await committer.start()
        try:
            await killed(committer)
            with pytest.raises(OnlineStoreError, match="restarting"):
                await committer.submit(Ingest(NOW, [track("late", "u1")]))
            deadline = asyncio.get_running_loop().time() + 60
            while committer._down_since is not None:  # the replacement comes up all the same
                assert asyncio.get_running_loop().time() < deadline, "no new writer in 60 s"
                await asyncio.sleep(0.05)
            assert (await committer.submit(Ingest(NOW, [track("later", "u1")])))["accepted"] == 1
        finally:
            await asyncio.wait_for(committer.stop(), 60)

    try:
        asyncio.run(waits())
        asyncio.run(gives_up())
        with store.read() as tx:
            assert tx.events.seen(["after", "late", "later"]) == {"after", "later"}
    finally:
        store.close()


USERS = ["u1", "u2", "u3"]
ANONS = ["a1", "a2", "a3"]
EMAILS = ["x@shop.com", "y@shop.com"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "order", "page", "identify", "alias"]))
    who: dict[str, Any] = {}
    if draw(st.booleans()):
        who["userId"] = draw(st.sampled_from(USERS))
    if draw(st.booleans()) or not who:
        who["anonymousId"] = draw(st.sampled_from(ANONS))
    t = (NOW - timedelta(minutes=draw(st.integers(0, 5000)))).isoformat()
    base = {"messageId": draw(st.sampled_from([f"m{i}" for i in range(40)])), "timestamp": t}
    base["receivedAt"] = t
    if kind == "alias":
        prev = draw(st.sampled_from(ANONS))
        return {**base, "type": "alias", "userId": draw(st.sampled_from(USERS)), "previousId": prev}
    if kind == "identify":
        traits = {"email": draw(st.sampled_from(EMAILS))} if draw(st.booleans()) else {}
        return {**base, **who, "type": "identify", "traits": traits}
    if kind == "page":
        cat = draw(st.sampled_from(["Books", "Garden", "Toys"]))
        return {**base, **who, "type": "page", "name": "P", "properties": {"category": cat}}
    props: dict[str, Any] = {"category": draw(st.sampled_from(["Books", "Garden", "Toys"]))}
    event = "Product Viewed"
    if kind == "order":
        event = "Order Completed"
        props |= {"order_id": base["messageId"], "revenue": draw(st.integers(1, 300))}
    return {**base, **who, "type": "track", "event": event, "properties": props}


def people(store: OnlineStore) -> list[Any]:
    """Everything stored about people, with person ids replaced by their identifiers."""
    with store.read() as tx:
        rows = tx._sql.rows("SELECT identifier, person_id FROM identities ORDER BY identifier")
        name: dict[str, str] = {}
        for ident, pid in rows:
            name[pid] = name.get(pid, "") + ident + ","
        docs = tx._sql.rows("SELECT key, doc, updated_at FROM docs WHERE kind = 'person'")
        journey = tx._sql.rows("SELECT person_id, kind FROM journey ORDER BY id")
        events = tx._sql.rows("SELECT message_id, person_id FROM events ORDER BY seq")
    out_docs = sorted(
        (name.get(k, "?"), orjson.loads(d)["agg"], orjson.loads(d).get("rt"), at)
        for k, d, at in docs
    )
    return [
        out_docs,
        [(name.get(p, "?"), k) for p, k in journey],
        [(m, name.get(p, "?")) for m, p in events],
    ]


@settings(max_examples=40, deadline=None)
@given(
    msgs=st.lists(messages(), min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 6), min_size=30, max_size=30),
)
def test_a_group_of_requests_stores_what_they_store_one_by_one(
    msgs: list[dict[str, Any]], cuts: list[int]
) -> None:
    """Ingest requests grouped into one transaction (where a person's documents are read and
    written once for the group) store exactly what each message alone in its own transaction
    stores: identities and merges, profiles, journeys, events."""
    import tempfile

    reqs: list[tuple[datetime, list[dict[str, Any]]]] = []
    i = 0
    for n in cuts:
        if i >= len(msgs):
            break
        reqs.append((NOW + timedelta(seconds=len(reqs)), msgs[i : i + n]))
        i += n
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        (root / "b").mkdir()
        grouped, w1 = open_writer(root / "a")
        alone, w2 = open_writer(root / "b")
        try:
            together = commit_group(grouped, w1, [Ingest(*r) for r in reqs])
            assert all(ok for ok, _ in together), together
            counts = []
            for now, batch in reqs:
                accepted = duplicates = 0
                for m in batch:
                    ok, r = commit_group(alone, w2, [Ingest(now, [m])])[0]
                    assert ok, r
                    accepted += r["accepted"]
                    duplicates += r["duplicates"]
                counts.append({"accepted": accepted, "duplicates": duplicates})
            assert [r for _, r in together] == counts
            assert people(grouped) == people(alone)
        finally:
            grouped.close()
            alone.close()


def test_the_writer_process_enters_segments_before_any_build(tmp_path: Path) -> None:
    """A project never built has no published catalogue, but its segments (the built-in ones
    and its segment files) hold in real time all the same: the writer process loads them on its
    first message as the in-process writer does, so people enter them and the journey says so."""
    import asyncio

    from segone.online.engine import Engine

    root = tmp_path / "project"
    root.mkdir()
    store = OnlineStore.open(f"sqlite:///{tmp_path / 'online.db'}")
    engine = Engine(store, Settings.from_dict(root, {}), writer="process")
    now = datetime.now(UTC).isoformat()  # "pricing views in the last 30 days" of the clock
    page = {
        "type": "page",
        "name": "Pricing",
        "userId": "u1",
        "messageId": "pr-1",
        "timestamp": now,
        "receivedAt": now,
        "properties": {"path": "/pricing"},
    }

    async def run() -> dict[str, int]:
        await engine.start()
        try:
            return await engine.ingest([page])
        finally:
            await engine.stop()

    try:
        assert asyncio.run(run())["accepted"] == 1
        with store.read() as tx:
            (pid,) = tx.identity.lookup(["user_id:u1"]).values()
            kinds = {(j.kind, j.detail.get("segment")) for j in tx.journey.of(pid)}
        assert ("segment_entered", "pricing_page_visitors") in kinds, kinds
    finally:
        store.close()
