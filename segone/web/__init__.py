"""The web dashboard at ``/`` of ``segone serve``: server-rendered pages over the warehouse and
the online store (FastAPI + Jinja2, HTMX for partial updates, Apache ECharts for charts).

Everything the browser loads comes from this package (``static/vendor`` holds HTMX and ECharts
as fetched from the npm registry, with their checksums in ``static/vendor/CHECKSUMS``): no CDN,
no build step, works offline. ``mount`` adds the pages to the API's app; the API stays as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"


def mount(app: FastAPI, *, project_dir: Path | None, settings: Any, engine: Any) -> None:
    """Serve the dashboard from ``app``: pages at ``/``, assets at ``/static``.

    ``project_dir`` holds the warehouse, the segment files and the dashboard's state (users,
    signing secret, the warehouse copy it reads); ``engine`` is the API's real-time engine, whose
    online store the live pages read.
    """
    from segone.web.pages import Dashboard, install

    root = Path(project_dir) if project_dir is not None else Path(settings.root)
    install(app, Dashboard(root, settings, engine))


def extend_api(app: FastAPI, settings: Any, engine: Any) -> None:
    """``segone.api.create_app``'s ``extend`` hook: the dashboard at ``/`` of the API's app."""
    mount(app, project_dir=None, settings=settings, engine=engine)


__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "extend_api", "mount"]
