"""A minimal MQTT 3.1.1 client connection on the hub's own codec.

One :class:`asyncio.Protocol` per device and no task of its own: bytes in
are decoded in ``data_received`` and handed to the device's callback, which
must not block. CONNECT/CONNACK, SUBSCRIBE (its SUBACK is not waited for:
the server handles one connection's packets in order), PUBLISH at QoS 0/1
both ways with PUBACK, and PINGREQ from one fleet-wide timer
(:class:`Pinger`) instead of a timer per connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.errors import MQTTError
from otahub.mqtt.packets import (
    MQTT_3_1_1,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Puback,
    Publish,
    Subscribe,
    Subscription,
)
from otahub.simulator.config import Endpoint

log = logging.getLogger("otahub.simulator")

#: ``on_message(topic, payload, retained)``
MessageHandler = Callable[[str, bytes, bool], None]


class ConnectRefused(Exception):
    """The server answered CONNACK with a non-zero return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK return code {code}")
        self.code = code


class ConnectionLost(Exception):
    """The connection closed before what was waited for arrived."""


class MqttConnection(asyncio.Protocol):
    __slots__ = (
        "_acks",
        "_connack",
        "_decoder",
        "_on_message",
        "_pid",
        "closed",
        "last_sent",
        "transport",
    )

    def __init__(self, on_message: MessageHandler) -> None:
        loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._decoder = Decoder(MQTT_3_1_1, role="client")
        self._connack: asyncio.Future[int] = loop.create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._pid = 0
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.last_sent = time.monotonic()

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though uvloop's does not derive from asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except MQTTError as exc:
            log.warning("closing a connection the server sent malformed data on: %s", exc)
            self.abort()
            return
        for packet in packets:
            if isinstance(packet, Publish):
                if packet.qos == 1 and packet.packet_id is not None:
                    self._write(encode(Puback(packet.packet_id), MQTT_3_1_1))
                self._on_message(packet.topic, packet.payload, packet.retain)
            elif isinstance(packet, Puback):
                ack = self._acks.pop(packet.packet_id, None)
                if ack is not None and not ack.done():
                    ack.set_result(None)
            elif isinstance(packet, Connack) and not self._connack.done():
                self._connack.set_result(packet.reason_code)
            # SUBACK, PINGRESP: nothing to do

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        lost = ConnectionLost("connection closed")
        if not self._connack.done():
            self._connack.set_exception(lost)
            self._connack.exception()  # retrieved: a refused connect is handled by the caller
        for ack in self._acks.values():
            if not ack.done():
                ack.set_exception(lost)
                ack.exception()
        self._acks.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- use ----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def _next_pid(self) -> int:
        self._pid = self._pid % 0xFFFF + 1
        return self._pid

    def subscribe(self, *filters: str, qos: int = 1) -> None:
        packet = Subscribe(self._next_pid(), [Subscription(f, qos) for f in filters])
        self._write(encode(packet, MQTT_3_1_1))

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> asyncio.Future[None] | None:
        """Send one message; at QoS 1 the future resolves on its PUBACK."""
        if qos == 0:
            self._write(encode(Publish(topic, payload, 0, retain), MQTT_3_1_1))
            return None
        pid = self._next_pid()
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[pid] = ack
        self._write(encode(Publish(topic, payload, 1, retain, packet_id=pid), MQTT_3_1_1))
        return ack

    def ping(self) -> None:
        self._write(encode(Pingreq(), MQTT_3_1_1))

    def disconnect(self) -> None:
        """A clean DISCONNECT, then close."""
        if self.transport is not None:
            self._write(encode(Disconnect(), MQTT_3_1_1))
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection without a word, as a crashing device does."""
        if self.transport is not None:
            self.transport.abort()


async def connect(
    endpoint: Endpoint,
    packet: Connect,
    on_message: MessageHandler,
    *,
    timeout: float,
) -> MqttConnection:
    """Open a TCP connection, send CONNECT and wait for an accepting CONNACK."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: MqttConnection(on_message), endpoint.host, endpoint.port),
        timeout,
    )
    conn._write(encode(packet, MQTT_3_1_1))
    try:
        code = await asyncio.wait_for(asyncio.shield(conn._connack), timeout)
    except BaseException:
        conn.abort()
        raise
    if code != 0:
        conn.abort()
        raise ConnectRefused(code)
    return conn


class Pinger:
    """PINGREQ for every connection quiet for half its keep-alive, from one task."""

    def __init__(self, keepalive: int) -> None:
        self.keepalive = keepalive
        self.connections: set[MqttConnection] = set()

    async def run(self) -> None:
        interval = max(1.0, self.keepalive / 4)
        while True:
            await asyncio.sleep(interval)
            quiet_since = time.monotonic() - self.keepalive / 2
            for conn in list(self.connections):
                if conn.is_open and conn.last_sent < quiet_since:
                    conn.ping()
