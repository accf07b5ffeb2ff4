"""Manual identity decisions, honoured by every later build: an identifier split off its person
(it links nothing from then on, like a shared e-mail), two identifiers linked, or two kept
apart (a probabilistic match rejected).

Decisions live in the warehouse's ``identity_decisions`` (they name identifiers, so an erasure
removes them with the person). The latest decision about an identifier, or a pair, wins:
accepting a pair after rejecting it links it again.

* ``split`` (``a``: a node): the node keeps its own customer and joins no component; records
  carrying it stay with their other identifiers. An unmerge of the dashboard's customer page.
* ``link`` (``a``, ``b``: nodes): an edge of the graph, whatever the matcher says (a reviewed
  borderline pair accepted).
* ``unlink`` (``a``, ``b``: nodes): the probabilistic edge between them is dropped (a reviewed
  pair rejected). Identifiers that share a record stay linked: split one of them off instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

import ibis
import pyarrow as pa

from segone.exceptions import IdentityDecisionError
from segone.schema import TS
from segone.store.base import Warehouse

KINDS = ("split", "link", "unlink")


def record(wh: Warehouse, kind: str, a: str, b: str | None = None, *, by: str = "") -> None:
    """Record one decision (the latest about ``a`` / the pair ``a``-``b`` wins)."""
    if kind not in KINDS:
        raise IdentityDecisionError(
            f"an identity decision is one of {', '.join(KINDS)}; got {kind!r}"
        )
    if ":" not in a or (b is not None and ":" not in b):
        raise IdentityDecisionError(
            "identity decisions name identifiers as type:value, e.g. email:j@x.com"
        )
    if kind == "split" and b is not None:
        raise IdentityDecisionError("a split names one identifier")
    if kind != "split" and (b is None or a == b):
        raise IdentityDecisionError(f"a {kind} names two different identifiers")
    if b is not None and b < a:  # one spelling per pair
        a, b = b, a
    wh.ensure_tables()
    wh.insert(
        "identity_decisions",
        ibis.memtable(
            pa.table(
                {
                    "kind": [kind],
                    "a": [a],
                    "b": pa.array([b], pa.string()),
                    "decided_by": [by],
                    "decided_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
                }
            )
        ).cast({"decided_at": TS}),
    )
    wh.checkpoint()


def current(wh: Warehouse) -> ibis.Table:
    """The decisions in force: the latest per identifier (splits) or pair (links, unlinks);
    a split undone by a later link of the same identifier no longer holds."""
    d = wh.table("identity_decisions")
    d = d.mutate(_key=ibis.coalesce(d.a + "|" + d.b, d.a))
    d = d.mutate(_r=ibis.row_number().over(group_by="_key", order_by=ibis.desc(d.decided_at)))
    return d.filter(d._r == 0).drop("_key", "_r")


def splits(decided: ibis.Table) -> ibis.Table:
    """``node`` of every identifier split off."""
    return decided.filter(decided.kind == "split").select(node=decided.a)


def links(decided: ibis.Table) -> ibis.Table:
    """``src``, ``dst`` edges of every pair linked by hand."""
    return decided.filter(decided.kind == "link").select(src=decided.a, dst=decided.b)


def without_unlinked(edges: ibis.Table, decided: ibis.Table) -> ibis.Table:
    """``edges`` (``src``, ``dst``) less the pairs kept apart by hand, in either direction."""
    u = decided.filter(decided.kind == "unlink")
    fwd = u.select(ua="a", ub="b")
    back = u.select(va="b", vb="a")
    kept = edges.anti_join(fwd, [edges.src == fwd.ua, edges.dst == fwd.ub])
    return kept.anti_join(back, [kept.src == back.va, kept.dst == back.vb])
