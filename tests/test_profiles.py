"""The single customer view: features computed right, as of any date, on real DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segone.ingest import ingest_file
from segone.pipeline.build import build
from segone.profiles.lookup import find_customers, profile_of
from tests.conftest import jsonl, write

AS_OF = datetime(2024, 3, 31, 23, 59, tzinfo=UTC)


@pytest.fixture
def shop(wh, tmp_path):
    write(
        tmp_path / "crm.csv",
        "id,first_name,last_name,email,stage,email_optin,sms_optin,updated\n"
        "C1,Jane,Doe,jane@x.com,lead,yes,no,2024-01-01\n"
        "C2,Bob,Roe,bob@x.com,opportunity,no,,2024-01-01\n",
    )
    write(
        tmp_path / "crm2.csv",
        "id,first_name,last_name,email,stage,email_optin,sms_optin,updated\n"
        "C1,Jane,Doe,jane@x.com,customer,,yes,2024-02-01\n",
    )
    write(
        tmp_path / "orders.csv",
        "order_id,email,ts,product_id,category,quantity,unit_price,line_discount,returned_quantity,coupon\n"
        "O1,jane@x.com,2024-01-10,P1,Outdoors > Fishing,1,100,0,0,\n"
        "O1,jane@x.com,2024-01-10,P2,Books > Fiction,2,10,0,1,\n"
        "O2,jane@x.com,2024-03-20,P1,Outdoors > Fishing,1,100,20,0,SAVE20\n"
        "O3,jane@x.com,2024-05-01,P3,Books > Fiction,1,10,0,0,\n",
    )
    jsonl(
        tmp_path / "ev.jsonl",
        [
            {
                "type": "identify",
                "userId": "u1",
                "anonymousId": "a1",
                "traits": {"email": "jane@x.com"},
                "timestamp": "2024-03-01T10:00:00Z",
                "messageId": "e1",
            },
            {
                "type": "page",
                "anonymousId": "a1",
                "name": "Pricing",
                "properties": {"path": "/pricing"},
                "timestamp": "2024-03-20T10:00:00Z",
                "messageId": "e2",
            },
            {
                "type": "page",
                "anonymousId": "a1",
                "name": "Pricing",
                "properties": {"path": "/pricing"},
                "timestamp": "2024-01-02T10:00:00Z",
                "messageId": "e3",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Products Searched",
                "properties": {"query": "Fly Rod"},
                "timestamp": "2024-03-02T10:00:00Z",
                "messageId": "e4",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Products Searched",
                "properties": {"query": "fly rod "},
                "timestamp": "2024-03-03T10:00:00Z",
                "messageId": "e5",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Email Delivered",
                "timestamp": "2024-03-04T10:00:00Z",
                "messageId": "e6",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Email Delivered",
                "timestamp": "2024-03-05T10:00:00Z",
                "messageId": "e7",
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Email Opened",
                "timestamp": "2024-03-05T11:00:00Z",
                "messageId": "e8",
            },
        ],
    )
    write(
        tmp_path / "social.csv",
        "id,type,author_email,text,ts\n"
        "I1,follow,jane@x.com,,2024-01-05\n"
        "I2,post,jane@x.com,I love my new fly rod. Great service!,2024-02-05\n"
        "I3,review,bob@x.com,Terrible. It broke and nobody answers.,2024-02-06\n",
    )
    ingest_file(wh, "customers", tmp_path / "crm.csv", source="crm")
    ingest_file(wh, "customers", tmp_path / "crm2.csv", source="crm")
    ingest_file(wh, "orders", tmp_path / "orders.csv")
    ingest_file(wh, "events", tmp_path / "ev.jsonl")
    ingest_file(wh, "interactions", tmp_path / "social.csv")
    return wh


def _profile(wh, ident):
    (cid,) = find_customers(wh, ident)
    return profile_of(wh, cid)["profile"]


def test_single_customer_view_features(shop):
    r = build(shop, as_of=AS_OF)
    assert r.profiles == 2
    p = _profile(shop, "JANE@X.COM")
    assert p["orders"] == 2  # O3 is after the as-of date
    assert p["revenue"] == pytest.approx(100 + 20 + 80)
    assert p["aov"] == pytest.approx(100)
    assert p["discount_order_share"] == pytest.approx(0.5)
    assert p["full_price_item_share"] == pytest.approx(3 / 4)
    assert p["returned_items"] == 1
    assert p["recency_days"] == pytest.approx(
        (AS_OF - datetime(2024, 3, 20, tzinfo=UTC)).total_seconds() / 86400
    )
    assert sorted(p["categories_bought"]) == ["Books > Fiction", "Outdoors > Fishing"]
    aff = dict(p["category_affinity"])
    assert aff["Outdoors > Fishing"] > aff["Books > Fiction"] and abs(sum(aff.values()) - 1) < 0.01
    assert p["pricing_views"] == 2 and p["pricing_views_30d"] == 1
    assert list(p["top_search_terms"]) == ["fly rod"]
    assert p["email_open_rate"] == pytest.approx(0.5)
    assert p["social_follower"] is True or p["social_follower"] == True  # noqa: E712
    assert p["avg_sentiment"] > 0.5
    assert p["crm_stage"] == "customer"  # the newer CRM version wins
    assert p["consent_sms"] == True  # noqa: E712
    assert p["consent_email"] == True  # noqa: E712 - kept from the older version, not overwritten by a blank
    assert set(p["channels"]) >= {"web", "email", "social", "crm"}
    assert p["rfm_cell"] is not None
    bob = _profile(shop, "bob@x.com")
    assert bob["orders"] == 0 and bob["avg_sentiment"] < -0.5 and bob["crm_stage"] == "opportunity"


def test_as_of_later_sees_more(shop):
    build(shop, as_of=datetime(2024, 12, 31, tzinfo=UTC))
    assert _profile(shop, "jane@x.com")["orders"] == 3


def test_lookup_by_any_identifier_and_timeline(shop):
    build(shop, as_of=AS_OF)
    cid = find_customers(shop, "jane@x.com")
    for ident in ("u1", "a1", "C1", " Jane@X.com ", cid[0]):
        assert find_customers(shop, ident) == cid, ident
    assert find_customers(shop, "nobody@nowhere.com") == []
    p = profile_of(shop, cid[0], timeline=5)
    assert len(p["timeline"]) == 5 and p["timeline"].ts.is_monotonic_decreasing
    assert set(p["identifiers"].id_type) >= {"email", "user_id", "anonymous_id", "source_id"}


def test_third_party_enrichment_joins_by_email_domain_and_postcode(shop, tmp_path):
    write(tmp_path / "scores.csv", "E-mail,credit_band,household_size\nJANE@x.com,A,2\n")
    write(tmp_path / "firmo.csv", "domain,industry,employees\nx.com,retail,120\n")
    write(tmp_path / "bad.csv", "domain,industry\n,nothing\n")
    r = ingest_file(shop, "enrichment", tmp_path / "scores.csv", source="bureau")
    assert r.loaded == 1
    ingest_file(shop, "enrichment", tmp_path / "firmo.csv", source="firmographics")
    assert (
        ingest_file(shop, "enrichment", tmp_path / "firmo.csv", source="firmographics").loaded == 0
    )
    bad = ingest_file(shop, "enrichment", tmp_path / "bad.csv")
    assert bad.rejected == 1  # a row with no key at all
    build(shop, as_of=AS_OF)
    p = _profile(shop, "jane@x.com")
    enr = dict(p["enrichment"])
    assert set(enr) == {"bureau", "firmographics"}
    assert '"credit_band":"A"' in enr["bureau"].replace(" ", "")
    assert '"industry":"retail"' in enr["firmographics"].replace(" ", "")
    bob = _profile(shop, "bob@x.com")
    assert set(dict(bob["enrichment"])) == {
        "firmographics"
    }  # same company domain, not Jane's score


def test_lifecycle_is_judged_on_each_persons_cadence(wh, tmp_path):
    from datetime import timedelta

    end = datetime(2024, 6, 30, tzinfo=UTC)
    rows = ["order_id,email,ts,amount"]
    for i in range(10):  # a weekly buyer whose last order was 3 weeks ago: at risk
        rows.append(f"W{i},weekly@x.com,{(end - timedelta(days=21 + 7 * i)).date()},10")
    for i in range(3):  # a twice-a-year buyer whose last order was 3 weeks ago: active
        rows.append(f"H{i},halfyear@x.com,{(end - timedelta(days=21 + 182 * i)).date()},10")
    for i in range(4):  # a weekly buyer silent for 6 months: churned
        rows.append(f"C{i},gone@x.com,{(end - timedelta(days=180 + 7 * i)).date()},10")
    rows += [
        f"R{i},back@x.com,{d},10"
        for i, d in enumerate(["2023-01-01", "2023-01-15", "2023-02-01", "2024-06-20"])
    ]  # gone for a year, came back
    rows += ["N0,new@x.com,2024-06-25,10"]
    write(tmp_path / "o.csv", "\n".join(rows) + "\n")
    write(tmp_path / "c.csv", "id,email\nP1,prospect@x.com\n")
    ingest_file(wh, "orders", tmp_path / "o.csv")
    ingest_file(wh, "customers", tmp_path / "c.csv", source="crm")
    build(wh, as_of=end)
    stage = {
        e: _profile(wh, f"{e}@x.com")["lifecycle_stage"]
        for e in ("weekly", "halfyear", "gone", "back", "new", "prospect")
    }
    assert stage == {
        "weekly": "at_risk",
        "halfyear": "active",
        "gone": "churned",
        "back": "reactivated",
        "new": "new",
        "prospect": "prospect",
    }
