"""An authenticator sees the TLS client certificate."""

from __future__ import annotations

import asyncio
import ssl

import trustme

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.hooks import ConnectInfo, Identity, Refusal
from otahub.mqtt.packets import Connack, Connect
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.server import MQTTServer


async def test_peer_certificate_reaches_authenticator() -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("device-42.example")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client_cert.configure_cert(client_ctx)

    seen: list[ConnectInfo] = []

    async def by_certificate(info: ConnectInfo) -> Identity:
        seen.append(info)
        return Identity("device-42")

    server = MQTTServer()
    server.add_authenticator(by_certificate)
    port = await server.listen("127.0.0.1", 0, ssl=server_ctx)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1"
        )
        writer.write(encode(Connect(client_id="c", protocol_level=4), 4))
        packets = Decoder(4, role="client").feed(await asyncio.wait_for(reader.read(64), 5))
        assert isinstance(packets[0], Connack) and packets[0].reason_code == 0
        assert seen[0].listener == "mqtts"
        assert seen[0].peer_cert is not None
        alt_names = [v for k, v in seen[0].peer_cert.get("subjectAltName", ()) if k == "DNS"]
        assert alt_names == ["device-42.example"]
        writer.close()
    finally:
        await server.close()


async def test_certificate_check_has_the_last_word_on_a_connect_with_a_certificate() -> None:
    """It gets the DER certificate and the authenticators' verdict (None: nobody claimed
    the CONNECT) and may replace it; a CONNECT without certificate never reaches it."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    client_cert = ca.issue_cert("device-43.example")
    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    client_cert.configure_cert(with_cert)
    without_cert = ssl.create_default_context()
    ca.configure_trust(without_cert)

    checked: list[tuple[bytes | None, Identity | Refusal | None]] = []

    async def check(info: ConnectInfo, verdict: Identity | Refusal | None) -> Refusal:
        checked.append((info.peer_cert_der, verdict))
        return Refusal(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "no such device")

    server = MQTTServer()
    server.set_certificate_check(check)
    port = await server.listen("127.0.0.1", 0, ssl=server_ctx)

    async def connack(ctx: ssl.SSLContext) -> int:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
        )
        writer.write(encode(Connect(client_id="c", protocol_level=5), 5))
        packets = Decoder(5, role="client").feed(await asyncio.wait_for(reader.read(64), 5))
        writer.close()
        assert isinstance(packets[0], Connack)
        return packets[0].reason_code

    try:
        assert await connack(with_cert) == ReasonCode.BAD_USER_NAME_OR_PASSWORD
        der = ssl.PEM_cert_to_DER_cert(client_cert.cert_chain_pems[0].bytes().decode())
        assert checked == [(der, None)]
        assert await connack(without_cert) == 0  # anonymous from loopback, unchecked
        assert len(checked) == 1
    finally:
        await server.close()
