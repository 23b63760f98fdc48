"""Simulated tedge-legacy devices against ``otahub serve``: every update ends ``succeeded``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import (
    SimProcess,
    device,
    names,
    start_update,
    update_every_device,
    wait_all,
)


def test_every_simulated_tedge_legacy_device_is_updated(hub: HubProcess, tmp_path: Path) -> None:
    update_every_device(hub, tmp_path, "tedge-legacy")


def test_legacy_children_registered_without_passwords_connect_anonymously(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    args = ["--devices", "2", "--dialect", "tedge-legacy", "--register", "--anonymous"]
    sim = SimProcess(hub, args, tmp_path).start()
    try:
        devices = names("tedge-legacy", 2)
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in devices]
        assert [u["state"] for u in wait_all(hub, ids)] == ["succeeded"] * 2
        assert not any(device(hub, name)["has_password"] for name in devices)
    finally:
        summary = sim.stop()
    assert summary["updates_succeeded"] == 2
