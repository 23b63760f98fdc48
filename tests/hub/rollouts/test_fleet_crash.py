"""Must-show 3 of the rollouts: ``kill -9`` of the hub during stage 2 of a
1,000-device rollout (SQLite), a restart on the same ports and data dir, and the
rollout completes with no device updated twice and counts equal to the updates."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otahub.simulator.config import fleet
from tests.agent.hubapi import upload
from tests.hub.rollouts.fleet import (
    NEW,
    TITLE,
    all_updates,
    get,
    on_version,
    rollout,
    rollout_cli,
    wait_devices,
    wait_rollout,
)
from tests.hubproc import HubProcess
from tests.simulator.simproc import SimProcess

pytestmark = pytest.mark.slow

DEVICES = 1000


def test_fleet_rollout_survives_kill_9_of_the_hub_in_stage_2(
    hub: HubProcess, tmp_path: Path
) -> None:
    upload(hub, TITLE, NEW, os.urandom(4096))
    # thin-edge and legacy devices log in without passwords (allowed from loopback):
    # 500 argon2 hashes at registration and login would only slow the test down
    sim = SimProcess(
        hub,
        [
            "--devices", str(DEVICES), "--dialect", "mixed", "--register", "--anonymous",
            "--install-seconds", "0", "--processes", "2",
        ],
        tmp_path / "sim",
    ).start()  # fmt: skip
    try:
        wait_devices(hub, DEVICES, timeout=300)
        rollout_cli(
            hub, "create", "crash", "--title", TITLE, "--version", NEW,
            "--filter", "name=sim-*", "--stages", "10,50%,100%",
            "--success-threshold", "95", "--error-threshold", "50", "--min-finished", "10",
            "--rate", "3000/min", "--retries", "1",
        )  # fmt: skip
        rollout_cli(hub, "start", "crash")
        # stage 2 (490 devices at 50 a second) is under way: some started, not all done.
        # A legacy device whose download the kill breaks fails its update; with too few
        # of the stage finished before, those failures alone would make half of its
        # first finished devices, and the brake would rightly pause the rollout.
        deadline = time.monotonic() + 120
        while True:
            view = rollout(hub, "crash")
            stage2 = view["stages"][1]["counts"]
            if (
                view["stage"] == 2
                and stage2["started"] >= 10
                and stage2["succeeded"] >= 30
                and stage2["started"] + stage2["succeeded"] < 400
            ):
                break
            assert view["stage"] <= 2 and time.monotonic() < deadline, view
            time.sleep(0.1)
        killed_at = datetime.now(UTC)
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        hub.start()  # the same ports and data dir
        done = wait_rollout(hub, "crash", ("finished", "paused"), timeout=300)
        assert done["state"] == "finished", done

        # `rollout show` counts what the updates say: one update per device so far
        shown = json.loads(rollout_cli(hub, "show", "crash", "--json"))
        updates = all_updates(hub)
        assert len(updates) == DEVICES
        assert len({u["device"] for u in updates}) == DEVICES
        assert {k: v for k, v in shown["counts"].items() if v} == dict(
            Counter(u["state"] for u in updates)
        )
        # A device whose download hit the dead hub fails it, as a real one would; only
        # updates under way at the kill may have failed. retry-failed gives them another.
        failed = [u for u in updates if u["state"] == "failed"]
        assert all(at(u["created_at"]) < killed_at for u in failed), failed
        if failed:
            rollout_cli(hub, "retry-failed", "crash")
            counts = wait_rollout(hub, "crash", ("finished",))["counts"]
            # a retried device that reported the new version meanwhile is skipped
            assert counts["succeeded"] + counts["skipped"] == DEVICES, counts
        assert on_version(hub, NEW) == []
    finally:
        summary = sim.stop()
    events = [e["kind"] for e in get(hub, "/rollouts/crash/events")]
    assert events.count("stage_started") == 3, events
    # the devices' side: one install each; a second update and download only for the
    # devices retried
    retried = {u["device"] for u in failed}
    assert summary["installs_per_device_max"] == 1, summary
    assert summary["devices_installed_twice"] == []
    assert summary["starts_per_device_max"] == (2 if retried else 1), summary
    assert summary["downloads_per_device_max"] <= (2 if retried else 1), summary
    installs = sim.installs()
    assert sorted(i["device"] for i in installs) == sorted(
        s.name for s in fleet(DEVICES, "mixed", "sim")
    )
    # the hub's side: no device got a second update but the retried ones
    per_device = Counter(u["device"] for u in all_updates(hub))
    # a retried device that reported the version meanwhile is skipped: one update
    assert {d for d, n in per_device.items() if n > 1} <= retried
    assert max(per_device.values()) <= 2


def at(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
