"""``--processes``: the fleet shared out over worker processes, counted as one."""

from __future__ import annotations

import os
from pathlib import Path

from otahub.simulator.config import fleet
from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess, start_update, wait_all


def test_worker_processes_share_the_fleet_and_their_counts_add_up(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    args = ["--devices", "6", "--dialect", "mixed", "--register", "--processes", "2"]
    sim = SimProcess(hub, args, tmp_path).start()
    names = [spec.name for spec in fleet(6, "mixed", "sim")]
    try:
        updates = wait_all(
            hub, [start_update(hub, name, "sim-firmware", "2.0.0") for name in names]
        )
        assert [u["state"] for u in updates] == ["succeeded"] * 6, updates
    finally:
        summary = sim.stop()
    assert summary["devices"] == 6
    assert summary["connected"] == 6
    assert summary["updates_succeeded"] == 6
    assert summary["bytes_downloaded"] == 6 * 100_000
    installs = sim.installs()
    assert sorted(i["device"] for i in installs) == sorted(names)
    assert len({i["pid"] for i in installs}) == 2
