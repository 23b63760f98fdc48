"""The driver-facing interface (``otahub.mqtt.Endpoint`` and ``Client``) over real
connections: what a driver sees of the endpoint and of each client, and nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from otahub.mqtt import (
    Client,
    ConnectInfo,
    Endpoint,
    Identity,
    MQTTServer,
    Publish,
    ReasonCode,
    Refusal,
)
from otahub.mqtt.packets import Disconnect, Puback, Unsuback, Unsubscribe
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

VERSIONS = [pytest.param(4, id="3.1.1"), pytest.param(5, id="5.0")]


def endpoint_of(running: RunningServer) -> Endpoint:
    """The server as a driver gets it: typed as the interface only."""
    server: MQTTServer = running.server
    return server


async def token_login(info: ConnectInfo) -> Identity | Refusal | None:
    if info.username is None:
        return None
    return Identity(info.username, dialect="test", data={"token": info.password})


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Recorder:
    """A test driver: keeps the clients its hooks were handed."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.published: list[tuple[Client, Publish]] = []
        self.connected: list[Client] = []
        self.disconnected: list[Client] = []
        self.subscribed: list[tuple[Client, str, bool]] = []
        endpoint.add_authenticator(token_login)
        endpoint.on_session_connected(self.connected.append)
        endpoint.on_session_disconnected(self.disconnected.append)
        endpoint.on_subscribed(self._on_subscribed)
        endpoint.intercept("ask/#", self._on_publish)

    def _on_publish(self, client: Client, packet: Publish) -> None:
        self.published.append((client, packet))

    def _on_subscribed(self, client: Client, topic_filter: str) -> None:
        # granted before the observer hears of it
        self.subscribed.append((client, topic_filter, client.is_subscribed(topic_filter)))


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_client_is_described_by_its_connect_and_login(
    running: RunningServer, version: int
) -> None:
    driver = Recorder(endpoint_of(running))
    device = await RawClient.open(running.port, version)
    await device.connect("cid-7", username="sensor-7", password=b"secret")
    await device.send(Publish("ask/version", b"?", qos=1, packet_id=3))
    assert await device.recv() == Puback(3)
    ((client, packet),) = driver.published
    assert driver.connected == [client]
    assert client.client_id == "cid-7"
    assert client.identity == Identity("sensor-7", dialect="test", data={"token": b"secret"})
    assert client.connected
    assert client.is_v5 is (version == 5)
    assert (packet.topic, packet.payload, packet.qos) == ("ask/version", b"?", 1)
    assert list(driver.endpoint.clients()) == [client]
    device.close()
    await until(lambda: driver.disconnected == [client], "the disconnect hook")
    assert list(driver.endpoint.clients()) == []
    assert not client.connected


@pytest.mark.parametrize("version", VERSIONS)
async def test_send_reaches_a_client_that_did_not_subscribe(
    running: RunningServer, version: int
) -> None:
    driver = Recorder(endpoint_of(running))
    device = await RawClient.open(running.port, version)
    await device.connect("cid-send", username="sensor")
    await device.publish("ask/firmware", b"")
    await until(lambda: bool(driver.published), "the intercepted message")
    client = driver.published[0][0]
    client.send("reply/plain", b"qos0")
    client.send("reply/kept", b"qos1", qos=1, retain=True)
    first = await device.recv()
    second = await device.recv()
    assert isinstance(first, Publish) and isinstance(second, Publish)
    assert (first.topic, first.payload, first.qos, first.retain) == (
        "reply/plain",
        b"qos0",
        0,
        False,
    )
    assert (second.topic, second.payload, second.qos, second.retain) == (
        "reply/kept",
        b"qos1",
        1,
        True,
    )
    await device.send(Puback(second.packet_id or 0))
    device.close()


async def test_subscriptions_are_read_through_topics(running: RunningServer) -> None:
    driver = Recorder(endpoint_of(running))
    device = await RawClient.open(running.port, 5)
    await device.connect("cid-sub", username="sensor")
    suback = await device.subscribe("dev/+/cmd", qos=0)
    assert suback.reason_codes == [0]
    suback = await device.subscribe("dev/#", qos=1)
    assert suback.reason_codes == [1]
    await until(lambda: len(driver.subscribed) == 2, "the subscription hook")
    client = driver.subscribed[0][0]
    assert [(topic_filter, ok) for _, topic_filter, ok in driver.subscribed] == [
        ("dev/+/cmd", True),
        ("dev/#", True),
    ]
    # the highest QoS of the matching subscriptions
    assert client.subscription_qos("dev/a/cmd") == 1
    assert client.subscription_qos("dev/a/status") == 1
    assert client.subscription_qos("other/a/cmd") is None
    assert client.is_subscribed("dev/a/cmd")
    assert not client.is_subscribed("other")
    await device.send(Unsubscribe(9, ["dev/#"]))
    assert isinstance(await device.recv(), Unsuback)
    assert client.subscription_qos("dev/a/cmd") == 0
    assert client.subscription_qos("dev/a/status") is None
    assert not client.is_subscribed("dev/a/status")
    device.close()


async def test_disconnect_ends_the_connection_with_its_reason(running: RunningServer) -> None:
    driver = Recorder(endpoint_of(running))
    device = await RawClient.open(running.port, 5)
    await device.connect("cid-bye", username="sensor")
    await device.publish("ask/x", b"")
    await until(lambda: bool(driver.published), "the intercepted message")
    client = driver.published[0][0]
    client.disconnect(ReasonCode.NOT_AUTHORIZED, "credentials changed")
    sent = await device.closed()
    assert len(sent) == 1 and isinstance(sent[0], Disconnect)
    assert sent[0].reason_code == ReasonCode.NOT_AUTHORIZED
    assert sent[0].properties.reason_string == "credentials changed"
    await until(lambda: not client.connected, "the connection to end")
    assert driver.disconnected == [client]


async def test_run_in_order_follows_the_handlers_of_earlier_messages(
    running: RunningServer,
) -> None:
    endpoint = endpoint_of(running)
    endpoint.add_authenticator(token_login)
    order: list[str] = []
    release = asyncio.Event()
    clients: list[Client] = []

    async def slow(client: Client, packet: Publish) -> None:
        clients.append(client)
        await release.wait()
        order.append(packet.topic)

    endpoint.intercept("slow/#", slow)
    device = await RawClient.open(running.port, 4)
    await device.connect("cid-order", username="sensor")
    await device.publish("slow/1", b"")
    await until(lambda: bool(clients), "the first handler")
    client = clients[0]

    def after() -> None:
        order.append("driver code")

    client.run_in_order(after)
    assert order == []
    release.set()
    await client.handled()
    assert order == ["slow/1", "driver code"]
    device.close()


async def test_the_hub_publishes_and_subscribes_through_the_endpoint(
    running: RunningServer,
) -> None:
    endpoint = endpoint_of(running)
    assert endpoint.publish("state/a", b"retained", qos=1, retain=True) == 0
    heard: list[tuple[str, bytes, bool]] = []

    def hear(packet: Publish) -> Awaitable[None] | None:
        heard.append((packet.topic, packet.payload, packet.retain))
        return None

    stop = await endpoint.subscribe_replayed("state/#", hear)
    # the retained message is handled before the subscription returns
    assert heard == [("state/a", b"retained", True)]
    device = await RawClient.open(running.port, 4)
    await device.connect("cid-pub")
    await device.publish("state/b", b"live")
    await until(lambda: len(heard) == 2, "the device's message")
    assert heard[1] == ("state/b", b"live", False)
    stop()
    assert endpoint.publish("state/c", b"unheard") == 0
    device.close()


async def test_spawned_work_is_waited_for_when_the_endpoint_closes() -> None:
    server = MQTTServer()
    endpoint: Endpoint = server
    done: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0.05)
        done.append("work")

    endpoint.spawn(work())
    assert await server.close(drain_timeout=2.0) == []
    assert done == ["work"]


async def test_connection_identities_count_connections_not_yet_accepted(
    running: RunningServer,
) -> None:
    Recorder(endpoint_of(running))
    pending = await RawClient.open(running.port, 4)
    device = await RawClient.open(running.port, 4)
    await device.connect("cid-who", username="sensor")
    await until(lambda: len(running.server.connection_identities()) == 2, "both connections")
    identities = running.server.connection_identities()
    assert sorted(identities, key=lambda identity: identity is not None) == [
        None,
        Identity("sensor", dialect="test", data={"token": None}),
    ]
    pending.close()
    device.close()
