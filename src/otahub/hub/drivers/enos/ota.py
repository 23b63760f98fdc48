"""The OTA conversation with one EnOS device: its requests, and the pushes to it.

Requests are routed by topic; the ``method`` string is never checked (the
documentation and the SDKs disagree on it). Every request gets a reply on
``<topic>_reply`` echoing its ``id``; bad input gets an error reply in EnOS
codes (1251 empty, 1220 malformed, 1009 foreign topic, 764/765 no task) and
a log line, never an exception out of the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from otahub.hub.core import HubCore
from otahub.hub.drivers.delivery import Delivery
from otahub.hub.drivers.enos.auth import DIALECT
from otahub.hub.drivers.enos.downloads import DownloadUrls
from otahub.hub.drivers.enos.links import Link
from otahub.hub.drivers.enos.offers import OfferError, firmware_for
from otahub.hub.services.errors import Conflict, NotFound
from otahub.hub.services.updates import Claimed
from otahub.hub.services.views import UpdateView
from otahub.mqtt import Publish
from otahub.protocols import enos
from otahub.protocols.states import UpdateState, is_terminal

log = logging.getLogger("otahub.hub.enos")

SOURCE = "enos"
FIRMWARE = "firmware"
PUSH = "push"
ON_REQUEST = "on-request"


def salvage_id(payload: bytes) -> enos.MessageId | None:
    """The request's ``id`` if one can be read, for an error reply to a bad request."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    raw = body.get("id")
    if isinstance(raw, str | float) or (isinstance(raw, int) and not isinstance(raw, bool)):
        return raw
    return None


class OtaConversation:
    def __init__(self, core: HubCore, urls: DownloadUrls) -> None:
        self.core = core
        self.urls = urls
        self.delivery = Delivery(core, DIALECT)

    # -- replies --------------------------------------------------------------

    @staticmethod
    def _reply(link: Link, publish: Publish, body: bytes) -> None:
        link.session.send(enos.reply_topic(publish.topic), body, min(publish.qos, 1))

    def _error(
        self, link: Link, publish: Publish, request_id: enos.MessageId | None, code: int, text: str
    ) -> None:
        log.warning(
            "EnOS device %r on %s: %s (answered %d)", link.device, publish.topic, text, code
        )
        self._reply(link, publish, enos.build_error_reply(request_id, code, text))

    # -- dispatch -------------------------------------------------------------

    async def handle(self, link: Link, publish: Publish) -> None:
        topic = enos.parse_ota_topic(publish.topic)
        if topic is None:  # the interception pattern is wider than the OTA topics
            log.warning("EnOS device %r: %r is not an OTA topic", link.device, publish.topic)
            return
        access = enos.topic_access(topic, link.peer.keys)
        if access is enos.TopicAccess.FOREIGN_REPLY:
            # The Python SDK sends its upgrade_reply to /sys/None/None/...: harmless.
            log.debug("EnOS device %r: reply on foreign topic %s ignored", link.device, topic)
            return
        if access is enos.TopicAccess.FOREIGN_REQUEST or not topic.from_device:
            if topic.is_reply:
                log.debug("EnOS device %r: %s is the hub's reply topic", link.device, topic)
                return
            self._error(
                link,
                publish,
                salvage_id(publish.payload),
                enos.EnosCode.NO_WRITE_PERMISSION,
                f"{enos.CODE_MESSAGES[enos.EnosCode.NO_WRITE_PERMISSION]}: {publish.topic}",
            )
            return
        if topic.is_reply:  # upgrade_reply, the only reply a device sends
            await self._upgrade_reply(link, publish)
            return
        try:
            request = enos.parse_request(publish.payload)
        except enos.EnosError as exc:
            self._error(link, publish, salvage_id(publish.payload), exc.code, str(exc))
            return
        try:
            if topic.kind is enos.OtaKind.INFORM:
                await self._inform(link, publish, request)
            elif topic.kind is enos.OtaKind.PROGRESS:
                await self._progress(link, publish, request)
            else:
                await self._getversion(link, publish, request)
        except enos.EnosError as exc:
            self._error(link, publish, request.id, exc.code, str(exc))

    # -- inform ---------------------------------------------------------------

    async def _inform(self, link: Link, publish: Publish, request: enos.EnosRequest) -> None:
        version = enos.parse_inform(request)
        await self.core.devices.report(link.device, version=version, online=True)
        update = await self.core.updates.active_for(link.device, FIRMWARE)
        if update is not None:
            state = UpdateState(update.state)
            outcome = enos.inform_outcome(
                version, update.version, completed=state is UpdateState.INSTALLING
            )
            if outcome is UpdateState.SUCCEEDED:
                await self._move(update, UpdateState.SUCCEEDED)
            elif outcome is UpdateState.FAILED:
                await self._move(
                    update,
                    UpdateState.FAILED,
                    reason=f"{enos.ROLLED_BACK_REASON}: device reports {version} after step 100",
                    code="rolled-back",
                )
        self._reply(link, publish, enos.build_reply(request.id))
        link.ready = True
        await self.push_pending(link)

    # -- progress -------------------------------------------------------------

    async def _progress(self, link: Link, publish: Publish, request: enos.EnosRequest) -> None:
        progress = enos.parse_progress(request)
        update = await self.core.updates.active_for(link.device, FIRMWARE)
        if update is None:
            self._error(
                link,
                publish,
                request.id,
                enos.EnosCode.DEVICE_TASK_NOT_FOUND,
                enos.CODE_MESSAGES[enos.EnosCode.DEVICE_TASK_NOT_FOUND],
            )
            return
        if UpdateState(update.state) is UpdateState.PENDING:
            # Not pushed, nor offered through getversion: the device cannot be working on it.
            self._error(
                link,
                publish,
                request.id,
                enos.EnosCode.DEVICE_TASK_NOT_START,
                enos.CODE_MESSAGES[enos.EnosCode.DEVICE_TASK_NOT_START],
            )
            return
        if progress.is_failure:
            await self._move(
                update,
                UpdateState.FAILED,
                reason=progress.failure_reason,
                code=str(progress.step),
            )
        else:
            await self._move(update, enos.progress_to_state(progress), progress=progress.step)
        self._reply(link, publish, enos.build_reply(request.id))

    # -- getversion ("upon device request") -------------------------------------

    async def _getversion(self, link: Link, publish: Publish, request: enos.EnosRequest) -> None:
        offers: list[enos.Firmware] = []
        update = await self.core.updates.active_for(link.device, FIRMWARE)
        if update is not None and update.mode == ON_REQUEST:
            try:
                offers.append(await firmware_for(self.core, self.urls, update))
            except OfferError as exc:
                await self._move(update, UpdateState.FAILED, reason=str(exc), code="unsupported")
            else:
                if UpdateState(update.state) is UpdateState.PENDING:
                    await self._move(update, UpdateState.SENT)
        self._reply(link, publish, enos.build_getversion_reply(request.id, offers))

    # -- upgrade_reply ----------------------------------------------------------

    async def _upgrade_reply(self, link: Link, publish: Publish) -> None:
        try:
            reply = enos.parse_reply(publish.payload)
        except enos.EnosError as exc:
            log.warning("EnOS device %r: unreadable upgrade_reply: %s", link.device, exc)
            return
        update = await self.core.updates.active_for(link.device, FIRMWARE)
        if update is None or str(reply.id) != str(update.id):
            log.info(
                "EnOS device %r: upgrade_reply %s for no active upgrade (code %d)",
                link.device,
                reply.id,
                reply.code,
            )
            return
        if reply.ok:
            log.info("EnOS device %r accepted the upgrade of update %d", link.device, update.id)
            return
        # 1101 (no handler), 500 (handler raised) or a device's own refusal.
        await self._move(
            update,
            UpdateState.FAILED,
            reason=f"device rejected the upgrade: {reply.message or 'no message'}",
            code=str(reply.code),
        )

    # -- pushing ----------------------------------------------------------------

    async def push_pending(self, link: Link) -> None:
        """Push the device's pending upgrade once per connection, if it is due.

        Due: a push-mode update that is ``pending``, or ``sent`` without any
        progress yet (re-pushed on reconnect, also when another hub pushed it).
        Only to a device that has reported a version at some point (seed 004),
        unless the update is forced. The device is connected here, so this hub
        takes the update's claim (``drivers/delivery.py``).
        """
        update = await self.core.updates.active_for(link.device, FIRMWARE)
        if update is None or update.mode != PUSH or update.id in link.pushed:
            return
        await self.delivery.run(update.id, partial(self._push, link), take_over=True)

    async def _push(self, link: Link, claimed: Claimed) -> None:
        firmware = await self._due(link, claimed.update)
        if firmware is None:
            return
        update = claimed.update
        link.pushed.add(update.id)
        if not await self.delivery.record(update.id, _pushed_state(update)):
            return  # another hub took the update over meanwhile: it pushes
        self._send(link, update, firmware)
        if update.state == UpdateState.PENDING:
            await self._move(update, UpdateState.SENT)

    async def push_new(
        self, update_ids: Sequence[int], link_for: Callable[[str], Link | None]
    ) -> None:
        """``push_pending`` for many new updates whose devices are connected: claimed
        and recorded in one transaction each, moved to ``sent`` together."""
        await self.delivery.run_new(update_ids, partial(self._push_many, link_for))

    async def _push_many(
        self, link_for: Callable[[str], Link | None], claimed: list[Claimed]
    ) -> None:
        linked = [
            (link, one.update)
            for one in claimed
            # else pushed once the device logs in and informs
            if (link := link_for(one.update.device)) is not None and link.ready
        ]
        # together: the devices' reads share queries
        offers = await asyncio.gather(*(self._due(link, update) for link, update in linked))
        due: list[tuple[Link, UpdateView, enos.Firmware]] = []
        for (link, update), firmware in zip(linked, offers, strict=True):
            if firmware is not None:
                link.pushed.add(update.id)
                due.append((link, update, firmware))
        if not due:
            return
        recorded = await self.delivery.record_many({u.id: _pushed_state(u) for _, u, _ in due})
        # else another hub took it over meanwhile: it pushes
        ours = [(link, u, firmware) for link, u, firmware in due if u.id in recorded]
        # Moved to sent before the pushes go out: the device's progress is handled in
        # its own order, not after this, and must not find the update pending.
        pending = [u for _, u, _ in ours if u.state == UpdateState.PENDING]
        moved = await self.core.updates.transition_many(
            [u.id for u in pending], UpdateState.SENT, source=SOURCE
        )
        stale = set()
        for update, outcome in zip(pending, moved, strict=True):
            if isinstance(outcome, Exception):  # canceled or deleted meanwhile
                log.info(
                    "update %d not pushed to EnOS device %r: %s", update.id, update.device, outcome
                )
                stale.add(update.id)
        for link, update, firmware in ours:
            if update.id not in stale:
                self._send(link, update, firmware)

    async def _due(self, link: Link, update: UpdateView) -> enos.Firmware | None:
        """The upgrade to push to ``link`` for ``update`` (claimed), if it is due now."""
        if update.mode != PUSH or update.id in link.pushed:
            return None
        if update.state not in (UpdateState.PENDING, UpdateState.SENT):
            return None
        if not update.force:
            device = await self.core.devices.get(link.device)
            if device.current_fw_version is None:
                log.info(
                    "update %d waits until EnOS device %r reports its version",
                    update.id,
                    link.device,
                )
                return None
        try:
            firmware = await firmware_for(self.core, self.urls, update)
        except OfferError as exc:
            await self._move(update, UpdateState.FAILED, reason=str(exc), code="unsupported")
            return None
        return firmware if link.session.connected else None

    @staticmethod
    def _send(link: Link, update: UpdateView, firmware: enos.Firmware) -> None:
        topic = enos.ota_topic(link.peer.product_key, link.peer.device_key, enos.OtaKind.UPGRADE)
        link.session.send(topic, enos.build_upgrade(str(update.id), firmware), qos=1)
        log.info(
            "pushed update %d (%s) to EnOS device %r (push %d)",
            update.id,
            update.version,
            link.device,
            _pushed_state(update)["pushes"],
        )

    async def _move(
        self,
        update: UpdateView,
        state: UpdateState,
        *,
        progress: int | None = None,
        reason: str | None = None,
        code: str | None = None,
    ) -> None:
        """A transition that may have become stale (a late or repeated report) is logged only."""
        if is_terminal(UpdateState(update.state)):
            return
        try:
            await self.core.updates.transition(
                update.id, state, progress=progress, reason=reason, code=code, source=SOURCE
            )
        except (Conflict, NotFound) as exc:
            log.info("EnOS device %r: %s", update.device, exc.detail)


def _pushed_state(update: UpdateView) -> dict[str, Any]:
    """The update's driver state once its upgrade (this push) has gone out."""
    pushes = int(update.driver_state.get("pushes", 0)) + 1
    return {**update.driver_state, "pushes": pushes, "message_id": str(update.id)}
