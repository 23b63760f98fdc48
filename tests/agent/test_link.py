"""The agent's MQTT link against a real mosquitto behind a proxy that cuts connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from otahub.agent.config import MqttConfig
from otahub.agent.link import ClientOptions, MqttLink
from tests.interop.tedge_child import MOSQUITTO, Mosquitto

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto")

PUBLISH = 3


class CuttingProxy:
    """Forwards MQTT to a broker; closes the first connection at its first PUBLISH.

    The PUBLISH is dropped, so the broker never acknowledges it: the client
    is left waiting for a PUBACK on a dead connection.
    """

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        cut = self.connections == 1
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.broker_port)

        async def upstream() -> None:
            while True:
                head = await client_r.readexactly(1)
                length, raw = 0, b""
                for shift in range(0, 28, 7):
                    byte = await client_r.readexactly(1)
                    raw += byte
                    length |= (byte[0] & 0x7F) << shift
                    if not byte[0] & 0x80:
                        break
                body = await client_r.readexactly(length)
                if cut and head[0] >> 4 == PUBLISH:
                    return
                broker_w.write(head + raw + body)
                await broker_w.drain()

        async def downstream() -> None:
            while data := await broker_r.read(65536):
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in (client_w, broker_w):
            writer.close()


async def test_a_connection_lost_while_on_connect_waits_for_a_puback_is_reopened(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    proxy = CuttingProxy(broker.port)
    try:
        port = await proxy.start()
        config = MqttConfig(host="127.0.0.1", port=port, reconnect_initial=0.1, reconnect_max=0.2)
        link = MqttLink(config, lambda: ClientOptions(identifier="link-test"))
        done = asyncio.Event()
        calls = 0

        async def on_connect() -> None:
            nonlocal calls
            calls += 1
            await link.publish("agent/state", b"up", qos=1)
            done.set()

        async def on_message(topic: str, payload: bytes, retain: bool) -> None:
            pass

        runner = asyncio.ensure_future(link.run(on_connect, on_message))
        try:
            await asyncio.wait_for(done.wait(), timeout=20)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        assert proxy.connections >= 2
        assert calls >= 2
        assert link.connections >= 2
    finally:
        if proxy.server is not None:
            proxy.server.close()
        broker.stop()


async def test_messages_that_arrive_during_on_connect_are_handled_after_it_in_order(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        config = MqttConfig(host="127.0.0.1", port=broker.port)
        link = MqttLink(config, lambda: ClientOptions(identifier="order-test"))
        seen: list[str] = []
        setup_done = False
        out_of_order: list[str] = []

        async def on_connect() -> None:
            nonlocal setup_done
            await link.subscribe("cmd/#")
            proc = await asyncio.create_subprocess_exec(
                "mosquitto_pub",
                "-p",
                str(broker.port),
                "-q",
                "1",
                "-t",
                "cmd/x",
                "-l",
                stdin=asyncio.subprocess.PIPE,
            )
            await proc.communicate(b"\n".join(f"m{i}".encode() for i in range(20)) + b"\n")
            await asyncio.sleep(0.3)  # the messages arrive while setup still runs
            setup_done = True

        async def on_message(topic: str, payload: bytes, retain: bool) -> None:
            if not setup_done:
                out_of_order.append(payload.decode())
            seen.append(payload.decode())

        runner = asyncio.ensure_future(link.run(on_connect, on_message))
        try:
            for _ in range(200):
                if len(seen) == 20:
                    break
                await asyncio.sleep(0.05)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        assert seen == [f"m{i}" for i in range(20)]
        assert out_of_order == []
    finally:
        broker.stop()
