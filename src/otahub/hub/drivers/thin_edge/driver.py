"""The hub as the ``te/`` v1 requester (the part thin-edge's c8y mapper plays).

It tracks each child's retained registration, ``cmd/firmware_update``
capability and ``twin/firmware``; a registered child (or one announcing the
capability or a twin) becomes a device named after its device id
(``te/device/child03//`` is device ``child03``). An update is the retained
command ``te/device/<id>///cmd/firmware_update/otahub-<n>-<hex>`` with
``status: init``, ``tedgeUrl`` (the hub's file-transfer URL), ``remoteUrl``,
``name``, ``version``, and the extras ``sha256`` and ``size``. Commands of
other requesters (ids without the ``otahub-`` prefix) are left alone.

Status mapping (``otahub.protocols.thin_edge.status_to_state``):

=====================================  ===============  ==================================
executor status                        canonical        hub action
=====================================  ===============  ==================================
(retained ``init`` published)          ``sent``
``scheduled``                          ``sent``
``executing``                          ``downloading``
custom ``downloading``, ``download``   ``downloading``
custom ``downloaded``                  ``downloaded``
custom ``verified``                    ``verified``
custom ``installing``, ``restart``,    ``installing``
``waiting_for_restart``, ``verify``,
``verifying``, ``commit``
any other custom status                ``downloading``
``successful``                         ``succeeded``    retained ``twin/firmware``, then
                                                        clear the command
``failed`` (``reason``)                ``failed``       reason kept (``Unknown reason``
                                                        when absent), clear the command
=====================================  ===============  ==================================

A mapped state behind the current one never moves the update back; it counts
as progress, which pushes the update's deadline forward (so an announced
``restart`` gives the reboot a whole timeout period). Each transition
records the verbatim status in its source (``thin-edge:<status>``). When the
hub ends an update itself (canceled, timed out) it clears the command too.
After a restart of the hub's own endpoint, whose retained store lives in
memory, running commands are published again with their last status.

Several hubs on one database (``drivers/delivery.py``): a child subscribing
to its commands on this hub's endpoint makes this hub deliver its update. A
command another hub published goes out again here, retained, with its last
status and this hub's download links (same command id: a child that already
runs or ran it does not start it again); one nobody published yet is sent.
A status for a command another hub issued is matched by the update id in its
command id.

A child is online while its health says ``up`` (``te/device/<id>///status/health``,
or the service its registration's ``@health`` names, ``tedge-agent`` by
default) and, on the hub's own endpoint, while a session is subscribed to its
commands (``Presence`` counts each of these signs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Hashable, Sequence
from dataclasses import replace
from typing import Any

from fastapi import FastAPI

from otahub.hub.drivers.base import Driver, DriverContext
from otahub.hub.drivers.delivery import Delivery, SentBehind, may_act_for
from otahub.hub.drivers.device_order import DeviceOrder
from otahub.hub.drivers.download_links import active_update
from otahub.hub.drivers.file_transfer.offer import (
    OfferedFile,
    OfferFailed,
    file_root,
    offer_firmware,
)
from otahub.hub.drivers.file_transfer.routes import mount_file_transfer
from otahub.hub.drivers.presence import Presence
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict, Invalid, NotFound, ServiceError
from otahub.hub.services.events import Event, UpdateTransitioned
from otahub.hub.services.updates import Claimed, UpdateRequest
from otahub.hub.services.views import DeviceView, UpdateView
from otahub.hub.transport import LocalTransport
from otahub.logs import update_fields
from otahub.mqtt import Client
from otahub.protocols import thin_edge as te
from otahub.protocols.states import UpdateState, can_transition, is_terminal

log = logging.getLogger("otahub.hub.thin_edge")

DIALECT = "thin-edge"
SOURCE = "thin-edge"
# Every entity's registration, capability, commands and twin (``+`` matches empty levels).
FILTERS = (
    "te/+/+/+/+",
    "te/+/+/+/+/cmd/firmware_update",
    "te/+/+/+/+/cmd/firmware_update/+",
    "te/+/+/+/+/twin/firmware",
    "te/+/+/+/+/status/health",
)


def check_capable(device: DeviceView, request: UpdateRequest) -> None:
    """Refuse an update for a child that has not announced ``cmd/firmware_update``."""
    if device.dialect_state.get("capability") is not True:
        topic = te.capability_topic(te.EntityTopicId(device.name))
        raise Conflict(
            f"device {device.name!r} has not announced the firmware_update capability "
            f"(retained '{{}}' on {topic}); force the update to start it anyway"
        )


class ThinEdgeDriver(Driver):
    dialect = DIALECT

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self._commands: dict[str, int] = {}  # command topic -> update id
        self._unsubscribe: list[Any] = []
        self.presence: Presence[Hashable] = Presence(ctx.core.devices, DIALECT)
        self._order = DeviceOrder()  # its topics are written by several clients
        self.delivery = Delivery(ctx.core, DIALECT)
        self._behind = SentBehind(
            self.delivery, ctx.mqtt.spawn, self._dispatch_many, self._dispatch
        )

    def mount(self, app: FastAPI) -> None:
        mount_file_transfer(app, self.ctx)

    async def start(self) -> None:
        core = self.ctx.core
        core.updates.add_create_check(DIALECT, check_capable)
        core.updates.set_starter(DIALECT, self.start_update)
        core.updates.set_batch_starter(DIALECT, self.start_updates)
        self._unsubscribe.append(core.bus.subscribe(self._on_event, UpdateTransitioned))
        async for page in core.updates.each_active(DIALECT):
            for update in page:  # unless another hub delivers it
                await self.delivery.run(update.id, self._recover)
        # Nothing is live before the sessions and retained health come (again).
        await self.presence.reset()
        if isinstance(self.ctx.transport, LocalTransport):
            self._unsubscribe.append(self.ctx.mqtt.on_subscribed(self._on_subscribed))
            self.ctx.mqtt.on_session_disconnected(self.presence.ended)
        for topic_filter in FILTERS:
            await self.ctx.transport.subscribe(topic_filter, self._on_message)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    # -- updates -> commands ---------------------------------------------------

    async def start_update(self, update: UpdateView) -> None:
        await self.delivery.run(update.id, self._dispatch)

    async def start_updates(self, updates: Sequence[UpdateView]) -> dict[int, Exception]:
        """``start_update`` for many, behind the call: claimed, recorded and moved to
        ``sent`` a batch at a time; an update whose start raised fails there."""
        self._behind.add([u.id for u in updates])
        return {}

    async def _dispatch_many(self, claimed: list[Claimed]) -> dict[int, Exception]:
        errors: dict[int, Exception] = {}
        new: list[UpdateView] = []
        for one in claimed:
            update = one.update
            if "topic" in update.driver_state or update.state != UpdateState.PENDING:
                try:
                    await self._dispatch(one)  # not new after all: as one at a time
                except Exception as exc:
                    errors[update.id] = exc
            else:
                new.append(update)
        commands: dict[int, tuple[UpdateView, str, te.FirmwareCommand]] = {}
        states: dict[int, dict[str, Any]] = {}
        for update in new:
            try:
                offered = await offer_firmware(self.ctx, update.device, update)
            except (OfferFailed, ServiceError) as exc:
                await self._fail(update.id, str(exc))
                continue
            topic, command, state = self._command(update, offered)
            commands[update.id] = (update, topic, command)
            states[update.id] = state
        if not states:
            return errors
        # raising here recorded nothing: the service then starts them one by one
        recorded = await self.delivery.record_many(states)
        sent = [commands[update_id] for update_id in sorted(recorded)]
        for update, topic, _ in sent:
            self._commands[topic] = update.id
        # Recorded before publishing: the child may answer before publish returns.
        moved = await self.ctx.core.updates.transition_many(
            [update.id for update, _, _ in sent], UpdateState.SENT, source=SOURCE
        )
        for (update, topic, command), outcome in zip(sent, moved, strict=True):
            if isinstance(outcome, Exception):
                errors[update.id] = outcome
                continue
            await self._publish(update, topic, command)
        return errors

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, UpdateTransitioned):
            update = event.update
            if update.dialect != DIALECT or not is_terminal(UpdateState(update.state)):
                return
            # The device's own terminal status is handled where it arrives
            # (twin first, then the clear); here only what the hub ended.
            if not event.transition.source.startswith(f"{SOURCE}:"):
                await self._finish(update, clear=True)

    async def _dispatch(self, claimed: Claimed) -> None:
        """A new update: its command goes out."""
        await self._deliver(claimed.update, again=False)

    async def _recover(self, claimed: Claimed) -> None:
        """At start: commands sent before go back on the endpoint, the rest go out."""
        await self._deliver(claimed.update, again=True)

    async def _adopt(self, claimed: Claimed) -> None:
        """The child subscribed here: what another hub sent is put back, with links
        of this hub; what nobody sent goes out."""
        update = claimed.update
        topic = update.driver_state.get("topic")
        if isinstance(topic, str) and self.delivery.fresh(claimed):
            reoffered = await self._reoffer(update)
            if reoffered is None:
                return
            update = reoffered
        await self._deliver(update, again=self.delivery.fresh(claimed))

    async def _deliver(self, update: UpdateView, *, again: bool) -> None:
        topic = update.driver_state.get("topic")
        if isinstance(topic, str):
            self._commands[topic] = update.id
            if again:
                await self._restore(update, topic)
        elif update.state == UpdateState.PENDING:
            await self._send(update)

    async def _reoffer(self, update: UpdateView) -> UpdateView | None:
        """The command with download URLs of this hub (the file linked in its own
        file-transfer directory, under the same key: links are signed alike)."""
        fields = update.driver_state.get("command")
        if not isinstance(fields, dict):
            return update
        try:
            offered = await offer_firmware(self.ctx, update.device, update)
        except (OfferFailed, ServiceError) as exc:
            await self._fail(update.id, str(exc))
            return None
        state = {
            **update.driver_state,
            "key": offered.key,
            "command": {**fields, "tedgeUrl": offered.url, "remoteUrl": offered.remote_url},
        }
        if not await self.delivery.record(update.id, state):
            return None
        return replace(update, driver_state=state)

    async def _send(self, update: UpdateView) -> None:
        try:
            offered = await offer_firmware(self.ctx, update.device, update)
        except (OfferFailed, ServiceError) as exc:
            await self._fail(update.id, str(exc))
            return
        topic, command, state = self._command(update, offered)
        if not await self.delivery.record(update.id, state):
            return  # another hub took the update over meanwhile: it sends
        self._commands[topic] = update.id
        # Recorded before publishing: the child may answer before publish returns.
        await self.ctx.core.updates.transition(update.id, UpdateState.SENT, source=SOURCE)
        await self._publish(update, topic, command)

    @staticmethod
    def _command(
        update: UpdateView, offered: OfferedFile
    ) -> tuple[str, te.FirmwareCommand, dict[str, Any]]:
        """The command for ``update``: its topic, itself, and what is recorded of it."""
        cmd_id = te.command_id_for(update.id)
        topic = te.command_topic(te.EntityTopicId(update.device), cmd_id)
        command = te.build_command(
            name=update.title,
            version=update.version,
            remote_url=offered.remote_url,
            tedge_url=offered.url,
            sha256=offered.sha256,
            size=offered.size,
        )
        state = {
            "cmd_id": cmd_id,
            "topic": topic,
            "key": offered.key,
            "status": command.status,
            "command": dict(command.fields),
        }
        return topic, command, state

    async def _publish(self, update: UpdateView, topic: str, command: te.FirmwareCommand) -> None:
        try:
            await self.ctx.transport.publish(topic, command.to_payload(), te.QOS, te.RETAIN)
        except Exception as exc:
            log.warning(
                "update %d: cannot publish %s: %s", update.id, topic, exc, extra=_fields(update)
            )
            await self._fail(update.id, f"cannot publish the command: {exc}")
            return
        log.info("update %d: published %s", update.id, topic, extra=_fields(update))

    async def _restore(self, update: UpdateView, topic: str) -> None:
        """Put a running command back on the hub's own endpoint after a restart.

        That endpoint keeps retained messages in memory only; a child that
        reboots into its new image must find its command again (an external
        broker still holds it). It goes back as the child last left it.
        """
        fields = update.driver_state.get("command")
        if not isinstance(self.ctx.transport, LocalTransport) or not isinstance(fields, dict):
            return
        status = str(update.driver_state.get("status") or te.CommandStatus.INIT.value)
        try:
            command = te.FirmwareCommand(fields).with_status(status)
        except te.ThinEdgeError as exc:
            log.warning(
                "update %d: cannot restore %s: %s", update.id, topic, exc, extra=_fields(update)
            )
            return
        await self.ctx.transport.publish(topic, command.to_payload(), te.QOS, te.RETAIN)

    async def _fail(self, update_id: int, reason: str) -> None:
        with contextlib.suppress(Conflict, NotFound):
            await self.ctx.core.updates.transition(
                update_id, UpdateState.FAILED, reason=reason, source=SOURCE
            )

    async def _finish(self, update: UpdateView, *, clear: bool) -> None:
        """Forget a finished update: its command topic, and the file link."""
        topic = update.driver_state.get("topic")
        key = update.driver_state.get("key")
        if isinstance(topic, str):
            self._commands.pop(topic, None)
            if clear:
                await self._clear(topic)
        if isinstance(key, str):
            file_root(self.ctx).unlink_firmware(update.device, key)

    async def _clear(self, topic: str) -> None:
        try:
            await self.ctx.transport.publish(topic, b"", te.QOS, te.RETAIN)
        except Exception as exc:
            log.warning("cannot clear %s: %s", topic, exc)

    # -- messages -> devices and updates -----------------------------------------

    async def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = te.parse_topic(topic)
        if parsed is None:
            return
        async with self._order.turn(parsed.entity.device_id):
            await self._handle(parsed, topic, payload, retained)

    async def _handle(
        self, parsed: te.FirmwareTopic, topic: str, payload: bytes, retained: bool
    ) -> None:
        if parsed.kind is te.TopicKind.HEALTH:
            try:
                await self._on_health(parsed.entity, payload)
            except te.ThinEdgeError as exc:
                log.warning("ignoring %s: %s", topic, exc)
            return
        if parsed.entity.service_id is not None:
            return  # services take no firmware
        try:
            if parsed.kind is te.TopicKind.REGISTRATION:
                await self._on_registration(parsed.entity, payload)
            elif parsed.kind is te.TopicKind.CAPABILITY:
                await self._on_capability(parsed.entity, payload)
            elif parsed.kind is te.TopicKind.TWIN:
                await self._on_twin(parsed.entity, payload)
            elif parsed.cmd_id is not None and te.is_own_command(parsed.cmd_id):
                await self._on_command(topic, payload, retained)
        except te.ThinEdgeError as exc:
            log.warning("ignoring %s: %s", topic, exc)
        except ServiceError as exc:  # e.g. the update was canceled meanwhile
            log.warning("%s: %s", topic, exc.detail)

    # -- signs of life -------------------------------------------------------------

    async def _on_health(self, entity: te.EntityTopicId, payload: bytes) -> None:
        """The device's own health, or that of the service standing for it (``@health``)."""
        up = te.parse_health(payload)
        name = entity.device_id
        registration = None
        try:
            device = await self.ctx.core.devices.get(name)
            if device.dialect != DIALECT:
                return
            registration = device.dialect_state.get("registration")
        except NotFound:
            pass  # retained health may come before the registration: kept, written then
        service = te.health_service(registration if isinstance(registration, dict) else None)
        if entity.service_id not in (None, service):
            return
        sign = ("health", entity.service_id or "")
        if up:
            await self.presence.add(name, sign)
        else:
            await self.presence.remove(name, sign)

    def _on_subscribed(self, session: Client, topic_filter: str) -> Awaitable[None] | None:
        name = te.subscribing_device(topic_filter)
        if name is None or name == "main":
            return None
        return self._session_waits(session, name)

    async def _session_waits(self, session: Client, name: str) -> None:
        """A session waiting for a child's commands is that child (the hub's endpoint only)."""
        try:
            device = await self.ctx.core.devices.get(name)
            if device.dialect != DIALECT:
                return
        except NotFound:
            pass  # its registration, just published, makes it a device: written then
        if not session.connected:
            return
        await self.presence.add_for(name, session)
        if may_act_for(session, te.capability_topic(te.EntityTopicId(name))):
            await self.delivery.adopt(name, self._adopt)

    async def _device(
        self, entity: te.EntityTopicId, *, create: bool, **kind: str | None
    ) -> DeviceView | None:
        """The thin-edge device for ``entity``, created on first sight when asked."""
        devices = self.ctx.core.devices
        name = entity.device_id
        try:
            device = await devices.get(name)
        except NotFound:
            if not create:
                return None
            try:
                device = await devices.create(
                    DeviceSpec(name=name, dialect=DIALECT, device_type=kind.get("device_type"))
                )
                log.info("registered thin-edge device %s", name)
                if self.presence.is_online(name):
                    await self.presence.write(name)
            except Invalid as exc:
                log.warning("ignoring entity %s: %s", entity, exc.detail)
                return None
            except Conflict:
                device = await devices.get(name)
        if device.dialect != DIALECT:
            log.info("ignoring te/%s: device %s uses the %s dialect", entity, name, device.dialect)
            return None
        return device

    async def _set_state(self, device: DeviceView, **changes: Any) -> None:
        state = {**device.dialect_state, "entity": str(te.EntityTopicId(device.name)), **changes}
        if state != device.dialect_state:
            await self.ctx.core.devices.set_dialect_state(device.name, state)

    async def _on_registration(self, entity: te.EntityTopicId, payload: bytes) -> None:
        registration = te.parse_registration(payload)
        if registration is None:  # deregistered: the device and its history stay
            device = await self._device(entity, create=False)
            if device is not None:
                await self._set_state(device, registration=None)
            return
        if registration.entity_type is te.EntityType.SERVICE:
            return
        device = await self._device(entity, create=True, device_type=registration.device_type)
        if device is not None:
            await self._set_state(device, registration=dict(registration.fields))

    async def _on_capability(self, entity: te.EntityTopicId, payload: bytes) -> None:
        announced = te.parse_capability(payload)
        device = await self._device(entity, create=announced)
        if device is not None:
            await self._set_state(device, capability=announced)

    async def _on_twin(self, entity: te.EntityTopicId, payload: bytes) -> None:
        twin = te.parse_twin(payload)
        if twin is None:
            return
        device = await self._device(entity, create=True)
        if device is None:
            return
        await self._set_state(
            device, twin={"name": twin.name, "version": twin.version, "url": twin.url}
        )
        await self.ctx.core.devices.report(device.name, title=twin.name, version=twin.version)

    async def _on_command(self, topic: str, payload: bytes, retained: bool) -> None:
        command = te.parse_command(payload)
        if command is None:
            return  # a clear, ours or a replay of it
        update_id = self._commands.get(topic)
        if update_id is None:
            update_id = await self._issued_elsewhere(topic)
        if update_id is None:
            if te.requester_should_clear(command):
                await self._clear(topic)  # left over from an update the hub already ended
            else:
                log.info("ignoring %s on %s: no running update", command.status, topic)
            return
        updates = self.ctx.core.updates
        try:
            update = await updates.get(update_id, with_transitions=False)
        except NotFound:
            update = None
        if update is None or update.driver_state.get("topic") != topic:
            # The update this command was issued for is gone (its device was
            # deleted): never let its late status touch whichever update now
            # has that id.
            self._commands.pop(topic, None)
            log.warning(
                "ignoring %s on %s: update %d was not issued this command",
                command.status,
                topic,
                update_id,
            )
            return
        status = command.status
        current = UpdateState(update.state)
        if is_terminal(current):
            if command.is_terminal:
                await self._finish(update, clear=True)
            return
        if command.known_status is te.CommandStatus.INIT:
            return  # our own command coming back
        if retained and not command.is_terminal and status == update.driver_state.get("status"):
            return  # replayed after a reconnect: nothing new
        target = te.status_to_state(status)
        source = f"{SOURCE}:{status}"
        progress = None if command.progress is None else round(command.progress)
        # The transition is stored before the status it came from: after a crash
        # between the two, the replayed status is applied again, never skipped.
        if command.known_status is te.CommandStatus.SUCCESSFUL:
            await updates.transition(update.id, UpdateState.SUCCEEDED, source=source)
            await self._record_status(update, status)
            await self._on_success(update, command)
            await self._finish(update, clear=True)
        elif command.known_status is te.CommandStatus.FAILED:
            await updates.transition(
                update.id, UpdateState.FAILED, reason=command.failure_reason, source=source
            )
            await self._record_status(update, status)
            await self._finish(update, clear=True)
        else:
            # Custom statuses never move an update back; they count as progress.
            state = target if can_transition(current, target) else current
            await updates.transition(update.id, state, progress=progress, source=source)
            await self._record_status(update, status)

    async def _issued_elsewhere(self, topic: str) -> int | None:
        """The unfinished update whose command is ``topic``, issued by another hub (or
        by this one before it restarted): its id leads the command id."""
        parsed = te.parse_topic(topic)
        if parsed is None or parsed.cmd_id is None:
            return None
        update_id = te.update_id_of(parsed.cmd_id)
        if update_id is None:
            return None
        update = await active_update(self.ctx.core, update_id)
        if update is None or update.driver_state.get("topic") != topic:
            return None
        self._commands[topic] = update.id
        return update.id

    async def _record_status(self, update: UpdateView, status: str) -> None:
        """The child's last status: what the command is put back with after a restart."""
        await self.ctx.core.updates.set_driver_state(
            update.id, {**update.driver_state, "status": status}
        )

    async def _on_success(self, update: UpdateView, command: te.FirmwareCommand) -> None:
        """Publish the new twin as the mapper does, and cross-check the child's own."""
        device = await self.ctx.core.devices.get(update.device)
        twin = device.dialect_state.get("twin") or {}
        if twin.get("version") not in (None, update.version):
            log.warning(
                "update %d: %s reported successful but its twin says version %s, not %s",
                update.id,
                update.device,
                twin.get("version"),
                update.version,
                extra=_fields(update),
            )
        entity = te.EntityTopicId(update.device)
        payload = te.build_twin(update.title, update.version, command.remote_url)
        try:
            await self.ctx.transport.publish(te.twin_topic(entity), payload, te.QOS, te.RETAIN)
        except Exception as exc:
            log.warning("cannot publish the twin of %s: %s", update.device, exc)
        await self.ctx.core.devices.report(
            update.device, title=update.title, version=update.version
        )


def _fields(update: UpdateView) -> dict[str, object]:
    """What a log line about ``update`` carries as fields (otahub.logs)."""
    return update_fields(update.id, update.device, DIALECT)
