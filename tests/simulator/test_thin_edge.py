"""Simulated thin-edge devices against ``otahub serve``: every update ends ``succeeded``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess, names, start_update, wait_all, wait_version


def test_every_simulated_thin_edge_device_is_updated(hub: HubProcess, tmp_path: Path) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(300_000))
    sim = SimProcess(
        hub, ["--devices", "4", "--dialect", "thin-edge", "--register"], tmp_path
    ).start()
    try:
        devices = names("thin-edge", 4)
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in devices]
        updates = wait_all(hub, ids)
        assert [u["state"] for u in updates] == ["succeeded"] * 4, updates
        for name in devices:
            wait_version(hub, name, "2.0.0")
    finally:
        summary = sim.stop()
    assert summary["updates_succeeded"] == 4
    assert summary["updates_failed"] == 0
    assert summary["bytes_downloaded"] == 4 * 300_000
    assert summary["installs_per_device_max"] == 1
    assert sorted(i["device"] for i in sim.installs()) == devices


def test_anonymous_children_announce_themselves_and_are_updated(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Without --register or passwords, thin-edge children become devices by their
    te/ registration alone (anonymous clients are let in from loopback)."""
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    args = ["--devices", "3", "--dialect", "thin-edge", "--anonymous", "--prefix", "anon"]
    sim = SimProcess(hub, args, tmp_path).start()
    try:
        devices = names("thin-edge", 3, prefix="anon")
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in devices]
        assert [u["state"] for u in wait_all(hub, ids)] == ["succeeded"] * 3
    finally:
        summary = sim.stop()
    assert summary["updates_succeeded"] == 3
    assert summary["connect_refused"] == 0
