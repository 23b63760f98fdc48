"""Device reports: a change is written at once; only ``last_seen`` waits for a batch."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import NotFound
from otahub.hub.services.events import DeviceReported, Event
from otahub.hub.services.views import ReportedState


async def test_a_report_that_only_moves_last_seen_is_batched_and_not_announced(
    core: HubCore,
) -> None:
    await core.devices.create(DeviceSpec(name="d", dialect="thingsboard", token="t"))
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(record, DeviceReported)
    first = await core.devices.report("d", title="fw", version="1.0", online=True)
    again = await core.devices.report("d", title="fw", version="1.0")
    assert len(seen) == 1
    assert again.current_fw_version == "1.0"
    assert again.last_seen_at is not None and first.last_seen_at is not None
    assert again.last_seen_at >= first.last_seen_at
    stored = await core.devices.get("d")
    assert stored.last_seen_at == first.last_seen_at  # not yet
    await core.devices.flush_seen()
    # stored as reported; the returned view moves in whole seconds
    stored_seen = (await core.devices.get("d")).last_seen_at
    assert stored_seen is not None and stored_seen > first.last_seen_at
    assert stored_seen - again.last_seen_at < timedelta(seconds=1)
    # a new version is written and announced at once
    changed = await core.devices.report("d", title="fw", version="2.0")
    assert len(seen) == 2
    assert (await core.devices.get("d")).current_fw_version == "2.0" == changed.current_fw_version
    offline = await core.devices.report("d", online=False)
    assert not offline.online and not (await core.devices.get("d")).online


async def test_what_another_path_wrote_is_not_hidden_by_the_report_cache(core: HubCore) -> None:
    await core.devices.create(DeviceSpec(name="d", dialect="thingsboard", token="t"))
    await core.devices.report("d", version="1.0", online=True)
    await core.devices.set_labels("d", {"site": "a"})
    await core.devices.set_dialect_state("d", {"seen": 1})
    state = await core.devices.report("d", version="1.0")
    assert state.current_fw_version == "1.0"
    await core.devices.flush_seen()
    stored = await core.devices.get("d")
    assert stored.labels == {"site": "a"} and stored.dialect_state == {"seen": 1}
    # the driver's own state does not stand in the way of the report cache
    assert "d" in core.devices._known
    await core.devices.delete("d")
    await core.devices.create(DeviceSpec(name="d", dialect="thingsboard", token="t"))
    view = await core.devices.report("d", version="1.0", online=True)
    assert (await core.devices.get("d")).current_fw_version == "1.0"
    assert (await core.devices.get("d")).online and view.online


async def test_concurrent_reports_are_written_together_and_each_gets_its_view(
    core: HubCore,
) -> None:
    for i in range(20):
        await core.devices.create(DeviceSpec(name=f"d{i}", dialect="thingsboard", token=f"t{i}"))
    results = await asyncio.gather(
        *(core.devices.report(f"d{i}", version=f"1.{i}", online=True) for i in range(20)),
        core.devices.report("nobody", online=True),
        return_exceptions=True,
    )
    assert isinstance(results[20], NotFound)
    for i in range(20):
        view = results[i]
        assert isinstance(view, ReportedState) and view.current_fw_version == f"1.{i}"
        stored = await core.devices.get(f"d{i}")
        assert stored.online and stored.current_fw_version == f"1.{i}"
        assert stored.last_seen_at == view.last_seen_at


async def test_last_seen_times_a_failed_store_kept_are_stored_by_the_retry(
    core: HubCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await core.devices.create(DeviceSpec(name="d", dialect="thingsboard", token="t"))
    first = await core.devices.report("d", version="1.0", online=True)
    again = await core.devices.report("d", version="1.0")
    assert first.last_seen_at is not None
    store = core.devices._store_seen

    async def broken(pending: dict[str, datetime]) -> None:
        raise OSError("database is locked")

    monkeypatch.setattr(core.devices, "_store_seen", broken)
    with pytest.raises(OSError):
        await core.devices.flush_seen()
    monkeypatch.setattr(core.devices, "_store_seen", store)
    await core.devices.flush_seen()
    stored = (await core.devices.get("d")).last_seen_at
    assert stored is not None and again.last_seen_at is not None
    assert stored > first.last_seen_at
