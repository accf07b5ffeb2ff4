"""Identity decisions made by hand (split, link, unlink) are honoured by the next resolution, and
an erasure takes them away with the person."""

from __future__ import annotations

import pytest

from segone.exceptions import IdentityDecisionError
from segone.identity import decisions, resolve
from segone.identity.erase import erase
from segone.ingest import ingest_file
from tests.conftest import write


def _customer_of(wh, node):
    cm = wh.execute(wh.table("customer_map"))
    hit = cm[cm.node == node]
    return hit.customer_id.iloc[0] if len(hit) else None


def _records_of(wh, cid):
    rc = wh.execute(wh.table("record_customers"))
    return set(rc[rc.customer_id == cid].record_key)


@pytest.fixture
def family(wh, tmp_path):
    """Two people of one household linked only by the family e-mail on their orders."""
    write(
        tmp_path / "orders.csv",
        "order_id,email,phone,ts,amount\n"
        "O1,family@x.com,+1 212 555 0101,2024-01-01,10\n"
        "O2,family@x.com,+1 212 555 0202,2024-01-02,20\n"
        "O3,,+1 212 555 0202,2024-01-03,5\n"
        "O4,solo@x.com,,2024-01-04,7\n",
    )
    ingest_file(wh, "orders", tmp_path / "orders.csv")
    return wh


def test_a_split_identifier_links_nothing_and_its_records_stay_with_the_others(family):
    wh = family
    resolve(wh)
    one = _customer_of(wh, "phone:+12125550101")
    assert one == _customer_of(wh, "phone:+12125550202")  # merged through the e-mail
    decisions.record(wh, "split", "email:family@x.com", by="tester")
    r = resolve(wh)
    a, b = _customer_of(wh, "phone:+12125550101"), _customer_of(wh, "phone:+12125550202")
    fam = _customer_of(wh, "email:family@x.com")
    assert len({a, b, fam}) == 3, (a, b, fam)
    assert _records_of(wh, a) == {"O1"} and _records_of(wh, b) == {"O2", "O3"}
    assert _records_of(wh, fam) == set()
    assert r.split >= 1
    # a later link of the pair undoes nothing of the split (the split is about the e-mail) but
    # links the two phones by hand
    decisions.record(wh, "link", "phone:+12125550202", "phone:+12125550101", by="tester")
    resolve(wh)
    assert _customer_of(wh, "phone:+12125550101") == _customer_of(wh, "phone:+12125550202")
    assert _customer_of(wh, "email:family@x.com") not in (
        _customer_of(wh, "phone:+12125550101"),
        None,
    )
    # the latest decision about a pair wins: unlinking it takes the hand-made edge away
    decisions.record(wh, "unlink", "phone:+12125550101", "phone:+12125550202", by="tester")
    resolve(wh)
    assert _customer_of(wh, "phone:+12125550101") != _customer_of(wh, "phone:+12125550202")


def test_bad_decisions_are_refused_with_a_clear_error(wh):
    with pytest.raises(IdentityDecisionError, match="one of split, link, unlink"):
        decisions.record(wh, "merge", "email:a@x.com")
    with pytest.raises(IdentityDecisionError, match="type:value"):
        decisions.record(wh, "split", "a@x.com")
    with pytest.raises(IdentityDecisionError, match="two different"):
        decisions.record(wh, "link", "email:a@x.com", "email:a@x.com")


def test_an_erasure_removes_the_decisions_naming_the_person(family):
    wh = family
    decisions.record(wh, "split", "email:solo@x.com", by="tester")
    decisions.record(wh, "link", "email:solo@x.com", "phone:+12125550101", by="tester")
    resolve(wh)
    cid = _customer_of(wh, "email:solo@x.com")
    r = erase(wh, [cid])
    assert r.rows_removed["identity_decisions"] == 2
    assert wh.count("identity_decisions") == 0


def test_the_cli_records_decisions_in_normal_form(tmp_path):
    from typer.testing import CliRunner

    from segone.cli import app
    from segone.project import Project

    root = tmp_path / "p"
    Project.init(root)
    run = CliRunner().invoke
    p = ["-p", str(root)]
    r = run(app, ["identity", "split", "email:Family@X.com", *p])
    assert r.exit_code == 0, r.output
    r = run(app, ["identity", "unlink", "source_id:CRM-1", "source_id:CRM-2", *p])
    assert r.exit_code == 0, r.output
    r = run(app, ["identity", "decisions", *p], env={"COLUMNS": "200"})
    assert "email:family@x.com" in r.output and "source_id:CRM-1" in r.output
    r = run(app, ["identity", "split", "family@x.com", *p])  # no type: which identifier?
    assert r.exit_code == 2 and "with its type" in r.output
    with Project.open(root).warehouse(read_only=True) as wh:
        assert wh.count("identity_decisions") == 2
