"""The ``segone`` command line: thin over the library, clear errors, never a traceback for a
user mistake.

Commands only parse, call the library and render. Every command module imports only typer and
the standard library at its top (the library, Ibis, pandas and Rich come in inside the
commands), so that ``segone --help`` and ``segone --version`` start in well under 300 ms;
``tests/test_cli_conventions.py`` holds that line.
"""

from __future__ import annotations

import importlib
import os
import sys

from segone.cli import build as _build  # noqa: F401  (registers its commands)
from segone.cli import data as _data  # noqa: F401
from segone.cli import privacy as _privacy  # noqa: F401
from segone.cli import segments as _segments  # noqa: F401
from segone.cli import server as _server  # noqa: F401
from segone.cli._app import app
from segone.cli._common import EXIT_INTERRUPTED, err

# Command groups living in their own modules: (module, name of its typer.Typer, command name).
# Add one line per group; keep the module's top-level imports as cheap as the rest (see above).
SUBAPPS: list[tuple[str, str, str]] = [
    ("segone.cli.campaign", "campaign_app", "campaign"),
    ("segone.cli.config", "config_app", "config"),
    ("segone.cli.evaluate", "app", "evaluate"),
    ("segone.cli.identity", "identity_app", "identity"),
    ("segone.cli.keys", "keys_app", "keys"),
    ("segone.cli.ui", "ui_app", "ui"),
    ("segone.cli.users", "users_app", "users"),
]

for _module, _attr, _name in SUBAPPS:
    app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``segone`` script."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app(args=argv)
    except KeyboardInterrupt:
        err.print("interrupted; nothing of the interrupted load was committed")
        sys.exit(EXIT_INTERRUPTED)


__all__ = ["SUBAPPS", "app", "main"]


if __name__ == "__main__":
    main()
