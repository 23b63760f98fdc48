"""X.509 client certificates on the MQTT TLS listener, for every dialect.

``otahub serve --tls-ca`` verifies the certificate a TLS client presents and
takes it for the device registered with it (``--cert-file`` / the REST
``certificate`` field): the session gets that device's own identity, as its
dialect's credentials would give it. Certificates are made here with trustme.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from otahub.protocols import enos
from tests.hubproc import free_port
from tests.interop.paho_client import V5, V311, PahoClient
from tests.interop.tedge_child import HAVE_CLIENTS, Child, payload_with, sha256
from tests.security.conftest import SecureHub
from tests.security.test_thin_edge_devices import cli_add

pytestmark = pytest.mark.interop

# CONNACK 0x86 (MQTT 5) / return code 4 (3.1.1), which paho reports as 0x86 too
BAD_CREDENTIALS = 0x86


@dataclass
class Pki:
    """A CA, the hub's server certificate and device certificates, as files."""

    root: Path
    ca: trustme.CA

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def device(self, name: str, ca: trustme.CA | None = None) -> tuple[Path, Path]:
        """(certificate, key) files of a new client certificate with CN ``name``."""
        cert = (ca or self.ca).issue_cert(f"{name}.devices.test", common_name=name)
        cert_file, key_file = self.root / f"{name}.pem", self.root / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(cert_file)
        cert.private_key_pem.write_to_path(key_file)
        return cert_file, key_file


@dataclass
class CertHub:
    hub: SecureHub
    tls_port: int
    pki: Pki

    def add(self, name: str, dialect: str, cert_file: Path, **fields: Any) -> dict[str, Any]:
        return self.hub.add_device(name, dialect, certificate=cert_file.read_text(), **fields)

    def paho(
        self,
        client_id: str,
        cert: tuple[Path, Path] | None,
        protocol: Any = V5,
        **kwargs: Any,
    ) -> PahoClient:
        client = PahoClient(self.tls_port, client_id, protocol, **kwargs)
        if cert is None:
            client.client.tls_set(ca_certs=str(self.pki.ca_file))
        else:
            client.client.tls_set(
                ca_certs=str(self.pki.ca_file), certfile=str(cert[0]), keyfile=str(cert[1])
            )
        return client


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    root = tmp_path / "pki"
    root.mkdir()
    ca.cert_pem.write_to_path(root / "ca.pem")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(root / "server.pem")
    server.private_key_pem.write_to_path(root / "server.key")
    return Pki(root, ca)


@pytest.fixture
def cert_hub(secure_hub: Callable[..., SecureHub], pki: Pki) -> Callable[..., CertHub]:
    def start(*args: str) -> CertHub:
        tls_port = free_port()
        hub = secure_hub(
            *("--mqtt-tls-port", str(tls_port), "--tls-ca", str(pki.ca_file)),
            *("--tls-cert", str(pki.root / "server.pem")),
            *("--tls-key", str(pki.root / "server.key")),
            *args,
        )
        return CertHub(hub, tls_port, pki)

    return start


@pytest.mark.parametrize("protocol", [V311, V5], ids=["3.1.1", "5.0"])
def test_certificate_of_no_registered_device_is_refused(
    cert_hub: Callable[..., CertHub], protocol: Any
) -> None:
    hub = cert_hub()
    stranger = hub.pki.device("stranger")
    client = hub.paho("stranger", stranger, protocol)
    assert client.connect() == BAD_CREDENTIALS
    hub.hub.wait_log(r"client certificate \(SHA-256 [0-9a-f]{64}, CN 'stranger'\) matches no")


def test_certificate_of_one_device_with_token_of_another_is_refused(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    cert_a = hub.pki.device("tb-a")
    hub.add("tb-a", "thingsboard", cert_a[0])
    hub.hub.add_device("tb-b", "thingsboard", token="token-b")
    client = hub.paho("tb-a-as-b", cert_a, V5, username="token-b")
    assert client.connect() == BAD_CREDENTIALS
    hub.hub.wait_log(r"is thingsboard device 'tb-a'.s, the credentials are thingsboard .*'tb-b'")
    # its own certificate alone, and device B's token alone, are both let in
    alone = hub.paho("tb-a-alone", cert_a, V5)
    assert alone.connect() == 0
    alone.disconnect()
    token_b = PahoClient(hub.hub.port, "tb-b", V5, username="token-b")
    assert token_b.connect() == 0
    token_b.disconnect()


def test_certificate_of_thin_edge_device_with_password_of_another_is_refused(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    cert_a = hub.pki.device("child-a")
    hub.add("child-a", "thin-edge", cert_a[0])
    hub.hub.add_device("child-b", "thin-edge", password="b's password")
    client = hub.paho("child-a", cert_a, V311, username="child-b", password="b's password")
    assert client.connect() == BAD_CREDENTIALS
    hub.hub.wait_log(r"is thin-edge device 'child-a'.s, the credentials are thin-edge .*'child-b'")


def test_require_client_cert_refuses_a_client_without_one(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub("--require-client-cert")
    ctx = ssl.create_default_context(cafile=str(hub.pki.ca_file))
    connect = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02id"
    with socket.create_connection(("127.0.0.1", hub.tls_port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(connect)
                answer = tls.recv(16)
        except (ssl.SSLError, ConnectionResetError):
            answer = b""  # the handshake failed: the hub asked for a certificate
    assert answer == b"", "a client without certificate got an answer"
    # a registered certificate still gets in
    cert = hub.pki.device("child-r")
    hub.add("child-r", "thin-edge", cert[0])
    client = hub.paho("child-r", cert, V311)
    assert client.connect() == 0
    client.disconnect()
    # and without --require-client-cert the same client is let in (as anonymous
    # from loopback): the certificate is optional by default
    optional = cert_hub()
    plain = optional.paho("no-cert", None, V311)
    assert plain.connect() == 0
    plain.disconnect()


def test_certificate_of_another_ca_is_refused_in_the_handshake(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    foreign = hub.pki.device("foreign", ca=trustme.CA())
    client = hub.paho("foreign", foreign, V311)
    with pytest.raises((ssl.SSLError, ConnectionResetError, TimeoutError)):
        client.connect()


def test_thin_edge_device_with_certificate_is_confined_to_its_own_topics(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    cert = hub.pki.device("child-c")
    hub.add("child-c", "thin-edge", cert[0])
    hub.hub.add_device("child-d", "thin-edge")
    client = hub.paho("child-c", cert, V5)
    assert client.connect() == 0
    assert [rc.value for rc in client.subscribe("te/device/child-c///cmd/#", 1)] == [1]
    assert client.subscribe("te/device/child-d///cmd/#", 1)[0].value == 0x87
    client.disconnect()
    hub.hub.wait_log(r"thin-edge device 'child-c' logs in with its client certificate")
    # the device has credentials now: an anonymous client may not act for it
    anonymous = PahoClient(hub.hub.port, "spoofer", V5)
    assert anonymous.connect() == 0
    anonymous.publish("te/device/child-c///twin/firmware", b'{"version":"6.6.6"}', qos=1)
    anonymous.disconnect()
    hub.hub.wait_log(r"may not publish to 'te/device/child-c///twin/firmware'")
    device = hub.hub.api.get("/devices/child-c").json()
    assert device["firmware"]["version"] != "6.6.6"
    assert device["certificate_cn"] == "child-c"
    assert len(device["certificate_sha256"]) == 64


def test_gateway_with_certificate_acts_for_the_children_it_registers(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    cert = hub.pki.device("gw-c")
    hub.add("gw-c", "thin-edge", cert[0], gateway=True)
    client = hub.paho("gw-c", cert, V5)
    assert client.connect() == 0
    registration = '{"@type":"child-device","@parent":"device/gw-c//"}'
    client.publish("te/device/gw-c-child//", registration, qos=1, retain=True)
    hub.hub.wait_log(r"device gw-c-child belongs to gateway gw-c\b")
    assert [rc.value for rc in client.subscribe("te/device/gw-c-child///cmd/+/+", 1)] == [1]
    client.disconnect()
    assert hub.hub.api.get("/devices/gw-c-child").json()["owner"] == "gw-c"


def test_enos_device_with_certificate_has_its_keys_topics(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    cert = hub.pki.device("enos-c")
    hub.add("enos-c", "enos", cert[0], product_key="pk1", device_key="dk1")
    client = hub.paho("enos-c", cert, V5)
    assert client.connect() == 0
    own = client.subscribe("/sys/pk1/dk1/ota/device/upgrade", 1)
    other = client.subscribe("/sys/pk1/other/ota/device/upgrade", 1)
    assert own[0].value == 1
    assert other[0].value >= 0x80
    client.disconnect()


def test_cn_naming_two_devices_is_refused_as_ambiguous(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub("--client-cert-identity", "cn")
    first = hub.pki.device("shared-cn")
    hub.add("twin-1", "thin-edge", first[0])
    second_cert = hub.pki.ca.issue_cert("second.devices.test", common_name="shared-cn")
    second = (hub.pki.root / "second.pem", hub.pki.root / "second.key")
    second_cert.cert_chain_pems[0].write_to_path(second[0])
    second_cert.private_key_pem.write_to_path(second[1])
    hub.add("twin-2", "thin-edge", second[0])
    client = hub.paho("twin", first, V5)
    assert client.connect() == BAD_CREDENTIALS
    hub.hub.wait_log(r"its CN names several devices \('twin-1', 'twin-2'\)")


def test_require_client_cert_without_a_ca_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "otahub", "serve", "--require-client-cert"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "needs --tls-ca and --mqtt-tls-port" in done.stderr


def test_enos_signed_login_with_its_own_certificate_is_accepted_with_another_refused(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    cert_a, cert_b = hub.pki.device("enos-a"), hub.pki.device("enos-b")
    hub.add("enos-a", "enos", cert_a[0], product_key="pk", device_key="dk-a", secret="sa")
    hub.add("enos-b", "enos", cert_b[0], product_key="pk", device_key="dk-b", secret="sb")
    now = str(int(time.time() * 1000))
    login = enos.build_login("pk", "dk-a", "sa", timestamp=now)

    def signed(cert: tuple[Path, Path]) -> PahoClient:
        return hub.paho(
            login.client_id, cert, V311, username=login.username, password=login.password
        )

    own = signed(cert_a)
    assert own.connect() == 0  # the SDK's signed login, unchanged, over its certificate
    own.disconnect()
    assert own.wait_disconnected()
    foreign = signed(cert_b)
    assert foreign.connect() == BAD_CREDENTIALS
    hub.hub.wait_log(r"is enos device 'enos-b'.s, the credentials are enos device 'enos-a'")


def test_cn_identity_names_the_device_by_its_certificate_cn(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub("--client-cert-identity", "cn")
    registered = hub.pki.device("child-cn")
    hub.add("child-cn", "thin-edge", registered[0])
    # a new certificate with the same CN (renewed): a different fingerprint, same device
    renewed_cert = hub.pki.ca.issue_cert("renewed.devices.test", common_name="child-cn")
    renewed = (hub.pki.root / "renewed.pem", hub.pki.root / "renewed.key")
    renewed_cert.cert_chain_pems[0].write_to_path(renewed[0])
    renewed_cert.private_key_pem.write_to_path(renewed[1])
    assert renewed[0].read_text() != registered[0].read_text()
    client = hub.paho("child-cn", renewed, V5)
    assert client.connect() == 0
    assert [rc.value for rc in client.subscribe("te/device/child-cn///cmd/#", 1)] == [1]
    client.disconnect()


def test_registering_a_bad_or_taken_certificate_is_refused_clearly(
    cert_hub: Callable[..., CertHub],
) -> None:
    hub = cert_hub()
    api = hub.hub.api
    bad = api.post(
        "/devices", json={"name": "b", "dialect": "thin-edge", "certificate": "not a PEM"}
    )
    assert bad.status_code == 422
    assert "certificate: no PEM certificate" in bad.text
    cert_file, _ = hub.pki.device("taken")
    hub.add("taken-1", "thin-edge", cert_file)
    again = api.post(
        "/devices",
        json={"name": "taken-2", "dialect": "enos", "certificate": cert_file.read_text()}
        | {"product_key": "pk", "device_key": "dk"},
    )
    assert again.status_code == 409
    assert "another device already has this certificate" in again.text
    # a ThingsBoard device needs its token unless it has a certificate
    assert api.post("/devices", json={"name": "t", "dialect": "thingsboard"}).status_code == 422


def test_thingsboard_sdk_with_x509_certificate_gets_its_update(
    cert_hub: Callable[..., CertHub],
) -> None:
    pytest.importorskip("tb_device_mqtt")
    from tests.interop.test_tb_sdk import SdkDevice, image_for

    hub = cert_hub()
    cert_file, key_file = hub.pki.device("tb-x509")
    added = hub.add("tb-x509", "thingsboard", cert_file)
    assert added["token"] is None
    image = image_for("SHA256", seed=509)
    hub.hub.upload("tb-x509-fw", "2.0.0", image)
    update_id = hub.hub.start_update("tb-x509", "tb-x509-fw", "2.0.0")
    device = SdkDevice(hub.tls_port, None, 4096)  # type: ignore[arg-type]
    device.client.connect(
        tls=True, ca_certs=str(hub.pki.ca_file), cert_file=str(cert_file), key_file=str(key_file)
    )
    device.client.get_firmware_update()
    try:
        update = hub.hub.wait_update(
            update_id, lambda u: u["state"] in ("succeeded", "failed", "canceled"), timeout=40
        )
    finally:
        device.stop()
    assert update["state"] == "succeeded", update
    assert device.received == image
    hub.hub.wait_log(r"thingsboard device 'tb-x509' logs in with its client certificate")


@pytest.mark.skipif(not HAVE_CLIENTS, reason="needs mosquitto-clients and curl")
def test_seed_000_with_mosquitto_clients_over_tls_with_client_certificate(
    cert_hub: Callable[..., CertHub], tmp_path: Path
) -> None:
    hub = cert_hub()
    name = "child04"
    cert_file, key_file = hub.pki.device(name)
    added = cli_add(hub.hub, name, "--dialect", "thin-edge", "--cert-file", str(cert_file))
    assert f"added thin-edge device {name}" in added.stdout
    tls = ("--cafile", str(hub.pki.ca_file), "--cert", str(cert_file), "--key", str(key_file))
    creds = (*tls, "-i", f"{name}-agent")
    child = Child(hub.tls_port)
    child.pub(
        f"te/device/{name}//",
        '{\n  "@type": "child-device",\n  "name": "Child 04",\n  "type": "RaspberryPi4"\n}',
        "-r",
        *creds,
    )
    child.pub(f"te/device/{name}///cmd/firmware_update", "{}", "-r", *creds)
    child.pub(
        f"te/device/{name}///twin/firmware",
        '{"name": "my firmware 2", "version":"1.0.0"}',
        "-r",
        *creds,
    )

    def firmware_version() -> str | None:
        return hub.hub.api.get(f"/devices/{name}").json()["firmware"]["version"]  # type: ignore[no-any-return]

    _wait(lambda: firmware_version() == "1.0.0")
    firmware = b"my firmware 2 version 1.0.1\n" * 500
    hub.hub.upload("my firmware 2", "1.0.1", firmware)
    update_id = hub.hub.start_update(name, "my firmware 2", "1.0.1")
    sub = child.sub(f"te/device/{name}///cmd/firmware_update/+", 1, *tls)
    topic, message = Child.lines(sub)[0].split(" ", 1)
    command = json.loads(message)
    assert command["status"] == "init"
    child.pub(topic, payload_with(command, status="executing"), "-r", *creds)
    assert hub.hub.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    image = tmp_path / "image.bin"
    Child.curl(command["tedgeUrl"], image)
    assert sha256(image.read_bytes()) == command["sha256"]
    child.pub(
        f"te/device/{name}///twin/firmware",
        '{"name": "my firmware 2", "version":"1.0.1"}',
        "-r",
        *creds,
    )
    child.pub(topic, payload_with(command, status="successful"), "-r", *creds)
    done = hub.hub.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    # an unregistered certificate gets mosquitto_pub's "not authorised" and no say
    other_cert, other_key = hub.pki.device("child05")
    refused = subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(hub.tls_port), "-t", "te/device/x//"),
            *("-m", "{}", "--cafile", str(hub.pki.ca_file)),
            *("--cert", str(other_cert), "--key", str(other_key)),
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert refused.returncode != 0
    hub.hub.wait_log(r"CN 'child05'\) matches no registered device")


def _wait(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
