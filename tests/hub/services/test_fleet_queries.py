"""Paged and counted device reads for views, in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Invalid
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.fleet_queries import DeviceQuery
from tests.hub.conftest import chunks


async def _fleet(core: HubCore, n: int = 30) -> None:
    for i in range(n):
        dialect = "thin-edge" if i % 3 else "thingsboard"
        await core.devices.create(
            DeviceSpec(
                name=f"d{i:03d}",
                dialect=dialect,
                token=f"tok{i}" if dialect == "thingsboard" else None,
                device_type="meter" if i % 2 else None,
            )
        )
        await core.devices.report(f"d{i:03d}", title="fw", version=f"1.{i % 3}", online=i < 10)
        await core.devices.set_labels(f"d{i:03d}", {"site": "oslo" if i % 5 == 0 else "rome"})


async def test_device_pages_are_read_with_limit_and_offset_and_count_all_matches(
    core: HubCore,
) -> None:
    await _fleet(core)
    first = await core.fleet.devices(DeviceQuery(), offset=0, limit=12)
    last = await core.fleet.devices(DeviceQuery(), offset=24, limit=12)
    assert first.total == last.total == 30
    assert [d.name for d in first.devices] == [f"d{i:03d}" for i in range(12)]
    assert [d.name for d in last.devices] == [f"d{i:03d}" for i in range(24, 30)]


async def test_device_filters_combine_dialect_type_label_version_online_and_name(
    core: HubCore,
) -> None:
    await _fleet(core)
    query = DeviceQuery(
        search="d0", dialect="thin-edge", device_type="meter", label="site=oslo", online=False
    )
    page = await core.fleet.devices(query)
    expected = [f"d{i:03d}" for i in range(30) if i % 3 and i % 2 and i % 5 == 0 and i >= 10]
    assert [d.name for d in page.devices] == expected
    assert page.total == len(expected)
    versions = await core.fleet.devices(DeviceQuery(version="1.2"))
    assert versions.total == 10
    has_label = await core.fleet.devices(DeviceQuery(label="site"))
    assert has_label.total == 30
    # a search for LIKE's wildcards matches them literally
    assert (await core.fleet.devices(DeviceQuery(search="%"))).total == 0


async def test_a_bad_label_key_in_a_device_filter_is_refused(core: HubCore) -> None:
    with pytest.raises(Invalid):
        await core.fleet.devices(DeviceQuery(label="bad key!=x"))


async def test_fleet_counts_by_dialect_and_version_and_the_devices_running_a_package(
    core: HubCore,
) -> None:
    await _fleet(core)
    by_dialect = {c.dialect: (c.total, c.online) for c in await core.fleet.by_dialect()}
    assert by_dialect == {"thin-edge": (20, 6), "thingsboard": (10, 4)}
    versions = {(v.title, v.version): v.devices for v in await core.fleet.versions()}
    assert versions == {("fw", "1.0"): 10, ("fw", "1.1"): 10, ("fw", "1.2"): 10}
    package = await core.firmware.upload(PackageMeta(title="fw", version="1.1"), chunks(b"image"))
    running = await core.fleet.running(package.id, limit=3)
    assert running.total == 10
    assert [d.name for d in running.devices] == ["d001", "d004", "d007"]
    assert await core.fleet.device_types() == ["meter"]
