"""The device registry: dialects and their credentials."""

from __future__ import annotations

import re

import pytest

from otahub.hub.core import HubCore
from otahub.hub.device_auth.passwords import verify_password
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.events import DeviceReported


async def test_create_list_get_delete(core: HubCore) -> None:
    tb = await core.devices.create(DeviceSpec(name="tb-1", dialect="thingsboard", token="A1"))
    enos = await core.devices.create(
        DeviceSpec(name="inv-7", dialect="enos", product_key="pk", device_key="dk", secret="s3")
    )
    await core.devices.create(DeviceSpec(name="child-1", dialect="thin-edge"))
    await core.devices.create(DeviceSpec(name="legacy-1", dialect="tedge-legacy"))
    assert [d.name for d in await core.devices.list()] == ["child-1", "inv-7", "legacy-1", "tb-1"]
    assert (await core.devices.get("tb-1")) == tb
    assert (await core.devices.by_token("A1")) == tb
    assert (await core.devices.by_enos_keys("pk", "dk")) == enos
    await core.devices.delete("tb-1")
    with pytest.raises(NotFound):
        await core.devices.get("tb-1")


async def test_credentials_are_unique(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="a", dialect="thingsboard", token="T"))
    with pytest.raises(Conflict, match="access token"):
        await core.devices.create(DeviceSpec(name="b", dialect="thingsboard", token="T"))
    with pytest.raises(Conflict, match="'a' already exists"):
        await core.devices.create(DeviceSpec(name="a", dialect="thin-edge"))
    await core.devices.create(
        DeviceSpec(name="e1", dialect="enos", product_key="p", device_key="d", secret="s")
    )
    with pytest.raises(Conflict, match="EnOS"):
        await core.devices.create(
            DeviceSpec(name="e2", dialect="enos", product_key="p", device_key="d", secret="x")
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DeviceSpec(name="x", dialect="thingsboard"), "need token"),
        (DeviceSpec(name="x", dialect="enos", product_key="p"), "need device_key, secret"),
        (DeviceSpec(name="x", dialect="thin-edge", token="t"), "token: not used"),
        (DeviceSpec(name="x", dialect="mqtt"), "dialect must be one of"),
        (DeviceSpec(name="a/b", dialect="thin-edge"), "device name"),
        (DeviceSpec(name="", dialect="thin-edge"), "device name"),
        (DeviceSpec(name="x", dialect="thingsboard", token="has space"), "printable"),
    ],
)
async def test_invalid_specs(core: HubCore, spec: DeviceSpec, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        await core.devices.create(spec)


async def test_report_updates_what_the_device_runs(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="a", dialect="thingsboard", token="T"))
    view = await core.devices.report("a", title="CIM-168", version="1.0.0", online=True)
    assert (view.current_fw_title, view.current_fw_version, view.online) == (
        "CIM-168",
        "1.0.0",
        True,
    )
    assert view.last_seen_at is not None


async def test_password_is_stored_as_an_argon2_hash(core: HubCore) -> None:
    device = await core.devices.create(
        DeviceSpec(name="child-9", dialect="thin-edge", password="pass word 9")
    )
    assert device.has_password
    assert device.password_hash is not None and device.password_hash.startswith("$argon2id$")
    assert "pass word 9" not in device.password_hash
    assert verify_password(device.password_hash, b"pass word 9")
    assert not verify_password(device.password_hash, b"pass word 8")
    assert not (await core.devices.create(DeviceSpec(name="c", dialect="thin-edge"))).has_password


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (DeviceSpec(name="t", dialect="thingsboard", token="T", password="p"), "thingsboard"),
        (
            DeviceSpec(
                name="e", dialect="enos", product_key="p", device_key="d", secret="s", password="p"
            ),
            "enos",
        ),
        (DeviceSpec(name="c", dialect="thin-edge", password=""), "empty"),
        (DeviceSpec(name="c", dialect="tedge-legacy", password="pw\n"), "control characters"),
    ],
)
async def test_invalid_passwords(core: HubCore, spec: DeviceSpec, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        await core.devices.create(spec)


async def test_labels_are_set_removed_and_reported(core: HubCore) -> None:
    created = await core.devices.create(
        DeviceSpec(name="s-1", dialect="thin-edge", labels={"site": "berlin"})
    )
    assert created.labels == {"site": "berlin"}
    async with core.bus.listen(DeviceReported) as events:
        view = await core.devices.set_labels("s-1", {"ring": "canary", "floor": "2"}, ["site"])
        assert view.labels == {"ring": "canary", "floor": "2"}
        assert (await core.devices.get("s-1")).labels == view.labels
        # removing an absent label is no error; the others stay
        view = await core.devices.set_labels("s-1", {"ring": "all"}, ["nope"])
        assert view.labels == {"ring": "all", "floor": "2"}
        reported = [events.get_nowait() for _ in range(events.qsize())]
    assert [e.device.labels for e in reported if isinstance(e, DeviceReported)] == [
        {"ring": "canary", "floor": "2"},
        {"ring": "all", "floor": "2"},
    ]
    assert [d.name for d in await core.groups.resolve(filter="ring=all")] == ["s-1"]


@pytest.mark.parametrize(
    ("labels", "remove", "message"),
    [
        ({"dialect": "enos"}, [], "'dialect' is reserved"),
        ({"online": "x"}, [], "'online' is reserved"),
        ({"a,b": "x"}, [], "label key 'a,b'"),
        ({"a=b": "x"}, [], "label key 'a=b'"),
        ({"a;b": "x"}, [], "label key 'a;b'"),
        ({"a b": "x"}, [], "label key 'a b'"),
        ({"k" * 64: "x"}, [], "longer than 63"),
        ({"site": ""}, [], "'site' has an empty value"),
        ({"site": "a,b"}, [], "without ',' or ';'"),
        ({"site": "line\nbreak"}, [], "printable"),
        ({"site": " padded"}, [], "starts or ends with a blank"),
        ({"site": "v" * 256}, [], "longer than 255"),
        ({"site": "x"}, ["site"], "both set and removed: site"),
        ({f"k{i}": "v" for i in range(65)}, [], "at most 64 labels"),
    ],
)
async def test_bad_labels_are_refused(
    core: HubCore, labels: dict[str, str], remove: list[str], message: str
) -> None:
    await core.devices.create(DeviceSpec(name="s-1", dialect="thin-edge"))
    with pytest.raises(Invalid, match=re.escape(message)):
        await core.devices.set_labels("s-1", labels, remove)
    assert (await core.devices.get("s-1")).labels == {}
    if not remove:
        with pytest.raises(Invalid, match=re.escape(message)):
            await core.devices.create(DeviceSpec(name="s-2", dialect="thin-edge", labels=labels))


async def test_labels_of_an_unknown_device(core: HubCore) -> None:
    with pytest.raises(NotFound, match="'ghost'"):
        await core.devices.set_labels("ghost", {"site": "x"}, [])
