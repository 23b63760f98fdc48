"""Which hub instance delivers an update: claims taken with one conditional UPDATE."""

from __future__ import annotations

import asyncio

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import ClaimLost, UpdateRequest
from otahub.hub.services.views import UpdateView
from tests.hub.conftest import chunks


async def _update(core: HubCore) -> UpdateView:
    await core.devices.create(DeviceSpec(name="dev1", dialect="thin-edge"))
    await core.firmware.upload(PackageMeta(title="fw", version="2"), chunks(b"x" * 100))
    return await core.updates.create(UpdateRequest("dev1", "fw", "2", force=True))


async def test_a_claim_is_kept_until_the_device_connects_to_another_hub(core: HubCore) -> None:
    update = await _update(core)
    first = await core.updates.claim(update.id, "hub-a")
    assert first is not None and first.previous is None and first.fresh_to("hub-a")
    again = await core.updates.claim(update.id, "hub-a")
    assert again is not None and not again.fresh_to("hub-a")
    # a hub that merely learned of the update does not take it from the one sending it
    assert await core.updates.claim(update.id, "hub-b") is None
    # its device connected to hub B: B delivers it from now on
    taken = await core.updates.claim(update.id, "hub-b", take_over=True)
    assert taken is not None and taken.previous == "hub-a" and taken.fresh_to("hub-b")
    assert await core.updates.claim(update.id, "hub-a") is None


async def test_a_hub_that_lost_the_claim_cannot_record_a_command(core: HubCore) -> None:
    update = await _update(core)
    await core.updates.claim(update.id, "hub-a")
    await core.updates.set_driver_state(update.id, {"cmd": "a-1"}, claimed_by="hub-a")
    taken = await core.updates.claim(update.id, "hub-b", take_over=True)
    assert taken is not None and taken.update.driver_state == {"cmd": "a-1"}
    with pytest.raises(ClaimLost):
        await core.updates.set_driver_state(update.id, {"cmd": "a-2"}, claimed_by="hub-a")
    assert (await core.updates.get(update.id)).driver_state == {"cmd": "a-1"}


async def test_of_hubs_racing_for_an_unclaimed_update_one_wins(core: HubCore) -> None:
    update = await _update(core)
    results = await asyncio.gather(*(core.updates.claim(update.id, f"hub-{n}") for n in range(6)))
    assert sum(r is not None for r in results) == 1


async def test_a_finished_update_is_claimed_by_nobody(core: HubCore) -> None:
    update = await _update(core)
    await core.updates.cancel(update.id)
    assert await core.updates.claim(update.id, "hub-a", take_over=True) is None
    assert await core.updates.claim(10**6, "hub-a") is None
