"""The right to be forgotten: remove a person from every table, keep an audit without personal
data, and refuse their records if old files are loaded again while the erasure stands.

Identifiers are remembered only as salted SHA-256 hashes (``erased_identifiers``); the salt is
a random per-project secret (``project_secrets``), so the hashes cannot be matched against a
list of e-mail addresses without the warehouse itself.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segone.exceptions import SegoneError
from segone.identity.graph import IdentitySettings, kind_identifiers, record_identifiers
from segone.store.base import Warehouse

RAW_KEYS = {  # raw table -> how its rows are keyed in record_customers
    "events": "message_id",
    "orders": "order_id",
    "interactions": "interaction_id",
}


class NotFoundError(SegoneError):
    """No customer has the identifier."""


@dataclass
class ErasureResult:
    erasure_id: str
    customers: int
    rows_removed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        total = sum(self.rows_removed.values())
        parts = ", ".join(f"{n:,} {t}" for t, n in self.rows_removed.items() if n)
        return (
            f"erasure {self.erasure_id}: {self.customers} customer(s), {total:,} rows removed "
            f"({parts}); their identifiers will be refused if loaded again"
        )


def project_salt(wh: Warehouse) -> str:
    """The project's secret salt, created on first use."""
    t = wh.table("project_secrets")
    got = wh.execute(t.filter(t.name == "identity_salt").value)
    if len(got):
        return str(got.iloc[0])
    value = secrets.token_hex(32)
    wh.insert(
        "project_secrets", ibis.memtable(pa.table({"name": ["identity_salt"], "value": [value]}))
    )
    return value


def hashed(node: ir.StringValue, salt: str) -> ir.StringValue:
    return (ibis.literal(salt) + node).hexdigest("sha256")


def erased_lines(wh: Warehouse, kind: str, rows: ibis.Table, line: str, cc: str) -> ibis.Table:
    """Lines of ``rows`` (validated records of ``kind``) that carry an erased identifier."""
    ids = kind_identifiers(kind, rows, cc)
    erased = wh.table("erased_identifiers")
    if not ids:
        return rows.select(line).filter(ibis.literal(False))
    salt = project_salt(wh)
    parts = [rows.select(line, node=ibis.literal(t) + ":" + v) for t, v in ids]
    nodes = ibis.union(*parts, distinct=False)
    nodes = nodes.filter(nodes.node.notnull()).mutate(node_hash=hashed(nodes.node, salt))
    return nodes.semi_join(erased, "node_hash").select(line).distinct()


#: Derived tables keyed by the person: everything segone computed about them goes too.
PERSON_TABLES = (
    "customer_map",
    "record_customers",
    "profiles",
    "scores",
    "recommendations",
    "category_affinity",
    "segment_memberships",
    "transitions",
)


def erase(
    wh: Warehouse, customer_ids: list[str], settings: IdentitySettings | None = None
) -> ErasureResult:
    """Remove the customers ``customer_ids`` (see ``profiles.lookup.find_customers``)."""
    settings = settings or IdentitySettings()
    if not customer_ids:
        raise NotFoundError("no customer to erase")
    salt = project_salt(wh)
    ids = ibis.memtable(pa.table({"customer_id": customer_ids}))
    ids = wh.stage("_segone_erase_ids", ids.to_pyarrow(), append=False)
    rc = wh.table("record_customers")
    cm = wh.table("customer_map")
    all_ids = wh.materialize("_segone_erase_all", record_identifiers(wh, settings))
    refused = wh.table("identity_refusals").select("node")
    # The person's records: those of the last build, plus any loaded since that carry one of
    # their (non-shared) identifiers, followed one step further (a new phone on a new order).
    nodes = cm.semi_join(ids, "customer_id").select("node")
    keys = rc.semi_join(ids, "customer_id").select("record_table", "record_key")
    for _ in range(2):
        more = all_ids.semi_join(nodes, "node").select("record_table", "record_key")
        keys = wh.materialize("_segone_erase_keys", ibis.union(keys, more, distinct=True))
        found = all_ids.semi_join(keys, ["record_table", "record_key"]).select("node")
        nodes = wh.materialize(
            "_segone_erase_nodes",
            ibis.union(nodes, found.anti_join(refused, "node"), distinct=True),
        )
    # every identifier on the person's records, refused ones included (for identity_refusals)
    rec_nodes = (
        all_ids.semi_join(keys, ["record_table", "record_key"])
        .select("node", "id_type", "value")
        .distinct()
    )
    rec_nodes = wh.materialize("_segone_erase_rec_nodes", rec_nodes)
    raw_values = _search_values(wh.execute(rec_nodes))
    erasure_id = uuid.uuid4().hex
    removed: dict[str, int] = {}
    with wh.transaction():
        for table, key in RAW_KEYS.items():
            k = keys.filter(keys.record_table == table).select(**{key: keys.record_key})
            if table == "orders":
                removed["order_lines"] = wh.delete_matching("order_lines", k, ["order_id"])
            if table == "interactions":
                removed["interaction_sentiment"] = wh.delete_matching(
                    "interaction_sentiment", k, ["interaction_id"]
                )
            removed[table] = wh.delete_matching(table, k, [key])
        c = keys.filter(keys.record_table == "customers")
        parts = c.record_key.split(":")
        ck = c.select(source=parts[0], source_id=c.record_key.substr(parts[0].length() + 1))
        removed["customers"] = wh.delete_matching("customers", ck, ["source", "source_id"])
        removed["quarantine"] = _delete_quarantine_mentioning(wh, raw_values)
        removed["enrichments"] = _delete_enrichments(wh, rec_nodes, settings.default_country_code)
        removed["identity_refusals"] = wh.delete_matching(
            "identity_refusals", rec_nodes.select("node"), ["node"]
        )
        for table in PERSON_TABLES:
            if table in wh.tables():
                removed[table] = wh.delete_matching(table, ids, ["customer_id"])
        removed["identity_history"] = wh.delete_matching("identity_history", ids, ["customer_id"])
        wh.insert(
            "erased_identifiers",
            nodes.select(
                node_hash=hashed(nodes.node, salt), erasure_id=ibis.literal(erasure_id)
            ).distinct(),
        )
        wh.insert(
            "erasures",
            ibis.memtable(
                pa.table(
                    {
                        "erasure_id": [erasure_id],
                        "at": pa.array([datetime.now(UTC)], pa.timestamp("us", "UTC")),
                        "customers": [len(customer_ids)],
                        "rows_removed": [json.dumps(removed, sort_keys=True)],
                    }
                )
            ),
        )
    for n in (
        "_segone_erase_all",
        "_segone_erase_ids",
        "_segone_erase_keys",
        "_segone_erase_nodes",
        "_segone_erase_rec_nodes",
    ):
        wh.drop_staging(n)
    return ErasureResult(erasure_id, len(customer_ids), removed)


def _delete_quarantine_mentioning(wh: Warehouse, values: tuple[list[str], list[str]]) -> int:
    """Quarantined records are raw text: remove those that mention any of the person's values."""
    texts, digits = values
    if not texts and not digits:
        return 0
    q = wh.table("quarantine")
    text = q.record.lower()
    only_digits = q.record.re_replace(r"[^0-9]", "")
    hit = q.filter(
        ibis.or_(*[text.contains(v) for v in texts], *[only_digits.contains(d) for d in digits])
    )
    return wh.delete_matching("quarantine", hit, ["source_file", "line", "problems"])


def _search_values(rec_nodes: Any) -> tuple[list[str], list[str]]:
    """What to look for in quarantined raw records: texts (e-mails, handles, long ids, lower
    case) and phone digits (raw text keeps the user's own formatting, so digits are compared)."""
    texts: set[str] = set()
    digits: set[str] = set()
    for row in rec_nodes.itertuples():
        v = str(row.value)
        if row.id_type == "phone":
            digits.add(v[-10:] if len(v) > 10 else v.lstrip("+"))
        elif row.id_type in ("email", "handle") or len(v) >= 6:
            texts.add(v.lower())  # short opaque ids would match unrelated text
    return sorted(texts), sorted(digits)


def _delete_enrichments(wh: Warehouse, rec_nodes: ibis.Table, cc: str) -> int:
    """Third-party rows keyed by the person's e-mail or phone."""
    from segone.identity import normalize as norm

    e = wh.table("enrichments")
    mine = rec_nodes.filter(rec_nodes.id_type.isin(["email", "phone"])).select("node")
    keyed = e.mutate(
        _e=ibis.literal("email:") + norm.email(e.email),
        _p=ibis.literal("phone:") + norm.phone(e.phone, cc),
    )
    hit = keyed.filter(keyed._e.isin(mine.node) | keyed._p.isin(mine.node))
    return wh.delete_matching("enrichments", hit, ["source", "row_hash"])
