"""A succeeded update records what its device runs, in the transaction of the success."""

from __future__ import annotations

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from tests.hub.conftest import chunks


async def _setup(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="dev1", dialect="thingsboard", token="tok1"))
    for title, version, kind in (
        ("CIM-168", "2.0", "firmware"),
        ("CIM-168", "3.0", "firmware"),
        ("agent", "1.4", "software"),
    ):
        await core.firmware.upload(
            PackageMeta(title=title, version=version, kind=kind), chunks(version.encode() * 500)
        )


async def _run(core: HubCore, title: str, version: str, end: str) -> None:
    update = await core.updates.create(UpdateRequest("dev1", title, version))
    await core.updates.transition(update.id, "downloading")
    await core.updates.transition(update.id, end)


async def test_a_success_sets_the_devices_version_without_a_report(core: HubCore) -> None:
    await _setup(core)
    await core.devices.report("dev1", title="CIM-168", version="1.0")
    await _run(core, "CIM-168", "2.0", "succeeded")
    device = await core.devices.get("dev1")
    assert (device.current_fw_title, device.current_fw_version) == ("CIM-168", "2.0")
    assert (device.current_sw_title, device.current_sw_version) == (None, None)

    await _run(core, "agent", "1.4", "succeeded")
    device = await core.devices.get("dev1")
    assert (device.current_sw_title, device.current_sw_version) == ("agent", "1.4")
    assert device.current_fw_version == "2.0"


async def test_a_failure_leaves_the_version_as_the_device_reported_it(core: HubCore) -> None:
    await _setup(core)
    await core.devices.report("dev1", title="CIM-168", version="1.0")
    await _run(core, "CIM-168", "2.0", "failed")
    assert (await core.devices.get("dev1")).current_fw_version == "1.0"


async def test_a_report_after_the_success_is_stored_not_taken_for_a_repeat(
    core: HubCore,
) -> None:
    """The device service skips reports that repeat what it wrote shortly before; a
    success changes the device behind that memory, which must not hide the next report."""
    await _setup(core)
    await core.devices.report("dev1", title="CIM-168", version="1.0")
    await _run(core, "CIM-168", "2.0", "succeeded")
    # the device came back on its old image
    await core.devices.report("dev1", title="CIM-168", version="1.0")
    assert (await core.devices.get("dev1")).current_fw_version == "1.0"
