"""The Typer application and its command groups; command modules add their commands to these.

Help text is printed as written (``rich_markup_mode=None``: no Rich markup, so ``[server]``
stays ``[server]``), ``-h`` is ``--help`` everywhere, and ``--version`` answers without
importing the library.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated

import typer

CONTEXT = {"help_option_names": ["-h", "--help"]}


def group(help_text: str, *, with_command: bool = False) -> typer.Typer:
    """A command group (``segone NAME ...``) with the conventions of the whole CLI; with
    ``with_command`` the group itself runs when no subcommand is given (``segone loads``)."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=not with_command,
        invoke_without_command=with_command,
        rich_markup_mode=None,
        context_settings=CONTEXT,
    )


app = typer.Typer(
    name="segone",
    help="segone: one profile, segment, forecast and decision per customer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
)


def _version(value: bool) -> None:
    if value:
        from segone import __version__

        typer.echo(f"segone {__version__}")
        raise typer.Exit()


#: The root's ``--set`` flags, waiting for the command's project opener (set by the root
#: callback at every command line, so an in-process second run never sees the first's).
SET_FLAGS: ContextVar[tuple[str, ...]] = ContextVar("segone_set_flags", default=())


@app.callback()
def _root(
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="SECTION.KEY=VALUE",
            help="Override a setting of segone.toml for this command (repeatable; wins over "
            "SEGONE_* variables): segone --set server.port=9000 serve.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """segone: one profile, segment, forecast and decision per customer."""
    SET_FLAGS.set(tuple(settings or ()))


dataset_app = group("Real public data sets shipped with segone.")
segments_app = group(
    "Segments defined in YAML (the project's segments/ folder), evaluated on the profiles."
)
loads_app = group(
    "Loads of files into the warehouse: list them (no command), or undo one.",
    with_command=True,
)
app.add_typer(dataset_app, name="dataset")
app.add_typer(segments_app, name="segments")
app.add_typer(loads_app, name="loads")
