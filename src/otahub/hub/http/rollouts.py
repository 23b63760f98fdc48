"""``/api/v1/rollouts``: releases for many devices in stages, and every action on them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from otahub.hub.http.deps import Core
from otahub.hub.rollouts.spec import (
    RolloutSpec,
    parse_duration,
    parse_ramp,
    parse_rate,
    parse_stages,
)
from otahub.hub.rollouts.views import (
    RolloutDeviceView,
    RolloutEventView,
    RolloutView,
    StageView,
)

router = APIRouter(prefix="/rollouts", tags=["rollouts"])

Name = Annotated[str, Path(max_length=255)]


class RolloutCreate(BaseModel):
    name: str = Field(max_length=255)
    title: str = Field(description="package title")
    version: str = Field(description="package version")
    group: str | None = Field(None, description="target group (or give filter)")
    filter: str | None = Field(None, description="target filter, like site=berlin,dialect=enos")
    stages: str = Field("100%", description="cumulative stage sizes: 5,10%,50%,100%")
    success_threshold: float = Field(95.0, ge=0, le=100, description="percent")
    error_threshold: float = Field(5.0, ge=0, le=100, description="percent")
    min_finished: int = Field(10, ge=1, description="finished devices before the brake judges")
    max_concurrent: int | None = Field(None, ge=1)
    rate: str | None = Field(None, description="starts per time: 1000/min, 20/s")
    ramp: str | None = Field(None, description="rate factor after each successful stage: 2x")
    window: str | None = Field(None, description="cron expression opening the window")
    window_duration: str | None = Field(None, description="how long it stays open: 2h")
    timezone: str = Field("UTC", description="the window's time zone: Europe/Berlin")
    start_at: datetime | None = Field(None, description="not before this time (with a zone)")
    retries: int = Field(0, ge=0, le=100, description="restarts per failed device")
    update_timeout: str | None = Field(None, description="per update: 1h (hub default if unset)")
    dynamic: bool = Field(False, description="devices joining the targets later get it too")
    mode: Literal["push", "on-request"] = "push"
    seed: int | None = Field(None, ge=0, lt=2**31, description="the order's shuffle; random")
    supersede: bool = Field(False, description="take devices over from older rollouts")

    def spec(self) -> RolloutSpec:
        return RolloutSpec(
            name=self.name,
            title=self.title,
            version=self.version,
            group=self.group,
            filter=self.filter,
            stages=parse_stages(self.stages),
            success_threshold=self.success_threshold,
            error_threshold=self.error_threshold,
            min_finished=self.min_finished,
            max_concurrent=self.max_concurrent,
            rate_per_s=None if self.rate is None else parse_rate(self.rate),
            ramp=None if self.ramp is None else parse_ramp(self.ramp),
            window_cron=self.window,
            window_duration_s=None
            if self.window_duration is None
            else parse_duration(self.window_duration),
            timezone=self.timezone,
            start_at=self.start_at,
            retries=self.retries,
            update_timeout_s=None
            if self.update_timeout is None
            else parse_duration(self.update_timeout),
            dynamic=self.dynamic,
            mode=self.mode,
            seed=self.seed,
        )


class StageOut(BaseModel):
    index: int = Field(description="1 for the first stage")
    size_given: str = Field(description="as asked: 5 or 10%")
    reach: int = Field(description="targets up to and with this stage")
    size: int = Field(description="devices of this stage")
    counts: dict[str, int]
    succeeded: int = Field(description="succeeded plus already on the version")
    brake_finished: int = Field(description="finished devices the brake counts")
    brake_failed: int = Field(description="of those, failed (timed out included)")

    @classmethod
    def of(cls, view: StageView) -> StageOut:
        return cls(
            index=view.index + 1,
            size_given=view.label,
            reach=view.reach,
            size=view.size,
            counts=view.counts,
            succeeded=view.succeeded,
            brake_finished=view.brake_finished,
            brake_failed=view.brake_failed,
        )


class RolloutOut(BaseModel):
    name: str
    title: str
    version: str
    kind: str
    group: str | None
    filter: str | None
    state: Literal["created", "scheduled", "running", "paused", "finished", "canceled"]
    pause_reason: str | None
    stage: int = Field(description="the stage started last (1-based)")
    stages: list[StageOut]
    counts: dict[str, int]
    settings: dict[str, Any]
    owner: str | None = Field(description="the hub instance driving it")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, view: RolloutView) -> RolloutOut:
        return cls(
            name=view.name,
            title=view.title,
            version=view.version,
            kind=view.kind,
            group=view.group,
            filter=view.filter,
            state=view.state,  # type: ignore[arg-type]
            pause_reason=view.pause_reason,
            stage=view.stage + 1,
            stages=[StageOut.of(s) for s in view.stage_counts],
            counts=view.counts,
            settings={
                "stages": view.stages,
                "success_threshold": view.success_threshold,
                "error_threshold": view.error_threshold,
                "min_finished": view.min_finished,
                "max_concurrent": view.max_concurrent,
                "rate_per_min": None if view.rate_per_s is None else view.rate_per_s * 60,
                "ramp": view.ramp,
                "rate_factor": view.rate_factor,
                "window": view.window_cron,
                "window_duration_s": view.window_duration_s,
                "timezone": view.timezone,
                "window_open": view.window_open,
                "start_at": None if view.start_at is None else view.start_at.isoformat(),
                "retries": view.retries,
                "update_timeout_s": view.update_timeout_s,
                "dynamic": view.dynamic,
                "mode": view.mode,
                "seed": view.seed,
            },
            owner=view.owner,
            created_at=view.created_at,
            started_at=view.started_at,
            finished_at=view.finished_at,
        )


class RolloutEventOut(BaseModel):
    at: datetime
    kind: str
    message: str
    numbers: dict[str, Any]

    @classmethod
    def of(cls, view: RolloutEventView) -> RolloutEventOut:
        return cls(at=view.at, kind=view.kind, message=view.message, numbers=view.numbers)


class RolloutDeviceOut(BaseModel):
    device: str
    position: int = Field(description="place in the rollout's order")
    stage: int = Field(description="1-based")
    state: Literal["waiting", "started", "succeeded", "failed", "skipped", "canceled"]
    update_id: int | None
    attempts: int
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, view: RolloutDeviceView) -> RolloutDeviceOut:
        return cls(
            device=view.device,
            position=view.position,
            stage=view.stage + 1,
            state=view.state,  # type: ignore[arg-type]
            update_id=view.update_id,
            attempts=view.attempts,
            reason=view.reason,
            started_at=view.started_at,
            finished_at=view.finished_at,
        )


class PauseRequest(BaseModel):
    reason: str | None = Field(None, max_length=2000)


@router.post("", status_code=201)
async def create_rollout(body: RolloutCreate, core: Core) -> RolloutOut:
    """Create a rollout (it starts with .../start); 409 naming devices another one holds."""
    return RolloutOut.of(await core.rollouts.create(body.spec(), supersede=body.supersede))


@router.get("")
async def list_rollouts(core: Core) -> list[RolloutOut]:
    """Newest first."""
    return [RolloutOut.of(v) for v in await core.rollouts.list()]


@router.get("/{name}")
async def get_rollout(name: Name, core: Core) -> RolloutOut:
    """One rollout with per-stage counts and the brake's numbers."""
    return RolloutOut.of(await core.rollouts.get(name))


@router.get("/{name}/events")
async def rollout_events(
    name: Name, core: Core, limit: Annotated[int, Query(ge=1, le=10000)] = 1000
) -> list[RolloutEventOut]:
    """The audit trail, oldest first: every decision of the engine and every action."""
    return [RolloutEventOut.of(e) for e in await core.rollouts.events(name, limit=limit)]


@router.get("/{name}/devices")
async def rollout_devices(
    name: Name,
    core: Core,
    state: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    after: Annotated[int, Query(ge=-1, description="a position: the page after it")] = -1,
) -> list[RolloutDeviceOut]:
    """The rollout's devices in their order, with their stage, state and update."""
    found = await core.rollouts.devices(name, state=state, limit=limit, after=after)
    return [RolloutDeviceOut.of(d) for d in found]


@router.post("/{name}/start")
async def start_rollout(name: Name, core: Core) -> RolloutOut:
    """Resolve the targets and run (or wait for start-at)."""
    return RolloutOut.of(await core.rollouts.start(name))


@router.post("/{name}/pause")
async def pause_rollout(name: Name, core: Core, body: PauseRequest | None = None) -> RolloutOut:
    """Start nothing new; running updates go on."""
    return RolloutOut.of(await core.rollouts.pause(name, body.reason if body else None))


@router.post("/{name}/resume")
async def resume_rollout(name: Name, core: Core) -> RolloutOut:
    """Go on after a pause (the brake counts from now)."""
    return RolloutOut.of(await core.rollouts.resume(name))


@router.post("/{name}/cancel")
async def cancel_rollout(name: Name, core: Core) -> RolloutOut:
    """Cancel every unfinished update of the rollout and start nothing more."""
    return RolloutOut.of(await core.rollouts.cancel(name))


@router.post("/{name}/retry-failed")
async def retry_failed(name: Name, core: Core) -> RolloutOut:
    """Start the failed devices again (up to the retries each); resumes a paused rollout."""
    return RolloutOut.of(await core.rollouts.retry_failed(name))
