"""The deterministic identity graph.

Every identifier a record carries (user id, cookie, e-mail, phone, handle, CRM or loyalty id)
is normalised and becomes a node; a record links the nodes it carries. Connected components,
computed in the warehouse by label propagation with pointer jumping (joins only, no Python loop
over rows), are the people.

Over-merging is guarded before the components are computed:

* blocked values (``test@test.com``, ``null``, … and any configured) never link anything;
* a person has at most one user id and one record per source: an identifier of a lower
  priority that appears together with two different user ids, or two records of one source
  (a family e-mail, a kiosk computer), is *shared* and links nothing;
* an id used as a source id by two different sources is ambiguous and links nothing.

Each refused identifier is written to ``identity_refusals`` with the rule that refused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir

from segone.exprs import lit
from segone.identity import normalize as norm
from segone.store.base import Warehouse

# highest priority first: when two people would be joined, the lower-priority link gives way
PRIORITY = ("user_id", "source_id", "loyalty_id", "email", "phone", "handle", "anonymous_id")
ANCHORS = ("user_id", "source_id")  # at most one per person (source ids: one per source)

DEFAULT_BLOCKED = (
    "test@test.com",
    "test@example.com",
    "noemail@noemail.com",
    "no@email.com",
    "none@none.com",
    "null",
    "none",
    "undefined",
    "unknown",
    "n/a",
    "na",
    "0",
    "anonymous",
    "guest",
    "test",
    "+10000000000",
    "+11111111111",
    "+11234567890",
)


@dataclass(frozen=True)
class IdentitySettings:
    """Rules of the identity graph (``[identity]`` in segone.toml)."""

    blocked: tuple[str, ...] = DEFAULT_BLOCKED
    default_country_code: str = "1"
    max_iterations: int = 60
    extra_blocked: tuple[str, ...] = field(default=())
    # at most this many identifiers of a type per person (per user id)
    max_per_person: dict[str, int] = field(default_factory=lambda: {"email": 5, "phone": 5})
    # link customer records that share no identifier but agree on name, birth date, address...
    probabilistic: bool = True
    match_threshold: float = 0.9


def _rows(
    t: ibis.Table,
    table: str,
    key: ir.Value,
    ts: ir.Value,
    source: ir.Value,
    ids: list[tuple[str, ir.Value]],
) -> list[ibis.Table]:
    out = []
    for id_type, value in ids:
        out.append(
            t.select(
                record_table=lit(table),
                record_key=key.cast("string"),
                ts=ts,
                source=source.cast("string"),
                id_type=lit(id_type),
                value=value,
            )
        )
    return out


def kind_identifiers(kind: str, t: ibis.Table, cc: str) -> list[tuple[str, ir.Value]]:
    """The identifiers a record of ``kind`` carries, as (type, normalised value) expressions.

    Works on the raw tables and on freshly validated rows alike (same canonical columns).
    """
    if kind == "events":
        trait = t.traits
        return [
            ("user_id", norm.plain(t.user_id)),
            ("anonymous_id", norm.plain(t.anonymous_id)),
            ("anonymous_id", norm.plain(t.previous_id)),  # alias: previousId is usually a cookie
            ("email", norm.email(trait["email"].unwrap_as("string"))),
            ("phone", norm.phone(trait["phone"].unwrap_as("string"), cc)),
        ]
    if kind == "orders":
        return [
            ("source_id", norm.plain(t.customer_id)),
            ("user_id", norm.plain(t.user_id)),
            ("email", norm.email(t.email)),
            ("phone", norm.phone(t.phone, cc)),
            ("loyalty_id", norm.plain(t.loyalty_id)),
            ("anonymous_id", norm.plain(t.anonymous_id)),
        ]
    if kind == "customers":
        return [
            ("source_id", norm.plain(t.source_id)),
            ("user_id", norm.plain(t.user_id)),
            ("email", norm.email(t.email)),
            ("phone", norm.phone(t.phone, cc)),
            ("handle", norm.handle(t.social_handle)),
            ("loyalty_id", norm.plain(t.loyalty_id)),
        ]
    if kind == "interactions":
        return [
            ("handle", norm.handle(t.author_handle)),
            ("email", norm.email(t.author_email)),
            ("user_id", norm.plain(t.author_user_id)),
            ("source_id", norm.plain(t.author_customer_id)),
        ]
    return []  # products identify no one


def record_identifiers(
    wh: Warehouse, settings: IdentitySettings, as_of: ir.Value | None = None
) -> ibis.Table:
    """One row per (record, identifier): every identifier every raw record carries, normalised."""
    cc = settings.default_country_code
    ev = wh.table("events")
    o = wh.table("orders")
    c = wh.table("customers")
    it = wh.table("interactions")
    if as_of is not None:
        ev, o, it = (
            ev.filter(ev.timestamp <= as_of),
            o.filter(o.ts <= as_of),
            it.filter(it.ts <= as_of),
        )
        c = c.filter(known_by(c, as_of))
    none = ibis.null("string")
    parts: list[ibis.Table] = []
    for kind, t, key, ts, source in [
        ("events", ev, ev.message_id, ev.timestamp, none),
        ("orders", o, o.order_id, o.ts, none),
        (
            "customers",
            c,
            c.source + ":" + c.source_id,
            ibis.coalesce(c.created_at, c.updated_at),
            c.source,
        ),
        ("interactions", it, it.interaction_id, it.ts, none),
    ]:
        parts += _rows(t, kind, key, ts, source, kind_identifiers(kind, t, cc))
    allrows = ibis.union(*parts, distinct=False)
    allrows = allrows.filter(allrows.value.notnull())
    return allrows.mutate(node=allrows.id_type + ":" + allrows.value)


def known_by(c: ibis.Table, as_of: ir.Value) -> ir.BooleanValue:
    """CRM records dated up to ``as_of``; a record without a date of its own is always known."""
    when = ibis.coalesce(c.updated_at, c.created_at)
    return when.isnull() | (when <= as_of)


def refusals(ids: ibis.Table, settings: IdentitySettings) -> ibis.Table:
    """Identifiers that must not link anything, each with the rule that refused it."""
    blocked = [b.lower() for b in (*settings.blocked, *settings.extra_blocked)]
    by_value = ids.filter(ids.value.lower().isin(blocked)).select(
        "node", "id_type", rule=lit("blocked_value"), detail=lit("listed as a placeholder value")
    )
    # a source id used by two sources is ambiguous
    sid = ids.filter((ids.id_type == "source_id") & ids.source.notnull())
    amb = sid.group_by(["node", "id_type"]).agg(n=sid.source.nunique())
    amb = amb.filter(amb.n > 1).select(
        "node",
        "id_type",
        rule=lit("ambiguous_source_id"),
        detail=amb.n.cast("string") + lit(" sources use this id"),
    )
    # identifiers that appear on one record with two different anchors
    anchors = ids.filter(ids.id_type.isin(list(ANCHORS))).select(
        "record_table", "record_key", anchor_type="id_type", anchor="node", anchor_source="source"
    )
    low = ids.filter(~ids.id_type.isin(list(ANCHORS)))
    pairs = low.join(anchors, ["record_table", "record_key"])
    pairs = pairs.mutate(
        scope=pairs.anchor_type
        + ibis.coalesce(
            ibis.ifelse(pairs.anchor_type == "source_id", pairs.anchor_source, ibis.null("string")),
            lit(""),
        )
    )
    per = pairs.group_by(["node", "id_type", "scope"]).agg(n=pairs.anchor.nunique())
    shared = (
        per.filter(per.n > 1)
        .group_by(["node", "id_type"])
        .agg(n=per.n.max(), scope=per.scope.min())
    )
    shared = shared.select(
        "node",
        "id_type",
        rule=lit("shared_identifier"),
        detail=lit("seen with ") + shared.n.cast("string") + lit(" different ") + shared.scope,
    )
    # a person (one user id) has at most N e-mails / phones: beyond the N seen on most records,
    # further ones are refused rather than allowed to pull in whoever else uses them
    capped = []
    for id_type, limit in settings.max_per_person.items():
        own = pairs.filter((pairs.id_type == id_type) & (pairs.anchor_type == "user_id"))
        use = own.group_by(["anchor", "node", "id_type"]).agg(n=own.count())
        use = use.mutate(
            _k=ibis.row_number().over(group_by="anchor", order_by=[ibis.desc(use.n), use.node])
        )
        over = use.filter(use._k >= limit)
        capped.append(
            over.select(
                "node",
                "id_type",
                rule=lit("max_per_person"),
                detail=lit(f"one user id already has {limit} {id_type}s"),
            )
        )
    out = ibis.union(by_value, amb, shared, *capped, distinct=False)
    # one row per node: the first rule that refused it
    out = out.mutate(_rn=ibis.row_number().over(group_by="node", order_by="rule"))
    return out.filter(out._rn == 0).drop("_rn")


def connected_components(
    wh: Warehouse, edges: ibis.Table, nodes: ibis.Table, max_iterations: int
) -> tuple[ibis.Table, int]:
    """(node, component) for every node, by min-label propagation with pointer jumping.

    Each round joins labels across edges and then jumps each label to its own label, so the
    number of rounds grows with the logarithm of component diameter, not the diameter.
    """
    both = ibis.union(edges.select(a="src", b="dst"), edges.select(a="dst", b="src"), distinct=True)
    both = wh.materialize("_segone_cc_edges", both)
    labels = wh.materialize("_segone_cc_0", nodes.select("node", label=nodes.node).distinct())
    for i in range(1, max_iterations + 1):
        nb = both.join(labels, both.b == labels.node).select(node=both.a, label=labels.label)
        cand = ibis.union(labels, nb, distinct=False).group_by("node").agg(label=ibis._.label.min())
        parent = cand.select(n2="node", l2="label")
        jump = cand.left_join(parent, cand.label == parent.n2)
        jumped = jump.select("node", label=ibis.least(jump.label, jump.l2.fill_null(jump.label)))
        new = wh.materialize(f"_segone_cc_{i % 2 + 1}", jumped)
        changed = new.join(labels, "node").filter(lambda t: t.label != t.label_right).count()
        if int(wh.execute(changed)) == 0:
            result = wh.materialize("_segone_cc_done", new)
            for n in ("_segone_cc_edges", "_segone_cc_0", "_segone_cc_1", "_segone_cc_2"):
                wh.drop_staging(n)
            return result.select("node", component="label"), i
        labels = wh.materialize("_segone_cc_0", new)
    raise RuntimeError(f"identity graph did not converge in {max_iterations} rounds")
