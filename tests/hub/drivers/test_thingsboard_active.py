"""The ThingsBoard driver's view of each device's active update, kept from the bus."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from otahub.hub.core import HubCore
from otahub.hub.drivers.thingsboard.active import ActiveUpdates
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from tests.hub.conftest import chunks


async def test_changes_seen_replace_reads_and_an_end_clears_the_entry(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="d", dialect="thingsboard", token="t"))
    await core.firmware.upload(PackageMeta(title="fw", version="2"), chunks(b"x" * 3000))
    active = ActiveUpdates(core.updates)
    assert await active.get("d", "firmware") is None  # read, and remembered
    update = await core.updates.create(UpdateRequest("d", "fw", "2"))
    assert await active.get("d", "firmware") is None  # no news seen: the entry stands
    active.saw(update)
    assert (await active.get("d", "firmware")) == update
    sent = await core.updates.transition(update.id, "sent")
    active.saw(sent)
    older = dataclasses.replace(update, updated_at=sent.updated_at - timedelta(seconds=1))
    active.saw(older)  # announced late: ignored
    got = await active.get("d", "firmware")
    assert got is not None and got.state == "sent"
    ended = await core.updates.cancel(update.id)
    active.saw(ended)
    assert await active.get("d", "firmware") is None
    # an entry past its age is read again
    again = await core.updates.create(UpdateRequest("d", "fw", "2"))
    stale = ActiveUpdates(core.updates, ttl_s=0.0)
    assert (await stale.get("d", "firmware")) == again
    active.forget("d")
    assert (await active.get("d", "firmware")) == again
