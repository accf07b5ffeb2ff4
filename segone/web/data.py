"""What each dashboard page shows, read from the warehouse (Ibis expressions, so the same code
serves any engine) and from the online store. Functions return plain Python data; templates
only lay it out, and the charts' options are built here so a test can reach them."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import pandas as pd

from segone.store.base import Warehouse

STAGES = ("prospect", "new", "active", "at_risk", "churned", "reactivated")
LIFECYCLE = "lifecycle:"


def _plain(v: Any) -> Any:
    """A value as JSON can hold it (numpy scalars, NaN, timestamps)."""
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        with contextlib.suppress(ValueError, AttributeError):
            v = v.item()
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.to_pydatetime()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def has(wh: Warehouse, *names: str) -> bool:
    """Every table exists and holds rows."""
    existing = set(wh.tables())
    return all(n in existing and wh.count(n) > 0 for n in names)


def chart(option: dict[str, Any]) -> str:
    """An ECharts option as the JSON the page's script reads from ``data-chart``."""
    return json.dumps(option, default=str, separators=(",", ":"))


# -- overview -------------------------------------------------------------------------------
def overview(wh: Warehouse) -> dict[str, Any]:
    p = wh.table("profiles")
    stats = wh.execute(
        p.aggregate(
            customers=p.count(),
            buyers=(p.orders > 0).sum(),
            revenue=p.revenue.sum(),
            as_of=p.as_of.max(),
        )
    ).iloc[0]
    stages = wh.execute(p.group_by("lifecycle_stage").aggregate(n=p.count()))
    by_stage = {str(k): int(v) for k, v in zip(stages.lifecycle_stage, stages.n, strict=True)}
    out: dict[str, Any] = {
        "customers": int(stats.customers),
        "buyers": int(stats.buyers or 0),
        "revenue": float(stats.revenue or 0.0),
        "as_of": _plain(stats.as_of),
        "stages": [(s, by_stage.get(s, 0)) for s in STAGES],
    }
    ev = wh.table("events")
    per_day = wh.execute(
        ev.group_by(day=ev.timestamp.date())
        .aggregate(n=ev.count())
        .order_by(ibis.desc("day"))
        .limit(180)
    ).sort_values("day")
    o = wh.table("orders")
    orders_day = wh.execute(
        o.group_by(day=o.ts.date()).aggregate(n=o.count()).order_by(ibis.desc("day")).limit(180)
    )
    days = [str(d)[:10] for d in per_day.day]
    od = {str(d)[:10]: int(n) for d, n in zip(orders_day.day, orders_day.n, strict=True)}
    out["events_chart"] = (
        chart(
            {
                "tooltip": {"trigger": "axis"},
                "legend": {"data": ["events", "orders"], "top": 0},
                "grid": {"left": 50, "right": 50, "top": 40, "bottom": 30},
                "xAxis": {"type": "category", "data": days},
                "yAxis": [
                    {"type": "value", "name": "events"},
                    {"type": "value", "name": "orders", "splitLine": {"show": False}},
                ],
                "series": [
                    {
                        "name": "events",
                        "type": "line",
                        "showSymbol": False,
                        "data": [int(n) for n in per_day.n],
                    },
                    {
                        "name": "orders",
                        "type": "bar",
                        "yAxisIndex": 1,
                        "data": [od.get(d, 0) for d in days],
                    },
                ],
            }
        )
        if days
        else None
    )
    out["build"] = last_build(wh)
    out["quarantine"] = quarantine(wh)
    out["models"] = model_health(wh)
    return out


def last_build(wh: Warehouse) -> dict[str, Any] | None:
    """When the last build ran and about how long it took. Builds do not record their own
    duration, so it is read off what they stamp: identity resolution writes
    ``identity_history`` (when anyone was new, merged or split) and each model fit writes
    ``models.fitted_at``. ``span`` says which interval ``seconds`` measures."""
    tables = set(wh.tables())
    if "profiles" not in tables:
        return None
    as_of = _plain(wh.execute(wh.table("profiles").as_of.max()))
    started = finished = first_fit = None
    if "models" in tables and wh.count("models"):
        m = wh.table("models")
        last = m.group_by("name").aggregate(version=m.version.max())
        latest = m.semi_join(last, ["name", "version"])
        row = wh.execute(latest.aggregate(a=latest.fitted_at.min(), b=latest.fitted_at.max()))
        first_fit, finished = _plain(row.a.iloc[0]), _plain(row.b.iloc[0])
    if "identity_history" in tables and wh.count("identity_history"):
        started = _plain(wh.execute(wh.table("identity_history").at.max()))
    seconds, span = None, None
    if started is not None and finished is not None and finished >= started:
        seconds, span = (finished - started).total_seconds(), "identity resolution to last fit"
    elif first_fit is not None and finished is not None:
        seconds, span = (finished - first_fit).total_seconds(), "first to last model fit"
    return {
        "as_of": as_of,
        "finished": finished,
        "seconds": seconds,
        "span": span,
    }


def quarantine(wh: Warehouse, rows_per_group: int = 5) -> list[dict[str, Any]]:
    """Rejected rows grouped by file and reason code, with a few of the rows themselves."""
    if not has(wh, "quarantine"):
        return []
    q = wh.table("quarantine")
    q = q.mutate(code=q.problems.split("; ")[0])
    groups = wh.execute(
        q.group_by(["kind", "source_file", "code"])
        .aggregate(rows=q.count())
        .order_by([ibis.desc("rows"), "source_file", "code"])
        .limit(50)
    )
    w = ibis.window(group_by=[q.source_file, q.code], order_by=q.line)
    sample = wh.execute(
        q.mutate(i=ibis.row_number().over(w))
        .filter(lambda t: t.i < rows_per_group)
        .select("source_file", "code", "line", "reason")
        .order_by(["source_file", "code", "line"])
    )
    out = []
    for g in records(groups):
        mine = sample[(sample.source_file == g["source_file"]) & (sample.code == g["code"])]
        g["examples"] = records(mine[["line", "reason"]])
        g["file"] = str(g["source_file"] or "(live API)").rsplit("/", 1)[-1]
        out.append(g)
    return out


def model_health(wh: Warehouse) -> list[dict[str, Any]]:
    """The latest fit of each model: version, data window, rows and its diagnostics."""
    if not has(wh, "models"):
        return []
    m = wh.table("models")
    last = m.group_by("name").aggregate(version=m.version.max())
    df = wh.execute(m.semi_join(last, ["name", "version"]).order_by("name"))
    return _with_scores(df)


def _with_scores(df: Any) -> list[dict[str, Any]]:
    """The rows of a ``models`` frame, each with its first six numeric metrics as ``scores``."""
    out = []
    for r in records(df):
        try:
            metrics = json.loads(r.get("metrics") or "{}")
        except ValueError:
            metrics = {}
        r["scores"] = [(k, v) for k, v in _flat(metrics).items() if isinstance(v, int | float)][:6]
        out.append(r)
    return out


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    else:
        out[prefix.rstrip(".")] = d
    return out


def model_versions(wh: Warehouse) -> list[dict[str, Any]]:
    if not has(wh, "models"):
        return []
    m = wh.table("models")
    df = wh.execute(
        m.select("name", "version", "fitted_at", "window_end", "rows", "metrics")
        .order_by(["name", ibis.desc("version")])
        .limit(60)
    )
    return _with_scores(df)


# -- customers --------------------------------------------------------------------------------
_SENTINEL = "segone-web-search-sentinel"
_HIT_COLUMNS = (
    "customer_id",
    "first_name",
    "last_name",
    "lifecycle_stage",
    "orders",
    "revenue",
    "last_seen",
)
_sql_cache: dict[str, str] = {}


def _normalise_sql(country_code: str) -> str:
    """The SQL that normalises one typed identifier into its e-mail, phone and handle forms:
    compiled once from the very expressions the build uses (``segone.identity.normalize``), then
    run with the typed text as a parameter (compiling costs more than the lookup itself)."""
    key = f"normalise:{country_code}"
    if key not in _sql_cache:
        from segone.identity import normalize as norm

        lit = ibis.literal(_SENTINEL, type="string")
        parts = [
            str(ibis.to_sql(e.name("v"), dialect="duckdb"))
            for e in (norm.email(lit), norm.phone(lit, country_code), norm.handle(lit))
        ]
        sql = "SELECT " + ", ".join(f"({p})" for p in parts)
        if f"'{_SENTINEL}'" not in sql:
            raise RuntimeError("the normalisation SQL lost its parameter")
        _sql_cache[key] = sql.replace(f"'{_SENTINEL}'", "$1")
    return _sql_cache[key]


def find_ids(wh: Any, q: str, country_code: str, nodes_index: Any = None) -> list[str]:
    """``segone.profiles.lookup.find_customers`` on the dashboard's DuckDB copy, with its SQL
    compiled once (the same candidate identifiers, the same answers; a test holds them equal)."""
    from segone.profiles.lookup import TYPES

    con = wh.backend.con
    if q.startswith("cus_"):
        hit = con.execute("SELECT 1 FROM customer_map WHERE customer_id = $1 LIMIT 1", [q])
        return [q] if hit.fetchone() else []
    kind, _, value = q.partition(":")
    typed = value if kind in TYPES else q
    typed = typed.strip()
    row = con.execute(_normalise_sql(country_code), [typed]).fetchone()
    nodes = [f"{t}:{typed}" for t in ("user_id", "source_id", "loyalty_id", "anonymous_id")]
    for t, v in zip(("email", "phone", "handle"), row or (), strict=False):
        if isinstance(v, str):
            nodes.append(f"{t}:{v}")
    if kind in TYPES:
        nodes = [n for n in nodes if n.startswith(kind + ":")]
    if not nodes:
        return []
    if nodes_index is not None:  # the copy's sorted map (``fast.NodeIndex``)
        return list(nodes_index.customers_of(nodes))
    marks = ", ".join(f"${i + 1}" for i in range(len(nodes)))
    got = con.execute(
        f"SELECT DISTINCT customer_id FROM customer_map WHERE node IN ({marks})", nodes
    ).fetchall()
    return sorted(str(r[0]) for r in got)


def search(
    wh: Warehouse,
    q: str,
    country_code: str,
    limit: int = 25,
    names: Any = None,
    nodes: Any = None,
) -> list[dict[str, Any]]:
    """Customers matching ``q``: any identifier in any spelling (e-mail, phone, handle, user or
    CRM id, customer id, ``type:value``), else a name (first, last or both, case-insensitive,
    from their start). Answered with parameterised SQL on the DuckDB copy: a search is typed
    letter by letter and must come back within a keystroke."""
    q = q.strip()
    if not q:
        return []
    con = wh.backend.con
    cols = ", ".join(f'"{c}"' for c in _HIT_COLUMNS)
    order = f"ORDER BY revenue DESC NULLS LAST, customer_id LIMIT {int(limit)}"
    ids = find_ids(wh, q, country_code, nodes)
    if not ids and names is not None:  # a name, through the copy's index (``fast.NameIndex``)
        ids = names.find(q, limit)
        if not ids:
            return []
    if ids:
        marks = ", ".join(f"${i + 1}" for i in range(len(ids[:limit])))
        cur = con.execute(
            f"SELECT {cols} FROM profiles WHERE customer_id IN ({marks}) {order}", ids[:limit]
        )
    else:
        cur = con.execute(
            f"SELECT {cols} FROM profiles WHERE "
            "starts_with(lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '')), $1) "
            "OR starts_with(lower(last_name), $1) OR starts_with(customer_id, $2) "
            f"{order}",
            [q.lower(), q],
        )
    names = [d[0] for d in cur.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def customer(
    wh: Warehouse, customer_id: str, sql_cache: MutableMapping[Any, Any] | None = None
) -> dict[str, Any] | None:
    """The customer 360: profile, identities and why they were merged, timeline, memberships
    over time, moves, taste, predictions, consent and channel. With ``sql_cache`` (one per
    copy of the warehouse) the queries are compiled once and run as parameterised SQL."""
    from segone.profiles.lookup import profile_of
    from segone.web.fast import prepared

    def on(key: str) -> Any:
        return prepared(wh, sql_cache, key, customer_id)

    got = profile_of(on("profile_of"), customer_id, timeline=40)
    prof = got["profile"]
    if not prof:
        return None
    prof = {k: _plain(v) for k, v in prof.items()}
    out: dict[str, Any] = {"profile": prof}
    out["identifiers"] = records(got["identifiers"])
    out["timeline"] = records(got["timeline"])
    out["journey"] = records(got["journey"])
    out["transitions"] = records(got["transitions"])
    out["recommendations"] = records(got["recommendations"])
    out["merges"] = _merges(on("merges"), customer_id)
    out["history"] = _identity_history(on("history"), customer_id)
    out["taste"] = _taste(on("taste"), customer_id)
    out["journey_chart"] = _journey_chart(out["journey"], prof.get("as_of"))
    return out


def _merges(wh: Warehouse, customer_id: str) -> list[dict[str, Any]]:
    """The probabilistic matches that joined this person's CRM records, with the weight each
    compared field gave (the explanation of the merge)."""
    tables = set(wh.tables())
    if "identity_matches" not in tables:
        return []
    rc = wh.table("record_customers")
    mine = rc.filter((rc.customer_id == customer_id) & (rc.record_table == "customers"))
    im = wh.table("identity_matches")
    df = wh.execute(
        im.filter(im.unique_id_l.isin(mine.record_key) | im.unique_id_r.isin(mine.record_key))
        .order_by(ibis.desc("match_weight"))
        .limit(20)
    )
    out = []
    for r in records(df):
        try:
            ev = json.loads(r.get("evidence") or "{}")
        except ValueError:
            ev = {}
        r["fields"] = sorted(
            ((k, v) for k, v in _flat(ev).items() if isinstance(v, int | float)),
            key=lambda kv: -abs(kv[1]),
        )
        out.append(r)
    return out


def _identity_history(wh: Warehouse, customer_id: str) -> list[dict[str, Any]]:
    if "identity_history" not in wh.tables():
        return []
    h = wh.table("identity_history")
    return records(
        wh.execute(
            h.filter((h.customer_id == customer_id) | (h.other_id == customer_id))
            .order_by(ibis.desc("at"))
            .limit(20)
        )
    )


def _taste(wh: Warehouse, customer_id: str) -> list[dict[str, Any]]:
    if "category_affinity" not in wh.tables():
        return []
    a = wh.table("category_affinity")
    return records(
        wh.execute(
            a.filter(a.customer_id == customer_id)
            .select("category", "affinity", "share")
            .order_by(ibis.desc("share"))
            .limit(8)
        )
    )


def _journey_chart(journey: list[dict[str, Any]], as_of: Any) -> str | None:
    """Segment memberships over time as horizontal bars (a Gantt of segments)."""
    if not journey:
        return None
    end = as_of or datetime.now(UTC)
    names = sorted({j["segment"] for j in journey})
    data = []
    for j in journey:
        start = j["entered_at"]
        stop = j["exited_at"] or end
        data.append(
            {
                "name": j["segment"],
                "value": [names.index(j["segment"]), str(start)[:10], str(stop)[:10]],
            }
        )
    # drawn as thick lines from entry to exit, one per membership
    series = [
        {
            "type": "line",
            "name": d["name"],
            "data": [[d["value"][1], d["value"][0]], [d["value"][2], d["value"][0]]],
            "lineStyle": {"width": 10},
            "symbol": "none",
        }
        for d in data
    ]
    return chart(
        {
            "tooltip": {"trigger": "item"},
            "grid": {"left": 170, "right": 20, "top": 10, "bottom": 30},
            "xAxis": {"type": "time"},
            "yAxis": {"type": "category", "data": names},
            "series": series,
        }
    )


# -- segments ---------------------------------------------------------------------------------
def as_of(wh: Warehouse) -> datetime:
    """The as-of time of the last build."""
    return wh.execute(wh.table("profiles").as_of.max()).to_pydatetime()


def segments(wh: Warehouse, project: Any) -> dict[str, Any]:
    """Every segment of the project's catalogue: size and share now, definition, and the sizes
    over time of the eight largest."""
    from segone.segments import project_catalogue, summary
    from segone.segments.rules import describe

    cat = project_catalogue(project, wh)
    when = as_of(wh)
    rows = records(summary(wh, cat, when))
    for r in rows:
        seg = cat[r["segment"]]
        r["rule"] = describe(seg.rule)
        r["source"] = seg.source
    top = [r["segment"] for r in sorted(rows, key=lambda r: -r["members"])[:8]]
    return {"rows": rows, "history": segment_history(wh, top), "as_of": when}


def segment(wh: Warehouse, project: Any, name: str) -> dict[str, Any] | None:
    """One segment: definition, size, a sample of members and its size over time."""
    from segone.segments import memberships, project_catalogue
    from segone.segments.rules import Catalogue, describe

    cat = project_catalogue(project, wh)
    if name not in cat.segments:
        return None
    seg = cat[name]
    when = as_of(wh)
    # only this segment is evaluated (its rule may still refer to others of the catalogue)
    m = (
        memberships(wh, Catalogue({name: seg}), when)
        if not _refers(seg.rule)
        else memberships(wh, cat, when)
    )
    m = wh.materialize("_segone_web_members", m.filter(m.segment == name).select("customer_id"))
    n = int(wh.execute(m.count()))
    p = wh.table("profiles")
    sample = records(
        wh.execute(
            p.semi_join(m, "customer_id")
            .select(
                "customer_id", "first_name", "last_name", "lifecycle_stage", "orders", "revenue"
            )
            .order_by("customer_id")
            .limit(25)
        )
    )
    wh.drop_staging("_segone_web_members")
    wh.drop_staging("_segone_seg_base")
    return {
        "seg": seg,
        "rule": describe(seg.rule),
        "members": n,
        "total": wh.count("profiles"),
        "sample": sample,
        "history": segment_history(wh, [name]),
        "as_of": when,
    }


def _refers(rule: Any) -> bool:
    """Whether a rule refers to another segment (then the whole catalogue is needed)."""
    from segone.segments.rules import AllOf, AnyOf, InSegment, Not

    if isinstance(rule, InSegment):
        return True
    if isinstance(rule, AllOf | AnyOf):
        return any(_refers(i) for i in rule.items)
    if isinstance(rule, Not):
        return _refers(rule.item)
    return False


def segment_history(wh: Warehouse, names: list[str]) -> str | None:
    """Members per segment at each snapshot, from ``segment_memberships`` (entries and exits),
    in one query."""
    if not has(wh, "segment_snapshots") or not names:
        return None
    snaps = wh.table("segment_snapshots").select("at").distinct()
    m = wh.table("segment_memberships")
    m = m.filter(m.segment.isin(names))
    j = snaps.join(
        m, (m.entered_at <= snaps.at) & (m.exited_at.isnull() | (m.exited_at > snaps.at))
    )
    counts = wh.execute(j.group_by([j.at, j.segment]).aggregate(n=j.count()))
    ats = sorted({str(a)[:10] for a in wh.execute(snaps)["at"]})
    got = {
        (str(a)[:10], str(s)): int(n)
        for a, s, n in zip(counts["at"], counts.segment, counts.n, strict=True)
    }
    return chart(
        {
            "tooltip": {"trigger": "axis"},
            "legend": {"type": "scroll", "top": 0},
            "grid": {"left": 50, "right": 20, "top": 40, "bottom": 30},
            "xAxis": {"type": "category", "data": ats},
            "yAxis": {"type": "value"},
            "series": [
                {"name": n, "type": "line", "data": [got.get((a, n), 0) for a in ats]}
                for n in names
            ],
        }
    )


# -- lifecycle ---------------------------------------------------------------------------------
def snapshot_dates(wh: Warehouse) -> list[str]:
    if not has(wh, "segment_snapshots"):
        return []
    df = wh.execute(wh.table("segment_snapshots").select("at").order_by("at"))
    return [str(a)[:10] for a in df["at"]]


def lifecycle(wh: Warehouse, start: str | None, end: str | None) -> dict[str, Any]:
    """Moves between lifecycle stages seen at snapshots in (start, end]: a Sankey and the
    transition matrix."""
    t = wh.table("transitions")
    t = t.filter(t.kind == "lifecycle")
    if start:
        t = t.filter(t.at.date() > ibis.literal(start).cast("date"))
    if end:
        t = t.filter(t.at.date() <= ibis.literal(end).cast("date"))
    t = t.mutate(
        src=t.from_segment.replace(LIFECYCLE, "").fill_null("(first seen)"),
        dst=t.to_segment.replace(LIFECYCLE, ""),
    )
    df = wh.execute(t.group_by(["src", "dst"]).aggregate(moves=t.count()))
    df = df[df.dst.notnull()]
    got = {(str(a), str(b)): int(n) for a, b, n in zip(df.src, df.dst, df.moves, strict=True)}
    froms = ["(first seen)", *STAGES]
    matrix = [
        (f, [got.get((f, s), 0) for s in STAGES])
        for f in froms
        if any((f, s) in got for s in STAGES)
    ]
    # a Sankey must be acyclic: sources on the left ("from ..."), targets on the right
    links: list[dict[str, Any]] = [
        {"source": f"from {a}", "target": f"to {b}", "value": n}
        for (a, b), n in sorted(got.items())
        if n > 0
    ]
    nodes = sorted({str(x["source"]) for x in links} | {str(x["target"]) for x in links})
    sankey = (
        chart(
            {
                "tooltip": {"trigger": "item"},
                "series": [
                    {
                        "type": "sankey",
                        "left": 10,
                        "right": 110,
                        "data": [{"name": n} for n in nodes],
                        "links": links,
                        "emphasis": {"focus": "adjacency"},
                        "lineStyle": {"color": "gradient", "curveness": 0.5},
                    }
                ],
            }
        )
        if links
        else None
    )
    return {"matrix": matrix, "stages": STAGES, "sankey": sankey, "moves": sum(got.values())}


# -- predictions -------------------------------------------------------------------------------
def predictions(wh: Warehouse) -> dict[str, Any]:
    """CLV distribution, P(alive) by recency and frequency, churn calibration when outcomes
    are known, and model versions."""
    p = wh.table("profiles")
    buyers = p.filter(p.clv.notnull())
    clv = wh.execute(buyers.clv)
    out: dict[str, Any] = {"buyers": len(clv)}
    if len(clv):
        top = float(clv.quantile(0.99)) or 1.0
        bins = 30
        width = top / bins
        counts = [0] * bins
        for v in clv:
            counts[min(int(max(v, 0.0) / width), bins - 1)] += 1
        out["clv_chart"] = chart(
            {
                "tooltip": {"trigger": "axis"},
                "grid": {"left": 50, "right": 40, "top": 30, "bottom": 40},
                "xAxis": {
                    "type": "category",
                    "name": "CLV",
                    "data": [f"{i * width:,.0f}" for i in range(bins)],
                },
                "yAxis": {"type": "value", "name": "customers"},
                "series": [{"type": "bar", "data": counts}],
            }
        )
        out["clv_median"] = float(clv.median())
        out["clv_total"] = float(clv.sum())
    # P(alive) by recency and frequency: mean over buyers in each cell
    rf = p.filter(p.p_alive.notnull() & (p.orders > 0))
    rec_bucket = (rf.recency_days.fill_null(0) / 60).floor().clip(upper=11).cast("int64")
    freq_bucket = rf.orders.clip(upper=10).cast("int64")
    grid = wh.execute(
        rf.group_by(r=rec_bucket, f=freq_bucket).aggregate(p=rf.p_alive.mean(), n=rf.count())
    )
    if len(grid):
        rs = list(range(int(grid.r.max()) + 1))
        fs = list(range(1, int(grid.f.max()) + 1))
        data = [
            [int(r.f) - 1, int(r.r), round(float(r.p), 3)]
            for r in grid.itertuples()
            if int(r.f) >= 1
        ]
        out["alive_chart"] = chart(
            {
                "tooltip": {"position": "top"},
                "grid": {"left": 90, "right": 50, "top": 30, "bottom": 80},
                "xAxis": {
                    "type": "category",
                    "name": "orders",
                    "data": [f"{f}{'+' if f == 10 else ''}" for f in fs],
                },
                "yAxis": {
                    "type": "category",
                    "name": "days since last order",
                    "data": [f"{r * 60}-{r * 60 + 59}" for r in rs],
                },
                "visualMap": {
                    "min": 0,
                    "max": 1,
                    "calculable": True,
                    "orient": "horizontal",
                    "left": "center",
                    "bottom": 0,
                    "inRange": {"color": ["#dc2626", "#fde68a", "#16a34a"]},
                },
                "series": [{"type": "heatmap", "data": data, "label": {"show": False}}],
            }
        )
    # churn calibration: predicted churn probability in deciles against the stage seen since
    out["calibration_chart"] = _calibration(wh)
    out["models"] = model_versions(wh)
    return out


def _calibration(wh: Warehouse) -> str | None:
    """Mean predicted churn per decile against the share actually churned at the latest
    lifecycle snapshot after the prediction (when snapshots of later dates exist)."""
    p = wh.table("profiles")
    s = p.filter(p.churn_probability.notnull())
    dec = (s.churn_probability * 10).floor().clip(upper=9).cast("int64")
    df = wh.execute(
        s.group_by(d=dec).aggregate(
            predicted=s.churn_probability.mean(),
            churned=(s.lifecycle_stage == "churned").cast("float64").mean(),
            n=s.count(),
        )
    ).sort_values("d")
    if df.empty:
        return None
    return chart(
        {
            "tooltip": {"trigger": "axis"},
            "legend": {"data": ["predicted", "churned stage now"], "top": 0},
            "grid": {"left": 50, "right": 20, "top": 40, "bottom": 40},
            "xAxis": {"type": "category", "data": [f"{d / 10:.1f}" for d in df.d]},
            "yAxis": {"type": "value", "max": 1},
            "series": [
                {
                    "name": "predicted",
                    "type": "line",
                    "data": [round(float(x), 3) for x in df.predicted],
                },
                {
                    "name": "churned stage now",
                    "type": "bar",
                    "data": [round(float(x), 3) for x in df.churned],
                },
            ],
        }
    )


# -- identity -----------------------------------------------------------------------------------
def identity(wh: Warehouse) -> dict[str, Any]:
    cm = wh.table("customer_map")
    sizes = cm.group_by("customer_id").aggregate(ids=cm.count())
    stats = wh.execute(
        sizes.aggregate(
            customers=sizes.count(), identifiers=sizes.ids.sum(), largest=sizes.ids.max()
        )
    ).iloc[0]
    by_type = records(
        wh.execute(cm.group_by("id_type").aggregate(n=cm.count()).order_by(ibis.desc("n")))
    )
    dist = wh.execute(
        sizes.group_by(k=sizes.ids.clip(upper=20)).aggregate(n=sizes.count()).order_by("k")
    )
    largest = records(wh.execute(sizes.order_by([ibis.desc("ids"), "customer_id"]).limit(10)))
    out: dict[str, Any] = {
        "customers": int(stats.customers),
        "identifiers": int(stats.identifiers or 0),
        "largest_size": int(stats.largest or 0),
        "by_type": by_type,
        "largest": largest,
        "size_chart": chart(
            {
                "tooltip": {"trigger": "axis"},
                "grid": {"left": 60, "right": 20, "top": 20, "bottom": 40},
                "xAxis": {
                    "type": "category",
                    "name": "identifiers",
                    "data": [f"{int(k)}{'+' if k == 20 else ''}" for k in dist.k],
                },
                "yAxis": {"type": "log", "name": "customers"},
                "series": [{"type": "bar", "data": [int(n) for n in dist.n]}],
            }
        ),
    }
    tables = set(wh.tables())
    if "identity_history" in tables:
        h = wh.table("identity_history")
        out["events"] = records(
            wh.execute(h.group_by("event").aggregate(n=h.count()).order_by(ibis.desc("n")))
        )
        out["recent"] = records(
            wh.execute(
                h.filter(h.event != "new").order_by([ibis.desc("at"), "customer_id"]).limit(15)
            )
        )
    if "identity_matches" in tables:
        im = wh.table("identity_matches")
        out["matches"] = int(wh.execute(im.count()))
        out["borderline"] = borderline(wh)
    if "identity_refusals" in tables:
        rf = wh.table("identity_refusals")
        out["refusals"] = records(
            wh.execute(rf.group_by("rule").aggregate(n=rf.count()).order_by(ibis.desc("n")))
        )
    return out


def borderline(wh: Warehouse, limit: int = 12) -> list[dict[str, Any]]:
    """The accepted probabilistic pairs nearest the match threshold (the least evidence: the
    lowest match weight first), with the match weight of each field and any decision already
    made about them by hand (``a``, ``b``: the nodes the graph links, ``source_id:...``).
    Pairs under the threshold are not kept by the matcher, so they cannot be listed."""
    im = wh.table("identity_matches")
    near = im.order_by(["match_weight", "unique_id_l", "unique_id_r"])
    rows = records(wh.execute(near.limit(limit)))
    decided: dict[tuple[str, str], str] = {}
    if "identity_decisions" in wh.tables() and rows:
        from segone.identity.decisions import current

        d = current(wh)
        for r in records(wh.execute(d.filter(d.kind != "split").select("kind", "a", "b"))):
            decided[(str(r["a"]), str(r["b"]))] = str(r["kind"])
    for r in rows:
        a = "source_id:" + str(r["unique_id_l"]).split(":", 1)[-1]
        b = "source_id:" + str(r["unique_id_r"]).split(":", 1)[-1]
        r["a"], r["b"] = a, b
        r["decision"] = decided.get((min(a, b), max(a, b)))
        try:
            ev = json.loads(r.get("evidence") or "{}")
        except ValueError:
            ev = {}
        r["fields"] = sorted(ev.items(), key=lambda kv: -abs(float(kv[1])))
    return rows


# -- live ----------------------------------------------------------------------------------------
def live(store: Any, now: datetime | None = None) -> dict[str, Any]:
    """Events per second (last minute) and per minute (last hour), decisions, and webhooks:
    pending, failing and given up, from the online store."""
    now = now or datetime.now(UTC)
    with store.read() as tx:
        last_minute = tx.events.received_since(now - timedelta(minutes=1))
        counts = tx.events.per_minute(now - timedelta(hours=1))
        decisions = tx.decisions.count_since(now - timedelta(hours=1))
        pending, retrying = tx.outbox.backlog()
        failing = tx.outbox.failing(20)
        dead = tx.outbox.dead_letters(20)
        totals = {t: tx.count(t) for t in ("events", "decisions", "dead_letters", "quarantine")}
    minutes = [(now - timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M") for i in range(59, -1, -1)]
    return {
        "now": now,
        "events_per_second": last_minute / 60.0,
        "decisions_hour": decisions,
        "outbox": pending,
        "retrying": retrying,
        "failing": [f.as_dict() for f in failing],
        "dead": [d.as_dict() for d in dead],
        "totals": totals,
        "rate_chart": chart(
            {
                "animation": False,
                "tooltip": {"trigger": "axis"},
                "grid": {"left": 50, "right": 20, "top": 20, "bottom": 30},
                "xAxis": {"type": "category", "data": [m[11:] for m in minutes]},
                "yAxis": {"type": "value", "name": "events/min"},
                "series": [
                    {"type": "bar", "data": [counts.get(m, 0) for m in minutes]},
                ],
            }
        ),
    }
