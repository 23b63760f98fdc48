"""The rollout engine's rules, driven as drivers and operators would, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import update

from otahub.hub.core import HubCore
from otahub.hub.rollouts.engine import RolloutEngine
from otahub.hub.rollouts.spec import parse_rate
from otahub.hub.store.models import Device, Rollout, utcnow
from tests.hub.rollouts.conftest import (
    Clock,
    at,
    finish,
    make_fleet,
    rows,
    settle,
    spec,
    started,
)


async def kinds(core: HubCore, name: str = "r1") -> list[str]:
    return [e.kind for e in await core.rollouts.events(name)]


async def test_stages_are_cumulative_and_the_next_starts_once_the_threshold_is_met(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 20)
    await core.rollouts.create(spec(stages="4,50%", success_threshold=50))
    view = await core.rollouts.start("r1")
    assert [s.reach for s in view.stage_counts] == [4, 10, 20]
    assert [s.size for s in view.stage_counts] == [4, 6, 10]
    await settle(core)
    first = await started(core)
    assert len(first) == 4
    await finish(core, first[:1])
    await settle(core)
    assert len(await started(core)) == 3  # 1 of 4 < 50 %: stage 2 waits
    await finish(core, first[1:2])
    await settle(core)
    # 2 of 4 met 50 %: stage 2's six start; stage 1's last two keep going
    running = await started(core)
    assert len(running) == 2 + 6
    assert {r.stage for r in running} == {0, 1}
    await finish(core, running)
    await settle(core)
    last = await started(core)
    assert len(last) == 10 and {r.stage for r in last} == {2}
    await finish(core, last)
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "finished"
    assert view.counts["succeeded"] == 20
    assert {r.state for r in await rows(core)} == {"succeeded"}  # the rows themselves
    trail = await kinds(core)
    assert trail.count("stage_started") == 3
    assert trail.count("stage_completed") == 2
    assert trail[-1] == "finished"


async def test_order_is_a_seeded_shuffle_the_same_for_the_same_seed(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 12)
    await core.rollouts.create(spec("a", seed=1))
    await core.rollouts.start("a")
    order_a = [r.device_name for r in await rows(core, "a")]
    assert order_a != sorted(order_a)
    await core.rollouts.cancel("a")
    await core.rollouts.create(spec("b", seed=1))
    await core.rollouts.start("b")
    assert [r.device_name for r in await rows(core, "b")] == order_a


async def test_brake_pauses_after_min_finished_and_lets_running_updates_finish(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 20)
    await core.rollouts.create(
        spec(stages="10", error_threshold=20, min_finished=5, success_threshold=50)
    )
    await core.rollouts.start("r1")
    await settle(core)
    running = await started(core)
    assert len(running) == 10
    names = [r.device_name for r in running]
    # Three of four failed: over 20 %, but only four finished (< min-finished 5).
    await finish(core, running[:4], fail=set(names[:3]))
    await settle(core)
    assert (await core.rollouts.get("r1")).state == "running"
    await finish(core, running[4:5])
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "paused"
    assert view.pause_reason is not None and "3 of 5" in view.pause_reason
    brake = [e for e in await core.rollouts.events("r1") if e.kind == "brake"]
    assert brake[0].numbers == {"stage": 1, "finished": 5, "failed": 3, "error_threshold": 20.0}
    # Running updates go on; nothing new starts.
    assert len(await started(core)) == 5
    await finish(core, running[5:])
    await settle(core)
    assert len(await started(core)) == 0
    assert (await core.rollouts.get("r1")).state == "paused"
    # Resume: the brake counts from now; stage 1 met 50 % (7 of 10), stage 2 starts.
    await core.rollouts.resume("r1")
    await settle(core)
    assert (await core.rollouts.get("r1")).state == "running"
    assert {r.stage for r in await started(core)} == {1}
    assert "resumed" in await kinds(core)


async def test_timed_out_updates_count_as_failed_for_the_brake(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec(error_threshold=10, min_finished=2))
    await core.rollouts.start("r1")
    await settle(core)
    assert len(await started(core)) == 4
    await core.updates.expire_overdue(utcnow() + timedelta(days=2))
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "paused"
    assert view.counts["failed"] == 4
    assert "4 of 4" in (view.pause_reason or "")


async def test_stage_ending_below_its_threshold_pauses_instead_of_hanging(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec(stages="2", success_threshold=100, error_threshold=100))
    await core.rollouts.start("r1")
    await settle(core)
    first = await started(core)
    await finish(core, first, fail={first[0].device_name})
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "paused"
    assert "below its success threshold" in (view.pause_reason or "")
    assert (await kinds(core))[-1] == "stalled"


async def test_devices_on_the_version_are_skipped_and_count_as_succeeded(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 6)
    for name in ("dev-000", "dev-001", "dev-002"):
        await core.devices.report(name, title="fw", version="2.0")
    await core.rollouts.create(spec())
    view = await core.rollouts.start("r1")
    assert view.counts["skipped"] == 3
    await settle(core)
    running = await started(core)
    assert sorted(r.device_name for r in running) == ["dev-003", "dev-004", "dev-005"]
    for name in ("dev-000", "dev-001", "dev-002"):
        assert await core.updates.list(device=name) == []
    await finish(core, running)
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "finished"
    assert view.stage_counts[0].succeeded == 6


async def test_a_device_updated_meanwhile_is_skipped_when_its_turn_comes(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec(max_concurrent=1))
    await core.rollouts.start("r1")
    await settle(core)
    waiting = [r.device_name for r in await rows(core) if r.state == "waiting"]
    await core.devices.report(waiting[0], title="fw", version="2.0")
    await finish(core, await started(core))
    await settle(core)
    assert {r.device_name: r.state for r in await rows(core)}[waiting[0]] == "skipped"
    assert await core.updates.list(device=waiting[0]) == []


async def test_max_concurrent_is_never_exceeded(core: HubCore, release: None) -> None:
    await make_fleet(core, 10)
    await core.rollouts.create(spec(max_concurrent=3))
    await core.rollouts.start("r1")
    most = 0
    for _ in range(20):
        await settle(core)
        running = await started(core)
        most = max(most, len(running))
        if not running:
            break
        await finish(core, running[:1])
    assert most == 3
    assert (await core.rollouts.get("r1")).state == "finished"


async def test_rate_measured_from_start_times_stays_within_the_token_bucket(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 30)
    await core.rollouts.create(spec(rate_per_s=parse_rate("600/min")))
    await core.rollouts.start("r1")
    engine = asyncio.create_task(core.rollout_engine.run(tick_s=0.05))
    try:
        for _ in range(600):
            if not [r for r in await rows(core) if r.state == "waiting"]:
                break
            await asyncio.sleep(0.05)
    finally:
        engine.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await engine
    times = sorted(r.started_at for r in await rows(core) if r.started_at is not None)
    assert len(times) == 30
    # At most one second's burst (10) plus 10 a second over any stretch of time.
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            span = (times[j] - first).total_seconds()
            assert j - i + 1 <= 10 + 10 * span + 1, (i, j, span)


async def test_ramp_multiplies_the_rate_after_a_stage_met_its_threshold(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 6)
    await core.rollouts.create(spec(stages="2", rate_per_s=parse_rate("60/min"), ramp=2.0))
    await core.rollouts.start("r1")
    await settle(core)
    first = await started(core)
    assert len(first) == 1  # a one-token bucket at 1/s
    for _ in range(100):
        await asyncio.sleep(0.05)
        await settle(core)
        if len(await started(core)) == 2:
            break
    await finish(core, await started(core))
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.stage == 1
    assert view.rate_factor == 2.0
    stage_2 = [e for e in await core.rollouts.events("r1") if e.kind == "stage_started"][-1]
    assert "rate now 120/min" in stage_2.message


async def test_nothing_starts_outside_the_window_and_running_updates_continue(
    core: HubCore, release: None
) -> None:
    clock = Clock(at("2026-12-02T12:00:00"))
    core.rollouts.clock = clock
    await make_fleet(core, 6)
    await core.rollouts.create(
        spec(
            window_cron="0 2 * * *",
            window_duration_s=7200,
            timezone="Europe/Berlin",
            max_concurrent=2,
        )
    )
    await core.rollouts.start("r1")
    await settle(core)
    assert await started(core) == []
    assert (await kinds(core))[-1] == "window_closed"
    clock.now = at("2026-12-03T01:30:00")  # 02:30 in Berlin
    await settle(core)
    running = await started(core)
    assert len(running) == 2
    assert "window_opened" in await kinds(core)
    clock.now = at("2026-12-03T03:00:00")  # 04:00 in Berlin: closed again
    await settle(core)
    await finish(core, running)
    await settle(core)
    assert await started(core) == []
    assert [r.state for r in await rows(core)].count("succeeded") == 2
    assert (await kinds(core))[-1] == "window_closed"


async def test_start_at_delays_the_start_and_the_target_snapshot(
    core: HubCore, release: None
) -> None:
    clock = Clock(at("2026-12-02T12:00:00"))
    core.rollouts.clock = clock
    await make_fleet(core, 3)
    await core.rollouts.create(spec(start_at=at("2026-12-02T13:00:00")))
    view = await core.rollouts.start("r1")
    assert view.state == "scheduled"
    await make_fleet(core, 2, prefix="late")
    await settle(core)
    assert (await core.rollouts.get("r1")).counts["waiting"] == 0
    clock.now = at("2026-12-02T13:00:00")
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "running"
    assert view.counts["started"] == 5  # targets resolved at the start, with the late ones


async def test_dynamic_rollouts_take_devices_that_join_into_the_last_stage(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec("dyn", stages="2", dynamic=True))
    await core.rollouts.start("dyn")
    await settle(core)
    await make_fleet(core, 2, prefix="new")
    await settle(core)
    joined = [r for r in await rows(core, "dyn") if r.device_name.startswith("new-")]
    assert {r.stage for r in joined} == {1}
    assert "joined" in await kinds(core, "dyn")
    # A device relabelled into the targets joins too.
    await make_fleet(core, 1, prefix="moved", site="paris")
    async with core.db.session() as s, s.begin():
        await s.execute(
            update(Device).where(Device.name == "moved-000").values(labels={"site": "berlin"})
        )
    await core.devices.report("moved-000", online=True)
    await settle(core)
    assert "moved-000" in [r.device_name for r in await rows(core, "dyn")]
    # Every target done: a dynamic rollout keeps running for devices still to join.
    for _ in range(5):
        await finish(core, await started(core, "dyn"))
        await settle(core)
    view = await core.rollouts.get("dyn")
    assert (view.state, view.counts["succeeded"]) == ("running", 7)
    assert (await kinds(core, "dyn"))[-1] == "targets_done"
    await make_fleet(core, 1, prefix="later")
    await settle(core)
    assert [r.device_name for r in await started(core, "dyn")] == ["later-000"]


async def test_a_static_rollout_keeps_its_snapshot(core: HubCore, release: None) -> None:
    await make_fleet(core, 3)
    await core.rollouts.create(spec())
    await core.rollouts.start("r1")
    await settle(core)
    await make_fleet(core, 2, prefix="new")
    await settle(core)
    assert len(await rows(core)) == 3


async def test_counts_equal_the_updates_states_before_the_engine_looks(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 5)
    await core.rollouts.create(spec())
    await core.rollouts.start("r1")
    await settle(core)
    running = await started(core)
    await finish(core, running[:2], fail={running[0].device_name})
    view = await core.rollouts.get("r1")  # no tick since
    assert (view.counts["started"], view.counts["succeeded"], view.counts["failed"]) == (3, 1, 1)


async def test_a_second_engine_waits_for_the_lease_and_takes_over_when_it_runs_out(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 6)
    await core.rollouts.create(spec(max_concurrent=2))
    await core.rollouts.start("r1")
    first = RolloutEngine(
        core.db, core.bus, core.updates, core.rollouts, core.groups, owner="a", lease_s=60.0
    )
    second = RolloutEngine(
        core.db, core.bus, core.updates, core.rollouts, core.groups, owner="b", lease_s=60.0
    )
    await first.tick()
    assert (await core.rollouts.get("r1")).owner == "a"
    running = await started(core)
    assert len(running) == 2
    await finish(core, running)
    await second.tick()  # a holds the lease: b starts nobody
    assert len(await started(core)) == 0
    assert (await core.rollouts.get("r1")).owner == "a"
    # a "died": its lease runs out (moved to the past rather than waited for, so a
    # slow machine cannot let it run out before b's first tick)
    async with core.db.session() as s, s.begin():
        await s.execute(update(Rollout).values(lease_until=utcnow() - timedelta(seconds=1)))
    await second.tick()
    assert (await core.rollouts.get("r1")).owner == "b"
    for _ in range(10):
        await finish(core, await started(core))
        await second.tick()
    view = await core.rollouts.get("r1")
    assert view.state == "finished"
    for r in await rows(core):
        assert len(await core.updates.list(device=r.device_name)) == 1


async def test_a_deleted_device_leaves_the_rollout_without_holding_its_stage_back(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 4)
    await core.rollouts.create(spec(stages="2"))  # success threshold 100 %
    await core.rollouts.start("r1")
    await settle(core)
    first = await started(core)
    await core.devices.delete(first[0].device_name, force=True)  # cancels its update
    await finish(core, first[1:])
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.stage_counts[0].counts["canceled"] == 1
    assert view.stage == 1  # 1 of the 1 device still in stage 1 succeeded
    assert len(await started(core)) == 2


async def test_a_group_deleted_before_start_at_pauses_the_rollout_saying_why(
    core: HubCore, release: None
) -> None:
    clock = Clock(at("2026-12-02T12:00:00"))
    core.rollouts.clock = clock
    await make_fleet(core, 3)
    await core.groups.create("pilot", devices=["dev-000", "dev-001"])
    await core.rollouts.create(spec(group="pilot", start_at=at("2026-12-02T13:00:00")))
    await core.rollouts.start("r1")
    await core.groups.delete("pilot")
    # Another rollout may take the devices the unstartable one named.
    await core.rollouts.create(spec("other", filter="name=dev-00*"))
    clock.now = at("2026-12-02T13:00:00")
    await settle(core)
    view = await core.rollouts.get("r1")
    assert view.state == "paused"
    assert "cannot be resolved" in (view.pause_reason or "")
    assert "pilot" in (view.pause_reason or "")


async def test_a_dynamic_rollout_whose_group_is_deleted_goes_on_with_its_devices(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 2)
    await core.groups.create("pilot", devices=["dev-000", "dev-001"])
    await core.rollouts.create(spec(group="pilot", dynamic=True))
    await core.rollouts.start("r1")
    await settle(core)
    await core.groups.delete("pilot")
    await make_fleet(core, 1, prefix="new")  # a device event: the engine looks for joiners
    await settle(core)
    await finish(core, await started(core))
    await settle(core)
    view = await core.rollouts.get("r1")
    assert (view.state, view.counts["succeeded"]) == ("running", 2)
    assert [e.kind for e in await core.rollouts.events("r1")].count("targets_unresolved") == 1
