"""UpdateService.each_active: every unfinished update of a dialect, however many there are.

Drivers take their updates back through it when the hub starts; a capped list
(the newest 1,000) left the older ones of a large fleet undelivered.
"""

from __future__ import annotations

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import MAX_PAGE, UpdateRequest
from otahub.protocols.states import UpdateState
from tests.hub.conftest import chunks


async def _pages(
    core: HubCore, dialect: str, *, state: UpdateState | None = None, page: int = MAX_PAGE
) -> list[list[int]]:
    found = core.updates.each_active(dialect, state=state, page=page)
    return [[update.id for update in views] async for views in found]


async def test_every_unfinished_update_of_the_dialect_a_page_at_a_time(core: HubCore) -> None:
    await core.firmware.upload(PackageMeta(title="fw", version="2.0"), chunks(b"x" * 3000))
    specs = [DeviceSpec(f"tb{i}", "thingsboard", token=f"t{i}") for i in range(7)]
    specs.append(DeviceSpec("legacy", "tedge-legacy"))
    await core.devices.create_many(specs)
    outcome = await core.updates.create_many(
        [UpdateRequest(spec.name, "fw", "2.0") for spec in specs]
    )
    ids = {view.device: view.id for _, view in outcome.created}
    await core.updates.transition(ids["tb1"], UpdateState.SENT, source="test")
    await core.updates.transition(ids["tb2"], UpdateState.SUCCEEDED, source="test")
    await core.updates.cancel(ids["tb5"])
    tb = [ids[f"tb{i}"] for i in (0, 1, 3, 4, 6)]

    assert await _pages(core, "thingsboard", page=2) == [tb[0:2], tb[2:4], tb[4:]]
    assert await _pages(core, "thingsboard", page=5) == [tb]  # a full last page ends it too
    assert await _pages(core, "thingsboard") == [tb]
    pending = [ids[f"tb{i}"] for i in (0, 3, 4, 6)]
    assert await _pages(core, "thingsboard", state=UpdateState.PENDING, page=3) == [
        pending[:3],
        pending[3:],
    ]
    assert await _pages(core, "tedge-legacy") == [[ids["legacy"]]]
    assert await _pages(core, "enos") == []
