"""A rollout's target devices: resolving them, ordering them, and who is busy elsewhere."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.rollouts.spec import parse_stages, stage_sizes
from otahub.hub.rollouts.trail import record
from otahub.hub.rollouts.views import ACTIVE_STATES
from otahub.hub.services.errors import ServiceError
from otahub.hub.services.views import DeviceView
from otahub.hub.store.models import Rollout, RolloutDevice, utcnow

# Device rows that still hold their device in a rollout (a finished success
# does too: the device got the rollout's release).
HOLDING_STATES = ("waiting", "started", "failed", "succeeded")
INSERT_SLICE = 500


class Targets(Protocol):
    """Where a rollout's devices come from: groups and filters (``GroupService``)."""

    async def resolve(
        self, *, group: str | None = None, filter: str | None = None
    ) -> list[DeviceView]: ...


def is_current(device: DeviceView, rollout: Rollout) -> bool:
    """Whether ``device`` already runs the rollout's release."""
    if rollout.kind == "software":
        title, version = device.current_sw_title, device.current_sw_version
    else:
        title, version = device.current_fw_title, device.current_fw_version
    return version == rollout.version and title in (None, rollout.title)


def shuffled(devices: Iterable[DeviceView], seed: int) -> list[DeviceView]:
    """Ordered by id, then shuffled by ``seed``: the same order on every hub, mixed sites."""
    ordered = sorted(devices, key=lambda d: d.id)
    random.Random(seed).shuffle(ordered)
    return ordered


async def busy_devices(
    s: AsyncSession, targets: Targets, kind: str, device_ids: set[int], *, besides: int | None
) -> dict[int, str]:
    """Of ``device_ids``, those held by another active rollout of ``kind``: id -> its name."""
    others = (
        await s.scalars(
            select(Rollout).where(
                Rollout.kind == kind,
                Rollout.state.in_(ACTIVE_STATES),
                *([] if besides is None else [Rollout.id != besides]),
            )
        )
    ).all()
    busy: dict[int, str] = {}
    for other in others:
        if other.state in ("created", "scheduled"):
            # Not resolved yet: its targets as they would be now (none, if its
            # group is gone: it will not start).
            try:
                found = await targets.resolve(group=other.group_name, filter=other.filter_expr)
            except ServiceError:
                found = []
            held = {d.id for d in found}
        else:
            held = {
                device_id
                for device_id in (
                    await s.scalars(
                        select(RolloutDevice.device_id).where(
                            RolloutDevice.rollout_id == other.id,
                            RolloutDevice.state.in_(HOLDING_STATES),
                            RolloutDevice.device_id.is_not(None),
                        )
                    )
                ).all()
                if device_id is not None
            }
        for device_id in held & device_ids:
            busy.setdefault(device_id, other.name)
    return busy


async def snapshot(s: AsyncSession, targets: Targets, rollout: Rollout) -> None:
    """Resolve ``rollout``'s targets once and give each device its place and stage."""
    found = await targets.resolve(group=rollout.group_name, filter=rollout.filter_expr)
    busy = await busy_devices(s, targets, rollout.kind, {d.id for d in found}, besides=rollout.id)
    if busy:
        record(
            s,
            rollout,
            "excluded",
            f"{len(busy)} target(s) already in another active rollout are left out",
            devices=sorted(d.name for d in found if d.id in busy)[:50],
        )
    order = shuffled((d for d in found if d.id not in busy), rollout.seed)
    sizes = stage_sizes(parse_stages(list(rollout.stages)), len(order))
    now = utcnow()
    rows = []
    stage = 0
    skipped = 0
    for position, device in enumerate(order):
        while position >= sizes[stage]:
            stage += 1
        current = is_current(device, rollout)
        skipped += current
        rows.append(_row(rollout, device, position, stage, current, now))
    for i in range(0, len(rows), INSERT_SLICE):
        await s.execute(insert(RolloutDevice), rows[i : i + INSERT_SLICE])
    record(
        s,
        rollout,
        "targets",
        f"{len(order)} target device(s) resolved, {skipped} already on {rollout.version}",
        targets=len(order),
        skipped=skipped,
        stage_reach=sizes,
    )


async def add_joiners(s: AsyncSession, targets: Targets, rollout: Rollout) -> int:
    """A dynamic rollout takes devices that joined its targets since: into the last stage."""
    found = await targets.resolve(group=rollout.group_name, filter=rollout.filter_expr)
    known = set(
        (
            await s.scalars(
                select(RolloutDevice.device_id).where(RolloutDevice.rollout_id == rollout.id)
            )
        ).all()
    )
    new = [d for d in found if d.id not in known]
    if not new:
        return 0
    busy = await busy_devices(s, targets, rollout.kind, {d.id for d in new}, besides=rollout.id)
    new = [d for d in new if d.id not in busy]
    if not new:
        return 0
    last = len(parse_stages(list(rollout.stages))) - 1
    start = (
        await s.scalar(
            select(func.max(RolloutDevice.position)).where(RolloutDevice.rollout_id == rollout.id)
        )
        or 0
    ) + 1
    now = utcnow()
    rows = [
        _row(rollout, device, start + i, last, is_current(device, rollout), now)
        for i, device in enumerate(shuffled(new, rollout.seed))
    ]
    await s.execute(insert(RolloutDevice), rows)
    record(
        s,
        rollout,
        "joined",
        f"{len(rows)} device(s) joined the targets; they go into the last stage",
        devices=[r["device_name"] for r in rows][:50],
        count=len(rows),
    )
    return len(rows)


def _row(
    rollout: Rollout, device: DeviceView, position: int, stage: int, current: bool, now: object
) -> dict[str, object]:
    return {
        "rollout_id": rollout.id,
        "device_id": device.id,
        "device_name": device.name,
        "position": position,
        "stage": stage,
        "state": "skipped" if current else "waiting",
        "attempts": 0,
        "reason": f"already on {rollout.version}" if current else None,
        "finished_at": now if current else None,
    }
