"""Simulated ThingsBoard devices against ``otahub serve``: chunked updates end ``succeeded``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.agent.hubapi import api, upload
from tests.hubproc import HubProcess
from tests.simulator.simproc import (
    SimProcess,
    names,
    start_update,
    update_every_device,
    wait_all,
    wait_version,
)


def test_every_simulated_thingsboard_device_is_updated_over_chunks(
    hub: HubProcess, tmp_path: Path
) -> None:
    update_every_device(hub, tmp_path, "thingsboard", "--chunk-size", "16384")


def test_a_package_assigned_during_an_update_is_installed_after_it(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, "sim-firmware", "2.0.0", os.urandom(100_000))
    upload(hub, "sim-firmware", "3.0.0", os.urandom(100_000))
    args = ["--devices", "1", "--dialect", "thingsboard", "--register", "--install-seconds", "3"]
    sim = SimProcess(hub, args, tmp_path).start()
    name = names("thingsboard", 1)[0]
    try:
        start_update(hub, name, "sim-firmware", "2.0.0")
        deadline = time.monotonic() + 60
        while not sim.installs():
            assert time.monotonic() < deadline, sim.log()[-3000:]
            time.sleep(0.1)
        with api(hub) as client:
            r = client.post(
                "/updates",
                json={"device": name, "title": "sim-firmware", "version": "3.0.0", "replace": True},
            )
            assert r.status_code == 201, r.text
        [update] = wait_all(hub, [int(r.json()["id"])])
        assert update["state"] == "succeeded", update
        wait_version(hub, name, "3.0.0")
    finally:
        summary = sim.stop()
    assert [i["version"] for i in sim.installs()] == ["2.0.0", "3.0.0"]
    assert summary["installs_per_device_max"] == 2


def test_a_download_fault_fails_an_image_that_fits_in_one_chunk(
    hub: HubProcess, tmp_path: Path
) -> None:
    """The fault cut the download halfway through its chunks: with one chunk it never came."""
    upload(hub, "sim-firmware", "2.0.0", os.urandom(4096))
    args = ["--devices", "1", "--dialect", "thingsboard", "--register", "--fail-rate", "1"]
    sim = SimProcess(hub, [*args, "--fail-at", "download"], tmp_path).start()
    name = names("thingsboard", 1)[0]
    try:
        [update] = wait_all(hub, [start_update(hub, name, "sim-firmware", "2.0.0")])
    finally:
        summary = sim.stop()
    assert update["state"] == "failed", update
    assert "download interrupted after 0 bytes" in update["reason"], update
    assert summary["faults"] == {"download": 1}
    assert sim.installs() == []
