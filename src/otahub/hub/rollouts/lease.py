"""Which hub instance drives a rollout: a lease on the rollout's row.

An instance takes a rollout whose lease is free, its own, or run out, with one
conditional UPDATE (atomic on every backend: on PostgreSQL the row lock makes
a second instance re-check the condition after the first committed). It
renews the lease on every tick; when it dies, the lease runs out and another
instance takes over. Every batch of starts re-checks the lease inside its own
transaction, so an instance that lost its lease cannot start a device.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.store.models import Rollout

LEASE_S = 5.0


class LeaseLost(Exception):
    """Another instance drives the rollout now (or it stopped running)."""


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def take(
    s: AsyncSession, rollout_id: int, owner: str, now: datetime, lease_s: float = LEASE_S
) -> bool:
    """Take or renew the lease on ``rollout_id``; False when another instance holds it."""
    result = await s.execute(
        update(Rollout)
        .where(
            Rollout.id == rollout_id,
            or_(Rollout.owner.is_(None), Rollout.owner == owner, Rollout.lease_until < now),
        )
        .values(owner=owner, lease_until=now + timedelta(seconds=lease_s))
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


async def fence(
    s: AsyncSession, rollout_id: int, owner: str, now: datetime, lease_s: float = LEASE_S
) -> None:
    """Inside a transaction that starts devices: still ours and still running, or LeaseLost.

    The UPDATE also locks the row (PostgreSQL) until the transaction ends, so
    neither a takeover nor a pause can slip in between the check and the commit.
    """
    result = await s.execute(
        update(Rollout)
        .where(
            Rollout.id == rollout_id,
            Rollout.owner == owner,
            Rollout.lease_until >= now,
            Rollout.state == "running",
        )
        .values(lease_until=now + timedelta(seconds=lease_s))
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise LeaseLost(f"rollout {rollout_id} is no longer driven by {owner}")


async def release(s: AsyncSession, owner: str) -> None:
    """Give up every lease of ``owner`` (a clean shutdown): others take over at once."""
    await s.execute(
        update(Rollout).where(Rollout.owner == owner).values(owner=None, lease_until=None)
    )
