"""Real exports, loaded as a user loads them: one fixture per preset, written in the tool's own
layout (tests/fixtures/exports), recognised from the header with no flags."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from segone.cli import app
from segone.config import IngestSettings
from segone.exceptions import MappingError
from segone.ingest import ingest_file
from segone.ingest.loads import LOADED_TABLES, list_loads, undo_load
from segone.ingest.presets import all_presets, builtin_presets, detect_preset, parse_value_maps
from segone.schema import TABLES
from tests.conftest import write

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
runner = CliRunner()

# fixture file -> (kind, the preset its header must be recognised as)
FIXTURES = {
    "shopify_orders_export_1.csv": ("orders", "shopify-orders"),
    "shopify_customers_export.csv": ("customers", "shopify-customers"),
    "shopify_products_export.csv": ("products", "shopify-products"),
    "woocommerce_orders.csv": ("orders", "woocommerce-orders"),
    "woocommerce_customers.csv": ("customers", "woocommerce-customers"),
    "stripe_unified_payments.csv": ("orders", "stripe-payments"),
    "stripe_unified_customers.csv": ("customers", "stripe-customers"),
    "hubspot_contacts.csv": ("customers", "hubspot-contacts"),
    "mailchimp_subscribed_members_export_1a2b3c.csv": ("customers", "mailchimp-subscribed"),
    "mailchimp_unsubscribed_members_export_1a2b3c.csv": ("customers", "mailchimp-unsubscribed"),
    "klaviyo_profiles_export.csv": ("customers", "klaviyo-profiles"),
    "segment_tracks.csv": ("events", "segment-tracks"),
    "segment_pages.csv": ("events", "segment-pages"),
    "segment_identifies.csv": ("events", "segment-identifies"),
}


def header(name: str) -> list[str]:
    with open(EXPORTS / name, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_is_recognised_as_its_tool(name):
    kind, preset = FIXTURES[name]
    found = detect_preset(kind, header(name), builtin_presets())
    assert found is not None and found.name == preset
    # and as no other kind's layout
    for other in {k for k, _ in FIXTURES.values()} - {kind}:
        assert detect_preset(other, header(name), builtin_presets()) is None


def test_every_builtin_preset_has_a_fixture_or_is_headerless():
    covered = {p for _, p in FIXTURES.values()}
    for p in builtin_presets().values():
        assert (
            p.name in covered
            or p.header
            or p.name
            in {
                "shopify-customers-legacy",
                "woocommerce-orders-analytics",
                "mailchimp-cleaned",
            }
        ), p.name


def load(wh, name: str, **kw):
    kind, _ = FIXTURES[name]
    return ingest_file(wh, kind, EXPORTS / name, **kw)


def test_shopify_orders_every_order_with_all_its_lines(wh):
    r = load(wh, "shopify_orders_export_1.csv")
    assert r.preset == "shopify-orders"
    # 7 orders; #1006 has a quantity of "two": the order is held back with a reason
    assert (r.loaded, r.lines_loaded) == (6, 9)
    q = wh.execute(wh.table("quarantine"))
    assert list(q.line) == [10] and "quantity" in q.reason[0]
    orders = wh.execute(wh.table("orders").order_by("order_id")).set_index("order_id")
    assert orders.loc["#1001", "ts"] == pd.Timestamp("2024-05-05 23:34:00", tz="UTC")
    assert orders.loc["#1001", "amount"] == pytest.approx(54.90)
    assert orders.loc["#1003", "status"] == "partially_returned"
    assert orders.loc["#1004", "status"] == "returned"
    assert orders.loc["#1005", "status"] == "cancelled"
    assert orders.loc["#1007", "status"] == "pending"
    assert orders.loc["#1003", "coupon"] == "WELCOME10"
    assert orders.loc["#1001", "phone"] == "+1 (413) 555-0101"  # the apostrophe is gone
    lines = wh.execute(wh.table("order_lines").order_by(["order_id", "line_number"]))
    # the continuation rows kept their own line values; SKU-less gift cards load by name
    o3 = lines[lines.order_id == "#1003"]
    assert list(o3.product_id) == ["SER-03", "TOTE-04", "Gift Card"]
    assert list(o3.quantity) == [2, 1, 1] and list(o3.line_discount) == [5.0, 0.0, 0.0]
    # POS "Device ID" is not taken for a device identifier (it would merge strangers)
    assert orders.anonymous_id.isna().all()


def test_shopify_customers_and_products(wh):
    r = load(wh, "shopify_customers_export.csv")
    assert (r.loaded, r.rejected, r.fields_dropped) == (4, 0, 1)  # Zoë's consent "maybe"
    c = wh.execute(wh.table("customers").order_by("source_id")).set_index("source_id")
    assert c.loc["7012345678901", "postcode"] == "01101"
    assert c.loc["7012345678901", "consent_email"] == True  # noqa: E712
    assert c.loc["7012345678903", "consent_sms"] == True  # noqa: E712
    assert c.loc["7012345678904", "first_name"] == "Zoë"
    p = load(wh, "shopify_products_export.csv")
    assert p.loaded == 4  # three products, one with two variants; image rows add nothing
    prod = wh.execute(wh.table("products").order_by("product_id")).set_index("product_id")
    assert prod.loc["MASK-01", "name"] == "Masque au Collagène"
    assert prod.loc["MASK-01", "price"] == pytest.approx(34.90)
    assert prod.loc["LIP-02C", "name"] == "Lip Balm"  # filled down from the first variant
    assert prod.loc["gift-card", "price"] == pytest.approx(25.0)  # no SKU: the handle


def test_crm_and_email_tools_carry_stage_and_consent(wh):
    load(wh, "hubspot_contacts.csv")
    h = wh.execute(wh.table("customers").order_by("source_id")).set_index("source_id")
    assert h.loc["51", "crm_stage"] == "Opportunity"
    assert h.loc["52", "crm_stage"] == "marketingqualifiedlead"
    assert h.loc["51", "consent_email"] == True  # noqa: E712 - "Unsubscribed ...: No"
    assert h.loc["52", "consent_email"] == False  # noqa: E712
    assert h.loc["51", "social_handle"] == "janedoe"
    assert h.loc["52", "phone"] == "(617) 555-0199"
    assert h.loc["51", "extra"]["Lead Status"] == "Open Deal"
    load(wh, "mailchimp_subscribed_members_export_1a2b3c.csv")
    load(wh, "mailchimp_unsubscribed_members_export_1a2b3c.csv")
    k = load(wh, "klaviyo_profiles_export.csv")
    assert k.loaded == 2
    c = wh.execute(wh.table("customers"))
    consent = {(r.source, r.email): r.consent_email for r in c.itertuples()}
    assert consent[("mailchimp_subscribed_members_export_1a2b3c", "jane.doe@example.com")]
    assert not consent[("mailchimp_unsubscribed_members_export_1a2b3c", "bob@example.org")]
    assert consent[("klaviyo_profiles_export", "jane.doe@example.com")]
    assert not consent[("klaviyo_profiles_export", "dana@example.com")]


def test_stripe_and_woocommerce(wh):
    s = load(wh, "stripe_unified_payments.csv")
    assert s.loaded == 4
    o = wh.execute(wh.table("orders").order_by("order_id")).set_index("order_id")
    assert o.loc["ch_3PaA2", "status"] == "returned"
    assert o.loc["ch_3PaA3", "status"] == "cancelled"
    assert o.loc["ch_3PaA3", "amount"] == pytest.approx(1249.0)
    assert o.loc["ch_3PaA4", "amount"] == pytest.approx(15.5)
    assert o.loc["ch_3PaA1", "currency"] == "USD"
    w = load(wh, "woocommerce_orders.csv")
    assert (w.loaded, w.rejected) == (3, 1)  # a negative total is held back
    o = wh.execute(wh.table("orders").order_by("order_id")).set_index("order_id")
    assert o.loc["4101", "status"] == "completed" and o.loc["4103", "status"] == "returned"
    assert o.loc["4101", "email"] == "Jane.Doe@example.com"
    # line items packed in line_item_1, line_item_2: one line each, in order; a SKU-less item
    # takes the shop's product id; price per unit from the line subtotal;
    # discount = subtotal - total
    lines = wh.execute(wh.table("order_lines").order_by(["order_id", "line_number"]))
    got = {
        (r.order_id, int(r.line_number)): (r.product_id, int(r.quantity), r.unit_price)
        for r in lines.itertuples()
    }
    assert got == {
        ("4101", 1): ("HD-1", 1, 20.0),
        ("4101", 2): ("41", 3, 5.0),  # no SKU: the shop's product id
        ("4102", 1): ("BN-2", 1, 25.0),
        ("4103", 1): ("CP-1", 1, 15.0),
    }
    disc = lines.set_index(["order_id", "line_number"])["line_discount"]
    assert disc.loc[("4102", 1)] == pytest.approx(5.0) and disc.loc[("4101", 1)] == 0
    q = wh.execute(wh.table("quarantine"))
    # the held-back order: one quarantine row, not one per item
    assert len(q[q.record.str.contains("4104")]) == 1
    assert load(wh, "woocommerce_customers.csv").loaded == 2
    assert load(wh, "stripe_unified_customers.csv").loaded == 2


def test_segment_warehouse_tables_keep_traits_properties_and_context(wh):
    for name in ("segment_identifies.csv", "segment_tracks.csv", "segment_pages.csv"):
        assert load(wh, name).loaded > 0
    ev = wh.execute(wh.table("events").order_by("message_id")).set_index("message_id")
    assert ev.loc["ajs-i1", "type"] == "identify"
    assert ev.loc["ajs-i1", "traits"]["email"] == "jane.doe@example.com"
    assert ev.loc["ajs-1", "event"] == "Product Viewed"
    assert ev.loc["ajs-1", "context"]["page_path"] == "/products/mask"
    assert ev.loc["ajs-p2", "properties"]["path"] == "/pricing"


def test_a_users_own_preset_and_value_maps(tmp_path, wh):
    f = write(
        tmp_path / "till.csv",
        "Receipt;Card;When;Paid;State\n"
        "R1;C9;2024-01-02 10:00;12,50;ok\n"
        "R2;C9;2024-01-03 10:00;3,00;back\n",
    )
    mine = {
        "till": {
            "kind": "orders",
            "detect": ["Receipt", "Card", "Paid"],
            "columns": {
                "order_id": "Receipt",
                "loyalty_id": "Card",
                "ts": "When",
                "amount": "Paid",
            },
            "values": {"status": {"ok": "completed"}},
        }
    }
    settings = IngestSettings(presets=mine)
    r = ingest_file(
        wh,
        "orders",
        f,
        settings=settings,
        value_maps=parse_value_maps(["status:BACK=returned"]),
        mapping={"status": "State"},
    )
    assert r.preset == "till" and r.loaded == 2
    o = wh.execute(wh.table("orders").order_by("order_id"))
    assert list(o.status) == ["completed", "returned"] and list(o.loyalty_id) == ["C9", "C9"]
    with pytest.raises(MappingError, match="unknown preset"):
        ingest_file(wh, "orders", f, preset="nope")
    with pytest.raises(MappingError, match="for customers files"):
        ingest_file(wh, "orders", f, preset="hubspot-contacts")
    with pytest.raises(MappingError, match="FIELD:FROM=TO"):
        parse_value_maps(["status=paid"])
    with pytest.raises(MappingError, match="unknown key"):
        all_presets({"x": {"kind": "orders", "colums": {}}})


def _content(wh) -> dict[str, list]:
    out = {}
    for name in TABLES:
        if name in ("loads", *LOADED_TABLES):
            df = wh.execute(wh.table(name))
            df = df.drop(columns=[c for c in ("loaded_at", "quarantined_at") if c in df.columns])
            out[name] = sorted(map(repr, df.astype(str).to_dict("records")))
    return out


def test_undo_leaves_the_warehouse_as_it_was(wh):
    load(wh, "shopify_customers_export.csv")
    load(wh, "hubspot_contacts.csv")
    before = _content(wh)
    r = load(wh, "shopify_orders_export_1.csv")
    assert r.loaded and wh.count("quarantine") > 0
    assert _content(wh) != before
    removed = undo_load(wh, r.load_id)
    assert removed["orders"] == r.loaded and removed["order_lines"] == r.lines_loaded
    assert _content(wh) == before
    assert r.load_id not in set(list_loads(wh).load_id)
    # the file loads again, whole
    assert load(wh, "shopify_orders_export_1.csv").loaded == r.loaded


def test_dry_run_shows_the_layout_and_writes_nothing(wh):
    load(wh, "hubspot_contacts.csv")
    before = _content(wh)
    r = load(wh, "shopify_customers_export.csv", dry_run=True)
    assert r.dry_run and r.preset == "shopify-customers"
    assert r.mapping["source_id"] == "Customer ID" and "Tags" in r.extra_columns
    assert r.fields_dropped == 1 and any(code.startswith("dropped_field") for code in r.problems)
    assert any("maybe" in reason for _, reason in r.examples)
    assert _content(wh) == before


def test_cli_presets_dry_run_loads_undo_and_exit_codes(tmp_path):
    proj = tmp_path / "p"
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    listed = runner.invoke(app, ["ingest", "presets"])
    assert listed.exit_code == 0 and "shopify-orders" in listed.output
    assert "Lineitem quantity" in listed.output
    f = str(EXPORTS / "hubspot_contacts.csv")
    dry = runner.invoke(app, ["ingest", "customers", f, "-p", str(proj), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "layout hubspot-contacts" in dry.output and "nothing written" in dry.output
    assert "encoding: utf-8" in dry.output and "delimiter: ','" in dry.output
    mc = str(EXPORTS / "mailchimp_subscribed_members_export_1a2b3c.csv")
    dry_mc = runner.invoke(app, ["ingest", "customers", mc, "-p", str(proj), "--dry-run"])
    assert "dates without a year in birth_date: MM/DD" in dry_mc.output, dry_mc.output
    real = runner.invoke(app, ["ingest", "customers", f, "-p", str(proj)])
    assert real.exit_code == 0 and "loaded 3 customers" in real.output
    assert "kept under extra" in real.output
    again = runner.invoke(app, ["ingest", "customers", f, "-p", str(proj)])
    assert again.exit_code == 0  # already loaded is not a failure
    bad = write(tmp_path / "bad.csv", "id,email,created\n,a@x.com,2024-01-01\n,b@x.com,x\n")
    all_rejected = runner.invoke(app, ["ingest", "customers", str(bad), "-p", str(proj)])
    assert all_rejected.exit_code == 1 and "rejected 2" in all_rejected.output
    empty = write(tmp_path / "empty.csv", "")
    assert runner.invoke(app, ["ingest", "customers", str(empty), "-p", str(proj)]).exit_code == 1
    usage = runner.invoke(app, ["ingest", "customers", f, "-p", str(proj), "--preset", "nope"])
    assert usage.exit_code == 2 and "unknown preset" in usage.output
    loads = runner.invoke(app, ["loads", "-p", str(proj)])
    assert loads.exit_code == 0 and "customers" in loads.output
    with_ids = list_loads_of(proj)
    assert len(with_ids) == 3  # the dry run and the file that could not be read left none
    undo = runner.invoke(app, ["loads", "undo", with_ids[0], "-p", str(proj)])
    assert undo.exit_code == 0 and "removed" in undo.output
    assert runner.invoke(app, ["loads", "undo", "nope", "-p", str(proj)]).exit_code == 2


def list_loads_of(proj: Path) -> list[str]:
    from segone.project import Project

    with Project.open(proj).warehouse() as w:
        return [x for x in list_loads(w).load_id if x.startswith("customers")]


def test_cdnow_master_file_loads_with_its_preset(wh):
    path = EXPORTS / "cdnow_master_head.txt"  # whitespace separated, no header
    r = ingest_file(wh, "orders", path, preset="cdnow")
    assert (r.rows_read, r.loaded, r.rejected) == (40, 40, 0)
    o = wh.execute(wh.table("orders").order_by(["customer_id", "ts"]))
    first = o.iloc[0]
    assert (first.customer_id, str(first.ts)[:10], first.amount) == ("00004", "1997-01-01", 29.33)
    assert o.order_id.str.startswith("row-").all() and o.order_id.is_unique
    # the derived ids are stable: the same file again adds nothing
    assert ingest_file(wh, "orders", path, preset="cdnow").duplicates == 40


def test_mailchimp_mm_dd_birthdays_keep_month_and_day_without_a_year(wh):
    # Mailchimp's birthday merge field exports as MM/DD, with no year
    r = load(wh, "mailchimp_subscribed_members_export_1a2b3c.csv")
    assert r.loaded == 2 and r.fields_dropped == 0 and r.rejected == 0
    c = wh.execute(wh.table("customers")).set_index("email")
    jane = c.loc["jane.doe@example.com"]
    assert pd.isna(jane["birth_date"])  # no year is made up
    assert (jane["extra"]["birth_month"], jane["extra"]["birth_day"]) == (2, 17)
    assert "birth_month" not in (c.loc["carol@example.net", "extra"] or {})  # no birthday
    # the same file again adds nothing: the month and day are part of the record's content
    again = load(wh, "mailchimp_subscribed_members_export_1a2b3c.csv")
    assert (again.loaded, again.duplicates) == (0, 2)


def test_day_first_and_impossible_year_less_birthdays(wh, tmp_path):
    f = tmp_path / "members.csv"
    f.write_text(
        "id,Email Address,Birthday\n"
        "1,a@example.com,25/12\n"  # only day-first reads: the file's birthdays are DD/MM
        "2,b@example.com,03/04\n"
        "3,c@example.com,31/02\n"  # no such day: dropped and recorded, the record loads
    )
    r = ingest_file(wh, "customers", f)
    assert (r.loaded, r.fields_dropped) == (3, 1)
    c = wh.execute(wh.table("customers")).set_index("email")
    md = {e: (x.get("birth_month"), x.get("birth_day")) for e, x in c["extra"].items() if x}
    assert md["a@example.com"] == (12, 25) and md["b@example.com"] == (4, 3)
    assert "birth_month" not in (c.loc["c@example.com", "extra"] or {})
    q = wh.execute(wh.table("quarantine"))
    assert list(q.problems) == ["dropped_field:invalid_date(birth_date)"]
