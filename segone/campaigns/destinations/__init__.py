"""Destinations: where an audience goes (files, webhooks, Mailchimp, Klaviyo, Meta, Google, SMS).

``open_destination(kind, config, state_dir=...)`` is the one entry point; every destination
has ``sync(members, list_id=...) -> SyncReport`` (``base.Destination``). E-mail goes through
``email.SmtpSender`` instead: a message is rendered per person, not a list membership.

Config keys (a mapping, e.g. a ``destinations:`` entry of a campaign YAML)::

    every kind     name (default: the kind; keys the sync state)
    HTTP kinds     base_url, timeout (30), batch_size, max_attempts (5), backoff_seconds (0.5),
                   max_backoff_seconds (60), random_state
    file           path (required; "{list_id}" is replaced), format (csv|parquet, else from the
                   suffix), columns (["customer_id", "email"]), hash (false), default_country_code
    webhook        url (or base_url + path), secret (required; "whsec_<base64>" or any string)
    mailchimp      api_key (required; "...-us6" gives the base URL), status_if_new
                   ("subscribed"), merge_fields ({"FNAME": "first_name"}: tag -> member field)
    klaviyo        api_key (required), revision ("2026-10-15"), default_country_code
    meta           access_token (required), api_version ("v25.0"), default_country_code
    google         access_token, customer_id, developer_token (required), login_customer_id,
                   api_version ("v26"), default_country_code, consent (GRANTED|DENIED: the
                   job's adUserData/adPersonalization consent, sent only when set)
    sms            base_url, api_key, sender (required), path ("/messages"), body,
                   default_country_code

E-mail: ``open_sender(config, state_dir=...)`` takes host, port (25), sender, security
(none|starttls|ssl), username, password, timeout, rate_per_second (10), max_per_connection,
max_attempts, unsubscribe_mailto, message_id_domain.

A secret written as ``env:NAME`` is read from the environment variable NAME, so campaign files
can be committed without keys in them.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segone.campaigns.destinations.base import (
    Destination,
    DestinationError,
    Member,
    OutgoingEmail,
    SyncReport,
)
from segone.campaigns.destinations.sync_state import RetryPolicy, SyncState

if TYPE_CHECKING:
    from segone.campaigns.destinations.email import SmtpSender

__all__ = [
    "KINDS",
    "Destination",
    "DestinationError",
    "Member",
    "OutgoingEmail",
    "SyncReport",
    "SyncState",
    "open_destination",
    "open_sender",
    "sync_many",
]

_HTTP_KEYS = {
    "name",
    "base_url",
    "timeout",
    "batch_size",
    "max_attempts",
    "backoff_seconds",
    "max_backoff_seconds",
    "random_state",
}
_KEYS: dict[str, set[str]] = {
    "file": {"name", "path", "format", "columns", "hash", "default_country_code"},
    "webhook": _HTTP_KEYS | {"url", "path", "secret"},
    "mailchimp": _HTTP_KEYS | {"api_key", "status_if_new", "merge_fields"},
    "klaviyo": _HTTP_KEYS | {"api_key", "revision", "default_country_code"},
    "meta": _HTTP_KEYS | {"access_token", "api_version", "default_country_code"},
    "google": _HTTP_KEYS
    | {
        "access_token",
        "customer_id",
        "developer_token",
        "login_customer_id",
        "api_version",
        "default_country_code",
        "consent",
    },
    "sms": _HTTP_KEYS | {"api_key", "sender", "path", "body", "default_country_code"},
}
_SMTP_KEYS = {
    "host",
    "port",
    "sender",
    "security",
    "username",
    "password",
    "timeout",
    "rate_per_second",
    "max_per_connection",
    "max_attempts",
    "unsubscribe_mailto",
    "message_id_domain",
}
KINDS = tuple(_KEYS)
# the most a platform takes in one request, and the default batch
_MAX_BATCH = {
    "webhook": 10_000,
    "mailchimp": 500,
    "klaviyo": 10_000,
    "meta": 10_000,
    "google": 10_000,
    "sms": 1,
}
_DEFAULT_BATCH = {
    "webhook": 500,
    "mailchimp": 500,
    "klaviyo": 10_000,
    "meta": 10_000,
    "google": 10_000,
    "sms": 1,
}


def _did_you_mean(word: str, options: set[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Config:
    """Typed reads of one destination's mapping, with errors that name the kind and key."""

    def __init__(self, kind: str, raw: Mapping[str, Any], known: set[str] | None = None) -> None:
        self.kind = kind
        self.raw = raw
        known = _KEYS[kind] if known is None else known
        for key in raw:
            if key not in known:
                raise DestinationError(
                    f"{kind}: unknown key {key!r}{_did_you_mean(key, known)}; "
                    f"known: {', '.join(sorted(known))}"
                )

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw.get(key, default)
        if value is None or value == "":
            if required:
                raise DestinationError(f"{self.kind}: {key} is required")
            return None
        if not isinstance(value, str | int):
            raise DestinationError(f"{self.kind}: {key} must be text")
        return str(value)

    def need(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default, required=True)
        assert value is not None
        return value

    def secret(self, key: str) -> str:
        value = self.need(key)
        if value.startswith("env:"):
            var = value[4:]
            value = os.environ.get(var, "")
            if not value:
                raise DestinationError(f"{self.kind}: {key} names ${var}, which is not set")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise DestinationError(f"{self.kind}: {key} must be a number >= 0")
        return float(value)


def _http_settings(cfg: _Config, default_base: str | None) -> Any:
    from segone.campaigns.destinations.http import HttpSettings

    base = cfg.text("base_url", default_base)
    if not base:
        raise DestinationError(f"{cfg.kind}: base_url is required")
    if not base.startswith(("http://", "https://")):
        raise DestinationError(f"{cfg.kind}: base_url must start with http:// or https://")
    batch = int(cfg.number("batch_size", _DEFAULT_BATCH[cfg.kind]))
    if not 1 <= batch <= _MAX_BATCH[cfg.kind]:
        raise DestinationError(f"{cfg.kind}: batch_size must be 1..{_MAX_BATCH[cfg.kind]}")
    try:
        retry = RetryPolicy(
            max_attempts=int(cfg.number("max_attempts", 5)),
            backoff_seconds=cfg.number("backoff_seconds", 0.5),
            max_backoff_seconds=cfg.number("max_backoff_seconds", 60.0),
        )
    except ValueError as exc:
        raise DestinationError(f"{cfg.kind}: {exc}") from None
    seed = cfg.raw.get("random_state")
    return HttpSettings(
        base_url=base.rstrip("/"),
        timeout=cfg.number("timeout", 30.0),
        batch_size=batch,
        retry=retry,
        random_state=None if seed is None else int(seed),
    )


def open_destination(
    kind: str,
    config: Mapping[str, Any],
    *,
    state_dir: Path,
    sleep: Callable[[float], None] = time.sleep,
) -> Destination:
    """The destination of ``kind`` configured by ``config`` (keys in the module doc), keeping
    its incremental sync state under ``state_dir``. ``sleep`` waits between retries."""
    from segone.campaigns.destinations import connectors
    from segone.campaigns.destinations.http import HttpDestination

    if kind not in _KEYS:
        raise DestinationError(
            f"unknown destination kind {kind!r}{_did_you_mean(kind, KINDS)}; "
            f"known: {', '.join(KINDS)}"
        )
    cfg = _Config(kind, config)
    name = cfg.need("name", kind)
    cc = cfg.text("default_country_code") if "default_country_code" in _KEYS[kind] else None
    state = SyncState(Path(state_dir))

    if kind == "file":
        from segone.campaigns.destinations.file import FileDestination

        columns = config.get("columns", ["customer_id", "email"])
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise DestinationError("file: columns must be a list of column names")
        return FileDestination(
            name,
            Path(cfg.need("path")),
            state,
            columns=tuple(columns),
            fmt=cfg.text("format"),
            hash_contacts=bool(config.get("hash", False)),
            default_country_code=cc,
        )
    if kind == "sms":
        from segone.campaigns.destinations.sms import SmsDestination

        return SmsDestination(
            name,
            _http_settings(cfg, None),
            state,
            api_key=cfg.secret("api_key"),
            sender=cfg.need("sender"),
            path=cfg.need("path", "/messages"),
            body=cfg.text("body"),
            default_country_code=cc,
            sleep=sleep,
        )

    connector: connectors.Connector
    default_base: str | None
    if kind == "webhook":
        url = cfg.text("url")
        if url:
            scheme, _, rest = url.partition("://")
            host, slash, path = rest.partition("/")
            default_base, hook_path = f"{scheme}://{host}", slash + path
        else:
            default_base, hook_path = None, cfg.need("path", "/")
        connector = connectors.Webhook(hook_path or "/", cfg.secret("secret"))
    elif kind == "mailchimp":
        key = cfg.secret("api_key")
        dc = key.rpartition("-")[2] if "-" in key else None
        default_base = f"https://{dc}.api.mailchimp.com" if dc else None
        merge = config.get("merge_fields", {})
        if not isinstance(merge, Mapping):
            raise DestinationError("mailchimp: merge_fields must map a merge tag to a field")
        connector = connectors.Mailchimp(
            key, status_if_new=cfg.need("status_if_new", "subscribed"), merge_fields=merge
        )
    elif kind == "klaviyo":
        default_base = "https://a.klaviyo.com"
        connector = connectors.Klaviyo(
            cfg.secret("api_key"),
            revision=cfg.need("revision", "2026-10-15"),
            default_country_code=cc,
        )
    elif kind == "meta":
        default_base = "https://graph.facebook.com"
        connector = connectors.Meta(
            cfg.secret("access_token"),
            version=cfg.need("api_version", "v25.0"),
            default_country_code=cc,
        )
    else:  # google
        default_base = "https://googleads.googleapis.com"
        connector = connectors.Google(
            cfg.secret("access_token"),
            customer_id=cfg.need("customer_id").replace("-", ""),
            developer_token=cfg.secret("developer_token"),
            login_customer_id=cfg.text("login_customer_id"),
            version=cfg.need("api_version", "v26"),
            default_country_code=cc,
            consent=cfg.text("consent"),
        )
    return HttpDestination(name, connector, _http_settings(cfg, default_base), state, sleep=sleep)


def open_sender(config: Mapping[str, Any], *, state_dir: Path | None = None) -> SmtpSender:
    """An ``SmtpSender`` configured by ``config`` (keys in the module doc); with ``state_dir``
    it records what it sent, so a re-run of a list never mails a person twice."""
    from segone.campaigns.destinations.email import SmtpSender, SmtpSettings

    cfg = _Config("smtp", config, _SMTP_KEYS)
    password = cfg.secret("password") if config.get("password") else None
    settings = SmtpSettings(
        host=cfg.need("host", "127.0.0.1"),
        port=int(cfg.number("port", 25)),
        sender=cfg.need("sender"),
        security=cfg.need("security", "none"),
        username=cfg.text("username"),
        password=password,
        timeout=cfg.number("timeout", 30.0),
        rate_per_second=cfg.number("rate_per_second", 10.0),
        max_per_connection=int(cfg.number("max_per_connection", 1000)),
        max_attempts=int(cfg.number("max_attempts", 3)),
        unsubscribe_mailto=cfg.text("unsubscribe_mailto"),
        message_id_domain=cfg.text("message_id_domain"),
    )
    return SmtpSender(settings, state=None if state_dir is None else SyncState(Path(state_dir)))


def sync_many(
    destinations: Iterable[Destination], members: Iterable[Member], *, list_id: str
) -> list[SyncReport]:
    """Sync one audience to several destinations, one report each, in order.

    A destination that raises (a column it cannot find, a bug) gets a report with the error
    and every member counted as failed; the others still run — one broken connector must not
    keep the audience from the rest.
    """
    people = list(members)
    reports = []
    for dest in destinations:
        try:
            reports.append(dest.sync(people, list_id=list_id))
        except Exception as exc:
            report = SyncReport(destination=dest.name, failed=len(people))
            detail = str(exc) if isinstance(exc, DestinationError) else type(exc).__name__
            report.errors.append(f"sync failed: {detail}")
            reports.append(report)
    return reports
