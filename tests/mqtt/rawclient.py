"""A bare MQTT client for tests: our codec over an asyncio stream, nothing hidden."""

from __future__ import annotations

import asyncio

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.packets import Connack, Connect, Packet, Publish, Suback, Subscribe, Subscription


class RawClient:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.version = version
        self.decoder = Decoder(version, role="client")
        self.pending: list[Packet] = []
        self._pid = 0

    @classmethod
    async def open(cls, port: int, version: int = 4, source: str | None = None) -> RawClient:
        """Connect to 127.0.0.1:port, from the loopback address ``source`` if given."""
        local_addr = None if source is None else (source, 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local_addr)
        return cls(reader, writer, version)

    def next_pid(self) -> int:
        self._pid += 1
        return self._pid

    async def send(self, packet: Packet) -> None:
        self.writer.write(encode(packet, self.version))
        await self.writer.drain()

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> Packet:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed by the server")
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    async def expect_nothing(self, timeout: float = 0.3) -> None:
        try:
            packet = await self.recv(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {packet!r}")

    async def closed(self, timeout: float = 5.0) -> list[Packet]:
        """Wait for the server to close; returns what it sent before closing."""
        got: list[Packet] = list(self.pending)
        self.pending.clear()
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return got
            got.extend(self.decoder.feed(data))

    async def connect(self, client_id: str = "", **kwargs: object) -> Connack:
        await self.send(Connect(client_id=client_id, protocol_level=self.version, **kwargs))  # type: ignore[arg-type]
        packet = await self.recv()
        assert isinstance(packet, Connack), packet
        return packet

    async def subscribe(self, *filters: str, qos: int = 0) -> Suback:
        await self.send(Subscribe(self.next_pid(), [Subscription(f, qos) for f in filters]))
        packet = await self.recv()
        assert isinstance(packet, Suback), packet
        return packet

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        pid = self.next_pid() if qos else None
        await self.send(Publish(topic, payload, qos, retain, packet_id=pid))

    def close(self) -> None:
        self.writer.close()
