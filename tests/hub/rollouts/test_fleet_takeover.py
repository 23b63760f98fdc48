"""Must-show 4 of the rollouts: two ``otahub serve`` processes on one PostgreSQL,
the simulated fleet connected to the one driving the rollout; ``kill -9`` of that
hub, the devices move to the other, which takes the rollout over and finishes it
with no device updated twice."""

from __future__ import annotations

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
    rollout,
    rollout_cli,
    versions,
    wait_devices,
    wait_rollout,
)
from tests.hubproc import HubProcess
from tests.pgserver import PostgresServer
from tests.simulator.simproc import SimProcess

pytestmark = pytest.mark.slow

DEVICES = 200


def test_second_hub_takes_over_a_fleet_rollout_when_the_driving_hub_is_killed(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database()
    a = HubProcess(tmp_path / "a", extra_args=["--no-auth", "--database-url", url])
    b = HubProcess(tmp_path / "b", extra_args=["--no-auth", "--database-url", url])
    sim: SimProcess | None = None
    try:
        a.start()
        upload(a, TITLE, NEW, os.urandom(4096))
        # The hub keeps firmware images in its data dir: B is given A's blob store,
        # as two hosts would share a volume.
        b.data_dir.mkdir(parents=True)
        (b.data_dir / "blobs").symlink_to(a.data_dir / "blobs")
        # Every device tries A first: B is not up yet, so those that would start
        # with B (the simulator deals the endpoints out) are refused and move on to A.
        sim = SimProcess(
            a,
            [
                "--devices", str(DEVICES), "--dialect", "mixed", "--register", "--anonymous",
                "--install-seconds", "0",
                "--endpoints", f"127.0.0.1:{a.mqtt_port},127.0.0.1:{b.mqtt_port}",
            ],
            tmp_path / "sim",
        ).start()  # fmt: skip
        wait_devices(a, DEVICES)
        b.start()
        rollout_cli(
            a, "create", "pair", "--title", TITLE, "--version", NEW,
            "--filter", "name=sim-*", "--stages", "10,50%,100%",
            "--success-threshold", "95", "--error-threshold", "50", "--min-finished", "10",
            "--rate", "1200/min", "--retries", "1",
        )  # fmt: skip
        rollout_cli(a, "start", "pair")
        deadline = time.monotonic() + 120
        # stage 2 under way, driven by A, with enough of it finished that the downloads
        # the kill breaks cannot make half of its finished devices (the brake)
        while True:
            view = rollout(a, "pair")
            stage2 = view["stages"][1]["counts"]
            if (
                view["stage"] == 2
                and stage2["started"] >= 5
                and stage2["succeeded"] >= 15
                and stage2["started"] + stage2["succeeded"] < 80
            ):
                break
            assert view["stage"] <= 2 and time.monotonic() < deadline, view
            time.sleep(0.1)
        owner_a = view["owner"]
        assert owner_a is not None
        killed_at = datetime.now(UTC)
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL

        try:
            done = wait_rollout(b, "pair", ("finished", "paused"), timeout=90)
        except AssertionError:
            stuck = [
                get(b, f"/updates/{m['update_id']}")
                for m in get(b, "/rollouts/pair/devices", state="started")
            ]
            raise AssertionError(
                [(u["device"], u["state"], u.get("driver_state")) for u in stuck]
            ) from None
        assert done["state"] == "finished", done
        assert done["owner"] not in (None, owner_a), done
        taken = [e for e in get(b, "/rollouts/pair/events") if e["kind"] == "lease_taken"]
        assert len(taken) == 1 and owner_a in taken[0]["message"], taken
        took_over_s = (at(taken[0]["at"]) - killed_at).total_seconds()
        print(f"B took the rollout over {took_over_s:.1f} s after the kill")

        updates = all_updates(b)
        assert len(updates) == DEVICES
        assert {k: v for k, v in done["counts"].items() if v} == dict(
            Counter(u["state"] for u in updates)
        )
        # downloads from the dead hub fail; only updates under way at the kill may have
        failed = [u for u in updates if u["state"] == "failed"]
        assert all(at(u["created_at"]) < killed_at for u in failed), failed
        if failed:
            rollout_cli(b, "retry-failed", "pair")
            assert wait_rollout(b, "pair", ("finished",))["counts"]["succeeded"] == DEVICES
        assert versions(b) == {NEW: DEVICES}
        assert all(d["online"] for d in get(b, "/devices"))
        per_device = Counter(u["device"] for u in all_updates(b))
    finally:
        summary = sim.stop() if sim is not None else {}
        a.stop()
        b.stop()
    retried = {u["device"] for u in failed}
    assert summary["installs_per_device_max"] == 1, summary
    assert summary["devices_installed_twice"] == []
    assert summary["starts_per_device_max"] == (2 if retried else 1), summary
    assert summary["reconnects"] >= DEVICES  # every device moved to B
    installs = sim.installs()
    assert sorted(i["device"] for i in installs) == sorted(
        s.name for s in fleet(DEVICES, "mixed", "sim")
    )
    assert {d for d, n in per_device.items() if n > 1} == retried


def at(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
