"""Two hub instances on one PostgreSQL: one drives a rollout, the other takes over when it dies.

Each instance is a HubCore of its own (its own connection pool, bus and
engine), as two ``otahub serve`` processes would be; an instance "dies" by
its engine stopping mid-flight without giving its lease back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.rollouts.engine import RolloutEngine
from otahub.hub.services.firmware import PackageMeta
from tests.hub.conftest import chunks
from tests.hub.rollouts.conftest import TITLE, VERSION, make_fleet, rows, spec
from tests.pgserver import PostgresServer


@pytest.fixture
def shared_database(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture
async def two_hubs(shared_database: str, tmp_path: Path) -> AsyncIterator[tuple[HubCore, HubCore]]:
    url = shared_database
    hubs = [HubCore(CoreConfig(data_dir=tmp_path / name, database_url=url)) for name in ("a", "b")]
    await hubs[0].db.migrate()
    try:
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:
            await hub.close()


async def drive(engine: RolloutEngine) -> None:
    """An instance's engine loop, without the clean shutdown that gives the lease back."""
    while True:
        await engine.tick()
        await asyncio.sleep(0.05)


async def devices_succeed(hub: HubCore) -> None:
    """The devices: every update that was started succeeds a moment later."""
    while True:
        for update in await hub.updates.list(active=True, limit=1000):
            with contextlib.suppress(Exception):
                await hub.updates.transition(update.id, "succeeded", source="driver:thin-edge")
        await asyncio.sleep(0.1)


async def test_the_other_instance_takes_over_within_seconds_and_starts_nobody_twice(
    two_hubs: tuple[HubCore, HubCore],
) -> None:
    a, b = two_hubs
    await a.firmware.upload(PackageMeta(title=TITLE, version=VERSION), chunks(b"x" * 5000))
    await make_fleet(a, 24)
    await a.rollouts.create(spec(stages="4,50%", max_concurrent=2, success_threshold=50))
    await b.rollouts.start("r1")  # any instance takes operator actions
    engines = {
        name: RolloutEngine(
            hub.db, hub.bus, hub.updates, hub.rollouts, hub.groups, owner=name, lease_s=1.5
        )
        for name, hub in (("a", a), ("b", b))
    }
    loops = {name: asyncio.create_task(drive(engine)) for name, engine in engines.items()}
    fleet = asyncio.create_task(devices_succeed(a))
    try:
        deadline = time.monotonic() + 60
        while sum(r.state == "succeeded" for r in await rows(a)) < 6:
            assert time.monotonic() < deadline, "the rollout did not get going"
            await asyncio.sleep(0.05)
        first = (await a.rollouts.get("r1")).owner
        assert first in loops
        loops[first].cancel()  # the driving instance dies, its lease still held
        with contextlib.suppress(asyncio.CancelledError):
            await loops[first]
        died = time.monotonic()
        other = "b" if first == "a" else "a"
        while (await a.rollouts.get("r1")).owner != other:
            assert time.monotonic() - died < 30, "nobody took the rollout over"
            await asyncio.sleep(0.05)
        while (await a.rollouts.get("r1")).state != "finished":
            assert time.monotonic() < deadline + 60, await a.rollouts.events("r1")
            await asyncio.sleep(0.1)
    finally:
        for task in (*loops.values(), fleet):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    view = await a.rollouts.get("r1")
    assert view.counts["succeeded"] == 24
    for r in await rows(a):
        assert len(await a.updates.list(device=r.device_name)) == 1, r.device_name
    taken = [e for e in await a.rollouts.events("r1") if e.kind == "lease_taken"]
    assert len(taken) == 1 and first in taken[0].message
