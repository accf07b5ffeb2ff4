"""The generated store: deterministic, realistic, and faithful to its own ground truth."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest

from segone.config import IngestSettings
from segone.datasets import SAMPLE_FILES, generate_sample
from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse

LOYALTY_MAP = {"customers_loyalty": {"source_id": "card_number", "loyalty_id": "card_number"}}


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = generate_sample(tmp_path / "a", customers=300, seed=5)
    b = generate_sample(tmp_path / "b", customers=300, seed=5)
    generate_sample(tmp_path / "c", customers=300, seed=6)
    assert a == b
    assert _digest(tmp_path / "a" / "data") == _digest(tmp_path / "b" / "data")
    assert _digest(tmp_path / "a" / "data") != _digest(tmp_path / "c" / "data")


def test_ingested_sample_reproduces_ground_truth_counts(small_sample, tmp_path):
    out, counts = small_sample
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        settings = IngestSettings(mapping=LOYALTY_MAP)
        for kind, name in SAMPLE_FILES:
            ingest_file(wh, kind, out / "data" / name, settings=settings)
        for table in (
            "customers",
            "orders",
            "order_lines",
            "events",
            "interactions",
            "products",
            "quarantine",
        ):
            assert wh.count(table) == counts[table], table
        # every record segone was shown is traceable to one true person, except rejected ones
        truth = pd.read_parquet(out / "truth" / "records.parquet")
        loaded = set(wh.execute(wh.table("events").message_id))
        expected = set(truth[(truth.table == "events") & ~truth.rejected].key)
        assert loaded == expected


def test_truth_is_kept_apart_from_data(small_sample):
    out, _ = small_sample
    for p in (out / "data").iterdir():
        head = p.read_text(errors="ignore")[:5000].lower()
        for leak in ("person_id", "churned", "discount_seeker", "life_event", "ground"):
            assert leak not in head, (p.name, leak)


def test_people_have_one_to_four_identities_and_traps(small_sample):
    out, _ = small_sample
    people = pd.read_parquet(out / "truth" / "people.parquet")
    assert people.n_identities.between(1, 4).all()
    assert set(people.n_identities) == {1, 2, 3, 4}
    shop = pacsv.read_csv(out / "data" / "customers_shop.csv").to_pandas()
    crm = pacsv.read_csv(out / "data" / "customers_crm.csv").to_pandas()
    # family e-mails: one address, two different people
    fam = shop[shop.email.str.contains("family", na=False)]
    assert fam.email.duplicated(keep=False).any()
    # shared kiosk devices used by several different people
    kiosks = set(pd.read_parquet(out / "truth" / "shared_devices.parquet").anonymous_id)
    assert kiosks
    on_kiosk = 0
    with open(out / "data" / "events.jsonl") as f:
        for line in f:
            on_kiosk += any(k in line for k in kiosks)
    assert on_kiosk > 0
    # typos and formatting variants between sources
    assert crm["Mobile"].dropna().str.contains(r"[().\- ]").any()


def test_truth_marks_which_records_are_linkable(small_sample):
    out, _ = small_sample
    rec = pd.read_parquet(out / "truth" / "records.parquet")
    people = pd.read_parquet(out / "truth" / "people.parquet").set_index("person_id")
    # a group never holds two people, however many share a family e-mail or a kiosk
    assert (rec.groupby("link_group").person_id.nunique() == 1).all()
    # a rejected record links nothing
    size = rec.groupby("link_group").size()
    assert (rec[rec.rejected].link_group.map(size) == 1).all()
    shown = rec[~rec.rejected]
    groups = shown.groupby("person_id").link_group.nunique()
    # most people can be joined into one customer; some hold records that share nothing
    assert 0.5 < (groups == 1).mean() < 0.95, groups.value_counts()
    # a person's customer records all show the name and the postcode: always one group
    cust = shown[shown.table == "customers"].groupby("person_id").link_group.nunique()
    assert (cust == 1).all()
    # a social-only person's posts share the handle (one group), and nothing else of theirs
    social_only = people.index[people.has_social & (people.n_identities == 1)]
    posts = shown[(shown.table == "interactions") & shown.person_id.isin(social_only)]
    assert len(posts) and (posts.groupby("person_id").link_group.nunique() == 1).all()


def test_buy_till_you_die_and_life_events(small_sample):
    out, _ = small_sample
    people = pd.read_parquet(out / "truth" / "people.parquet")
    rec = pd.read_parquet(out / "truth" / "records.parquet")
    orders = pacsv.read_csv(out / "data" / "orders.csv").to_pandas()
    orders = orders.merge(
        rec[rec.table == "orders"][["key", "person_id"]], left_on="OrderNumber", right_on="key"
    )
    orders["ts"] = pd.to_datetime(orders["Order Date"], errors="coerce", utc=True, format="ISO8601")
    churned = people[people.churned]
    assert 0.1 < len(churned) / people.buyer.sum() < 0.9
    last = orders.groupby("person_id").ts.max()
    late = last.reindex(churned.person_id) > churned.set_index(
        "person_id"
    ).churned_at + pd.Timedelta(days=1)
    assert not late.any(), "a churned person bought after their churn time"
    life = pd.read_parquet(out / "truth" / "life_events.parquet")
    assert len(life) > 0
    m = orders.merge(life, on="person_id")
    after = m[m.ts >= m.happened_at]
    before = m[m.ts < m.happened_at]
    share_after = (after.Category == after.top_category_after).mean()
    share_before = (before.Category == before.top_category_after).mean()
    assert share_after > share_before + 0.3


def test_discount_seekers_and_vips_behave_as_intended(small_sample):
    out, _ = small_sample
    people = pd.read_parquet(out / "truth" / "people.parquet").set_index("person_id")
    rec = pd.read_parquet(out / "truth" / "records.parquet")
    lines = pacsv.read_csv(out / "data" / "orders.csv").to_pandas()
    lines = lines.merge(
        rec[rec.table == "orders"][["key", "person_id"]], left_on="OrderNumber", right_on="key"
    )
    disc = (lines["Line Discount"] > 0).groupby(lines.person_id).mean()
    seekers = people.index[people.discount_seeker]
    others = people.index[people.buyer & ~people.discount_seeker]
    assert disc.reindex(seekers).mean() > 0.6 > 0.3 > disc.reindex(others).mean()
    vip_rev = people.loc[people.vip, "revenue"].mean()
    assert vip_rev > 2 * people.loc[people.buyer & ~people.vip, "revenue"].mean()


def test_blocks_join_seamlessly(tmp_path):
    counts = generate_sample(tmp_path, customers=1200, seed=4, block_size=500)  # three blocks
    people = pd.read_parquet(tmp_path / "truth" / "people.parquet")
    assert list(people.person_id) == list(range(1200))
    shop = pacsv.read_csv(tmp_path / "data" / "customers_shop.csv").to_pandas()
    assert shop.customer_id.is_unique
    personal = shop[~shop.email.str.contains("family")]
    assert (
        personal.email.is_unique and personal.phone.dropna().is_unique
    )  # no clashes across blocks
    crm = pacsv.read_csv(tmp_path / "data" / "customers_crm.csv").to_pandas()
    rec = pd.read_parquet(tmp_path / "truth" / "records.parquet")
    assert rec.groupby("table").key.apply(lambda k: k.is_unique).all()
    assert set(crm["Contact ID"].dropna()) <= set(rec[rec.source == "customers_crm"].key)
    with DuckDBWarehouse(":memory:") as wh:
        settings = IngestSettings(mapping=LOYALTY_MAP)
        for kind, name in SAMPLE_FILES:
            ingest_file(wh, kind, tmp_path / "data" / name, settings=settings)
        for table in ("customers", "orders", "order_lines", "events", "interactions", "quarantine"):
            assert wh.count(table) == counts[table], table


@pytest.mark.parametrize("n", [1, 7])
def test_tiny_samples_work(tmp_path, n):
    counts = generate_sample(tmp_path, customers=n, seed=1)
    assert counts["people"] == n and np.isfinite(counts["events"])
