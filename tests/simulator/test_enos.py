"""Simulated enos devices against ``otahub serve``: every update ends ``succeeded``."""

from __future__ import annotations

import os
from collections.abc import Callable
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


def test_every_simulated_enos_device_is_updated(hub: HubProcess, tmp_path: Path) -> None:
    update_every_device(hub, tmp_path, "enos")


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
