from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from otahub.mqtt.server import MQTTServer, ServerConfig


class RunningServer:
    def __init__(self, server: MQTTServer, port: int) -> None:
        self.server = server
        self.port = port


@pytest.fixture
async def running() -> AsyncIterator[RunningServer]:
    server = MQTTServer(ServerConfig(max_packet_size=64 * 1024, connect_timeout=2.0))
    port = await server.listen("127.0.0.1", 0)
    yield RunningServer(server, port)
    await server.close()
