"""Maintenance windows: a cron expression says when one opens, a duration how long it stays.

``0 2 * * *`` with ``2h`` in Europe/Berlin is open 02:00-04:00 Berlin time every
night, daylight saving included (the expression is read in the zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter

from otahub.hub.services.errors import Invalid


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)") from None


def check_cron(expression: str) -> None:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise Invalid(
            f"window {expression!r} is not a cron expression of five fields "
            "(minute hour day-of-month month day-of-week)"
        )


@dataclass(frozen=True, slots=True)
class Window:
    cron: str
    duration_s: float
    timezone: str = "UTC"

    def opened_at(self, now: datetime) -> datetime | None:
        """When the window that is open at ``now`` opened; None when it is closed."""
        local = now.astimezone(check_timezone(self.timezone))
        try:
            # A fire time exactly at ``now`` counts: step one second ahead first.
            start = croniter(self.cron, local + timedelta(seconds=1)).get_prev(datetime)
        except CroniterBadCronError:
            raise Invalid(f"window {self.cron!r} is not a cron expression") from None
        assert isinstance(start, datetime)
        if local < start + timedelta(seconds=self.duration_s):
            return start.astimezone(UTC)
        return None

    def is_open(self, now: datetime) -> bool:
        return self.opened_at(now) is not None

    def next_open(self, now: datetime) -> datetime:
        local = now.astimezone(check_timezone(self.timezone))
        start = croniter(self.cron, local).get_next(datetime)
        assert isinstance(start, datetime)
        return start.astimezone(UTC)
