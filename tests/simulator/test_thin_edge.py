"""Simulated thin-edge devices against ``otahub serve``: every update ends ``succeeded``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import (
    SimProcess,
    names,
    start_update,
    update_every_device,
    wait_all,
)


def test_every_simulated_thin_edge_device_is_updated(hub: HubProcess, tmp_path: Path) -> None:
    update_every_device(hub, tmp_path, "thin-edge")


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
