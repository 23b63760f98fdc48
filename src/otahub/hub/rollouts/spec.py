"""What an operator asks a rollout to do, checked and parsed into numbers.

The text forms are the CLI's (``--stages 5,10%,100%``, ``--rate 1000/min``,
``--ramp 2x``, ``--window-duration 2h``); the REST API takes the same strings.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from otahub.hub.rollouts.window import check_cron, check_timezone
from otahub.hub.services.errors import Invalid
from otahub.hub.services.updates import UPDATE_MODES, check_timeout

MAX_NAME = 255
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_RETRIES = 100


@dataclass(frozen=True, slots=True)
class Stage:
    """A cumulative stage size: ``count`` devices, or ``percent`` of the targets."""

    count: int | None = None
    percent: float | None = None

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"

    def reach(self, total: int) -> int:
        """How many of ``total`` targets this stage and the ones before it cover."""
        if self.count is not None:
            return min(total, self.count)
        assert self.percent is not None
        return min(total, int(total * self.percent / 100.0))


def parse_stages(text: str | list[str]) -> list[Stage]:
    """``5,10%,50%,100%`` into stages; a last stage short of 100 % gets one appended."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    stages: list[Stage] = []
    for raw in parts:
        item = raw.strip()
        try:
            if item.endswith("%"):
                percent = float(item[:-1])
                if not 0 < percent <= 100:
                    raise ValueError
                stages.append(Stage(percent=percent))
            else:
                count = int(item)
                if count < 1:
                    raise ValueError
                stages.append(Stage(count=count))
        except ValueError:
            raise Invalid(
                f"stage {item!r} is neither a device count (>= 1) nor a percentage (0-100%)"
            ) from None
    if not stages:
        raise Invalid("--stages needs at least one stage")
    percents = [s.percent for s in stages if s.percent is not None]
    counts = [s.count for s in stages if s.count is not None]
    if percents != sorted(percents) or counts != sorted(counts):
        raise Invalid("stage sizes are cumulative and must grow: " + ",".join(map(str, stages)))
    if stages[-1].percent != 100:
        stages.append(Stage(percent=100.0))  # every target belongs to some stage
    return stages


def stage_sizes(stages: list[Stage], total: int) -> list[int]:
    """The cumulative number of targets each stage reaches (never shrinking)."""
    sizes: list[int] = []
    reached = 0
    for stage in stages:
        reached = max(reached, stage.reach(total))
        sizes.append(reached)
    return sizes


def parse_rate(text: str) -> float:
    """``1000/min`` (or ``/s``, ``/h``) into starts per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*", text)
    if match is None or match.group(2) not in _PER or float(match.group(1)) <= 0:
        raise Invalid(f"rate {text!r} is not like 1000/min, 20/s or 5000/h")
    return float(match.group(1)) / _PER[match.group(2)]


def parse_ramp(text: str) -> float:
    """``2x`` (or ``2``): the factor the rate grows by after each successful stage."""
    try:
        factor = float(text.strip().removesuffix("x"))
    except ValueError:
        factor = 0.0
    if not 1.0 <= factor <= 100.0:
        raise Invalid(f"ramp {text!r} is not a factor between 1x and 100x, like 2x")
    return factor


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``30s``, ``1d`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise Invalid(f"duration {text!r} is not like 30s, 90m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    """A rollout as asked for; ``checked()`` refuses what cannot run."""

    name: str
    title: str
    version: str
    group: str | None = None
    filter: str | None = None
    stages: list[Stage] = field(default_factory=lambda: [Stage(percent=100.0)])
    success_threshold: float = 95.0
    error_threshold: float = 5.0
    min_finished: int = 10
    max_concurrent: int | None = None
    rate_per_s: float | None = None
    ramp: float | None = None
    window_cron: str | None = None
    window_duration_s: float | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    retries: int = 0
    update_timeout_s: float | None = None
    dynamic: bool = False
    mode: str = "push"
    seed: int | None = None

    def checked(self) -> RolloutSpec:
        if not self.name or len(self.name) > MAX_NAME or not _NAME.match(self.name):
            raise Invalid(
                f"rollout name {self.name!r} must be 1-{MAX_NAME} letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        if (self.group is None) == (self.filter is None):
            raise Invalid("a rollout targets either a group or a filter (exactly one)")
        for label, value in (
            ("success threshold", self.success_threshold),
            ("error threshold", self.error_threshold),
        ):
            if not 0 <= value <= 100:
                raise Invalid(f"{label} must be a percentage between 0 and 100")
        if self.min_finished < 1:
            raise Invalid("min-finished must be at least 1")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise Invalid("max-concurrent must be at least 1")
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise Invalid("rate must be positive")
        if self.ramp is not None and not 1.0 <= self.ramp <= 100.0:
            raise Invalid("ramp must be a factor between 1 and 100")
        if not 0 <= self.retries <= MAX_RETRIES:
            raise Invalid(f"retries must be between 0 and {MAX_RETRIES}")
        if self.update_timeout_s is not None:
            check_timeout(self.update_timeout_s)
        if self.mode not in UPDATE_MODES:
            raise Invalid(f"unknown update mode {self.mode!r} (known: {', '.join(UPDATE_MODES)})")
        if (self.window_cron is None) != (self.window_duration_s is None):
            raise Invalid("a maintenance window needs both a cron expression and a duration")
        if self.window_cron is not None:
            check_cron(self.window_cron)
        if self.window_duration_s is not None and self.window_duration_s <= 0:
            raise Invalid("window duration must be positive")
        check_timezone(self.timezone)
        if self.start_at is not None and self.start_at.tzinfo is None:
            raise Invalid("start-at needs a time zone (e.g. 2026-12-24T08:00:00+01:00)")
        stages = parse_stages([str(s) for s in self.stages])
        seed = self.seed if self.seed is not None else secrets.randbits(31)
        return RolloutSpec(
            **{
                **{f: getattr(self, f) for f in self.__dataclass_fields__},
                "stages": stages,
                "seed": seed,
            }
        )
