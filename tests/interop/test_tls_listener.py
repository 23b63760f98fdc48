"""The MQTT TLS listener with a self-signed CA made in the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from tests.hubproc import free_port
from tests.interop.paho_client import V5, V311, PahoClient

pytestmark = pytest.mark.interop


@pytest.fixture
def tls_hub(hub_factory, tmp_path: Path):  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    tls_port = free_port()
    hub = hub_factory(
        "--no-auth",
        "--mqtt-tls-port",
        str(tls_port),
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
    )
    return hub, tls_port, tmp_path / "ca.pem"


@pytest.mark.parametrize("protocol", [V311, V5], ids=["3.1.1", "5.0"])
def test_paho_over_tls(tls_hub, protocol) -> None:  # type: ignore[no-untyped-def]
    hub, tls_port, ca = tls_hub
    sub = PahoClient(tls_port, "tls-sub", protocol)
    sub.client.tls_set(ca_certs=str(ca))
    assert sub.connect() == 0
    sub.subscribe("secure/#", qos=1)
    # a plain-port client reaches the TLS client: one broker, two listeners
    plain = PahoClient(hub.mqtt_port, "plain-pub", protocol)
    plain.connect()
    plain.publish("secure/x", b"over tls", qos=1)
    assert sub.expect().payload == b"over tls"
    sub.disconnect()
    plain.disconnect()


def test_plaintext_client_on_tls_port_is_dropped(tls_hub) -> None:  # type: ignore[no-untyped-def]
    hub, tls_port, _ = tls_hub
    import socket

    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as s:
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        assert s.recv(16) == b""
    assert "Traceback" not in hub.log()
    # and the hub still serves
    client = PahoClient(hub.mqtt_port, "after", V311)
    assert client.connect() == 0
    client.disconnect()


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="needs mosquitto-clients")
def test_mosquitto_clients_over_tls(tls_hub) -> None:  # type: ignore[no-untyped-def]
    _, tls_port, ca = tls_hub
    common = ["-h", "127.0.0.1", "-p", str(tls_port), "--cafile", str(ca)]
    subprocess.run(
        ["mosquitto_pub", *common, "-t", "tls/r", "-m", "kept", "-r", "-q", "1"],
        check=True,
        timeout=10,
    )
    out = subprocess.run(
        ["mosquitto_sub", *common, "-t", "tls/#", "-C", "1", "-W", "10", "-v"],
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    assert out.stdout.strip() == "tls/r kept"


def test_server_context_rejects_unknown_ca(tls_hub) -> None:  # type: ignore[no-untyped-def]
    _, tls_port, _ = tls_hub
    import socket

    ctx = ssl.create_default_context()  # does not trust the test CA
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
