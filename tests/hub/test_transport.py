"""The hub's own endpoint as the thin-edge drivers' transport."""

from __future__ import annotations

import asyncio

from otahub.hub.transport import LocalTransport
from otahub.mqtt.server import MQTTServer, ServerConfig


async def test_subscribe_returns_once_the_retained_messages_it_matched_are_handled() -> None:
    """A driver subscribing at start must have taken in the retained state before
    devices send newer news; a replay still under way overwrote it (a stale twin
    after a restart)."""
    server = MQTTServer(ServerConfig())
    for n in range(20):
        server.publish(f"te/device/c{n}///twin/firmware", b'{"version":"1.0.0"}', 1, True)
    seen: list[str] = []

    async def slow(topic: str, payload: bytes, retained: bool) -> None:
        await asyncio.sleep(0.005)
        seen.append(topic)

    transport = LocalTransport(server)
    await transport.subscribe("te/+/+/+/+/twin/firmware", slow)
    assert len(seen) == 20
    await transport.close()
