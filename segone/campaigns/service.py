"""The campaigns of one project: what the CLI and the API call (they only parse and render).

Reads the project's ``campaigns/*.yaml``, the warehouse, and — when the project has one — the
online store's suppression list and erased identifiers, so an audience built in batch honours a
``PUT /v1/suppressions/...`` or a ``DELETE /v1/profiles/...`` made since the last build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segone.campaigns.campaign import (
    Campaign,
    CampaignSettings,
    campaign_settings,
    get_campaign,
    load_campaigns,
)
from segone.campaigns.holdouts import expected_shares
from segone.campaigns.measure import CampaignReport, MeasureError, measure
from segone.campaigns.run import Plan, RunResult, default_sender, plan, run
from segone.project import Project
from segone.store.base import Warehouse


@dataclass(frozen=True)
class OnlineState:
    suppressions: Mapping[str, Any]
    erased: Sequence[str]
    salts: Sequence[str] = ()


def online_state(project: Project) -> OnlineState:
    """Suppression documents and erased hashes of the project's online store (none: empty)."""
    from segone.pipeline.publish import open_online

    store = open_online(project.settings)
    if store is None:
        return OnlineState({}, [])
    with store, store.read() as tx:
        return OnlineState(
            tx.docs.all("suppression"),
            [h for h, _ in tx.erasure.erased_hashes()],
            tx.erasure.salts(),
        )


def _catalogue(project: Project, wh: Warehouse) -> Any:
    from segone.segments import project_catalogue

    return project_catalogue(project, wh)


def campaigns(project: Project) -> dict[str, Campaign]:
    return load_campaigns(project.root)


def make_plan(
    project: Project,
    wh: Warehouse,
    name: str,
    *,
    at: datetime | None = None,
    only: str | None = None,
) -> Plan:
    c = get_campaign(project.root, name)
    state = online_state(project)
    # the segment catalogue only when the campaign names segments (it needs built profiles)
    needs = (
        c.audience.segment is not None
        or "segment" in repr(c.audience.rule)
        or any(a.kind == "segment" for a in c.arms)
    )
    return plan(
        wh,
        c,
        at=at or datetime.now(UTC),
        settings=campaign_settings(project.root),
        catalogue=_catalogue(project, wh) if needs else None,
        suppressions=state.suppressions,
        online_erased=state.erased,
        online_salts=state.salts,
        only=only,
    )


def run_campaign(project: Project, name: str, *, at: datetime | None = None) -> RunResult:
    with project.warehouse() as wh:
        p = make_plan(project, wh, name, at=at)
        return run(
            wh,
            p,
            settings=campaign_settings(project.root),
            sender=default_sender(project.root, campaign_settings(project.root)),
        )


def report(
    project: Project, name: str, *, run_id: str | None = None, read_only: bool = False
) -> CampaignReport:
    """The campaign's lift report (``read_only``: for the API, beside a running build)."""
    c = get_campaign(project.root, name)
    s: CampaignSettings = campaign_settings(project.root)
    if not read_only and any(a.kind == "triggered" for a in c.arms):
        from segone.campaigns.triggers import import_fired

        with project.warehouse() as wh:  # what the server fired since: measured with the rest
            import_fired(wh, project.root)
    with project.warehouse(read_only=read_only) as wh:
        if "campaign_assignments" not in wh.tables():
            raise MeasureError(f"campaign {name!r} has no assignments yet: run it first")
        return measure(
            wh,
            c.name,
            c.conversion,
            arms=[a.name for a in c.arms],
            expected=expected_shares(c.holdout, s.holdouts.global_control),
            window_days=c.window_days,
            pre_days=c.pre_days,
            run_id=run_id,
            pooled=pooled_arms(c),
        )


def pooled_arms(c: Campaign) -> list[str]:
    """Arms drawn at random from the whole audience share their held-out people as control."""
    return [a.name for a in c.arms if a.kind != "triggered"]


def summary(project: Project, *, read_only: bool = False) -> list[dict[str, Any]]:
    """One line per campaign: name, channel, arms, audience, runs so far."""
    found = campaigns(project)
    runs: dict[str, int] = {}
    if found:
        with project.warehouse(read_only=read_only) as wh:
            if "campaign_runs" not in wh.tables():  # never run: nothing to count
                return _rows(found, runs)
            t = wh.table("campaign_runs")
            df = wh.execute(t.group_by("campaign").aggregate(n=t.count()))
            runs = {str(r.campaign): int(r.n) for r in df.itertuples(index=False)}
    return _rows(found, runs)


def _rows(found: Mapping[str, Campaign], runs: Mapping[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "description": c.description,
            "channel": c.channel,
            "channels": list(c.channels),
            "audience": c.audience.describe(),
            "arms": [{"name": a.name, "kind": a.kind, "weight": a.weight} for a in c.arms],
            "holdout": c.holdout,
            "runs": runs.get(c.name, 0),
        }
        for c in found.values()
    ]


def export(
    project: Project,
    name: str,
    path: Path,
    *,
    columns: Sequence[str] = (),
    hashed: bool = False,
    at: datetime | None = None,
) -> tuple[Plan, int]:
    """Write the people the campaign would contact (held-out people left out) to a file with
    only ``columns`` (among the campaign's ``fields``)."""
    import pyarrow as pa

    from segone.campaigns.audiences import export_audience

    with project.warehouse() as wh:
        p = make_plan(project, wh, name, at=at)
        keep = {x.customer_id for x in p.treated()}
        out = {x.customer_id for x in p.people} - keep
        ex = wh.stage(
            "_segone_export_out",
            pa.table({"customer_id": pa.array(sorted(out), pa.string())}),
            append=False,
        )
        n = export_audience(wh, p.audience, path, columns=columns, hashed=hashed, exclude=ex)
    return p, n
