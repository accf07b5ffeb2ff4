"""Erase means erased (issue 22): a project ingested, built and served, two people sending live
events, one erased through ``DELETE /v1/profiles``, the other through ``segone erase`` while the
server runs, then ``segone build``: no trace of either in any table of either store, in the
server log or in the bytes of the database files; both profiles 404; their data refused when
loaded or sent again, in other spellings; everyone else untouched; an audit without PII."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from segone.api import background_server, create_app
from segone.cli import app
from segone.config import Settings
from segone.online.engine import Engine
from segone.online.store import OnlineStore
from tests.conftest import jsonl, write

WRITE, DECIDE, ADMIN = "wk-erase", "dk-erase", "adm-erase"
runner = CliRunner()

# what must never be found again: texts (case-insensitive) and phone digits
JANE = ["jane.doe", "janedoe", "u-jane", "anon-jane", "jane-live-ref"]
JANE_PHONE = "5037165804"
BOB = ["bob.smith@x.com", "u-bob", "anon-bob", "bob-live-ref"]
BOB_PHONE = "2125550101"


def cli(*args: str, input: str | None = None) -> str:
    r = runner.invoke(app, list(args), input=input)
    assert r.exit_code == 0, r.output
    return str(r.output)


def make_project(tmp: Path) -> Path:
    proj = tmp / "proj"
    cli("init", str(proj))
    toml = proj / "segone.toml"
    text = toml.read_text()
    text = text.replace("probabilistic = true", "probabilistic = false")
    text = text.replace("write_keys = []", f'write_keys = ["{WRITE}"]')
    text = text.replace("admin_tokens = []", f'admin_tokens = ["{ADMIN}"]')
    text = text.replace("decide_tokens = []", f'decide_tokens = ["{DECIDE}"]')
    # triggers go to a receiver that is not there: payloads wait in the outbox, then die
    text = text.replace('webhook_url = ""', 'webhook_url = "http://127.0.0.1:9/hook"')
    text = text.replace('webhook_secret = ""', 'webhook_secret = "hook-secret"')
    text = text.replace("webhook_max_attempts = 5", "webhook_max_attempts = 1")
    toml.write_text(text)
    write(
        tmp / "crm.csv",
        "id,first_name,email,phone\n"
        "C1,Jane,Jane.Doe@gmail.com,503-716-5804\n"
        "C2,Bob,bob.smith@x.com,(212) 555-0101\n"
        "C3,Carl,carl@y.org,4155550123\n",
    )
    write(
        tmp / "orders.csv",
        "order_id,email,ts,product_id,quantity,unit_price\n"
        "O1,janedoe@gmail.com,2024-01-01,P1,1,10\n"
        "O2,BOB.SMITH@x.com,2024-01-02,P1,1,10\n"
        "O3,carl@y.org,2024-01-03,P2,2,5\n"
        "O4,jane.doe+shop@googlemail.com,someday,P2,1,5\n",
    )
    jsonl(
        tmp / "ev.jsonl",
        [
            {
                "type": "identify",
                "userId": "u-jane",
                "anonymousId": "anon-jane",
                "traits": {"email": "jane.doe@gmail.com"},
                "timestamp": "2024-01-01T00:00:00Z",
                "messageId": "f1",
            },
            {
                "type": "identify",
                "userId": "u-bob",
                "traits": {"email": "bob.smith@x.com", "phone": "+1 212 555 0101"},
                "timestamp": "2024-01-01T00:00:00Z",
                "messageId": "f2",
            },
            {
                "type": "identify",
                "userId": "u-carl",
                "traits": {"email": "carl@y.org"},
                "timestamp": "2024-01-01T00:00:00Z",
                "messageId": "f3",
            },
        ],
    )
    for kind, f in [("customers", "crm.csv"), ("orders", "orders.csv"), ("events", "ev.jsonl")]:
        extra = ["--source", "crm"] if kind == "customers" else []
        cli("ingest", kind, str(tmp / f), "-p", str(proj), *extra)
    cli("build", "-p", str(proj))
    return proj


def live_events(http: httpx.Client, who: str, email: str, phone: str, n: int) -> None:
    """identify (odd spellings), track, an order, a page, a batch with two invalid messages,
    a decision and its feedback."""
    uid, anon = f"u-{who}", f"anon-{who}"
    sent = [
        (
            "/v1/identify",
            {"userId": uid, "anonymousId": anon, "traits": {"email": email, "phone": phone}},
        ),
        ("/v1/track", {"userId": uid, "event": "Viewed", "properties": {"ref": f"{who}-live-ref"}}),
        (
            "/v1/track",
            {
                "userId": uid,
                "event": "Order Completed",
                "properties": {"order_id": f"L{n}", "total": 20, "products": [{"sku": "P1"}]},
            },
        ),
        ("/v1/page", {"anonymousId": anon, "name": "Home"}),
    ]
    for path, msg in sent:
        r = http.post(path, json=msg, auth=(WRITE, ""))
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    batch = [
        {"type": "track", "userId": uid, "event": "Ok"},
        {"type": "identify", "traits": {"email": email.upper(), "phone": phone}},  # no id
        {"type": "nonsense", "userId": uid, "traits": {"phone": phone}},
    ]
    r = http.post("/v1/batch", json={"batch": batch}, auth=(WRITE, ""))
    assert r.status_code == 200 and len(r.json()["rejected"]) == 2, r.text
    auth = {"Authorization": f"Bearer {DECIDE}"}
    r = http.post(
        "/v1/decide", json={"identifier": f"user_id:{uid}", "placement": "home"}, headers=auth
    )
    assert r.status_code == 200, r.text
    d = r.json()
    if d["items"]:
        item = d["items"][0]["id"]
        fb = {"decision_id": d["decision_id"], "item_id": item, "kind": "click"}
        assert http.post("/v1/feedback", json=fb, headers=auth).status_code == 200


def traces_in_rows(rows: list[Any], texts: list[str], digits: str) -> int:
    n = 0
    for row in rows:
        text = json.dumps([str(v) if isinstance(v, bytes) else v for v in row], default=str)
        low = text.lower()
        if any(t.lower() in low for t in texts) or digits in re.sub(r"[^0-9]", "", text):
            n += 1
    return n


def warehouse_traces(path: Path, texts: list[str], digits: str) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            n = traces_in_rows(con.execute(f'SELECT * FROM "{t}"').fetchall(), texts, digits)
            if n:
                out[t] = n
        return out
    finally:
        con.close()


def online_traces(path: Path, texts: list[str], digits: str) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        out = {}
        names = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (t,) in names:
            n = traces_in_rows(con.execute(f'SELECT * FROM "{t}"').fetchall(), texts, digits)
            if n:
                out[t] = n
        return out
    finally:
        con.close()


def raw_bytes_traces(paths: list[Path], needles: list[str]) -> list[str]:
    found = []
    for p in paths:
        if p.exists():
            data = p.read_bytes().lower()
            found += [f"{p.name}: {n}" for n in needles if n.lower().encode() in data]
    return found


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("erase-everywhere")
    proj = make_project(tmp)
    settings = Settings.from_dict(
        proj, {**_raw(proj), "server": {**_raw(proj)["server"], "writer": "thread"}}
    )
    store = OnlineStore.open(settings.server.online_url, root=proj)
    log = logging.getLogger("segone")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    keep = Keep(logging.DEBUG)
    log.addHandler(keep)
    level = log.level
    log.setLevel(logging.DEBUG)
    out: dict[str, Any] = {"proj": proj, "tmp": tmp, "log": lines}
    try:
        with (
            background_server(create_app(settings, Engine(store, settings))) as url,
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            admin = {"Authorization": f"Bearer {ADMIN}"}
            cli("build", "-p", str(proj))  # publishes to the online store the server made
            live_events(http, "jane", "JANE.DOE@GMAIL.COM", "503.716.5804", 1)
            live_events(http, "bob", "Bob.Smith@X.com", "+1 (212) 555-0101", 2)
            live_events(http, "carl", "carl@y.org", "415 555 0123", 3)
            assert (
                http.get("/v1/profiles/email:janedoe@gmail.com", headers=admin).status_code == 200
            )
            with store.read() as tx:
                out["carl_events_before"] = len(
                    tx.events.recent(tx.identity.lookup(["user_id:u-carl"])["user_id:u-carl"])
                )
            out["before"] = {
                "wh": warehouse_traces(settings.warehouse_path, JANE, JANE_PHONE),
                "online": online_traces(proj / "online.db", BOB, BOB_PHONE),
                "bytes": raw_bytes_traces(
                    [settings.warehouse_path, proj / "online.db", proj / "online.db-wal"], NEEDLES
                ),
            }
            # erase Jane through the API, Bob through the CLI while the server runs
            r = http.delete("/v1/profiles/email:Jane.Doe@gmail.com", headers=admin)
            assert r.status_code == 200, r.text
            out["api_answer"] = r.json()
            out["cli_output"] = cli("erase", "email:BOB.SMITH@x.com", "-p", str(proj), "--yes")
            out["profiles_after"] = [
                http.get(f"/v1/profiles/{i}", headers=admin).status_code
                for i in ("email:janedoe@gmail.com", "user_id:u-jane", "email:bob.smith@x.com")
            ]
            out["build_output"] = cli("build", "-p", str(proj))
            out["wh_after_build"] = {
                "jane": warehouse_traces(settings.warehouse_path, JANE, JANE_PHONE),
                "bob": warehouse_traces(settings.warehouse_path, BOB, BOB_PHONE),
            }
            online_db = proj / "online.db"
            out["online_after_build"] = {
                "jane": online_traces(online_db, JANE, JANE_PHONE),
                "bob": online_traces(online_db, BOB, BOB_PHONE),
            }
            # they come back: the same people in other spellings, live and in the old files
            for uid, email, phone in [
                ("u-jane", "jane.doe+news@googlemail.com", "(503) 716 5804"),
                ("u-bob", "BOB.SMITH@X.COM", "212.555.0101"),
            ]:
                r = http.post(
                    "/v1/identify",
                    json={"userId": uid, "traits": {"email": email, "phone": phone}},
                    auth=(WRITE, ""),
                )
                assert r.status_code == 200 and r.json()["accepted"] == 0, r.text
                r = http.post(
                    "/v1/track",
                    json={"anonymousId": "new-device", "event": "X", "traits": {"email": email}},
                    auth=(WRITE, ""),
                )
                assert r.json()["accepted"] == 0, r.text
                # named outside the traits, in a batch next to someone else's valid message
                batch = [
                    {
                        "type": "track",
                        "anonymousId": "dev-2",
                        "event": "Referred",
                        "properties": {"friend_phone": phone},
                    },
                    {"type": "track", "userId": "u-carl", "event": "Still here"},
                ]
                r = http.post("/v1/batch", json={"batch": batch}, auth=(WRITE, ""))
                assert r.json()["accepted"] == 1 and r.json()["refused_erased"] == 1, r.text
            out["erasures_api"] = http.get("/v1/erasures", headers=admin).json()
            out["profiles_end"] = [
                http.get(f"/v1/profiles/{i}", headers=admin).status_code
                for i in ("email:janedoe@gmail.com", "user_id:u-jane", "user_id:u-bob")
            ]
            with store.read() as tx:
                pid = tx.identity.lookup(["user_id:u-carl"])["user_id:u-carl"]
                out["carl_events_after"] = len(tx.events.recent(pid))
        store.close()
        for kind, f in [("customers", "crm.csv"), ("orders", "orders.csv"), ("events", "ev.jsonl")]:
            extra = ["--source", "crm"] if kind == "customers" else []
            cli("ingest", kind, str(tmp / f), "-p", str(proj), *extra)
        out["erasures_cli"] = cli("erasures", "-p", str(proj), "--json")
        yield out
    finally:
        log.removeHandler(keep)
        log.setLevel(level)
        store.close()


def _raw(proj: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads((proj / "segone.toml").read_text())


def test_no_trace_in_any_table_after_both_routes_and_a_build(scenario: dict[str, Any]) -> None:
    assert scenario["before"]["wh"] and scenario["before"]["online"]  # the search finds them
    assert scenario["wh_after_build"] == {"jane": {}, "bob": {}}
    assert scenario["online_after_build"] == {"jane": {}, "bob": {}}
    assert scenario["profiles_after"] == [404, 404, 404]


def test_they_do_not_come_back_live_or_from_files(scenario: dict[str, Any]) -> None:
    proj = scenario["proj"]
    assert scenario["profiles_end"] == [404, 404, 404]
    s = Settings.load(proj)
    for who, texts, digits in (("jane", JANE, JANE_PHONE), ("bob", BOB, BOB_PHONE)):
        assert warehouse_traces(s.warehouse_path, texts, digits) == {}, who
        assert online_traces(proj / "online.db", texts, digits) == {}, who


def test_everyone_else_is_untouched(scenario: dict[str, Any]) -> None:
    s = Settings.load(scenario["proj"])
    # Carl lost nothing (and his two messages sent after the erasures are in)
    assert scenario["carl_events_after"] == scenario["carl_events_before"] + 2
    assert warehouse_traces(s.warehouse_path, ["carl@y.org"], "4155550123")["customers"] >= 1


def test_bytes_on_disk_and_the_log_hold_nothing_of_them(scenario: dict[str, Any]) -> None:
    proj = scenario["proj"]
    files = [
        proj / n for n in ("warehouse.duckdb", "warehouse.duckdb.wal", "online.db", "online.db-wal")
    ]
    needles = NEEDLES
    assert scenario["before"]["bytes"]  # they were there
    assert raw_bytes_traces(files, needles) == []
    log = "\n".join(scenario["log"]).lower()
    assert not [n for n in needles if n in log]


NEEDLES = [
    "janedoe",
    "jane.doe",
    "u-jane",
    "anon-jane",
    "bob.smith",
    "u-bob",
    "anon-bob",
    "503.716.5804",
    "5037165804",
    "2125550101",
    "555-0101",
]


def test_the_audit_says_who_asked_how_without_personal_data(scenario: dict[str, Any]) -> None:
    api = scenario["erasures_api"]["erasures"]
    assert sorted(e["route"] for e in api) == ["api", "cli"]
    cli_lines = [json.loads(line) for line in scenario["erasures_cli"].splitlines()]
    assert sorted(e["route"] for e in cli_lines) == ["api", "cli"]
    for e in cli_lines:
        assert sum(e["rows_removed"].values()) > 0
    text = json.dumps(api) + scenario["erasures_cli"] + json.dumps(scenario["api_answer"])
    assert not [n for n in (*JANE, *BOB) if n in text.lower()]
    assert "erasure" in scenario["cli_output"] and "online" in scenario["cli_output"]


def test_readmission_is_explicit_and_audited(scenario: dict[str, Any]) -> None:
    # runs last: it changes the project
    proj, tmp = scenario["proj"], scenario["tmp"]
    jsonl(
        tmp / "back.jsonl",
        [
            {
                "type": "identify",
                "userId": "u-jane-2",
                "traits": {"email": "JaneDoe@gmail.com"},
                "timestamp": "2025-01-01T00:00:00Z",
                "messageId": "back1",
            }
        ],
    )
    out = cli("ingest", "events", str(tmp / "back.jsonl"), "-p", str(proj))
    assert "refused 1 of erased people" in out
    r = runner.invoke(
        app, ["readmit", "email:jane.doe@googlemail.com", "-p", str(proj)], input="n\n"
    )
    assert r.exit_code == 1
    out = cli("readmit", "email:jane.doe@googlemail.com", "-p", str(proj), "--yes")
    assert "refusal(s) lifted" in out
    out = cli("ingest", "events", str(tmp / "back.jsonl"), "-p", str(proj))
    assert "refused" not in out
    routes = [
        json.loads(x)["route"] for x in cli("erasures", "-p", str(proj), "--json").splitlines()
    ]
    assert sorted(routes) == ["api", "cli", "readmit (cli)"]
    # Bob stays erased
    r = runner.invoke(app, ["readmit", "email:nobody@x.com", "-p", str(proj), "--yes"])
    assert r.exit_code == 2 and "not erased" in r.output
