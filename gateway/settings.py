"""Settings: one frozen object built once from an explicit mapping.

Sources, later ones winning:

1. ``config/default.toml`` (every setting has a default there and is documented in the README),
2. the TOML file named by ``CG_CONFIG_FILE`` (optional),
3. environment variables ``CG_<KEY>``; nested tables use ``__``, e.g.
   ``CG_SOURCES__CORE_BANKING__API_KEY``.

An unknown key, a value of the wrong type or an out-of-range value raises
:class:`SettingsError` naming the key, and ``contact-gateway`` stops before it
opens anything. Secrets are wrapped in :class:`Secret`, whose ``repr`` and
``str`` never show the value.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"
ENV_PREFIX = "CG_"


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names it."""


class Secret:
    """A secret value that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True, slots=True)
class SourceSettings:
    """How one channel system (a *source*) authenticates to the gateway.

    ``auth`` is ``api_key`` (header ``X-API-Key`` or ``Authorization: Bearer``),
    ``webhook`` (Standard Webhooks signature, ``whsec_`` secrets; several for
    key rotation) or ``none`` (only for sources whose transport is trusted, such
    as the in-process AMI and IMAP pollers).
    """

    name: str
    auth: str
    api_keys: tuple[Secret, ...] = ()
    webhook_secrets: tuple[Secret, ...] = ()
    channels: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("events",)


_SOURCE_KEYS = {"auth", "api_key", "api_keys", "webhook_secret", "webhook_secrets", "channels", "scopes"}
_SOURCE_AUTH = {"api_key", "webhook", "none"}
_SOURCE_SCOPES = {"events", "customers", "read", "link"}


def _doc(text: str, *, secret: bool = False) -> dict[str, Any]:
    return {"doc": text, "secret": secret}


@dataclasses.dataclass(frozen=True, slots=True)
class ScreenpopSettings:
    """The screen-pop and the agent desktop (table ``[screenpop]``)."""

    alert_rules_file: str = dataclasses.field(
        metadata=_doc("TOML file of the alert rules (relative paths start at the project directory)."))
    pop_url_template: str = dataclasses.field(
        metadata=_doc("URL of a pop, for CTI systems that open URLs; placeholders `{base_url}`, "
                      "`{interaction_id}`, `{agent_id}`."))
    summary_cache_ttl_seconds: int = dataclasses.field(
        metadata=_doc("How long a cached summary may live in Redis (it is also dropped on every new event)."))
    current_pop_ttl_seconds: int = dataclasses.field(
        metadata=_doc("How long an agent's current pop is kept for a desktop that reconnects."))
    push: bool = dataclasses.field(
        metadata=_doc("Run the pop subscriber (Redis pub/sub) and the agent WebSocket push in this process."))
    early_pop: bool = dataclasses.field(
        metadata=_doc("Pop a ringing call while its event commits, and warm the summaries of callers still in "
                      "the IVR or the queue (see README \"Screen-pop\"); `false` pops only after the commit."))
    demo_call_interval_seconds: float = dataclasses.field(
        metadata=_doc("With `serve --demo`: seconds between simulated calls ringing at the demo agents."))


@dataclasses.dataclass(frozen=True, slots=True)
class MobileSettings:
    """The Segment-compatible mobile banking API (``/v1/channels/mobile/v1/...``)."""

    segment_events_file: Path = dataclasses.field(metadata=_doc(
        "TOML mapping of Segment track event names to canonical types and of traits/properties to "
        "identifiers; relative paths are under the project directory."))
    max_call_bytes: int = dataclasses.field(metadata=_doc(
        "Largest decompressed body of a single-message call (`track`, `identify`, ...); Segment's 32 KB."))
    max_batch_bytes: int = dataclasses.field(metadata=_doc(
        "Largest decompressed body of a `batch` call; Segment's 500 KB."))


@dataclasses.dataclass(frozen=True, slots=True)
class SessionSettings:
    """People's login sessions (table ``[sessions]``): timeouts, the cookie, login throttling, hashing."""

    idle_timeout_seconds: int = dataclasses.field(
        metadata=_doc("A session unused for this long ends (the user logs in again)."))
    absolute_timeout_seconds: int = dataclasses.field(
        metadata=_doc("A session ends this long after login, however busy it is."))
    cookie_secure: str = dataclasses.field(
        metadata=_doc("`auto` (Secure cookie when `public_url` is https), `true`, or `false` for plain-http "
                      "localhost development."))
    cookie_samesite: str = dataclasses.field(metadata=_doc("SameSite attribute of the session cookie: "
                                                           "`Lax` or `Strict`."))
    login_max_failures_per_user: int = dataclasses.field(
        metadata=_doc("Failed logins of one user name within `login_throttle_seconds` before it is throttled."))
    login_max_failures_per_ip: int = dataclasses.field(
        metadata=_doc("Failed logins from one client address within `login_throttle_seconds` before it is "
                      "throttled."))
    login_throttle_seconds: int = dataclasses.field(
        metadata=_doc("Window of the login failure counters; a throttled login may retry after it."))
    password_time_cost: int = dataclasses.field(metadata=_doc("argon2id passes when hashing a password."))
    password_memory_kib: int = dataclasses.field(metadata=_doc("argon2id memory per hash, in KiB."))


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The supervisor console (table ``[console]``): how figures are computed and shown."""

    timezone: str = dataclasses.field(metadata=_doc("Time zone of the console's dates, hours and days "
                                                    "(IANA name)."))
    service_level_seconds: int = dataclasses.field(
        metadata=_doc("Service level (服务水平): share of offered calls answered within this many seconds."))
    repeat_contact_days: int = dataclasses.field(
        metadata=_doc("A contact is repeated (重复来电) when the customer contacts again within this many days."))
    repeat_contact_channels: str = dataclasses.field(
        metadata=_doc("Comma-separated channels counted for repeat contacts (assisted channels)."))
    page_size: int = dataclasses.field(metadata=_doc("Rows per page of the contact log and the audit trail."))
    qa_form: Path = dataclasses.field(metadata=_doc("The quality-review scoring form (TOML), relative to the "
                                                    "project directory unless absolute."))
    qa_sample_max: int = dataclasses.field(metadata=_doc("Largest random sample a supervisor may draw at once."))
    export_chunk_rows: int = dataclasses.field(
        metadata=_doc("Rows fetched per round trip of the CSV export's server-side cursor (its memory bound)."))

    def repeat_channels(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.repeat_contact_channels.split(",") if c.strip())

    def qa_form_path(self) -> Path:
        return self.qa_form if self.qa_form.is_absolute() else PROJECT_ROOT / self.qa_form


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the gateway. Each field's ``doc`` is the README's text for it."""

    http_host: str = dataclasses.field(metadata=_doc("Address the HTTP server binds to."))
    http_port: int = dataclasses.field(metadata=_doc("TCP port of the HTTP server (0 picks a free one)."))
    event_loop: str = dataclasses.field(metadata=_doc(
        "`uvloop` (libuv: fewer system calls and less loop overhead per request) or `asyncio` (the "
        "standard library's loop)."))
    http_workers: int = dataclasses.field(metadata=_doc(
        "Gateway processes serving the one port (SO_REUSEPORT: the kernel spreads connections); 0 means one "
        "per CPU core. The first also runs the AMI client, the IMAP poller and demo traffic."))
    public_url: str = dataclasses.field(
        metadata=_doc("Base URL people and CTI systems use to reach the gateway; empty means http://host:port.")
    )
    database_url: Secret = dataclasses.field(
        metadata=_doc("PostgreSQL URL; empty starts an embedded PostgreSQL under data_dir.", secret=True)
    )
    redis_url: Secret = dataclasses.field(
        metadata=_doc("Redis URL; empty starts an embedded Redis under data_dir.", secret=True)
    )
    data_dir: Path = dataclasses.field(metadata=_doc("Directory for the embedded stores' data."))
    redis_pool_max: int = dataclasses.field(metadata=_doc(
        "Most Redis connections per process; a command waits (up to 2 s) for a free one beyond that."))
    db_pool_min: int = dataclasses.field(metadata=_doc("Minimum connections in the PostgreSQL pool."))
    db_pool_max: int = dataclasses.field(metadata=_doc("Maximum connections in the PostgreSQL pool."))
    db_command_timeout: float = dataclasses.field(metadata=_doc("Seconds before a PostgreSQL command is cancelled."))
    slow_query_ms: float = dataclasses.field(metadata=_doc("Queries slower than this are logged with their name."))
    migrate_on_start: bool = dataclasses.field(metadata=_doc("Apply pending migrations when `serve` starts."))
    log_format: str = dataclasses.field(
        metadata=_doc("`auto` (coloured on a terminal, JSON lines otherwise), `json` or `console`.")
    )
    log_level: str = dataclasses.field(metadata=_doc("`debug`, `info`, `warning` or `error`."))
    access_log: bool = dataclasses.field(metadata=_doc("Write one access log line per request."))
    shutdown_grace_seconds: float = dataclasses.field(
        metadata=_doc("On SIGTERM/SIGINT, how long in-flight requests may take to finish.")
    )
    max_body_bytes: int = dataclasses.field(metadata=_doc("Largest request body accepted (413 beyond)."))
    identity_hmac_keys: tuple[Secret, ...] = dataclasses.field(
        metadata=_doc(
            "Keys for the keyed hash of identifiers, newest first; the first hashes new values, "
            "all are tried when matching (key rotation).",
            secret=True,
        )
    )
    session_secret: Secret = dataclasses.field(
        metadata=_doc("Secret for signing session and CSRF tokens; empty generates one per start.", secret=True)
    )
    sources: Mapping[str, SourceSettings] = dataclasses.field(
        metadata=_doc("Per-source authentication: table `[sources.<name>]` with `auth`, `api_keys`, "
                      "`webhook_secrets`, `channels`, `scopes`.")
    )
    demo: bool = dataclasses.field(metadata=_doc("Seed demo data on start when the database is empty."))
    ingest_workers: int = dataclasses.field(
        metadata=_doc("Concurrent group-commit transactions (each takes one pooled connection).")
    )
    ingest_max_batch: int = dataclasses.field(metadata=_doc("Most events committed in one group transaction."))
    ingest_commit_window_ms: float = dataclasses.field(
        metadata=_doc("How long a lone event may wait for others to share its commit (0: never wait).")
    )
    sessions: SessionSettings = dataclasses.field(metadata=_doc("People's login sessions."))
    console: ConsoleSettings = dataclasses.field(metadata=_doc("The supervisor console."))
    screenpop: ScreenpopSettings = dataclasses.field(metadata=_doc("The screen-pop and the agent desktop."))
    mobile: MobileSettings = dataclasses.field(metadata=_doc("Segment-compatible mobile banking API."))
    ami: AmiSettings = dataclasses.field(metadata=_doc("The Asterisk Manager Interface client, table `[ami]`."))
    imap: ImapSettings = dataclasses.field(metadata=_doc("The IMAP poller, table `[imap]`."))

    @property
    def embedded_postgres(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{self.http_port}"

    def session_cookie_secure(self) -> bool:
        """Whether the session cookie carries ``Secure``: ``auto`` follows the scheme of ``public_url``."""
        if self.sessions.cookie_secure == "auto":
            return self.public_url.lower().startswith("https://")
        return self.sessions.cookie_secure == "true"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, slots=True)
class AmiSettings:
    """The Asterisk Manager Interface client (``[ami]``): connection, login and the event mapping."""

    enabled: bool = dataclasses.field(metadata=_doc("Run the AMI client in the gateway process."))
    host: str = dataclasses.field(metadata=_doc("Asterisk host of the manager interface."))
    port: int = dataclasses.field(metadata=_doc("TCP port of the manager interface (manager.conf `port`)."))
    username: str = dataclasses.field(metadata=_doc("Manager user (a `[user]` section of manager.conf)."))
    secret: Secret = dataclasses.field(metadata=_doc("Manager user's secret.", secret=True))
    auth: str = dataclasses.field(
        metadata=_doc("`md5` (challenge-response: the secret never crosses the wire) or `plain`.")
    )
    source: str = dataclasses.field(
        metadata=_doc("`source` of the events it produces, e.g. `cti.asterisk` (a sub-name of a configured source).")
    )
    connect_timeout: float = dataclasses.field(metadata=_doc("Seconds to connect, read the banner and log in."))
    reconnect_initial: float = dataclasses.field(
        metadata=_doc("First reconnect delay in seconds; doubles per failure, with jitter.")
    )
    reconnect_max: float = dataclasses.field(metadata=_doc("Longest reconnect delay in seconds."))
    ping_interval: float = dataclasses.field(
        metadata=_doc("Seconds of silence after which a `Ping` action checks the connection (0: never).")
    )
    batch_max: int = dataclasses.field(metadata=_doc("Most events handed to ingest in one submit."))
    max_frame_bytes: int = dataclasses.field(metadata=_doc("Largest AMI frame; longer ones are quarantined."))
    ivr_variables: tuple[str, ...] = dataclasses.field(
        metadata=_doc("Dialplan variables whose `VarSet` is an IVR choice (appended to the IVR path).")
    )
    ivr_user_events: tuple[str, ...] = dataclasses.field(
        metadata=_doc("`UserEvent` names carrying IVR data (`Choice`, `Menu`, `CustomerNo`, `AuthLevel`).")
    )
    customer_no_variable: str = dataclasses.field(
        metadata=_doc("Dialplan variable holding the customer number the IVR verified.")
    )
    auth_level_variable: str = dataclasses.field(
        metadata=_doc("Dialplan variable holding how the caller was verified (`ivr_pin`, `voiceprint`, …).")
    )
    verified_auth_level: str = dataclasses.field(
        metadata=_doc("`auth_level` of an IVR-verified customer number when the dialplan sets none.")
    )
    internal_number_pattern: str = dataclasses.field(
        metadata=_doc("Regular expression of internal extensions: such caller IDs are not customer phones.")
    )
    agents: Mapping[str, str] = dataclasses.field(
        metadata=_doc("Table `[ami.agents]`: queue member interface, member name or device → agent id "
                      "(unlisted ones use the device's last part, `PJSIP/8001` → `8001`).")
    )

    def __post_init__(self) -> None:
        if self.auth not in ("md5", "plain"):
            raise SettingsError(f"setting 'ami.auth': must be md5 or plain (got {self.auth!r})")
        if not 0 < self.port <= 65535:
            raise SettingsError(f"setting 'ami.port': must be between 1 and 65535 (got {self.port})")
        if self.reconnect_initial <= 0 or self.reconnect_max < self.reconnect_initial:
            raise SettingsError("setting 'ami.reconnect_max': must be at least ami.reconnect_initial, "
                                "and that above 0")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", self.source):
            raise SettingsError(f"setting 'ami.source': not a valid event source name (got {self.source!r})")
        if self.batch_max < 1 or self.max_frame_bytes < 1024:
            raise SettingsError("setting 'ami.batch_max': must be at least 1 (and ami.max_frame_bytes 1024)")
        try:
            re.compile(self.internal_number_pattern)
        except re.error as exc:
            raise SettingsError(f"setting 'ami.internal_number_pattern': not a regular expression: {exc}") from None


SETTING_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}

# Nested tables of settings: the field's type name -> its frozen dataclass. A field typed with one of
# these is read from a TOML table (``[ami]``) or CG_<TABLE>__<KEY> variables; its own fields carry docs
# like Settings' and are documented in the README as ``table.key``.
NESTED_TABLES: dict[str, type] = {}
NESTED_TABLES["SessionSettings"] = SessionSettings
NESTED_TABLES["ConsoleSettings"] = ConsoleSettings
NESTED_TABLES["ScreenpopSettings"] = ScreenpopSettings
NESTED_TABLES["MobileSettings"] = MobileSettings
NESTED_TABLES["AmiSettings"] = AmiSettings
NESTED_TABLES["SessionSettings"] = SessionSettings


@dataclasses.dataclass(frozen=True, slots=True)
class ImapSettings:
    """The IMAP poller (``[imap]``): which mailbox to read and what to do with processed mail."""

    enabled: bool = dataclasses.field(metadata=_doc("Run the IMAP poller inside the gateway."))
    host: str = dataclasses.field(metadata=_doc("IMAP server host."))
    port: int = dataclasses.field(metadata=_doc("IMAP server port (993 for `ssl`, 143 for `starttls`/`none`)."))
    security: str = dataclasses.field(
        metadata=_doc("`ssl` (implicit TLS), `starttls` (upgrade after connect) or `none` (trusted networks only).")
    )
    verify_tls: bool = dataclasses.field(metadata=_doc("Verify the server's TLS certificate and host name."))
    user: str = dataclasses.field(metadata=_doc("IMAP login name."))
    password: Secret = dataclasses.field(metadata=_doc("IMAP password.", secret=True))
    mailbox: str = dataclasses.field(metadata=_doc("Mailbox to read (e.g. `INBOX`)."))
    processed_action: str = dataclasses.field(
        metadata=_doc("After a mail is committed: `seen` (flag it `\\Seen`) or `move` (to `processed_folder`).")
    )
    processed_folder: str = dataclasses.field(metadata=_doc("Folder processed mail is moved to with `move`."))
    poll_interval: float = dataclasses.field(metadata=_doc("Seconds between polls when the server lacks IDLE."))
    idle_seconds: float = dataclasses.field(
        metadata=_doc("Longest IDLE before it is renewed (servers drop IDLE after 30 minutes).")
    )
    reconnect_min_seconds: float = dataclasses.field(metadata=_doc("First reconnect delay; doubles per failure."))
    reconnect_max_seconds: float = dataclasses.field(metadata=_doc("Longest reconnect delay."))
    timeout: float = dataclasses.field(metadata=_doc("Seconds before an IMAP command is abandoned."))
    batch_size: int = dataclasses.field(metadata=_doc("Mails fetched and submitted together."))
    source: str = dataclasses.field(metadata=_doc("Source name of the events the poller submits."))


NESTED_TABLES["ImapSettings"] = ImapSettings


def documented_settings() -> dict[str, str]:
    """Every setting's dotted name and doc (the README must list each), nested tables included."""
    out: dict[str, str] = {}

    def walk(cls: Any, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            nested = NESTED_TABLES.get(str(f.type))
            if nested is not None:
                walk(nested, f"{prefix}{f.name}.")
            else:
                out[prefix + f.name] = f.metadata.get("doc", "")

    walk(Settings, "")
    return out


def _coerce(key: str, raw: Any, field: dataclasses.Field[Any]) -> Any:
    """Turn a TOML or environment value into the field's type, or raise naming the key."""
    kind = field.type
    from_env = isinstance(raw, str)
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if from_env and raw.lower() in ("1", "true", "yes", "on"):
                return True
            if from_env and raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if kind == "str":
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return raw
        if kind == "Path":
            if not isinstance(raw, str):
                raise ValueError("expected a path")
            return Path(raw)
        if kind == "Secret":
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return Secret(raw)
        if kind == "tuple[str, ...]":
            if from_env:
                return tuple(v.strip() for v in raw.split(",") if v.strip())
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                raise ValueError("expected a list of strings")
            return tuple(raw)
        if kind == "Mapping[str, str]":
            pairs = [p.partition("=") for p in raw.split(",") if p.strip()] if from_env else None
            table = {k.strip(): v.strip() for k, _, v in pairs} if pairs is not None else raw
            if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
                raise ValueError("expected a table of strings (or key=value,key=value)")
            return types.MappingProxyType(dict(table))  # read-only, like the rest of the settings
        if kind == "tuple[Secret, ...]":
            values = [v.strip() for v in raw.split(",")] if from_env else raw
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError("expected a list of strings")
            return tuple(Secret(v) for v in values if v)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {key!r}: {exc} (got {_shown(field, raw)})") from None
    raise SettingsError(f"setting {key!r}: unsupported type {kind}")  # pragma: no cover - a programming error


def _shown(field: dataclasses.Field[Any], raw: Any) -> str:
    return "a hidden value" if field.metadata.get("secret") else repr(raw)


def _as_tuple(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(v.strip() for v in raw.split(",") if v.strip())
    if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        return tuple(raw)
    raise SettingsError(f"setting {key!r}: expected a list of strings")


def _parse_sources(raw: Any) -> dict[str, SourceSettings]:
    if not isinstance(raw, dict):
        raise SettingsError("setting 'sources': expected a table of sources")
    out: dict[str, SourceSettings] = {}
    for name, table in raw.items():
        key = f"sources.{name}"
        if not isinstance(table, dict):
            raise SettingsError(f"setting {key!r}: expected a table")
        unknown = set(table) - _SOURCE_KEYS
        if unknown:
            raise SettingsError(f"setting '{key}.{sorted(unknown)[0]}': unknown setting")
        auth = table.get("auth", "api_key")
        if auth not in _SOURCE_AUTH:
            raise SettingsError(f"setting '{key}.auth': must be one of {sorted(_SOURCE_AUTH)} (got {auth!r})")
        keys = list(_as_tuple(f"{key}.api_keys", table.get("api_keys", [])))
        if table.get("api_key"):
            keys.insert(0, str(table["api_key"]))
        secrets = list(_as_tuple(f"{key}.webhook_secrets", table.get("webhook_secrets", [])))
        if table.get("webhook_secret"):
            secrets.insert(0, str(table["webhook_secret"]))
        if auth == "api_key" and not keys:
            raise SettingsError(f"setting '{key}.api_keys': a source with auth 'api_key' needs at least one key")
        if auth == "webhook" and not secrets:
            raise SettingsError(f"setting '{key}.webhook_secrets': a webhook source needs at least one secret")
        for s in secrets:
            if not s.startswith("whsec_"):
                raise SettingsError(f"setting '{key}.webhook_secrets': secrets start with 'whsec_'")
        scopes = _as_tuple(f"{key}.scopes", table.get("scopes", ["events"]))
        bad = set(scopes) - _SOURCE_SCOPES
        if bad:
            raise SettingsError(f"setting '{key}.scopes': unknown scope {sorted(bad)[0]!r}")
        out[name] = SourceSettings(
            name=name,
            auth=auth,
            api_keys=tuple(Secret(k) for k in keys),
            webhook_secrets=tuple(Secret(s) for s in secrets),
            channels=_as_tuple(f"{key}.channels", table.get("channels", [])),
            scopes=scopes,
        )
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "CG_CONFIG_FILE" or name.startswith("CG_TEST_"):
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"environment {name}: conflicts with another variable")
        node[path[-1]] = value
    return out


def read_toml_file(path: Path, what: str, error: type[Exception] = SettingsError) -> dict[str, Any]:
    """Read a TOML file of configuration or rules; a missing or malformed one raises ``error`` naming it."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {str(path)!r}: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    return read_toml_file(path, "config file")


def _build_table(cls: Any, prefix: str, values: Any) -> Any:
    """Build a (nested) settings dataclass from a table; every key must be known and present."""
    if not isinstance(values, Mapping):
        raise SettingsError(f"setting {prefix.rstrip('.')!r}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise SettingsError(f"setting {prefix + sorted(unknown)[0]!r}: unknown setting")
    missing = set(fields) - set(values)
    if missing:
        raise SettingsError(f"setting {prefix + sorted(missing)[0]!r}: missing (add it to config/default.toml)")
    kwargs: dict[str, Any] = {}
    for key, field in fields.items():
        raw = values[key]
        nested = NESTED_TABLES.get(str(field.type))
        if key == "sources" and cls is Settings:
            kwargs[key] = _parse_sources(raw)
        elif nested is not None:
            kwargs[key] = _build_table(nested, f"{prefix}{key}.", raw)
        else:
            kwargs[key] = _coerce(prefix + key, raw, field)
    return cls(**kwargs)


def build_settings(values: Mapping[str, Any]) -> Settings:
    """Build settings from one merged mapping; raise :class:`SettingsError` naming the bad key."""
    s: Settings = _build_table(Settings, "", values)
    _check_ranges(s)
    return s


def _check_ranges(s: Settings) -> None:
    if not 0 <= s.http_port <= 65535:
        raise SettingsError(f"setting 'http_port': must be between 0 and 65535 (got {s.http_port})")
    if s.db_pool_min < 1 or s.db_pool_max < s.db_pool_min:
        raise SettingsError("setting 'db_pool_max': must be at least db_pool_min, and db_pool_min at least 1")
    if s.event_loop not in ("uvloop", "asyncio"):
        raise SettingsError(f"setting 'event_loop': must be uvloop or asyncio (got {s.event_loop!r})")
    if s.log_format not in ("auto", "json", "console"):
        raise SettingsError(f"setting 'log_format': must be auto, json or console (got {s.log_format!r})")
    if s.log_level not in ("debug", "info", "warning", "error"):
        raise SettingsError(f"setting 'log_level': must be debug, info, warning or error (got {s.log_level!r})")
    if s.max_body_bytes < 1024:
        raise SettingsError("setting 'max_body_bytes': must be at least 1024")
    if s.shutdown_grace_seconds < 0:
        raise SettingsError("setting 'shutdown_grace_seconds': must not be negative")
    if not 1 <= s.ingest_workers < s.db_pool_max:
        raise SettingsError("setting 'ingest_workers': must be at least 1 and below db_pool_max")
    if not 1 <= s.ingest_max_batch <= 50_000:
        raise SettingsError("setting 'ingest_max_batch': must be between 1 and 50000")
    if not 0 <= s.ingest_commit_window_ms <= 100:
        raise SettingsError("setting 'ingest_commit_window_ms': must be between 0 and 100")
    if not 1024 <= s.mobile.max_call_bytes <= s.mobile.max_batch_bytes:
        raise SettingsError("setting 'mobile.max_call_bytes': must be at least 1024 and at most mobile.max_batch_bytes")
    _check_imap(s.imap)
    if not s.identity_hmac_keys:
        raise SettingsError("setting 'identity_hmac_keys': at least one key is needed")
    _check_screenpop(s.screenpop)
    _check_sessions(s.sessions)
    _check_console(s.console)


def _check_console(cs: ConsoleSettings) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(cs.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"setting 'console.timezone': unknown time zone {cs.timezone!r}") from None
    if not 1 <= cs.service_level_seconds <= 3600:
        raise SettingsError("setting 'console.service_level_seconds': must be between 1 and 3600")
    if not 1 <= cs.repeat_contact_days <= 90:
        raise SettingsError("setting 'console.repeat_contact_days': must be between 1 and 90")
    if not cs.repeat_channels():
        raise SettingsError("setting 'console.repeat_contact_channels': name at least one channel")
    if not 10 <= cs.page_size <= 500:
        raise SettingsError("setting 'console.page_size': must be between 10 and 500")
    if not 10 <= cs.export_chunk_rows <= 100_000:
        raise SettingsError("setting 'console.export_chunk_rows': must be between 10 and 100000")
    if not 1 <= cs.qa_sample_max <= 1000:
        raise SettingsError("setting 'console.qa_sample_max': must be between 1 and 1000")


def _check_screenpop(sp: ScreenpopSettings) -> None:
    for name in ("summary_cache_ttl_seconds", "current_pop_ttl_seconds"):
        if getattr(sp, name) < 1:
            raise SettingsError(f"setting 'screenpop.{name}': must be at least 1")
    if sp.demo_call_interval_seconds <= 0:
        raise SettingsError("setting 'screenpop.demo_call_interval_seconds': must be greater than 0")
    try:
        sp.pop_url_template.format(base_url="", interaction_id="", agent_id="")
    except (KeyError, IndexError, ValueError) as exc:
        raise SettingsError(f"setting 'screenpop.pop_url_template': unknown placeholder or bad braces ({exc})") from None


def _check_sessions(ss: SessionSettings) -> None:
    if ss.idle_timeout_seconds < 60:
        raise SettingsError("setting 'sessions.idle_timeout_seconds': must be at least 60")
    if ss.absolute_timeout_seconds < ss.idle_timeout_seconds:
        raise SettingsError("setting 'sessions.absolute_timeout_seconds': must be at least idle_timeout_seconds")
    if ss.cookie_secure not in ("auto", "true", "false"):
        raise SettingsError(f"setting 'sessions.cookie_secure': must be auto, true or false "
                            f"(got {ss.cookie_secure!r})")
    if ss.cookie_samesite not in ("Lax", "Strict"):
        raise SettingsError(f"setting 'sessions.cookie_samesite': must be Lax or Strict (got {ss.cookie_samesite!r})")
    for name in ("login_max_failures_per_user", "login_max_failures_per_ip", "login_throttle_seconds",
                 "password_time_cost"):
        if getattr(ss, name) < 1:
            raise SettingsError(f"setting 'sessions.{name}': must be at least 1")
    if ss.password_memory_kib < 1024:
        raise SettingsError("setting 'sessions.password_memory_kib': must be at least 1024")


def _check_imap(m: ImapSettings) -> None:
    if m.security not in ("ssl", "starttls", "none"):
        raise SettingsError(f"setting 'imap.security': must be ssl, starttls or none (got {m.security!r})")
    if m.processed_action not in ("seen", "move"):
        raise SettingsError(f"setting 'imap.processed_action': must be seen or move (got {m.processed_action!r})")
    if m.processed_action == "move" and not m.processed_folder:
        raise SettingsError("setting 'imap.processed_folder': needed when processed_action is move")
    if not 0 < m.port <= 65535:
        raise SettingsError(f"setting 'imap.port': must be between 1 and 65535 (got {m.port})")
    if m.batch_size < 1:
        raise SettingsError("setting 'imap.batch_size': must be at least 1")
    if m.reconnect_min_seconds <= 0 or m.reconnect_max_seconds < m.reconnect_min_seconds:
        raise SettingsError("setting 'imap.reconnect_max_seconds': must be at least reconnect_min_seconds (> 0)")
    if m.poll_interval <= 0 or m.idle_seconds <= 0 or m.timeout <= 0:
        raise SettingsError("setting 'imap.poll_interval': poll_interval, idle_seconds and timeout must be positive")
    if m.enabled and not (m.host and m.user and m.mailbox):
        raise SettingsError("setting 'imap.host': host, user and mailbox are needed when imap.enabled is true")


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Load ``config/default.toml``, then ``CG_CONFIG_FILE``, then ``CG_*`` variables, then ``overrides``."""
    env = os.environ if env is None else env
    values = _read_toml(DEFAULT_CONFIG)
    if env.get("CG_CONFIG_FILE"):
        values = _merge(values, _read_toml(Path(env["CG_CONFIG_FILE"])))
    values = _merge(values, _env_overrides(env))
    values = _merge(values, overrides)
    return build_settings(values)
