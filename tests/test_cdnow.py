"""The CDNOW purchase history ships with segone and loads as orders."""

from __future__ import annotations

from segone.datasets import load_cdnow, write_cdnow_orders
from segone.ingest import ingest_file


def test_cdnow_shape_matches_the_published_description():
    df = load_cdnow()
    assert len(df) == 6919
    assert df.customer_id.nunique() == 2357
    assert df.date.min().strftime("%Y-%m-%d") == "1997-01-01"
    assert df.date.max().strftime("%Y-%m-%d") == "1998-06-30"


def test_cdnow_ingests_as_orders(wh, tmp_path):
    n = write_cdnow_orders(tmp_path / "cd.csv")
    r = ingest_file(wh, "orders", tmp_path / "cd.csv")
    assert n == r.loaded == 6919 and r.rejected == 0
    total = wh.execute(wh.table("orders").amount.sum())
    assert abs(total - load_cdnow().amount.sum()) < 1e-6
    assert wh.execute(wh.table("orders").customer_id.nunique()) == 2357
