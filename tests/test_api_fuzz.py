"""No input breaks a person: odd but JSON-legal values on the real server (uvicorn on loopback,
the writer process, a real SQLite file, a published catalogue and the example segments), sent
as single messages and batches through the fast path and the FastAPI routes. Never a 5xx, and
every person an event was accepted for stays readable, with as many events as the store holds.

The seeded fuzz is ``tests/segment_fuzz.py`` (also runnable against ``segone serve``); the
state machine (Hypothesis) sends random sequences of identify/track/page/alias/batch with
adversarial values for a few people, each followed by profile reads and decisions."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment_fuzz
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from segone.api import background_server, create_app
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.repair import repair
from segone.online.store import OnlineStore

WRITE, DECIDE, ADMIN = "wk-fuzz", "dk-fuzz", "adm-fuzz"


class Server:
    def __init__(
        self, url: str, app: Any, store: OnlineStore, settings: Settings, db: Path
    ) -> None:
        self.app = app
        self.http = httpx.Client(base_url=url, timeout=30)
        self.store = store
        self.settings = settings
        self.db = db

    def send(self, path: str, body: Any) -> httpx.Response:
        # as a client's JSON library writes it (json.dumps: no NaN/Infinity literals)
        return self.http.post(
            path,
            content=json.dumps(body, allow_nan=False),
            headers={"Content-Type": "application/json"},
            auth=(WRITE, ""),
        )

    def profile(self, identifier: str) -> httpx.Response:
        return self.http.get(
            f"/v1/profiles/{identifier}", headers={"Authorization": f"Bearer {ADMIN}"}
        )

    def decide(self, identifier: str) -> httpx.Response:
        return self.http.post(
            "/v1/decide",
            json={"identifier": identifier, "placement": "home", "limit": 3},
            headers={"Authorization": f"Bearer {DECIDE}"},
        )

    def stored(self, sql: str, *params: Any) -> Any:
        """One value read from the online store's file (its own read-only connection)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return conn.execute(sql, params).fetchone()[0]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server as ``segone serve`` runs it (writer process), one for the module."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    (root / "segments").mkdir()
    examples = resources.files("segone.segments").joinpath("examples/examples.yaml")
    shutil.copy(str(examples), root / "segments" / "examples.yaml")
    db = root / "online.db"
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{db}",
                "write_keys": [WRITE],
                "decide_tokens": [DECIDE],
                "admin_tokens": [ADMIN],
            }
        },
    )
    store = OnlineStore.open(settings.server.online_url)
    with store.write() as tx:  # what a build would have published: a catalogue
        tx.docs.put(
            "catalogue",
            {
                f"p{i}": {"category": "Books" if i < 5 else "Garden", "popularity": 0.01}
                for i in range(20)
            },
        )
        tx.meta.set("published_version", datetime.now(UTC).isoformat())
    app = create_app(settings, Engine(store, settings))
    with background_server(app) as url:
        srv = Server(url, app, store, settings, db)
        yield srv
        srv.http.close()
    store.close()


@pytest.fixture(params=["fast path", "routes"])
def server(request: pytest.FixtureRequest, real_server: Server) -> Iterator[Server]:
    """The module's server, and (``routes``) the same without its fast path: the hot
    endpoints then go through their FastAPI routes."""
    fast = real_server.app.fast
    if request.param == "routes":
        real_server.app.fast = None
    try:
        yield real_server
    finally:
        real_server.app.fast = fast


def test_the_seeded_fuzz_gets_no_5xx_and_leaves_everyone_readable(server: Server) -> None:
    rep = segment_fuzz.run(
        server.http,
        write_key=WRITE,
        decide_token=DECIDE,
        admin_token=ADMIN,
        seed=7,
        people=10,
        requests_per_person=8,
        prefix=f"fz{uuid.uuid4().hex[:6]}",
    )
    assert rep.server_errors == 0, rep.summary()
    assert not rep.unreadable, rep.summary()
    # the fuzz did reach the people, and some of what it sent was refused (400 naming a field)
    assert len(rep.accepted_people) == 10 and rep.statuses[200] > rep.statuses[400] > 0


def test_odd_ecommerce_values_are_dropped_named_and_kept_with_the_event(server: Server) -> None:
    uid = f"odd-{uuid.uuid4().hex[:8]}"
    r = server.send(
        "/v1/track",
        {
            "userId": uid,
            "event": "Order Completed",
            "messageId": f"m-{uid}",
            "properties": {
                "order_id": "o-odd-1",
                "total": "NaN",
                "revenue": {},
                "discount": "inf",
                "products": [
                    {"product_id": "p1", "category": "Books", "price": 9223372036854775807},
                    {"product_id": "p2", "category": "Books", "price": 1e300, "quantity": 2},
                    {"product_id": "p3", "price": "12.50", "quantity": "-Infinity"},
                    "p4",
                ],
            },
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    fields = {d["field"]: d for d in body["dropped"]}
    assert set(fields) == {
        "properties.total",
        "properties.revenue",
        "properties.discount",
        "properties.products[0].price",
        "properties.products[1].price",
        "properties.products[2].quantity",
        "properties.products[3]",
    }
    assert all(d["code"] == "dropped_field" and d["index"] == 0 for d in fields.values())
    assert "not a finite number" in fields["properties.total"]["message"]
    assert "out of range" in fields["properties.products[0].price"]["message"]
    assert "9223372036854775807" not in r.text  # values are not echoed
    stored = json.loads(
        server.stored("SELECT payload FROM events WHERE message_id = ?", f"m-{uid}")
    )
    props = stored["properties"]
    assert "total" not in props and "revenue" not in props and "discount" not in props
    assert props["products"] == [
        {"product_id": "p1", "category": "Books"},
        {"product_id": "p2", "category": "Books", "quantity": 2},
        {"product_id": "p3", "price": "12.50"},
    ]
    assert stored["_dropped"]["properties.total"]["sent"] == '"NaN"'
    assert stored["_dropped"]["properties.products[0].price"]["sent"] == "9223372036854775807"
    # the order counts, with what was left of it: 12.50 of the one readable price
    prof = server.profile(f"user_id:{uid}")
    assert prof.status_code == 200, prof.text
    p = prof.json()["profile"]
    assert p["orders"] == 1 and p["revenue"] == pytest.approx(12.5) and p["items"] == 4
    assert server.decide(f"user_id:{uid}").status_code == 200


@pytest.mark.parametrize("endpoint", ["track", "alias", "batch"])
@pytest.mark.parametrize(
    "sent",
    ["9999-12-31T23:59:59.999999+00:00", "1900-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"],
)
def test_a_timestamp_outside_the_window_becomes_the_time_received(
    server: Server, endpoint: str, sent: str
) -> None:
    uid = f"ts-{uuid.uuid4().hex[:8]}"
    msg: dict[str, Any] = {"userId": uid, "messageId": f"m-{uid}", "timestamp": sent}
    if endpoint == "alias":
        msg["previousId"] = f"anon-{uid}"
    else:
        msg.update(event="Order Completed", properties={"order_id": f"o-{uid}", "total": 5})
    before = datetime.now(UTC)
    if endpoint == "batch":
        r = server.send("/v1/batch", {"batch": [{"type": "track", **msg}]})
    else:
        r = server.send(f"/v1/{endpoint}", msg)
    assert r.status_code == 200, r.text
    [d] = r.json()["dropped"]
    assert d["code"] == "timestamp_replaced" and d["field"] == "timestamp"
    stored = json.loads(
        server.stored("SELECT payload FROM events WHERE message_id = ?", f"m-{uid}")
    )
    assert stored["timestamp"] == stored["receivedAt"] and stored["originalTimestamp"] == sent
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(stored["timestamp"])
    prof = server.profile(f"user_id:{uid}")
    assert prof.status_code == 200, prof.text
    assert server.decide(f"user_id:{uid}").status_code == 200


def test_a_document_an_older_version_wrote_is_still_read_and_repaired(server: Server) -> None:
    """What the server before this fix stored for a person after ``"price": 1e300``: infinite
    sums written as null, and an event record in the year 9999."""
    uid = f"old-{uuid.uuid4().hex[:8]}"
    assert server.send("/v1/identify", {"userId": uid, "traits": {"plan": "x"}}).status_code == 200
    pid = server.stored("SELECT person_id FROM identities WHERE identifier = ?", f"user_id:{uid}")
    doc = json.loads(server.stored("SELECT doc FROM docs WHERE kind = 'person' AND key = ?", pid))
    doc["agg"]["revenue"] = None
    doc["agg"]["aff"] = {"Books": None, "Garden": "x"}
    doc["agg"]["n"]["orders"] = 1
    doc["agg"]["last_order_at"] = "9999-12-31T23:59:59.999999+00:00"
    doc["events"].append({"seq": "x", "ts": None, "order": {"amount": None, "lines": 3}})
    doc["traits"] = {"city": "Lyon"}
    with server.store.write() as tx:
        tx.docs.put("person", {pid: doc})
    # read, decided for, merged with another person and updated all the same
    assert server.profile(f"user_id:{uid}").status_code == 200
    assert server.decide(f"user_id:{uid}").status_code == 200
    other = f"anon-{uid}"
    r = server.send("/v1/page", {"anonymousId": other, "name": "Home"})
    assert r.status_code == 200, r.text
    r = server.send("/v1/alias", {"userId": uid, "previousId": other})
    assert r.status_code == 200, r.text
    prof = server.profile(f"anonymous_id:{other}")
    assert prof.status_code == 200 and prof.json()["person_id"] == pid
    r = server.send("/v1/track", {"userId": uid, "event": "Product Viewed", "properties": {}})
    assert r.status_code == 200, r.text
    prof = server.profile(f"user_id:{uid}")
    assert prof.status_code == 200 and prof.json()["profile"]["events"] >= 1
    # `segone repair` re-derives the document from the stored events
    done = repair(server.store, server.settings, [f"user_id:{uid}"])
    assert done.people == 1 and done.events == 4 and done.changed == 1
    fixed = json.loads(server.stored("SELECT doc FROM docs WHERE kind = 'person' AND key = ?", pid))
    assert fixed["agg"]["revenue"] == 0.0 and fixed["agg"]["n"]["events"] == 4
    assert fixed["agg"]["n"]["orders"] == 0 and fixed["agg"]["aff"] == {}
    p = server.profile(f"user_id:{uid}").json()["profile"]
    assert p["events"] == 4 and p["orders"] == 0


# -- the state machine -----------------------------------------------------------------------------
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
NUMBER = st.one_of(
    st.sampled_from([v for v in segment_fuzz.ODD_NUMBERS if len(repr(v)) < 40]),
    st.sampled_from(segment_fuzz.GOOD_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    JSON,
)
# (short ones: a failing example is printed)
TEXT = st.one_of(
    st.sampled_from([v for v in segment_fuzz.ODD_TEXT if len(repr(v)) < 40]),
    st.sampled_from(segment_fuzz.GOOD_TEXT),
    JSON,
)
TIMESTAMP = st.one_of(
    st.sampled_from(segment_fuzz.ODD_TIMESTAMPS + segment_fuzz.GOOD_TIMESTAMPS),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ).map(datetime.isoformat),
)
PRODUCT = st.fixed_dictionaries(
    {},
    optional={
        "product_id": TEXT,
        "sku": TEXT,
        "category": TEXT,
        "price": NUMBER,
        "quantity": NUMBER,
        "discount": NUMBER,
    },
)
PROPERTIES = st.fixed_dictionaries(
    {},
    optional={
        **{k: NUMBER for k in segment_fuzz.NUMBER_FIELDS},
        "order_id": TEXT,
        "coupon": TEXT,
        "category": TEXT,
        "query": TEXT,
        "path": TEXT,
        "products": st.one_of(st.lists(st.one_of(PRODUCT, JSON), max_size=3), JSON),
    },
)
TRAITS = st.fixed_dictionaries(
    {},
    optional={
        "email": TEXT,
        "first_name": TEXT,
        "city": TEXT,
        "address": st.one_of(st.fixed_dictionaries({"city": TEXT, "postalCode": TEXT}), JSON),
        "emailOptIn": JSON,
        "createdAt": TIMESTAMP,
        "age": NUMBER,
    },
)
PEOPLE = st.sampled_from(["ann", "bob", "cy"])
EVENTS = st.sampled_from([*segment_fuzz.ECOMMERCE_EVENTS, "Signed Up"])


def test_any_sequence_of_odd_messages_leaves_every_person_readable(real_server: Server) -> None:
    server = real_server

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.tag = uuid.uuid4().hex[:10]
            self.accepted = 0
            self.n = 0

        def uid(self, who: str) -> str:
            return f"sm-{self.tag}-{who}"

        def message(self, kind: str, who: str, **fields: Any) -> dict[str, Any]:
            self.n += 1
            msg = {"type": kind, "messageId": f"{self.tag}-{self.n}", **fields}
            if kind != "alias":
                msg.setdefault("userId", self.uid(who))
                msg.setdefault("anonymousId", f"anon-{self.uid(who)}")
            return msg

        def send(self, path: str, body: Any, *people: str) -> None:
            r = server.send(path, body)
            assert r.status_code < 500, r.text
            if r.status_code == 200:
                self.accepted += r.json()["accepted"]
            for who in people:
                self.check(who)

        def check(self, who: str) -> None:
            """The person is readable (when known), decided for, with their stored events."""
            d = server.decide(f"user_id:{self.uid(who)}")
            assert d.status_code == 200, d.text
            for ident in (f"user_id:{self.uid(who)}", f"anonymous_id:anon-{self.uid(who)}"):
                r = server.profile(ident)
                assert r.status_code in (200, 404), r.text
                if r.status_code == 200:
                    doc = r.json()
                    stored = server.stored(
                        "SELECT COUNT(*) FROM events WHERE person_id = ?", doc["person_id"]
                    )
                    assert (doc["profile"]["events"] or 0) == stored

        @rule(who=PEOPLE, event=EVENTS, props=PROPERTIES, ts=TIMESTAMP)
        def track(self, who: str, event: str, props: dict[str, Any], ts: str) -> None:
            msg = self.message("track", who, event=event, properties=props, timestamp=ts)
            self.send("/v1/track", msg, who)

        @rule(who=PEOPLE, traits=TRAITS, ts=TIMESTAMP)
        def identify(self, who: str, traits: dict[str, Any], ts: str) -> None:
            self.send(
                "/v1/identify", self.message("identify", who, traits=traits, timestamp=ts), who
            )

        @rule(who=PEOPLE, props=PROPERTIES, name=TEXT)
        def page(self, who: str, props: dict[str, Any], name: Any) -> None:
            self.send("/v1/page", self.message("page", who, name=name, properties=props), who)

        @rule(who=PEOPLE, other=PEOPLE, ts=TIMESTAMP)
        def alias(self, who: str, other: str, ts: str) -> None:
            msg = self.message(
                "alias",
                who,
                userId=self.uid(who),
                previousId=f"anon-{self.uid(other)}",
                timestamp=ts,
            )
            self.send("/v1/alias", msg, who, other)

        @rule(
            items=st.lists(
                st.tuples(
                    st.sampled_from(["track", "identify", "page", "screen"]),
                    PEOPLE,
                    EVENTS,
                    PROPERTIES,
                    TRAITS,
                    TIMESTAMP,
                    JSON,
                ),
                min_size=1,
                max_size=4,
            )
        )
        def batch(self, items: list[tuple[Any, ...]]) -> None:
            msgs = []
            for kind, who, event, props, traits, ts, junk in items:
                fields: dict[str, Any] = {"timestamp": ts, "context": {"junk": junk}}
                if kind == "track":
                    fields.update(event=event, properties=props)
                elif kind == "identify":
                    fields["traits"] = traits
                else:
                    fields["properties"] = props
                msgs.append(self.message(kind, who, **fields))
            self.send("/v1/batch", {"batch": msgs}, *{i[1] for i in items})

        @invariant()
        def every_accepted_event_is_stored_once(self) -> None:
            stored = server.stored(
                "SELECT COUNT(*) FROM events WHERE message_id LIKE ?", f"{self.tag}-%"
            )
            assert stored == self.accepted

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=20,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
