"""Thin-edge child devices over real MQTT connections, acting on update commands as
devices do: executing, then successful (reporting the new version) or failed."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from tests.interop.paho_client import PahoClient


@dataclass
class Fleet:
    port: int
    names: list[str]
    step_s: float = 0.6  # time a device spends in each state
    failing: bool = False  # what the next updates end with
    clients: dict[str, PahoClient] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Fleet:
        for name in self.names:
            client = PahoClient(self.port, f"e2e-{name}")
            assert client.connect() == 0
            client.publish(f"te/device/{name}//", '{"@type":"child-device","type":"demo"}', 1, True)
            client.publish(f"te/device/{name}///cmd/firmware_update", "{}", 1, True)
            client.publish(
                f"te/device/{name}///twin/firmware", '{"name":"fw","version":"0.9"}', 1, True
            )
            client.subscribe(f"te/device/{name}///cmd/firmware_update/+", 1)
            self.clients[name] = client
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        # (when, device, topic, command, next status): each device moves on its own clock
        pending: list[tuple[float, str, str, dict[str, object], str]] = []
        while not self._stop.is_set():
            for name, client in self.clients.items():
                while not client.messages.empty():
                    message = client.messages.get()
                    if not message.payload:
                        continue
                    command = json.loads(message.payload)
                    if command.get("status") == "init":
                        at = time.monotonic() + self.step_s
                        pending.append((at, name, message.topic, command, "executing"))
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, name, topic, command, status = item
                if status == "executing":
                    self._send(name, topic, {**command, "status": "executing"})
                    end = "failed" if self.failing else "successful"
                    pending.append((now + self.step_s, name, topic, command, end))
                elif status == "failed":
                    reason = "flash write error (injected)"
                    self._send(name, topic, {**command, "status": "failed", "reason": reason})
                else:
                    self._send(name, topic, {**command, "status": "successful"})
                    twin = {"name": command.get("name"), "version": command.get("version")}
                    self._send(name, f"te/device/{name}///twin/firmware", twin)
            time.sleep(0.05)

    def _send(self, name: str, topic: str, body: dict[str, object]) -> None:
        self.clients[name].publish(topic, json.dumps(body), 1, True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for client in self.clients.values():
            client.disconnect()
