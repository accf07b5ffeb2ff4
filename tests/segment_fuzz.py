"""A seeded fuzz of Segment-spec e-commerce events with odd but JSON-legal values, against a
running segone server, with follow-up profile reads and decisions for every person.

What an OpenAPI-driven fuzzer (schemathesis) cannot express: ``"total": "NaN"``, a price of
9223372036854775807 or 1e+300, ``"revenue": {}``, a timestamp in the year 9999 or 1900, products
that are not objects, ids that are objects, ... on every message type and endpoint (single
messages and batches). After each person's events their profile is read and a decision asked
for: a person the server accepted an event for must stay readable.

Used by tests/test_api_fuzz.py (a few hundred requests) and runnable on its own against the
real ``segone serve`` (a fresh project in a temporary directory; a copy of a built project with
``--project``, e.g. one ``segone demo --no-serve`` made, and ``--known N`` of the people it
published; or ``--url`` of a running server with its keys), from the repository's root (the
server runs the ``segone`` that ``python -c`` imports there)::

    .venv/bin/python tests/segment_fuzz.py [--seed 20] [--people 100] [--project DIR --known 50]

It prints the requests sent, the answers >= 500 (by endpoint and the values that caused them)
and the people left unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# odd values a shop's bug, a currency string or a broken SDK really send
ODD_NUMBERS: list[Any] = [
    "NaN",
    "nan",
    "-Infinity",
    "Infinity",
    "inf",
    "-inf",
    "1e999",
    9223372036854775807,
    -9223372036854775808,
    18446744073709551615,
    1e300,
    -1e300,
    1.7976931348623157e308,
    5e-324,
    -0.0,
    -1,
    -250.5,
    0,
    {},
    {"amount": 10},
    [],
    [1, 2],
    "",
    " ",
    "12,50",
    "$19.99",
    "19.99 EUR",
    "abc",
    True,
    False,
    None,
    "9" * 400,
    "1e308",
    "-1e308",
    "0x1A",
    "1_000",
]
GOOD_NUMBERS: list[Any] = [0, 1, 2, 3, 9.99, 19.5, 100, "12.50", "3"]
ODD_TEXT: list[Any] = [
    "",
    " ",
    None,
    {},
    {"id": "x"},
    [],
    ["a", "b"],
    12345,
    9223372036854775807,
    1e300,
    True,
    "\u0000",
    "a" * 5000,
    "Books > > ",
    " > ",
    ">",
    "Ünïcødé ✓ 🛒",
    "\ud7ff",
]
GOOD_TEXT = ["Books", "Garden > Tools", "Shoes > Running", "Home", "p-1", "sku-9"]
ODD_TIMESTAMPS: list[Any] = [
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59.999999Z",
    "1900-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+00:00",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2099-06-01T00:00:00Z",
    "2199-01-01T00:00:00-14:00",
    "2001-02-03",
    "2024-02-30T00:00:00Z",
    "not a date",
    "",
    1700000000,
    1e300,
    {},
    [],
    None,
    True,
]
GOOD_TIMESTAMPS = [
    "2025-06-01T10:00:00Z",
    "2026-01-15T08:30:00.123+01:00",
    "2024-11-30T23:59:59.999999+00:00",
]
ECOMMERCE_EVENTS = [
    "Order Completed",
    "Order Completed",
    "Order Completed",
    "Product Added",
    "Product Viewed",
    "Product Clicked",
    "Product List Viewed",
    "Products Searched",
    "Checkout Started",
    "Checkout Step Completed",
    "Payment Info Entered",
    "Order Updated",
    "Order Refunded",
    "Order Cancelled",
    "Cart Viewed",
    "Product Removed",
    "Coupon Applied",
    "Promotion Viewed",
    "Email Delivered",
    "Email Opened",
    "Email Link Clicked",
]
NUMBER_FIELDS = ["revenue", "total", "value", "subtotal", "tax", "shipping", "discount"]
PRODUCT_NUMBER_FIELDS = ["price", "quantity", "position", "discount"]


@dataclass
class Plan:
    """One request: where it goes and what it carries (for reports)."""

    path: str
    body: Any
    person: str
    odd: list[str] = field(default_factory=list)


class Fuzz:
    """Seeded message generator; ``odd_rate`` is the share of fields given an odd value."""

    def __init__(self, seed: int, odd_rate: float = 0.35, tag: str = "fz") -> None:
        self.r = random.Random(seed)
        self.tag = tag
        self.odd_rate = odd_rate
        self.n = 0

    def _odd(self) -> bool:
        return self.r.random() < self.odd_rate

    def number(self, odd: list[str], name: str) -> Any:
        if self._odd():
            v = self.r.choice(ODD_NUMBERS)
            odd.append(f"{name}={json.dumps(v)[:40]}")
            return v
        return self.r.choice(GOOD_NUMBERS)

    def text(self, odd: list[str], name: str, good: list[str] | None = None) -> Any:
        if self._odd():
            v = self.r.choice(ODD_TEXT)
            odd.append(f"{name}={json.dumps(v)[:40]}")
            return v
        return self.r.choice(good or GOOD_TEXT)

    def timestamp(self, odd: list[str], name: str = "timestamp") -> Any:
        if self._odd():
            v = self.r.choice(ODD_TIMESTAMPS)
            odd.append(f"{name}={json.dumps(v)[:40]}")
            return v
        return self.r.choice(GOOD_TIMESTAMPS)

    def product(self, odd: list[str]) -> Any:
        if self.r.random() < 0.05:
            v = self.r.choice(["p-1", 7, None, [], {"nested": {"deep": [1]}}])
            odd.append(f"products[]={json.dumps(v)[:40]}")
            return v
        p: dict[str, Any] = {
            "product_id": self.text(odd, "product_id", ["p1", "p2", "p3", "p7", "p12"]),
            "sku": self.text(odd, "sku", ["sku-1", "sku-2"]),
            "category": self.text(odd, "category"),
            "name": self.text(odd, "name"),
            "brand": self.text(odd, "brand"),
        }
        for k in PRODUCT_NUMBER_FIELDS:
            if self.r.random() < 0.8:
                p[k] = self.number(odd, k)
        return p

    def properties(self, event: str, odd: list[str]) -> Any:
        if self.r.random() < 0.04:
            v = self.r.choice([[], "props", 5, None])
            odd.append(f"properties={json.dumps(v)}")
            return v
        props: dict[str, Any] = {
            "order_id": self.text(odd, "order_id", [f"o-{self.r.randrange(40)}"]),
            "checkout_id": self.text(odd, "checkout_id", ["c-1"]),
            "currency": self.text(odd, "currency", ["USD", "EUR"]),
            "coupon": self.text(odd, "coupon", ["", "SAVE10"]),
            "affiliation": self.text(odd, "affiliation", ["web"]),
        }
        for k in NUMBER_FIELDS:
            if self.r.random() < 0.7:
                props[k] = self.number(odd, k)
        if event in ("Product Viewed", "Product Added", "Product Clicked", "Product Removed"):
            product = self.product(odd)
            if isinstance(product, dict):
                props.update(product)
        if event == "Products Searched":
            props["query"] = self.text(odd, "query", ["boots", "red shoes"])
        if self.r.random() < 0.85:
            k = self.r.choice([0, 1, 2, 3, 5])
            if self._odd() and self.r.random() < 0.3:
                v = self.r.choice([{}, "p1,p2", 3, None, {"0": {"product_id": "p1"}}])
                odd.append(f"products={json.dumps(v)[:40]}")
                props["products"] = v
            else:
                props["products"] = [self.product(odd) for _ in range(k)]
        return props

    def message(self, kind: str, person: str, odd: list[str]) -> dict[str, Any]:
        self.n += 1
        msg: dict[str, Any] = {
            "type": kind,
            "messageId": f"{self.tag}-{self.n}-{self.r.random():.8f}",
        }
        who = self.r.random()
        if who < 0.6:
            msg["userId"] = person
        elif who < 0.85:
            msg["anonymousId"] = f"anon-{person}"
        else:
            msg["userId"], msg["anonymousId"] = person, f"anon-{person}"
        if self.r.random() < 0.7:
            msg["timestamp"] = self.timestamp(odd)
        if self.r.random() < 0.15:
            msg["originalTimestamp"] = self.timestamp(odd, "originalTimestamp")
        if self.r.random() < 0.1:
            msg["sentAt"] = self.timestamp(odd, "sentAt")
        ctx: dict[str, Any] = {"library": {"name": "analytics-python", "version": "2.3.0"}}
        if self.r.random() < 0.2:
            ctx["traits"] = self.traits(odd)
        if self.r.random() < 0.1:
            ctx["page"] = {"path": self.text(odd, "context.page.path", ["/pricing", "/"])}
        msg["context"] = ctx
        if kind == "track":
            msg["event"] = self.r.choice(ECOMMERCE_EVENTS)
            msg["properties"] = self.properties(msg["event"], odd)
        elif kind in ("page", "screen"):
            msg["name"] = self.r.choice(["Pricing", "Home", "Product", "Checkout"])
            msg["properties"] = {
                "path": self.text(odd, "path", ["/pricing", "/", "/p/1"]),
                "category": self.text(odd, "category"),
                "url": "https://shop.example/",
            }
        elif kind == "identify":
            msg["traits"] = self.traits(odd)
        elif kind == "group":
            msg["groupId"] = f"g-{self.r.randrange(5)}"
            msg["traits"] = {"employees": self.number(odd, "employees")}
        elif kind == "alias":
            msg["userId"] = person
            msg.pop("anonymousId", None)
            msg["previousId"] = f"anon-{person}"
        return msg

    def traits(self, odd: list[str]) -> Any:
        if self.r.random() < 0.03:
            odd.append("traits=[]")
            return []
        return {
            "email": self.text(odd, "email", [f"x{self.r.randrange(9)}@example.com"]),
            "first_name": self.text(odd, "first_name", ["Ann"]),
            "city": self.text(odd, "city", ["Paris"]),
            "address": self.r.choice([{"city": "Lyon", "postalCode": 69001}, "Lyon", None, {}]),
            "emailOptIn": self.r.choice([True, False, "yes", "NaN", {}, 1e300, None]),
            "lifetime_value": self.number(odd, "lifetime_value"),
            "createdAt": self.timestamp(odd, "createdAt"),
        }

    def requests(self, person: str, k: int) -> Iterator[Plan]:
        """``k`` requests for ``person``: single messages on their endpoints and batches."""
        kinds = ["track"] * 6 + ["identify", "page", "screen", "group", "alias"]
        for _ in range(k):
            odd: list[str] = []
            if self.r.random() < 0.25:
                batch = [self.message(self.r.choice(kinds), person, odd) for _ in range(4)]
                body: dict[str, Any] = {"batch": batch, "sentAt": self.timestamp(odd, "sentAt")}
                yield Plan("/v1/batch", body, person, odd)
            else:
                kind = self.r.choice(kinds)
                yield Plan(f"/v1/{kind}", self.message(kind, person, odd), person, odd)


@dataclass
class Report:
    requests: int = 0
    server_errors: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    accepted_people: set[str] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)

    def record(self, path: str, status: int, what: str) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors += 1
            self.by_path[path] += 1
            if len(self.examples) < 40:
                self.examples.append(f"{status} {path}: {what}")

    def summary(self) -> str:
        lines = [
            f"requests: {self.requests}",
            f"answers >= 500: {self.server_errors} (by path: {dict(self.by_path)})",
            f"statuses: {dict(sorted(self.statuses.items()))}",
            f"people with an accepted event: {len(self.accepted_people)}",
            f"people left unreadable (profile or decide >= 500): {len(self.unreadable)}",
        ]
        return "\n".join(lines + [f"  {e}" for e in self.examples])


def _body(raw: Any) -> bytes:
    # the JSON a client would send: Python's json writes NaN/Infinity only when asked, and
    # none of ours are floats that are not finite
    return json.dumps(raw, allow_nan=False).encode()


def run(
    http: httpx.Client,
    *,
    write_key: str,
    decide_token: str,
    admin_token: str,
    seed: int = 20,
    people: int = 20,
    requests_per_person: int = 12,
    odd_rate: float = 0.35,
    prefix: str = "fz",
    known: Sequence[str] = (),
) -> Report:
    """The fuzz: for each person their requests, then a profile read and a decision each after
    every request and at the end (and again for everyone once all are done)."""
    fuzz = Fuzz(seed, odd_rate, prefix)
    rep = Report()
    admin = {"Authorization": f"Bearer {admin_token}"}
    decide = {"Authorization": f"Bearer {decide_token}"}
    names = [f"{prefix}-{seed}-{i}" for i in range(people)] + list(known)

    def follow_up(person: str) -> None:
        for ident in (f"user_id:{person}", f"anonymous_id:anon-{person}"):
            r = http.get(f"/v1/profiles/{ident}", headers=admin)
            rep.record("/v1/profiles", r.status_code, ident)
            if r.status_code >= 500:
                rep.unreadable.add(person)
            body = {"identifier": ident, "placement": "home", "limit": 3}
            r = http.post("/v1/decide", json=body, headers=decide)
            rep.record("/v1/decide", r.status_code, ident)
            if r.status_code >= 500:
                rep.unreadable.add(person)

    for person in names:
        for plan in fuzz.requests(person, requests_per_person):
            r = http.post(
                plan.path,
                content=_body(plan.body),
                headers={"Content-Type": "application/json"},
                auth=(write_key, ""),
            )
            rep.record(plan.path, r.status_code, ", ".join(plan.odd) or "(no odd value)")
            if r.status_code == 200 and r.json().get("accepted"):
                rep.accepted_people.add(person)
            if fuzz.r.random() < 0.3:
                follow_up(person)
        follow_up(person)
    rep.unreadable.clear()  # judged on the last reads: once all are done
    for person in names:
        follow_up(person)
    return rep


# -- a real `segone serve` on a fresh project -----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    python: str = sys.executable, log_to: Path | None = None, project: Path | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """``segone init`` (or a copy of ``project``, e.g. one ``segone demo`` built and published)
    + ``segone serve`` in a temporary directory; yields (url, keys). The server's log is copied
    to ``log_to`` at the end when given."""
    keys = {"write": "wk-fuzz", "decide": "dk-fuzz", "admin": "adm-fuzz"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        env = {
            **os.environ,
            "SEGONE_WRITE_KEYS": keys["write"],
            "SEGONE_DECIDE_TOKENS": keys["decide"],
            "SEGONE_ADMIN_TOKENS": keys["admin"],
        }
        cli = [python, "-c", "from segone.cli import main; main()"]
        if project is not None:
            shutil.copytree(project, root)
        else:
            subprocess.run([*cli, "init", str(root)], check=True, env=env, capture_output=True)
        port = _free_port()
        log = (Path(tmp) / "serve.log").open("wb")
        proc = subprocess.Popen(
            [*cli, "serve", "--project", str(root), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("segone serve did not start")
                time.sleep(0.2)
            yield url, keys
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
            errors = (Path(tmp) / "serve.log").read_text(errors="replace")
            if log_to is not None:
                log_to.write_text(errors)
            if "unhandled" in errors:
                print("--- server log (unhandled errors) ---", file=sys.stderr)
                print(errors[-6000:], file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--people", type=int, default=100)
    p.add_argument("--requests-per-person", type=int, default=12)
    p.add_argument("--odd-rate", type=float, default=0.35)
    p.add_argument("--url", help="a running server (else: segone serve on a fresh project)")
    p.add_argument("--write-key", default="wk-fuzz")
    p.add_argument("--decide-token", default="dk-fuzz")
    p.add_argument("--admin-token", default="adm-fuzz")
    p.add_argument("--log", type=Path, help="copy the server's log here")
    p.add_argument(
        "--project",
        type=Path,
        help="serve a copy of this project (e.g. one `segone demo --no-serve` built)",
    )
    p.add_argument(
        "--known",
        type=int,
        default=0,
        help="with --project: also fuzz this many people the build published (by user id)",
    )
    a = p.parse_args()

    def go(url: str, write: str, dec: str, adm: str) -> Report:
        with httpx.Client(base_url=url, timeout=30) as http:
            return run(
                http,
                write_key=write,
                decide_token=dec,
                admin_token=adm,
                seed=a.seed,
                people=a.people,
                requests_per_person=a.requests_per_person,
                odd_rate=a.odd_rate,
                known=known,
            )

    known: list[str] = []
    if a.project is not None and a.known:
        with sqlite3.connect(f"file:{a.project / 'online.db'}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT identifier FROM identities WHERE identifier LIKE 'user_id:%' "
                "ORDER BY identifier LIMIT ?",
                (a.known,),
            ).fetchall()
        known = [r[0].split(":", 1)[1] for r in rows]
    t = time.perf_counter()
    if a.url:
        rep = go(a.url, a.write_key, a.decide_token, a.admin_token)
    else:
        with serve(log_to=a.log, project=a.project) as (url, keys):
            rep = go(url, keys["write"], keys["decide"], keys["admin"])
    print(rep.summary())
    print(f"({time.perf_counter() - t:.1f} s)")
    sys.exit(1 if rep.server_errors or rep.unreadable else 0)


if __name__ == "__main__":
    main()
