"""``project.models``: the fits the builds recorded in the warehouse's ``models`` table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from segone.models.registry import SavedModel
    from segone.project import Project


class Models:
    """The model fits of one project (every build appends one version per fitted model)."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def latest(self, name: str) -> SavedModel | None:
        """The most recent fit of ``name`` (e.g. ``"bgnbd"``), or None when there is none."""
        from segone.models.registry import latest_model

        with self._project.warehouse(read_only=True) as wh:
            if "models" not in wh.tables():
                return None
            return latest_model(wh, name)

    def list(self) -> pd.DataFrame:
        """One row per fit: name, version, when, the window it saw and its row count."""
        with self._project.warehouse(read_only=True) as wh:
            if "models" not in wh.tables():
                return pd.DataFrame(columns=["name", "version", "fitted_at", "window_end", "rows"])
            t = wh.table("models")
            return wh.execute(
                t.select("name", "version", "fitted_at", "window_end", "rows").order_by(
                    ["name", "version"]
                )
            )
