"""Find a person by any identifier, and read their profile, identifiers and recent timeline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ibis
import pandas as pd

from segone.identity import normalize as norm
from segone.profiles.reasons import BECAUSE, named_reason
from segone.store.base import Warehouse


def candidate_nodes(wh: Warehouse, identifier: str, country_code: str = "1") -> list[str]:
    """Graph nodes ``identifier`` could be, normalised exactly as the build normalises them."""
    lit = ibis.literal(identifier.strip(), type="string")
    forms = wh.execute(
        ibis.memtable({"x": [0]}).select(
            email=norm.email(lit), phone=norm.phone(lit, country_code), handle=norm.handle(lit)
        )
    )
    row = forms.iloc[0]
    nodes = [
        f"{t}:{identifier.strip()}" for t in ("user_id", "source_id", "loyalty_id", "anonymous_id")
    ]
    for t in ("email", "phone", "handle"):
        if isinstance(row[t], str):
            nodes.append(f"{t}:{row[t]}")
    return nodes


TYPES = ("user_id", "source_id", "loyalty_id", "anonymous_id", "email", "phone", "handle")


def find_customers(wh: Warehouse, identifier: str, country_code: str = "1") -> list[str]:
    """Customer ids that ``identifier`` belongs to.

    ``identifier`` is a customer id, any identifier in any spelling, or ``type:value`` (e.g.
    ``loyalty_id:42``) to say which kind of identifier it is.
    """
    cm = wh.table("customer_map")
    if identifier.startswith("cus_"):
        hit = wh.execute(cm.filter(cm.customer_id == identifier).customer_id.nunique())
        return [identifier] if hit else []
    kind, _, value = identifier.partition(":")
    nodes = candidate_nodes(wh, value if kind in TYPES else identifier, country_code)
    if kind in TYPES:
        nodes = [n for n in nodes if n.startswith(kind + ":")]
    ids = wh.execute(cm.filter(cm.node.isin(nodes)).select("customer_id").distinct())
    return sorted(ids.customer_id)


def profile_of(wh: Warehouse, customer_id: str, timeline: int = 20) -> dict[str, Any]:
    """The profile row, the identifiers and the latest ``timeline`` records of one customer."""
    p = wh.table("profiles")
    prof = wh.execute(p.filter(p.customer_id == customer_id))
    cm = wh.table("customer_map")
    ids = wh.execute(cm.filter(cm.customer_id == customer_id).order_by(["id_type", "node"]))
    rc = wh.table("record_customers").filter(lambda t: t.customer_id == customer_id)
    ev = wh.table("events")
    ev = ev.join(rc.filter(rc.record_table == "events"), ev.message_id == rc.record_key)
    ev = ev.select(ts=ev.timestamp, kind=ev.type, what=ibis.coalesce(ev.event, ev.name, ev.type))
    o = wh.table("orders")
    o = o.join(rc.filter(rc.record_table == "orders"), o.order_id == rc.record_key)
    o = o.select(
        ts=o.ts,
        kind=ibis.literal("order"),
        what=o.order_id + " " + o.channel.fill_null("") + " " + o.amount.round(2).cast("string"),
    )
    it = wh.table("interactions")
    it = it.join(rc.filter(rc.record_table == "interactions"), it.interaction_id == rc.record_key)
    it = it.select(
        ts=it.ts,
        kind=it.kind,
        what=it.channel.fill_null("") + ": " + it.text.fill_null("").substr(0, 60),
    )
    tl = ibis.union(ev, o, it).order_by(ibis.desc("ts")).limit(timeline)
    m = wh.table("segment_memberships")
    journey = wh.execute(m.filter(m.customer_id == customer_id).order_by([m.entered_at, m.segment]))
    r = wh.table("recommendations")
    mine = r.filter(r.customer_id == customer_id)
    recs = with_names(
        wh, wh.execute(mine.select("rank", "product_id", "score", "reason").order_by("rank"))
    )
    tr = wh.table("transitions")
    moves = wh.execute(
        tr.filter(tr.customer_id == customer_id)
        .order_by(["at", "kind"])
        .select("at", "kind", "from_segment", "to_segment")
    )
    return {
        "journey": journey,
        "transitions": moves,
        "recommendations": recs,
        "profile": prof.iloc[0].to_dict() if len(prof) else {},
        "identifiers": ids,
        "timeline": wh.execute(tl) if timeline else pd.DataFrame(),
    }


def product_fields(wh: Warehouse, ids: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
    """``{product_id: (name, category)}`` from the catalogue for ``ids`` (empty without one)."""
    want = sorted({str(i) for i in ids})
    if not want or "products" not in wh.tables():
        return {}
    pr = wh.table("products")
    pr = pr.filter(pr.product_id.isin(want))
    df = wh.execute(
        pr.group_by("product_id").aggregate(name=pr.name.max(), category=pr.category.max())
    )

    def text(v: Any) -> str | None:
        return v if isinstance(v, str) and v.strip() else None

    return {str(r.product_id): (text(r.name), text(r.category)) for r in df.itertuples(index=False)}


def with_names(wh: Warehouse, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (a ``product_id`` column, maybe a ``reason``) with the products' ``name`` and
    ``category`` (null where the catalogue has none) and the products its reasons cite named:
    ids stay in ``product_id``."""
    out = df.copy()
    if "product_id" not in out.columns:
        return out
    ids = [i for i in out.product_id.tolist() if isinstance(i, str)]
    reasons = out["reason"].tolist() if "reason" in out.columns else []
    for why in reasons:
        if isinstance(why, str) and why.startswith(BECAUSE):
            ids += why[len(BECAUSE) :].split(", ")
    fields = product_fields(wh, ids)

    def label(i: str) -> str:
        return (fields.get(i) or (None, None))[0] or i

    at = list(out.columns).index("product_id") + 1
    pid = out.product_id.tolist()
    out.insert(at, "name", [(fields.get(i) or (None, None))[0] for i in pid])
    out.insert(at + 1, "category", [(fields.get(i) or (None, None))[1] for i in pid])
    if reasons:
        out["reason"] = [named_reason(w, label) if isinstance(w, str) else w for w in reasons]
    return out
