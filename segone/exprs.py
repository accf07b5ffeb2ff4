"""Small Ibis expression helpers shared by the pipelines."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def lit(s: str) -> ir.StringValue:
    """A string literal, typed, so that concatenation and unions compile the same everywhere."""
    return ibis.literal(s, type="string")


def of(table: ibis.Table, rc: ibis.Table, name: str, key: str) -> ibis.Table:
    """``table`` with the ``customer_id`` of each record (records of unknown people dropped).

    ``rc`` is ``record_customers``; ``name`` the record table and ``key`` its record key.
    """
    if "customer_id" in table.columns:  # the source's own customer id is not the person's id
        table = table.rename(source_customer_id="customer_id")
    links = rc.filter(rc.record_table == name).select(_key="record_key", customer_id="customer_id")
    return table.join(links, table[key].cast("string") == links._key).drop("_key")
