"""Settings of a running hub (what ``otahub serve`` is told)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from otahub.hub.device_auth.certificates import CertIdentity
from otahub.mqtt.anonymous import LOOPBACK
from otahub.mqtt.limits import Limits

DEFAULT_MAX_PACKET_SIZE = 1024 * 1024
# Assignment notifications per second; ThingsBoard's queue does 100 per 60 s.
DEFAULT_NOTIFY_RATE = 1000.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
# EnOS logins older or newer than this many seconds are refused (0 turns it off).
DEFAULT_ENOS_LOGIN_WINDOW = 15 * 60
# What devices may PUT on /te/v1/files: configuration and log uploads, not images.
DEFAULT_FILE_TRANSFER_MAX_BYTES = 256 << 20
DEFAULT_FILE_TRANSFER_MIN_FREE_BYTES = 512 << 20


class EnosFileUrl(StrEnum):
    """The form of the ``fileUrl`` EnOS devices are sent."""

    #: ``{public_url}/enos/ota/…``: fetched directly, with Range.
    ABSOLUTE = "absolute"
    #: ``/enos/ota/…`` alone, as older EnOS material has it: devices fetch it
    #: through the HTTP broker pair (``/auth`` + ``/multipart/…/file/download``).
    RELATIVE = "relative"


@dataclass(slots=True)
class HubSettings:
    data_dir: Path = Path("otahub-data")
    host: str = "127.0.0.1"
    mqtt_port: int = 1883
    http_port: int = 8000
    # the admin REST API on its own listener; None: on host / http_port with the rest
    admin_host: str | None = None
    admin_port: int | None = None
    mqtt_tls_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # when set, TLS clients may present a certificate it signed (and are then the
    # device registered with that certificate); required with require_client_cert
    tls_ca: Path | None = None
    require_client_cert: bool = False
    # what of a client certificate names its device
    client_cert_identity: CertIdentity = CertIdentity.FINGERPRINT
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    no_auth: bool = False
    # base URL devices download from; None: derived from host and HTTP port
    public_url: str | None = None
    # None: $OTAHUB_DATABASE_URL, else SQLite in the data dir
    database_url: str | None = None
    # None: $OTAHUB_UPDATE_TIMEOUT, else one hour
    update_timeout_s: float | None = None
    # mqtt://host:port of an external broker for the thin-edge dialects; None: own endpoint
    broker_url: str | None = None
    # ThingsBoard dialect: QUEUED -> INITIATED notifications per second
    notify_rate: float = DEFAULT_NOTIFY_RATE
    # EnOS dialect: the form of fileUrl in upgrade and getversion
    enos_file_url: EnosFileUrl = EnosFileUrl.ABSOLUTE
    # how long stopping may take before what is still running is cut short
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    # EnOS dialect: seconds a signed login's timestamp may lie from the hub's clock; 0: off
    enos_login_window: float = DEFAULT_ENOS_LOGIN_WINDOW
    # what one client may make the MQTT endpoint hold
    mqtt_limits: Limits = field(default_factory=Limits)
    # MQTT clients without credentials: accepted from these networks (CIDRs)...
    anonymous_from: tuple[str, ...] = LOOPBACK
    # ...or from anywhere
    allow_anonymous: bool = False
    # the largest body a PUT on /te/v1/files may store
    file_transfer_max_bytes: int = DEFAULT_FILE_TRANSFER_MAX_BYTES
    # a file-transfer PUT is refused when it would leave less free space in the data dir
    file_transfer_min_free_bytes: int = DEFAULT_FILE_TRANSFER_MIN_FREE_BYTES
    # signed updates: the key directory's online/ part; None: no signed metadata
    signing_keys: Path | None = None
    # refuse updates of packages without a matching signed target
    require_signed: bool = False
    # the hub signs targets itself with signing_keys/targets.pem (gives up the offline key)
    hub_signs_targets: bool = False
    # seconds a signed timestamp is valid; None: one day
    timestamp_lifetime_s: float | None = None

    @property
    def separate_admin(self) -> bool:
        return self.admin_port is not None

    def public_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"
