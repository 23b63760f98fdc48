"""Device groups: static and dynamic, resolved on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import insert, update

from otahub.hub.core import HubCore
from otahub.hub.services import groups as groups_module
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.events import GroupCreated, GroupDeleted
from otahub.hub.store.models import Device


async def fleet(core: HubCore) -> None:
    """Five devices of three dialects and two sites, created in name order."""
    await core.devices.create(DeviceSpec("tb-1", "thingsboard", token="t1", device_type="CIM"))
    await core.devices.create(DeviceSpec("tb-2", "thingsboard", token="t2", device_type="CIM"))
    await core.devices.create(
        DeviceSpec("inv-1", "enos", product_key="p", device_key="d1", secret="s")
    )
    await core.devices.create(DeviceSpec("child-1", "thin-edge"))
    await core.devices.create(DeviceSpec("child-2", "thin-edge"))
    await _label(core, "tb-1", site="berlin", ring="canary")
    await _label(core, "tb-2", site="paris")
    await _label(core, "inv-1", site="berlin")


async def _label(core: HubCore, name: str, **labels: str) -> None:
    async with core.db.session() as s, s.begin():
        await s.execute(update(Device).where(Device.name == name).values(labels=labels))


async def names(core: HubCore, **how: str) -> list[str]:
    return [d.name for d in await core.groups.resolve(**how)]


async def test_dynamic_group_follows_the_fleet(core: HubCore) -> None:
    await fleet(core)
    group = await core.groups.create("berlin", filter=" site=berlin ")
    assert group.dynamic
    assert group.filter == "site=berlin"
    assert await names(core, group="berlin") == ["tb-1", "inv-1"]  # by device id
    await _label(core, "child-2", site="berlin")  # relabelled: in the group at once
    assert await names(core, group="berlin") == ["tb-1", "inv-1", "child-2"]
    await core.devices.delete("tb-1")
    assert [d.name for d in await core.groups.members("berlin")] == ["inv-1", "child-2"]


async def test_static_group_keeps_its_list_and_loses_deleted_devices(core: HubCore) -> None:
    await fleet(core)
    group = await core.groups.create("pilot", devices=["child-2", "tb-1", "child-2"])
    assert not group.dynamic
    assert await names(core, group="pilot") == ["tb-1", "child-2"]
    await _label(core, "tb-2", site="berlin")  # labels do not matter to a static group
    assert await names(core, group="pilot") == ["tb-1", "child-2"]
    await core.devices.delete("child-2")
    assert await names(core, group="pilot") == ["tb-1"]
    assert await core.groups.sizes([group]) == {"pilot": 1}


async def test_static_group_with_unknown_devices_is_refused_naming_them(core: HubCore) -> None:
    await fleet(core)
    with pytest.raises(Invalid, match=r"no such device.*: ghost, nobody") as caught:
        await core.groups.create("pilot", devices=["tb-1", "ghost", "nobody"])
    assert caught.value.extra["unknown_devices"] == ["ghost", "nobody"]
    with pytest.raises(NotFound):
        await core.groups.get("pilot")
    with pytest.raises(Invalid, match="at least one device"):
        await core.groups.create("pilot", devices=[])


async def test_resolve_by_filter_and_its_arguments(core: HubCore) -> None:
    await fleet(core)
    assert await names(core, filter="dialect=thin-edge") == ["child-1", "child-2"]
    assert await names(core, filter="site=berlin,dialect=thingsboard") == ["tb-1"]
    assert await names(core, filter="") == ["tb-1", "tb-2", "inv-1", "child-1", "child-2"]
    assert await names(core, filter="name=tb-*,site!=berlin") == ["tb-2"]
    with pytest.raises(Invalid, match="either a group or a filter"):
        await core.groups.resolve()
    with pytest.raises(Invalid, match="either a group or a filter"):
        await core.groups.resolve(group="g", filter="site=x")
    with pytest.raises(Invalid, match="'online=perhaps'"):
        await core.groups.resolve(filter="online=perhaps")
    with pytest.raises(NotFound, match="group 'nope'"):
        await core.groups.resolve(group="nope")


async def test_contains_judges_the_device_as_given(core: HubCore) -> None:
    await fleet(core)
    await core.groups.create("berlin", filter="site=berlin")
    await core.groups.create("pilot", devices=["tb-2"])
    tb1 = await core.devices.get("tb-1")
    tb2 = await core.devices.get("tb-2")
    assert await core.groups.contains("berlin", tb1)
    assert not await core.groups.contains("berlin", tb2)
    moved = dataclasses.replace(tb2, labels={"site": "berlin"})  # relabelled, not yet stored
    assert await core.groups.contains("berlin", moved)
    assert await core.groups.contains("pilot", tb2)
    assert not await core.groups.contains("pilot", tb1)
    with pytest.raises(NotFound):
        await core.groups.contains("nope", tb1)


async def test_create_get_list_delete_and_their_events(core: HubCore) -> None:
    await fleet(core)
    async with core.bus.listen(GroupCreated, GroupDeleted) as events:
        await core.groups.create("b-dyn", filter="site=berlin")
        await core.groups.create("a-static", devices=["child-1"])
        with pytest.raises(Conflict, match="'a-static' already exists"):
            await core.groups.create("a-static", filter="")
        assert [g.name for g in await core.groups.list()] == ["a-static", "b-dyn"]
        assert (await core.groups.get("b-dyn")).filter == "site=berlin"
        assert await core.groups.sizes(await core.groups.list()) == {"a-static": 1, "b-dyn": 2}
        deleted = await core.groups.delete("b-dyn")
        assert deleted.name == "b-dyn"
        with pytest.raises(NotFound):
            await core.groups.delete("b-dyn")
        seen = [(type(events.get_nowait()).__name__) for _ in range(events.qsize())]
    assert seen == ["GroupCreated", "GroupCreated", "GroupDeleted"]
    assert [d.name for d in await core.devices.list()] == [
        "child-1",
        "child-2",
        "inv-1",
        "tb-1",
        "tb-2",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filter": "site=x", "devices": ["tb-1"]}, "either a filter"),
        ({}, "either a filter"),
        ({"filter": "site=x,,online=maybe"}, "'online=maybe'"),
    ],
)
async def test_invalid_groups_are_refused(
    core: HubCore, kwargs: dict[str, object], message: str
) -> None:
    await fleet(core)
    with pytest.raises(Invalid, match=message):
        await core.groups.create("g", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a/b", "with space", "-lead", "x" * 256])
async def test_group_names_are_checked(core: HubCore, name: str) -> None:
    with pytest.raises(Invalid, match="group name"):
        await core.groups.create(name, filter="")


async def test_groups_larger_than_a_page_resolve_completely_in_id_order(
    core: HubCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(groups_module, "PAGE", 7)
    async with core.db.session() as s, s.begin():
        await s.execute(
            insert(Device),
            [
                {"name": f"d{i:03}", "dialect": "thin-edge", "labels": {"odd": str(i % 2)}}
                for i in range(50)
            ],
        )
    everyone = await names(core, filter="")
    assert everyone == [f"d{i:03}" for i in range(50)]
    assert await names(core, filter="odd=1") == [f"d{i:03}" for i in range(1, 50, 2)]
    await core.groups.create("many", devices=[f"d{i:03}" for i in reversed(range(0, 50, 3))])
    assert await names(core, group="many") == [f"d{i:03}" for i in range(0, 50, 3)]
