"""The simulator's connections: several endpoints taken in turn, a restarted hub found again."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.agent.hubapi import api, upload
from tests.hubproc import HubProcess, free_port
from tests.simulator.simproc import SimProcess, start_update, wait_all

MIXED = [
    f"sim-{d}-{i:05d}" for i, d in enumerate(["thingsboard", "enos", "thin-edge", "tedge-legacy"])
]


def online(hub: HubProcess, name: str) -> bool:
    with api(hub) as client:
        r = client.get(f"/devices/{name}")
        return r.status_code == 200 and bool(r.json()["online"])  # 404: not registered yet


def wait_online(hub: HubProcess, names: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(online(hub, name) for name in names):
        assert time.monotonic() < deadline, [(n, online(hub, n)) for n in names]
        time.sleep(0.2)


def test_devices_move_to_the_next_endpoint_when_theirs_is_gone(tmp_path: Path) -> None:
    """Half the devices start on an endpoint nobody listens on, the rest on the hub;
    the hub then restarts on that other endpoint and every device finds it there."""
    first_port, second_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    hub = HubProcess(data_dir, mqtt_port=first_port, extra_args=["--no-auth"]).start()
    moved: HubProcess | None = None
    endpoints = f"127.0.0.1:{first_port},127.0.0.1:{second_port}"
    sim = SimProcess(
        hub,
        ["--devices", "4", "--dialect", "mixed", "--register", "--endpoints", endpoints],
        tmp_path,
    )
    try:
        upload(hub, "sim-firmware", "2.0.0", os.urandom(200_000))
        sim.start()
        wait_online(hub, MIXED)
        hub.stop()
        moved = HubProcess(data_dir, mqtt_port=second_port, extra_args=["--no-auth"]).start()
        wait_online(moved, MIXED)
        ids = [start_update(moved, name, "sim-firmware", "2.0.0") for name in MIXED]
        updates = wait_all(moved, ids)
        assert [u["state"] for u in updates] == ["succeeded"] * 4, updates
        summary = sim.stop()
    finally:
        sim.kill()
        hub.stop()
        if moved is not None:
            moved.stop()
    assert summary["reconnects"] >= 4
    assert summary["connected"] == 4
    assert summary["updates_succeeded"] == 4


def test_devices_reconnect_to_a_restarted_hub_and_are_updated(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(200_000))
    sim = SimProcess(hub, ["--devices", "4", "--dialect", "mixed", "--register"], tmp_path).start()
    try:
        wait_online(hub, MIXED)
        hub.stop()
        hub.start()
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in MIXED]
        updates = wait_all(hub, ids)
        assert [u["state"] for u in updates] == ["succeeded"] * 4, updates
    finally:
        summary = sim.stop()
    assert summary["reconnects"] >= 4
    assert summary["installs_per_device_max"] == 1

    # a second run registers the same devices again: they exist, and nothing breaks
    again = SimProcess(
        hub,
        ["--devices", "4", "--dialect", "mixed", "--register", "--duration", "1"],
        tmp_path / "2",
    ).start()
    assert again.wait()["devices"] == 4


def test_idle_devices_keep_their_connections_alive_with_pings(
    hub: HubProcess, tmp_path: Path
) -> None:
    """With a 2 s keep-alive the hub drops a client silent for 3 s; idle simulated
    devices send PINGREQ in time and never reconnect."""
    args = ["--devices", "4", "--dialect", "mixed", "--register", "--keepalive", "2"]
    sim = SimProcess(hub, args, tmp_path).start()
    try:
        wait_online(hub, MIXED)
        time.sleep(8)  # idle for several keep-alive periods
        summary = sim.stop()
    finally:
        sim.kill()
    assert summary["connected"] == 4
    assert summary["reconnects"] == 0
