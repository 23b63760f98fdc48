"""The ThingsBoard / ServicePleX dialect on the hub (``docs/protocols/thingsboard.md``).

Devices written for ThingsBoard connect to the hub's own MQTT endpoint with
their access token (or basic MQTT credentials) and update from it unchanged.
Every ``v1/devices/me/…`` and ``v2/…`` topic is per connection: the driver
claims them and answers the sending session directly; nothing of it is
routed between devices.

=================================  ===========================  ==========================
ThingsBoard                        otahub update state          who
=================================  ===========================  ==========================
``fw_state`` QUEUED (+ target_*)   ``pending``                  hub, on assignment
``fw_state`` INITIATED             ``pending`` → ``sent``       hub, paced; ``sent`` once
                                                                the attributes are pushed
                                                                or answered
``DOWNLOADING`` / 1st chunk        ``downloading`` (+ %)        device / hub
``DOWNLOADED``                     ``downloaded``               device
``VERIFIED``                       ``verified``                 device
``UPDATING``                       ``installing``               device
``UPDATED``                        ``succeeded`` if             device
                                   ``current_fw_version`` is
                                   the target, else ``failed``
                                   (``version_mismatch``)
``FAILED`` + ``fw_error``          ``failed`` (code ``FAILED``) device
other strings (``IDLE``)           stored verbatim, no change   device
silence past the deadline          ``failed`` (``timeout``)     hub (core sweeper)
cancel / unassign                  ``canceled``; pushes         hub
                                   ``{"deleted":[…9 keys]}``
=================================  ===========================  ==========================

The same holds for software with ``sw_`` keys and ``v2/sw`` topics.

A device may hold several sessions at once (the same token twice), as on
ThingsBoard: attribute pushes go to each of them that subscribed, and the
device is ``online`` while any of them is connected (``presence.py``).
Telemetry names no package, so a post-download state about a package other
than the active update's, judged by what the device fetched last, is logged
and ignored (``fetches.py``).

The checksum algorithm of ``fw_checksum`` is chosen per device
(``PUT /api/v1/thingsboard/devices/{name}``, ``otahub thingsboard set``),
default SHA256; it is fixed for an update when the update is initiated.

Several hubs on one database (``drivers/delivery.py``): the attributes live
in the database, so a device connecting to another hub is answered alike and
fetches its chunks there. An assignment nobody notified yet when its device
connects here is notified from here; one already initiated is not notified
again (the device asks for its attributes on every connect).

Where the endpoint cannot do what ThingsBoard does: it acknowledges a
claimed PUBLISH before the driver sees it, so a chunk error or a malformed
payload still gets a PUBACK (reason 0) before the error reply or the close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from otahub.hub.drivers.base import Driver, DriverContext
from otahub.hub.drivers.delivery import Delivery
from otahub.hub.drivers.presence import Presence
from otahub.hub.drivers.thingsboard.active import ActiveUpdates
from otahub.hub.drivers.thingsboard.assignment import Assignments
from otahub.hub.drivers.thingsboard.attributes import KIND_OF, Attributes, apply_change
from otahub.hub.drivers.thingsboard.auth import (
    DIALECT,
    Authenticator,
    BasicCredentialIndex,
    Link,
    RidState,
    TokenIndex,
    parse_stored_basic,
    session_identity,
)
from otahub.hub.drivers.thingsboard.blobfiles import OpenBlobs
from otahub.hub.drivers.thingsboard.chunks import Chunks
from otahub.hub.drivers.thingsboard.devicestate import (
    CHECKSUM_ALGORITHM,
    MQTT_BASIC,
    SHARED,
    TELEMETRY,
    DeviceStates,
    section,
)
from otahub.hub.drivers.thingsboard.fetches import Fetches
from otahub.hub.drivers.thingsboard.http_api import mount_admin_routes, mount_routes
from otahub.hub.drivers.thingsboard.pacing import Pacer
from otahub.hub.drivers.thingsboard.progress import (
    SOURCE,
    DownloadProgress,
    DriverStates,
)
from otahub.hub.drivers.thingsboard.telemetry import JOURNAL_KIND as TELEMETRY_KIND
from otahub.hub.drivers.thingsboard.telemetry import Telemetry
from otahub.hub.drivers.thingsboard.telemetry import decode_recorded as decode_recorded_telemetry
from otahub.hub.services.errors import Conflict, NotFound
from otahub.hub.services.events import (
    DeviceCreated,
    DeviceCredentialsChanged,
    DeviceDeleted,
    Event,
    UpdateTransitioned,
)
from otahub.hub.services.integrity import FirmwareCorrupt
from otahub.hub.services.updates import Claimed
from otahub.hub.services.views import DeviceView, PackageView, UpdateView
from otahub.mqtt import Client, Identity, Publish, ReasonCode
from otahub.protocols.checksums import Algorithm
from otahub.protocols.states import TERMINAL_STATES, UpdateState
from otahub.protocols.thingsboard import (
    DEFAULT_MAX_CHUNK_SIZE,
    SESSION_LIMITS_METHOD,
    AttributeChange,
    FwState,
    OtaKey,
    PackageAttributes,
    PackageType,
    PublishKind,
    ThingsBoardError,
    assignment_attributes,
    attribute_key,
    build_session_limits,
    classify_publish,
    parse_rpc_request,
    unassignment_attributes,
)

log = logging.getLogger("otahub.hub.thingsboard")

DEFAULT_ALGORITHM = Algorithm.SHA256
PACKAGE_OF = {"firmware": PackageType.FIRMWARE, "software": PackageType.SOFTWARE}
_INTERCEPTED = ("v1/devices/me/#", "v1/gateway/#", "v2/#")


def now_ms() -> int:
    return int(time.time() * 1000)


def algorithm_of(
    device: str, state: dict[str, Any], package: PackageView | None = None
) -> Algorithm:
    """The checksum algorithm the device's state sets, else the package's (as created)."""
    raw = state.get(CHECKSUM_ALGORITHM)
    if isinstance(raw, str):
        try:
            return Algorithm.parse(raw)
        except ValueError:
            log.warning("device %s: unknown checksum algorithm %r", device, raw)
    return DEFAULT_ALGORITHM if package is None else package.checksum_algorithm


def assignment_of(kind: PackageType, package: PackageView, algorithm: Algorithm) -> AttributeChange:
    """The shared attributes assigning ``package``; KeyError without its ``algorithm`` checksum."""
    return assignment_attributes(
        kind,
        PackageAttributes(
            title=package.title,
            version=package.version,
            size=package.size,
            checksum=package.checksums[algorithm],
            checksum_algorithm=algorithm.value,
        ),
    )


class ThingsBoardDriver(Driver):
    dialect = DIALECT

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.core = ctx.core
        self.states = DeviceStates(ctx.core.devices)
        self.active = ActiveUpdates(ctx.core.updates)
        self.driver_states = DriverStates(ctx.core, self.active.saw)
        self.basic = BasicCredentialIndex()
        self.tokens = TokenIndex(ctx.core.devices)
        # every live session of each device: a second connection with the same
        # token neither replaces nor, when it ends, cuts off the first
        # its sessions are the only signs of a ThingsBoard device's life
        self.presence: Presence[Client] = Presence(ctx.core.devices, DIALECT)
        self.fetches = Fetches()
        self.blobs = OpenBlobs()
        self.progress = DownloadProgress(ctx.core)
        self.attributes = Attributes(self)
        self.telemetry = Telemetry(self)
        self.chunks = Chunks(self, DEFAULT_MAX_CHUNK_SIZE)
        self.assignments = Assignments(self)
        self.pacer = Pacer(
            ctx.settings.notify_rate, self.initiate, self._initiate_failed, self.initiate_many
        )
        self.delivery = Delivery(ctx.core, DIALECT)
        self._undo: list[Any] = []

    # -- lifecycle -----------------------------------------------------------

    def mount(self, app: FastAPI) -> None:
        mount_routes(self, app)

    def mount_admin(self, app: FastAPI) -> None:
        mount_admin_routes(self, app)

    async def start(self) -> None:
        mqtt = self.ctx.mqtt
        for device in await self.core.devices.list(dialect=DIALECT):
            self.basic.put(device.name, parse_stored_basic(device.dialect_state.get(MQTT_BASIC)))
            self.tokens.put(device.name, device.tb_token)
        mqtt.add_authenticator(Authenticator(self.tokens, self.basic))
        self.core.ingest.register(
            TELEMETRY_KIND, decode_recorded_telemetry, self.telemetry.apply_recorded
        )
        for pattern in _INTERCEPTED:
            self._undo.append(mqtt.intercept(pattern, self._on_publish))
        mqtt.on_session_connected(self._on_connected)
        mqtt.on_session_disconnected(self._on_disconnected)
        self._undo.append(
            self.core.bus.subscribe(
                self._on_event,
                UpdateTransitioned,
                DeviceCreated,
                DeviceCredentialsChanged,
                DeviceDeleted,
            )
        )
        self.core.updates.set_starter(DIALECT, self.start_update)
        await self.presence.reset()
        self.pacer.start(self.core.parts)
        # Assignments queued before a restart are notified again.
        async for page in self.core.updates.each_active(DIALECT, state=UpdateState.PENDING):
            for update in page:
                if not update.driver_state.get("initiated"):
                    self.pacer.put(update.id)

    def session_identity(self, device: DeviceView) -> Identity | None:
        return session_identity(device.name)

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        await self.pacer.stop()
        await self.progress.stop()
        await self.states.close()
        self.blobs.close()

    # -- sessions ------------------------------------------------------------

    def sessions(self, device: str) -> list[Client]:
        """The device's connected sessions, oldest first."""
        return [s for s in self.presence.signs(device) if s.connected]

    def _on_connected(self, session: Client) -> Awaitable[None] | None:
        if session.identity.dialect != DIALECT:
            return None
        return self._connected(session)

    async def _connected(self, session: Client) -> None:
        device = session.identity.name
        self.states.connected(device)
        await self.presence.add(device, session)
        await self.assignments.reconcile_device(device)
        await self.delivery.adopt(device, self._adopt, kinds=KIND_OF.values())

    async def _adopt(self, claimed: Claimed) -> None:
        """The device connected here: an assignment nobody notified is notified from here."""
        update = claimed.update
        self.active.saw(update)  # another hub may have made it since this one last looked
        if update.state == UpdateState.PENDING and not update.driver_state.get("initiated"):
            self.pacer.put(update.id)

    def _on_disconnected(self, session: Client) -> Awaitable[None] | None:
        if session.identity.dialect != DIALECT:
            return None
        return self.presence.remove(session.identity.name, session)

    # -- device publishes ----------------------------------------------------

    def _on_publish(self, session: Client, packet: Publish) -> Awaitable[int | None] | int | None:
        """Handle a device publish; the result is the PUBACK verdict (see mqtt.hooks)."""
        link = session.identity.data
        if session.identity.dialect != DIALECT or not isinstance(link, Link):
            # Not a ThingsBoard session: these topics are plain broker traffic for it.
            self.ctx.mqtt.publish(packet.topic, packet.payload, packet.qos, packet.retain)
            return None
        topic = packet.topic
        if topic.startswith(("v2/fw/", "v2/sw/")):
            return self.chunks.handle(session, link, topic, packet.payload)
        try:
            kind = classify_publish(topic)
        except ThingsBoardError as exc:
            return self.payload_error(session, "request topic", exc)
        if kind is None:
            log.info("device %s: unknown topic %r; dropped", link.device, topic)
            return ReasonCode.TOPIC_NAME_INVALID
        if kind.kind is PublishKind.TELEMETRY:
            return self.telemetry.handle(session, link.device, packet.payload, kind.family)
        if kind.kind is PublishKind.ATTRIBUTES:
            return self.attributes.post(session, link.device, packet.payload)
        if kind.kind is PublishKind.ATTRIBUTE_REQUEST:
            assert kind.request_id is not None
            return self.attributes.request(
                session, link.device, kind.request_id, packet.payload, kind.family
            )
        if kind.kind is PublishKind.RPC_REQUEST:
            assert kind.request_id is not None
            return self._rpc(session, link.device, kind.request_id, packet.payload, kind)
        log.debug("device %s: %s on %r ignored", link.device, kind.kind.value, topic)
        return None

    def _rpc(
        self, session: Client, device: str, request_id: int, payload: bytes, kind: Any
    ) -> int | None:
        try:
            rpc = parse_rpc_request(request_id, payload, kind.family)
        except ThingsBoardError as exc:
            return self.payload_error(session, "RPC request", exc)
        if rpc.method != SESSION_LIMITS_METHOD:
            log.info("device %s: client RPC %r is not handled by the hub", device, rpc.method)
            return None
        limits = build_session_limits(
            max_payload_size=self.chunks.max_chunk_size,
            max_inflight_messages=100,
            messages="",
            telemetry_messages="",
            telemetry_data_points="",
        )
        session.send(rpc.response_topic, limits, 1)
        return None

    def payload_error(self, session: Client, what: str, exc: ThingsBoardError) -> int:
        """ThingsBoard closes a 3.1.1 session on a bad payload; 5.0 sessions get PUBACK 0x99."""
        v5 = session.is_v5
        log.warning(
            "device %s: malformed %s: %s%s",
            session.identity.name,
            what,
            exc,
            "" if v5 else "; closing (MQTT 3.1.1)",
        )
        if not v5:
            session.disconnect()
        return ReasonCode.PAYLOAD_FORMAT_INVALID

    # -- packages ------------------------------------------------------------

    async def effective(
        self, device: str, package: PackageType
    ) -> tuple[PackageView, int | None] | None:
        """The package a device should run now, and its update if one is active.

        The active update (the device's own, or one made for its type) first;
        else what the shared attributes describe, as upstream keeps a package
        assigned after the update.
        """
        update = await self.active.get(device, KIND_OF[package])
        if update is not None and update.package_id is not None:
            try:
                return await self.core.firmware.get(update.package_id), update.id
            except NotFound:
                return None
        shared = section(await self.states.get(device), SHARED)
        title = shared.get(attribute_key(package, OtaKey.TITLE))
        version = shared.get(attribute_key(package, OtaKey.VERSION))
        if not isinstance(title, str) or not isinstance(version, str):
            return None
        try:
            return await self.core.firmware.find(title, version), None
        except NotFound:
            return None

    async def resolve_rid(self, device: str, package: PackageType) -> RidState | None:
        found = await self.effective(device, package)
        if found is None:
            return None
        view, update_id = found
        try:
            path = await self.core.integrity.servable(view.sha256)
        except FirmwareCorrupt:
            return None  # answered as an absent package; its update has failed
        return RidState(view.id, view.size, path, update_id, sha256=view.sha256)

    def intact(self, rid: RidState) -> bool:
        """Whether the blob a ``{rid}`` serves is unchanged since it was verified:
        one ``fstat`` of the descriptor chunks are read from, before each chunk."""
        if rid.path is None:
            return True
        try:
            return self.core.blobs.known_intact(rid.sha256, self.blobs.stat(rid.path))
        except OSError:
            return False

    async def reverify(self, rid: RidState) -> bool:
        """After ``intact`` said no: hash the blob again; True if the rid may go on."""
        if rid.path is None:
            return True
        self.blobs.forget(rid.path)  # the next chunk reads the file now at the path
        try:
            path = await self.core.integrity.servable(rid.sha256)
        except FirmwareCorrupt:
            return False
        return path is not None and path == Path(rid.path)

    def algorithm(self, device: DeviceView, package: PackageView | None = None) -> Algorithm:
        """The device's own setting if it has one, else the package's (as created)."""
        return algorithm_of(device.name, device.dialect_state, package)

    # -- assignment notifications ---------------------------------------------

    async def start_update(self, update: UpdateView) -> None:
        """Queue the notification (the pacer releases it to ``initiate``)."""
        self.active.saw(update)
        await self._queued(update)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, UpdateTransitioned):
            if event.update.dialect == DIALECT:
                self.active.saw(event.update)
                if event.transition.to_state == UpdateState.CANCELED:
                    await self._canceled(event.update)
                if event.update.state in TERMINAL_STATES:
                    self.progress.forget(event.update.id)
        elif isinstance(event, DeviceCreated):
            if event.device.dialect == DIALECT:
                self.tokens.put(event.device.name, event.device.tb_token)
            # A device's type is fixed when it is registered: one without a type
            # has no assignment to get, and costs no query (bulk imports).
            if event.device.dialect == DIALECT and event.device.device_type:
                await self.assignments.reconcile_device(event.device.name, event.device)
        elif isinstance(event, DeviceCredentialsChanged):
            if event.device.dialect == DIALECT:
                self.tokens.put(event.device.name, event.device.tb_token)
        elif isinstance(event, DeviceDeleted):
            if event.device.dialect == DIALECT:
                # Its credentials are gone; so are the sessions they opened (a
                # chunk request on one must not reach an update filed later).
                for session in self.sessions(event.device.name):
                    log.info("device %s deleted: closing its session", event.device.name)
                    session.disconnect(ReasonCode.NOT_AUTHORIZED, "device deleted")
            self.basic.put(event.device.name, None)
            self.tokens.put(event.device.name, None)
            self.states.forget(event.device.name)
            self.active.forget(event.device.name)
            self.presence.forget(event.device.name)
            self.fetches.forget(event.device.name)

    async def _queued(self, update: UpdateView) -> None:
        p = PACKAGE_OF[update.kind].prefix
        self.states.note_telemetry(
            update.device,
            {
                f"{p}_state": FwState.QUEUED.value,
                f"target_{p}_title": update.title,
                f"target_{p}_version": update.version,
                f"target_{p}_ts": now_ms(),
            },
        )
        self.pacer.put(update.id)

    async def initiate(self, update_id: int) -> None:
        """Released by the pacer: save the shared attributes and push them, unless
        another hub delivers the update (``initiate_many`` for one)."""
        errors = await self.initiate_many([update_id])
        if update_id in errors:
            raise errors[update_id]

    async def initiate_many(self, update_ids: list[int]) -> dict[int, Exception]:
        """``initiate`` for a pack: claimed, the devices' states edited and the
        updates' driver states merged a pack at a time; each update's error."""
        return await self.delivery.run_new(update_ids, self._initiate_many)

    async def _initiate_many(self, claimed: list[Claimed]) -> dict[int, Exception]:
        errors: dict[int, Exception] = {}
        todo: list[tuple[UpdateView, PackageView]] = []
        for one in claimed:
            update = one.update
            if (
                update.state != UpdateState.PENDING
                or update.driver_state.get("initiated")
                or update.package_id is None
            ):
                continue  # finished, replaced or already notified meanwhile
            try:
                todo.append((update, await self.core.firmware.get(update.package_id)))
            except Exception as exc:
                errors[update.id] = exc
        if not todo:
            return errors
        made: dict[int, tuple[UpdateView, PackageType, Any, bool, Algorithm]] = {}
        async with self.states.edit_many(u.device for u, _ in todo) as states:
            for update, package in todo:
                state = states.get(update.device)
                if state is None:
                    errors[update.id] = NotFound(f"device {update.device!r} does not exist")
                    continue
                kind = PACKAGE_OF[update.kind]
                algorithm = algorithm_of(update.device, state, package)
                try:
                    change = assignment_of(kind, package, algorithm)
                except KeyError as exc:
                    errors[update.id] = exc
                    continue
                shared = section(state, SHARED)
                # A retry of the package already assigned changes no attribute, and a
                # device acts on changes only: unassign first, as an operator would.
                again = (
                    shared.get(attribute_key(kind, OtaKey.TITLE)) == package.title
                    and shared.get(attribute_key(kind, OtaKey.VERSION)) == package.version
                )
                apply_change(shared, change)
                section(state, TELEMETRY)[f"{kind.prefix}_state"] = FwState.INITIATED.value
                made[update.id] = (update, kind, change, again, algorithm)
        # only while this hub holds the claim: a hub that lost it pushes nothing
        written = await self.driver_states.merge_many(
            {
                update_id: {"initiated": True, "checksum_algorithm": algorithm.value}
                for update_id, (_, _, _, _, algorithm) in made.items()
            },
            claimed_by=self.delivery.owner,
        )
        pushed: list[int] = []
        for view in written:
            update, kind, change, again, algorithm = made[view.id]
            log.info(
                "device %s: %s %s %s initiated (%s)",
                update.device,
                update.kind,
                update.title,
                update.version,
                algorithm.value,
            )
            if again:
                self.attributes.push(update.device, unassignment_attributes(kind))
            if self.attributes.push(update.device, change):
                pushed.append(update.id)
        for update_id in made.keys() - {view.id for view in written}:
            log.info("update %d: not initiated here: another hub delivers it", update_id)
        moved = await self.core.updates.transition_many(pushed, UpdateState.SENT, source=SOURCE)
        for update_id, outcome in zip(pushed, moved, strict=True):
            if isinstance(outcome, (Conflict, NotFound)):
                # moved on or ended meanwhile (the device was quicker, or a cancel)
                log.debug("update %d: %s", update_id, outcome)
            elif isinstance(outcome, Exception):
                errors[update_id] = outcome
        return errors

    async def _initiate_failed(self, update_id: int, error: str) -> UpdateView:
        return await self.core.updates.fail_start(update_id, error, dialect=DIALECT)

    async def _canceled(self, update: UpdateView) -> None:
        if await self.core.updates.active_for(update.device, update.kind) is not None:
            return  # replaced: the new update's notification follows
        if await self.assignments.fall_back_to_type(update):
            return
        await self.unassign(update.device, PACKAGE_OF[update.kind])

    async def unassign(self, device: str, package: PackageType) -> None:
        """Delete the nine ``fw_*`` attributes and tell the device."""
        change = unassignment_attributes(package)
        try:
            async with self.states.edit(device) as state:
                apply_change(section(state, SHARED), change)
        except NotFound:
            return
        self.attributes.push(device, change)
        log.info("device %s: %s unassigned", device, KIND_OF[package])

    async def set_shared(self, device: str, package: PackageType, view: PackageView) -> None:
        """Assign without an update (the device already runs ``view``)."""
        algorithm = self.algorithm(await self.core.devices.get(device), view)
        change = assignment_of(package, view, algorithm)
        async with self.states.edit(device) as state:
            apply_change(section(state, SHARED), change)
        self.attributes.push(device, change)


__all__ = ["SOURCE", "ThingsBoardDriver"]
