"""UpdateService.create_many: one transaction for many devices, each refusal alone."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.core import HubCore
from otahub.hub.services.assignments import TYPE_ORIGIN_KEY
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.events import Event, UpdateCreated, UpdateTransitioned
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import BatchOutcome, UpdateRequest
from otahub.hub.services.views import UpdateView
from otahub.hub.store.models import Update
from tests.hub.conftest import chunks


async def _setup(core: HubCore) -> None:
    for i in range(4):
        await core.devices.create(
            DeviceSpec(f"d{i}", "thingsboard", token=f"t{i}", device_type="CIM")
        )
    await core.devices.create(DeviceSpec("other", "thingsboard", token="t9", device_type="PUMP"))
    meta = PackageMeta(title="fw", version="2.0", device_type="CIM")
    await core.firmware.upload(meta, chunks(b"x" * 3000))


async def test_a_batch_creates_what_it_can_and_refuses_the_rest_each_with_its_reason(
    core: HubCore,
) -> None:
    await _setup(core)
    running = await core.updates.create(UpdateRequest("d3", "fw", "2.0"))
    seen: list[Event] = []

    async def remember(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(remember, UpdateCreated)
    requests = [
        UpdateRequest(name, "fw", "2.0") for name in ("d0", "ghost", "other", "d1", "d3", "d2")
    ]
    outcome = await core.updates.create_many(requests, source="rollout:test")
    assert [i for i, _ in outcome.created] == [0, 3, 5]
    refused = {requests[i].device: e for i, e in outcome.refused}
    assert refused["ghost"].status == 404
    assert refused["other"].status == 422 and "device type" in refused["other"].detail
    assert refused["d3"].status == 409
    assert (await core.updates.get(running.id)).state == "pending"  # left alone
    assert [e.update.device for e in seen if isinstance(e, UpdateCreated)] == ["d0", "d1", "d2"]
    view = await core.updates.get(outcome.created[0][1].id)
    assert view.transitions is not None and view.transitions[0].source == "rollout:test"


async def test_the_caller_writes_in_the_same_transaction_and_can_roll_it_back(
    core: HubCore,
) -> None:
    await _setup(core)
    seen: list[BatchOutcome] = []

    async def refuse(s: AsyncSession, outcome: BatchOutcome) -> None:
        seen.append(outcome)
        ids = [view.id for _, view in outcome.created]
        found = (await s.scalars(select(Update.id).where(Update.id.in_(ids)))).all()
        assert sorted(found) == sorted(ids)  # visible inside, before the commit
        raise RuntimeError("not mine any more")

    with pytest.raises(RuntimeError):
        await core.updates.create_many(
            [UpdateRequest("d0", "fw", "2.0"), UpdateRequest("d1", "fw", "2.0")],
            in_transaction=refuse,
        )
    assert len(seen[0].created) == 2
    assert await core.updates.list() == []  # nothing was committed, nothing announced


async def test_a_device_s_type_assignment_update_yields_to_a_batch_as_to_create(
    core: HubCore,
) -> None:
    await _setup(core)
    from_type = await core.updates.create(UpdateRequest("d0", "fw", "2.0"))
    await core.updates.set_driver_state(from_type.id, {TYPE_ORIGIN_KEY: True})
    seen: list[Event] = []

    async def remember(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(remember, UpdateCreated, UpdateTransitioned)
    outcome = await core.updates.create_many(
        [UpdateRequest("d0", "fw", "2.0"), UpdateRequest("d0", "fw", "2.0")]
    )
    assert [i for i, _ in outcome.created] == [0]
    assert "twice" in outcome.refused[0][1].detail
    replaced = await core.updates.get(from_type.id)
    assert (replaced.state, replaced.reason) == ("canceled", "replaced by a newer update")
    assert [type(e).__name__ for e in seen] == ["UpdateTransitioned", "UpdateCreated"]


async def test_a_batch_refuses_a_package_the_package_check_refuses_as_create_does(
    core: HubCore,
) -> None:
    await _setup(core)
    core.updates.package_check = lambda package: f"{package.title} {package.version} is unsigned"
    outcome = await core.updates.create_many(
        [UpdateRequest("d0", "fw", "2.0"), UpdateRequest("d1", "fw", "2.0")]
    )
    assert outcome.created == []
    assert [(i, e.status, e.detail) for i, e in outcome.refused] == [
        (0, 409, "fw 2.0 is unsigned"),
        (1, 409, "fw 2.0 is unsigned"),
    ]
    with pytest.raises(Exception, match="unsigned"):
        await core.updates.create(UpdateRequest("d2", "fw", "2.0"))


async def test_a_batch_start_fails_the_updates_its_driver_could_not_start_and_no_other(
    core: HubCore,
) -> None:
    await _setup(core)
    given: list[list[int]] = []

    async def start_many(views: Sequence[UpdateView]) -> dict[int, Exception]:
        given.append([v.id for v in views])
        return {views[1].id: RuntimeError("no route to d1")}

    core.updates.set_batch_starter("thingsboard", start_many)
    outcome = await core.updates.create_many(
        [UpdateRequest(f"d{i}", "fw", "2.0") for i in (0, 1, 2)]
    )
    assert given == [[view.id for _, view in outcome.created]]  # one call for the batch
    states = [view.state for _, view in outcome.created]
    assert states == ["pending", "failed", "pending"]
    failed = await core.updates.get(outcome.created[1][1].id)
    assert failed.code == "start_failed" and "no route to d1" in (failed.reason or "")


async def test_batched_claims_and_records_skip_what_another_hub_holds(core: HubCore) -> None:
    await _setup(core)
    outcome = await core.updates.create_many(
        [UpdateRequest(f"d{i}", "fw", "2.0") for i in (0, 1, 2)]
    )
    ids = [view.id for _, view in outcome.created]
    assert await core.updates.claim(ids[1], "hub-b") is not None
    claimed = await core.updates.claim_new(ids, "hub-a")
    assert [(c.update.id, c.previous) for c in claimed] == [(ids[0], None), (ids[2], None)]
    again = await core.updates.claim_new(ids, "hub-a")  # held already: nothing to write
    assert [(c.update.id, c.previous) for c in again] == [(ids[0], "hub-a"), (ids[2], "hub-a")]
    # hub-b takes the third over before hub-a records what it is about to send
    assert await core.updates.claim(ids[2], "hub-b", take_over=True) is not None
    written = await core.updates.set_driver_states(
        {i: {"cmd": f"c{i}"} for i in ids}, claimed_by="hub-a"
    )
    assert [view.id for view in written] == [ids[0]]
    assert (await core.updates.get(ids[0])).driver_state == {"cmd": f"c{ids[0]}"}
    assert (await core.updates.get(ids[1])).driver_state == {}
    assert (await core.updates.get(ids[2])).driver_state == {}
