"""`segone build` finishes on any data that loaded, and a model it cannot fit only skips itself.

Each store is written as files, loaded with the ingest a user runs, and built with the function
`segone build` calls (``build_project``), in a fresh project on disk.
"""

from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from segone.cli import app
from segone.ingest import ingest_file
from segone.pipeline.build import build_project
from segone.profiles.lookup import find_customers
from segone.project import Project

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# -- one test per crash seen on real data -------------------------------------------------------


def _repeat_buyers(n: int, start: datetime) -> list[list[object]]:
    rows: list[list[object]] = []
    for c in range(n):
        for k in range(1 + c % 4):
            ts = start + timedelta(days=17 * k + c % 23, hours=c % 9)
            rows.append([f"c{c}", f"o{c}-{k}", ts.isoformat(), round(8 + (c * 7 + k * 3) % 60, 2)])
    return rows


def test_a_repeat_buyer_who_paid_nothing_does_not_stop_the_build(tmp_path):
    # CDNOW's customer who paid $15.96 and then $0.00: Gamma-Gamma used to be handed a mean
    # repeat spend of 0 and `segone build` failed with "monetary_value: 1 value is not
    # positive where frequency > 0", after appending model versions
    rows = _repeat_buyers(80, datetime(2024, 1, 3, 9))
    rows += [["zz", "zz1", "2024-02-01T10:00:00", 15.96], ["zz", "zz2", "2024-05-01T10:00:00", 0]]
    f = _write_csv(tmp_path / "orders.csv", ["customer_id", "order_id", "ts", "amount"], rows)
    proj = tmp_path / "p"
    assert cli("init", str(proj)).exit_code == 0
    assert cli("ingest", "orders", str(f), "-p", str(proj)).exit_code == 0
    r = cli("build", "-p", str(proj), "--as-of", "2024-12-31")
    assert r.exit_code == 0, r.output
    assert "gamma_gamma v1" in r.output
    with Project.open(proj).warehouse(read_only=True) as wh:
        p = wh.execute(wh.table("profiles"))
        m = wh.execute(wh.table("models"))
        (zz,) = find_customers(wh, "customer_id:zz") or find_customers(wh, "zz")
    assert len(p) == 81
    # one version each (nobody bought after the churn model's cutoff: it has nothing to learn)
    assert sorted(m.name) == ["gamma_gamma", "pareto_nbd"]
    assert "warning: churn skipped" in r.output
    gg = json.loads(m.loc[m.name == "gamma_gamma", "params"].iloc[0])["params"]
    # fitted on the repeat buyers with a positive mean repeat spend; zz is priced at the mean
    assert m.loc[m.name == "gamma_gamma", "rows"].iloc[0] == sum(1 for c in range(80) if c % 4 > 0)
    mean_spend = gg["p"] * gg["gamma"] / (gg["q"] - 1)
    row = p[p.customer_id == zz].iloc[0]
    assert row.expected_order_value == pytest.approx(mean_spend)
    assert row.clv > 0 and 0 <= row.p_alive <= 1


def test_a_model_that_cannot_be_fitted_is_skipped_and_adds_no_version(tmp_path):
    # 30 buyers, 5 of them repeat buyers: too few for Gamma-Gamma (10), enough for Pareto/NBD
    rows = [[f"c{c}", f"o{c}", f"2024-0{1 + c % 9}-1{c % 10}T10:00:00", 20 + c] for c in range(30)]
    rows += [[f"c{c}", f"r{c}", "2024-11-02T10:00:00", 30] for c in range(5)]
    f = _write_csv(tmp_path / "orders.csv", ["customer_id", "order_id", "ts", "amount"], rows)
    proj = Project.init(tmp_path / "p")
    with proj.warehouse() as wh:
        ingest_file(wh, "orders", f)
    result, _ = build_project(proj, as_of=datetime(2024, 12, 31, tzinfo=UTC))
    rep = result.models
    assert "gamma_gamma" in rep.skipped and "at least 10" in rep.skipped["gamma_gamma"]
    assert "churn" in rep.skipped  # 30 buyers one horizon back: fewer than it needs
    assert "warning: gamma_gamma skipped" in result.summary()
    with proj.warehouse(read_only=True) as wh:
        m = wh.execute(wh.table("models"))
        p = wh.execute(wh.table("profiles"))
    assert sorted(m.name) == ["pareto_nbd"]
    assert len(p) == 30 and p.p_alive.notnull().all() and p.clv.isnull().all()


def test_profile_of_a_customer_record_without_any_date(tmp_path):
    # a Shopify customer export has no date: the identifiers' first and last seen are NaT,
    # which `segone profile` used to format with strftime
    f = _write_csv(
        tmp_path / "customers.csv",
        ["id", "email", "first_name", "last_name", "phone"],
        [
            [1, "ana@example.com", "Ána", "Pérez", "+1 555 0100"],
            [2, "bo@example.com", "Bo", "Li", ""],
        ],
    )
    proj = tmp_path / "p"
    assert cli("init", str(proj)).exit_code == 0
    assert cli("ingest", "customers", str(f), "-p", str(proj)).exit_code == 0
    assert cli("build", "-p", str(proj)).exit_code == 0
    r = cli("profile", "ana@example.com", "-p", str(proj))
    assert r.exit_code == 0, r.output
    assert "Pérez" in r.output and "ana@example.com" in r.output
    for command in ("status", "models"):
        assert cli(command, "-p", str(proj)).exit_code == 0


# -- random small stores ------------------------------------------------------------------------

EVENT_NAMES = ("Product Viewed", "Email Delivered", "Email Link Clicked", None)
# letters and marks from every script, digits and spaces: no control characters or surrogates
NAMES = st.text(
    st.characters(codec="utf-8", categories=("L", "M", "N", "Zs")), min_size=1, max_size=10
)


@dataclass
class Store:
    people: list[str]  # names
    orders: list[tuple[int, float, float | None]]  # person, day offset, amount (None: missing)
    events: list[tuple[int, float, str | None]]  # person, day offset, event (None: a page)
    crm: list[tuple[int, float | None]]  # person, created day offset (None: no date)
    start: datetime
    as_of_after_last: bool


@st.composite
def stores(draw: st.DrawFn) -> Store:
    n = draw(st.integers(1, 5))
    person = st.integers(0, n - 1)
    span = draw(st.sampled_from([0.0, 0.5, 3.0, 400.0]))  # 0: everything at one instant
    day = st.just(0.0) if span == 0 else st.floats(0, span)
    amount = st.one_of(st.none(), st.just(0.0), st.floats(0.01, 1e5).map(lambda a: round(a, 2)))
    year = draw(st.one_of(st.sampled_from([1900, 1970, 2024, 2199]), st.integers(1900, 2199)))
    return Store(
        people=draw(st.lists(NAMES, min_size=n, max_size=n)),
        orders=draw(st.lists(st.tuples(person, day, amount), max_size=25)),
        events=draw(st.lists(st.tuples(person, day, st.sampled_from(EVENT_NAMES)), max_size=15)),
        crm=draw(st.lists(st.tuples(person, st.one_of(st.none(), day)), max_size=5)),
        start=datetime(year, draw(st.integers(1, 12)), draw(st.integers(1, 28)), tzinfo=UTC),
        as_of_after_last=draw(st.booleans()),
    )


def _files(s: Store, folder: Path) -> dict[str, Path]:
    def at(offset: float) -> str:
        return (s.start + timedelta(days=offset)).isoformat()

    def email(i: int) -> str:
        return f"p{i}@shop.example"

    files = {}
    if s.orders:
        files["orders"] = _write_csv(
            folder / "orders.csv",
            ["order_id", "user_id", "email", "ts", "amount"],
            [
                [f"o{k}", f"u{i}", email(i), at(d), "" if a is None else a]
                for k, (i, d, a) in enumerate(s.orders)
            ],
        )
    if s.events:
        msgs = [
            {
                "messageId": f"m{k}",
                "type": "page" if e is None else "track",
                **({} if e is None else {"event": e}),
                "userId": f"u{i}",
                "traits": {"email": email(i), "name": s.people[i]},
                "timestamp": at(d),
            }
            for k, (i, d, e) in enumerate(s.events)
        ]
        path = folder / "events.ndjson"
        path.write_text("\n".join(json.dumps(m, ensure_ascii=False) for m in msgs) + "\n")
        files["events"] = path
    if s.crm:
        files["customers"] = _write_csv(
            folder / "customers.csv",
            ["id", "user_id", "email", "full_name", "created_at"],
            [
                [f"crm{k}", f"u{i}", email(i), s.people[i], "" if d is None else at(d)]
                for k, (i, d) in enumerate(s.crm)
            ],
        )
    return files


def _seen(s: Store, as_of: datetime) -> set[int]:
    """The people with a record dated up to ``as_of`` (or an undated CRM record)."""

    def before(d: float) -> bool:
        return s.start + timedelta(days=d) <= as_of

    return (
        {i for i, d, _ in s.orders if before(d)}
        | {i for i, d, _ in s.events if before(d)}
        | {i for i, d in s.crm if d is None or before(d)}
    )


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores())
def test_any_small_store_builds_and_everyone_gets_a_profile(s: Store) -> None:
    with tempfile.TemporaryDirectory(prefix="segone-robust-") as tmp:
        proj = Project.init(Path(tmp) / "p")
        with proj.warehouse() as wh:
            for kind, path in _files(s, Path(tmp)).items():
                r = ingest_file(wh, kind, path, identity=proj.settings.identity)
                assert r.rejected == 0, (kind, r)
        days = [d for _, d, _ in s.orders] + [d for _, d, _ in s.events]
        days += [d for _, d in s.crm if d is not None]
        as_of = s.start + timedelta(days=max(days, default=0.0) + 1) if s.as_of_after_last else None
        result, _ = build_project(proj, as_of=as_of)
        assert result.profiles >= 0
        when = result.as_of
        with proj.warehouse(read_only=True) as wh:
            ids = set(wh.execute(wh.table("profiles").customer_id))
            for i in _seen(s, when):
                mine = find_customers(wh, f"user_id:u{i}")
                assert mine and set(mine) <= ids, (i, mine)


def test_a_customer_with_100k_events_builds_and_reads(tmp_path):
    # a bot, a kiosk or a shop's own test account: one person with 100,000 events beside a few
    # ordinary ones; the build, the profile and the segments must not trip over them
    start = datetime(2024, 3, 1, tzinfo=UTC)
    kinds = ("Product Viewed", "Product Added", "Email Link Clicked")
    lines = []
    for k in range(100_000):
        ts = (start + timedelta(seconds=37 * k)).isoformat()
        if k % 4 == 3:
            msg = {"type": "page", "name": "Pricing", "properties": {"path": f"/p/{k % 97}"}}
        else:
            msg = {
                "type": "track",
                "event": kinds[k % 3],
                "properties": {"product_id": f"P{k % 500}", "category": f"c{k % 7}"},
            }
        msg |= {"messageId": f"m{k}", "userId": "heavy", "timestamp": ts}
        lines.append(json.dumps(msg))
    for c in range(5):
        lines.append(
            json.dumps(
                {
                    "type": "identify",
                    "messageId": f"i{c}",
                    "userId": f"u{c}",
                    "traits": {"email": f"u{c}@shop.example"},
                    "timestamp": (start + timedelta(days=c)).isoformat(),
                }
            )
        )
    events = tmp_path / "events.ndjson"
    events.write_text("\n".join(lines) + "\n")
    orders = _write_csv(
        tmp_path / "orders.csv",
        ["order_id", "user_id", "ts", "amount"],
        [["h1", "heavy", "2024-03-02T10:00:00", 25]]
        + [[f"o{c}", f"u{c}", f"2024-03-0{2 + c}T10:00:00", 10 + c] for c in range(5)],
    )
    proj = tmp_path / "p"
    assert cli("init", str(proj)).exit_code == 0
    r = cli("ingest", "events", str(events), "-p", str(proj))
    assert r.exit_code == 0 and "loaded 100005 events" in r.output, r.output
    assert cli("ingest", "orders", str(orders), "-p", str(proj)).exit_code == 0
    r = cli("build", "-p", str(proj), "--as-of", "2024-06-01")
    assert r.exit_code == 0, r.output
    with Project.open(proj).warehouse(read_only=True) as wh:
        (heavy,) = find_customers(wh, "user_id:heavy")
        p = wh.execute(wh.table("profiles"))
    row = p[p.customer_id == heavy].iloc[0]
    assert row.events == 100_000 and row.page_views == 25_000 and row.orders == 1
    assert len(p) == 6
    r = cli("profile", "user_id:heavy", "-p", str(proj))
    assert r.exit_code == 0 and heavy in r.output, r.output
