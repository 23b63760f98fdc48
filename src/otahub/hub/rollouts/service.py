"""The rollout API: create, start, pause, resume, cancel, retry failed devices, read.

These change the rollout's rows and wake the engine; the engine makes every
decision that follows (which device starts when, stages, the brake).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.rollouts.counts import effective_state, stage_counts
from otahub.hub.rollouts.spec import RolloutSpec
from otahub.hub.rollouts.targets import Targets, busy_devices, snapshot
from otahub.hub.rollouts.trail import record
from otahub.hub.rollouts.views import (
    ACTIVE_STATES,
    DEVICE_STATES,
    RolloutDeviceView,
    RolloutEventView,
    RolloutView,
)
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.updates import UpdateService
from otahub.hub.store.database import Database
from otahub.hub.store.models import (
    TERMINAL_STATES,
    FirmwarePackage,
    Rollout,
    RolloutDevice,
    RolloutEvent,
    Update,
    utcnow,
)

CANCEL_SLICE = 100  # updates canceled between yields to the event loop
MAX_LISTED_DEVICES = 20  # devices named in a refusal
SETTLE_SLICE = 500  # device rows brought in step with their updates at a time


class RolloutService:
    def __init__(
        self,
        db: Database,
        updates: UpdateService,
        targets: Targets,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.updates = updates
        self.targets = targets
        self.clock = clock
        self.changed = asyncio.Event()  # the engine waits on it

    # -- queries ----------------------------------------------------------------

    async def get(self, name: str) -> RolloutView:
        async with self.db.session() as s:
            row = await _named(s, name)
            return RolloutView.of(row, await stage_counts(s, row))

    async def list(self) -> builtins.list[RolloutView]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(Rollout).order_by(Rollout.id.desc()))).all()
            return [RolloutView.of(row, await stage_counts(s, row)) for row in rows]

    async def active_counts(self) -> dict[str, dict[str, int]]:
        """Devices per state of every rollout that still has work (for the metrics)."""
        async with self.db.session() as s:
            rows = (await s.scalars(select(Rollout).where(Rollout.state.in_(ACTIVE_STATES)))).all()
            counts: dict[str, dict[str, int]] = {}
            for row in rows:
                total = dict.fromkeys(DEVICE_STATES, 0)
                for stage in await stage_counts(s, row):
                    for state, n in stage.counts.items():
                        total[state] = total.get(state, 0) + n
                counts[row.name] = total
            return counts

    async def events(self, name: str, *, limit: int = 1000) -> builtins.list[RolloutEventView]:
        """The audit trail, oldest first (the newest ``limit``)."""
        if not 1 <= limit <= 10000:
            raise Invalid("limit must be between 1 and 10000")
        async with self.db.session() as s:
            row = await _named(s, name)
            found = (
                await s.scalars(
                    select(RolloutEvent)
                    .where(RolloutEvent.rollout_id == row.id)
                    .order_by(RolloutEvent.id.desc())
                    .limit(limit)
                )
            ).all()
            return [RolloutEventView.of(e) for e in reversed(found)]

    async def devices(
        self, name: str, *, state: str | None = None, limit: int = 1000, after: int = -1
    ) -> builtins.list[RolloutDeviceView]:
        """The rollout's devices in their order (``after``: a position, to page on)."""
        if state is not None and state not in DEVICE_STATES:
            raise Invalid(f"unknown state {state!r} (known: {', '.join(DEVICE_STATES)})")
        if not 1 <= limit <= 10000:
            raise Invalid("limit must be between 1 and 10000")
        async with self.db.session() as s:
            row = await _named(s, name)
            shown = effective_state()
            query = (
                select(RolloutDevice, shown)
                .outerjoin(Update, Update.id == RolloutDevice.update_id)
                .where(RolloutDevice.rollout_id == row.id, RolloutDevice.position > after)
                .order_by(RolloutDevice.position)
                .limit(limit)
            )
            if state is not None:  # before the limit: a page holds ``limit`` such devices
                query = query.where(shown == state)
            return [RolloutDeviceView.of(rd, seen) for rd, seen in (await s.execute(query)).all()]

    # -- changes ----------------------------------------------------------------

    async def create(self, spec: RolloutSpec, *, supersede: bool = False) -> RolloutView:
        """A new rollout in state ``created``; 409 naming the devices another one holds."""
        spec = spec.checked()
        superseded: dict[int, str] = {}
        async with self.db.session() as s:
            if await s.scalar(select(Rollout.id).where(Rollout.name == spec.name)) is not None:
                raise Conflict(f"rollout {spec.name!r} already exists")
            package = await s.scalar(
                select(FirmwarePackage).where(
                    FirmwarePackage.title == spec.title, FirmwarePackage.version == spec.version
                )
            )
            if package is None:
                raise NotFound(f"no firmware package {spec.title!r} version {spec.version!r}")
            found = await self.targets.resolve(group=spec.group, filter=spec.filter)
            busy = await busy_devices(
                s, self.targets, package.kind, {d.id for d in found}, besides=None
            )
            if busy and not supersede:
                held = sorted((d.name, busy[d.id]) for d in found if d.id in busy)
                names = [device for device, _ in held]
                listed = ", ".join(f"{d} ({r})" for d, r in held[:MAX_LISTED_DEVICES])
                more = len(names) - MAX_LISTED_DEVICES
                raise Conflict(
                    f"{len(names)} device(s) are already in an active {package.kind} rollout: "
                    f"{listed}{f' and {more} more' if more > 0 else ''}; "
                    "use supersede to take them over",
                    devices=names,
                    rollouts=sorted(set(busy.values())),
                )
            superseded = {d.id: busy[d.id] for d in found if d.id in busy}
            now = utcnow()
            row = Rollout(
                name=spec.name,
                title=package.title,
                version=package.version,
                package_id=package.id,
                kind=package.kind,
                group_name=spec.group,
                filter_expr=spec.filter,
                stages=[str(stage) for stage in spec.stages],
                success_threshold=spec.success_threshold,
                error_threshold=spec.error_threshold,
                min_finished=spec.min_finished,
                max_concurrent=spec.max_concurrent,
                rate_per_s=spec.rate_per_s,
                ramp=spec.ramp,
                window_cron=spec.window_cron,
                window_duration_s=spec.window_duration_s,
                timezone=spec.timezone,
                start_at=spec.start_at,
                retries=spec.retries,
                update_timeout_s=spec.update_timeout_s,
                dynamic=spec.dynamic,
                mode=spec.mode,
                seed=spec.seed,
                state="created",
                stage=0,
                rate_factor=1.0,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise Conflict(f"rollout {spec.name!r} already exists") from None
            record(
                s,
                row,
                "created",
                f"{package.title} {package.version} for "
                + (f"group {spec.group}" if spec.group else f"filter {spec.filter!r}")
                + f", stages {','.join(row.stages)}",
                targets_now=len(found),
            )
            await s.commit()
        if superseded:
            await self._supersede(spec.name, superseded)
        return await self.get(spec.name)

    async def _supersede(self, name: str, taken: dict[int, str]) -> None:
        """Take devices out of the older rollouts; their running updates are canceled."""
        to_cancel: builtins.list[int] = []
        async with self.db.session() as s:
            for older_name in sorted(set(taken.values())):
                older = await _named(s, older_name)
                ids = [d for d, owner in taken.items() if owner == older_name]
                rows = (
                    await s.scalars(
                        select(RolloutDevice).where(
                            RolloutDevice.rollout_id == older.id,
                            RolloutDevice.device_id.in_(ids),
                            RolloutDevice.state.in_(("waiting", "started", "failed")),
                        )
                    )
                ).all()
                for rd in rows:
                    if rd.state == "started" and rd.update_id is not None:
                        to_cancel.append(rd.update_id)
                    rd.state = "canceled"
                    rd.reason = f"superseded by rollout {name}"
                    rd.finished_at = rd.finished_at or utcnow()
                record(
                    s,
                    older,
                    "superseded",
                    f"{len(ids)} device(s) taken over by rollout {name}",
                    devices=len(ids),
                )
            await s.commit()
        await self._cancel_updates(to_cancel, f"superseded by rollout {name}", f"rollout:{name}")

    async def start(self, name: str) -> RolloutView:
        """Resolve the targets and run, or wait for ``start_at``."""
        async with self.db.session() as s:
            row = await _named(s, name, for_update=True)
            if row.state != "created":
                raise Conflict(f"rollout {name!r} is {row.state}; only a created one starts")
            now = self.clock()
            row.updated_at = utcnow()
            if row.start_at is not None and row.start_at > now:
                row.state = "scheduled"
                record(s, row, "scheduled", f"starts at {row.start_at.isoformat()}")
            else:
                await begin(s, self.targets, row)
            await s.commit()
        self.changed.set()
        return await self.get(name)

    async def pause(self, name: str, reason: str | None = None) -> RolloutView:
        async with self.db.session() as s:
            row = await _named(s, name, for_update=True)
            if row.state not in ("running", "scheduled"):
                raise Conflict(f"rollout {name!r} is {row.state}; only a running one pauses")
            row.state = "paused"
            row.pause_reason = reason or "paused by the operator"
            row.updated_at = utcnow()
            record(s, row, "paused", row.pause_reason)
            await s.commit()
        self.changed.set()
        return await self.get(name)

    async def resume(self, name: str) -> RolloutView:
        async with self.db.session() as s:
            row = await _named(s, name, for_update=True)
            if row.state != "paused":
                raise Conflict(f"rollout {name!r} is {row.state}; only a paused one resumes")
            _resume(s, row, "resumed by the operator; the brake counts from now")
            await s.commit()
        self.changed.set()
        return await self.get(name)

    async def retry_failed(self, name: str) -> RolloutView:
        """Start the failed devices again (each up to ``retries`` times); resumes the rollout."""
        async with self.db.session() as s:
            row = await _named(s, name, for_update=True)
            if row.state not in ("running", "paused", "finished"):
                raise Conflict(
                    f"rollout {name!r} is {row.state}; it has no failed devices to retry"
                )
            await settle_all(s, row)
            failed = (
                await s.scalars(
                    select(RolloutDevice).where(
                        RolloutDevice.rollout_id == row.id, RolloutDevice.state == "failed"
                    )
                )
            ).all()
            retried = [rd for rd in failed if rd.attempts <= row.retries]
            exhausted = [rd.device_name for rd in failed if rd.attempts > row.retries]
            if not retried:
                raise Conflict(
                    f"rollout {name!r} has no failed device with retries left "
                    f"({len(exhausted)} failed device(s) used their {row.retries} retries)",
                    devices=sorted(exhausted)[:MAX_LISTED_DEVICES],
                )
            for rd in retried:
                rd.state = "waiting"
                rd.reason = None
                rd.update_id = None
                rd.finished_at = None
            record(
                s,
                row,
                "retry",
                f"{len(retried)} failed device(s) start again"
                + (f"; {len(exhausted)} used all their retries" if exhausted else ""),
                retried=len(retried),
                exhausted=len(exhausted),
            )
            if row.state != "running":
                _resume(s, row, "resumed by retry-failed; the brake counts from now")
            else:
                row.brake_since = utcnow()
            row.finished_at = None
            await s.commit()
        self.changed.set()
        return await self.get(name)

    async def cancel(self, name: str) -> RolloutView:
        """Start nothing more and cancel every unfinished update, as ``update cancel`` does."""
        async with self.db.session() as s:
            row = await _named(s, name, for_update=True)
            if row.state not in ACTIVE_STATES:
                raise Conflict(f"rollout {name!r} is already {row.state}")
            row.state = "canceled"
            row.finished_at = row.updated_at = utcnow()
            await s.execute(
                update(RolloutDevice)
                .where(RolloutDevice.rollout_id == row.id, RolloutDevice.state == "waiting")
                .values(state="canceled", reason="rollout canceled", finished_at=utcnow())
            )
            started = (
                await s.scalars(
                    select(RolloutDevice.update_id).where(
                        RolloutDevice.rollout_id == row.id,
                        RolloutDevice.state == "started",
                        RolloutDevice.update_id.is_not(None),
                    )
                )
            ).all()
            record(s, row, "canceled", "canceled by the operator", running=len(started))
            await s.commit()
        await self._cancel_updates(
            [u for u in started if u is not None], f"rollout {name} canceled", f"rollout:{name}"
        )
        async with self.db.session() as s:
            await settle_all(s, await _named(s, name))
            await s.commit()
        self.changed.set()
        return await self.get(name)

    async def _cancel_updates(
        self, update_ids: builtins.list[int], reason: str, source: str
    ) -> None:
        for n, update_id in enumerate(update_ids, 1):
            with contextlib.suppress(Conflict, NotFound):  # it ended meanwhile
                await self.updates.cancel(update_id, reason=reason, source=source)
            if n % CANCEL_SLICE == 0:
                await asyncio.sleep(0)


async def begin(s: AsyncSession, targets: Targets, row: Rollout) -> None:
    """Take the snapshot of the targets and run (the start, now or at ``start_at``)."""
    await snapshot(s, targets, row)
    row.state = "running"
    row.started_at = row.updated_at = utcnow()
    row.stage = 0
    record(
        s, row, "stage_started", f"stage 1 of {len(row.stages)} ({row.stages[0]}) starts", stage=1
    )


def _resume(s: AsyncSession, row: Rollout, message: str) -> None:
    row.state = "running"
    row.pause_reason = None
    row.brake_since = row.updated_at = utcnow()
    record(s, row, "resumed", message)


async def settle(s: AsyncSession, row: Rollout, limit: int = SETTLE_SLICE) -> int:
    """Record how the updates of up to ``limit`` started devices ended; returns how many."""
    pairs = (
        await s.execute(
            select(RolloutDevice, Update)
            .join(Update, Update.id == RolloutDevice.update_id)
            .where(
                RolloutDevice.rollout_id == row.id,
                RolloutDevice.state == "started",
                Update.state.in_(TERMINAL_STATES),
            )
            .limit(limit)
        )
    ).all()
    for rd, upd in pairs:
        rd.state = upd.state
        rd.finished_at = upd.finished_at
        rd.reason = upd.reason
    return len(pairs)


async def settle_all(s: AsyncSession, row: Rollout) -> None:
    while await settle(s, row) == SETTLE_SLICE:
        await s.flush()
        await asyncio.sleep(0)


async def _named(s: AsyncSession, name: str, *, for_update: bool = False) -> Rollout:
    query = select(Rollout).where(Rollout.name == name)
    if for_update:
        query = query.with_for_update()
    row = await s.scalar(query)
    if row is None:
        raise NotFound(f"rollout {name!r} does not exist")
    return row
