"""The rollout engine: a loop that drives every running rollout from the database.

Each tick (at most a second apart, sooner when an update of ours ends or an
operator acts) it takes each rollout it may drive (see ``lease``), records
how started updates ended, and decides (``decisions``): pause on the brake,
complete a stage and widen to the next, finish, note the maintenance window
opening or closing, and start the next devices within the rate and
concurrency limits.
Nothing it needs lives only in memory (the token bucket aside, which starts
full after a restart: at most one second's worth of starts), so a hub killed
at any moment goes on where it was: a device's row is marked started in the
same transaction that creates its update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.rollouts import lease
from otahub.hub.rollouts.decisions import decide, note_once
from otahub.hub.rollouts.rate import TokenBucket
from otahub.hub.rollouts.service import (
    SETTLE_SLICE,
    RolloutService,
    begin,
    settle,
)
from otahub.hub.rollouts.targets import Targets, add_joiners, is_current
from otahub.hub.rollouts.trail import record
from otahub.hub.services.errors import Conflict, NotFound, ServiceError
from otahub.hub.services.events import (
    DeviceCreated,
    DeviceReported,
    Event,
    EventBus,
    UpdateTransitioned,
)
from otahub.hub.services.updates import BatchOutcome, UpdateRequest, UpdateService
from otahub.hub.services.views import DeviceView
from otahub.hub.store.database import Database
from otahub.hub.store.models import (
    TERMINAL_STATES,
    Device,
    Rollout,
    RolloutDevice,
    Update,
    utcnow,
)

log = logging.getLogger("otahub.hub.rollouts")

TICK_S = 1.0
BATCH = 100  # devices started per transaction: short enough not to hold up the hub
MEMBERSHIP_S = 30.0  # a dynamic rollout looks for new targets at least this often


@dataclass
class _Drive:
    """What one look at a rollout asks of the loop."""

    again: bool = False  # more to do at once (a full batch was started)


class RolloutEngine:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        updates: UpdateService,
        service: RolloutService,
        targets: Targets,
        *,
        owner: str | None = None,
        lease_s: float = lease.LEASE_S,
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.updates = updates
        self.service = service
        self.targets = targets
        self.owner = owner or lease.instance_id()
        self.lease_s = lease_s
        self.batch = batch
        self._buckets: dict[int, TokenBucket] = {}
        self._members_checked: dict[int, float] = {}
        self._members_changed = False
        self._driven: set[int] = set()  # rollouts this instance took a lease on
        self._unsubscribe = [
            bus.subscribe(self._on_update, UpdateTransitioned),
            bus.subscribe(self._on_device, DeviceCreated, DeviceReported),
        ]

    def wake(self) -> None:
        self.service.changed.set()

    async def _on_update(self, event: Event) -> None:
        if isinstance(event, UpdateTransitioned) and event.transition.to_state in TERMINAL_STATES:
            self.wake()

    async def _on_device(self, event: Event) -> None:
        self._members_changed = True

    async def run(self, tick_s: float = TICK_S) -> None:
        """Drive rollouts until cancelled; a failing tick is logged and retried."""
        try:
            while True:
                self.service.changed.clear()
                again = False
                try:
                    again = await self.tick()
                except Exception:
                    log.exception("rollout engine tick failed; retrying")
                if again:
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.service.changed.wait(), tick_s)
        finally:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            if self._driven:  # a clean stop: others take over at once
                with contextlib.suppress(Exception):
                    async with self.db.session() as s:
                        await lease.release(s, self.owner)
                        await s.commit()

    async def tick(self) -> bool:
        """One look at every rollout with work; True when one has more to do at once."""
        async with self.db.session() as s:
            ids = (
                await s.scalars(
                    select(Rollout.id).where(
                        or_(
                            Rollout.state.in_(("scheduled", "running", "paused")),
                            # a cancel a crash interrupted (by the rollout's index)
                            and_(
                                Rollout.state == "canceled",
                                select(RolloutDevice.id)
                                .where(
                                    RolloutDevice.rollout_id == Rollout.id,
                                    RolloutDevice.state == "started",
                                )
                                .exists(),
                            ),
                        )
                    )
                )
            ).all()
        members_changed, self._members_changed = self._members_changed, False
        again = False
        for rollout_id in ids:
            drive = await self._drive(rollout_id, members_changed)
            again = again or drive.again
            await asyncio.sleep(0)
        return again

    async def _drive(self, rollout_id: int, members_changed: bool) -> _Drive:
        async with self.db.session() as s:
            before = await s.scalar(select(Rollout.owner).where(Rollout.id == rollout_id))
            if not await lease.take(s, rollout_id, self.owner, utcnow(), self.lease_s):
                await s.rollback()
                self._driven.discard(rollout_id)
                return _Drive()
            await s.commit()
            self._driven.add(rollout_id)
            # Locked (PostgreSQL) while deciding, so an operator's pause or cancel
            # on any instance is never overwritten by a decision made before it.
            row = await s.scalar(
                select(Rollout)
                .where(Rollout.id == rollout_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            if row is None:
                return _Drive()
            if before not in (None, self.owner):
                record(
                    s,
                    row,
                    "lease_taken",
                    f"hub {self.owner} drives the rollout now: the lease of {before} ran out",
                )
            behind = await settle(s, row) == SETTLE_SLICE
            if row.state == "canceled":
                await self._finish_cancel(s, row)
            elif row.state == "scheduled" and (
                row.start_at is None or row.start_at <= self.service.clock()
            ):
                try:
                    await begin(s, self.targets, row)
                except ServiceError as exc:  # e.g. its group was deleted meanwhile
                    await s.rollback()
                    await self._unresolvable(rollout_id, exc)
                    return _Drive()
            if row.state == "running":
                if row.dynamic and self._membership_due(row.id, members_changed):
                    try:
                        await add_joiners(s, self.targets, row)
                    except ServiceError as exc:
                        await note_once(
                            s,
                            row,
                            "targets_unresolved",
                            f"no new targets: {exc.detail}; the rollout goes on with its devices",
                        )
                if await decide(s, row, self.service.clock()):
                    await s.commit()
                    drive = await self._start_next(row.id)
                    return _Drive(again=drive.again or behind)
            await s.commit()
        return _Drive(again=behind)

    async def _unresolvable(self, rollout_id: int, error: ServiceError) -> None:
        """A scheduled rollout whose targets cannot be resolved pauses, saying why."""
        async with self.db.session() as s:
            row = await s.get(Rollout, rollout_id)
            if row is None or row.state != "scheduled":
                return
            row.state = "paused"
            row.pause_reason = f"its targets cannot be resolved: {error.detail}"
            row.updated_at = utcnow()
            record(s, row, "stalled", row.pause_reason)
            await s.commit()

    def _membership_due(self, rollout_id: int, changed: bool) -> bool:
        now = time.monotonic()
        if changed or now - self._members_checked.get(rollout_id, 0.0) >= MEMBERSHIP_S:
            self._members_checked[rollout_id] = now
            return True
        return False

    async def _finish_cancel(self, s: AsyncSession, row: Rollout) -> None:
        """A cancel that a crash interrupted: cancel the updates still running."""
        running = (
            await s.scalars(
                select(Update.id)
                .join(RolloutDevice, RolloutDevice.update_id == Update.id)
                .where(
                    RolloutDevice.rollout_id == row.id,
                    RolloutDevice.state == "started",
                    Update.state.not_in(TERMINAL_STATES),
                )
            )
        ).all()
        await s.commit()
        for update_id in running:
            with contextlib.suppress(Conflict, NotFound):
                await self.updates.cancel(
                    update_id, reason=f"rollout {row.name} canceled", source=f"rollout:{row.name}"
                )

    async def _start_next(self, rollout_id: int) -> _Drive:
        """Start the next waiting devices of the started stages, one batch, within the limits."""
        async with self.db.session() as s:
            row = await s.get(Rollout, rollout_id)
            if row is None or row.state != "running":
                return _Drive()
            budget = self.batch
            if row.max_concurrent is not None:
                running = await s.scalar(
                    select(func.count()).where(
                        RolloutDevice.rollout_id == row.id, RolloutDevice.state == "started"
                    )
                )
                budget = min(budget, row.max_concurrent - int(running or 0))
            bucket = None
            if row.rate_per_s is not None:
                bucket = self._bucket(row)
                budget = min(budget, bucket.available())
            if budget <= 0:
                return _Drive()
            picked = (
                await s.execute(
                    select(RolloutDevice, Device)
                    .outerjoin(Device, Device.id == RolloutDevice.device_id)
                    .where(
                        RolloutDevice.rollout_id == row.id,
                        RolloutDevice.state == "waiting",
                        RolloutDevice.stage <= row.stage,
                    )
                    .order_by(RolloutDevice.position)
                    .limit(budget)
                )
            ).all()
            now = utcnow()
            to_start: list[RolloutDevice] = []
            for rd, device in picked:
                device_or_none: Device | None = device  # outer join: the device may be gone
                if device_or_none is None:
                    rd.state, rd.reason, rd.finished_at = "canceled", "device deleted", now
                elif is_current(DeviceView.of(device_or_none), row):
                    rd.state, rd.reason, rd.finished_at = (
                        "skipped",
                        f"already on {row.version}",
                        now,
                    )
                else:
                    to_start.append(rd)
            await s.commit()
            requests = [
                UpdateRequest(
                    device=rd.device_name,
                    title=row.title,
                    version=row.version,
                    timeout_s=row.update_timeout_s,
                    mode=row.mode,
                )
                for rd in to_start
            ]
            ids = [rd.id for rd in to_start]
            name, owner, lease_s = row.name, self.owner, self.lease_s

        async def mark(ts: AsyncSession, outcome: BatchOutcome) -> None:
            await lease.fence(ts, rollout_id, owner, utcnow(), lease_s)
            stamp = utcnow()
            rows = {
                r.id: r
                for r in (
                    await ts.scalars(select(RolloutDevice).where(RolloutDevice.id.in_(ids)))
                ).all()
            }
            for index, view in outcome.created:
                rd = rows[ids[index]]
                if rd.state != "waiting":
                    raise lease.LeaseLost(f"device {rd.device_name} was started meanwhile")
                rd.state, rd.update_id, rd.started_at = "started", view.id, stamp
                rd.attempts += 1
            for index, error in outcome.refused:
                rd = rows[ids[index]]
                rd.state, rd.reason, rd.finished_at = "failed", error.detail, stamp
                rd.attempts += 1
            if outcome.created or outcome.refused:
                record(
                    ts,
                    row,
                    "devices_started",
                    f"{len(outcome.created)} device(s) started"
                    + (f", {len(outcome.refused)} refused" if outcome.refused else ""),
                    started=len(outcome.created),
                    refused=len(outcome.refused),
                    refusals=[e.detail for _, e in outcome.refused][:5],
                )

        if not requests:
            return _Drive(again=bool(picked))
        try:
            outcome = await self.updates.create_many(
                requests, source=f"rollout:{name}", in_transaction=mark
            )
        except lease.LeaseLost as exc:
            log.info("rollout %s: no starts: %s", name, exc)
            return _Drive()
        except Conflict as exc:
            log.warning("rollout %s: batch not started, retrying: %s", name, exc)
            return _Drive()
        if bucket is not None:
            bucket.take(len(outcome.created) + len(outcome.refused))
        return _Drive(again=len(picked) == budget)

    def _bucket(self, row: Rollout) -> TokenBucket:
        assert row.rate_per_s is not None
        per_s = row.rate_per_s * row.rate_factor
        bucket = self._buckets.get(row.id)
        if bucket is None:
            bucket = self._buckets[row.id] = TokenBucket(per_s)
        elif bucket.per_s != per_s:
            bucket.set_rate(per_s)
        return bucket
