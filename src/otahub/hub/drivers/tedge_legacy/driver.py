"""The hub as the legacy ``tedge/<child>/commands`` requester (``c8y-firmware-plugin``).

A device of the ``tedge-legacy`` dialect is configured (``otahub device add
NAME --dialect tedge-legacy``): legacy children cannot announce themselves
over the network. An update publishes the request, not retained, QoS 1, on
``tedge/<child>/commands/req/firmware_update`` with ``id`` (21 characters like
upstream's nanoid), ``attempt``, ``name``, ``version``, ``sha256`` of the
content and ``url`` on the hub's ``/te/v1/files/<child>/firmware_update/<key>``.

Status mapping (``otahub.protocols.tedge_legacy.status_to_state``):

===============================  ===============  =====================================
child response                   canonical        notes
===============================  ===============  =====================================
(request published)              ``sent``         the update's deadline starts
``executing``                    ``downloading``  each one restarts the deadline
``successful``                   ``succeeded``
``failed``                       ``failed``       the child's ``reason`` is kept
(deadline passed)                ``failed``       upstream's timeout text, code
                                                  ``timeout``
===============================  ===============  =====================================

The timeout is the update's deadline (``--update-timeout``, default 1 h, or
per update), which the hub persists, so it keeps running across a hub
restart. Responses are matched on (child, id) — the id the hub issued for
that very update; malformed ones, unknown operations and anything after a
terminal status are logged and ignored. Asking again for the running update
re-sends the request with ``attempt + 1`` and the same id, without resetting
the timer.

Requests are not retained, so a child that is offline when its update
starts would never see it. On the hub's own endpoint the driver sees each
child come back: a session subscribing to the child's request topic (any
filter naming the child, e.g. ``tedge/<child>/commands/req/#``) is that
child. Then a request the child never answered (``sent``) goes out again
with ``attempt + 1``, and so does every request in flight when the hub
restarted (its responses may have been lost meanwhile); the child answers
with its current status and does not start anything twice. Those sessions
are also what makes the device ``online`` (``last_seen`` is when one came or
went). Through an external broker (``--broker``) the hub sees no sessions:
requests in flight are re-sent at start, and ``online`` stays ``no``.

Several hubs on one database (``drivers/delivery.py``): a child subscribing
here makes this hub deliver its update. A request another hub sent goes out
again with ``attempt + 1``, the same id and a download URL of this hub (the
child answers with its status and starts nothing twice); one nobody sent yet
is sent. A response to an operation another hub issued is matched with the
id its child's unfinished update was sent with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from fastapi import FastAPI

from otahub.hub.drivers.base import Driver, DriverContext
from otahub.hub.drivers.delivery import Delivery, SentBehind, may_act_for
from otahub.hub.drivers.file_transfer.offer import OfferFailed, file_root, offer_firmware
from otahub.hub.drivers.file_transfer.routes import mount_file_transfer
from otahub.hub.drivers.presence import Presence
from otahub.hub.services.errors import NotFound, ServiceError
from otahub.hub.services.events import Event, UpdateTransitioned
from otahub.hub.services.updates import Claimed
from otahub.hub.services.views import UpdateView
from otahub.hub.transport import LocalTransport
from otahub.logs import update_fields
from otahub.mqtt import Client
from otahub.protocols import tedge_legacy as legacy
from otahub.protocols.states import UpdateState, is_terminal

log = logging.getLogger("otahub.hub.tedge_legacy")

DIALECT = "tedge-legacy"
SOURCE = "tedge-legacy"
#: What upstream reports when a child fails without saying why.
NO_REASON = "No failure reason provided by child device."
_FINISHED_REMEMBERED = 1000
#: After a restart of the hub's own endpoint, a request in flight whose child
#: has not subscribed again by name within this time (it listens with a
#: wildcard, say) is re-sent anyway.
RECONNECT_GRACE_S = 5.0


def operation_id() -> str:
    """21 URL-safe characters, the shape of upstream's nanoid ids."""
    return secrets.token_urlsafe(16)[:21]


def timeout_reason(update: UpdateView) -> str:
    return legacy.timeout_reason(
        update.device, round(update.timeout_s), str(update.driver_state.get("id", "?"))
    )


class TedgeLegacyDriver(Driver):
    dialect = DIALECT

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self._operations: dict[tuple[str, str], int] = {}  # (child, id) -> update id
        # (child, id) -> terminal status, so late messages are ignored by name
        self._finished: OrderedDict[tuple[str, str], legacy.LegacyStatus] = OrderedDict()
        self._unsubscribe: list[Any] = []
        self._undo: list[Callable[[], None]] = []
        self._responding: set[str] = set()  # children seen answering, this run
        self._resume: asyncio.Task[None] | None = None
        self.presence: Presence[Client] = Presence(ctx.core.devices, DIALECT)
        # updates in flight when the hub (re)started: asked again when their child is back
        self._reask: set[int] = set()
        self.delivery = Delivery(ctx.core, DIALECT)
        self._behind = SentBehind(
            self.delivery, ctx.mqtt.spawn, self._dispatch_many, self._dispatch
        )

    def mount(self, app: FastAPI) -> None:
        mount_file_transfer(app, self.ctx)

    async def start(self) -> None:
        core = self.ctx.core
        core.updates.on_repeat(DIALECT, self._resend)
        core.updates.set_timeout_reason(DIALECT, timeout_reason)
        core.updates.set_starter(DIALECT, self.start_update)
        core.updates.set_batch_starter(DIALECT, self.start_updates)
        self._unsubscribe.append(core.bus.subscribe(self._on_event, UpdateTransitioned))
        # A child sends each response once, not retained: acknowledged before its
        # transition is stored, it would be lost to a hub that stops in between.
        await self.ctx.transport.subscribe(
            legacy.RESPONSE_FILTER, self._on_message, acknowledges=True
        )
        waiting: list[int] = []

        async def track(claimed: Claimed) -> None:
            update = claimed.update
            if "id" in update.driver_state:
                # In flight when the hub stopped: tracked again at once (its
                # deadline never stopped running) and asked again.
                self._operations[(update.device, update.driver_state["id"])] = update.id
            waiting.append(update.id)

        async for page in core.updates.each_active(DIALECT):
            for update in page:  # unless another hub delivers it
                await self.delivery.run(update.id, track)
        if isinstance(self.ctx.transport, LocalTransport):
            # The endpoint started with the hub: nobody is connected yet.
            await self.presence.reset()
            self._reask.update(u for u in waiting if u in self._operations.values())
            self._undo.append(self.ctx.mqtt.on_subscribed(self._on_subscribed))
            self.ctx.mqtt.on_session_disconnected(self.presence.ended)
        if waiting:
            self._resume = core.parts.start(
                "tedge-legacy resume", self._send_waiting(waiting), forever=False
            )

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for undo in self._undo:
            undo()
        self._undo.clear()
        if self._resume is not None:
            self._resume.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume

    async def _send_waiting(self, update_ids: list[int]) -> None:
        """At start: send pending requests and re-send those in flight.

        On the hub's own endpoint nobody is connected yet: a request in flight
        goes out again when its child subscribes (``_on_subscribed``), and
        whatever is still waiting after ``RECONNECT_GRACE_S`` goes out then.
        """
        local = isinstance(self.ctx.transport, LocalTransport)
        if local:
            await asyncio.sleep(RECONNECT_GRACE_S)
        for update_id in update_ids:
            in_flight = update_id in self._reask
            self._reask.discard(update_id)
            await self._send_or_resend(update_id, resend=in_flight or not local)

    async def _send_or_resend(self, update_id: int, *, resend: bool) -> None:
        await self.delivery.run(update_id, partial(self._send_or_resend_claimed, resend=resend))

    async def _send_or_resend_claimed(self, claimed: Claimed, *, resend: bool) -> None:
        update = claimed.update
        try:
            if "id" not in update.driver_state:
                await self._send(update)
            elif resend:
                await self._resend(update)
        except ServiceError as exc:
            log.warning("update %d: %s", update.id, exc.detail)

    # -- children's sessions (the hub's own endpoint only) ----------------------

    def _on_subscribed(self, session: Client, topic_filter: str) -> Awaitable[None] | None:
        child = legacy.subscribing_child(topic_filter)
        if child is None:
            return None
        return self._child_back(session, child)

    async def _child_back(self, session: Client, child: str) -> None:
        try:
            device = await self.ctx.core.devices.get(child)
        except NotFound:
            log.info("a session subscribed to the requests of %s, which is not a device", child)
            return
        if device.dialect != DIALECT:
            return
        if session.connected:
            await self.presence.add_for(child, session)
        if may_act_for(session, legacy.response_topic(child)):
            await self.delivery.adopt(child, self._adopt)

    async def _adopt(self, claimed: Claimed) -> None:
        """The child subscribed here: its request goes out if nobody sent it, and again
        if it went unanswered, or was in flight at a restart, or another hub sent it."""
        update = claimed.update
        try:
            if "id" not in update.driver_state:
                if update.state == UpdateState.PENDING:
                    await self._send(update)
                return
            child = update.device
            self._operations[(child, update.driver_state["id"])] = update.id
            fresh = self.delivery.fresh(claimed)
            if fresh:
                reoffered = await self._reoffer(update)
                if reoffered is None:
                    return
                update = reoffered
            if fresh or update.state == UpdateState.SENT or update.id in self._reask:
                self._reask.discard(update.id)
                log.info("update %d: %s subscribed to its requests; asking again", update.id, child)
                await self._resend(update)
        except ServiceError as exc:
            log.warning("update %d: %s", update.id, exc.detail)

    async def _reoffer(self, update: UpdateView) -> UpdateView | None:
        """The request with a download URL of this hub (the file linked in its own
        file-transfer directory, under the same key: links are signed alike)."""
        try:
            offered = await offer_firmware(self.ctx, update.device, update)
        except (OfferFailed, ServiceError) as exc:
            await self.ctx.core.updates.transition(
                update.id, UpdateState.FAILED, reason=str(exc), source=SOURCE
            )
            return None
        state = {**update.driver_state, "url": offered.url, "key": offered.key}
        if not await self.delivery.record(update.id, state):
            return None
        return replace(update, driver_state=state)

    # -- updates -> requests ---------------------------------------------------

    async def start_update(self, update: UpdateView) -> None:
        await self.delivery.run(update.id, self._dispatch)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, UpdateTransitioned):
            update = event.update
            if update.dialect == DIALECT and is_terminal(UpdateState(update.state)):
                self._forget(update, None)

    async def _dispatch(self, claimed: Claimed) -> None:
        if "id" not in claimed.update.driver_state:
            await self._send(claimed.update)

    async def _send(self, update: UpdateView) -> None:
        request = await self._request(update)
        if request is None:
            return
        if not await self.delivery.record(update.id, request[1]):
            return  # another hub took the update over meanwhile: it sends
        self._operations[(update.device, request[0].id)] = update.id
        # The deadline (upstream's timer) starts here.
        await self.ctx.core.updates.transition(update.id, UpdateState.SENT, source=SOURCE)
        await self._publish(update, request[0])

    async def _request(
        self, update: UpdateView
    ) -> tuple[legacy.FirmwareRequest, dict[str, Any]] | None:
        """The request for ``update`` and what is recorded of it; None: the update failed."""
        try:
            offered = await offer_firmware(self.ctx, update.device, update)
            request = legacy.build_request(
                operation_id(),
                name=update.title,
                version=update.version,
                sha256=offered.sha256,
                url=offered.url,
            )
        except (OfferFailed, ServiceError, legacy.TedgeLegacyError) as exc:
            await self.ctx.core.updates.transition(
                update.id, UpdateState.FAILED, reason=str(exc), source=SOURCE
            )
            return None
        return request, {**request.to_fields(), "key": offered.key}

    async def start_updates(self, updates: Sequence[UpdateView]) -> dict[int, Exception]:
        """``start_update`` for many, behind the call: claimed, recorded and moved to
        ``sent`` a batch at a time; an update whose start raised fails there."""
        self._behind.add([u.id for u in updates])
        return {}

    async def _dispatch_many(self, claimed: list[Claimed]) -> dict[int, Exception]:
        errors: dict[int, Exception] = {}
        requests: dict[int, tuple[UpdateView, legacy.FirmwareRequest]] = {}
        states: dict[int, dict[str, Any]] = {}
        for one in claimed:
            update = one.update
            try:
                if "id" in update.driver_state:
                    continue  # sent already (another run got there first)
                made = await self._request(update)
            except Exception as exc:
                errors[update.id] = exc
                continue
            if made is not None:
                requests[update.id] = (update, made[0])
                states[update.id] = made[1]
        if not states:
            return errors
        # raising here recorded nothing: the service then starts them one by one
        recorded = await self.delivery.record_many(states)
        sent = [requests[update_id] for update_id in sorted(recorded)]
        for update, request in sent:
            self._operations[(update.device, request.id)] = update.id
        # The deadline (upstream's timer) starts here.
        moved = await self.ctx.core.updates.transition_many(
            [update.id for update, _ in sent], UpdateState.SENT, source=SOURCE
        )
        for (update, request), outcome in zip(sent, moved, strict=True):
            if isinstance(outcome, Exception):
                errors[update.id] = outcome
            else:
                await self._publish(update, request)
        return errors

    async def _resend(self, update: UpdateView) -> None:
        """The same request with ``attempt + 1``; the timer is not reset."""
        fields = update.driver_state
        parsed = legacy.parse_request(json.dumps(fields))
        if isinstance(parsed, legacy.Ignored):
            log.warning(
                "update %d: cannot re-send: %s", update.id, parsed.reason, extra=_fields(update)
            )
            return
        request = parsed.resend()
        if not await self.delivery.record(update.id, {**fields, "attempt": request.attempt}):
            return  # another hub delivers it now
        await self._publish(update, request)

    async def _publish(self, update: UpdateView, request: legacy.FirmwareRequest) -> None:
        topic = legacy.request_topic(update.device)
        try:
            await self.ctx.transport.publish(
                topic, request.to_payload(), legacy.REQUEST_QOS, legacy.REQUEST_RETAIN
            )
        except Exception as exc:
            # The deadline still runs: the update fails by timeout unless a
            # repeat or restart gets the request through.
            log.warning(
                "update %d: cannot publish %s: %s", update.id, topic, exc, extra=_fields(update)
            )
            return
        log.info(
            "update %d: request %s attempt %d sent",
            update.id,
            request.id,
            request.attempt,
            extra=_fields(update),
        )

    def _forget(self, update: UpdateView, status: legacy.LegacyStatus | None) -> None:
        op_id = update.driver_state.get("id")
        if isinstance(op_id, str):
            key = (update.device, op_id)
            self._operations.pop(key, None)
            if status is not None or key not in self._finished:
                self._finished[key] = status or legacy.LegacyStatus.FAILED
            while len(self._finished) > _FINISHED_REMEMBERED:
                self._finished.popitem(last=False)
        file_key = update.driver_state.get("key")
        if isinstance(file_key, str):
            file_root(self.ctx).unlink_firmware(update.device, file_key)

    # -- responses -> updates --------------------------------------------------

    async def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        message = legacy.parse_response_message(topic, payload)
        if isinstance(message, legacy.Ignored):
            log.warning("ignoring %s: %s", topic, message.reason)
            return
        child, response = message.child, message.response
        key = (child, response.id)
        update_id = self._operations.get(key)
        if update_id is None and key not in self._finished:
            update_id = await self._issued_elsewhere(child, response.id)
        outcome = legacy.response_outcome(
            update_id is not None or key in self._finished, self._finished.get(key)
        )
        if outcome is not legacy.ResponseOutcome.APPLY or update_id is None:
            log.warning(
                "ignoring %s from %s for operation %s: %s",
                response.status,
                child,
                response.id,
                outcome.value,
            )
            return
        try:
            await self._apply(child, update_id, response)
        except ServiceError as exc:  # e.g. canceled meanwhile
            log.warning("%s: %s", topic, exc.detail)

    async def _issued_elsewhere(self, child: str, op_id: str) -> int | None:
        """The child's unfinished update if it was sent as operation ``op_id`` by
        another hub (or by this one before it restarted)."""
        try:
            update = await self.ctx.core.updates.active_for(child)
        except ServiceError:
            return None
        if update is None or update.dialect != DIALECT or update.driver_state.get("id") != op_id:
            return None
        self._operations[(child, op_id)] = update.id
        return update.id

    async def _apply(self, child: str, update_id: int, response: legacy.FirmwareResponse) -> None:
        updates = self.ctx.core.updates
        try:
            update = await updates.get(update_id, with_transitions=False)
        except NotFound:
            update = None
        if update is None or (update.device, update.driver_state.get("id")) != (
            child,
            response.id,
        ):
            # The update this operation was issued for is gone (its device was
            # deleted): its late response must not touch whichever update now
            # has that id.
            self._operations.pop((child, response.id), None)
            log.warning(
                "ignoring %s from %s for operation %s: update %d was not issued it",
                response.status,
                child,
                response.id,
                update_id,
            )
            return
        if update.device not in self._responding:
            # Upstream's other sign of a legacy-capable child besides configuration.
            device = await self.ctx.core.devices.get(update.device)
            await self.ctx.core.devices.set_dialect_state(
                device.name, {**device.dialect_state, "responding": True}
            )
            self._responding.add(update.device)
        source = f"{SOURCE}:{response.status.value}"
        target = legacy.status_to_state(response.status)
        if response.status is legacy.LegacyStatus.FAILED:
            await updates.transition(
                update_id, target, reason=response.reason or NO_REASON, source=source
            )
        else:
            # A repeated executing is progress: it restarts the deadline.
            await updates.transition(update_id, target, source=source)
        if response.status.is_terminal:
            self._forget(update, response.status)
            if response.status is legacy.LegacyStatus.SUCCESSFUL:
                await self.ctx.core.devices.report(
                    update.device, title=update.title, version=update.version
                )


def _fields(update: UpdateView) -> dict[str, object]:
    """What a log line about ``update`` carries as fields (otahub.logs)."""
    return update_fields(update.id, update.device, DIALECT)
