"""What the Campaigns page shows, and the destinations a segment can be synced to: read from
``segone.campaigns``' public functions (its files, ``measure`` on the dashboard's copy of the
warehouse), never from its internals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segone.store.base import Warehouse
from segone.web.data import chart

LADDER = ("mass", "segment", "one_to_one")  # the ladder of personalisation, least first


def destinations(root: Path) -> dict[str, dict[str, Any]]:
    """The destinations configured in the project's campaign files (``send: destination:``),
    by name (``config.name``, else the kind): kind, config and the campaign's channel."""
    from segone.campaigns.campaign import load_campaigns

    out: dict[str, dict[str, Any]] = {}
    if not (Path(root) / "campaigns").is_dir():
        return out
    for c in load_campaigns(root).values():
        d = c.send.get("destination") if isinstance(c.send, Mapping) else None
        if not isinstance(d, Mapping) or "kind" not in d:
            continue
        cfg = dict(d.get("config") or {})
        name = str(cfg.get("name") or d["kind"])
        out.setdefault(
            name,
            {"kind": str(d["kind"]), "config": cfg, "channel": c.channel, "campaign": c.name},
        )
    return out


def _steps(wh: Warehouse, campaign: str) -> tuple[list[dict[str, Any]], Any]:
    """The counted audience steps of the campaign's last run, and when it ran."""
    if "campaign_runs" not in wh.tables():
        return [], None
    r = wh.table("campaign_runs")
    last = wh.execute(r.filter(r.campaign == campaign).order_by(r.at.desc()).limit(1))
    if not len(last):
        return [], None
    row = last.iloc[0]
    try:
        steps = json.loads(row.steps or "[]")
    except ValueError:
        steps = []
    return [s for s in steps if isinstance(s, dict)], row.at


def campaigns(wh: Warehouse, root: Path) -> dict[str, Any]:
    """Every campaign with its last run's funnel, its groups and, per arm, the lift with its
    95% interval; and the ladder chart (absolute lift per arm kind, with intervals)."""
    from segone.campaigns.campaign import campaign_settings, load_campaigns
    from segone.campaigns.holdouts import expected_shares
    from segone.campaigns.measure import MeasureError, measure
    from segone.campaigns.service import pooled_arms

    found = load_campaigns(root) if (Path(root) / "campaigns").is_dir() else {}
    settings = campaign_settings(root)
    has_runs = "campaign_assignments" in wh.tables()
    rows: list[dict[str, Any]] = []
    ladder: list[tuple[str, dict[str, Any]]] = []
    for c in found.values():
        steps, last_at = _steps(wh, c.name)
        kinds = {a.name: a.kind for a in c.arms}
        item: dict[str, Any] = {
            "name": c.name,
            "description": c.description,
            "channel": c.channel,
            "holdout": c.holdout,
            "arms": [{"name": a.name, "kind": a.kind} for a in c.arms],
            "steps": steps,
            "last_run": last_at,
            "report": None,
            "problem": None,
        }
        if has_runs and steps:
            try:
                rep = measure(
                    wh,
                    c.name,
                    c.conversion,
                    arms=[a.name for a in c.arms],
                    expected=expected_shares(c.holdout, settings.holdouts.global_control),
                    window_days=c.window_days,
                    pre_days=c.pre_days,
                    pooled=pooled_arms(c),
                ).to_dict()
            except MeasureError as exc:
                item["problem"] = str(exc)
            else:
                for a in rep["arms"]:
                    a["kind"] = kinds.get(a["arm"], "")
                    ladder.append((c.name, a))
                item["report"] = rep
        else:
            item["problem"] = f"not run yet: `segone campaign run {c.name}` assigns and sends"
        rows.append(item)
    return {"campaigns": rows, "ladder_chart": _ladder(ladder)}


def _ladder(arms: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Absolute lift (points) per arm, mass → segment → one-to-one, with 95% intervals drawn as
    whiskers (a candlestick whose body is the estimate)."""
    order = {k: i for i, k in enumerate(LADDER)}
    arms = sorted(arms, key=lambda x: (order.get(x[1].get("kind", ""), 9), x[0], x[1]["arm"]))
    if not arms:
        return None
    labels = [f"{c} · {a['arm']} ({a.get('kind') or '?'})" for c, a in arms]

    def pts(v: Any) -> float:
        return round(float(v or 0.0) * 100, 3)

    candles = [
        [pts(a["lift"]), pts(a["lift"]), pts(a["lift_ci"][0]), pts(a["lift_ci"][1])]
        for _, a in arms
    ]
    return chart(
        {
            "tooltip": {"trigger": "axis"},
            "grid": {"left": 60, "right": 20, "top": 30, "bottom": 90},
            "xAxis": {"type": "category", "data": labels, "axisLabel": {"rotate": 20}},
            "yAxis": {"type": "value", "name": "lift (points)"},
            "series": [
                {
                    "name": "95% interval",
                    "type": "candlestick",
                    "data": candles,
                    "barMaxWidth": 18,
                    "itemStyle": {"color": "#2563eb", "color0": "#2563eb", "borderWidth": 2},
                },
                {
                    "name": "lift",
                    "type": "scatter",
                    "data": [c[0] for c in candles],
                    "symbolSize": 10,
                },
            ],
        }
    )
