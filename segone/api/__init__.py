"""The real-time HTTP API: Segment-compatible ingestion, decisions, live profiles.

``create_app(settings, engine)`` builds the FastAPI app; ``serve(settings)`` runs it with uvicorn.
"""

from __future__ import annotations

from segone.api.app import create_app
from segone.api.errors import ApiError
from segone.api.server import background_server, serve

__all__ = ["ApiError", "background_server", "create_app", "serve"]
