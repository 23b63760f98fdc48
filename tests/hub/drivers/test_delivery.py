"""A batch handed to a driver is delivered behind the start call, and what fails there ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from otahub.hub.core import HubCore
from otahub.hub.drivers.delivery import Delivery, SentBehind
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import Claimed, UpdateRequest
from otahub.hub.services.views import UpdateView
from tests.hub.conftest import chunks

DIALECT = "tedge-legacy"


class Tasks:
    """The endpoint's ``spawn``: tasks the test waits for."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            await awaitable

        self.tasks.append(asyncio.get_running_loop().create_task(run()))

    async def join(self) -> None:
        await asyncio.gather(*self.tasks)


async def _updates(core: HubCore, n: int) -> list[UpdateView]:
    await core.firmware.upload(PackageMeta(title="fw", version="2.0"), chunks(b"x" * 5000))
    made = []
    for i in range(n):
        await core.devices.create(DeviceSpec(name=f"c{i}", dialect=DIALECT))
        made.append(await core.updates.create(UpdateRequest(f"c{i}", "fw", "2.0")))
    return made


async def test_the_call_returns_before_the_batch_is_delivered(core: HubCore) -> None:
    updates = await _updates(core, 3)
    tasks = Tasks()
    go = asyncio.Event()
    got: list[int] = []

    async def many(claimed: list[Claimed]) -> dict[int, Exception]:
        await go.wait()
        got.extend(c.update.id for c in claimed)
        return {updates[1].id: RuntimeError("no link for c1")}

    async def one(claimed: Claimed) -> None:
        raise AssertionError("the batch path did not raise")

    SentBehind(Delivery(core, DIALECT), tasks.spawn, many, one).add([u.id for u in updates])
    assert got == []  # still held by the driver
    go.set()
    await tasks.join()
    assert got == [u.id for u in updates]
    failed = await core.updates.get(updates[1].id)
    assert (failed.state, failed.code) == ("failed", "start_failed")
    assert failed.reason is not None and "RuntimeError: no link for c1" in failed.reason
    assert [(await core.updates.get(u.id)).state for u in (updates[0], updates[2])] == [
        "pending",
        "pending",
    ]


async def test_a_batch_that_raises_goes_one_by_one(core: HubCore) -> None:
    updates = await _updates(core, 3)
    tasks = Tasks()
    one_by_one: list[int] = []

    async def many(claimed: list[Claimed]) -> dict[int, Exception]:
        raise RuntimeError("the batch write failed")

    async def one(claimed: Claimed) -> None:
        one_by_one.append(claimed.update.id)
        if claimed.update.device == "c2":
            raise ValueError("bad request for c2")

    SentBehind(Delivery(core, DIALECT), tasks.spawn, many, one).add([u.id for u in updates])
    await tasks.join()
    assert one_by_one == [u.id for u in updates]
    last = await core.updates.get(updates[2].id)
    assert last.state == "failed"
    assert last.reason is not None and "ValueError: bad request for c2" in last.reason
    assert (await core.updates.get(updates[0].id)).state == "pending"


async def test_batches_behind_their_calls_go_one_at_a_time_and_waiting_ones_together(
    core: HubCore,
) -> None:
    updates = await _updates(core, 7)
    tasks = Tasks()
    log: list[str] = []
    begun = asyncio.Event()

    async def many(claimed: list[Claimed]) -> dict[int, Exception]:
        names = ",".join(c.update.device for c in claimed)
        log.append(f"{names} begin")
        begun.set()
        await asyncio.sleep(0.05)  # the batch's writes and sends
        log.append(f"{names} end")
        return {}

    async def one(claimed: Claimed) -> None:
        raise AssertionError("the batch path did not raise")

    behind = SentBehind(Delivery(core, DIALECT), tasks.spawn, many, one)

    def start(*part: UpdateView) -> None:
        behind.add([u.id for u in part])

    start(*updates[:2])
    await begun.wait()  # the first batch is under way
    start(*updates[2:4])
    start(*updates[4:6])
    await tasks.join()
    assert log == ["c0,c1 begin", "c0,c1 end", "c2,c3,c4,c5 begin", "c2,c3,c4,c5 end"]
    start(updates[6])  # once idle, a call starts a batch of its own
    await tasks.join()
    assert log[4:] == ["c6 begin", "c6 end"]
