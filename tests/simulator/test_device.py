"""What every simulated device does whatever its dialect: an update survives a lost hub
and its repeated requests (legacy re-sends, retained replays, re-pushes) install nothing twice."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess, start_update, wait_all, wait_version

MIXED = [
    f"sim-{d}-{i:05d}" for i, d in enumerate(["thingsboard", "enos", "thin-edge", "tedge-legacy"])
]


def test_a_hub_restart_during_the_installs_ends_every_update_succeeded_and_installed_once(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(200_000))
    args = ["--devices", "4", "--dialect", "mixed", "--register", "--install-seconds", "4"]
    sim = SimProcess(hub, args, tmp_path).start()
    try:
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in MIXED]
        deadline = time.monotonic() + 60
        while len(sim.installs()) < 4:  # every device is in its install step
            assert time.monotonic() < deadline, sim.log()[-3000:]
            time.sleep(0.1)
        hub.stop()
        hub.start()
        updates = wait_all(hub, ids)
        assert [u["state"] for u in updates] == ["succeeded"] * 4, updates
        for name in MIXED:
            wait_version(hub, name, "2.0.0")
    finally:
        summary = sim.stop()
    assert summary["reconnects"] >= 4
    assert summary["installs_per_device_max"] == 1
    assert summary["starts_per_device_max"] == 1
    assert sorted(i["device"] for i in sim.installs()) == sorted(MIXED)
