"""Which hub instance drives a rollout: the lease and the fence around each batch of starts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from otahub.hub.core import HubCore
from otahub.hub.rollouts import lease
from otahub.hub.store.models import utcnow
from tests.hub.rollouts.conftest import make_fleet, spec


async def test_one_owner_at_a_time_and_a_lost_lease_starts_nothing(
    core: HubCore, release: None
) -> None:
    await make_fleet(core, 2)
    rollout_id = (await core.rollouts.create(spec())).id
    await core.rollouts.start("r1")
    now = utcnow()
    async with core.db.session() as s:
        assert await lease.take(s, rollout_id, "a", now, 5.0)
        assert await lease.take(s, rollout_id, "a", now, 5.0)  # renewing
        assert not await lease.take(s, rollout_id, "b", now, 5.0)
        later = now + timedelta(seconds=6)  # a's lease ran out: b takes over
        assert await lease.take(s, rollout_id, "b", later, 5.0)
        with pytest.raises(lease.LeaseLost):
            await lease.fence(s, rollout_id, "a", later)
        await lease.fence(s, rollout_id, "b", later)
        await s.commit()
    await core.rollouts.pause("r1")
    async with core.db.session() as s:
        with pytest.raises(lease.LeaseLost):  # paused: the owner starts nothing either
            await lease.fence(s, rollout_id, "b", later)
        await lease.release(s, "b")
        await s.commit()
    view = await core.rollouts.get("r1")
    assert view.owner is None
