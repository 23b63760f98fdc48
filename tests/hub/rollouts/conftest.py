"""A fleet of devices with labels and a release, and hands that act as the devices' drivers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from otahub.hub.core import HubCore
from otahub.hub.rollouts.spec import RolloutSpec, parse_stages
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.store.models import Device, RolloutDevice
from tests.hub.conftest import chunks

TITLE = "fw"
VERSION = "2.0"


class Clock:
    """The time the rollout service sees for windows and start-at."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def make_fleet(core: HubCore, n: int, *, prefix: str = "dev", site: str = "berlin") -> None:
    for i in range(n):
        await core.devices.create(DeviceSpec(f"{prefix}-{i:03d}", "thin-edge"))
    async with core.db.session() as s, s.begin():
        await s.execute(
            update(Device).where(Device.name.like(f"{prefix}-%")).values(labels={"site": site})
        )


@pytest.fixture
async def release(core: HubCore) -> None:
    await core.firmware.upload(PackageMeta(title=TITLE, version=VERSION), chunks(b"x" * 5000))


def spec(name: str = "r1", **how: object) -> RolloutSpec:
    """A rollout of the release to the Berlin devices, one stage, no brake unless asked."""
    stages = how.pop("stages", "100%")
    values: dict[str, object] = {
        "title": TITLE,
        "version": VERSION,
        "filter": None if "group" in how else "site=berlin",
        "min_finished": 1000,
        "success_threshold": 100.0,
        "seed": 7,
        **how,
    }
    return RolloutSpec(name=name, stages=parse_stages(str(stages)), **values)  # type: ignore[arg-type]


async def settle(core: HubCore) -> None:
    """Let the engine decide until it has nothing more to do at once."""
    for _ in range(1000):
        if not await core.rollout_engine.tick():
            return
    raise AssertionError("the engine never came to rest")


async def rows(core: HubCore, name: str = "r1") -> list[RolloutDevice]:
    view = await core.rollouts.get(name)
    async with core.db.session() as s:
        return list(
            (
                await s.scalars(
                    select(RolloutDevice)
                    .where(RolloutDevice.rollout_id == view.id)
                    .order_by(RolloutDevice.position)
                )
            ).all()
        )


async def started(core: HubCore, name: str = "r1") -> list[RolloutDevice]:
    """Devices whose updates run now."""
    return [
        r
        for r in await rows(core, name)
        if r.state == "started"
        and (await core.updates.get(r.update_id or 0)).state
        not in ("succeeded", "failed", "canceled")
    ]


async def finish(
    core: HubCore, devices: list[RolloutDevice], *, fail: frozenset[str] | set[str] = frozenset()
) -> None:
    """Report the updates of ``devices`` as their driver would: through to the end."""
    for r in devices:
        assert r.update_id is not None
        for state in ("sent", "downloading", "installing"):
            await core.updates.transition(r.update_id, state, source="driver:thin-edge")
        if r.device_name in fail:
            await core.updates.transition(
                r.update_id, "failed", reason="flash error", source="driver:thin-edge"
            )
        else:
            await core.updates.transition(r.update_id, "succeeded", source="driver:thin-edge")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
