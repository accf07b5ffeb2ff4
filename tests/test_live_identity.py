"""Live identity stitching: the warehouse's normalisation, its guards, on a real online store."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import ibis
import pandas as pd
import pytest

from segone.identity import normalize as norm
from segone.identity.graph import IdentitySettings
from segone.live.identity import (
    candidates,
    identifiers_of,
    norm_email,
    norm_phone,
    stitch,
)
from segone.live.profile import apply_event, view
from segone.online.store import OnlineStore

NOW = datetime(2025, 1, 1, tzinfo=UTC)

EMAILS = [
    " Jane.Doe+shop@GoogleMail.com ",
    "JANE@EXAMPLE.COM",
    "first.last+tag@outlook.com",
    "first.last+tag@example.com",
    "user+@gmail.com",
    ".x.@gmail.com",
    "a@b",
    "a@b.c",
    "a@@b.com",
    "a b@c.com",
    "no-at-sign",
    "x@y.co.uk",
    "x@y.com.",
    "a@b.c0m",
    "\tTab@X.com\n",
    "\x0bv@x.com",
    "a\x0bb@x.com",
    "josé@exämple.com",
    "TEST@TEST.COM",
    "",
    "   ",
    None,
]
PHONES = [
    "555-123-4567",
    "(555) 123 4567",
    "+44 20 7946 0958",
    "0044 20 7946 0958",
    "020 7946 0958",
    "1-555-123-4567",
    "15551234567",
    " 0 555 1234567 ",
    "12345",
    "123456",
    "1234567",
    "+1 (111) 111-1111",
    "abc",
    "00",
    "+",
    "",
    "٣٤٥٦٧٨٩٠١٢",  # non-ASCII digits are not digits to either side
    None,
]


@pytest.mark.parametrize("cc", ["1", "44"])
def test_python_normalisation_equals_the_warehouse(cc):
    n = max(len(EMAILS), len(PHONES))
    df = pd.DataFrame(
        {
            "e": EMAILS + [None] * (n - len(EMAILS)),
            "p": PHONES + [None] * (n - len(PHONES)),
        }
    )
    t = ibis.memtable(df, schema={"e": "string", "p": "string"})
    got = ibis.duckdb.connect().execute(
        t.select(e=norm.email(t.e), p=norm.phone(t.p, cc), u=norm.plain(t.e))
    )
    for raw, want in zip(df.e, got.e, strict=True):
        assert norm_email(raw) == (None if pd.isna(want) else want), repr(raw)
    for raw, want in zip(df.p, got.p, strict=True):
        assert norm_phone(raw, cc) == (None if pd.isna(want) else want), repr(raw)
    # the cases exercise every branch: aliases folded, rejects, trunk zero, international
    assert "janedoe@gmail.com" in set(got.e) and "first.last@outlook.com" in set(got.e)
    assert got.e.isna().sum() >= 8 and got.p.isna().sum() >= 6


def test_identifiers_of_a_message():
    s = IdentitySettings(extra_blocked=("guest-cookie",))
    msg = {
        "type": "alias",
        "userId": " u1 ",
        "anonymousId": "guest-cookie",
        "previousId": "a9",
        "traits": {"phone": "(555) 123 4567"},
        "context": {"traits": {"email": "Jane.Doe@GoogleMail.com", "phone": "1"}},
    }
    assert identifiers_of(msg, s) == [
        "user_id:u1",
        "anonymous_id:a9",
        "email:janedoe@gmail.com",
        "phone:+15551234567",
    ]
    blocked = {"type": "identify", "userId": "NULL", "traits": {"email": "test@test.com"}}
    assert identifiers_of(blocked, s) == []
    assert identifiers_of({"type": "track", "userId": 42, "traits": {"email": 5}}, s) == [
        "user_id:42"
    ]


PG_URL = os.environ.get("SEGONE_TEST_POSTGRES_URL")
NEED_PG = (
    "PostgreSQL tests skipped: set SEGONE_TEST_POSTGRES_URL "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run them"
)


def open_store(kind, tmp_path):
    """A fresh online store on SQLite, or in a schema of its own on PostgreSQL; and its cleanup."""
    if kind == "sqlite":
        s = OnlineStore.open(f"sqlite:///{tmp_path / 'online.db'}")
        return s, s.close
    if not PG_URL:
        pytest.skip(NEED_PG)
    schema = "live_" + uuid.uuid4().hex[:12]
    s = OnlineStore.open(f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}")

    def cleanup():
        import psycopg

        s.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return s, cleanup


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    s, cleanup = open_store(request.param, tmp_path)
    yield s
    cleanup()


def _send(store, msg, settings=None, seq=[0]):  # noqa: B006 - a counter shared by the calls
    settings = settings or IdentitySettings()
    seq[0] += 1
    with store.write() as tx:
        ids = identifiers_of(msg, settings)
        r = stitch(tx, msg, ids, settings, NOW)
        doc = tx.docs.get("person", [r.person_id]).get(r.person_id)
        tx.docs.put("person", {r.person_id: apply_event(doc, msg, seq[0], NOW)})
    return r


def _ids(store, pid):
    with store.read() as tx:
        return tx.identity.identifiers_of(pid)


def test_anonymous_visitor_becomes_known_on_identify(store):
    a = _send(store, {"type": "page", "anonymousId": "a1", "timestamp": "2024-12-01T10:00:00Z"})
    assert a.new and a.person_id.startswith("live-") and a.linked == ["anonymous_id:a1"]
    b = _send(
        store,
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": "Jane@x.com"},
            "timestamp": "2024-12-01T10:01:00Z",
        },
    )
    assert b.person_id == a.person_id and not b.new and not b.merged_from
    assert _ids(store, a.person_id) == ["anonymous_id:a1", "email:jane@x.com", "user_id:u1"]


def test_alias_merges_the_cookie_person_into_the_user(store):
    u = _send(store, {"type": "identify", "userId": "u1", "timestamp": "2024-12-01T10:00:00Z"})
    c = _send(store, {"type": "page", "anonymousId": "c1", "timestamp": "2024-12-01T09:00:00Z"})
    _send(store, {"type": "page", "anonymousId": "c1", "timestamp": "2024-12-01T09:05:00Z"})
    assert c.person_id != u.person_id
    r = _send(
        store,
        {"type": "alias", "userId": "u1", "previousId": "c1", "timestamp": "2024-12-02T00:00:00Z"},
    )
    assert r.person_id == u.person_id and r.merged_from == [c.person_id]
    assert _ids(store, u.person_id) == ["anonymous_id:c1", "user_id:u1"]
    with store.read() as tx:
        docs = tx.docs.get("person", [u.person_id, c.person_id])
        journey = tx.journey.of(u.person_id)
    assert c.person_id not in docs  # the merged person's document is folded in
    v = view(None, docs[u.person_id], NOW)
    assert v["events"] == 4 and v["page_views"] == 2
    assert v["first_event_at"] == datetime(2024, 12, 1, 9, tzinfo=UTC)
    assert journey[0].kind == "merged" and journey[0].detail == {"from": c.person_id}


def test_two_accounts_on_one_device_are_not_merged(store):
    alice = _send(store, {"type": "identify", "userId": "alice", "anonymousId": "laptop"})
    bob = _send(store, {"type": "identify", "userId": "bob", "anonymousId": "laptop"})
    assert bob.person_id != alice.person_id and bob.new
    assert bob.refused == ["anonymous_id:laptop"]
    assert bob.reasons == {"anonymous_id:laptop": "shared_identifier"}
    assert _ids(store, alice.person_id) == ["anonymous_id:laptop", "user_id:alice"]
    assert _ids(store, bob.person_id) == ["user_id:bob"]
    # an anonymous event from the laptop stays with the person the cookie belongs to
    assert _send(store, {"type": "page", "anonymousId": "laptop"}).person_id == alice.person_id
    # nor does a shared e-mail join two accounts
    _send(store, {"type": "identify", "userId": "alice", "traits": {"email": "family@x.com"}})
    r = _send(store, {"type": "identify", "userId": "bob", "traits": {"email": "family@x.com"}})
    assert r.person_id == bob.person_id and r.refused == ["email:family@x.com"]


def test_blocked_values_link_nothing(store):
    s = IdentitySettings()
    msg = {"type": "identify", "userId": "u9"}
    with store.write() as tx:
        r = stitch(tx, msg, ["user_id:u9", "email:test@test.com", "anonymous_id:Undefined"], s, NOW)
    assert r.reasons == {
        "email:test@test.com": "blocked_value",
        "anonymous_id:Undefined": "blocked_value",
    }
    assert _ids(store, r.person_id) == ["user_id:u9"]
    # a message with only placeholder ids gets a person of its own, linked to nothing
    with store.write() as tx:
        r2 = stitch(tx, {"type": "page", "anonymousId": "null"}, [], s, NOW)
        assert r2.new and tx.identity.identifiers_of(r2.person_id) == []


def test_at_most_max_per_person_emails(store):
    s = IdentitySettings(max_per_person={"email": 2, "phone": 5})
    for k in range(3):
        r = _send(
            store, {"type": "identify", "userId": "u1", "traits": {"email": f"e{k}@x.com"}}, s
        )
    assert r.refused == ["email:e2@x.com"] and r.reasons["email:e2@x.com"] == "max_per_person"
    assert _ids(store, r.person_id) == ["email:e0@x.com", "email:e1@x.com", "user_id:u1"]


def test_a_published_customer_wins_a_merge(store):
    with store.write() as tx:
        tx.identity.link("email:jane@x.com", "cus_1", "batch")
        tx.docs.put("published", {"cus_1": {"customer_id": "cus_1", "orders": 3, "_cursor": 0}})
    live = _send(store, {"type": "page", "anonymousId": "a1"})
    _send(store, {"type": "identify", "anonymousId": "a1", "traits": {"phone": "555 123 4567"}})
    r = _send(store, {"type": "identify", "anonymousId": "a1", "traits": {"email": "JANE@x.com"}})
    assert r.person_id == "cus_1" and r.merged_from == [live.person_id]
    assert _ids(store, "cus_1") == ["anonymous_id:a1", "email:jane@x.com", "phone:+15551234567"]


def test_candidates_of_a_looked_up_identifier():
    s = IdentitySettings()
    assert candidates("email: Jane@GoogleMail.com", s) == ["email:jane@gmail.com"]
    got = candidates("Jane@x.com", s)
    assert "email:jane@x.com" in got and "user_id:Jane@x.com" in got
    assert "phone:+15551234567" in candidates("(555) 123-4567", s)
    assert candidates("null", s) == []
