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
them a batch at a time under the same rules (:class:`SentBehind` runs it behind
the start call).
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


DeliverMany = Callable[[list[Claimed]], Awaitable[dict[int, Exception]]]


class SentBehind:
    """New updates a driver sends behind their start calls, so that a call returns
    once the driver holds them: sending 10,000 commands takes seconds.

    A task (``spawn``) sends one batch at a time through ``Delivery.run_new`` and
    ``deliver_many``, and what came meanwhile goes out as the next batch:
    concurrent batches' claim and record transactions contend for the database
    (SQLite: "database is locked"), and a batch sent after another waits for the
    device traffic the one before started. The updates ``deliver_many`` returns
    an error for fail (``start_failed``); if it raises (nothing recorded), each
    goes through ``Delivery.run`` with ``deliver``. What the hub still held when
    it stopped is taken up by recovery at its next start.
    """

    def __init__(
        self,
        delivery: Delivery,
        spawn: Callable[[Awaitable[Any]], None],
        deliver_many: DeliverMany,
        deliver: Deliver,
    ) -> None:
        self.delivery = delivery
        self._spawn = spawn
        self._deliver_many = deliver_many
        self._deliver = deliver
        self._waiting: list[int] = []
        self._sending = False

    def add(self, update_ids: Sequence[int]) -> None:
        """Send ``update_ids`` (new, this driver's) behind the caller."""
        self._waiting.extend(update_ids)
        if not self._sending:
            self._sending = True
            self._spawn(self._send_waiting())

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                update_ids = self._waiting[:MAX_SENT_TOGETHER]
                del self._waiting[:MAX_SENT_TOGETHER]
                await self._send(update_ids)
        finally:
            self._sending = False

    async def _send(self, update_ids: list[int]) -> None:
        delivery = self.delivery
        try:
            errors = await delivery.run_new(update_ids, self._deliver_many)
        except Exception:
            log.exception(
                "the %s driver could not start %d updates at once; one by one",
                delivery.dialect,
                len(update_ids),
            )
            errors = {}
            for update_id in update_ids:
                try:
                    await delivery.run(update_id, self._deliver)
                except Exception as exc:
                    errors[update_id] = exc
        for update_id, error in errors.items():
            log.error(
                "the %s driver could not start update %d: %s", delivery.dialect, update_id, error
            )
            await delivery.core.updates.fail_start(
                update_id, f"{type(error).__name__}: {error}", dialect=delivery.dialect
            )
