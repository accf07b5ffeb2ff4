"""Project settings: ``segone.toml``, overridden by ``SEGONE_*`` environment variables and
``segone --set section.key=value`` flags, handed out as one frozen dataclass per subsystem.

Nothing here touches the warehouse; reading settings is cheap and has no side effects. The
keys, their types, defaults and checks are one pydantic-settings model (``segone.config.model``,
imported when settings are read); the settings classes of identity, lifecycle, segments and
models live beside the code they steer, in modules that import Ibis, and are imported then too,
not when this module is (``segone --help`` imports it and must start in a blink).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segone.exceptions import ConfigError, ProjectError

if TYPE_CHECKING:
    from segone.config.model import SettingsModel
    from segone.identity.graph import IdentitySettings
    from segone.models.settings import ModelSettings
    from segone.segments.builtin import BuiltinSettings
    from segone.segments.lifecycle import LifecycleSettings

CONFIG_FILE = "segone.toml"

DEFAULT_TOML = """\
# segone project settings. Every key is optional; the values shown are the defaults.

[warehouse]
# DuckDB file holding the canonical tables, relative to this directory.
path = "warehouse.duckdb"
# Engine threads and memory cap (DuckDB spills to disk beyond it).
threads = 2
memory_limit = "4GB"
# "duckdb" (embedded) or "spark" (pip install "segone[spark]"; see docs/scale.md). On Spark the
# tables are Parquet under spark_path, computed on spark_master (local[2] or a cluster's URL).
engine = "duckdb"
spark_master = "local[2]"
spark_path = "spark-warehouse"
spark_driver_memory = "2g"

[ingest]
# Time zone assumed for timestamps that carry none. Values with an offset are converted to UTC.
timezone = "UTC"
# Currency assumed for orders without one.
currency = "USD"
# A text field longer than this (in characters) is an error: the row goes to quarantine.
max_field_chars = 65536
# Rows read per chunk (memory use grows with it).
chunk_rows = 200000
# The engine's memory cap while a file loads (it spills to disk beyond it), so that a file of
# any size loads within about this plus 1 GiB; lower than the warehouse's cap, which builds use.
memory_limit = "1536MB"
# A bad optional field (birth date, phone, postcode, consent, …) is dropped and recorded in
# the quarantine while its row loads; true rejects the whole row instead.
strict = false
# Export layouts of your own tools: [ingest.presets.NAME] (see docs/ingest.md), or presets/*.toml.

[identity]
# Values that never identify anyone, on top of the built-in list (test@test.com, null, ...).
blocked = []
# Country calling code for phone numbers written without one.
default_country_code = "1"
# Link customer records that share no identifier but agree on name, birth date, address
# (Splink, fitted unsupervised); pairs above match_threshold are merged, with their evidence.
probabilistic = true
match_threshold = 0.9
# A person has at most this many e-mails / phones (per user id); further ones link nothing.
max_emails_per_person = 5
max_phones_per_person = 5

[lifecycle]
# Stages are judged on each person's own gap between orders (see docs/segments.md).
new_days = 30
at_risk_factor = 2.0
churn_factor = 4.0
min_gap_days = 7
max_inactive_days = 730
# Where the build fitted BG/NBD, repeat buyers' stages follow P(alive) instead.
at_risk_p_alive = 0.8
churned_p_alive = 0.5

[segments]
# Thresholds of the built-in segments (docs/segments.md); a segment file may redefine any of them.
vip_share = 0.05
discount_min_orders = 3
discount_order_share = 0.6
full_price_share_max = 0.4
charmed_days = 30
loyal_min_orders = 5
window_min_views = 10
pricing_min_views_30d = 1
email_min_delivered = 5
email_engaged_open_rate = 0.3
email_dormant_open_rate = 0.05
advocate_sentiment = 0.3
detractor_sentiment = -0.3

[models]
# Predictions per person at every build (docs/predictions.md).
enabled = true
# P(alive) and expected purchases: "pareto_nbd" or "bg_nbd" (BG/NBD cannot tell which
# one-time buyers have left; see docs/predictions.md).
transaction_model = "pareto_nbd"
# Horizon of expected purchases and churn, in days.
horizon_days = 90
# Customer lifetime value: months ahead and yearly discount rate.
clv_months = 12
annual_discount_rate = 0.1
# Reuse a fit whose data ends less than this many days before the build (0: refit every build).
refit_after_days = 0.0
# Supervised churn model (gradient boosting, trained on the profiles one horizon ago).
churn = true
# Next-product recommendations kept per person.
recommendations = 10

[server]
# `segone serve`: the real-time API (docs/server.md).
host = "127.0.0.1"
port = 8321
# Online store: SQLite in WAL mode (path relative to this directory) or postgresql://user@host/db.
online_url = "sqlite:///online.db"
# Secrets are better given in the environment: SEGONE_WRITE_KEYS, SEGONE_ADMIN_TOKENS and
# SEGONE_DECIDE_TOKENS (comma separated), SEGONE_WEBHOOK_SECRET.
# Write keys may only send events (Segment's HTTP Basic user name or "writeKey").
write_keys = []
# Bearer tokens for GET/DELETE /v1/profiles (and everything else).
admin_tokens = []
# Bearer tokens for /v1/decide and /v1/feedback.
decide_tokens = []
# Keys made with `segone keys create` (hashed; scopes, origins and rate per key).
keys_file = "keys.json"
# Web pages (origins, e.g. "https://shop.example.com") that may call the API with any key:
# analytics.js in the browser needs its site here or on its key (SEGONE_CORS_ORIGINS).
cors_origins = []
# Requests per second per key (token bucket; 0: no limit) and the burst allowed above it.
rate_limit_per_second = 0.0
rate_limit_burst = 0.0
# An OpenTelemetry span per request (needs opentelemetry-api; SEGONE_TRACING=1).
tracing = false
# Triggers (segment entered/left, stage changed, taste shift) are POSTed here when set,
# signed per Standard Webhooks (webhook-signature: HMAC-SHA256 with the secret, whsec_<base64>
# or any string); failed deliveries are retried with back-off and go to the dead-letter table
# after webhook_max_attempts.
webhook_url = ""
webhook_secret = ""
webhook_max_attempts = 5
webhook_backoff_seconds = 1.0
# Segment's limits: one message, one batch (bytes of JSON, after gzip).
max_message_bytes = 32768
max_batch_bytes = 512000
# Follow-up contacts per person per channel per day; channels /v1/decide may choose.
frequency_cap_per_day = 3
channels = ["email", "sms", "push"]

# Column mappings: canonical column = column name in your files. Columns not mapped here are
# matched automatically by common names (e.g. "OrderNumber" -> order_id, "e-mail" -> email).
# Columns that match nothing are kept in the row's `extra` JSON, never dropped.
# A table named after a source (the file's stem or --source) wins over the one for its kind.
# [ingest.mapping.orders]
# order_id = "OrderNumber"
# ts = "Order Date"
"""


@dataclass(frozen=True)
class WarehouseSettings:
    path: str = "warehouse.duckdb"
    threads: int = 2
    memory_limit: str = "4GB"
    # "duckdb" (embedded, the default) or "spark" (docs/scale.md)
    engine: str = "duckdb"
    # Spark only: master URL and the directory of the tables (Parquet), relative to the project
    spark_master: str = "local[2]"
    spark_path: str = "spark-warehouse"
    spark_driver_memory: str = "2g"


def parse_origin(origin: str, where: str = "origin") -> str:
    """An origin as browsers send it in ``Origin``: ``scheme://host[:port]`` (no path, no
    trailing slash), or ``*`` for any."""
    o = origin.strip().rstrip("/")
    if o == "*":
        return o
    scheme, sep, rest = o.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise ConfigError(
            f"{where}: {origin!r} is not an origin: write scheme://host[:port] (no path), "
            "e.g. https://shop.example.com, or * for any"
        )
    return o


def parse_flags(flags: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--set section.key=value`` flags as nested settings (values as text: the model converts
    them, lists comma separated)."""
    out: dict[str, dict[str, Any]] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not key:
            raise ConfigError(f"--set {flag!r}: write --set section.key=value (server.port=9000)")
        out.setdefault(section, {})[key] = value
    return out


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: the real-time API and its online store."""

    host: str = "127.0.0.1"
    port: int = 8321
    online_url: str = "sqlite:///online.db"
    write_keys: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    decide_tokens: tuple[str, ...] = ()
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 1.0
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    frequency_cap_per_day: int = 3
    channels: tuple[str, ...] = ("email", "sms", "push")
    # event times taken as sent: from this instant to this many days after receipt; others
    # (a device clock at 1970 or 2099) are replaced by the time received, the original kept
    earliest_timestamp: str = "2000-01-01T00:00:00+00:00"
    timestamp_future_days: float = 1.0

    def earliest(self) -> datetime:
        """``earliest_timestamp`` as an aware time (UTC when it names no offset)."""
        t = datetime.fromisoformat(self.earliest_timestamp.strip())
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t

    # where the writes run: "process" (a writer process beside the server: the per-event work
    # gets a core of its own) or "thread" (one process; for embedding and one-core hosts)
    writer: str = "process"
    # keys made with `segone keys` (segone.api.keys), relative to the project
    keys_file: str = "keys.json"
    # origins of web pages that may call the API with any key (CORS; keys add their own)
    cors_origins: tuple[str, ...] = ()
    # token bucket per key: requests per second (0: no limit) and burst (0: one second's worth)
    rate_limit_per_second: float = 0.0
    rate_limit_burst: float = 0.0
    tracing: bool = False


@dataclass(frozen=True)
class IngestSettings:
    timezone: str = "UTC"
    currency: str = "USD"
    max_field_chars: int = 65536
    chunk_rows: int = 200_000
    memory_limit: str = "1536MB"
    mapping: dict[str, dict[str, str]] = field(default_factory=dict)
    # true: a bad optional field (birth date, phone, …) rejects its whole row, as before 0.2
    strict: bool = False
    # the project's own export layouts: [ingest.presets.NAME] and presets/*.toml
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


def _user_presets(root: Path, inline: Any, source: str) -> dict[str, dict[str, Any]]:
    """A project's export layouts: ``[ingest.presets.NAME]`` tables and ``presets/*.toml``
    files beside segone.toml (checked when a file is ingested, see segone.ingest.presets)."""
    if not isinstance(inline, dict) or not all(isinstance(v, dict) for v in inline.values()):
        raise ConfigError(f"{source}: [ingest.presets.NAME] must be tables")
    out: dict[str, dict[str, Any]] = {}
    folder = Path(root) / "presets"
    if folder.is_dir():
        for f in sorted(folder.glob("*.toml")):
            try:
                data = tomllib.loads(f.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{f}: {exc}") from None
            if not all(isinstance(v, dict) for v in data.values()):
                raise ConfigError(f"{f}: each preset is a table: [NAME] with kind, columns, …")
            out.update(data)
    out.update(inline)
    return out


def _default_identity() -> IdentitySettings:
    from segone.identity.graph import IdentitySettings

    return IdentitySettings()


def _default_lifecycle() -> LifecycleSettings:
    from segone.segments.lifecycle import LifecycleSettings

    return LifecycleSettings()


def _default_segments() -> BuiltinSettings:
    from segone.segments.builtin import BuiltinSettings

    return BuiltinSettings()


def _default_models() -> ModelSettings:
    from segone.models.settings import ModelSettings

    return ModelSettings()


@dataclass(frozen=True)
class Settings:
    """All settings of one project. ``root`` is the project directory."""

    root: Path
    warehouse: WarehouseSettings = field(default_factory=WarehouseSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    identity: IdentitySettings = field(default_factory=_default_identity)
    lifecycle: LifecycleSettings = field(default_factory=_default_lifecycle)
    segments: BuiltinSettings = field(default_factory=_default_segments)
    models: ModelSettings = field(default_factory=_default_models)
    server: ServerSettings = field(default_factory=ServerSettings)

    @property
    def warehouse_path(self) -> Path:
        p = Path(self.warehouse.path)
        return p if p.is_absolute() else self.root / p

    @classmethod
    def load(
        cls,
        root: str | os.PathLike[str],
        *,
        flags: Mapping[str, Mapping[str, Any]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read ``segone.toml`` from ``root``; the environment overrides the file and ``flags``
        (``{"server": {"port": "9000"}}``, from ``segone --set``) override both.

        Every key can be set in the environment as ``SEGONE_<SECTION>__<KEY>``; the older names
        (``SEGONE_ONLINE_URL``, ``SEGONE_WRITE_KEYS``, …, see ``segone.config.model``) still
        work. The order is documented in docs/configuration.md.
        """
        root = Path(root)
        return cls.from_dict(
            root, read_file(root), source=str(root / CONFIG_FILE), flags=flags, environ=environ
        )

    @classmethod
    def from_dict(
        cls,
        root: Path,
        data: dict[str, Any],
        source: str = "settings",
        *,
        flags: Mapping[str, Mapping[str, Any]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from ``data`` (a parsed ``segone.toml``), the environment and ``flags``."""
        from segone.config.model import Layers, validate

        return cls.from_model(root, validate(Layers(data, source, flags, environ)), source)

    @classmethod
    def from_model(cls, root: Path, m: SettingsModel, source: str = "settings") -> Settings:
        """The frozen settings of each subsystem from the validated model."""
        from segone.identity.graph import IdentitySettings
        from segone.models.settings import ModelSettings
        from segone.segments.builtin import BuiltinSettings
        from segone.segments.lifecycle import LifecycleSettings

        ident = m.identity
        ing = m.ingest.model_dump()
        ing["presets"] = _user_presets(root, ing["presets"], source)
        return cls(
            root=root,
            warehouse=WarehouseSettings(**m.warehouse.model_dump()),
            ingest=IngestSettings(**ing),
            identity=IdentitySettings(
                extra_blocked=ident.blocked,
                default_country_code=ident.default_country_code,
                max_iterations=ident.max_iterations,
                probabilistic=ident.probabilistic,
                match_threshold=ident.match_threshold,
                max_per_person={
                    "email": ident.max_emails_per_person,
                    "phone": ident.max_phones_per_person,
                },
            ),
            lifecycle=LifecycleSettings(**m.lifecycle.model_dump()),
            segments=BuiltinSettings(**m.segments.model_dump()),
            models=ModelSettings(**m.models.model_dump()),
            server=ServerSettings(**m.server.model_dump()),
        )


def read_file(root: Path) -> dict[str, Any]:
    """``segone.toml`` of the project at ``root``, parsed (errors name the file)."""
    cfg = root / CONFIG_FILE
    if not cfg.is_file():
        raise ProjectError(
            f"no segone project at {root} (missing {CONFIG_FILE}); run `segone init {root}`"
        )
    try:
        return tomllib.loads(cfg.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{cfg}: not UTF-8 text") from None
