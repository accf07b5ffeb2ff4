"""Real-time ingestion benchmark: CPU per event of ``Engine.ingest_sync`` on a SQLite online store.

    python bench/live_bench.py                      # 5,000 events, 300 users, batches of 20
    python bench/live_bench.py --profile            # and a cProfile of one run (cumulative)
    python bench/live_bench.py --dump out.json      # each person's documents and journey

Generates realistic Segment messages (identify / track / page from a few hundred users, each
with one or two anonymous ids, some ``Order Completed`` with products, ``Product Viewed`` with a
category, pricing pages, searches, e-mail events), some of them for customers a build published
(a ``published`` document with recent events), then ingests them in batches into a fresh
temporary store with the example segment files (``event:`` conditions included; ``--builtin``
for the built-in segments only). Reported per event: wall time of ``ingest_sync`` (includes the
durable SQLite commit), process CPU, and the CPU spent inside ``Writer.ingest`` (the per-event
work, without the commit). Each repeat uses a fresh store; the median is the figure to read.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
CATEGORIES = [
    "Books > Fiction > Crime",
    "Books > Fiction > Fantasy",
    "Books > Non-fiction > History",
    "Home > Kitchen > Knives",
    "Home > Garden > Tools",
    "Sports & Outdoors > Fishing > Rods",
    "Sports & Outdoors > Camping > Tents",
    "Electronics > Audio > Headphones",
]
PAGES = ["Home", "Pricing", "Product", "Cart", "About", "Blog"]
TERMS = ["rod", "reel", "tent", "knife", "novel", "headphones", "fishing"]


def messages(n: int, users: int, seed: int) -> list[dict[str, Any]]:
    """``n`` Segment messages over the 60 days before NOW, in time order (roughly)."""
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
    for u in range(users):
        anons = [f"anon-{u}-{k}" for k in range(rng.choice((1, 1, 2)))]
        people.append({"uid": f"user-{u}", "anons": anons, "known": False, "orders": 0})
    start = NOW - timedelta(days=60)
    times = sorted(start + timedelta(seconds=rng.uniform(0, 60 * 86400)) for _ in range(n))
    weights = [1.0 / (u + 10) for u in range(users)]  # some people are much more active
    who = rng.choices(people, weights, k=n)
    out: list[dict[str, Any]] = []
    for k, ts in enumerate(times):
        p = who[k]
        msg: dict[str, Any] = {
            "messageId": f"m-{seed}-{k}",
            "timestamp": ts.isoformat(),
            "receivedAt": (ts + timedelta(seconds=1)).isoformat(),
            "anonymousId": rng.choice(p["anons"]),
            "context": {"ip": "10.0.0.1", "userAgent": "Mozilla/5.0", "library": {"name": "js"}},
        }
        if p["known"] or rng.random() < 0.3:
            msg["userId"] = p["uid"]
        r = rng.random()
        if r < 0.06 or (not p["known"] and r < 0.1):
            p["known"] = True
            msg["type"] = "identify"
            msg["userId"] = p["uid"]
            msg["traits"] = {
                "email": f"{p['uid']}@example.com",
                "firstName": "Jane",
                "city": rng.choice(["Leeds", "York", "Bath"]),
                "emailOptIn": rng.choice(["yes", "no"]),
            }
        elif r < 0.5:
            name = rng.choice(PAGES)
            props: dict[str, Any] = {"path": f"/{name.lower()}", "url": "https://x.example"}
            if name == "Product":
                props["category"] = rng.choice(CATEGORIES)
            msg.update(type="page", name=name, properties=props)
        elif r < 0.7:
            cat = rng.choice(CATEGORIES)
            props = {"product_id": f"P{rng.randint(1, 500)}", "category": cat, "price": 19.99}
            msg.update(type="track", event="Product Viewed", properties=props)
        elif r < 0.78:
            p["orders"] += 1
            products = [
                {
                    "product_id": f"P{rng.randint(1, 500)}",
                    "category": rng.choice(CATEGORIES),
                    "quantity": rng.randint(1, 3),
                    "price": round(rng.uniform(5, 80), 2),
                }
                for _ in range(rng.randint(1, 4))
            ]
            props = {"order_id": f"O-{seed}-{k}", "products": products}
            if rng.random() < 0.3:
                props["coupon"] = "SPRING"
                props["discount"] = 5.0
            msg.update(type="track", event="Order Completed", userId=p["uid"], properties=props)
        elif r < 0.85:
            msg.update(
                type="track",
                event="Products Searched",
                properties={"query": rng.choice(TERMS)},
            )
        elif r < 0.93:
            event = rng.choice(["Email Delivered", "Email Opened", "Email Link Clicked"])
            msg.update(type="track", event=event, properties={"campaign": "spring"})
        else:
            msg.update(type="track", event="Added To Cart", properties={"sku": "P1"})
        out.append(msg)
    return out


def seed_published(store: Any, users: int, share: float, seed: int) -> None:
    """A build's results for ``share`` of the users: identifiers linked to a customer id and a
    ``published`` document with its extras (recent events, devices, searches, pricing)."""
    from segone.live.profile import published_doc

    rng = random.Random(seed + 1)
    with store.write() as tx:
        docs = {}
        for u in range(users):
            if rng.random() >= share:
                continue
            cid = f"cus_{u}"
            tx.identity.link(f"user_id:user-{u}", cid, source="build")
            tx.identity.link(f"email:user-{u}@example.com", cid, source="build")
            last = NOW - timedelta(days=rng.uniform(61, 400))
            orders = rng.randint(0, 6)
            row = {
                "customer_id": cid,
                "orders": orders,
                "revenue": 40.0 * orders,
                "first_order_at": last - timedelta(days=300) if orders else None,
                "last_order_at": last if orders else None,
                "mean_gap_days": 50.0 if orders > 1 else None,
                "events": 30,
                "page_views": 20,
                "pricing_views": 2,
                "first_seen": last - timedelta(days=400),
                "last_seen": last,
                "lifecycle_stage": "active" if orders else "prospect",
                "p_alive": 0.6 if orders > 1 else None,
                "top_category": rng.choice(CATEGORIES) if orders else None,
                "category_affinity": {rng.choice(CATEGORIES): 1.0} if orders else None,
                "m_score": rng.randint(1, 5),
                "social_follower": rng.random() < 0.2,
                "avg_sentiment": rng.uniform(-1, 1),
                "crm_stage": rng.choice([None, "lead", "opportunity"]),
            }
            events = [
                {"ts": last - timedelta(days=d), "name": rng.choice(PAGES)} for d in range(10)
            ]
            docs[cid] = published_doc(
                row,
                0,
                events=events,
                devices=[f"anon-{u}-0"],
                searches={"rod": 2},
                pricing_ts=[],
            )
        tx.docs.put("published", docs, NOW)
        tx.meta.set("median_gap_days", "45.0")


def run(
    msgs: list[dict[str, Any]],
    args: argparse.Namespace,
    profiler: cProfile.Profile | None = None,
    dump: Path | None = None,
) -> tuple[float, float, float]:
    """(wall, process CPU, CPU inside Writer.ingest) in seconds for ingesting ``msgs``."""
    from segone.config import Settings
    from segone.online.engine import Engine
    from segone.online.store import OnlineStore

    tmp = Path(tempfile.mkdtemp(prefix="live-bench-"))
    try:
        if not args.builtin:
            (tmp / "segments").mkdir()
            examples = resources.files("segone.segments").joinpath("examples/examples.yaml")
            (tmp / "segments" / "examples.yaml").write_text(examples.read_text())
        store = OnlineStore.open(f"sqlite:///{tmp / 'online.db'}")
        seed_published(store, args.users, args.published, args.seed)
        settings = Settings.from_dict(tmp, {})
        clock = iter(NOW + timedelta(seconds=k) for k in range(10**9))
        engine = Engine(store, settings, clock=lambda: next(clock))
        engine.refresh(force=True)
        inner = engine.writer.ingest
        spent = [0.0]

        def timed(tx: Any, now: Any, batch: Any, rejected: Any = ()) -> dict[str, int]:
            t = time.thread_time()
            try:
                return inner(tx, now, batch, rejected)
            finally:
                spent[0] += time.thread_time() - t

        engine.writer.ingest = timed  # type: ignore[method-assign]
        parts = _instrument() if args.breakdown else {}
        batches = [msgs[i : i + args.batch] for i in range(0, len(msgs), args.batch)]
        w0, c0 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        for b in batches:
            engine.ingest_sync(b)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if parts:
            _restore(parts)
            n = len(msgs)
            print(
                "    inside Writer.ingest: "
                + ", ".join(f"{k} {v[0] / n * 1e6:.1f}" for k, v in parts.items())
                + f", the rest {(spent[0] - sum(v[0] for v in parts.values())) / n * 1e6:.1f}"
                + " us/event"
            )
        if dump is not None:
            write_dump(store, dump)
        store.close()
        return wall, cpu, spent[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _instrument() -> dict[str, list[Any]]:
    """Time the calls the Engine makes into segone.live (CPU of this thread)."""
    from segone.live import identity, person

    parts: dict[str, list[Any]] = {}
    for mod, name in ((identity, "identifiers_of"), (identity, "stitch"), (person, "update")):
        fn = getattr(mod, name)
        cell = parts[f"{mod.__name__.rsplit('.', 1)[1]}.{name}"] = [0.0, mod, name, fn]

        def timed(*a: Any, _fn: Any = fn, _cell: list[Any] = cell, **kw: Any) -> Any:
            t = time.thread_time()
            try:
                return _fn(*a, **kw)
            finally:
                _cell[0] += time.thread_time() - t

        setattr(mod, name, timed)
    return parts


def _restore(parts: dict[str, list[Any]]) -> None:
    for _, mod, name, fn in parts.values():
        setattr(mod, name, fn)


def write_dump(store: Any, path: Path) -> None:
    """Each person (named by their sorted identifiers, since live ids are random) with their
    person document and journey, for comparing two versions of the code."""
    out = {}
    with store.read() as tx:
        for pid, doc in tx.docs.all("person").items():
            name = "|".join(tx.identity.identifiers_of(pid))
            journey = [(j.ts, j.kind, j.detail) for j in tx.journey.of(pid, 10_000)]
            out[name] = {"doc": doc, "journey": sorted(journey, key=json.dumps)}
    text = json.dumps(out, sort_keys=True, indent=1)
    path.write_text(re.sub(r"live-[0-9a-f]{32}", "live-*", text))  # random ids


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--published", type=float, default=0.3, help="share of published users")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--builtin", action="store_true", help="built-in segments only")
    ap.add_argument("--profile", action="store_true", help="cProfile one more run")
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument(
        "--breakdown", action="store_true", help="time segone.live's calls inside Writer.ingest"
    )
    ap.add_argument("--dump", type=Path, help="write people's documents and journeys here")
    args = ap.parse_args()

    msgs = messages(args.events, args.users, args.seed)
    n = len(msgs)
    run(msgs[: min(n, 200)], args)  # warm up imports and caches
    rows = []
    for k in range(args.repeat):
        wall, cpu, inner = run(msgs, args, dump=args.dump if k == 0 else None)
        rows.append((wall, cpu, inner))
        print(
            f"run {k + 1}: wall {wall / n * 1e6:7.1f} us/event | process CPU "
            f"{cpu / n * 1e6:7.1f} us/event | ingest CPU {inner / n * 1e6:7.1f} us/event",
            flush=True,
        )
    med = [statistics.median(r[i] for r in rows) / n * 1e6 for i in range(3)]
    best = [min(r[i] for r in rows) / n * 1e6 for i in range(3)]
    print(
        f"{n} events, {args.users} users, batches of {args.batch}, "
        f"{'built-in' if args.builtin else 'example'} segments, {args.repeat} runs"
    )
    for what, v in (("median", med), ("min", best)):
        print(
            f"{what:>6}: wall {v[0]:7.1f} | process CPU {v[1]:7.1f} | "
            f"ingest CPU {v[2]:7.1f} us/event"
        )
    if args.profile:
        prof = cProfile.Profile()
        run(msgs, args, profiler=prof)
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
