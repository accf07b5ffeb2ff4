"""Identity resolution: from raw records to one stable ``customer_id`` per real person.

Writes ``customer_map`` (identifier node -> customer), ``record_customers`` (raw record ->
customer), ``identifier_hashes`` (the identifiers' salted hashes, for erasure checks),
``identity_refusals`` (identifiers that were not allowed to link, and why) and
appends to ``identity_history`` (new customers, merges and splits between builds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir

from segone.exprs import lit
from segone.identity import decisions
from segone.identity.erase import refresh_identifier_hashes
from segone.identity.graph import (
    ANCHORS,
    PRIORITY,
    IdentitySettings,
    connected_components,
    record_identifiers,
    refusals,
)
from segone.identity.matching import probabilistic_edges
from segone.schema import TS
from segone.store.base import Warehouse


@dataclass
class IdentityResult:
    customers: int
    records: int
    nodes: int
    refused: int
    rounds: int
    new: int
    merged: int
    split: int
    unresolved_records: int
    probabilistic_pairs: int = 0

    def summary(self) -> str:
        return (
            f"{self.customers:,} customers from {self.records:,} records and {self.nodes:,} "
            f"identifiers ({self.rounds} rounds, "
            f"{self.probabilistic_pairs:,} probabilistic matches); "
            f"{self.refused:,} identifiers refused as "
            f"shared or placeholders; {self.new:,} new, {self.merged:,} merged, "
            f"{self.split:,} split since the last build"
        )


def resolve(
    wh: Warehouse,
    settings: IdentitySettings | None = None,
    *,
    as_of: datetime | None = None,
    extra_edges: ibis.Table | None = None,
) -> IdentityResult:
    """Build the identity tables from the raw tables (records up to ``as_of`` when given).

    ``extra_edges`` (``src``, ``dst`` nodes) adds links found by probabilistic matching.
    """
    settings = settings or IdentitySettings()
    wh.ensure_tables()
    cutoff = ibis.literal(as_of, type=TS) if as_of else None
    ids = wh.materialize("_segone_ids", record_identifiers(wh, settings, cutoff))
    refused = wh.materialize("_segone_refused", refusals(ids, settings))
    rec = ["record_table", "record_key"]
    matched = 0
    prob = None
    if settings.probabilistic and wh.count("customers"):
        prob, matched = probabilistic_edges(wh, settings, cutoff)
    rounds = 0
    # decisions made by hand (segone.identity.decisions): split-off identifiers link nothing,
    # pairs linked by hand are edges, pairs kept apart lose their probabilistic edge
    decided = wh.materialize("_segone_decided", decisions.current(wh))
    split = decided.filter(decided.kind == "split").select(n0=decided.a)

    def components(refused: ibis.Table) -> tuple[ibis.Table, ibis.Table, int]:
        allowed = ids.anti_join(refused, "node")
        linking = allowed.anti_join(split, allowed.node == split.n0)
        root = linking.group_by(rec).agg(root=linking.node.min())
        star = linking.join(root, rec)
        edges = star.filter(star.node != star.root).select(src=star.root, dst=star.node)
        if prob is not None and matched:  # a refused identifier is not brought back by a match
            r1 = refused.select(n1="node")
            r2 = refused.select(n2="node")
            ok = prob.anti_join(r1, prob.src == r1.n1).anti_join(r2, prob.dst == r2.n2)
            edges = ibis.union(edges, decisions.without_unlinked(ok, decided), distinct=False)
        if extra_edges is not None:
            edges = ibis.union(edges, extra_edges.select("src", "dst"), distinct=False)
        # a pair linked by hand, unless one of its identifiers is refused; nothing reaches or
        # leaves an identifier split off
        hand = decisions.links(decided)
        known = allowed.select("node").distinct()
        hand = hand.filter(hand.src.isin(known.node) & hand.dst.isin(known.node))
        edges = ibis.union(edges, hand, distinct=False)
        edges = edges.filter(~edges.src.isin(split.n0) & ~edges.dst.isin(split.n0))
        nodes = allowed.select("node").distinct()
        comps, r = connected_components(wh, edges, nodes, settings.max_iterations)
        return allowed, wh.materialize("_segone_comps", comps), r

    allowed, comps, rounds = components(refused)
    # A chain of records can still join two user ids (alice's cookie on a kiosk, the kiosk with
    # bob's e-mail, bob). Where a component holds two, the lowest-priority identifiers in it
    # give way, one type at a time, and the components are computed again.
    for give_way in reversed(PRIORITY[len(ANCHORS) :]):
        user_ids = comps.filter(comps.node.startswith("user_id:"))
        per = user_ids.group_by("component").agg(n=user_ids.count())
        bad = per.filter(per.n > 1)
        if not int(wh.execute(bad.count())):
            break
        in_bad = comps.semi_join(bad, "component")
        extra = in_bad.filter(in_bad.node.startswith(give_way + ":")).select(
            "node",
            id_type=lit(give_way),
            rule=lit("component_conflict"),
            detail=lit("linked two user ids through other records"),
        )
        refused = wh.stage_expr("_segone_refused", extra.anti_join(refused, "node"), append=True)
        allowed, comps, r = components(refused)
        rounds += r

    ids_of = ids.group_by(["node", "id_type"]).agg(first_seen=ids.ts.min(), last_seen=ids.ts.max())
    sizes = comps.group_by("component").agg(n=comps.count())
    stable = _stable_ids(wh, comps, sizes)
    node_map = comps.join(stable, "component").select("node", "customer_id")
    customer_map = node_map.join(ids_of, "node").select(
        "node", "id_type", "customer_id", "first_seen", "last_seen"
    )
    rec_cust = allowed.join(node_map, "node").select(*rec, "node", "customer_id")
    # a record whose identifiers disagree cannot happen after components, except when one of
    # them was split off by hand: the record stays with its other identifiers (then the
    # smallest id, for determinism)
    is_split = rec_cust.node.isin(split.n0)
    rec_cust = rec_cust.group_by(rec).agg(
        kept=rec_cust.customer_id.min(where=~is_split), any_=rec_cust.customer_id.min()
    )
    rec_cust = rec_cust.select(*rec, customer_id=ibis.coalesce(rec_cust.kept, rec_cust.any_))
    now = ibis.literal(datetime.now(UTC), type=TS)
    history = wh.materialize("_segone_history", _history(wh, comps, stable, now))
    with wh.transaction():
        wh.replace("customer_map", customer_map)
        wh.replace("record_customers", rec_cust)
        wh.replace("identity_refusals", refused.mutate(built_at=now))
        if as_of is None:  # a past build is a view of the past, not an event in the history
            wh.insert("identity_history", history)
        # the erasure check of campaign audiences joins on these (see refresh_identifier_hashes)
        refresh_identifier_hashes(wh)
    counts = wh.execute(history.group_by("event").agg(n=history.count()))
    by_event = {r.event: int(r.n) for r in counts.itertuples()}
    total_records = int(wh.execute(ids.select(*rec).distinct().count()))
    resolved = wh.count("record_customers")
    result = IdentityResult(
        customers=int(wh.execute(stable.count())),
        records=total_records,
        nodes=int(wh.execute(comps.count())),
        refused=int(wh.execute(refused.count())),
        rounds=rounds,
        new=by_event.get("new", 0),
        merged=by_event.get("merge", 0),
        split=by_event.get("split", 0),
        unresolved_records=total_records - resolved,
        probabilistic_pairs=matched,
    )
    for name in (
        "_segone_ids",
        "_segone_refused",
        "_segone_comps",
        "_segone_stable",
        "_segone_cc_done",
        "_segone_history",
        "_segone_decided",
    ):
        wh.drop_staging(name)
    return result


def _stable_ids(wh: Warehouse, comps: ibis.Table, sizes: ibis.Table) -> ibis.Table:
    """(component, customer_id): a component keeps the id its nodes had when it only grew.

    A previous id goes to the component holding most of its nodes; a component holding
    several previous ids (a merge) keeps the one with most nodes; a new component gets the next
    number, in the order of a hash of its smallest node.
    """
    prev = wh.table("customer_map").select("node", prev_id="customer_id")
    cand = comps.join(prev, "node").group_by(["component", "prev_id"]).agg(n=ibis._.count())
    # each previous id belongs to the component holding most of its nodes
    owner = cand.mutate(
        _r=ibis.row_number().over(group_by="prev_id", order_by=[ibis.desc("n"), "component"])
    )
    owned = owner.filter(owner._r == 0).drop("_r")
    best = owned.mutate(
        _r=ibis.row_number().over(group_by="component", order_by=[ibis.desc("n"), "prev_id"])
    )
    kept = best.filter(best._r == 0).select("component", customer_id="prev_id")
    # a new customer's id is a number: the next after every id ever given, in the order of a
    # hash of the customer's smallest identifier. So the same data gives the same ids in any
    # project, whatever its row order or secret, and an id says nothing about the e-mail or
    # phone it came from (a hash of the identifier could be reversed by guessing it).
    used = wh.table("identity_history").select(prev_id="customer_id").union(prev.select("prev_id"))
    numbered = used.filter(used.prev_id.re_search(r"^cus_[0-9]{1,15}$"))
    top = wh.execute(numbered.prev_id.substr(4).cast("int64").max())
    start = 0 if top is None or top != top else int(top)
    fresh = sizes.anti_join(kept, "component")
    rank = ibis.row_number().over(order_by=[fresh.component.hexdigest("sha256"), fresh.component])
    number = (rank + 1 + start).cast("string")
    fresh = fresh.select(
        "component",
        customer_id=lit("cus_") + ibis.ifelse(number.length() < 8, number.lpad(8, "0"), number),
    )
    return wh.materialize("_segone_stable", ibis.union(kept, fresh, distinct=False))


def _history(wh: Warehouse, comps: ibis.Table, stable: ibis.Table, now: ir.Value) -> ibis.Table:
    """New customers, merges (several old ids now one) and splits (one old id now several)."""
    prev = wh.table("customer_map").select("node", prev_id="customer_id")
    now_ids = comps.join(stable, "component").select("node", "customer_id")
    pairs = now_ids.join(prev, "node").select("customer_id", "prev_id").distinct()
    merges = pairs.filter(pairs.customer_id != pairs.prev_id).select(
        at=now,
        event=lit("merge"),
        customer_id="customer_id",
        other_id="prev_id",
        reason=lit("their identifiers are now linked"),
    )
    per_prev = pairs.group_by("prev_id").agg(n=pairs.customer_id.nunique())
    split_prev = per_prev.filter(per_prev.n > 1).select("prev_id")
    splits = (
        pairs.semi_join(split_prev, "prev_id")
        .filter(lambda t: t.customer_id != t.prev_id)
        .select(
            at=now,
            event=lit("split"),
            customer_id="customer_id",
            other_id="prev_id",
            reason=lit("a link that joined them was removed or refused"),
        )
    )
    had_prev = pairs.select("customer_id").distinct()
    new = stable.anti_join(had_prev, "customer_id").select(
        at=now,
        event=lit("new"),
        customer_id="customer_id",
        other_id=ibis.null("string"),
        reason=lit("first seen"),
    )
    # a merge and a split can describe the same pair; keep merges for ids that survived elsewhere
    merges = merges.anti_join(splits, ["customer_id", "other_id"])
    return ibis.union(new, merges, splits, distinct=False)
