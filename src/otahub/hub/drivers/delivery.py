"""Which hub sends an update's commands, when several hubs share one database.

A device is connected to one hub at a time, and only that hub can reach it:
so an update is delivered by the hub its device is connected to. Each update
carries a claim in the database (``UpdateService.claim``):

- the hub that creates an update, or finds it unfinished at its start, sends
  it unless another hub claimed it already;
- a device connecting to a hub makes that hub take its active updates over
  (adoption): it sends what nobody sent yet, and puts back what the other hub
  sent as it was sent (same command id, so the device never runs it twice),
  with download links of its own;
- what a driver records before sending (its command id) is written only while
  the hub still holds the claim, so a hub that lost it meanwhile sends nothing.

Every path (dispatch of a new update, adoption on connect, recovery at start)
goes through :meth:`Delivery.run`, one update at a time within this hub; new
updates of a batch through :meth:`Delivery.run_new`, which claims and records
them a batch at a time under the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from otahub.hub.core import HubCore
from otahub.hub.drivers.device_order import DeviceOrder
from otahub.hub.services.updates import Claimed, ClaimLost
from otahub.mqtt import Client

log = logging.getLogger("otahub.hub.drivers")

Deliver = Callable[[Claimed], Awaitable[None]]
#: New updates sent behind their start calls as one batch, at most (a batch call's).
MAX_SENT_TOGETHER = 10_000
T = TypeVar("T")


def may_act_for(session: Client, device_topic: str) -> bool:
    """Whether ``session`` may speak for the device ``device_topic`` belongs to.

    Waiting for a device's commands makes a hub take its update over, so that is
    only for a session the topic rules let publish as the device (the device, its
    gateway, or an anonymous client for a device without credentials or owner):
    subscribing is open to anonymous clients, and one must not pull another
    device's update away from the hub that device is connected to.
    """
    acl = session.identity.acl
    return acl is None or bool(acl.can_publish(device_topic))


class Delivery:
    def __init__(self, core: HubCore, dialect: str) -> None:
        self.core = core
        self.dialect = dialect
        self._turns = DeviceOrder()  # one run at a time per update
        # New updates waiting to be sent behind their start calls, and whether a task
        # sends them. One batch at a time, and what came meanwhile goes out as one:
        # concurrent batches' claim and record transactions contend for the database
        # (SQLite: "database is locked"), and a batch sent after another waits for
        # the device traffic the one before started.
        self._waiting: list[int] = []
        self._sending = False

    @property
    def owner(self) -> str:
        """This hub, as its claims name it."""
        return self.core.hub_id

    async def run(self, update_id: int, deliver: Deliver, *, take_over: bool = False) -> bool:
        """Claim the update and hand it to ``deliver``, as it is once claimed.

        ``take_over``: its device is connected here, so this hub takes it from
        any other. False when the update ended or another hub delivers it.
        Two runs for one update (its creation and its device's connect) take
        turns, so the second sees what the first recorded.
        """
        async with self._turns.turn(str(update_id)):
            claimed = await self.core.updates.claim(update_id, self.owner, take_over=take_over)
            if claimed is None or claimed.update.dialect != self.dialect:
                return False
            await deliver(claimed)
            return True

    async def run_new(
        self, update_ids: Sequence[int], deliver: Callable[[list[Claimed]], Awaitable[T]]
    ) -> T:
        """``run`` for many new updates: those this hub may send are claimed in one
        transaction and handed to ``deliver`` together; the others are left out.
        Each update's turn is held throughout, as ``run`` holds it."""
        async with contextlib.AsyncExitStack() as turns:
            for update_id in update_ids:
                await turns.enter_async_context(self._turns.turn(str(update_id)))
            claimed = await self.core.updates.claim_new(update_ids, self.owner)
            return await deliver([c for c in claimed if c.update.dialect == self.dialect])

    def run_new_behind(
        self,
        spawn: Callable[[Awaitable[Any]], None],
        update_ids: Sequence[int],
        deliver_many: Callable[[list[Claimed]], Awaitable[dict[int, Exception]]],
        deliver: Deliver,
    ) -> None:
        """``run_new`` in a task of its own (``spawn``), so that a start call returns
        once the driver holds the updates: sending 10,000 commands takes seconds.

        There the updates ``deliver_many`` returns an error for fail; if it raises
        (nothing recorded), each goes through ``run`` with ``deliver``. An update
        whose task dies with the hub is taken up by recovery at the next start.
        """
        self._waiting.extend(update_ids)
        if not self._sending:
            self._sending = True
            spawn(self._send_waiting(deliver_many, deliver))

    async def _send_waiting(
        self,
        deliver_many: Callable[[list[Claimed]], Awaitable[dict[int, Exception]]],
        deliver: Deliver,
    ) -> None:
        try:
            while self._waiting:
                update_ids = self._waiting[:MAX_SENT_TOGETHER]
                del self._waiting[:MAX_SENT_TOGETHER]
                await self._run_new_now(update_ids, deliver_many, deliver)
        finally:
            self._sending = False  # what is left waits for recovery at the next start

    async def _run_new_now(
        self,
        update_ids: list[int],
        deliver_many: Callable[[list[Claimed]], Awaitable[dict[int, Exception]]],
        deliver: Deliver,
    ) -> None:
        try:
            errors = await self.run_new(update_ids, deliver_many)
        except Exception:
            log.exception(
                "the %s driver could not start %d updates at once; one by one",
                self.dialect,
                len(update_ids),
            )
            errors = {}
            for update_id in update_ids:
                try:
                    await self.run(update_id, deliver)
                except Exception as exc:
                    errors[update_id] = exc
        for update_id, error in errors.items():
            log.error("the %s driver could not start update %d: %s", self.dialect, update_id, error)
            await self.core.updates.fail_start(
                update_id, f"{type(error).__name__}: {error}", dialect=self.dialect
            )

    async def adopt(
        self, device: str, deliver: Deliver, kinds: Iterable[str] = ("firmware",)
    ) -> None:
        """``device`` connected to this hub: deliver its active updates from here."""
        # asked for together: one read (of the connect wave's) for every kind
        found = await asyncio.gather(*(self.core.updates.active_for(device, k) for k in kinds))
        for update in found:
            if update is not None and update.dialect == self.dialect:
                await self.run(update.id, deliver, take_over=True)

    async def record(self, update_id: int, state: dict[str, Any]) -> bool:
        """Store the driver's bookkeeping of a command about to be sent, while this hub
        holds the claim; False (and nothing may be sent) once another hub took it."""
        try:
            await self.core.updates.set_driver_state(update_id, state, claimed_by=self.owner)
        except ClaimLost as exc:
            log.info("update %d: not sent from here: %s", update_id, exc.detail)
            return False
        return True

    async def record_many(self, states: dict[int, dict[str, Any]]) -> set[int]:
        """``record`` for many updates in one transaction: the ids written (and which
        may be sent); the others another hub took meanwhile."""
        written = await self.core.updates.set_driver_states(states, claimed_by=self.owner)
        recorded = {view.id for view in written}
        for update_id in states.keys() - recorded:
            log.info("update %d: not sent from here: another hub delivers it", update_id)
        return recorded

    def fresh(self, claimed: Claimed) -> bool:
        """Whether this hub did not deliver the update so far (another hub did, or none)."""
        return claimed.fresh_to(self.owner)
