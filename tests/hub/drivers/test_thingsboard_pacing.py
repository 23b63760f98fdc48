"""ThingsBoard's paced notifications: a notification that cannot go out fails its update."""

from __future__ import annotations

import asyncio

from otahub.hub.core import HubCore
from otahub.hub.drivers.thingsboard.pacing import Pacer
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from otahub.hub.services.views import UpdateView
from otahub.hub.supervision import Supervisor
from tests.hub.conftest import chunks


async def test_update_whose_notification_raises_fails_at_once_instead_of_timing_out(
    core: HubCore,
) -> None:
    await core.devices.create(DeviceSpec(name="dev1", dialect="thingsboard", token="tok1"))
    await core.firmware.upload(PackageMeta(title="fw", version="2.0"), chunks(b"x" * 5000))
    update = await core.updates.create(UpdateRequest("dev1", "fw", "2.0"))

    async def release(update_id: int) -> None:
        raise KeyError("SHA3")

    async def failed(update_id: int, error: str) -> UpdateView:
        return await core.updates.fail_start(update_id, error, dialect="thingsboard")

    pacer = Pacer(100.0, release, failed)
    pacer.start(Supervisor())
    pacer.put(update.id)
    try:
        for _ in range(300):
            found = await core.updates.get(update.id, with_transitions=False)
            if found.state == "failed":
                break
            await asyncio.sleep(0.05)
    finally:
        await pacer.stop()
    assert (found.state, found.code) == ("failed", "start_failed")
    assert found.reason == "the thingsboard driver could not start the update: KeyError: 'SHA3'"
