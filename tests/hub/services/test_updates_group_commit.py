"""Transitions arriving together share one transaction; the sweeper sleeps through activity."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from otahub.hub.core import HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict, NotFound
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from otahub.hub.services.views import UpdateView
from otahub.hub.store.database import Database
from otahub.protocols.states import UpdateState
from tests.hub.conftest import chunks


async def _updates(core: HubCore, n: int) -> list[int]:
    await core.firmware.upload(PackageMeta(title="fw", version="2.0"), chunks(b"x" * 5000))
    ids = []
    for i in range(n):
        await core.devices.create(DeviceSpec(name=f"d{i}", dialect="thingsboard", token=f"t{i}"))
        ids.append((await core.updates.create(UpdateRequest(f"d{i}", "fw", "2.0"))).id)
    return ids


class Statements:
    """What the engine sends, as the first word of each statement."""

    def __init__(self, db: Database) -> None:
        self.seen: list[str] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._before)
        self.db = db

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement.split(None, 1)[0].upper())

    def close(self) -> None:
        event.remove(self.db.engine.sync_engine, "before_cursor_execute", self._before)


async def test_concurrent_transitions_commit_together_and_each_gets_its_outcome(
    core: HubCore,
) -> None:
    ids = await _updates(core, 20)
    statements = Statements(core.db)
    try:
        results = await asyncio.gather(
            *(core.updates.transition(i, "sent", source="test") for i in ids),
            core.updates.transition(ids[0], "pending", source="test"),  # back: refused
            core.updates.transition(2**40, "sent"),  # no such update
            return_exceptions=True,
        )
    finally:
        statements.close()
    assert [r.state for r in results[:20] if not isinstance(r, BaseException)] == ["sent"] * 20
    assert isinstance(results[20], Conflict)
    assert isinstance(results[21], NotFound)
    # far fewer selects than transitions: they were read and written in batches
    assert statements.seen.count("SELECT") < 10
    for i in ids:  # committed: a fresh read sees each, with its audit row
        view = await core.updates.get(i)
        assert view.state == "sent"
        assert view.transitions is not None
        assert [t.to_state for t in view.transitions] == ["pending", "sent"]


async def test_a_batch_moved_at_once_gets_each_outcome_in_order(core: HubCore) -> None:
    ids = await _updates(core, 12)
    await core.updates.cancel(ids[3])
    statements = Statements(core.db)
    try:
        outcomes = await core.updates.transition_many(
            [*ids, 2**40], UpdateState.SENT, source="test"
        )
    finally:
        statements.close()
    assert len(outcomes) == 13
    assert isinstance(outcomes[3], Conflict)  # canceled before: not moved, the rest are
    assert isinstance(outcomes[12], NotFound)
    moved = [o for i, o in enumerate(outcomes) if i not in (3, 12)]
    assert [(o.id, o.state) for o in moved if isinstance(o, UpdateView)] == [
        (i, "sent") for i in ids if i != ids[3]
    ]
    assert statements.seen.count("UPDATE") <= 2  # one or two writes, not one per update


async def test_transitions_of_one_update_in_one_batch_apply_in_order(core: HubCore) -> None:
    (update_id,) = await _updates(core, 1)
    states = ["sent", "downloading", "downloading", "downloaded", "verified"]
    progress = [None, 10, 50, None, None]
    results = await asyncio.gather(
        *(
            core.updates.transition(update_id, s, progress=p, source="test")
            for s, p in zip(states, progress, strict=True)
        )
    )
    assert [r.state for r in results] == states
    assert results[2].progress == 50
    view = await core.updates.get(update_id)
    assert view.transitions is not None
    assert [t.to_state for t in view.transitions] == [
        "pending",
        "sent",
        "downloading",
        "downloaded",
        "verified",
    ]


async def test_the_sleeping_sweeper_is_not_woken_by_activity(core: HubCore) -> None:
    ids = await _updates(core, 3)
    sweeper = asyncio.create_task(core.updates.run_sweeper())
    try:
        await asyncio.sleep(0.2)  # it swept once and sleeps until the first deadline
        statements = Statements(core.db)
        try:
            for i in ids:
                for state in ("sent", "downloading"):
                    await core.updates.transition(i, state, source="test")
                for percent in (10, 20, 30):
                    await core.updates.transition(i, "downloading", progress=percent)
            await asyncio.sleep(0.2)
        finally:
            statements.close()
        # the transitions' own reads only: one select per transaction, no sweep
        assert statements.seen.count("SELECT") == statements.seen.count("UPDATE")
        # an earlier deadline does wake it: this update times out on time
        short = await core.updates.create(
            UpdateRequest("d0", "fw", "2.0", replace=True, timeout_s=0.3)
        )
        for _ in range(100):
            if (await core.updates.get(short.id)).state == "failed":
                break
            await asyncio.sleep(0.05)
        assert (await core.updates.get(short.id)).code == "timeout"
    finally:
        sweeper.cancel()
