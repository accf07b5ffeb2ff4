"""Erasure: gone from every table, an audit without personal data, refused if loaded again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from segone.cli import app
from segone.identity.erase import erase
from segone.ingest import ingest_file
from segone.pipeline.build import build
from segone.profiles.lookup import find_customers
from tests.conftest import jsonl, write


@pytest.fixture
def two_people(wh, tmp_path):
    write(
        tmp_path / "crm.csv",
        "id,first_name,email,phone\nC1,Jane,jane@x.com,2125550101\nC2,Bob,bob@x.com,\n",
    )
    write(
        tmp_path / "orders.csv",
        "order_id,email,ts,product_id,quantity,unit_price\n"
        "O1,jane@x.com,2024-01-01,P1,1,10\nO2,bob@x.com,2024-01-02,P1,1,10\n"
        "O3,jane@x.com,someday,P2,1,5\n",
    )
    jsonl(
        tmp_path / "ev.jsonl",
        [
            {
                "type": "identify",
                "userId": "u1",
                "anonymousId": "a1",
                "traits": {"email": "jane@x.com"},
                "timestamp": "2024-01-01T00:00:00Z",
                "messageId": "e1",
            },
            {
                "type": "page",
                "anonymousId": "a1",
                "timestamp": "2024-01-01T00:01:00Z",
                "messageId": "e2",
            },
            {
                "type": "page",
                "userId": "u2",
                "timestamp": "2024-01-01T00:01:00Z",
                "messageId": "e3",
            },
        ],
    )
    write(
        tmp_path / "it.csv",
        "id,type,author_email,text,ts\nI1,review,jane@x.com,Lovely!,2024-01-03\n",
    )
    for kind, f in [
        ("customers", "crm.csv"),
        ("orders", "orders.csv"),
        ("events", "ev.jsonl"),
        ("interactions", "it.csv"),
    ]:
        ingest_file(wh, kind, tmp_path / f, source="crm" if kind == "customers" else None)
    build(wh, as_of=datetime(2024, 12, 31, tzinfo=UTC))
    return wh


def _mentions(wh, text):
    hits = {}
    for t in wh.tables():
        df = wh.execute(wh.table(t))
        n = int(
            df.astype(str)
            .apply(lambda col: col.str.contains(text, case=False, regex=False))
            .any(axis=1)
            .sum()
        )
        if n:
            hits[t] = n
    return hits


def test_erase_removes_the_person_everywhere_and_keeps_others(two_people, tmp_path):
    wh = two_people
    assert _mentions(wh, "jane@x.com")
    assert wh.count("quarantine") == 1  # O3's bad date, a record that mentions Jane
    jane = find_customers(wh, "JANE@x.com")
    r = erase(wh, jane)
    assert r.rows_removed["events"] == 2 and r.rows_removed["orders"] == 1
    assert r.rows_removed["customers"] == 1 and r.rows_removed["interactions"] == 1
    assert r.rows_removed["quarantine"] == 1
    assert _mentions(wh, "jane@x.com") == {}
    assert _mentions(wh, "2125550101") == {}
    assert _mentions(wh, jane[0]) == {}
    assert find_customers(wh, "bob@x.com") and wh.count("orders") == 1
    audit = wh.execute(wh.table("erasures")).iloc[0]
    assert "jane" not in audit.to_json().lower()
    # old files loaded again: Jane's rows are refused, Bob's are not duplicated, nothing leaks back
    res = ingest_file(wh, "orders", tmp_path / "orders.csv")
    assert res.refused_erased == 2 and res.loaded == 0 and res.rejected == 0
    res = ingest_file(wh, "events", tmp_path / "ev.jsonl")
    assert res.refused_erased == 2
    assert _mentions(wh, "jane@x.com") == {}
    build(wh, as_of=datetime(2024, 12, 31, tzinfo=UTC))
    assert find_customers(wh, "jane@x.com") == []


def test_cli_erase(two_people, tmp_path):
    # the CLI works on a project directory; copy the fixture's data into one
    proj = tmp_path / "p"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    for kind, f in [("customers", "crm.csv"), ("orders", "orders.csv"), ("events", "ev.jsonl")]:
        assert (
            runner.invoke(app, ["ingest", kind, str(tmp_path / f), "-p", str(proj)]).exit_code == 0
        )
    assert runner.invoke(app, ["build", "-p", str(proj)]).exit_code == 0
    r = runner.invoke(app, ["erase", "nobody@x.com", "-p", str(proj), "--yes"])
    assert r.exit_code == 2 and "no customer" in r.output
    r = runner.invoke(app, ["erase", "jane@x.com", "-p", str(proj)], input="n\n")
    assert r.exit_code == 1
    r = runner.invoke(app, ["erase", "jane@x.com", "-p", str(proj), "--yes"])
    assert r.exit_code == 0 and "rows removed" in r.output
    r = runner.invoke(app, ["profile", "jane@x.com", "-p", str(proj)])
    assert r.exit_code == 2


def test_erase_finds_records_loaded_after_the_last_build(two_people, tmp_path):
    wh = two_people
    jsonl(
        tmp_path / "late.jsonl",
        [
            {
                "type": "identify",
                "userId": "u1",
                "traits": {"email": "jane@x.com", "phone": "(917) 555-0199"},
                "timestamp": "2024-02-01T00:00:00Z",
                "messageId": "late1",
            },
            {
                "type": "track",
                "event": "Viewed",
                "userId": "u1",
                "timestamp": "not a time",
                "messageId": "late2",
                "traits": {"phone": "917.555.0199"},
            },
        ],
    )
    write(tmp_path / "bureau.csv", "email,score\njane@x.com,A\nbob@x.com,B\n")
    ingest_file(wh, "events", tmp_path / "late.jsonl")
    ingest_file(wh, "enrichment", tmp_path / "bureau.csv", source="bureau")
    erase(wh, find_customers(wh, "jane@x.com"))  # no build in between
    assert _mentions(wh, "jane@x.com") == {}
    assert _mentions(wh, "555-0199") == {} and _mentions(wh, "555.0199") == {}
    assert wh.count("enrichments") == 1  # Bob's row stays
    r = ingest_file(wh, "events", tmp_path / "late.jsonl")
    assert r.refused_erased == 2  # the late phone is refused too, even on the malformed-time line


def test_cli_erase_refuses_an_ambiguous_identifier(tmp_path):
    proj = tmp_path / "p"
    runner = CliRunner()
    runner.invoke(app, ["init", str(proj)])
    write(
        tmp_path / "o.csv",
        "order_id,user_id,loyalty_id,ts\nO1,4242,,2024-01-01\nO2,,4242,2024-01-02\n",
    )
    runner.invoke(app, ["ingest", "orders", str(tmp_path / "o.csv"), "-p", str(proj)])
    runner.invoke(app, ["build", "-p", str(proj)])
    r = runner.invoke(app, ["erase", "4242", "-p", str(proj), "--yes"])
    assert r.exit_code == 2 and "2 different customers" in r.output
    r = runner.invoke(app, ["erase", "loyalty_id:4242", "-p", str(proj), "--yes"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["profile", "user_id:4242", "-p", str(proj)])
    assert r.exit_code == 0


def test_probabilistic_match_pairs_of_an_erased_record_go_with_it(wh, tmp_path):
    import ibis
    import pyarrow as pa

    from segone.identity.resolve import resolve

    write(tmp_path / "crm.csv", "id,first_name,email\nC1,Jane,jane@x.com\nC2,Bob,bob@x.com\n")
    ingest_file(wh, "customers", tmp_path / "crm.csv", source="crm")
    resolve(wh)
    pairs = {"unique_id_l": ["crm:C1", "crm:C2"], "unique_id_r": ["crm:C9", "crm:C8"]}
    pairs |= {"match_probability": [0.95] * 2, "match_weight": [5.0] * 2, "evidence": ["{}"] * 2}
    wh.insert("identity_matches", ibis.memtable(pa.table(pairs)))
    r = erase(wh, find_customers(wh, "jane@x.com"))
    assert r.rows_removed["identity_matches"] == 1
    assert wh.execute(wh.table("identity_matches").unique_id_l).tolist() == ["crm:C2"]
