"""The thin-edge dialects against an external broker (``otahub serve --broker``).

The hub connects as an ordinary MQTT client, as thin-edge's own mapper does,
to the mosquitto of a thin-edge gateway or a clustered broker. It reconnects
with exponential backoff, subscribes again to every filter after each
connect (the broker then replays the retained messages, which the drivers
treat idempotently) and keeps a persistent session, so QoS 1 answers
published while the hub is away are queued by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt

from otahub.hub.supervision import Supervisor
from otahub.hub.transport import MessageHandler

log = logging.getLogger("otahub.hub.broker")

SCHEMES = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://…`` (8883)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: {exc}") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(
            f"broker URL must look like mqtt://host:port or mqtts://host:port: {url!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL takes no path or query: {url!r}")
    return BrokerAddress(
        host=parts.hostname,
        port=port or SCHEMES[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )


def client_id_for(seed: str) -> str:
    """A stable client id per hub (its data dir), so the broker keeps its session."""
    return f"otahub-hub-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"


class BrokerTransport:
    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        publish_wait: float = 10.0,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self._backoff = (backoff_initial, backoff_max)
        self._publish_wait = publish_wait
        self._handlers: list[tuple[str, MessageHandler]] = []
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, parts: Supervisor) -> None:
        self._task = parts.start("broker transport", self._run())

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self._publish_wait)
        except TimeoutError:
            raise ConnectionError(f"not connected to the broker {self.address}") from None
        client = self._client
        if client is None:
            raise ConnectionError(f"not connected to the broker {self.address}")
        await client.publish(topic, payload, qos=qos, retain=retain)

    async def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, acknowledges: bool = False
    ) -> None:
        # the broker acknowledged the device's message on receipt: ``acknowledges``
        # has nothing to hold back here
        self._handlers.append((topic_filter, handler))
        client = self._client
        if client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):  # the next connect subscribes it
                await client.subscribe(topic_filter, qos=1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _client_for(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=self.client_id,
            clean_session=False,
            tls_context=ssl.create_default_context() if self.address.tls else None,
            timeout=10,
        )

    async def _run(self) -> None:
        initial, maximum = self._backoff
        delay = initial
        while True:
            try:
                async with self._client_for() as client:
                    for topic_filter in dict.fromkeys(f for f, _ in self._handlers):
                        await client.subscribe(topic_filter, qos=1)
                    self._client = client
                    self._connected.set()
                    delay = initial
                    log.info("connected to the broker %s as %s", self.address, self.client_id)
                    async for message in client.messages:
                        await self._dispatch(message)
            except aiomqtt.MqttError as exc:
                log.warning("broker %s: %s; reconnecting in %.1f s", self.address, exc, delay)
            finally:
                self._connected.clear()
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, maximum)

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        topic = message.topic.value
        for topic_filter, handler in list(self._handlers):
            if not message.topic.matches(topic_filter):
                continue
            try:
                result = handler(topic, bytes(payload), bool(message.retain))
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("handler for %s failed on %s", topic_filter, topic)
