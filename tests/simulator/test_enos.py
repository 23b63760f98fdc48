"""Simulated enos devices against ``otahub serve``: every update ends ``succeeded``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess, names, start_update, wait_all, wait_version


def test_every_simulated_enos_device_is_updated(hub: HubProcess, tmp_path: Path) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(300_000))
    sim = SimProcess(hub, ["--devices", "4", "--dialect", "enos", "--register"], tmp_path).start()
    try:
        devices = names("enos", 4)
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


def test_simulated_enos_devices_download_through_the_http_broker_for_a_relative_file_url(
    hub_factory: Callable[..., HubProcess], tmp_path: Path
) -> None:
    hub = hub_factory("--no-auth", "--enos-file-url", "relative")
    upload(hub, "sim-firmware", "2.0.0", os.urandom(300_000))
    sim = SimProcess(
        hub, ["--devices", "2", "--dialect", "enos", "--register", "--crash-rate", "1"], tmp_path
    ).start()
    try:
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in names("enos", 2)]
        assert [u["state"] for u in wait_all(hub, ids)] == ["succeeded"] * 2
    finally:
        summary = sim.stop()
    # the broker's download honours Range: the crashed downloads resumed
    assert summary["faults"] == {"crash": 2}
    assert summary["bytes_downloaded"] == 2 * 300_000
