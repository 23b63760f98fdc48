"""Operator actions on rollouts: create, overlap refusal, cancel, retry-failed, the trail."""

from __future__ import annotations

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.updates import UpdateRequest
from tests.hub.rollouts.conftest import finish, make_fleet, rows, settle, spec, started


async def test_overlapping_rollouts_are_refused_naming_the_devices(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 3)
    await make_fleet(core, 2, prefix="other", site="paris")
    await core.rollouts.create(spec("berlin"))
    await core.rollouts.start("berlin")
    with pytest.raises(Conflict) as refused:
        await core.rollouts.create(spec("everyone", filter="dialect=thin-edge"))
    assert "3 device(s)" in refused.value.detail
    assert "dev-000 (berlin)" in refused.value.detail
    assert refused.value.extra["devices"] == ["dev-000", "dev-001", "dev-002"]
    assert refused.value.extra["rollouts"] == ["berlin"]
    # One not started yet holds its targets as well.
    await core.rollouts.create(spec("paris", filter="site=paris"))
    with pytest.raises(Conflict, match="other-000 \\(paris\\)"):
        await core.rollouts.create(spec("again", filter="site=paris"))


async def test_supersede_takes_devices_over_and_cancels_their_updates(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 3)
    await core.rollouts.create(spec("old"))
    await core.rollouts.start("old")
    await settle(core)
    running = await started(core, "old")
    assert len(running) == 3
    await core.rollouts.create(spec("new", filter="dialect=thin-edge"), supersede=True)
    for r in running:
        assert r.update_id is not None
        assert (await core.updates.get(r.update_id)).state == "canceled"
    assert {r.state for r in await rows(core, "old")} == {"canceled"}
    assert "superseded" in [e.kind for e in await core.rollouts.events("old")]
    await core.rollouts.start("new")
    await settle(core)
    assert len(await started(core, "new")) == 3


async def test_cancel_cancels_running_updates_and_starts_nothing_more(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 6)
    await core.rollouts.create(spec(max_concurrent=2))
    await core.rollouts.start("r1")
    await settle(core)
    running = await started(core)
    view = await core.rollouts.cancel("r1")
    assert view.state == "canceled"
    assert view.counts["canceled"] == 6
    for r in running:
        assert r.update_id is not None
        update = await core.updates.get(r.update_id)
        assert update.state == "canceled"
        assert update.transitions is not None
        assert update.transitions[-1].source == "rollout:r1"
    await settle(core)
    made = [len(await core.updates.list(device=r.device_name)) for r in await rows(core)]
    assert sum(made) == 2
    with pytest.raises(Conflict, match="already canceled"):
        await core.rollouts.cancel("r1")


async def test_retry_failed_restarts_failed_devices_up_to_the_limit_and_resumes(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec(retries=1, error_threshold=10, min_finished=1))
    await core.rollouts.start("r1")
    await settle(core)
    running = await started(core)
    bad = running[0].device_name
    await finish(core, running, fail={bad})
    await settle(core)
    assert (await core.rollouts.get("r1")).state == "paused"  # the brake: 1 of 4 > 10 %
    view = await core.rollouts.retry_failed("r1")
    assert view.state == "running"
    await settle(core)
    again = await started(core)
    assert [r.device_name for r in again] == [bad]
    assert again[0].attempts == 2
    await finish(core, again, fail={bad})
    await settle(core)
    with pytest.raises(Conflict, match="no failed device with retries left") as refused:
        await core.rollouts.retry_failed("r1")
    assert refused.value.extra["devices"] == [bad]
    assert len(await core.updates.list(device=bad)) == 2
    trail = [e.kind for e in await core.rollouts.events("r1")]
    assert "retry" in trail and "resumed" in trail


async def test_retry_failed_after_the_fault_is_gone_finishes_the_rollout(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 3)
    await core.rollouts.create(spec(retries=2, success_threshold=100, error_threshold=100))
    await core.rollouts.start("r1")
    await settle(core)
    running = await started(core)
    await finish(core, running, fail={running[0].device_name})
    await settle(core)
    assert (await core.rollouts.get("r1")).state == "paused"  # stalled below 100 %
    await core.rollouts.retry_failed("r1")
    await settle(core)
    await finish(core, await started(core))
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "finished"
    assert view.counts["succeeded"] == 3


async def test_a_device_that_cannot_take_the_update_fails_alone(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 3)
    manual = await core.updates.create(UpdateRequest("dev-001", "fw", "2.0"))
    await core.rollouts.create(spec(success_threshold=50, error_threshold=50))
    await core.rollouts.start("r1")
    await settle(core)
    by_name = {r.device_name: r for r in await rows(core)}
    assert by_name["dev-001"].state == "failed"
    assert by_name["dev-001"].reason is not None and "active" in by_name["dev-001"].reason
    assert (await core.updates.get(manual.id)).state == "pending"  # left alone
    assert by_name["dev-000"].state == "started"


async def test_pause_and_resume_by_the_operator(core: HubCore, release: None) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec(max_concurrent=1))
    await core.rollouts.start("r1")
    await settle(core)
    view = await core.rollouts.pause("r1", "waiting for the field team")
    assert view.pause_reason == "waiting for the field team"
    await finish(core, await started(core))
    await settle(core)
    assert await started(core) == []
    await core.rollouts.resume("r1")
    await settle(core)
    assert len(await started(core)) == 1
    with pytest.raises(Conflict):
        await core.rollouts.resume("r1")


async def test_create_refuses_what_cannot_run(core: HubCore, release: None) -> None:
    with pytest.raises(NotFound, match="no firmware package"):
        await core.rollouts.create(spec(version="9.9"))
    with pytest.raises(Invalid, match="either a group or a filter"):
        await core.rollouts.create(spec(group="g", filter="site=berlin"))
    with pytest.raises(NotFound, match="group"):
        await core.rollouts.create(spec(group="nope"))
    with pytest.raises(Invalid, match="cron"):
        await core.rollouts.create(spec(window_cron="every night", window_duration_s=60))
    with pytest.raises(Invalid, match="time zone"):
        await core.rollouts.create(spec(timezone="Mars/Olympus"))
    await core.rollouts.create(spec())
    with pytest.raises(Conflict, match="already exists"):
        await core.rollouts.create(spec())
    await core.rollouts.start("r1")
    with pytest.raises(Conflict, match="only a created one starts"):
        await core.rollouts.start("r1")
    with pytest.raises(NotFound):
        await core.rollouts.get("nope")


async def test_group_targets(core: HubCore, release: None) -> None:
    await make_fleet(core, 4)
    await core.groups.create("pilot", devices=["dev-001", "dev-003"])
    await core.rollouts.create(spec(group="pilot"))
    await core.rollouts.start("r1")
    assert sorted(r.device_name for r in await rows(core)) == ["dev-001", "dev-003"]


async def test_listing_devices_by_state_pages_over_that_state_only(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 6)
    await core.rollouts.create(spec(error_threshold=100))
    await core.rollouts.start("r1")
    await settle(core)
    running = await started(core)
    running.sort(key=lambda r: r.position)
    await finish(core, running, fail={r.device_name for r in running[-2:]})
    failed = await core.rollouts.devices("r1", state="failed", limit=1)
    assert [d.device for d in failed] == [running[-2].device_name]
    rest = await core.rollouts.devices("r1", state="failed", after=failed[0].position)
    assert [d.device for d in rest] == [running[-1].device_name]
    assert len(await core.rollouts.devices("r1", state="succeeded", limit=10)) == 4
