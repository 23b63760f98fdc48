"""Registering many devices at once: all or nothing, every refused row named."""

from __future__ import annotations

import pytest

from otahub.hub.core import HubCore
from otahub.hub.device_auth.passwords import verify_password
from otahub.hub.services.device_batch import BatchRefused
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.events import DeviceCreated


def tb(name: str, token: str, **kw: object) -> DeviceSpec:
    return DeviceSpec(name=name, dialect="thingsboard", token=token, **kw)  # type: ignore[arg-type]


async def test_a_batch_registers_every_device_with_one_event_each(core: HubCore) -> None:
    specs = [
        tb("tb-1", "T1", labels={"site": "berlin"}),
        DeviceSpec("inv-1", "enos", product_key="p", device_key="d1", secret="s"),
        DeviceSpec("te-1", "thin-edge", password="pw-1", labels={"ring": "canary"}),
        DeviceSpec("gw-1", "thin-edge", gateway=True),
    ]
    async with core.bus.listen(DeviceCreated) as events:
        views = await core.devices.create_many(specs)
        created = [events.get_nowait() for _ in range(events.qsize())]
    assert [v.name for v in views] == ["tb-1", "inv-1", "te-1", "gw-1"]
    assert [v.id for v in views] == sorted(v.id for v in views)
    assert [e.device for e in created if isinstance(e, DeviceCreated)] == views
    stored = {d.name: d for d in await core.devices.list()}
    assert stored["tb-1"].labels == {"site": "berlin"} and stored["tb-1"].tb_token == "T1"
    assert stored["gw-1"].gateway
    te = stored["te-1"]
    assert te.password_hash is not None and verify_password(te.password_hash, b"pw-1")
    assert await core.devices.by_enos_keys("p", "d1") == stored["inv-1"]
    assert await core.devices.create_many([]) == []


async def test_one_bad_row_refuses_the_batch_and_every_bad_row_is_listed(core: HubCore) -> None:
    await core.devices.create(tb("old", "OLD"))
    await core.devices.create(
        DeviceSpec("old-e", "enos", product_key="p", device_key="d", secret="s")
    )
    specs = [
        tb("ok-1", "A"),
        tb("old", "B"),  # row 2: name registered
        tb("ok-2", "OLD"),  # row 3: token registered
        DeviceSpec("ok-3", "enos", product_key="p", device_key="d", secret="x"),  # row 4
        tb("ok-1", "C"),  # row 5: name of row 1
        tb("ok-4", "A"),  # row 6: token of row 1
        DeviceSpec("bad/name", "thin-edge"),  # row 7
        DeviceSpec("ok-5", "thin-edge", labels={"version": "1"}),  # row 8: reserved label
        DeviceSpec("ok-6", "thingsboard"),  # row 9: no token
        tb("ok-7", "D"),
    ]
    with pytest.raises(BatchRefused) as caught:
        await core.devices.create_many(specs)
    refused = caught.value.extra["refused"]
    assert [(r["row"], r["name"]) for r in refused] == [
        (2, "old"),
        (3, "ok-2"),
        (4, "ok-3"),
        (5, "ok-1"),
        (6, "ok-4"),
        (7, "bad/name"),
        (8, "ok-5"),
        (9, "ok-6"),
    ]
    reasons = [r["reason"] for r in refused]
    assert "device 'old' already exists" in reasons[0]
    assert "access token" in reasons[1]
    assert "EnOS product key 'p' and device key 'd'" in reasons[2]
    assert reasons[3] == "name 'ok-1' is also on row 1"
    assert reasons[4] == "ThingsBoard access token is also on row 1"
    assert "device name" in reasons[5]
    assert "reserved" in reasons[6]
    assert "need token" in reasons[7]
    assert caught.value.detail.startswith("8 of 10 device(s) refused, nothing was registered")
    assert [d.name for d in await core.devices.list()] == ["old", "old-e"]
    assert await core.devices.check_many(specs[:1] + specs[-1:]) == []


async def test_duplicate_enos_keys_within_a_batch(core: HubCore) -> None:
    specs = [
        DeviceSpec("e-1", "enos", product_key="p", device_key="d", secret="s"),
        DeviceSpec("e-2", "enos", product_key="p", device_key="d2", secret="s"),
        DeviceSpec("e-3", "enos", product_key="p", device_key="d", secret="s"),
    ]
    with pytest.raises(BatchRefused) as caught:
        await core.devices.create_many(specs)
    assert caught.value.extra["refused"] == [
        {
            "row": 3,
            "name": "e-3",
            "reason": "EnOS product key 'p' and device key 'd' is also on row 1",
            "same_as": 1,
        }
    ]
    assert await core.devices.list() == []
