"""paho-mqtt 2.x (3.1.1 and 5.0) against ``otahub serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from tests.hubproc import HubProcess
from tests.interop.paho_client import V5, V311, PahoClient

pytestmark = pytest.mark.interop

PROTOCOLS = [pytest.param(V311, id="3.1.1"), pytest.param(V5, id="5.0")]


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(data_dir=tmp_path_factory.mktemp("paho") / "data", extra_args=["--no-auth"])
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def clients(shared_hub: HubProcess):  # type: ignore[no-untyped-def]
    made: list[PahoClient] = []

    def make(
        protocol: MQTTProtocolVersion = V311, client_id: str | None = None, **kwargs: object
    ) -> PahoClient:
        client = PahoClient(
            shared_hub.mqtt_port,
            client_id if client_id is not None else _id("c"),
            protocol,
            **kwargs,
        )  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(Exception):
            client.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wildcard_subscriptions_and_qos_both_ways(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    sub = clients(protocol)
    assert sub.connect() == 0
    granted = sub.subscribe("fleet/+/status/#", qos=2)
    assert [int(getattr(g, "value", g)) for g in granted] == [2]
    pub = clients(protocol)
    pub.connect()
    for qos in (0, 1, 2):
        pub.publish(f"fleet/dev{qos}/status/fw", f"qos{qos}".encode(), qos=qos)
        message = sub.expect()
        assert message.topic == f"fleet/dev{qos}/status/fw"
        assert message.payload == f"qos{qos}".encode()
        assert message.qos == qos
    pub.publish("fleet/dev1/other", b"x", qos=1)
    sub.expect_none()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscription_qos_downgrades_delivery(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    sub = clients(protocol)
    sub.connect()
    sub.subscribe("a/b", qos=1)
    pub = clients(protocol)
    pub.connect()
    pub.publish("a/b", b"hi", qos=2)
    assert sub.expect().qos == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retained_set_replace_delete(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    pub = clients(protocol)
    pub.connect()
    pub.publish("te/device/x//", b"one", qos=1, retain=True)
    pub.publish("te/device/x//", b"two", qos=1, retain=True)
    first = clients(protocol)
    first.connect()
    first.subscribe("te/device/+//")
    message = first.expect()
    assert (message.payload, message.retain) == (b"two", True)
    first.expect_none()
    pub.publish("te/device/x//", b"", qos=1, retain=True)
    # live subscribers see the deleting message; new ones get nothing
    assert first.expect().payload == b""
    late = clients(protocol)
    late.connect()
    late.subscribe("te/#")
    late.expect_none()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_will_on_abrupt_disconnect(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    watcher = clients(protocol)
    watcher.connect()
    watcher.subscribe("wills/#", qos=1)
    dying = clients(protocol, will=("wills/dev", b"gone", 1, False))
    dying.connect()
    dying.drop()
    message = watcher.expect()
    assert (message.topic, message.payload) == ("wills/dev", b"gone")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_will_on_clean_disconnect(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    watcher = clients(protocol)
    watcher.connect()
    watcher.subscribe("wills/#", qos=1)
    leaving = clients(protocol, will=("wills/dev", b"gone", 1, False))
    leaving.connect()
    leaving.disconnect()
    watcher.expect_none()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persistent_session_gets_messages_sent_while_offline(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    client_id = _id("persist")
    opts = {"clean": False, "session_expiry": 300} if protocol == V5 else {"clean": False}
    sub = clients(protocol, client_id, **opts)
    sub.connect()
    sub.subscribe("jobs/#", qos=2)
    sub.disconnect()
    assert sub.wait_disconnected()
    pub = clients(protocol)
    pub.connect()
    pub.publish("jobs/0", b"q0", qos=0)  # QoS 0 is not kept for offline sessions
    pub.publish("jobs/1", b"q1", qos=1)
    pub.publish("jobs/2", b"q2", qos=2)
    again = clients(protocol, client_id, **opts)
    again.connect()
    assert again.session_present is True
    got = [(m.topic, m.payload, m.qos) for m in (again.expect(), again.expect())]
    assert got == [("jobs/1", b"q1", 1), ("jobs/2", b"q2", 2)]
    again.expect_none()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unacknowledged_message_redelivered_to_resumed_session(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    client_id = _id("inflight")
    opts = {"clean": False, "session_expiry": 300} if protocol == V5 else {"clean": False}
    sub = clients(protocol, client_id, manual_ack=True, **opts)
    sub.connect()
    sub.subscribe("cmd/#", qos=1)
    pub = clients(protocol)
    pub.connect()
    pub.publish("cmd/1", b"do it", qos=1)
    first = sub.expect()
    assert first.payload == b"do it"
    sub.drop()  # never acknowledged
    again = clients(protocol, client_id, **opts)
    again.connect()
    redelivered = again.expect()
    assert (redelivered.topic, redelivered.payload, redelivered.dup) == ("cmd/1", b"do it", True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clean_session_discards_state(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    client_id = _id("clean")
    opts = {"clean": False, "session_expiry": 300} if protocol == V5 else {"clean": False}
    sub = clients(protocol, client_id, **opts)
    sub.connect()
    sub.subscribe("x/#", qos=1)
    sub.disconnect()
    fresh = clients(protocol, client_id, clean=True)
    fresh.connect()
    assert fresh.session_present is False
    pub = clients(protocol)
    pub.connect()
    pub.publish("x/1", b"1", qos=1)
    fresh.expect_none()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_id_takeover(clients, protocol) -> None:  # type: ignore[no-untyped-def]
    client_id = _id("dup")
    first = clients(protocol, client_id)
    first.connect()
    second = clients(protocol, client_id)
    second.connect()
    assert first.wait_disconnected(5)
    second.subscribe("t", qos=1)
    second.publish("t", b"still here", qos=1)
    assert second.expect().payload == b"still here"


def test_v5_empty_client_id_gets_assigned_identifier(clients) -> None:  # type: ignore[no-untyped-def]
    client = clients(V5, "")
    assert client.connect() == 0
    assigned = client.connack_properties.AssignedClientIdentifier
    assert assigned.startswith("otahub-")


def test_v311_empty_client_id_with_clean_session(clients) -> None:  # type: ignore[no-untyped-def]
    client = clients(V311, "")
    assert client.connect() == 0


def test_keepalive_enforced(shared_hub: HubProcess) -> None:
    """A client that stops talking is dropped after 1.5 x keep alive."""
    import socket

    from otahub.mqtt.codec import Decoder, encode
    from otahub.mqtt.packets import Connack, Connect

    with socket.create_connection(("127.0.0.1", shared_hub.mqtt_port)) as sock:
        sock.sendall(encode(Connect(client_id="quiet", keep_alive=1), 4))
        decoder = Decoder(4, role="client")
        sock.settimeout(5)
        packets = decoder.feed(sock.recv(64))
        assert isinstance(packets[0], Connack)
        start = time.monotonic()
        assert sock.recv(64) == b""  # closed by the server
        elapsed = time.monotonic() - start
        assert 1.3 <= elapsed <= 3.0


def test_serve_flags_set_the_endpoint_limits(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``otahub serve --max-subscriptions/--max-retained-per-client/--max-inflight`` reach
    the endpoint: paho 5.0 sees SUBACK 0x97 and the Receive Maximum in CONNACK."""
    hub = HubProcess(
        data_dir=tmp_path_factory.mktemp("limits") / "data",
        extra_args=[
            "--no-auth",
            "--max-subscriptions",
            "2",
            "--max-retained-per-client",
            "1",
            "--max-inflight",
            "7",
        ],
    )
    hub.start()
    client = PahoClient(hub.mqtt_port, _id("limited"), V5)
    try:
        assert client.connect() == 0
        assert client.connack_properties.ReceiveMaximum == 7
        granted = [client.subscribe(topic, 1)[0] for topic in ("l/1", "l/2", "l/3")]
        assert [int(getattr(g, "value", g)) for g in granted] == [1, 1, 0x97]
        client.publish("l/1", b"kept", qos=1, retain=True)
        client.publish("l/2", b"over", qos=1, retain=True)  # PUBACK 0x97: still acknowledged
        assert client.expect().payload == b"kept"
        client.expect_none()
        client.disconnect()
        log = hub.log()
        assert log.count("holds 2 subscriptions, the most one client may") == 1
        assert log.count("holds 1 retained messages, the most one client may") == 1
    finally:
        hub.stop()
