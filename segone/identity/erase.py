"""The right to be forgotten: remove a person from every table of the warehouse and of the online
store, keep an audit without personal data, and refuse their records while the erasure stands,
whether they come back in a file or through the live API.

One erasure, three doors: ``segone erase`` and the library call ``erase_everywhere``; the API's
``DELETE /v1/profiles`` erases the online store at once and queues the identifiers' hashes for
the warehouse, which the next ``segone build`` erases (``apply_queued``) before it loads anything.

Identifiers are remembered only as salted SHA-256 hashes of their normalised form
(``"email:jane@x.com"``), in ``erased_identifiers`` of both stores; the salt is a random secret
(``project_secrets`` in the warehouse, ``meta`` in the online store), so the hashes cannot be
matched against a list of e-mail addresses without the stores themselves. A store may know more
than one salt (an online store that erased someone before it had met the warehouse); every
check hashes with each, and ``share_erasures`` gives both stores the union of salts and hashes.

Bytes on disk: the online store's SQLite runs with ``secure_delete`` and its WAL is checkpointed
and truncated after an erasure; DuckDB leaves deleted rows in free blocks until they are reused,
so ``compact_warehouse`` rewrites the file after an erasure.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segone.exceptions import AmbiguousError, NotFoundError
from segone.identity.graph import IdentitySettings, kind_identifiers, record_identifiers
from segone.identity.traces import Mentions, identifier_hashes
from segone.store.base import Warehouse

if TYPE_CHECKING:
    from segone.config import Settings
    from segone.online.store import OnlineStore

RAW_KEYS = {  # raw table -> how its rows are keyed in record_customers
    "events": "message_id",
    "orders": "order_id",
    "interactions": "interaction_id",
}


ROUTES = ("cli", "api", "web", "library")


@dataclass
class ErasureResult:
    erasure_id: str
    customers: int
    rows_removed: dict[str, int] = field(default_factory=dict)
    online_removed: dict[str, int] = field(default_factory=dict)
    people_online: int = 0
    # the normalised identifiers erased: personal data, kept in memory for the online part and
    # never printed, logged or stored
    nodes: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        total = sum(self.rows_removed.values()) + sum(self.online_removed.values())
        rows = {**self.rows_removed}
        for t, n in self.online_removed.items():
            rows["online " + t] = n
        parts = ", ".join(f"{n:,} {t}" for t, n in rows.items() if n)
        online = f", {self.people_online} online" if self.people_online else ""
        return (
            f"erasure {self.erasure_id}: {self.customers} customer(s){online}, {total:,} rows "
            f"removed ({parts or 'none'}); their identifiers will be refused if loaded or sent "
            "again"
        )


def erasure_salts(wh: Warehouse, *, legacy: bool = True) -> list[str]:
    """Every salt erased identifiers are hashed with in this warehouse: its ``erasure_salt``
    (created on first use; shared with the online store), any an online store brought (see
    ``share_erasures``) and, with ``legacy``, the identity salt that erasures made before the
    online store took part were hashed with (it never leaves the warehouse)."""
    t = wh.table("project_secrets")
    got = sorted({str(v) for v in wh.execute(t.filter(t.name == "erasure_salt").value)})
    if not got:
        got = [secrets.token_hex(32)]
        _add_secret(wh, "erasure_salt", got)
    return [*got, project_salt(wh)] if legacy else got


def _add_secret(wh: Warehouse, name: str, values: Sequence[str]) -> None:
    wh.insert(
        "project_secrets",
        ibis.memtable(pa.table({"name": [name] * len(values), "value": list(values)})),
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


#: hex digits of the salted hash kept in ``identifier_hashes``: 12 fit DuckDB's inlined strings,
#: so the erasure check scans it fast; a key that matches is confirmed on the whole hash
KEY_DIGITS = 12


def salt_id(salt: str) -> str:
    """A name for a salt that does not reveal it (the salt is a 256-bit secret)."""
    return hashlib.sha256(("salt-id:" + salt).encode()).hexdigest()[:12]


def identifier_keys(wh: Warehouse, salts: Sequence[str]) -> ibis.Table:
    """(customer_id, salt_id, node_key): every identifier of ``customer_map`` hashed with each
    of ``salts``, cut to :data:`KEY_DIGITS` hex digits."""
    cm = wh.table("customer_map")
    parts = [
        cm.select(
            "customer_id",
            salt_id=ibis.literal(salt_id(s)),
            node_key=hashed(cm.node, s).substr(0, KEY_DIGITS),
        )
        for s in salts
    ]
    return ibis.union(*parts, distinct=False)


def identifier_hashes_fresh(wh: Warehouse, salts: Sequence[str]) -> bool:
    """Whether ``identifier_hashes`` holds every row of ``customer_map`` under each of
    ``salts`` (and nothing else)."""
    n_map = wh.count("customer_map")
    t = wh.table("identifier_hashes")
    got = {str(k): int(v) for k, v in wh.execute(t.group_by("salt_id").agg(n=t.count())).values}
    return got == {salt_id(s): n_map for s in salts} or (n_map == 0 and not got)


def refresh_identifier_hashes(wh: Warehouse) -> None:
    """Rewrite ``identifier_hashes``: ``customer_map`` hashed with every erasure salt.

    Identity resolution calls it each time it rewrites ``customer_map`` (its only writer) and an
    erasure deletes a person's rows from both, so checking a million people against the erased
    hashes is a join on a column computed once per build instead of a SHA-256 of every
    identifier each time an audience is built. Readers check
    :func:`identifier_hashes_fresh` and hash on the fly when it is not (a salt an online store
    brought since the build, a warehouse built by an older segone)."""
    wh.replace("identifier_hashes", identifier_keys(wh, erasure_salts(wh)))


def erased_lines(wh: Warehouse, kind: str, rows: ibis.Table, line: str, cc: str) -> ibis.Table:
    """Lines of ``rows`` (validated records of ``kind``) that carry an erased identifier."""
    ids = kind_identifiers(kind, rows, cc)
    erased = wh.table("erased_identifiers")
    if not ids:
        return rows.select(line).filter(ibis.literal(False))
    parts = [rows.select(line, node=ibis.literal(t) + ":" + v) for t, v in ids]
    nodes = ibis.union(*parts, distinct=False)
    nodes = nodes.filter(nodes.node.notnull())
    hashes = ibis.union(
        *[nodes.mutate(node_hash=hashed(nodes.node, salt)) for salt in erasure_salts(wh)],
        distinct=False,
    )
    return hashes.semi_join(erased, "node_hash").select(line).distinct()


#: Derived tables keyed by the person: everything segone computed about them goes too.
PERSON_TABLES = (
    "customer_map",
    "identifier_hashes",
    "record_customers",
    "profiles",
    "scores",
    "recommendations",
    "category_affinity",
    "segment_memberships",
    "transitions",
)


def erase(
    wh: Warehouse,
    customer_ids: list[str],
    settings: IdentitySettings | None = None,
    *,
    extra_nodes: Sequence[str] = (),
    erasure_id: str | None = None,
    route: str = "library",
) -> ErasureResult:
    """Remove the customers ``customer_ids`` (see ``profiles.lookup.find_customers``) from the
    warehouse, with every record carrying one of their identifiers or of ``extra_nodes``
    (normalised ``type:value`` identifiers known elsewhere, e.g. live ones), and refuse those
    identifiers from now on. The warehouse part of ``erase_everywhere``."""
    settings = settings or IdentitySettings()
    if not customer_ids and not extra_nodes:
        raise NotFoundError("no customer to erase")
    salts = erasure_salts(wh)
    wh.add_column("erasures", "route", "VARCHAR")  # a warehouse made by an older segone
    ids = ibis.memtable(pa.table({"customer_id": pa.array(customer_ids, pa.string())}))
    ids = wh.stage("_segone_erase_ids", ids.to_pyarrow(), append=False)
    seeds = wh.stage(
        "_segone_erase_seeds",
        pa.table({"node": pa.array(sorted(set(extra_nodes)), pa.string())}),
        append=False,
    )
    rc = wh.table("record_customers")
    cm = wh.table("customer_map")
    all_ids = wh.materialize("_segone_erase_all", record_identifiers(wh, settings))
    refused = wh.table("identity_refusals").select("node")
    # The person's records: those of the last build, plus any loaded since that carry one of
    # their (non-shared) identifiers, followed one step further (a new phone on a new order).
    nodes = ibis.union(cm.semi_join(ids, "customer_id").select("node"), seeds, distinct=True)
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
    node_list = sorted(
        {str(n) for n in wh.execute(nodes.node)} | {str(n) for n in wh.execute(rec_nodes.node)}
    )
    erasure_id = erasure_id or uuid.uuid4().hex
    hashes = identifier_hashes(
        sorted({str(n) for n in wh.execute(nodes.node)} | set(extra_nodes)), salts
    )
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
        # probabilistic match pairs name customer records by ``source:source_id``
        im = wh.table("identity_matches")
        mine = c.select(uid=c.record_key)
        pairs = im.filter(im.unique_id_l.isin(mine.uid) | im.unique_id_r.isin(mine.uid))
        removed["identity_matches"] = wh.delete_matching(
            "identity_matches", pairs, ["unique_id_l", "unique_id_r"]
        )
        removed["quarantine"] = _delete_quarantine_mentioning(
            wh, Mentions(node_list, settings.default_country_code)
        )
        removed["enrichments"] = _delete_enrichments(wh, rec_nodes, settings.default_country_code)
        removed["identity_refusals"] = wh.delete_matching(
            "identity_refusals", rec_nodes.select("node"), ["node"]
        )
        if "identity_decisions" in wh.tables():  # decisions made by hand name identifiers
            gone = ibis.union(rec_nodes.select("node"), nodes.select("node"), distinct=True)
            removed["identity_decisions"] = wh.delete_matching(
                "identity_decisions", gone.select(a="node"), ["a"]
            ) + wh.delete_matching("identity_decisions", gone.select(b="node"), ["b"])
        for table in PERSON_TABLES:
            if table in wh.tables():
                removed[table] = wh.delete_matching(table, ids, ["customer_id"])
        removed["identity_history"] = wh.delete_matching("identity_history", ids, ["customer_id"])
        et = wh.table("erased_identifiers")
        have = set(wh.execute(et.filter(et.node_hash.isin(list(hashes))).node_hash))
        new = sorted(set(hashes) - {str(h) for h in have})
        if new:
            wh.insert(
                "erased_identifiers",
                ibis.memtable(pa.table({"node_hash": new, "erasure_id": [erasure_id] * len(new)})),
            )
        _audit(wh, erasure_id, len(customer_ids), removed, route)
    for n in (
        "_segone_erase_all",
        "_segone_erase_ids",
        "_segone_erase_seeds",
        "_segone_erase_keys",
        "_segone_erase_nodes",
        "_segone_erase_rec_nodes",
    ):
        wh.drop_staging(n)
    wh.checkpoint()
    return ErasureResult(erasure_id, len(customer_ids), removed, nodes=node_list)


def _audit(
    wh: Warehouse, erasure_id: str, customers: int, removed: dict[str, int], route: str
) -> None:
    """One line in ``erasures`` per erasure (a second part of the same erasure adds to it)."""
    t = wh.table("erasures")
    old = wh.execute(t.filter(t.erasure_id == erasure_id))
    if len(old):
        prev = json.loads(str(old.rows_removed.iloc[0]))
        removed = {k: removed.get(k, 0) + prev.get(k, 0) for k in {*removed, *prev}}
        customers += int(old.customers.iloc[0])
        wh.delete_matching("erasures", t.filter(t.erasure_id == erasure_id), ["erasure_id"])
    row: dict[str, Any] = {
        "erasure_id": [erasure_id],
        "at": pa.array([datetime.now(UTC)], pa.timestamp("us", "UTC")),
        "customers": [customers],
        "rows_removed": [json.dumps(removed, sort_keys=True)],
    }
    if "route" in t.columns:
        row["route"] = [route]
    wh.insert("erasures", ibis.memtable(pa.table(row)))


def _delete_quarantine_mentioning(wh: Warehouse, mentions: Mentions) -> int:
    """Quarantined records are raw text: remove those that mention any of the person's
    identifiers, in whatever spelling (see ``traces.Mentions``)."""
    q = wh.table("quarantine")
    rows = wh.to_arrow(q.select("source_file", "line", "problems", "record")).to_pylist()
    hit = [
        {k: r[k] for k in ("source_file", "line", "problems")}
        for r in rows
        if mentions(r["record"])
    ]
    if not hit:
        return 0
    schema = q.select("source_file", "line", "problems").schema().to_pyarrow()
    keys = wh.stage("_segone_erase_q", pa.Table.from_pylist(hit, schema=schema), append=False)
    n = wh.delete_matching("quarantine", keys, ["source_file", "line", "problems"])
    wh.drop_staging("_segone_erase_q")
    return n


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


# -- both stores ---------------------------------------------------------------------------------
def share_erasures(wh: Warehouse, store: OnlineStore) -> None:
    """Give the warehouse and the online store the union of their erasure salts and erased
    hashes, so each refuses what the other erased (a hash under a salt a store does not use
    matches nothing there, and costs nothing)."""
    with store.read() as tx:
        online_salts = tx.erasure.salts()
        online_hashes = tx.erasure.erased_hashes()
    mine = erasure_salts(wh, legacy=False)
    new = [s for s in online_salts if s not in mine]
    if new:
        _add_secret(wh, "erasure_salt", new)
    et = wh.table("erased_identifiers")
    wh_hashes = {str(h): str(e) for h, e in wh.execute(et).itertuples(index=False)}
    to_wh = [(h, e) for h, e in online_hashes if h not in wh_hashes]
    if to_wh:
        wh.insert(
            "erased_identifiers",
            ibis.memtable(
                pa.table({"node_hash": [h for h, _ in to_wh], "erasure_id": [e for _, e in to_wh]})
            ),
        )
    have = {h for h, _ in online_hashes}
    with store.write() as tx:
        tx.erasure.add_salts(mine)
        by_id: dict[str, list[str]] = {}
        for h, e in wh_hashes.items():
            if h not in have:
                by_id.setdefault(e, []).append(h)
        for e, hs in by_id.items():
            tx.erasure.add_erased(hs, e)


def find_people(
    wh: Warehouse | None, store: OnlineStore | None, identifier: str, settings: Settings
) -> tuple[list[str], list[str]]:
    """(warehouse customer ids, online person ids) that ``identifier`` names, in any spelling."""
    from segone.identity.candidates import candidates
    from segone.profiles.lookup import find_customers

    cc = settings.identity.default_country_code
    customers: list[str] = []
    if wh is not None and wh.count("customer_map"):
        customers = find_customers(wh, identifier, cc)
    people: set[str] = set()
    if store is not None:
        with store.read() as tx:
            people = tx.identity.people_of(candidates(identifier, settings.identity))
            if tx.docs.of(identifier, ("person", "published")):  # a person / customer id
                people.add(identifier)
    return customers, sorted(people)


def erase_everywhere(
    settings: Settings,
    wh: Warehouse | None,
    store: OnlineStore | None,
    identifier: str | None = None,
    *,
    customer_ids: Sequence[str] = (),
    person_ids: Sequence[str] = (),
    route: str = "library",
    all_matches: bool = False,
) -> ErasureResult:
    """Erase a person from the warehouse and the online store, matched by every identifier of
    theirs in normalised form, and refuse those identifiers from then on in both stores. The
    server may keep running: it reads the online store, where the erasure commits at once.

    ``identifier`` is any identifier in any spelling (``type:value`` to say which kind), a
    customer id or a live person id; or name the people with ``customer_ids`` /
    ``person_ids``. An identifier naming several customers raises ``AmbiguousError`` unless
    ``all_matches``. ``compact_warehouse`` afterwards (with the warehouse closed) removes the
    deleted rows' bytes from the DuckDB file."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}")
    customers, people = list(customer_ids), list(person_ids)
    if identifier is not None:
        c, p = find_people(wh, store, identifier, settings)
        if len(c) > 1 and not all_matches:
            raise AmbiguousError(
                f"{identifier!r} identifies {len(c)} different customers ({', '.join(c)}); "
                "erase one by its customer id, or all of them with --all"
            )
        customers += c
        people += p
    if not customers and not people:
        raise NotFoundError(
            f"no customer or live profile has the identifier {identifier!r}"
            if identifier is not None
            else "no customer to erase"
        )
    if store is not None and wh is not None:
        share_erasures(wh, store)
    online_nodes: list[str] = []
    if store is not None:
        with store.read() as tx:
            # a published customer is an online person under the same id
            people = sorted({*people, *(c for c in customers if tx.identity.identifiers_of(c))})
            for person in people:
                online_nodes += tx.identity.identifiers_of(person)
    erasure_id = uuid.uuid4().hex
    if wh is not None:
        if online_nodes:
            cm = wh.table("customer_map")
            more = wh.execute(cm.filter(cm.node.isin(online_nodes)).customer_id).unique()
            customers = sorted({*customers, *map(str, more)})
        result = erase(
            wh,
            sorted(set(customers)),
            settings.identity,
            extra_nodes=online_nodes,
            erasure_id=erasure_id,
            route=route,
        )
    else:
        result = ErasureResult(erasure_id, 0, nodes=sorted(set(online_nodes)))
    if store is not None:
        erase_online(store, result, settings, people, route)
    return result


def erase_online(
    store: OnlineStore,
    result: ErasureResult,
    settings: Settings,
    person_ids: Sequence[str] = (),
    route: str = "library",
) -> None:
    """The online part of an erasure: ``person_ids`` and everyone holding one of the erased
    identifiers (``result.nodes``), from every online table; the identifiers' hashes refused
    from then on; an audit line; the WAL checkpointed so old page images leave it."""
    from segone.online.store import OnlineStoreError

    nodes = result.nodes
    mentions = Mentions(nodes, settings.identity.default_country_code)
    with store.write() as tx:
        salts = tx.erasure.salts() or tx.erasure.add_salts([secrets.token_hex(32)])
        people = sorted(set(person_ids) | tx.identity.people_of(nodes))
        counts = tx.erasure.erase_people(people, nodes, mentions)
        tx.erasure.add_erased(identifier_hashes(nodes, salts), result.erasure_id)
        rows = {**result.rows_removed}
        rows.update({"online_" + k: v for k, v in counts.items()})
        tx.erasure.log(
            result.erasure_id, datetime.now(UTC), route, max(result.customers, len(people)), rows
        )
    result.online_removed = counts
    result.people_online = len(people)
    with suppress(OnlineStoreError):  # the erasure itself has committed; see scrub()
        store.scrub()


def apply_queued(wh: Warehouse, store: OnlineStore, settings: Settings) -> int:
    """Erasures asked through the API (their identifiers' hashes, queued by the server), now in
    the warehouse: every record carrying one of those identifiers goes, with its customer.
    Called by ``segone build`` before it loads anything. Returns the customers erased."""
    from segone.profiles.lookup import find_customers

    with store.read() as tx:
        pending = tx.erasure.queued()
        online_salts = tx.erasure.salts()
        ids_of = dict(tx.erasure.erased_hashes())
    if pending or wh.count("erased_identifiers") or ids_of:
        # people erased in the warehouse alone (the online store did not exist then) are
        # refused live from now on too
        share_erasures(wh, store)
    if not pending:
        return 0
    queued = {v[len("sha256:") :] for _, v in pending if v.startswith("sha256:")}
    erased = 0
    by_erasure: dict[str, set[str]] = {}
    if queued and online_salts:
        # which identifiers of the warehouse are they? hash each under the online salts
        every = ibis.union(
            wh.table("customer_map").select("node"),
            record_identifiers(wh, settings.identity).select("node"),
            distinct=True,
        )
        every = wh.materialize("_segone_erase_every", every.filter(every.node.notnull()))
        hashes = ibis.union(
            *[every.mutate(node_hash=hashed(every.node, s)) for s in online_salts],
            distinct=False,
        )
        want = wh.stage("_segone_erase_want", pa.table({"node_hash": sorted(queued)}), append=False)
        hit = wh.execute(hashes.semi_join(want, "node_hash"))
        wh.drop_staging("_segone_erase_every")
        wh.drop_staging("_segone_erase_want")
        for node, h in zip(hit.node, hit.node_hash, strict=True):
            by_erasure.setdefault(ids_of.get(str(h), uuid.uuid4().hex), set()).add(str(node))
    legacy = [v for _, v in pending if not v.startswith("sha256:")]  # before hashes were queued
    if legacy and wh.count("customer_map"):
        cc = settings.identity.default_country_code
        people = sorted({c for v in legacy for c in find_customers(wh, v, cc)})
        if people:
            r = erase(wh, people, settings.identity, route="api")
            erased += r.customers
            erase_online(store, r, settings, people, route="api")
    for erasure_id, nodes in by_erasure.items():
        cm = wh.table("customer_map")
        customers = sorted(
            map(str, wh.execute(cm.filter(cm.node.isin(sorted(nodes))).customer_id).unique())
        )
        r = erase(
            wh,
            customers,
            settings.identity,
            extra_nodes=sorted(nodes),
            erasure_id=erasure_id,
            route="api",
        )
        erased += r.customers
        # identifiers only the warehouse knew (a CRM phone), and the customers' published
        # documents, go from the online store too
        erase_online(store, r, settings, customers, route="api")
    with store.write() as tx:
        tx.erasure.done([i for i, _ in pending])
    return erased


def readmit(
    settings: Settings,
    wh: Warehouse | None,
    store: OnlineStore | None,
    identifier: str,
    *,
    route: str = "library",
) -> ErasureResult:
    """Allow an erased identifier back (the person signed up again, with consent): its hashes
    leave ``erased_identifiers`` in both stores, and the audit gets a line of its own. Nothing
    erased comes back; only new records and messages carrying it are accepted again. Never a
    side effect of anything else: this is the one way."""
    from segone.identity.candidates import candidates

    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}")
    nodes = candidates(identifier, settings.identity)
    if not nodes:
        raise NotFoundError(f"{identifier!r} is not an identifier")
    salts: list[str] = []
    if wh is not None:
        salts += erasure_salts(wh)
    if store is not None:
        with store.read() as tx:
            salts += tx.erasure.salts()
    hashes = sorted(identifier_hashes(nodes, set(salts)))
    readmission = uuid.uuid4().hex
    removed = {"erased_identifiers": 0}
    if wh is not None:
        keys = wh.stage("_segone_readmit", pa.table({"node_hash": hashes}), append=False)
        removed["erased_identifiers"] += wh.delete_matching(
            "erased_identifiers", keys, ["node_hash"]
        )
        wh.drop_staging("_segone_readmit")
    if store is not None:
        with store.write() as tx:
            n = tx.erasure.remove_erased(hashes)
            tx.erasure.log(
                readmission, datetime.now(UTC), f"readmit ({route})", 0, {"erased_identifiers": n}
            )
        removed["online_erased_identifiers"] = n
    if not any(removed.values()):
        raise NotFoundError(f"{identifier!r} is not erased")
    if wh is not None:
        wh.add_column("erasures", "route", "VARCHAR")
        _audit(wh, readmission, 0, removed, f"readmit ({route})")
    return ErasureResult(readmission, 0, removed)


def compact_warehouse(path: Path) -> bool:
    """Rewrite a closed warehouse file into a new file and swap it in: DuckDB leaves deleted
    rows in free blocks until they are reused, so this is what takes an erased person's bytes
    out of the file. False when there is no such file (an in-memory store)."""
    from segone.store.duckdb import compact_file

    return compact_file(Path(path))


def erasure_audit(wh: Warehouse | None, store: OnlineStore | None) -> list[dict[str, Any]]:
    """Every erasure, newest first: id, time, route, people and rows removed per table. No
    personal data: this is what ``segone erasures`` and ``GET /v1/erasures`` show."""
    out: dict[str, dict[str, Any]] = {}
    if store is not None:
        with store.read() as tx:
            for entry in tx.erasure.audit():
                out[entry.erasure_id] = entry.as_dict()
    if wh is not None:
        t = wh.table("erasures")
        for row in wh.to_arrow(t).to_pylist():
            e = out.setdefault(
                row["erasure_id"],
                {
                    "erasure_id": row["erasure_id"],
                    "at": row["at"].isoformat() if row["at"] else None,
                    "route": row.get("route") or "cli",
                    "people": int(row["customers"] or 0),
                    "rows_removed": {},
                },
            )
            rows = json.loads(row["rows_removed"] or "{}")
            for k, v in rows.items():
                e["rows_removed"].setdefault(k, v)
    return sorted(out.values(), key=lambda e: str(e["at"]), reverse=True)
