"""``otahub simulate`` as a real subprocess, and the hub-side checks the simulator tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.agent.hubapi import api, upload
from tests.hubproc import HubProcess

TERMINAL = ("succeeded", "failed", "canceled")
#: Fast enough for tests: short installs, reconnects within a second.
FAST = ["--install-seconds", "0.2", "--backoff-max", "1", "--log-level", "info"]


@dataclass
class SimProcess:
    hub: HubProcess
    args: list[str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: run in the child before it executes (e.g. to lower a resource limit)
    preexec: Callable[[], None] | None = None

    @property
    def record(self) -> Path:
        return self.workdir / "installs.jsonl"

    @property
    def log_path(self) -> Path:
        return self.workdir / "simulate.log"

    def start(self) -> SimProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "otahub",
            "simulate",
            "--hub",
            f"mqtt://127.0.0.1:{self.hub.mqtt_port}",
            "--http",
            self.hub.http_url,
            "--record",
            str(self.record),
            *FAST,
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=self.preexec,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        self.proc.send_signal(signum)

    def clear_faults(self) -> None:
        self.signal(signal.SIGUSR1)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then the JSON summary it printed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = 60) -> dict[str, Any]:
        """The JSON summary of a run that ends by itself (``--duration``)."""
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, self.log()
        self.summary = json.loads(out)
        self.proc = None
        return self.summary

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def installs(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


def wait_online(hub: HubProcess, names: list[str], timeout: float = 60) -> None:
    """Until the hub shows every device in ``names`` online."""
    deadline = time.monotonic() + timeout
    wanted = set(names)
    while True:
        with api(hub) as client:
            r = client.get("/devices")
            online = {d["name"] for d in r.json() if d["online"]} if r.status_code == 200 else set()
        if wanted <= online:
            return
        assert time.monotonic() < deadline, f"offline: {sorted(wanted - online)}"
        time.sleep(0.2)


def names(dialect: str, count: int, prefix: str = "sim") -> list[str]:
    return [f"{prefix}-{dialect}-{i:05d}" for i in range(count)]


def start_update(
    hub: HubProcess, device: str, title: str, version: str, timeout: float = 60
) -> int:
    """Start an update once the hub takes it (a thin-edge child must have announced itself)."""
    deadline = time.monotonic() + timeout
    body = {"device": device, "title": title, "version": version}
    with api(hub) as client:
        while True:
            r = client.post("/updates", json=body)
            if r.status_code < 400:
                return int(r.json()["id"])
            assert r.status_code in (404, 409, 422) and time.monotonic() < deadline, r.text
            time.sleep(0.2)


def update_of(hub: HubProcess, update_id: int) -> dict[str, Any]:
    with api(hub) as client:
        r = client.get(f"/updates/{update_id}")
        assert r.status_code == 200, r.text
        update: dict[str, Any] = r.json()
        return update


def wait_all(
    hub: HubProcess, update_ids: list[int], states: tuple[str, ...] = TERMINAL, timeout: float = 90
) -> list[dict[str, Any]]:
    """Poll until every update is in one of ``states``; returns them in order."""
    deadline = time.monotonic() + timeout
    while True:
        updates = [update_of(hub, i) for i in update_ids]
        if all(u["state"] in states for u in updates):
            return updates
        pending = [(u["device"], u["state"]) for u in updates if u["state"] not in states]
        assert time.monotonic() < deadline, f"not yet {states}: {pending}"
        time.sleep(0.2)


def device(hub: HubProcess, name: str) -> dict[str, Any]:
    with api(hub) as client:
        r = client.get(f"/devices/{name}")
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found


def wait_version(hub: HubProcess, name: str, version: str, timeout: float = 30) -> None:
    """The hub shows ``version`` as the device's running firmware."""
    deadline = time.monotonic() + timeout
    while True:
        reported = device(hub, name)["firmware"]["version"]
        if reported == version:
            return
        assert time.monotonic() < deadline, f"{name} reports {reported}, not {version}"
        time.sleep(0.2)


def update_every_device(
    hub: HubProcess, tmp_path: Path, dialect: str, *extra: str, count: int = 4
) -> dict[str, Any]:
    """Register ``count`` simulated ``dialect`` devices, start one update each through the
    REST API and check that every one ends ``succeeded``, on the new version, installed
    once with every byte downloaded once; returns the simulator's summary."""
    size = 300_000
    upload(hub, "sim-firmware", "2.0.0", os.urandom(size))
    args = ["--devices", str(count), "--dialect", dialect, "--register", *extra]
    sim = SimProcess(hub, args, tmp_path).start()
    devices = names(dialect, count)
    try:
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in devices]
        updates = wait_all(hub, ids)
        assert [u["state"] for u in updates] == ["succeeded"] * count, updates
        for name in devices:
            wait_version(hub, name, "2.0.0")
    finally:
        summary = sim.stop()
    assert summary["devices"] == count
    assert summary["updates_succeeded"] == count
    assert summary["updates_failed"] == 0
    assert summary["bytes_downloaded"] == count * size
    assert summary["installs_per_device_max"] == 1
    assert sorted(i["device"] for i in sim.installs()) == devices
    return summary
