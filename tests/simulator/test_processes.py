"""``--processes``: the fleet shared out over worker processes, counted as one."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from pathlib import Path

from otahub.simulator.config import Endpoint, FaultRates, SimConfig, fleet
from otahub.simulator.faults import choose
from otahub.simulator.processes import Workers
from otahub.simulator.registration import register
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


def test_gated_workers_wait_for_go_and_share_the_connect_concurrency(hub: HubProcess) -> None:
    """What a benchmark drives: workers forked early, let go once the hub is ready."""
    specs = fleet(4, "thingsboard", "sim")
    asyncio.run(register(hub.http_url, specs, passwords=False, admin_token=None))
    cfg = SimConfig(
        endpoints=(Endpoint("127.0.0.1", hub.mqtt_port),),
        http_url=hub.http_url,
        connect_concurrency=3,
    )
    workers = Workers(cfg, specs, 2, report_interval=0.1, gated=True)
    try:
        time.sleep(1.0)
        workers.poll(0)
        assert workers.latest == {}  # nothing runs before go
        workers.go(cfg)
        deadline = time.monotonic() + 60
        while workers.counts()["connected"] < 4:
            assert time.monotonic() < deadline, workers.counts()
            workers.poll(0.2)
        wait_online(hub, names("thingsboard", 4))
    finally:
        workers.signal(signal.SIGTERM)
        while workers.running:
            workers.poll(1.0)
        workers.join()
    assert sorted(workers.finals) == [0, 1]
    assert workers.final()["connected"] == 4
    # two workers of a fleet that connects 3 at a time: 2 each, not 3 each
    assert [p.exitcode for p in workers.procs] == [0, 0]
    assert workers._share(cfg).connect_concurrency == 2


def test_gated_workers_called_off_end_without_running() -> None:
    cfg = SimConfig(endpoints=(Endpoint("127.0.0.1", 9),))
    workers = Workers(cfg, fleet(2, "thingsboard", "sim"), 2, gated=True)
    workers.signal(signal.SIGTERM)
    while workers.running:
        workers.poll(1.0)
    workers.join()
    assert workers.finals == {} and [p.exitcode for p in workers.procs] == [0, 0]
