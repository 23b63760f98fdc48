"""What the engine decides for a running rollout, from its per-stage counts.

In order: the brake (pause when too many of a stage's finished devices
failed), completed stages (widen to the next, ramp the rate), the end
(finished, or stalled below the threshold), then the maintenance window.
Each decision changes the rollout's row and is recorded in its trail, in the
caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.rollouts.counts import stage_counts
from otahub.hub.rollouts.service import settle_all
from otahub.hub.rollouts.trail import record
from otahub.hub.rollouts.views import StageView
from otahub.hub.rollouts.window import Window
from otahub.hub.store.models import Rollout, RolloutEvent, utcnow


async def decide(s: AsyncSession, row: Rollout, now: datetime) -> bool:
    """Brake, stages, finish and window for a running rollout; True: start devices."""
    stages = await stage_counts(s, row)
    last = len(stages) - 1
    for stage in stages[: row.stage + 1]:
        if _brake_fires(stage, row):
            _pause(
                s,
                row,
                "brake",
                f"brake: {stage.brake_failed} of {stage.brake_finished} finished devices "
                f"of stage {stage.index + 1} failed "
                f"({100.0 * stage.brake_failed / stage.brake_finished:.1f}% > "
                f"{row.error_threshold:g}%)",
                stage=stage.index + 1,
                finished=stage.brake_finished,
                failed=stage.brake_failed,
                error_threshold=row.error_threshold,
            )
            return False
    while row.stage < last and _met(stages[row.stage], row):
        done = stages[row.stage]
        record(
            s,
            row,
            "stage_completed",
            f"stage {row.stage + 1} met its success threshold: "
            f"{done.succeeded} of {done.judged} succeeded",
            stage=row.stage + 1,
            succeeded=done.succeeded,
            size=done.judged,
        )
        row.stage += 1
        if row.ramp is not None and row.rate_per_s is not None:
            row.rate_factor *= row.ramp
        record(
            s,
            row,
            "stage_started",
            f"stage {row.stage + 1} of {len(stages)} ({stages[row.stage].label}) starts"
            + (
                f"; rate now {row.rate_per_s * row.rate_factor * 60:g}/min"
                if row.ramp is not None and row.rate_per_s is not None
                else ""
            ),
            stage=row.stage + 1,
            rate_factor=row.rate_factor,
        )
    open_rows = sum(st.counts["waiting"] + st.counts["started"] for st in stages)
    current = stages[row.stage]
    unfinished_here = sum(
        st.counts["waiting"] + st.counts["started"] for st in stages[: row.stage + 1]
    )
    if row.stage == last and open_rows == 0 and _met(current, row):
        if row.dynamic:
            # Devices may still join: it runs until canceled (as hawkBit's do).
            await note_once(
                s,
                row,
                "targets_done",
                "every target so far is done; devices that join get the release",
                **_sum(stages),
            )
            return False
        await settle_all(s, row)  # the rows say how each update ended, for good
        row.state = "finished"
        row.finished_at = row.updated_at = utcnow()
        total = _sum(stages)
        record(
            s,
            row,
            "finished",
            f"all stages done: {total['succeeded']} succeeded, {total['skipped']} already "
            f"on the version, {total['failed']} failed, {total['canceled']} canceled",
            **total,
        )
        return False
    if unfinished_here == 0 and not _met(current, row):
        _pause(
            s,
            row,
            "stalled",
            f"stage {row.stage + 1} ended below its success threshold: "
            f"{current.succeeded} of {current.judged} succeeded "
            f"(< {row.success_threshold:g}%)",
            stage=row.stage + 1,
            succeeded=current.succeeded,
            size=current.judged,
        )
        return False
    if row.window_cron is not None and row.window_duration_s is not None:
        window = Window(row.window_cron, row.window_duration_s, row.timezone or "UTC")
        is_open = window.is_open(now)
        if is_open != row.window_open:
            row.window_open = is_open
            if is_open:
                record(s, row, "window_opened", "maintenance window opened; starts resume")
            else:
                record(
                    s,
                    row,
                    "window_closed",
                    "outside the maintenance window: nothing new starts until "
                    + window.next_open(now).isoformat(),
                )
        if not is_open:
            return False
    return any(st.counts["waiting"] for st in stages[: row.stage + 1])


def _met(stage: StageView, row: Rollout) -> bool:
    """A stage meets its threshold when enough of its devices succeeded (empty ones do)."""
    judged = stage.judged
    return judged == 0 or 100.0 * stage.succeeded / judged >= row.success_threshold


def _brake_fires(stage: StageView, row: Rollout) -> bool:
    return (
        stage.brake_finished >= row.min_finished
        and 100.0 * stage.brake_failed / stage.brake_finished > row.error_threshold
    )


def _pause(s: AsyncSession, row: Rollout, kind: str, reason: str, **numbers: object) -> None:
    row.state = "paused"
    row.pause_reason = reason
    row.updated_at = utcnow()
    record(s, row, kind, reason + "; the rollout pauses, running updates go on", **numbers)


async def note_once(s: AsyncSession, row: Rollout, kind: str, message: str, **numbers: int) -> None:
    """Record ``kind`` unless it is already the newest event (a state, not a change)."""
    newest = await s.scalar(
        select(RolloutEvent.kind)
        .where(RolloutEvent.rollout_id == row.id)
        .order_by(RolloutEvent.id.desc())
        .limit(1)
    )
    if newest != kind:
        record(s, row, kind, message, **numbers)


def _sum(stages: list[StageView]) -> dict[str, int]:
    total: dict[str, int] = {}
    for stage in stages:
        for state, n in stage.counts.items():
            total[state] = total.get(state, 0) + n
    return total
