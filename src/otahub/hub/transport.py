"""Publish/subscribe for drivers that act as an MQTT client (the thin-edge dialects).

The same driver code runs on the hub's own endpoint (``LocalTransport``,
in-process, no sockets) or against an external broker such as a thin-edge
gateway's mosquitto (a client transport built on aiomqtt).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from otahub.mqtt import Endpoint, Publish

# (topic, payload, retained) -> None or an awaitable
MessageHandler = Callable[[str, bytes, bool], "Awaitable[None] | None"]


class MessageTransport(Protocol):
    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None: ...

    async def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, acknowledges: bool = False
    ) -> None:
        """Receive every message on ``topic_filter``, retained ones first.

        ``acknowledges``: on the hub's own endpoint, a device's QoS 1/2 message is
        acknowledged once ``handler`` is done with it (through an external broker,
        the broker acknowledges on receipt and keeps the hub's session instead)."""
        ...

    async def close(self) -> None: ...


class LocalTransport:
    """The hub's own endpoint, used in-process."""

    def __init__(self, server: Endpoint) -> None:
        self.server = server
        self._unsubscribes: list[Callable[[], None]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.server.publish(topic, payload, qos, retain)

    async def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, acknowledges: bool = False
    ) -> None:
        def deliver(packet: Publish) -> Awaitable[None] | None:
            return handler(packet.topic, packet.payload, packet.retain)

        self._unsubscribes.append(
            await self.server.subscribe_replayed(topic_filter, deliver, acknowledges=acknowledges)
        )

    async def close(self) -> None:
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()
