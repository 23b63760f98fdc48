"""``--processes``: the fleet shared out over worker processes, counted as one."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from otahub.simulator.config import fleet
from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess, names, start_update, wait_all, wait_online


def test_worker_processes_share_the_fleet_and_their_counts_add_up(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    args = ["--devices", "6", "--dialect", "mixed", "--register", "--processes", "2"]
    sim = SimProcess(hub, args, tmp_path).start()
    devices = [spec.name for spec in fleet(6, "mixed", "sim")]
    try:
        updates = wait_all(hub, [start_update(hub, d, "sim-firmware", "2.0.0") for d in devices])
        assert [u["state"] for u in updates] == ["succeeded"] * 6, updates
    finally:
        summary = sim.stop()
    assert summary["devices"] == 6
    assert summary["connected"] == 6
    assert summary["updates_succeeded"] == 6
    assert summary["bytes_downloaded"] == 6 * 100_000
    installs = sim.installs()
    assert sorted(i["device"] for i in installs) == sorted(devices)
    assert len({i["pid"] for i in installs}) == 2


def test_a_fleet_larger_than_the_soft_open_files_limit_still_connects(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Every device holds a socket: the simulator lifts the soft limit (1,024 by
    default on most systems) up to the hard one instead of failing connects."""
    sim = SimProcess(hub, ["--devices", "20", "--dialect", "thingsboard", "--register"], tmp_path)
    sim.preexec = lambda: resource.setrlimit(
        resource.RLIMIT_NOFILE, (24, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
    sim.start()
    try:
        wait_online(hub, names("thingsboard", 20))
    finally:
        summary = sim.stop()
    assert summary["connected"] == 20
