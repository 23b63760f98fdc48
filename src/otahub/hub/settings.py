"""Settings of a running hub (what ``otahub serve`` is told)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_PACKET_SIZE = 1024 * 1024


@dataclass(slots=True)
class HubSettings:
    data_dir: Path = Path("otahub-data")
    host: str = "127.0.0.1"
    mqtt_port: int = 1883
    http_port: int = 8000
    mqtt_tls_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # when set, TLS clients must present a certificate it signed
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    no_auth: bool = False
