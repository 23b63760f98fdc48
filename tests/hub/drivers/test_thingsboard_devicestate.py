"""The ThingsBoard driver's per-device state: telemetry stored in batches, edits in between."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from otahub.hub.core import HubCore
from otahub.hub.drivers.thingsboard.devicestate import SHARED, TELEMETRY, DeviceStates, section
from otahub.hub.services.devices import DeviceSpec


async def _devices(core: HubCore, n: int) -> list[str]:
    names = [f"tb{i}" for i in range(n)]
    for name in names:
        await core.devices.create(DeviceSpec(name=name, dialect="thingsboard", token=f"t-{name}"))
    return names


async def test_telemetry_is_read_at_once_and_stored_in_one_batch(core: HubCore) -> None:
    names = await _devices(core, 3)
    states = DeviceStates(core.devices, flush_s=0.1)
    for n, name in enumerate(names):
        states.note_telemetry(name, {"fw_state": "DOWNLOADING", "n": n})
        states.note_telemetry(name, {"fw_state": "DOWNLOADED"})
    assert (await states.get("tb1"))[TELEMETRY] == {"fw_state": "DOWNLOADED", "n": 1}
    assert TELEMETRY not in (await core.devices.get("tb1")).dialect_state  # not yet
    for _ in range(50):
        await asyncio.sleep(0.05)
        if TELEMETRY in (await core.devices.get("tb2")).dialect_state:
            break
    for n, name in enumerate(names):
        stored = (await core.devices.get(name)).dialect_state
        assert stored[TELEMETRY] == {"fw_state": "DOWNLOADED", "n": n}


async def test_an_edit_keeps_pending_telemetry_and_a_flush_keeps_the_edit(core: HubCore) -> None:
    (name,) = await _devices(core, 1)
    states = DeviceStates(core.devices, flush_s=3600)
    states.note_telemetry(name, {"fw_state": "QUEUED"})
    async with states.edit(name) as state:
        section(state, SHARED)["fw_title"] = "fw"
        states.note_telemetry(name, {"fw_state": "DOWNLOADING"})  # arrives during the edit
    stored = (await core.devices.get(name)).dialect_state
    assert stored[SHARED] == {"fw_title": "fw"}
    assert stored[TELEMETRY] == {"fw_state": "QUEUED"}
    await states.close()  # the driver stops: what is pending is stored, the edit stays
    stored = (await core.devices.get(name)).dialect_state
    assert stored[SHARED] == {"fw_title": "fw"}
    assert stored[TELEMETRY] == {"fw_state": "DOWNLOADING"}


async def test_telemetry_of_a_deleted_device_is_dropped(core: HubCore) -> None:
    names = await _devices(core, 2)
    states = DeviceStates(core.devices, flush_s=3600)
    for name in names:
        states.note_telemetry(name, {"fw_state": "UPDATED"})
    await core.devices.delete("tb0")
    await states.flush()  # the device is gone: skipped, the other stored
    assert (await core.devices.get("tb1")).dialect_state[TELEMETRY] == {"fw_state": "UPDATED"}


async def test_telemetry_already_stored_is_not_stored_again(
    core: HubCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (name,) = await _devices(core, 1)
    states = DeviceStates(core.devices, flush_s=3600)
    merges: list[dict[str, Any]] = []
    merge = core.devices.merge_dialect_section

    async def counted(part: str, values: dict[str, dict[str, Any]]) -> None:
        merges.append(values)
        await merge(part, values)

    monkeypatch.setattr(core.devices, "merge_dialect_section", counted)
    states.note_telemetry(name, {"fw_state": "DOWNLOADING", "current_fw_version": "1.0"})
    await states.flush()
    for _ in range(5):  # a device repeats its state while it downloads
        states.note_telemetry(name, {"fw_state": "DOWNLOADING"})
        await states.flush()
    assert len(merges) == 1
    states.note_telemetry(name, {"fw_state": "DOWNLOADED"})  # a change is stored
    await states.flush()
    assert merges[-1] == {name: {"fw_state": "DOWNLOADED"}}
    # another hub may have stored other values while the device was away from this one
    await core.devices.merge_dialect_section(TELEMETRY, {name: {"fw_state": "FAILED"}})
    states.connected(name)
    states.note_telemetry(name, {"fw_state": "DOWNLOADED"})
    await states.flush()
    assert (await core.devices.get(name)).dialect_state[TELEMETRY]["fw_state"] == "DOWNLOADED"
    # so may an edit of this hub: it counts as stored too
    async with states.edit(name) as state:
        section(state, TELEMETRY)["fw_state"] = "UPDATING"
    before = len(merges)
    states.note_telemetry(name, {"fw_state": "UPDATING"})
    await states.flush()
    assert len(merges) == before
