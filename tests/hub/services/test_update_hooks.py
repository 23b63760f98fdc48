"""Driver hooks of the update service: create checks, repeats, timeout reasons."""

from __future__ import annotations

from datetime import timedelta

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from otahub.hub.services.views import DeviceView, UpdateView
from otahub.hub.store.models import utcnow
from tests.hub.conftest import chunks


async def _setup(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="child1", dialect="thin-edge"))
    await core.firmware.upload(PackageMeta(title="fw", version="2"), chunks(b"x" * 100))


def _refuse(device: DeviceView, request: UpdateRequest) -> None:
    raise Conflict(f"device {device.name!r} has not announced firmware_update")


async def test_create_check_refuses_unless_forced(core: HubCore) -> None:
    await _setup(core)
    core.updates.add_create_check("thin-edge", _refuse)
    with pytest.raises(Conflict, match="has not announced"):
        await core.updates.create(UpdateRequest("child1", "fw", "2"))
    assert await core.updates.list() == []
    forced = await core.updates.create(UpdateRequest("child1", "fw", "2", force=True))
    assert forced.force


async def test_repeat_handler_returns_the_running_update(core: HubCore) -> None:
    await _setup(core)
    repeated: list[int] = []

    async def repeat(view: UpdateView) -> None:
        repeated.append(view.id)

    first = await core.updates.create(UpdateRequest("child1", "fw", "2"))
    with pytest.raises(Conflict):  # no handler for this dialect yet
        await core.updates.create(UpdateRequest("child1", "fw", "2"))
    core.updates.on_repeat("thin-edge", repeat)
    again = await core.updates.create(UpdateRequest("child1", "fw", "2"))
    assert again.id == first.id
    assert repeated == [first.id]


async def test_timeout_reason_hook(core: HubCore) -> None:
    await _setup(core)
    core.updates.set_timeout_reason("thin-edge", lambda view: f"no answer from {view.device}")
    update = await core.updates.create(UpdateRequest("child1", "fw", "2", timeout_s=1))
    expired = await core.updates.expire_overdue(utcnow() + timedelta(seconds=5))
    assert [(v.id, v.reason, v.code) for v in expired] == [
        (update.id, "no answer from child1", "timeout")
    ]
