"""The update service: lifecycle, audit trail, one active update, timeouts, events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.events import DeviceDeleted, Event, UpdateCreated, UpdateTransitioned
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from otahub.hub.services.views import UpdateView
from otahub.hub.store.models import utcnow
from tests.hub.conftest import chunks


async def _setup(core: HubCore, *versions: str) -> None:
    await core.devices.create(DeviceSpec(name="dev1", dialect="thingsboard", token="tok1"))
    for version in versions or ("1.0.1",):
        await core.firmware.upload(
            PackageMeta(title="CIM-168", version=version), chunks(version.encode() * 1000)
        )


async def test_lifecycle_records_every_transition(core: HubCore) -> None:
    await _setup(core)
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(record, UpdateCreated, UpdateTransitioned)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    assert update.state == "pending"
    for state in ("sent", "downloading"):
        await core.updates.transition(update.id, state, source="driver:thingsboard")
    await core.updates.transition(update.id, "downloading", progress=40)  # progress only
    for state in ("downloaded", "verified", "installing", "succeeded"):
        await core.updates.transition(update.id, state, source="driver:thingsboard")
    final = await core.updates.get(update.id)
    assert final.state == "succeeded"
    assert final.progress == 100
    assert final.finished_at is not None
    assert final.deadline_at is None
    assert final.transitions is not None
    assert [(t.from_state, t.to_state) for t in final.transitions] == [
        (None, "pending"),
        ("pending", "sent"),
        ("sent", "downloading"),
        ("downloading", "downloaded"),
        ("downloaded", "verified"),
        ("verified", "installing"),
        ("installing", "succeeded"),
    ]
    times = [t.at for t in final.transitions]
    assert times == sorted(times)
    assert isinstance(seen[0], UpdateCreated)
    assert [e.transition.to_state for e in seen[1:] if isinstance(e, UpdateTransitioned)] == [
        "sent",
        "downloading",
        "downloading",
        "downloaded",
        "verified",
        "installing",
        "succeeded",
    ]


async def test_states_may_be_skipped_but_not_reversed(core: HubCore) -> None:
    await _setup(core)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    await core.updates.transition(update.id, "installing")  # thin-edge style skip
    with pytest.raises(Conflict, match="behind"):
        await core.updates.transition(update.id, "downloading")
    await core.updates.transition(update.id, "failed", reason="flash write error", code="E42")
    with pytest.raises(Conflict, match="terminal"):
        await core.updates.transition(update.id, "succeeded")
    failed = await core.updates.get(update.id)
    assert (failed.state, failed.reason, failed.code) == ("failed", "flash write error", "E42")
    with pytest.raises(Invalid, match="unknown update state"):
        await core.updates.transition(update.id, "exploded")


async def test_one_active_update_per_device_unless_replaced(core: HubCore) -> None:
    await _setup(core, "1.0.1", "1.0.2")
    first = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    with pytest.raises(Conflict, match=f"active firmware update {first.id}"):
        await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.2"))
    second = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.2", replace=True))
    replaced = await core.updates.get(first.id)
    assert replaced.state == "canceled"
    assert replaced.reason == "replaced by a newer update"
    assert (await core.updates.active_for("dev1")) == await core.updates.get(
        second.id, with_transitions=False
    )
    await core.updates.cancel(second.id)
    assert await core.updates.active_for("dev1") is None
    with pytest.raises(Conflict):
        await core.updates.cancel(second.id)  # already finished
    third = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    assert third.state == "pending"


async def test_concurrent_requests_get_exactly_one_update(core: HubCore) -> None:
    await _setup(core)
    results = await asyncio.gather(
        *(core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1")) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def test_unknown_device_or_package(core: HubCore) -> None:
    await _setup(core)
    with pytest.raises(NotFound, match="device 'nope'"):
        await core.updates.create(UpdateRequest("nope", "CIM-168", "1.0.1"))
    with pytest.raises(NotFound, match="no firmware package"):
        await core.updates.create(UpdateRequest("dev1", "CIM-168", "9.9"))
    with pytest.raises(NotFound):
        await core.updates.get(12345)


async def test_overdue_updates_fail_with_a_reason(core: HubCore) -> None:
    await _setup(core)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1", timeout_s=60))
    await core.updates.transition(update.id, "downloading")
    assert await core.updates.expire_overdue() == []
    expired = await core.updates.expire_overdue(utcnow() + timedelta(seconds=61))
    assert [u.id for u in expired] == [update.id]
    failed = await core.updates.get(update.id)
    assert failed.state == "failed"
    assert failed.code == "timeout"
    assert failed.reason is not None and "downloading" in failed.reason
    assert failed.transitions is not None
    assert failed.transitions[-1].source == "timeout"


async def test_sweeper_fails_a_stuck_update_on_time(core: HubCore) -> None:
    await _setup(core)
    sweeper = asyncio.create_task(core.updates.run_sweeper())
    try:
        update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1", timeout_s=0.3))
        await core.updates.transition(update.id, "sent")
        for _ in range(100):
            if (await core.updates.get(update.id)).state == "failed":
                break
            await asyncio.sleep(0.05)
        assert (await core.updates.get(update.id)).code == "timeout"
    finally:
        sweeper.cancel()


async def test_list_filters(core: HubCore) -> None:
    await _setup(core)
    await core.devices.create(DeviceSpec(name="dev2", dialect="thin-edge"))
    a = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    b = await core.updates.create(UpdateRequest("dev2", "CIM-168", "1.0.1"))
    await core.updates.cancel(a.id)
    assert [u.id for u in await core.updates.list()] == [b.id, a.id]
    assert [u.id for u in await core.updates.list(device="dev1")] == [a.id]
    assert [u.id for u in await core.updates.list(state="pending")] == [b.id]
    assert [u.id for u in await core.updates.list(active=False)] == [a.id]
    with pytest.raises(NotFound):
        await core.updates.list(device="ghost")


async def test_device_type_must_match(core: HubCore) -> None:
    await core.devices.create(
        DeviceSpec(
            name="gw",
            dialect="enos",
            product_key="pk",
            device_key="dk",
            secret="s",
            device_type="inverter",
        )
    )
    await core.firmware.upload(
        PackageMeta(title="T", version="1", device_type="meter"), chunks(b"x")
    )
    with pytest.raises(Invalid, match="device type"):
        await core.updates.create(UpdateRequest("gw", "T", "1"))


async def test_deleting_a_device_with_an_active_update_is_refused_unless_forced(
    core: HubCore,
) -> None:
    await _setup(core)
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(record, UpdateTransitioned, DeviceDeleted)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    with pytest.raises(Conflict, match=f"active updates: {update.id} ") as refused:
        await core.devices.delete("dev1")
    assert refused.value.extra == {"active_updates": [update.id]}
    assert (await core.updates.get(update.id)).state == "pending"
    assert (await core.devices.get("dev1")).name == "dev1"

    deleted = await core.devices.delete("dev1", force=True)
    with pytest.raises(NotFound):
        await core.devices.get("dev1")
    # canceled through the ordinary cancel (what drivers act on), before the device went
    assert [type(e).__name__ for e in seen] == ["UpdateTransitioned", "DeviceDeleted"]
    first = seen[0]
    assert isinstance(first, UpdateTransitioned) and first.canceled
    # the history outlives the device
    kept = await core.updates.get(update.id)
    assert (kept.state, kept.device, kept.dialect, kept.device_id) == (
        "canceled",
        "dev1",
        deleted.dialect,
        None,
    )
    assert kept.reason == "device dev1 deleted"
    assert [u.id for u in await core.updates.list()] == [update.id]
    # a new device of the same name gets a new id and none of the old history
    again = await core.devices.create(DeviceSpec(name="dev1", dialect="thin-edge"))
    assert again.id > deleted.id
    assert await core.updates.list(device="dev1") == []


async def test_deleting_a_device_without_active_updates_keeps_its_history(
    core: HubCore,
) -> None:
    await _setup(core)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    await core.updates.transition(update.id, "failed", reason="broken", source="test")
    await core.devices.delete("dev1")
    kept = await core.updates.get(update.id)
    assert (kept.state, kept.device, kept.device_id) == ("failed", "dev1", None)
    assert [t.to_state for t in kept.transitions or ()] == ["pending", "failed"]


async def test_update_whose_driver_raises_while_starting_it_fails_at_once_with_the_reason(
    core: HubCore,
) -> None:
    await _setup(core)

    async def broken_start(update: UpdateView) -> None:
        raise ConnectionError("broker unreachable")

    core.updates.set_starter("thingsboard", broken_start)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    assert (update.state, update.code) == ("failed", "start_failed")
    assert update.reason == (
        "the thingsboard driver could not start the update: ConnectionError: broker unreachable"
    )
    stored = await core.updates.get(update.id)
    assert stored.state == "failed" and stored.reason == update.reason
    assert stored.transitions is not None
    assert [(t.to_state, t.source) for t in stored.transitions] == [
        ("pending", "api"),
        ("failed", "hub"),
    ]
    assert await core.updates.active_for("dev1") is None


async def test_new_update_goes_to_its_dialects_starter_after_the_observers_heard_of_it(
    core: HubCore,
) -> None:
    await _setup(core)
    await core.devices.create(DeviceSpec(name="dev2", dialect="tedge-legacy"))
    heard: list[str] = []

    async def observer(event: Event) -> None:
        assert isinstance(event, UpdateCreated)
        heard.append(f"event {event.update.device}")
        raise RuntimeError("a broken observer fails no update")

    async def thingsboard(update: UpdateView) -> None:
        heard.append(f"thingsboard {update.device}")

    async def legacy(update: UpdateView) -> None:
        heard.append(f"legacy {update.device}")

    core.bus.subscribe(observer, UpdateCreated)
    core.updates.set_starter("thingsboard", thingsboard)
    core.updates.set_starter("tedge-legacy", legacy)
    first = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    second = await core.updates.create(UpdateRequest("dev2", "CIM-168", "1.0.1"))
    assert heard == ["event dev1", "thingsboard dev1", "event dev2", "legacy dev2"]
    assert first.state == second.state == "pending"


async def test_start_failure_leaves_an_update_the_driver_already_ended_as_it_is(
    core: HubCore,
) -> None:
    await _setup(core)

    async def fail_then_raise(update: UpdateView) -> None:
        await core.updates.transition(update.id, "failed", reason="no route", source="drv")
        raise RuntimeError("and then a bug")

    core.updates.set_starter("thingsboard", fail_then_raise)
    update = await core.updates.create(UpdateRequest("dev1", "CIM-168", "1.0.1"))
    assert (update.state, update.reason) == ("failed", "no route")
