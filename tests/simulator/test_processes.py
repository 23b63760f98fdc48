"""``--processes``: the fleet shared out over worker processes, counted as one."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from otahub.simulator.config import FaultRates, fleet
from otahub.simulator.faults import choose
from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess, names, start_update, wait_all, wait_online


def test_worker_processes_share_the_fleet_and_their_counts_add_up(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Two workers, each with devices offline: SIGUSR1 to the parent reaches both."""
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    rates = FaultRates(offline_rate=0.5, seed=6)
    specs = fleet(6, "mixed", "sim")
    offline = [s.name for s in specs if choose(rates, s.name).offline]
    online = [s.name for s in specs if s.name not in offline]
    # every 2nd device goes to the same worker: both have offline devices
    assert {specs.index(s) % 2 for s in specs if s.name in offline} == {0, 1}
    args = ["--devices", "6", "--dialect", "mixed", "--register", "--processes", "2"]
    sim = SimProcess(hub, [*args, "--offline-rate", "0.5", "--seed", "6"], tmp_path).start()
    try:
        updates = wait_all(hub, [start_update(hub, d, "sim-firmware", "2.0.0") for d in online])
        assert [u["state"] for u in updates] == ["succeeded"] * len(online), updates
        sim.clear_faults()
        late = wait_all(hub, [start_update(hub, d, "sim-firmware", "2.0.0") for d in offline])
        assert [u["state"] for u in late] == ["succeeded"] * len(offline), late
    finally:
        summary = sim.stop()
    assert summary["devices"] == 6
    assert summary["connected"] == 6
    assert summary["updates_succeeded"] == 6
    assert summary["bytes_downloaded"] == 6 * 100_000
    assert summary["faults"] == {"offline": len(offline)}
    installs = sim.installs()
    assert sorted(i["device"] for i in installs) == sorted(s.name for s in specs)
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
