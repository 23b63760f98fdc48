"""Injected faults against ``otahub serve``: each fails, crashes or stays away the way
the dialect's devices would, and clearing the faults (SIGUSR1) lets retried updates succeed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otahub.simulator.config import FaultRates, fleet
from otahub.simulator.faults import choose
from tests.agent.hubapi import upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import (
    SimProcess,
    device,
    start_update,
    wait_all,
    wait_version,
)

DIALECTS = ["thingsboard", "enos", "thin-edge", "tedge-legacy"]
MIXED = [f"sim-{d}-{i:05d}" for i, d in enumerate(DIALECTS)]


@pytest.mark.parametrize(
    ("fail_at", "reason"),
    [
        ("download", "download interrupted"),
        ("verify", "checksum mismatch"),
        ("install", "install hook exited with status 1"),
    ],
)
def test_failing_devices_fail_their_update_with_the_reason_and_succeed_once_faults_clear(
    hub: HubProcess, tmp_path: Path, fail_at: str, reason: str
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(300_000))
    args = ["--devices", "4", "--dialect", "mixed", "--register", "--chunk-size", "16384"]
    sim = SimProcess(hub, [*args, "--fail-rate", "1", "--fail-at", fail_at], tmp_path).start()
    try:
        ids = [start_update(hub, name, "sim-firmware", "2.0.0") for name in MIXED]
        failed = wait_all(hub, ids)
        for update in failed:
            assert update["state"] == "failed", update
            assert reason in (update["reason"] or ""), update
            assert "simulated fault" in update["reason"], update
            assert device(hub, update["device"])["firmware"]["version"] != "2.0.0"

        sim.clear_faults()
        retried = wait_all(
            hub, [start_update(hub, name, "sim-firmware", "2.0.0") for name in MIXED]
        )
        assert [u["state"] for u in retried] == ["succeeded"] * 4, retried
        for name in MIXED:
            wait_version(hub, name, "2.0.0")
    finally:
        summary = sim.stop()
    assert summary["faults"] == {fail_at: 4}
    assert summary["updates_failed"] == 4
    assert summary["updates_succeeded"] == 4
    # a failed install ran the hook once, the retry once more; nothing else ran it
    assert summary["installs_per_device_max"] == (2 if fail_at == "install" else 1)


def test_crashing_devices_resume_their_download_and_are_updated_once(
    hub: HubProcess, tmp_path: Path
) -> None:
    size = 600_000
    upload(hub, "sim-firmware", "2.0.0", os.urandom(size))
    args = ["--devices", "4", "--dialect", "mixed", "--register", "--chunk-size", "16384"]
    sim = SimProcess(hub, [*args, "--crash-rate", "1"], tmp_path).start()
    try:
        updates = wait_all(hub, [start_update(hub, n, "sim-firmware", "2.0.0") for n in MIXED])
        assert [u["state"] for u in updates] == ["succeeded"] * 4, updates
    finally:
        summary = sim.stop()
    assert summary["faults"] == {"crash": 4}
    assert summary["reconnects"] >= 4
    # resumed where the connection dropped: no byte fetched twice, one download each
    assert summary["bytes_downloaded"] == 4 * size
    assert summary["downloads_per_device_max"] == 1
    assert summary["installs_per_device_max"] == 1
    assert sorted(i["device"] for i in sim.installs()) == sorted(MIXED)


def test_offline_devices_never_connect_until_faults_clear(hub: HubProcess, tmp_path: Path) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    rates = FaultRates(offline_rate=0.5, seed=7)
    specs = fleet(8, "mixed", "sim")
    offline = {s.name for s in specs if choose(rates, s.name).offline}
    online = [s.name for s in specs if s.name not in offline]
    assert offline and online  # the seed splits the fleet
    args = ["--devices", "8", "--dialect", "mixed", "--register", "--offline-rate", "0.5"]
    sim = SimProcess(hub, [*args, "--seed", "7"], tmp_path).start()
    try:
        updates = wait_all(hub, [start_update(hub, n, "sim-firmware", "2.0.0") for n in online])
        assert [u["state"] for u in updates] == ["succeeded"] * len(online), updates
        for name in offline:
            assert device(hub, name)["last_seen_at"] is None, name

        sim.clear_faults()
        late = wait_all(hub, [start_update(hub, n, "sim-firmware", "2.0.0") for n in offline])
        assert [u["state"] for u in late] == ["succeeded"] * len(offline), late
    finally:
        summary = sim.stop()
    assert summary["faults"] == {"offline": len(offline)}
    assert summary["updates_succeeded"] == 8
    assert summary["connected"] == 8
