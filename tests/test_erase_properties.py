"""Erasure as a property: random people, their identifiers spelt differently in each file and
live message, one of them erased through a random door (the library / CLI erasure, or the API's
followed by a build's warehouse part): no trace of them anywhere, nothing of anyone else lost,
and their messages refused when they come back, spelt yet another way."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from segone.config import Settings
from segone.identity.erase import apply_queued, erase_everywhere
from segone.identity.resolve import resolve
from segone.ingest import ingest_file
from segone.online.commit import commit_group
from segone.online.ops import Erase, Ingest
from segone.online.store import OnlineStore
from segone.online.writer import Writer
from segone.store.duckdb import DuckDBWarehouse
from tests.conftest import jsonl, write

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# a person's name is searched for as a trace in every stored row: "zq" keeps it from being a
# word the rows hold anyway ("track", "pages", "email" are all in this alphabet)
names = st.text("abcdefghjkmnpqrstuvwxyz", min_size=3, max_size=6).map(lambda s: "zq" + s)
people = st.lists(
    st.tuples(names, st.sampled_from(["gmail.com", "x.com"]), st.integers(2000000, 9999999)),
    min_size=2,
    max_size=4,
    unique_by=lambda p: p[0],
)


def email_spelling(local: str, domain: str, way: int) -> str:
    if way == 0:
        return f"{local}@{domain}"
    if way == 1:
        return f"{local.upper()}@{domain.upper()}"
    if domain == "gmail.com":  # the provider ignores dots and +tags
        return f"{local[:2]}.{local[2:]}+t{way}@googlemail.com"
    return f" {local.capitalize()}@{domain} "


def phone_spelling(area: int, number: int, way: int) -> str:
    d = f"{area}{number}"
    return [
        d,
        f"({d[:3]}) {d[3:6]}-{d[6:]}",
        f"{d[:3]}.{d[3:6]}.{d[6:]}",
        f"+1 {d[:3]} {d[3:6]} {d[6:]}",
    ][way % 4]


def traces(rows: list[Any], texts: list[str], digits: str) -> int:
    n = 0
    for row in rows:
        text = json.dumps(list(row), default=str)
        if any(t in text.lower() for t in texts) or digits in re.sub(r"[^0-9]", "", text):
            n += 1
    return n


def everywhere(wh: DuckDBWarehouse, store: OnlineStore, texts: list[str], digits: str) -> dict:
    con = wh.backend.con
    out = {}
    for t in wh.tables():
        n = traces(con.execute(f'SELECT * FROM "{t}"').fetchall(), texts, digits)
        if n:
            out["wh." + t] = n
    with store.read() as tx:
        for (t,) in tx._sql.rows("SELECT name FROM sqlite_master WHERE type = 'table'"):
            n = traces(tx._sql.rows(f'SELECT * FROM "{t}"'), texts, digits)
            if n:
                out["online." + t] = n
    return out


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    crowd=people,
    victim=st.integers(0, 3),
    ways=st.lists(st.integers(0, 3), min_size=6, max_size=6),
    route=st.sampled_from(["library", "api"]),
    by=st.sampled_from(["email", "phone", "user_id"]),
)
def test_an_erased_person_leaves_no_trace_and_no_one_else_loses_anything(
    crowd: list[tuple[str, str, int]], victim: int, ways: list[int], route: str, by: str
) -> None:
    victim %= len(crowd)
    locals_ = [c[0] for c in crowd]
    assume(not any(a != b and a in b for a in locals_ for b in locals_))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        s = Settings.from_dict(
            root,
            {
                "identity": {"probabilistic": False},
                "server": {"online_url": f"sqlite:///{root / 'online.db'}", "writer": "thread"},
            },
        )
        ppl = [
            {
                "local": local,
                "domain": domain,
                "area": 200 + i * 101,
                "number": number,
                "uid": f"uid-{local}",
            }
            for i, (local, domain, number) in enumerate(crowd)
        ]
        write(
            root / "crm.csv",
            "id,first_name,email,phone\n"
            + "".join(
                f"C{i},{p['local']},{email_spelling(p['local'], p['domain'], ways[0])},"
                f"{phone_spelling(p['area'], p['number'], ways[1])}\n"
                for i, p in enumerate(ppl)
            ),
        )
        write(
            root / "orders.csv",
            "order_id,email,ts,product_id,quantity,unit_price\n"
            + "".join(
                f"O{i},{email_spelling(p['local'], p['domain'], ways[2]).strip()},"
                f"2025-01-0{1 + i},P1,1,10\n"
                for i, p in enumerate(ppl)
            ),
        )
        jsonl(
            root / "ev.jsonl",
            [
                {
                    "type": "identify",
                    "userId": p["uid"],
                    "traits": {"email": email_spelling(p["local"], p["domain"], ways[3])},
                    "timestamp": "2025-01-01T00:00:00Z",
                    "messageId": f"f{i}",
                }
                for i, p in enumerate(ppl)
            ],
        )
        wh = DuckDBWarehouse(":memory:")
        store = OnlineStore.open(s.server.online_url)
        try:
            wh.ensure_tables()
            for kind, f in (
                ("customers", "crm.csv"),
                ("orders", "orders.csv"),
                ("events", "ev.jsonl"),
            ):
                ingest_file(wh, kind, root / f, source="crm" if kind == "customers" else None)
            resolve(wh, s.identity)
            writer = Writer(store, s)

            def send(msgs: list[dict[str, Any]], rejected: list[dict[str, Any]] = ()) -> dict:
                [(ok, r)] = commit_group(store, writer, [Ingest(NOW, msgs, rejected)])
                assert ok, r
                return dict(r)

            for i, p in enumerate(ppl):
                phone = phone_spelling(p["area"], p["number"], ways[4])
                email = email_spelling(p["local"], p["domain"], ways[5])
                send(
                    [
                        {
                            "type": "identify",
                            "userId": p["uid"],
                            "traits": {"email": email, "phone": phone},
                            "messageId": f"l{i}a",
                            "timestamp": NOW.isoformat(),
                            "receivedAt": NOW.isoformat(),
                        },
                        {
                            "type": "track",
                            "event": "Viewed",
                            "userId": p["uid"],
                            "messageId": f"l{i}b",
                            "timestamp": NOW.isoformat(),
                            "receivedAt": NOW.isoformat(),
                        },
                    ],
                    [
                        {
                            "reason": "bad",
                            "message": {"traits": {"phone": phone}},
                            "received_at": NOW,
                        }
                    ],
                )

            def marks(p: dict[str, Any]) -> tuple[list[str], str]:
                return [p["local"], p["uid"].lower()], f"{p['area']}{p['number']}"

            before = {p["uid"]: everywhere(wh, store, *marks(p)) for p in ppl}
            v = ppl[victim]
            assert before[v["uid"]]  # the search finds them
            ident = {
                "email": "email:" + email_spelling(v["local"], v["domain"], 1),
                "phone": "phone:" + phone_spelling(v["area"], v["number"], 2),
                "user_id": "user_id:" + v["uid"],
            }[by]
            if route == "library":
                erase_everywhere(s, wh, store, ident, route="library")
            else:
                [(ok, r)] = commit_group(store, writer, [Erase(ident, NOW)])
                assert ok and r is not None, r
                apply_queued(wh, store, s)  # what the next build does first
            assert everywhere(wh, store, *marks(v)) == {}
            for p in ppl:
                if p is not v:
                    assert everywhere(wh, store, *marks(p)) == before[p["uid"]], p["uid"]
            # they come back, spelt another way: refused live, refused from the files
            got = send(
                [
                    {
                        "type": "identify",
                        "anonymousId": "new-device",
                        "traits": {
                            "email": email_spelling(v["local"], v["domain"], 2),
                            "phone": phone_spelling(v["area"], v["number"], 3),
                        },
                        "messageId": "again",
                        "timestamp": NOW.isoformat(),
                        "receivedAt": NOW.isoformat(),
                    }
                ]
            )
            assert got["accepted"] == 0 and got["refused_erased"] == 1
            for kind, f in (("orders", "orders.csv"), ("events", "ev.jsonl")):
                ingest_file(wh, kind, root / f)
            assert everywhere(wh, store, *marks(v)) == {}
        finally:
            store.close()
            wh.close()
