"""``segone config show``: every setting in effect and where it came from (the ``--set`` flag,
the ``SEGONE_*`` variable, segone.toml or the default), secrets masked."""

from __future__ import annotations

from pathlib import Path

from segone.cli._app import group
from segone.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    escape,
    open_project,
    set_flags,
    table,
    user_errors,
)

config_app = group("Settings: what is in effect and where each value comes from.")


@config_app.command("show")
def show(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Print every setting's effective value and its source, highest first: a --set flag, a
    SEGONE_* environment variable, segone.toml, the default. Secrets are masked."""
    from segone.config.model import effective

    root = open_project(project).root  # a clear error when there is no project or a bad key
    with user_errors():
        rows = effective(root, set_flags())
    if as_json:
        emit_json(rows)
        return
    t = table(title=f"settings of {root}")
    t.add_column("setting", no_wrap=True)
    t.add_column("value", overflow="fold")
    t.add_column("from", overflow="fold")
    for r in rows:
        v = r["value"]
        shown = ", ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
        if isinstance(v, dict):
            shown = ", ".join(sorted(v)) or "—"
        src = r["source"] if not r["where"] else f"{r['source']}: {r['where']}"
        t.add_row(r["key"], escape(shown), escape(src))
    console.print(t)
