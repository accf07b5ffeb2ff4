"""Between the warehouse and the online store, around every ``segone build``
(``segone.pipeline.build.build_project`` runs them in this order):

1. ``apply_erasures``: people erased through the API (``DELETE /v1/profiles``) are erased from
   the warehouse too;
2. ``pickup``: events the server received since the last build are loaded into the warehouse
   through the same file ingestion as any other source (validation, quarantine, dedupe by
   ``messageId``); ``Order Completed`` events (Segment's e-commerce spec) also become orders;
3. after the build, ``publish``: each customer's profile, open segments, scores, tastes and
   recommendations, their identifiers, the product catalogue and the segment attributes go to
   the online store, where the running server picks them up without a restart.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ibis
import orjson

from segone.config import Settings
from segone.exceptions import SegoneError
from segone.exprs import of
from segone.online.store import OnlineStore
from segone.profiles.reasons import named_reason
from segone.store.base import Warehouse

CURSOR = "warehouse_cursor"
CHUNK = 50_000
PUBLISH_CHUNK = 5_000


@dataclass
class SyncResult:
    erased: int = 0
    events: int = 0
    orders: int = 0
    rejected: int = 0
    published: int = 0
    identifiers: int = 0
    merged: int = 0
    items: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.erased:
            parts.append(f"erased {self.erased} people requested through the API")
        if self.events or self.rejected:
            parts.append(
                f"picked up {self.events} server events ({self.orders} orders), "
                f"{self.rejected} rejected to quarantine"
            )
        if self.published:
            parts.append(
                f"published {self.published} profiles, {self.identifiers} identifiers and "
                f"{self.items} catalogue items to the online store"
            )
        return "; ".join(parts) or "online store: nothing to do"


def open_online(settings: Settings, *, create: bool = False) -> OnlineStore | None:
    """The project's online store, or None when there is none yet (no server has run and
    ``create`` is false)."""
    url = settings.server.online_url
    if url.startswith("sqlite:///") and not create:
        p = Path(url[len("sqlite:///") :])
        if not p.is_absolute():
            p = settings.root / p
        if not p.exists():
            return None
    return OnlineStore.open(url, root=settings.root)


# -- 1. erasures ---------------------------------------------------------------------------------
def apply_erasures(wh: Warehouse, store: OnlineStore, settings: Settings) -> int:
    """Erasures asked through the API, in the warehouse (``segone.identity.erase``)."""
    from segone.identity.erase import apply_queued

    return apply_queued(wh, store, settings)


# -- 2. pickup -----------------------------------------------------------------------------------
def order_rows(msg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Order rows (one per product line) from an ``Order Completed`` track event."""
    props = msg.get("properties") or {}
    order_id = props.get("order_id") or props.get("orderId") or props.get("checkout_id")
    if msg.get("event") != "Order Completed" or not order_id:
        return []
    amount = props.get("total", props.get("revenue"))
    base = {
        "order_id": str(order_id),
        "user_id": msg.get("userId"),
        "anonymous_id": msg.get("anonymousId"),
        "email": ((msg.get("traits") or {}).get("email")),
        "ts": msg.get("timestamp") or msg.get("receivedAt"),
        "amount": amount,
        "discount": props.get("discount"),
        "coupon": props.get("coupon"),
        "currency": props.get("currency"),
        "channel": ((msg.get("context") or {}).get("channel")) or "web",
    }
    products = props.get("products") or []
    if not isinstance(products, list) or not products:
        return [base]
    rows = []
    for n, p in enumerate(products, 1):
        if not isinstance(p, dict):
            continue
        rows.append(
            {
                **base,
                "line_number": n,
                "product_id": p.get("product_id") or p.get("sku") or p.get("id"),
                "category": p.get("category"),
                "quantity": p.get("quantity", 1),
                "unit_price": p.get("price"),
            }
        )
    return rows or [base]


def _write_ndjson(path: Path, rows: list[Any]) -> None:
    with path.open("wb") as f:
        for r in rows:
            f.write(orjson.dumps(r))
            f.write(b"\n")


def pickup(wh: Warehouse, store: OnlineStore, settings: Settings) -> SyncResult:
    """Load the server's new events (and their orders) into the warehouse."""
    from segone.ingest.loader import ingest_file

    out = SyncResult()
    with store.read() as tx:
        cursor = int(tx.meta.get(CURSOR) or 0)
    with tempfile.TemporaryDirectory(prefix="segone-pickup-") as tmp:
        while True:
            with store.read() as tx:
                rows = tx.events.after(cursor, CHUNK)
            if not rows:
                break
            msgs = [m for _, _, m in rows]
            ev_path = Path(tmp) / "server-events.ndjson"
            _write_ndjson(ev_path, msgs)
            r = ingest_file(
                wh,
                "events",
                ev_path,
                settings=settings.ingest,
                source="server",
                identity=settings.identity,
            )
            out.events += r.loaded
            out.rejected += r.rejected
            orders = [row for m in msgs for row in order_rows(m)]
            if orders:
                o_path = Path(tmp) / "server-orders.ndjson"
                _write_ndjson(o_path, orders)
                r = ingest_file(
                    wh,
                    "orders",
                    o_path,
                    settings=settings.ingest,
                    source="server",
                    identity=settings.identity,
                )
                out.orders += r.loaded
                out.rejected += r.rejected
            # only now, with the warehouse committed: a crash before this re-reads the chunk,
            # and the warehouse's messageId / order_id dedupe makes that harmless
            cursor = rows[-1][0]
            with store.write() as tx:
                tx.meta.set(CURSOR, str(cursor))
    return out


# -- 3. publish ----------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def _grouped(
    wh: Warehouse, expr: ibis.Table, key: str = "customer_id"
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in wh.to_arrow(expr).to_pylist():
        out.setdefault(row.pop(key), []).append({k: _plain(v) for k, v in row.items()})
    return out


def _profile_chunks(wh: Warehouse) -> Iterator[list[dict[str, Any]]]:
    batches = wh.to_arrow(wh.table("profiles")).to_batches(max_chunksize=PUBLISH_CHUNK)
    for b in batches:
        yield [{k: _plain(v) for k, v in row.items()} for row in b.to_pylist()]


def publish(wh: Warehouse, store: OnlineStore, settings: Settings) -> SyncResult:
    """Copy the last build's per-customer results to the online store."""
    from segone.live.identity import merge_people

    out = SyncResult()
    tables = set(wh.tables())
    if "profiles" not in tables:
        out.notes.append("no profiles to publish: run `segone build`")
        return out
    now = datetime.now(UTC)
    with store.read() as tx:
        cursor = int(tx.meta.get(CURSOR) or 0)
    segments: dict[str, list[dict[str, Any]]] = {}
    if "segment_memberships" in tables:
        m = wh.table("segment_memberships")
        segments = _grouped(wh, m.filter(m.exited_at.isnull()).select("customer_id", "segment"))
    recs: dict[str, list[dict[str, Any]]] = {}
    if "recommendations" in tables:
        r = wh.table("recommendations")
        recs = _grouped(
            wh,
            r.select("customer_id", "rank", "product_id", "score", "reason").order_by(
                ["customer_id", "rank"]
            ),
        )
        _name_products(wh, recs)
    tastes: dict[str, list[dict[str, Any]]] = {}
    if "category_affinity" in tables:
        a = wh.table("category_affinity")
        a = a.mutate(
            _r=ibis.row_number().over(group_by="customer_id", order_by=ibis.desc(a.affinity))
        )
        tastes = _grouped(
            wh, a.filter(a._r < 5).select("customer_id", "category", "affinity", "share")
        )
    prefs = _preferences(wh, tables)
    recent = _rule_events(wh, settings, now)
    owned: dict[str, list[dict[str, Any]]] = {}
    if "order_lines" in tables:
        ln = wh.table("order_lines").select("order_id", "product_id")
        o = of(wh.table("orders"), wh.table("record_customers"), "orders", "order_id")
        j = ln.join(o.select("order_id", "customer_id"), "order_id")
        owned = _grouped(wh, j.select("customer_id", "product_id").distinct())
    version = now.strftime("%Y%m%dT%H%M%S.%f")
    published: set[str] = set()
    for chunk in _profile_chunks(wh):
        docs = {}
        for row in chunk:
            cid = row["customer_id"]
            published.add(cid)
            docs[cid] = {
                **row,
                "segments": sorted(s["segment"] for s in segments.get(cid, [])),
                "recommendations": recs.get(cid, []),
                "tastes": tastes.get(cid, []),
                "owned": [o["product_id"] for o in owned.get(cid, [])][:500],
                "preferences": prefs.get(cid, {}),
                "_events": recent.get(cid, []),
                "_cursor": cursor,
                "_published_at": now.isoformat(),
                "_version": version,
            }
        with store.write() as tx:
            tx.docs.put("published", docs, now)
        out.published += len(docs)
    # customers that no longer exist (merged, erased) stop being served
    with store.read() as tx:
        stale = [k for k in tx.docs.all("published") if k not in published]
    if stale:
        with store.write() as tx:
            tx.docs.delete("published", stale)
    # identifiers -> customer; a live-only person the build has now resolved joins the customer
    cm = wh.table("customer_map").select("node", "customer_id")
    nodes = wh.to_arrow(cm).to_pylist()
    for i in range(0, len(nodes), PUBLISH_CHUNK):
        part = nodes[i : i + PUBLISH_CHUNK]
        with store.write() as tx:
            known = tx.identity.lookup([n["node"] for n in part])
            moves = {
                known[n["node"]]: n["customer_id"]
                for n in part
                if n["node"] in known
                and known[n["node"]] != n["customer_id"]
                and known[n["node"]] not in published
            }
            for old, new in moves.items():
                merge_people(tx, old, new, now)
                out.merged += 1
            for n in part:
                tx.identity.link(n["node"], n["customer_id"], "batch", now)
        out.identifiers += len(part)
    if "products" in tables:
        p = wh.table("products")
        items = wh.to_arrow(
            p.select("product_id", "name", "category", "price", "brand")
        ).to_pylist()
        pop = _popularity(wh)
        item_params = _item_params(wh, tables)
        with store.write() as tx:
            tx.docs.delete("catalogue")
            tx.docs.put(
                "catalogue",
                {
                    str(it["product_id"]): {
                        **{k: _plain(v) for k, v in it.items()},
                        "popularity": pop.get(str(it["product_id"]), 0.0),
                        **item_params.get(str(it["product_id"]), {}),
                    }
                    for it in items
                    if it["product_id"] is not None
                },
                now,
            )
        out.items = len(items)
    attrs = {k: str(v) for k, v in wh.table("profiles").schema().items()}
    gap = (
        wh.execute(wh.table("profiles").mean_gap_days.median())
        if "mean_gap_days" in attrs
        else None
    )
    with store.write() as tx:
        tx.meta.set("profile_attributes", orjson.dumps(attrs).decode())
        if gap is not None and not (isinstance(gap, float) and math.isnan(gap)):
            tx.meta.set("median_gap_days", str(float(gap)))
        tx.meta.set("published_at", now.isoformat())
        tx.meta.set("published_version", version)
    return out


def _rule_events(
    wh: Warehouse, settings: Settings, now: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Each customer's events that segment rules count (``event:`` conditions), within the
    longest window a rule looks back (the latest 200 per person), so a rule on events means
    the same online as in the batch."""
    from segone.live.realtime import event_names, live_catalogue
    from segone.segments.batch import customer_events
    from segone.segments.rules import events_used

    folder = settings.root / "segments"
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    try:
        cat = live_catalogue(files, settings.segments)
    except SegoneError:
        cat = live_catalogue((), settings.segments)
    names = sorted(event_names(cat))
    if not names or "record_customers" not in wh.tables():
        return {}
    windows = [d.within_days for seg in cat for d in events_used(seg.rule, cat)]
    ev = customer_events(wh)
    ev = ev.filter(ev.name.isin(names))
    if windows and all(w is not None for w in windows):
        days = max(w for w in windows if w is not None)
        ev = ev.filter(ev.timestamp > ibis.literal(now) - ibis.interval(seconds=int(days * 86_400)))
    ev = ev.mutate(
        _r=ibis.row_number().over(group_by="customer_id", order_by=ibis.desc("timestamp"))
    )
    ev = ev.filter(ev._r < 200).select("customer_id", "name", ts="timestamp")
    return _grouped(wh, ev)


def _name_products(wh: Warehouse, recs: dict[str, list[dict[str, Any]]]) -> None:
    """Each recommendation with its product's ``name`` and ``category`` (None where the
    catalogue has none; the id stays in ``product_id``) and its reason's products named."""
    from segone.models.preference import catalogue_fields

    cats, names = catalogue_fields(wh) if recs else ({}, {})

    def label(i: str) -> str:
        return names.get(i, i)

    for rows in recs.values():
        for r in rows:
            pid = str(r["product_id"])
            r["name"], r["category"] = names.get(pid), cats.get(pid)
            if isinstance(r.get("reason"), str):
                r["reason"] = named_reason(r["reason"], label)


def _preferences(wh: Warehouse, tables: set[str]) -> dict[str, dict[str, float]]:
    """Each person's item preference weights as of the last preference fit (their 200
    strongest), from their orders: ``segone.models.preference.person_weights``."""
    from segone.models.nextproducts import purchase_lines
    from segone.models.preference import occasions, person_weights
    from segone.models.registry import latest_model

    if "models" not in tables or "order_lines" not in tables:
        return {}
    m = latest_model(wh, "preferences")
    if m is None:
        return {}
    when = m.window_end if m.window_end.tzinfo else m.window_end.replace(tzinfo=UTC)
    w = person_weights(
        occasions(wh, purchase_lines(wh, as_of=when), when), m.params.get("half_life_cycles")
    )
    w = w.sort_values(["customer_id", "weight"], ascending=[True, False])
    w = w[w.groupby("customer_id").cumcount() < 200]
    out: dict[str, dict[str, float]] = {}
    for cid, pid, x in zip(w.customer_id, w.product_id, w.weight, strict=True):
        out.setdefault(str(cid), {})[str(pid)] = float(x)
    return out


def _item_params(wh: Warehouse, tables: set[str]) -> dict[str, dict[str, Any]]:
    """Per item, what ``decide`` needs of the last preference fit: ``preference_prior``,
    ``repurchase``, ``buy_again`` (``segone.models.preference``)."""
    from segone.models.registry import latest_model

    if "models" not in tables:
        return {}
    m = latest_model(wh, "preferences")
    got = (m.params.get("item_params") if m is not None else None) or {}
    return {str(k): dict(v) for k, v in got.items() if isinstance(v, dict)}


def _popularity(wh: Warehouse) -> dict[str, float]:
    """Share of buyers of each product, over all order lines (the cold-start prior)."""
    if "order_lines" not in wh.tables():
        return {}
    ln = wh.table("order_lines")
    per = ln.group_by("product_id").aggregate(n=ln.order_id.nunique())
    total = wh.execute(ln.order_id.nunique()) or 1
    return {
        str(r["product_id"]): float(r["n"]) / float(total) for r in wh.to_arrow(per).to_pylist()
    }


def sync_before_build(wh: Warehouse, store: OnlineStore, settings: Settings) -> SyncResult:
    """Erasures requested through the API, then the server's new events, into the warehouse."""
    out = SyncResult()
    out.erased = apply_erasures(wh, store, settings)
    got = pickup(wh, store, settings)
    out.events, out.orders, out.rejected = got.events, got.orders, got.rejected
    return out
