"""Agent configuration: a TOML file, every key overridable by environment.

Environment variables are ``OTAHUB_AGENT_<SECTION>__<KEY>`` (double
underscore between section and key), e.g. ``OTAHUB_AGENT_MQTT__HOST`` or
``OTAHUB_AGENT_THINGSBOARD__TOKEN``; top-level keys drop the section
(``OTAHUB_AGENT_DIALECT``). The environment wins over the file, so a unit
file or container can inject secrets without writing them to disk.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "OTAHUB_AGENT_"
#: Default exit code of the install hook meaning "installed, reboot required".
REBOOT_EXIT_CODE = 100


class Dialect(StrEnum):
    THIN_EDGE = "thin-edge"
    TEDGE_LEGACY = "tedge-legacy"
    THINGSBOARD = "thingsboard"
    ENOS = "enos"


class MqttConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    #: Use TLS; with ``ca_file`` unset the system trust store is used.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Client id; each dialect has its own default (EnOS always signs its own).
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    keepalive: int = Field(default=60, ge=5)
    #: Seconds between reconnect attempts, doubled up to ``reconnect_max``.
    reconnect_initial: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)


class ThinEdgeConfig(BaseModel):
    #: The child device id, one topic level: ``te/device/<device_id>//``.
    device_id: str = ""
    #: Parent entity topic id (``device/child01//``); unset = child of the main device.
    parent: str | None = None
    #: Display name and type in the registration message.
    name: str | None = None
    type: str | None = None
    #: Publish the registration message (disable when the gateway registers children).
    registration: bool = True
    #: Seconds after subscribing within which the retained command of an update
    #: found on disk at startup must be replayed; if it is not, the requester
    #: cleared it while the agent was stopped and the update is not resumed.
    resume_grace: float = Field(default=5.0, gt=0)


class TedgeLegacyConfig(BaseModel):
    #: The child's cloud external id: ``tedge/<child_id>/commands/...``.
    child_id: str = ""


class EnosMode(StrEnum):
    #: The cloud pushes ``upgrade`` commands.
    PUSH = "push"
    #: "Upon device request": the agent polls ``getversion``.
    REQUEST = "request"


class EnosConfig(BaseModel):
    product_key: str = ""
    device_key: str = ""
    device_secret: str = ""
    mode: EnosMode = EnosMode.PUSH
    #: Seconds between ``getversion`` polls in request mode.
    poll_interval: float = Field(default=3600.0, gt=0)
    #: Seconds to wait for a ``*_reply``.
    reply_timeout: float = Field(default=30.0, gt=0)
    #: Base URL of the EnOS HTTP broker (``http(s)://host:port``). A ``fileUrl``
    #: that is not an http(s) URL is downloaded through it: ``POST /auth/{pk}/{dk}``,
    #: then ``/multipart/sys/{pk}/{dk}/file/download``. Unset: such updates fail.
    http_broker: str | None = None

    @field_validator("http_broker")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value


class VersionConfig(BaseModel):
    """Where the running version comes from: a file, else a command, else the agent's record."""

    file: Path | None = None
    command: str | None = None
    #: The version reported before any update when neither file nor command is set.
    initial: str = "0.0.0"
    #: Firmware name (thin-edge twin ``name``, ThingsBoard ``current_fw_title``).
    name: str = "firmware"


class SoftwareConfig(VersionConfig):
    """ThingsBoard software packages (``sw_*``), handled next to firmware when enabled.

    The running software version comes from ``file``, else ``command``, else
    what the agent last installed, like the firmware version.
    """

    enabled: bool = False
    name: str = "software"
    #: Install hook for software packages; empty = ``hooks.install``.
    install: str = ""


class ThingsBoardConfig(BaseModel):
    #: Device access token (the MQTT username).
    token: str = ""
    #: Bytes per ``v2/fw`` chunk request; the server caps it at 65536 by default.
    chunk_size: int = Field(default=16384, ge=1)
    #: Seconds to wait for one chunk before asking again.
    chunk_timeout: float = Field(default=10.0, gt=0)
    software: SoftwareConfig = SoftwareConfig()


class HooksConfig(BaseModel):
    """Commands run by the agent; ``{file}``, ``{name}``, ``{version}``, ``{kind}`` are substituted.

    ``{kind}`` is ``firmware``, or ``software`` for ThingsBoard ``sw_*`` packages.

    The template is split like a shell command line first and the values are
    substituted into the words afterwards, so a value is never re-parsed.
    """

    install: str = ""
    #: Exit code of ``install`` meaning "installed, reboot required".
    reboot_exit_code: int = Field(default=REBOOT_EXIT_CODE, ge=1, le=255)
    #: Run after the agent starts again following a reboot-required install;
    #: exit 0 = the new version runs. Unset: compare the running version.
    verify: str | None = None
    #: Run when that verification fails.
    rollback: str | None = None
    #: Run to restart the device once the state is persisted; unset = wait to be restarted.
    reboot: str | None = None
    #: Seconds before a hook is killed and counted as failed.
    timeout: float = Field(default=600.0, gt=0)


class DownloadConfig(BaseModel):
    #: Attempts per URL after the first failure before giving up.
    retries: int = Field(default=8, ge=0)
    backoff_initial: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=60.0, gt=0)
    #: Seconds without any byte before a connection is abandoned.
    read_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    #: Verify TLS certificates of download URLs.
    verify_tls: bool = True
    ca_file: Path | None = None


class SigningConfig(BaseModel):
    """Signed updates (TUF): install only what the publisher's targets key signed.

    ``root`` is the trusted root metadata provisioned on the device (the key
    directory's ``root.json``), ``repository`` the hub's metadata URL
    (``http://HUB:8000/tuf/``). Both or neither; unset = checksums only.
    """

    root: Path | None = None
    repository: str | None = None
    #: Seconds the metadata requests of one refresh may each take.
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("repository")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _both_or_neither(self) -> SigningConfig:
        if (self.root is None) != (self.repository is None):
            raise ValueError("signing needs both root and repository, or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.root is not None


class AgentConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    dialect: Dialect
    state_dir: Path = Path("/var/lib/otahub-agent")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mqtt: MqttConfig = MqttConfig()
    thin_edge: ThinEdgeConfig = ThinEdgeConfig()
    tedge_legacy: TedgeLegacyConfig = TedgeLegacyConfig()
    thingsboard: ThingsBoardConfig = ThingsBoardConfig()
    enos: EnosConfig = EnosConfig()
    version: VersionConfig = VersionConfig()
    hooks: HooksConfig = HooksConfig()
    download: DownloadConfig = DownloadConfig()
    signing: SigningConfig = SigningConfig()

    @model_validator(mode="after")
    def _identity_present(self) -> AgentConfig:
        missing: list[str] = []
        if self.dialect is Dialect.THIN_EDGE and not self.thin_edge.device_id:
            missing.append("thin_edge.device_id")
        if self.dialect is Dialect.TEDGE_LEGACY and not self.tedge_legacy.child_id:
            missing.append("tedge_legacy.child_id")
        if self.dialect is Dialect.THINGSBOARD and not self.thingsboard.token:
            missing.append("thingsboard.token")
        if self.dialect is Dialect.ENOS:
            for key in ("product_key", "device_key", "device_secret"):
                if not getattr(self.enos, key):
                    missing.append(f"enos.{key}")
        if not self.hooks.install:
            missing.append("hooks.install")
        if missing:
            raise ValueError(f"the {self.dialect} dialect needs: {', '.join(missing)}")
        return self


def load_config(path: Path | None) -> AgentConfig:
    """Read ``path`` (TOML) with environment overrides; ``None`` = environment only."""

    class _FromFile(AgentConfig):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return _FromFile()  # type: ignore[call-arg]  # values come from the sources
