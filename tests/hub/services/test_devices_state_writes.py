"""Dialect states written on connect (EnOS logins, thin-edge registrations) share transactions."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import NotFound


def _count_commits(core: HubCore) -> list[int]:
    commits = [0]

    def on_commit(_conn: Any) -> None:
        commits[0] += 1

    event.listen(core.db.engine.sync_engine, "commit", on_commit)
    return commits


async def test_states_written_together_share_one_commit_in_the_order_they_came(
    core: HubCore,
) -> None:
    for n in range(10):
        await core.devices.create(DeviceSpec(name=f"dev{n}", dialect="thin-edge"))
    commits = _count_commits(core)
    writes = [core.devices.set_dialect_state(f"dev{n}", {"n": n}) for n in range(10)]
    writes.append(core.devices.set_dialect_state("dev3", {"n": "last"}))
    writes.append(core.devices.set_dialect_state("nobody", {"n": 0}))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert commits[0] == 1
    assert results[:11] == [None] * 11
    assert isinstance(results[11], NotFound)
    assert (await core.devices.get("dev3")).dialect_state == {"n": "last"}
    for n in (0, 1, 2, 4, 5, 6, 7, 8, 9):
        assert (await core.devices.get(f"dev{n}")).dialect_state == {"n": n}


async def test_a_state_written_after_a_commit_is_the_one_kept(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="dev", dialect="thin-edge"))
    first = asyncio.ensure_future(core.devices.set_dialect_state("dev", {"v": 1}))
    await asyncio.sleep(0)
    await core.devices.set_dialect_state("dev", {"v": 2})
    await first
    assert (await core.devices.get("dev")).dialect_state == {"v": 2}
