"""REST helpers for ThingsBoard-dialect tests against ``otahub serve``."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.hubproc import HubProcess


class TbHub:
    """A running hub (started with ``--no-auth``) seen through its REST API."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.http = httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30)

    @property
    def mqtt_port(self) -> int:
        return self.hub.mqtt_port

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, expect: int | None = None, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        else:
            assert response.status_code < 400, response.text
        return response.json() if response.content else None

    def upload(
        self, title: str, version: str, data: bytes, kind: str = "firmware", **extra: str
    ) -> dict[str, Any]:
        params = {"title": title, "version": version, "kind": kind, **extra}
        result: dict[str, Any] = self.call("POST", "/firmware", params=params, content=data)
        return result

    def add_device(self, name: str, token: str, device_type: str | None = None) -> None:
        body = {"name": name, "dialect": "thingsboard", "token": token}
        if device_type:
            body["device_type"] = device_type
        self.call("POST", "/devices", json=body)

    def settings(self, name: str, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call("PUT", f"/thingsboard/devices/{name}", json=body)
        return result

    def start_update(self, device: str, title: str, version: str, **extra: Any) -> int:
        body = {"device": device, "title": title, "version": version, **extra}
        update_id: int = self.call("POST", "/updates", json=body)["id"]
        return update_id

    def update(self, update_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/updates/{update_id}")
        return result

    def device(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/devices/{name}")
        return result

    def wait_update(
        self, update_id: int, states: str | tuple[str, ...], timeout: float = 30
    ) -> dict[str, Any]:
        wanted = (states,) if isinstance(states, str) else states
        deadline = time.monotonic() + timeout
        while True:
            update = self.update(update_id)
            if update["state"] in wanted:
                return update
            if time.monotonic() > deadline:
                raise AssertionError(f"update {update_id} stuck in {update['state']}: {update}")
            time.sleep(0.05)

    def states(self, update_id: int) -> list[str]:
        return [t["to_state"] for t in self.update(update_id)["transitions"]]
