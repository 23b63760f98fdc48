"""Snapshots of rollouts for the API: the settings, per-stage counts and the audit trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from otahub.hub.store.models import Rollout, RolloutDevice, RolloutEvent

# A rollout device's states; "skipped" devices were already on the version.
DEVICE_STATES = ("waiting", "started", "succeeded", "failed", "skipped", "canceled")
# Rollout states in which the engine (or a cancel still under way) has work.
ACTIVE_STATES = ("created", "scheduled", "running", "paused")


@dataclass(frozen=True, slots=True)
class StageView:
    index: int
    label: str  # as given: "5", "10%"
    reach: int  # cumulative targets up to and with this stage
    counts: dict[str, int]  # devices of this stage by state
    # the brake's numbers: devices of the stage that finished (since the last
    # resume or retry) and how many of them failed
    brake_finished: int = 0
    brake_failed: int = 0

    @property
    def size(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> int:
        """Succeeded, counting devices already on the version."""
        return self.counts["succeeded"] + self.counts["skipped"]

    @property
    def judged(self) -> int:
        """The devices the success threshold is a share of: canceled ones (deleted,
        superseded, canceled by hand) are out of the rollout."""
        return self.size - self.counts["canceled"]


@dataclass(frozen=True, slots=True)
class RolloutView:
    id: int
    name: str
    title: str
    version: str
    kind: str
    group: str | None
    filter: str | None
    stages: list[str]
    success_threshold: float
    error_threshold: float
    min_finished: int
    max_concurrent: int | None
    rate_per_s: float | None
    ramp: float | None
    window_cron: str | None
    window_duration_s: float | None
    timezone: str | None
    start_at: datetime | None
    retries: int
    update_timeout_s: float | None
    dynamic: bool
    mode: str
    seed: int
    state: str
    pause_reason: str | None
    stage: int
    rate_factor: float
    window_open: bool | None
    owner: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    stage_counts: list[StageView] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        total = dict.fromkeys(
            ("waiting", "started", "succeeded", "failed", "skipped", "canceled"), 0
        )
        for stage in self.stage_counts:
            for state, n in stage.counts.items():
                total[state] += n
        return total

    @classmethod
    def of(cls, row: Rollout, stages: list[StageView] | None = None) -> RolloutView:
        return cls(
            id=row.id,
            name=row.name,
            title=row.title,
            version=row.version,
            kind=row.kind,
            group=row.group_name,
            filter=row.filter_expr,
            stages=list(row.stages),
            success_threshold=row.success_threshold,
            error_threshold=row.error_threshold,
            min_finished=row.min_finished,
            max_concurrent=row.max_concurrent,
            rate_per_s=row.rate_per_s,
            ramp=row.ramp,
            window_cron=row.window_cron,
            window_duration_s=row.window_duration_s,
            timezone=row.timezone,
            start_at=row.start_at,
            retries=row.retries,
            update_timeout_s=row.update_timeout_s,
            dynamic=row.dynamic,
            mode=row.mode,
            seed=row.seed,
            state=row.state,
            pause_reason=row.pause_reason,
            stage=row.stage,
            rate_factor=row.rate_factor,
            window_open=row.window_open,
            owner=row.owner,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            stage_counts=stages or [],
        )


@dataclass(frozen=True, slots=True)
class RolloutEventView:
    at: datetime
    kind: str
    message: str
    numbers: dict[str, Any]

    @classmethod
    def of(cls, row: RolloutEvent) -> RolloutEventView:
        return cls(at=row.at, kind=row.kind, message=row.message, numbers=dict(row.numbers or {}))


@dataclass(frozen=True, slots=True)
class RolloutDeviceView:
    device: str
    position: int
    stage: int
    state: str
    update_id: int | None
    attempts: int
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: RolloutDevice, state: str | None = None) -> RolloutDeviceView:
        return cls(
            device=row.device_name,
            position=row.position,
            stage=row.stage,
            state=state or row.state,
            update_id=row.update_id,
            attempts=row.attempts,
            reason=row.reason,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )
