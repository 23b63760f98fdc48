"""Bad client input: a disconnect and a log line, and the server keeps serving."""

from __future__ import annotations

import pytest

from otahub.mqtt.codec import encode
from otahub.mqtt.packets import Connack, Connect, Disconnect, Publish
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient


async def _still_serving(running: RunningServer) -> None:
    sub = await RawClient.open(running.port, 4)
    await sub.connect("healthy-sub")
    await sub.subscribe("health/#", qos=1)
    pub = await RawClient.open(running.port, 5)
    await pub.connect("healthy-pub")
    await pub.publish("health/check", b"ok", qos=0)
    packet = await sub.recv()
    assert isinstance(packet, Publish) and packet.payload == b"ok"
    sub.close()
    pub.close()


async def _connected(running: RunningServer, version: int) -> RawClient:
    client = await RawClient.open(running.port, version)
    connack = await client.connect(f"bad-{version}")
    assert connack.reason_code == 0
    return client


def _publish_header(remaining: int) -> bytes:
    return bytes([0x30, remaining])


# (name, bytes sent after a good CONNECT, expected v5 reason code, log fragment)
CASES = [
    # the topic length says 10 bytes but the packet ends after 1
    ("truncated", _publish_header(3) + b"\x00\x0aa", ReasonCode.MALFORMED_PACKET, "protocol error"),
    (
        "bad remaining length",
        b"\x30\xff\xff\xff\xff\x01",
        ReasonCode.MALFORMED_PACKET,
        "protocol error",
    ),
    (
        "invalid utf-8 topic",
        _publish_header(5) + b"\x00\x03a\xff\xfe",
        ReasonCode.MALFORMED_PACKET,
        "protocol error",
    ),
    (
        "wildcard topic",
        _publish_header(5) + b"\x00\x03a/#",
        ReasonCode.TOPIC_NAME_INVALID,
        "protocol error",
    ),
    ("reserved flags", b"\x82\x02\x00\x01", ReasonCode.MALFORMED_PACKET, "protocol error"),
    ("oversize", b"\x30\x80\x80\x10" + b"\x00\x01a", ReasonCode.PACKET_TOO_LARGE, "protocol error"),
]


@pytest.mark.parametrize("version", [4, 5], ids=["3.1.1", "5.0"])
@pytest.mark.parametrize(("name", "data", "reason", "logged"), CASES, ids=[c[0] for c in CASES])
async def test_bad_packet_disconnects_with_reason(
    running: RunningServer,
    caplog: pytest.LogCaptureFixture,
    version: int,
    name: str,
    data: bytes,
    reason: int,
    logged: str,
) -> None:
    client = await _connected(running, version)
    await client.send_bytes(data)
    sent = await client.closed()
    if version == 5:
        assert len(sent) == 1 and isinstance(sent[0], Disconnect)
        assert sent[0].reason_code == reason
    else:
        assert sent == []
    assert logged in caplog.text
    assert "Traceback" not in caplog.text
    await _still_serving(running)


async def test_connect_twice(running: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    client = await _connected(running, 5)
    await client.send(Connect(client_id="again", protocol_level=5))
    sent = await client.closed()
    assert isinstance(sent[0], Disconnect)
    assert sent[0].reason_code == ReasonCode.PROTOCOL_ERROR
    assert "second CONNECT" in caplog.text
    await _still_serving(running)


async def test_first_packet_not_connect(
    running: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = await RawClient.open(running.port, 4)
    await client.send_bytes(encode(Publish("a", b"x"), 4))
    assert await client.closed() == []
    assert "before CONNECT" in caplog.text
    await _still_serving(running)


async def test_unsupported_protocol_level(
    running: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = await RawClient.open(running.port, 4)
    # CONNECT "MQTT" level 6
    await client.send_bytes(b"\x10\x0e\x00\x04MQTT\x06\x02\x00\x3c\x00\x02id")
    sent = await client.closed()
    assert len(sent) == 1 and isinstance(sent[0], Connack) and sent[0].reason_code == 1
    assert "protocol error" in caplog.text
    await _still_serving(running)


async def test_garbage_before_connect(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 4)
    await client.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await client.closed() == []
    await _still_serving(running)


async def test_silent_connection_closed_after_connect_timeout(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 4)
    await client.send_bytes(b"\x10")  # half a fixed header, then nothing
    assert await client.closed(timeout=5) == []


async def test_oversize_connect_refused(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.send(
        Connect(client_id="big", protocol_level=5, password=b"x" * 65_000, username="u" * 2000)
    )
    await client.closed()
    await _still_serving(running)
