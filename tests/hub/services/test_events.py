"""The in-process event bus."""

from __future__ import annotations

from datetime import UTC, datetime

from otahub.hub.services.events import (
    DeviceCreated,
    DeviceDeleted,
    Event,
    EventBus,
)
from otahub.hub.services.views import DeviceView


def _device(name: str) -> DeviceView:
    now = datetime.now(UTC)
    return DeviceView(
        id=1,
        name=name,
        dialect="thin-edge",
        device_type=None,
        tb_token=None,
        enos_product_key=None,
        enos_device_key=None,
        enos_device_secret=None,
        current_fw_title=None,
        current_fw_version=None,
        current_sw_title=None,
        current_sw_version=None,
        last_seen_at=None,
        online=False,
        created_at=now,
    )


async def test_handlers_filter_by_type_and_survive_failures() -> None:
    bus = EventBus()
    got: list[Event] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("driver bug")

    async def record(event: Event) -> None:
        got.append(event)

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(record, DeviceCreated)
    await bus.publish(DeviceCreated(_device("a")))
    await bus.publish(DeviceDeleted(_device("a")))
    unsubscribe()
    await bus.publish(DeviceCreated(_device("b")))
    assert [(type(e), e.device.name) for e in got if isinstance(e, DeviceCreated)] == [
        (DeviceCreated, "a")
    ]
    assert len(got) == 1


async def test_slow_listener_loses_oldest_events() -> None:
    bus = EventBus()
    async with bus.listen(DeviceCreated, maxsize=2) as queue:
        for name in ("a", "b", "c"):
            await bus.publish(DeviceCreated(_device(name)))
        names = [queue.get_nowait(), queue.get_nowait()]
    assert [e.device.name for e in names if isinstance(e, DeviceCreated)] == ["b", "c"]
    await bus.publish(DeviceCreated(_device("d")))  # no listener left: nothing breaks
