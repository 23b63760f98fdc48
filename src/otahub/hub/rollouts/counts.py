"""Per-stage counts of a rollout's devices, read against the updates' own states.

A device row says ``started`` until the engine records how its update ended;
the counts read the update's state for such rows, so they always equal the
updates' states, also between an update's end and the engine's next look.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.rollouts.spec import parse_stages, stage_sizes
from otahub.hub.rollouts.views import DEVICE_STATES, StageView
from otahub.hub.store.models import TERMINAL_STATES, Rollout, RolloutDevice, Update


def effective_state() -> ColumnElement[str]:
    """A device row's state as the counts see it: a started device whose update
    ended is in that update's end state (select it with an outer join of Update)."""
    return case(
        (
            and_(RolloutDevice.state == "started", Update.state.in_(TERMINAL_STATES)),
            Update.state,
        ),
        else_=RolloutDevice.state,
    )


async def stage_counts(s: AsyncSession, rollout: Rollout) -> list[StageView]:
    effective = effective_state().label("effective")
    finished_at = func.coalesce(RolloutDevice.finished_at, Update.finished_at)
    since: datetime | None = rollout.brake_since
    recent = (literal(1) if since is None else case((finished_at >= since, 1), else_=0)).label(
        "recent"
    )
    rows = (
        select(RolloutDevice.stage.label("stage"), effective, recent)
        .select_from(RolloutDevice)
        .outerjoin(Update, Update.id == RolloutDevice.update_id)
        .where(RolloutDevice.rollout_id == rollout.id)
        .subquery()
    )
    query = select(rows.c.stage, rows.c.effective, func.count(), func.sum(rows.c.recent)).group_by(
        rows.c.stage, rows.c.effective
    )
    stages = parse_stages(list(rollout.stages))
    counts = [dict.fromkeys(DEVICE_STATES, 0) for _ in stages]
    brake = [[0, 0] for _ in stages]  # finished, failed
    for stage, state, n, n_recent in (await s.execute(query)).all():
        if not 0 <= stage < len(stages):
            continue
        counts[stage][state] = counts[stage].get(state, 0) + n
        if state in ("succeeded", "failed"):
            brake[stage][0] += int(n_recent or 0)
            if state == "failed":
                brake[stage][1] += int(n_recent or 0)
    total = sum(sum(c.values()) for c in counts)
    reach = stage_sizes(stages, total)
    return [
        StageView(
            index=i,
            label=str(stage),
            reach=reach[i],
            counts=counts[i],
            brake_finished=brake[i][0],
            brake_failed=brake[i][1],
        )
        for i, stage in enumerate(stages)
    ]
