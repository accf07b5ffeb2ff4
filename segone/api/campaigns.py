"""``/v1/campaigns``: the project's campaigns and what each caused (admin token).

Mount with ``app.include_router(router)``; the handlers read the project's
:class:`~segone.config.Settings` from ``request.app.state.settings`` (set it in the app
factory). The warehouse is opened read-only, so a report can be asked while a build runs
(DuckDB then answers from the last committed state) and the API never creates tables.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from segone.api.errors import ApiError
from segone.campaigns.campaign import CampaignError
from segone.campaigns.measure import MeasureError
from segone.exceptions import SegoneError

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

Authorization = Annotated[str | None, Header()]


def _project(request: Request, authorization: str | None) -> Any:
    """The project, once the request's key holds the ``admin`` scope (as every /v1 route,
    through ``segone.api.app.authorize``)."""
    from segone.api.app import authorize
    from segone.project import Project

    settings = getattr(request.app.state, "settings", None)
    if settings is None:
        raise ApiError(500, "the app has no project settings (app.state.settings)")
    authorize(request, "admin")
    return Project(settings)


@router.get("", summary="The project's campaigns")
async def list_campaigns(request: Request, authorization: Authorization = None) -> dict[str, Any]:
    """Every campaign of ``campaigns/*.yaml``: channel, audience, arms, holdout, runs so far."""
    from segone.campaigns import service

    project = _project(request, authorization)
    try:
        rows = await asyncio.to_thread(service.summary, project, read_only=True)
    except CampaignError as exc:
        raise ApiError(400, str(exc), "campaign_invalid") from None
    return {"campaigns": rows}


@router.get("/{name}/report", summary="What one campaign caused, per arm against its holdout")
async def campaign_report(
    name: str, request: Request, authorization: Authorization = None
) -> dict[str, Any]:
    """The same report as ``segone campaign report NAME --json``: per arm the response rate,
    revenue per person, absolute and relative lift with 95% intervals, incremental conversions
    and revenue (CUPED), the sample-ratio check and the warnings."""
    from segone.campaigns import service

    project = _project(request, authorization)
    try:
        rep = await asyncio.to_thread(service.report, project, name, read_only=True)
    except CampaignError as exc:
        status = 404 if "no campaign" in str(exc) else 400
        raise ApiError(status, str(exc), "campaign_not_found" if status == 404 else None) from None
    except MeasureError as exc:
        raise ApiError(404, str(exc), "campaign_not_run") from None
    except SegoneError as exc:
        raise ApiError(400, str(exc)) from None
    return rep.to_dict()
