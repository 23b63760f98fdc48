"""What a simulation run is told: the fleet, where the hub is, which faults to inject."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit


class Dialect(StrEnum):
    THINGSBOARD = "thingsboard"
    ENOS = "enos"
    THIN_EDGE = "thin-edge"
    TEDGE_LEGACY = "tedge-legacy"


#: ``--dialect mixed`` deals the devices out over every dialect in this order.
MIXED_ORDER: tuple[Dialect, ...] = (
    Dialect.THINGSBOARD,
    Dialect.ENOS,
    Dialect.THIN_EDGE,
    Dialect.TEDGE_LEGACY,
)
MIXED = "mixed"


class FailAt(StrEnum):
    DOWNLOAD = "download"
    VERIFY = "verify"
    INSTALL = "install"


#: The key simulated credentials are derived from. They are predictable on
#: purpose (a rerun, or another process, finds the same ones): a simulator's
#: devices belong on a test hub only.
_CREDENTIAL_KEY = b"otahub-simulator"


def derived_secret(name: str, purpose: str) -> str:
    """A credential of device ``name`` (token, secret, password) that every run derives alike."""
    return hmac.new(_CREDENTIAL_KEY, f"{purpose}:{name}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int = 1883) -> Endpoint:
    """``host:port``, ``mqtt://host:port`` or ``[v6]:port``; ValueError says what is wrong."""
    raw = text.strip()
    if not raw:
        raise ValueError("an empty MQTT endpoint")
    if "://" not in raw:
        raw = f"mqtt://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"{text!r}: only plain mqtt:// endpoints are simulated")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"{text!r}: not a valid port") from None
    if not parts.hostname:
        raise ValueError(f"{text!r}: no host")
    return Endpoint(parts.hostname, port)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device: its place in the fleet, dialect and credentials."""

    index: int
    dialect: Dialect
    prefix: str

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.dialect.value}-{self.index:05d}"

    @property
    def token(self) -> str:
        """ThingsBoard access token."""
        return derived_secret(self.name, "token")

    @property
    def product_key(self) -> str:
        """EnOS product key: one product per prefix."""
        return f"{self.prefix}-product"

    @property
    def device_key(self) -> str:
        return self.name

    @property
    def secret(self) -> str:
        """EnOS device secret."""
        return derived_secret(self.name, "secret")

    @property
    def password(self) -> str:
        """thin-edge / tedge-legacy MQTT password (user name: the device name)."""
        return derived_secret(self.name, "password")


def fleet(devices: int, dialect: str, prefix: str) -> list[DeviceSpec]:
    """The ``devices`` devices of a run, ``mixed`` dealt out over every dialect."""
    if dialect == MIXED:
        return [DeviceSpec(i, MIXED_ORDER[i % len(MIXED_ORDER)], prefix) for i in range(devices)]
    kind = Dialect(dialect)
    return [DeviceSpec(i, kind, prefix) for i in range(devices)]


@dataclass(frozen=True)
class FaultRates:
    """Shares of the fleet given each fault; chosen per device from ``seed``."""

    fail_rate: float = 0.0
    fail_at: FailAt = FailAt.DOWNLOAD
    offline_rate: float = 0.0
    crash_rate: float = 0.0
    seed: int = 1


@dataclass(frozen=True)
class SimConfig:
    endpoints: tuple[Endpoint, ...]
    #: The hub's HTTP base URL (the EnOS HTTP broker for relative ``fileUrl``\s).
    http_url: str = "http://127.0.0.1:8000"
    faults: FaultRates = field(default_factory=FaultRates)
    #: Devices log in with credentials (thin-edge, tedge-legacy: passwords);
    #: off, they connect anonymously (the hub must let them, e.g. from loopback).
    passwords: bool = True
    install_seconds: float = 1.0
    chunk_size: int = 65536
    keepalive: int = 60
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: Seconds a chunk or HTTP read may take before it is asked for again.
    request_timeout: float = 30.0
    #: Initial version every device reports.
    initial_version: str = "1.0.0"
    #: Firmware name (thin-edge twin, ThingsBoard title, EnOS has none).
    firmware_name: str = "sim-firmware"
    #: Devices connecting at once (a ramp, so the hub's listen backlog is not flooded).
    connect_concurrency: int = 200
