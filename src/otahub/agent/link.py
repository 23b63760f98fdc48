"""The agent's MQTT connection: reconnects forever, publishes across reconnects.

The update runner keeps going while the link is down (an HTTP download does
not need MQTT); its reports wait for the next connection, except progress
reports, which are dropped rather than delayed.

Reconnecting is the one retry without a count: without a connection the
agent can neither receive nor report anything, so it keeps trying for as
long as it runs, with the delay doubling up to ``reconnect_max``. Nothing
waiting for the connection spins meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt

from otahub.agent.config import MqttConfig

log = logging.getLogger(__name__)

#: Seconds to wait for a PUBACK before assuming the connection is dead.
PUBLISH_TIMEOUT = 30.0


@dataclass
class ClientOptions:
    """What a dialect decides about the connection."""

    identifier: str | None
    username: str | None = None
    password: str | None = None
    protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311
    clean_session: bool | None = None
    extra: dict[str, object] = field(default_factory=dict)


OnConnect = Callable[[], Awaitable[None]]
OnMessage = Callable[[str, bytes, bool], Awaitable[None]]


class MqttLink:
    def __init__(self, config: MqttConfig, options: Callable[[], ClientOptions]) -> None:
        self.config = config
        # asked again for every connection: a signed login (EnOS) carries the
        # time it was made, and a server may refuse an old one
        self.options = options
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        #: Resolved when the current connection ends, so publishes waiting for
        #: a PUBACK on it stop waiting (aiomqtt would wait the full timeout).
        self._lost: asyncio.Future[None] | None = None
        self.connections = 0

    def _tls(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        ca = str(self.config.ca_file) if self.config.ca_file else None
        context = ssl.create_default_context(cafile=ca)
        if self.config.cert_file is not None:
            key = str(self.config.key_file) if self.config.key_file else None
            context.load_cert_chain(str(self.config.cert_file), key)
        return context

    def _make_client(self) -> aiomqtt.Client:
        opts = self.options()
        return aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=opts.username if opts.username is not None else self.config.username,
            password=opts.password if opts.password is not None else self.config.password,
            identifier=opts.identifier,
            protocol=opts.protocol,
            clean_session=opts.clean_session,
            keepalive=self.config.keepalive,
            tls_context=self._tls(),
            timeout=PUBLISH_TIMEOUT,
            # paho leaves Nagle on: a PUBACK followed by the next request (one
            # ThingsBoard chunk after another) then waits for the broker's
            # delayed ACK, about 40 ms per round trip.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def run(self, on_connect: OnConnect, on_message: OnMessage) -> None:
        """Connect, call ``on_connect``, feed messages to ``on_message``; forever."""
        delay = self.config.reconnect_initial
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    self._lost = asyncio.get_running_loop().create_future()
                    self.connections += 1
                    log.info("connected to %s:%s", self.config.host, self.config.port)
                    delay = self.config.reconnect_initial
                    self.connected.set()
                    await self._serve(client, on_connect, on_message)
            except aiomqtt.MqttError as exc:
                log.warning("MQTT connection lost: %s; reconnecting in %.1fs", exc, delay)
            finally:
                self.connected.clear()
                self._client = None
                if self._lost is not None and not self._lost.done():
                    self._lost.set_result(None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max)

    async def _serve(
        self, client: aiomqtt.Client, on_connect: OnConnect, on_message: OnMessage
    ) -> None:
        """Run ``on_connect``, then hand over messages in order, until the connection ends.

        Messages are read from the start, so that a connection lost while
        ``on_connect`` waits for a PUBACK ends that wait: otherwise nothing
        would notice the loss, since only this loop reconnects. Messages that
        arrive meanwhile are kept and handled once ``on_connect`` is done.
        """
        inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()

        async def read() -> None:
            async for message in client.messages:
                inbox.put_nowait(message)

        reader = asyncio.ensure_future(read())
        setup = asyncio.ensure_future(on_connect())
        try:
            await asyncio.wait([setup, reader], return_when=asyncio.FIRST_COMPLETED)
            if not setup.done():
                reader.result()  # raises the MqttError that ended the connection
                raise aiomqtt.MqttError("disconnected while setting up the connection")
            setup.result()
            while True:
                if inbox.empty():
                    getting = asyncio.ensure_future(inbox.get())
                    await asyncio.wait([getting, reader], return_when=asyncio.FIRST_COMPLETED)
                    if not getting.done():
                        getting.cancel()
                        reader.result()
                        raise aiomqtt.MqttError("message stream ended")
                    message = getting.result()
                else:
                    message = inbox.get_nowait()
                await on_message(
                    str(message.topic), _as_bytes(message.payload), bool(message.retain)
                )
        finally:
            for task in (setup, reader):
                if not task.done():
                    task.cancel()
            await asyncio.gather(setup, reader, return_exceptions=True)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        best_effort: bool = False,
    ) -> bool:
        """Publish, waiting for a connection (and the PUBACK) unless ``best_effort``.

        Returns whether the message was handed to the broker.
        """
        while True:
            if best_effort and not self.connected.is_set():
                return False
            await self.connected.wait()
            client, lost = self._client, self._lost
            if client is None or lost is None:
                await asyncio.sleep(0.05)
                continue
            try:
                sending = asyncio.ensure_future(
                    client.publish(topic, payload, qos=qos, retain=retain)
                )
                await asyncio.wait([sending, lost], return_when=asyncio.FIRST_COMPLETED)
                if not sending.done():
                    sending.cancel()
                    raise aiomqtt.MqttError("connection lost before the broker acknowledged")
                sending.result()
                return True
            except aiomqtt.MqttError as exc:
                if best_effort:
                    return False
                log.info("publish to %s failed (%s); waiting for the connection", topic, exc)
                # The run loop notices the dead connection and clears the event.
                await asyncio.sleep(0.2)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected")
        await client.subscribe(topic_filter, qos=qos)


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
