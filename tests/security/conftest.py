"""A hub started as ``otahub serve`` with its REST API and log at hand, for attack tests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.mqtt.rawclient import RawClient

# a loopback source address outside ``--anonymous-from 127.0.0.1/32``
OUTSIDE = "127.0.0.2"


class SecureHub:
    def __init__(self, process: HubProcess) -> None:
        self.process = process
        self.port = process.mqtt_port
        self.api = httpx.Client(base_url=f"{process.http_url}/api/v1", timeout=30)

    def add_device(self, name: str, dialect: str, **fields: Any) -> dict[str, Any]:
        response = self.api.post("/devices", json={"name": name, "dialect": dialect, **fields})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def devices(self) -> list[str]:
        return [d["name"] for d in self.api.get("/devices").json()]

    def upload(self, title: str, version: str, data: bytes) -> None:
        response = self.api.post(
            "/firmware",
            params={"title": title, "version": version},
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text

    def start_update(self, device: str, title: str, version: str) -> int:
        response = self.api.post(
            "/updates", json={"device": device, "title": title, "version": version, "force": True}
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def update(self, update_id: int) -> dict[str, Any]:
        return self.api.get(f"/updates/{update_id}").json()  # type: ignore[no-any-return]

    def wait_update(
        self, update_id: int, done: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            update = self.update(update_id)
            if done(update) or time.monotonic() > deadline:
                return update
            time.sleep(0.05)

    def wait_log(self, pattern: str, timeout: float = 10) -> str:
        """The first log line matching the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            for line in self.process.log().splitlines():
                if regex.search(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r}:\n{self.process.log()}")
            time.sleep(0.05)

    def log_count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        return sum(1 for line in self.process.log().splitlines() if regex.search(line))

    async def client(
        self,
        client_id: str,
        version: int = 5,
        *,
        source: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> tuple[RawClient, int]:
        """A connected raw client and its CONNACK code (the client is closed when refused)."""
        raw = await RawClient.open(self.port, version, source=source)
        kwargs: dict[str, Any] = {}
        if username is not None:
            kwargs["username"] = username
        if password is not None:
            kwargs["password"] = password.encode()
        connack = await raw.connect(client_id, **kwargs)
        return raw, connack.reason_code


@pytest.fixture
def secure_hub(hub_factory: Callable[..., HubProcess]) -> Iterator[Callable[..., SecureHub]]:
    hubs: list[SecureHub] = []

    def start(*args: str) -> SecureHub:
        hub = SecureHub(hub_factory("--no-auth", *args))
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.api.close()
