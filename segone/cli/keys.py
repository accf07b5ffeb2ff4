"""``segone keys``: create, list, rotate and revoke the API's keys (``segone.api.keys``).

Keys live hashed in the project's key file (``[server] keys_file``, default ``keys.json``); a
secret is printed once, when it is made. A running server sees every change within a second.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from segone.cli._common import JsonOpt, ProjectOpt, open_project

if TYPE_CHECKING:
    from segone.api.keys import KeyFile, KeyRecord

keys_app = typer.Typer(
    help="API keys: create, list, rotate, revoke (stored hashed in the project's keys.json).",
    no_args_is_help=True,
)


def _file(project: Path) -> KeyFile:
    from segone.api.keys import KeyFile

    settings = open_project(project).settings
    path = Path(settings.server.keys_file)
    return KeyFile(path if path.is_absolute() else settings.root / path)


def _fail(exc: Exception) -> typer.Exit:
    print(f"error: {exc}", file=sys.stderr)
    return typer.Exit(2)


def _show(record: KeyRecord, secret: str | None, as_json: bool) -> None:
    from datetime import UTC, datetime

    doc = record.public(datetime.now(UTC))
    if secret is not None:
        doc["secret"] = secret
    if as_json:
        print(json.dumps(doc))
        return
    print(f"id:      {record.id}")
    print(f"kind:    {record.kind} (scopes: {', '.join(record.scopes)})")
    if record.name:
        print(f"name:    {record.name}")
    if record.origins:
        print(f"origins: {', '.join(record.origins)}")
    if record.rate_per_second is not None:
        print(f"rate:    {record.rate_per_second:g}/s (burst {record.burst or 'default'})")
    if secret is not None:
        print(f"secret:  {secret}")
        print("(the secret is shown this once; only its hash is kept)", file=sys.stderr)


@keys_app.command("create")
def create(
    kind: Annotated[
        str, typer.Option("--kind", "-k", help="write (ingest), decide, or admin.")
    ] = "write",
    name: Annotated[str, typer.Option(help="What the key is for (shown by list).")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope", help="Scopes instead of the kind's: ingest, decide, read, erase, admin."
        ),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin",
            help="A web page origin that may use the key (https://shop.example.com); repeat.",
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Requests per second for this key (default: server's).")
    ] = None,
    burst: Annotated[float | None, typer.Option(help="Requests allowed at once.")] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Make a key and print its secret (once)."""
    from segone.exceptions import SegoneError

    try:
        record, secret = _file(project).create(
            kind,
            name=name,
            scopes=scope or (),
            origins=origin or (),
            rate_per_second=rate,
            burst=burst,
        )
    except SegoneError as exc:
        raise _fail(exc) from None
    _show(record, secret, as_json)


@keys_app.command("list")
def list_keys(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """The keys of the key file (never their secrets), revoked ones included."""
    from datetime import UTC, datetime

    from segone.exceptions import SegoneError

    try:
        records = _file(project).records()
    except SegoneError as exc:
        raise _fail(exc) from None
    now = datetime.now(UTC)
    if as_json:
        print(json.dumps([r.public(now) for r in records]))
        return
    if not records:
        print("no keys yet (segone keys create)")
        return
    print(f"{'id':<10} {'kind':<7} {'state':<8} {'scopes':<28} {'created':<26} name / origins")
    for r in records:
        state = "active" if r.active(now) else ("revoked" if r.revoked_at else "expired")
        extra = " ".join(x for x in (r.name, ", ".join(r.origins)) if x)
        scopes = ",".join(r.scopes)
        print(f"{r.id:<10} {r.kind:<7} {state:<8} {scopes:<28} {r.created_at:<26} {extra}")


@keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (segone keys list).")],
    grace_hours: Annotated[
        float, typer.Option(help="Hours the old secret keeps working (default: none).")
    ] = 0.0,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """A new secret with the same kind, scopes, origins and rate; the old one stops working
    (now, or after --grace-hours)."""
    from segone.exceptions import SegoneError

    if grace_hours < 0:
        raise _fail(ValueError("--grace-hours must be >= 0"))
    try:
        record, secret = _file(project).rotate(key_id, timedelta(hours=grace_hours))
    except SegoneError as exc:
        raise _fail(exc) from None
    _show(record, secret, as_json)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (segone keys list).")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Stop a key at once (a running server refuses it within a second)."""
    from segone.exceptions import SegoneError

    try:
        record = _file(project).revoke(key_id)
    except SegoneError as exc:
        raise _fail(exc) from None
    _show(record, None, as_json)
