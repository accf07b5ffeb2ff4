"""What every command module shares: the project option and the one project opener, consoles,
JSON output, user errors.

Cheap to import on purpose (only the standard library and typer): ``segone --help`` imports
every command module, so Rich, Ibis, pandas and the library come in inside the commands.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from segone.project import Project
    from segone.store.base import Warehouse

# exit codes, documented in docs/cli.md
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and the result is a failure (a file loaded nothing, "no")
EXIT_USAGE = 2  # a user mistake: bad option, no project, unknown segment, bad rule, ...
EXIT_INTERRUPTED = 130  # Ctrl-C

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        help="Project directory (default: $SEGONE_PROJECT or .).",
        envvar="SEGONE_PROJECT",
        show_default=False,
    ),
]

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the result as JSON on stdout, and nothing else (for scripts)."
    ),
]


class _LazyConsole:
    """A Rich console made on first use: importing Rich costs ~50 ms that ``--help`` and
    ``--json`` never need. Rich itself honours ``NO_COLOR`` (and ``FORCE_COLOR``)."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        """The Rich console itself (made now if not yet)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console: Any = _LazyConsole(stderr=False)
err: Any = _LazyConsole(stderr=True)


def escape(text: str) -> str:
    """``text`` with Rich markup escaped (values like ``[server]`` are printed as they are)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@contextmanager
def user_errors() -> Iterator[None]:
    """A ``SegoneError`` (a user mistake) prints ``error: …`` on stderr and exits with 2,
    never a traceback."""
    from segone.exceptions import SegoneError

    try:
        yield
    except SegoneError as exc:
        fail(str(exc))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def set_flags() -> dict[str, dict[str, Any]]:
    """This command line's ``segone --set section.key=value`` flags, as nested settings."""
    from segone.cli._app import SET_FLAGS
    from segone.config import parse_flags

    return parse_flags(SET_FLAGS.get())


def open_project(path: Path) -> Project:
    """The project at ``path`` (``--project``), its settings read from segone.toml, the
    environment and ``--set``: the one way every command opens a project.

    No project there, or a bad setting, is ``error: …`` (naming the directory and
    ``segone init``, or the key and its source) and exit 2, never a traceback. Opening reads
    settings only; the warehouse is opened by ``project_warehouse`` (or the library) when the
    command needs it.
    """
    from segone.exceptions import SegoneError
    from segone.project import Project

    try:
        return Project.open(path, flags=set_flags())
    except SegoneError as exc:
        fail(str(exc))


@contextmanager
def project_warehouse(path: Path, *, write: bool) -> Iterator[tuple[Project, Warehouse]]:
    """The project at ``path`` and its warehouse, for the body of a ``with``.

    ``write=False`` opens it read-only: the command only looks, and does not hold the file
    against a build or another reader; ``write=True`` takes DuckDB's single-writer lock (and
    brings the tables of a project made by an older segone up to date). Failing to open it (a
    build holds the lock) is a clear error, exit 2.
    """
    proj = open_project(path)
    with user_errors(), proj.warehouse(read_only=not write) as wh:
        yield proj, wh


def jsonable(v: Any) -> Any:
    """``v`` as plain JSON values: times in ISO 8601, NaN/NaT as null, numpy scalars and arrays
    as numbers and lists, data frames as lists of records."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "to_dict") and hasattr(v, "columns"):  # a pandas DataFrame
        return [jsonable(r) for r in v.to_dict(orient="records")]
    if str(v) in ("NaT", "nan", "<NA>"):
        return None
    if isinstance(v, datetime | date) or hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return jsonable(v.tolist())
    if hasattr(v, "item"):
        return jsonable(v.item())
    return str(v)


def emit_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout (valid JSON: no NaN)."""
    sys.stdout.write(json.dumps(jsonable(data), ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def missing(v: Any) -> bool:
    """None, NaN or NaT (lists and arrays are never missing)."""
    if v is None:
        return True
    if isinstance(v, list | tuple | dict) or (hasattr(v, "__len__") and not isinstance(v, str)):
        return False
    try:
        return bool(v != v) or str(v) == "NaT"  # NaN and NaT are not equal to themselves
    except (TypeError, ValueError):
        return False


def when(v: Any, fmt: str = "%Y-%m-%d") -> str:
    """A date or time as text; empty when there is none (a record without a date, such as a
    Shopify customer export, has NaT)."""
    return "" if missing(v) else format(v, fmt)


def fmt_value(v: Any) -> str:
    """A profile value as a short text for a table cell."""
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x:.0%}" for k, x in v.items())
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    if hasattr(v, "strftime"):
        return f"{v:%Y-%m-%d %H:%M}"
    return str(v)


def parse_when(text: str | None, option: str = "--as-of") -> datetime | None:
    """A date (the end of that day) or ISO time given on the command line, in UTC when it
    names no offset."""
    from segone.exceptions import SegoneError

    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise SegoneError(f"{option}: cannot read {text!r} as a date (use YYYY-MM-DD)") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if len(text) == 10:  # a date means the end of that day
        at = at + timedelta(days=1) - timedelta(microseconds=1)
    return at


def table(*columns: str, title: str | None = None, **kwargs: Any) -> Any:
    """A Rich table with these columns (imported here, not at the top: see the module doc)."""
    from rich.table import Table

    if title is not None:
        kwargs.setdefault("title_justify", "left")
    t = Table(title=title, **kwargs)
    for c in columns:
        t.add_column(c)
    return t
