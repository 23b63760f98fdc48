"""The audit trail: each decision about a rollout is a row and a log line."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.store.models import Rollout, RolloutEvent, utcnow

log = logging.getLogger("otahub.hub.rollouts")

# Decisions that need an operator's attention are warnings.
_WARN = {"brake", "stalled", "lease_taken"}


def record(
    s: AsyncSession, rollout: Rollout, kind: str, message: str, **numbers: Any
) -> RolloutEvent:
    """Add an event to ``rollout``'s trail in session ``s`` (committed with the decision)."""
    event = RolloutEvent(
        rollout_id=rollout.id, at=utcnow(), kind=kind, message=message, numbers=numbers
    )
    s.add(event)
    log.log(
        logging.WARNING if kind in _WARN else logging.INFO,
        "rollout %s: %s: %s%s",
        rollout.name,
        kind,
        message,
        "".join(f" {k}={v}" for k, v in numbers.items()),
    )
    return event
