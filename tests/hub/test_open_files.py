"""The hub lifts its soft limit on open files: more devices than it allows still connect."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

from tests.hubproc import HubProcess

SOFT = 64
CLIENTS = 100


def _lower_soft_limit() -> None:
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (SOFT, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )


def test_more_connections_than_the_inherited_soft_limit(tmp_path: Path) -> None:
    hub = HubProcess(data_dir=tmp_path / "data", extra_args=["--no-auth"])
    hub.preexec = _lower_soft_limit
    hub.start()
    sockets: list[socket.socket] = []
    try:
        assert hub.proc is not None
        limits = Path(f"/proc/{hub.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        soft, hard = line.split()[3:5]
        assert soft == hard, line
        for n in range(CLIENTS):
            s = socket.create_connection(("127.0.0.1", hub.mqtt_port), timeout=10)
            sockets.append(s)
            s.sendall(_connect(n))
        for s in sockets:
            assert s.recv(4)[:2] == bytes([0x20, 2])  # CONNACK
    finally:
        for s in sockets:
            s.close()
        hub.stop()


def _connect(n: int) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, keepalive 60 s, client id ``c{n}``."""
    client_id = f"c{n:04d}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body
