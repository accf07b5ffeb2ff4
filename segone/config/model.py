"""The settings model: every key of ``segone.toml``, its type, default and meaning, validated
by pydantic, with its value taken from the flags, the environment or the file.

Where a value comes from, highest first:

1. a command-line flag: ``segone --set server.port=9000 ...`` (and a command's own flags, such
   as ``segone serve --port``, which the command applies on top);
2. the environment: ``SEGONE_<SECTION>__<KEY>`` (``SEGONE_SERVER__PORT=9000``; lists comma
   separated), read by pydantic-settings' ``EnvSettingsSource``;
3. the older short names, kept working: ``SEGONE_WRITE_KEYS``, ``SEGONE_ONLINE_URL``, … (see
   ``LEGACY_ENV``);
4. ``segone.toml`` in the project directory;
5. the default written here.

A bad value is an error naming the key and where it came from (the file's path, the
environment variable or the flag). ``segone config show`` prints the effective value of every
key and its origin, secrets masked. ``docs/configuration.md``'s table is generated from this
model (``python -m segone.config``) and a test holds the two together.

Imported only when settings are read (pydantic-settings costs ~0.3 s to import), never by
``segone --help``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from segone.config import parse_origin
from segone.exceptions import ConfigError

ENV_PREFIX = "SEGONE_"
NESTED = "__"

#: Older environment names, still honoured below the ``SEGONE_<SECTION>__<KEY>`` ones.
LEGACY_ENV: dict[str, tuple[str, str]] = {
    "SEGONE_WAREHOUSE_PATH": ("warehouse", "path"),
    "SEGONE_WAREHOUSE_THREADS": ("warehouse", "threads"),
    "SEGONE_WAREHOUSE_MEMORY_LIMIT": ("warehouse", "memory_limit"),
    "SEGONE_WAREHOUSE_ENGINE": ("warehouse", "engine"),
    "SEGONE_SPARK_MASTER": ("warehouse", "spark_master"),
    "SEGONE_INGEST_TIMEZONE": ("ingest", "timezone"),
    "SEGONE_ONLINE_URL": ("server", "online_url"),
    "SEGONE_WRITE_KEYS": ("server", "write_keys"),
    "SEGONE_ADMIN_TOKENS": ("server", "admin_tokens"),
    "SEGONE_DECIDE_TOKENS": ("server", "decide_tokens"),
    "SEGONE_WEBHOOK_SECRET": ("server", "webhook_secret"),
    "SEGONE_CORS_ORIGINS": ("server", "cors_origins"),
    "SEGONE_TRACING": ("server", "tracing"),
}

#: Keys whose values are never printed (``segone config show`` masks them).
SECRETS = {
    ("server", "write_keys"),
    ("server", "admin_tokens"),
    ("server", "decide_tokens"),
    ("server", "webhook_secret"),
}

Origin = tuple[str, str]  # ("file" | "env" | "flag" | "default", where: path, variable or flag)


def _split_list(v: Any) -> Any:
    """A list from the environment or a flag: comma separated (``a, b``); JSON lists too."""
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            import json

            try:
                return json.loads(s)
            except ValueError:
                pass
        return [x.strip() for x in s.split(",") if x.strip()]
    return v


StrList = Annotated[tuple[str, ...], NoDecode]
_M = TypeVar("_M", bound=BaseModel)


class Section(BaseModel):
    """One ``[section]``: unknown keys are errors, numbers given for text are taken as text."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, validate_default=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _lists_and_bools(cls, v: Any, info: Any) -> Any:
        f = cls.model_fields.get(info.field_name)
        if f is not None and getattr(f.annotation, "__origin__", None) is tuple:
            return _split_list(v)
        # true or false in the file ("yes" or 0.5 there is a mistake; the environment's and the
        # flags' texts were turned into booleans by ``_typed_bools``)
        if f is not None and f.annotation is bool and not isinstance(v, bool):
            raise ValueError("takes true or false")
        return v


class Warehouse(Section):
    path: str = Field(
        "warehouse.duckdb", description="DuckDB file, relative to the project directory"
    )
    threads: int = Field(2, gt=0, description="engine threads")
    memory_limit: str = Field(
        "4GB", description="engine memory cap (DuckDB spills to disk beyond it)"
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description='`duckdb` (embedded) or `spark` (`pip install "segone[spark]"`, see '
        "[scale](scale.md))",
    )
    spark_master: str = Field(
        "local[2]", description="Spark master URL (`local[N]`, `spark://host:7077`, `yarn`, ...)"
    )
    spark_path: str = Field(
        "spark-warehouse",
        description="directory of the Spark tables (Parquet), relative to the project",
    )
    spark_driver_memory: str = Field("2g", description="the Spark driver's heap")

    @field_validator("engine", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class Ingest(Section):
    timezone: str = Field("UTC", description="time zone of timestamps without an offset")
    currency: str = Field("USD", description="currency of orders without one")
    max_field_chars: int = Field(
        65536, gt=0, description="a longer text field sends its row to quarantine"
    )
    chunk_rows: int = Field(200_000, gt=0, description="rows read per chunk")
    memory_limit: str = Field(
        "1536MB",
        description="engine memory cap while a file loads (staged slices spill to disk beyond "
        "it), so any file loads in about this plus 1 GiB; the warehouse cap comes back afterwards",
    )
    strict: bool = Field(
        False,
        description="`false`: a bad optional field (birth date, phone, postcode, consent, …) is "
        "dropped and recorded in the quarantine while its row loads; `true`: the whole row is "
        "rejected",
    )
    mapping: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="`[ingest.mapping.KIND]` or `[ingest.mapping.SOURCE]`: "
        '`field = "column"` for every file of that kind, or of one source (wins over the kind\'s)',
    )
    presets: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="`[ingest.presets.NAME]`: your own export layouts, same keys as the built-in "
        "ones ([ingest](ingest.md)); also read from `presets/*.toml` beside `segone.toml`",
    )


class Identity(Section):
    blocked: StrList = Field((), description="more placeholder values that must never link records")
    default_country_code: str = Field(
        "1", description="calling code for phone numbers written without one"
    )
    probabilistic: bool = Field(
        True,
        description="also link customer records that share no identifier but agree on name, "
        "birth date and address (Splink)",
    )
    match_threshold: float = Field(
        0.9, ge=0, le=1, description="match probability above which such records are merged"
    )
    max_emails_per_person: int = Field(
        5,
        gt=0,
        description="e-mails one user id may have; the ones seen on fewest records beyond that "
        "link nothing",
    )
    max_phones_per_person: int = Field(5, gt=0, description="the same for phone numbers")
    max_iterations: int = Field(
        60, gt=0, description="bound on label-propagation rounds (an error past it)"
    )

    @field_validator("default_country_code")
    @classmethod
    def _plus(cls, v: str) -> str:
        return v.strip().lstrip("+")


class Lifecycle(Section):
    new_days: float = Field(30.0, description="a first order this recent makes a customer `new`")
    at_risk_factor: float = Field(
        2.0, description="`at_risk` after this many of the person's own gaps without an order"
    )
    churn_factor: float = Field(
        4.0, description="`churned` after this many gaps (and the threshold for `reactivated`)"
    )
    min_gap_days: float = Field(7.0, description="floor under anyone's expected gap")
    max_inactive_days: float = Field(
        730.0, description="`churned` after this long whatever the gap"
    )
    at_risk_p_alive: float = Field(
        0.8,
        description="where the build fitted P(alive): `at_risk` below it (instead of the gap rule)",
    )
    churned_p_alive: float = Field(
        0.5, description="where the build fitted P(alive): `churned` below it"
    )


_SEG = "threshold of a built-in segment ([segments](segments.md))"


class Segments(Section):
    vip_share: float = Field(0.05, description=_SEG)
    discount_min_orders: int = Field(3, description=_SEG)
    discount_order_share: float = Field(0.6, description=_SEG)
    full_price_share_max: float = Field(0.4, description=_SEG)
    charmed_days: float = Field(30.0, description=_SEG)
    loyal_min_orders: int = Field(5, description=_SEG)
    window_min_views: int = Field(10, description=_SEG)
    pricing_min_views_30d: int = Field(1, description=_SEG)
    email_min_delivered: int = Field(5, description=_SEG)
    email_engaged_open_rate: float = Field(0.3, description=_SEG)
    email_dormant_open_rate: float = Field(0.05, description=_SEG)
    advocate_sentiment: float = Field(0.3, description=_SEG)
    detractor_sentiment: float = Field(-0.3, description=_SEG)


class Models(Section):
    enabled: bool = Field(
        True,
        description="fit and score the models at every `segone build` "
        "([predictions](predictions.md))",
    )
    transaction_model: Literal["pareto_nbd", "bg_nbd"] = Field(
        "pareto_nbd", description="P(alive) and expected purchases from `pareto_nbd` or `bg_nbd`"
    )
    horizon_days: int = Field(90, gt=0, description="horizon of expected purchases and churn")
    clv_months: int = Field(12, gt=0, description="months of customer lifetime value")
    annual_discount_rate: float = Field(0.1, ge=0, description="discount rate of CLV, per year")
    refit_after_days: float = Field(
        0.0,
        ge=0,
        description="reuse a BTYD fit whose data ends less than this many days before the build "
        "(0: refit every build)",
    )
    churn: bool = Field(
        True,
        description="train the gradient-boosted churn model (on the profiles one horizon back)",
    )
    recommendations: int = Field(10, ge=0, description="next products kept per person (0: none)")
    taste_half_life_days: float = Field(
        90.0,
        gt=0,
        description="no longer read (the affinity is the preference model's, its half-life "
        "learned); accepted so older files load",
    )


class Server(Section):
    host: str = Field("127.0.0.1", description="address `segone serve` listens on")
    port: int = Field(8321, ge=0, le=65535, description="its port")
    online_url: str = Field(
        "sqlite:///online.db",
        description="online store: SQLite file (WAL) relative to the project, or "
        "`postgresql://user@host:port/db` (`?schema=NAME` to use a schema)",
    )
    write_keys: StrList = Field(
        (),
        description="keys that may send events (HTTP Basic user name, or `writeKey` in the body) "
        "and nothing else",
    )
    admin_tokens: StrList = Field(
        (),
        description="Bearer tokens for `GET`/`DELETE /v1/profiles/{identifier}` (and every "
        "other endpoint)",
    )
    decide_tokens: StrList = Field(
        (), description="Bearer tokens for `/v1/decide` and `/v1/feedback`"
    )
    webhook_url: str = Field("", description="triggers are POSTed here when set")
    webhook_secret: str = Field(
        "",
        description="key of the Standard Webhooks `webhook-signature` header (`whsec_<base64>` "
        "or any string; required with a URL)",
    )
    webhook_max_attempts: int = Field(
        5, gt=0, description="failed deliveries after which a trigger goes to `dead_letters`"
    )
    webhook_backoff_seconds: float = Field(
        1.0, ge=0, description="first retry delay; doubles with each attempt"
    )
    max_message_bytes: int = Field(
        32 * 1024,
        gt=0,
        description="largest message (Segment's limit): larger ones are rejected with 400",
    )
    max_batch_bytes: int = Field(
        500 * 1024,
        gt=0,
        description="largest request body (Segment's 500 KB): larger ones get 413",
    )
    frequency_cap_per_day: int = Field(
        3, ge=0, description="follow-ups `/v1/decide` may plan per person per channel per day"
    )
    channels: StrList = Field(
        ("email", "sms", "push"),
        description="follow-up channels `/v1/decide` chooses from (each only with the person's "
        "consent)",
    )
    earliest_timestamp: str = Field(
        "2000-01-01T00:00:00+00:00",
        description="earliest event time taken as sent; an earlier one (a device clock at 1970) "
        "is replaced by the time received, the original kept as `originalTimestamp`",
    )
    timestamp_future_days: float = Field(
        1.0,
        ge=0,
        description="how far after its receipt an event time may lie; a later one is replaced "
        "by the time received",
    )
    writer: Literal["process", "thread"] = Field(
        "process",
        description="where writes run: a writer process beside the server (the per-event work "
        'gets its own core), or `"thread"` (one process)',
    )
    keys_file: str = Field(
        "keys.json",
        description="keys made with `segone keys` (hashed; scopes, origins, rate per key), "
        "relative to the project",
    )
    cors_origins: StrList = Field(
        (),
        description="origins of web pages (`https://shop.example.com`, or `*`) that may call the "
        "API with any key (CORS); keys add their own",
    )
    rate_limit_per_second: float = Field(
        0.0,
        ge=0,
        description="requests per second per key (token bucket; 0: no limit); past it a 429 "
        "with `Retry-After`",
    )
    rate_limit_burst: float = Field(
        0.0,
        ge=0,
        description="requests a key may send at once above its rate (0: one second's worth)",
    )
    tracing: bool = Field(
        False, description="an OpenTelemetry span per request (needs `opentelemetry-api`)"
    )

    @field_validator("write_keys", "admin_tokens", "decide_tokens", "channels")
    @classmethod
    def _non_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not all(x.strip() for x in v):
            raise ValueError("must be a list of non-empty strings")
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(parse_origin(o, "origin") for o in v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("earliest_timestamp")
    @classmethod
    def _iso(cls, v: str) -> str:
        try:
            t = datetime.fromisoformat(v.strip())
        except ValueError:
            raise ValueError(f"must be an ISO-8601 date or time, not {v!r}") from None
        return (t.replace(tzinfo=UTC) if t.tzinfo is None else t).isoformat()

    @model_validator(mode="after")
    def _signed(self) -> Server:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(
                "webhook_url is set but no webhook_secret (set SEGONE_SERVER__WEBHOOK_SECRET): "
                "receivers could not tell our calls from forgeries"
            )
        return self


def _empty(cls: type[_M]) -> Callable[[], _M]:
    """A section with every default (typed for mypy, which does not see pydantic defaults)."""
    return lambda: cls.model_validate({})


class SettingsModel(BaseSettings):
    """All of ``segone.toml``; the environment is read by ``EnvSettingsSource`` over this class
    (``SEGONE_<SECTION>__<KEY>``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    warehouse: Warehouse = Field(default_factory=_empty(Warehouse))
    ingest: Ingest = Field(default_factory=_empty(Ingest))
    identity: Identity = Field(default_factory=_empty(Identity))
    lifecycle: Lifecycle = Field(default_factory=_empty(Lifecycle))
    segments: Segments = Field(default_factory=_empty(Segments))
    models: Models = Field(default_factory=_empty(Models))
    server: Server = Field(default_factory=_empty(Server))


SECTIONS: dict[str, type[Section]] = {
    name: f.annotation  # type: ignore[misc]
    for name, f in SettingsModel.model_fields.items()
}
#: ``[project]`` is accepted and ignored (a place for the user's own notes).
IGNORED_SECTIONS = {"project"}


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Origin, str]]:
    """``SEGONE_<SECTION>__<KEY>`` variables, through pydantic-settings."""
    src = EnvSettingsSource(SettingsModel)
    src.env_vars = parse_env_vars(environ, False, False, None)
    try:
        data = src()
    except SettingsError:  # SEGONE_MODELS=foo: a whole section that is not JSON
        present = {k.upper() for k in environ}
        whole = [f"{ENV_PREFIX}{n}".upper() for n in SECTIONS]
        var = next((v for v in whole if v in present), "SEGONE_<SECTION>")
        raise ConfigError(
            f"environment {var}: a section given whole must be a JSON object; or set its keys "
            f"one by one ({var}{NESTED}<KEY>)"
        ) from None
    present = {k.upper() for k in environ}
    names: dict[Origin, str] = {}
    for section, values in data.items():
        if isinstance(values, dict):
            for key in values:
                var = f"{ENV_PREFIX}{section}{NESTED}{key}".upper()
                names[(section, key)] = var if var in present else f"{ENV_PREFIX}{section.upper()}"
    return data, names


def _legacy_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[Origin, str]]:
    data: dict[str, Any] = {}
    names: dict[Origin, str] = {}
    for var, (section, key) in LEGACY_ENV.items():
        if environ.get(var, "").strip():
            data.setdefault(section, {})[key] = environ[var]
            names[(section, key)] = var
    return data, names


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _typed_bools(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (texts from the environment or flags) with the texts of boolean settings read
    as booleans (1/true/yes/on, 0/false/no/off; anything else is left to fail validation)."""
    for section, values in data.items():
        cls = SECTIONS.get(section)
        if cls is None or not isinstance(values, dict):
            continue
        for key, v in values.items():
            f = cls.model_fields.get(key)
            if f is not None and f.annotation is bool and isinstance(v, str):
                t = v.strip().lower()
                values[key] = True if t in _TRUE else False if t in _FALSE else v
    return data


class Layers:
    """The values of every source, and which one gave each key."""

    def __init__(
        self,
        file_data: dict[str, Any],
        file_name: str,
        flags: Mapping[str, Mapping[str, Any]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        env, env_names = _env_layer(environ)
        legacy, legacy_names = _legacy_layer(environ)
        # lowest first; each later one wins, key by key
        self.layers: list[tuple[dict[str, Any], dict[Origin, str], str]] = [
            (file_data, {}, "file"),
            (_typed_bools(legacy), legacy_names, "env"),
            (_typed_bools(env), env_names, "env"),
            (_typed_bools({k: dict(v) for k, v in (flags or {}).items()}), {}, "flag"),
        ]
        self.file_name = file_name

    def merged(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for data, _, _ in self.layers:
            for section, values in data.items():
                if isinstance(values, dict) and isinstance(out.get(section), dict):
                    out[section] = {**out[section], **values}
                else:
                    out[section] = values
        return out

    def origin(self, section: str, key: str) -> Origin:
        """(kind, where) of the value in effect for ``section.key``."""
        for data, names, kind in reversed(self.layers):
            values = data.get(section)
            if isinstance(values, dict) and key in values:
                if kind == "file":
                    return ("file", self.file_name)
                if kind == "flag":
                    return ("flag", f"--set {section}.{key}")
                return ("env", names.get((section, key), "environment"))
        return ("default", "")

    def where(self, section: str, key: str | None) -> str:
        """Where a bad value came from, for an error message."""
        if key is None:
            return self.file_name
        kind, where = self.origin(section, key)
        if kind == "file" or kind == "default":
            return self.file_name
        return f"environment {where}" if kind == "env" else where


def validate(layers: Layers) -> SettingsModel:
    """The model over the merged sources; errors name the key and its source."""
    data = layers.merged()
    unknown = set(data) - set(SECTIONS) - IGNORED_SECTIONS
    if unknown:
        raise ConfigError(
            f"{layers.file_name}: unknown section(s) {sorted(unknown)}; "
            f"known: {sorted(set(SECTIONS) | IGNORED_SECTIONS)}"
        )
    for s in IGNORED_SECTIONS:
        data.pop(s, None)
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{layers.file_name}: {section} must be a table: [{section}]")
    try:
        return SettingsModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, layers)) from None


def _explain(exc: ValidationError, layers: Layers) -> str:
    lines = []
    for e in exc.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        section = loc[0] if loc else ""
        key = loc[1] if len(loc) > 1 else None
        name = ".".join(loc) or "settings"
        source = layers.where(section, key)
        if e["type"] == "extra_forbidden" and key is not None:
            known = list(SECTIONS[section].model_fields) if section in SECTIONS else []
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {section}.{close[0]}?" if close else ""
            lines.append(f"{source}: unknown setting {name}{hint}")
            continue
        msg = re.sub(r"^Value error, ", "", e["msg"])
        value = e.get("input")
        shown = "" if (section, key) in SECRETS or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{source}: {name}: {msg}{shown}")
    return "\n".join(lines)


def mask(section: str, key: str, value: Any) -> Any:
    """``value`` fit to print: secrets as ``****``, a password in a URL hidden."""
    if (section, key) in SECRETS:
        if isinstance(value, tuple | list):
            return [f"****{v[-2:]}" if len(v) > 8 else "****" for v in value]
        return "****" if value else ""
    if isinstance(value, str) and "://" in value:
        return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:****@", value)
    return value


def markdown_table() -> str:
    """The table of every setting in docs/configuration.md, made from the model."""
    rows = ["| setting | default | environment | meaning |", "|---|---|---|---|"]
    legacy = {v: k for k, v in LEGACY_ENV.items()}
    for section, cls in SECTIONS.items():
        for key, f in cls.model_fields.items():
            default = f.get_default(call_default_factory=True)
            if key in ("mapping", "presets"):
                shown = "—"
            elif isinstance(default, tuple):
                shown = "`[" + ", ".join(f'"{x}"' for x in default) + "]`"
            elif isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            elif isinstance(default, str) and (default == "" or section == "server"):
                shown = f'`"{default}"`'
            else:
                shown = f"`{default}`"
            env = f"`{ENV_PREFIX}{section.upper()}{NESTED}{key.upper()}`"
            if (section, key) in legacy:
                env += f", `{legacy[(section, key)]}`"
            if key in ("mapping", "presets"):
                env = "—"
            rows.append(f"| `[{section}] {key}` | {shown} | {env} | {f.description} |")
    return "\n".join(rows) + "\n"


def effective(
    root: Path,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every setting of the project at ``root`` as in effect now: ``key``, ``value`` (secrets
    masked), ``source`` (flag, env, file or default) and ``where`` (the flag, the variable or
    the file). ``segone config show`` prints it."""
    from segone.config import CONFIG_FILE, read_file

    layers = Layers(read_file(root), str(root / CONFIG_FILE), flags, environ)
    m = validate(layers)
    rows = []
    for section in SECTIONS:
        values = getattr(m, section)
        for key in type(values).model_fields:
            kind, where = layers.origin(section, key)
            rows.append(
                {
                    "key": f"{section}.{key}",
                    "value": mask(section, key, getattr(values, key)),
                    "source": kind,
                    "where": where,
                }
            )
    return rows
