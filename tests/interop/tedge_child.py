"""A thin-edge child typed with mosquitto_pub/sub and curl, a real mosquitto, the hub's API."""

from __future__ import annotations

import hashlib
import json
import queue
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.hubproc import HubProcess, free_port

MOSQUITTO = "/usr/sbin/mosquitto"
HAVE_CLIENTS = shutil.which("mosquitto_pub") is not None and shutil.which("curl") is not None


@dataclass
class Mosquitto:
    """A real mosquitto on a free loopback port, as a thin-edge gateway runs it."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        return self.start_on(free_port())

    def start_on(self, port: int) -> Mosquitto:
        self.port = port
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        log = (self.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                subprocess.run(
                    ["mosquitto_pub", "-p", str(self.port), "-t", "probe", "-n"],
                    check=True,
                    capture_output=True,
                    timeout=5,
                )
                return self
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class Child:
    """The device side: where it publishes and subscribes (the hub or the mosquitto)."""

    port: int

    def pub(self, topic: str, message: str | None, *args: str) -> None:
        body = ["-n"] if message is None else ["-m", message]
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-q",
                "1",
                "-t",
                topic,
                *body,
                *list(args),
            ],
            check=True,
            timeout=10,
        )

    def sub(self, topic: str, count: int, *args: str, wait: int = 10) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                topic,
                "-C",
                str(count),
                "-W",
                str(wait),
                "-v",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def lines(proc: subprocess.Popen[str]) -> list[str]:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"mosquitto_sub: {err or 'timed out'}"
        return out.splitlines()

    def retained(self, topic: str) -> list[tuple[str, str]]:
        """(topic, payload) of every retained message a fresh subscriber gets."""
        proc = subprocess.run(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                topic,
                "--retained-only",
                "-W",
                "1",
                "-v",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return [tuple(line.split(" ", 1)) for line in proc.stdout.splitlines()]  # type: ignore[misc]

    @staticmethod
    def curl(url: str, out: Path, *args: str) -> str:
        """Download like a child would; returns the response headers."""
        proc = subprocess.run(
            ["curl", "-sS", "-f", "-D", "-", "-o", str(out), *args, url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


class Api:
    """The operator's side: the hub's REST API."""

    def __init__(self, hub: HubProcess) -> None:
        self.client = httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=10)

    def upload(self, title: str, version: str, data: bytes) -> dict[str, Any]:
        response = self.client.post(
            "/firmware",
            params={"title": title, "version": version},
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        if response.status_code == 409:
            found = self.client.get("/firmware", params={"title": title}).json()
            return next(p for p in found if p["version"] == version)  # type: ignore[no-any-return]
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def start(self, device: str, title: str, version: str, **extra: Any) -> httpx.Response:
        return self.client.post(
            "/updates", json={"device": device, "title": title, "version": version, **extra}
        )

    def update(self, update_id: int) -> dict[str, Any]:
        return self.client.get(f"/updates/{update_id}").json()  # type: ignore[no-any-return]

    def device(self, name: str) -> httpx.Response:
        return self.client.get(f"/devices/{name}")

    def wait_update(
        self, update_id: int, done: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            update = self.update(update_id)
            if done(update) or time.monotonic() > deadline:
                return update
            time.sleep(0.05)

    def wait_for(self, check: Callable[[], bool], timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload_with(command: dict[str, Any], **changes: Any) -> str:
    """The child's reply: the whole received payload with status (and reason) replaced."""
    return json.dumps({**command, **changes})


class Listener:
    """A long-running mosquitto_sub -v whose lines are read one by one.

    mosquitto_sub does not say when it has subscribed, so it also listens on
    a probe topic that ``ready`` publishes to until a probe comes back.
    """

    def __init__(self, child: Child, topic: str) -> None:
        self.child = child
        self.probe = f"probe/{secrets.token_hex(4)}"
        self.proc = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(child.port),
                "-q",
                "1",
                "-v",
                "-t",
                topic,
                "-t",
                self.probe,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        # messages that came in while ``ready`` waited for its probe
        self.early: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def ready(self, timeout: float = 10) -> Listener:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.child.pub(self.probe, "probe")
            try:
                line = self.lines.get(timeout=0.3)
            except queue.Empty:
                continue
            if line.startswith(self.probe):
                return self
            self.early.append(line)  # a message sent right on subscription
        raise AssertionError("mosquitto_sub did not subscribe")

    def next(self, timeout: float = 15) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            if self.early:
                line = self.early.pop(0)
            else:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if not line.startswith(self.probe):
                topic, _, payload = line.partition(" ")
                return topic, payload

    def nothing(self, seconds: float) -> bool:
        try:
            self.next(seconds)
        except queue.Empty:
            return True
        return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
