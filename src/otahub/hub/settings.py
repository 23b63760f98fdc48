"""Settings of a running hub: every option of ``otahub serve``, resolved once.

Each option is one field of :class:`HubSettings`, named as the option with
underscores (``--mqtt-port`` is ``mqtt_port``). :func:`resolve_settings`
takes each from the first place that gives it:

1. the command line (``--mqtt-port 1884``),
2. the environment (``OTAHUB_MQTT_PORT=1884``; an empty variable is unset),
3. the ``--config`` TOML file (``mqtt_port = 1884``; an unknown key is an error),
4. the field's default.

Every value goes through the field's type, constraints included, whatever its
source, so a bad value is refused the same way from all three with the place
it came from named. Nothing else in the hub reads the environment.

**Adding an option** is one field here (its type, with constraints as
``Annotated[..., Field(...)]``, its default and a comment) and one typer
option of the same name in :func:`otahub.cli.serve.serve` with the field's
default; a check between options goes in :meth:`HubSettings.check`. Also add
it, commented, to ``packaging/hub.example.toml``: tests hold the three together.
Options kept off the command line (secrets: ``ps`` shows a command line to
every user) are listed in :data:`NOT_ON_COMMAND_LINE`.
"""

from __future__ import annotations

import ipaddress
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, get_type_hints

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from otahub.hub.device_auth.certificates import CertIdentity
from otahub.mqtt import LOOPBACK, Limits, parse_networks

ENV_PREFIX = "OTAHUB_"
DEFAULT_MAX_PACKET_SIZE = 1024 * 1024
# Assignment notifications per second; ThingsBoard's queue does 100 per 60 s.
DEFAULT_NOTIFY_RATE = 1000.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
DEFAULT_UPDATE_TIMEOUT_S = 3600.0
# EnOS logins older or newer than this many seconds are refused (0 turns it off).
DEFAULT_ENOS_LOGIN_WINDOW = 15 * 60
# After CONNACK the hub waits this long for an EnOS device's first inform
# before pushing, so an SDK client that registers its upgrade handler just
# after connect() does not auto-reply 1101 ("handler not registered").
DEFAULT_ENOS_PUSH_GRACE = 2.0
# What devices may PUT on /te/v1/files: configuration and log uploads, not images.
DEFAULT_FILE_TRANSFER_MAX_BYTES = 256 << 20
DEFAULT_FILE_TRANSFER_MIN_FREE_BYTES = 512 << 20
_LIMITS = Limits()


class EnosFileUrl(StrEnum):
    """The form of the ``fileUrl`` EnOS devices are sent."""

    #: ``{public_url}/enos/ota/…``: fetched directly, with Range.
    ABSOLUTE = "absolute"
    #: ``/enos/ota/…`` alone, as older EnOS material has it: devices fetch it
    #: through the HTTP broker pair (``/auth`` + ``/multipart/…/file/download``).
    RELATIVE = "relative"


class LogFormat(StrEnum):
    TEXT = "text"
    #: one JSON object per line (otahub.logs)
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and where it came from."""


def _comma_separated(value: object) -> object:
    # the command line and the environment give a list as "a,b"; TOML as a list
    return tuple(value.split(",")) if isinstance(value, str) else value


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(network) for network in parse_networks(value))


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


Port = Annotated[int, Field(ge=0, le=65535)]
Positive = Annotated[int, Field(ge=1)]
Networks = Annotated[tuple[str, ...], BeforeValidator(_comma_separated), AfterValidator(_networks)]


@dataclass(slots=True)
class HubSettings:
    data_dir: Path = Path("otahub-data")
    host: str = "127.0.0.1"
    mqtt_port: Port = 1883
    http_port: Port = 8000
    # the admin REST API on its own listener; None: on host / http_port with the rest
    admin_host: str | None = None
    admin_port: Port | None = None
    mqtt_tls_port: Port | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # when set, TLS clients may present a certificate it signed (and are then the
    # device registered with that certificate); required with require_client_cert
    tls_ca: Path | None = None
    require_client_cert: bool = False
    # what of a client certificate names its device
    client_cert_identity: Annotated[CertIdentity, BeforeValidator(_lower)] = (
        CertIdentity.FINGERPRINT
    )
    max_packet_size: Positive = DEFAULT_MAX_PACKET_SIZE
    no_auth: bool = False
    # the admin API's bearer token; None: the one in <data_dir>/admin.token (made once)
    admin_token: Annotated[str, Field(min_length=1)] | None = None
    # base URL devices download from; None: derived from host and HTTP port
    public_url: str | None = None
    # None: SQLite in the data dir
    database_url: str | None = None
    # seconds without progress before an update fails
    update_timeout: Annotated[float, Field(gt=0)] = DEFAULT_UPDATE_TIMEOUT_S
    # mqtt://host:port of an external broker for the thin-edge dialects; None: own endpoint
    broker: str | None = None
    # ThingsBoard dialect: QUEUED -> INITIATED notifications per second
    notify_rate: Annotated[float, Field(ge=0.01)] = DEFAULT_NOTIFY_RATE
    # EnOS dialect: the form of fileUrl in upgrade and getversion
    enos_file_url: Annotated[EnosFileUrl, BeforeValidator(_lower)] = EnosFileUrl.ABSOLUTE
    # EnOS dialect: seconds a signed login's timestamp may lie from the hub's clock; 0: off
    enos_login_window: Annotated[float, Field(ge=0)] = DEFAULT_ENOS_LOGIN_WINDOW
    # EnOS dialect: seconds to wait for a device's first inform before pushing to it
    enos_push_grace: Annotated[float, Field(ge=0)] = DEFAULT_ENOS_PUSH_GRACE
    # how long stopping may take before what is still running is cut short
    shutdown_timeout: Annotated[float, Field(ge=0.1)] = DEFAULT_SHUTDOWN_TIMEOUT_S
    # what one client may make the MQTT endpoint hold (otahub.mqtt.Limits)
    max_subscriptions: Positive = _LIMITS.max_subscriptions
    max_retained_per_client: Positive = _LIMITS.max_retained_per_client
    max_retained_bytes_per_client: Positive = _LIMITS.max_retained_bytes_per_client
    max_retained: Positive = _LIMITS.max_retained
    max_retained_bytes: Positive = _LIMITS.max_retained_bytes
    max_pre_connect_bytes: Positive = _LIMITS.max_pre_connect_bytes
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = _LIMITS.max_inflight
    max_stored_messages: Annotated[int, Field(ge=1)] = _LIMITS.max_stored_messages
    max_queued_handlers: Annotated[int, Field(ge=1)] = _LIMITS.max_queued_handlers
    # MQTT clients without credentials: accepted from these networks (CIDRs)...
    anonymous_from: Networks = LOOPBACK
    # ...or from anywhere
    allow_anonymous: bool = False
    # the largest body a PUT on /te/v1/files may store
    file_transfer_max_bytes: Annotated[int, Field(ge=0)] = DEFAULT_FILE_TRANSFER_MAX_BYTES
    # a file-transfer PUT is refused when it would leave less free space in the data dir
    file_transfer_min_free_bytes: Annotated[int, Field(ge=0)] = DEFAULT_FILE_TRANSFER_MIN_FREE_BYTES
    # signed updates: the key directory's online/ part; None: no signed metadata
    signing_keys: Path | None = None
    # refuse updates of packages without a matching signed target
    require_signed: bool = False
    # the hub signs targets itself with signing_keys/targets.pem (gives up the offline key)
    hub_signs_targets: bool = False
    # seconds a signed timestamp is valid; None: one day
    timestamp_lifetime: Annotated[float, Field(ge=1)] = 86400.0
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = LogLevel.INFO
    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = LogFormat.TEXT

    @property
    def separate_admin(self) -> bool:
        return self.admin_port is not None

    @property
    def mqtt_limits(self) -> Limits:
        return Limits(
            max_subscriptions=self.max_subscriptions,
            max_retained_per_client=self.max_retained_per_client,
            max_retained_bytes_per_client=self.max_retained_bytes_per_client,
            max_retained=self.max_retained,
            max_retained_bytes=self.max_retained_bytes,
            max_pre_connect_bytes=self.max_pre_connect_bytes,
            max_inflight=self.max_inflight,
            max_stored_messages=self.max_stored_messages,
            max_queued_handlers=self.max_queued_handlers,
        )

    def public_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"

    def check(self) -> None:
        """The rules between options; SettingsError names the option broken."""
        if self.admin_host is not None and self.admin_port is None:
            raise SettingsError("--admin-host needs --admin-port")
        if self.admin_port is not None and self.admin_host is None:
            self.admin_host = "127.0.0.1"
        if self.no_auth and not is_loopback_host(
            self.host if self.admin_host is None else self.admin_host
        ):
            raise SettingsError("--no-auth is only allowed when bound to loopback")
        if self.mqtt_tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise SettingsError("--mqtt-tls-port needs --tls-cert and --tls-key")
        if self.require_client_cert and (self.tls_ca is None or self.mqtt_tls_port is None):
            raise SettingsError("--require-client-cert needs --tls-ca and --mqtt-tls-port")
        if (self.require_signed or self.hub_signs_targets) and self.signing_keys is None:
            flag = "--require-signed" if self.require_signed else "--hub-signs-targets"
            raise SettingsError(f"{flag} needs --signing-keys")
        if self.broker is not None:
            from otahub.hub.broker_transport import parse_broker_url

            try:
                parse_broker_url(self.broker)
            except ValueError as exc:
                raise SettingsError(f"--broker: {exc}") from None


#: Fields that are no command-line option, only a key and an environment variable.
NOT_ON_COMMAND_LINE = frozenset({"admin_token"})


def is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def env_name(option: str) -> str:
    return ENV_PREFIX + option.upper()


@cache
def _adapters() -> dict[str, TypeAdapter[Any]]:
    hints = get_type_hints(HubSettings, include_extras=True)
    return {f.name: TypeAdapter(hints[f.name]) for f in fields(HubSettings)}


def option_names() -> list[str]:
    return [f.name for f in fields(HubSettings)]


def validate_option(name: str, value: object, where: str) -> object:
    try:
        return _adapters()[name].validate_python(value)
    except ValidationError as exc:
        problem = "; ".join(error["msg"] for error in exc.errors())
        raise SettingsError(f"{where}: {problem} (got {value!r})") from None


def read_config_file(path: Path) -> dict[str, object]:
    """The keys of a ``--config`` TOML file; SettingsError for anything not an option."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    known = set(option_names())
    for key in data:
        if key not in known:
            raise SettingsError(f"{path}: unknown key {key!r} (not an otahub serve option)")
    return data


def resolve_settings(
    command_line: Mapping[str, object],
    environ: Mapping[str, str],
    config: Path | None = None,
) -> HubSettings:
    """Each option from the command line, else ``OTAHUB_<OPTION>``, else the file,
    else its default; every value checked against its field's type."""
    from_file = read_config_file(config) if config is not None else {}
    values: dict[str, object] = {}
    for name in option_names():
        variable = env_name(name)
        if name in command_line:
            values[name] = validate_option(name, command_line[name], f"--{name.replace('_', '-')}")
        elif environ.get(variable, "").strip():
            values[name] = validate_option(name, environ[variable].strip(), variable)
        elif name in from_file:
            values[name] = validate_option(name, from_file[name], f"{config}: {name}")
    settings = HubSettings(**values)  # type: ignore[arg-type]
    settings.check()
    return settings
