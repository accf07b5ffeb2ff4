"""``segone users``: people who may log in to the dashboard with a user name and password.

Passwords are kept as scrypt hashes in the project's ``.segone/users.json`` (mode 0600); the
dashboard also accepts an admin token, so a project without users is still reachable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from segone.cli._common import ProjectOpt, console, err, open_project
from segone.exceptions import SegoneError

users_app = typer.Typer(
    help="Dashboard users (user name and password; the admin token also logs in).",
    no_args_is_help=True,
)


def _fail(exc: SegoneError) -> typer.Exit:
    err.print(f"[red]error:[/] {exc}", highlight=False)
    return typer.Exit(2)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, '.', '_', '-').")],
    project: ProjectOpt = Path("."),
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            help="Read the password from this environment variable instead of asking.",
        ),
    ] = None,
) -> None:
    """Add a user, or set a new password for an existing one."""
    from segone.web.security import add_user

    try:
        proj = open_project(project)
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise SegoneError(f"the environment variable {password_env} is empty or unset")
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        new = add_user(proj.root, name, password)
    except SegoneError as exc:
        raise _fail(exc) from None
    console.print(f"{'added' if new else 'updated'} user {name}", highlight=False)


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="User name.")], project: ProjectOpt = Path(".")
) -> None:
    """Remove a user (their open sessions end when they expire, within 12 hours)."""
    from segone.web.security import remove_user

    try:
        remove_user(open_project(project).root, name)
    except SegoneError as exc:
        raise _fail(exc) from None
    console.print(f"removed user {name}", highlight=False)


@users_app.command("list")
def users_list(project: ProjectOpt = Path(".")) -> None:
    """User names (never their passwords)."""
    from segone.web.security import load_users

    try:
        names = sorted(load_users(open_project(project).root))
    except SegoneError as exc:
        raise _fail(exc) from None
    console.print("\n".join(names) if names else "no users yet: segone users add NAME")
