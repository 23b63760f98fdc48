"""The EnOS driver: wires login, interception, pushes and downloads together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from functools import partial

from fastapi import FastAPI

from otahub.hub.drivers.base import Driver, DriverContext
from otahub.hub.drivers.download_links import link_signer
from otahub.hub.drivers.enos.auth import DIALECT, EnosAuthenticator, EnosPeer, session_identity
from otahub.hub.drivers.enos.broker_http import HttpSessions, broker_router
from otahub.hub.drivers.enos.downloads import DownloadUrls, download_router, mount_direct
from otahub.hub.drivers.enos.links import Link, LinkTable, PushCheck, WorkItem
from otahub.hub.drivers.enos.ota import FIRMWARE, PUSH, SOURCE, OtaConversation
from otahub.hub.services.errors import Conflict, NotFound
from otahub.hub.services.views import DeviceView, UpdateView
from otahub.hub.settings import EnosFileUrl
from otahub.mqtt import Client, Identity, Publish
from otahub.protocols.enos import OTA_FILTER
from otahub.protocols.states import UpdateState

log = logging.getLogger("otahub.hub.enos")


class EnosDriver(Driver):
    dialect = DIALECT

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.urls = DownloadUrls(
            link_signer(ctx.settings.data_dir),
            ctx.public_url,
            relative=ctx.settings.enos_file_url is EnosFileUrl.RELATIVE,
        )
        self.ota = OtaConversation(ctx.core, self.urls)
        self.links = LinkTable(self._work)
        # the wait for a device's first inform before pushing (settings.enos_push_grace)
        self.grace_s = ctx.settings.enos_push_grace
        self._undo: list[Callable[[], None]] = []

    def mount(self, app: FastAPI) -> None:
        app.include_router(download_router(self.ctx.core, self.urls))
        mount_direct(app, self.ctx.core, self.urls)
        app.include_router(broker_router(self.ctx.core, self.urls, HttpSessions()))

    async def start(self) -> None:
        mqtt = self.ctx.mqtt
        mqtt.add_authenticator(
            EnosAuthenticator(
                self.ctx.core.devices, login_window=self.ctx.settings.enos_login_window
            )
        )
        self._undo.append(mqtt.intercept(OTA_FILTER, self._on_publish))
        mqtt.on_session_connected(self._on_connected)
        mqtt.on_session_disconnected(self._on_disconnected)
        self.ctx.core.updates.set_starter(DIALECT, self.start_update)
        self.ctx.core.updates.set_batch_starter(DIALECT, self.start_updates)

    def session_identity(self, device: DeviceView) -> Identity | None:
        return session_identity(device)

    async def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        await self.links.stop()

    # -- MQTT hooks (the endpoint runs one session's in the order of its packets) --

    def _on_publish(self, session: Client, publish: Publish) -> None:
        link = self.links.for_session(session)
        if link is None:
            log.warning(
                "client %r (not an EnOS login) published on %r; dropped",
                session.client_id,
                publish.topic,
            )
            return
        # acknowledged on receipt, as EnOS does; handled in line with the device's messages
        session.run_in_order(partial(self.ota.handle, link, publish))

    def _on_connected(self, session: Client) -> None:
        peer = session.identity.data
        if session.identity.dialect != DIALECT or not isinstance(peer, EnosPeer):
            return
        link, previous = self.links.open(session, peer)
        if previous is not None:
            # One connection per device, as on EnOS: the newer login wins. The
            # older link closes when its connection has ended (below).
            log.info(
                "EnOS device %r logged in again as %r; closing %r",
                peer.device,
                session.client_id,
                previous.session.client_id,
            )
            previous.session.disconnect()
        # not in line with its messages: their acknowledgements would wait for it
        link.online = asyncio.get_running_loop().create_task(self._online(link))
        link.grace = asyncio.get_running_loop().create_task(self._grace(link))

    def _on_disconnected(self, session: Client) -> None:
        link = self.links.for_session(session)
        if link is not None:
            # What the device sent before it went may still wait for the driver
            # (acknowledged, as on EnOS): it is handled on this link first.
            session.run_in_order(partial(self._closed, link))

    def _closed(self, link: Link) -> None:
        if not self.links.close_link(link):
            return  # the session connected again meanwhile: that is its link now
        if self.links.for_device(link.device) is None:
            self.ctx.mqtt.spawn(self._offline(link))

    async def _grace(self, link: Link) -> None:
        await asyncio.sleep(self.grace_s)
        link.ready = True
        link.submit(PushCheck())

    async def _online(self, link: Link) -> None:
        try:
            await self.ctx.core.devices.report(link.device, online=True)
        except NotFound:
            pass  # deleted meanwhile
        except Exception:
            log.exception("EnOS device %r: recording it online failed", link.device)

    async def _offline(self, link: Link) -> None:
        if link.online is not None:
            await link.online
        await link.session.handled()  # its work first, so "offline" is the last word
        if self.links.for_device(link.device) is None:
            with contextlib.suppress(NotFound):  # deleted meanwhile
                await self.ctx.core.devices.report(link.device, online=False)

    # -- work, one device at a time ---------------------------------------------

    async def _work(self, link: Link, item: WorkItem) -> None:
        # not to a login the device has replaced, nor to a connection that ended
        if self.links.is_current(link) and link.session.connected:
            await self.ota.push_pending(link)

    # -- new updates ----------------------------------------------------------------

    async def start_updates(self, updates: Sequence[UpdateView]) -> dict[int, Exception]:
        """``start_update`` for many: the pushes due now are claimed, recorded and
        moved to ``sent`` a batch at a time."""
        errors: dict[int, Exception] = {}
        due: dict[int, str] = {}
        for update in updates:
            if update.kind == FIRMWARE and update.mode == PUSH:
                link = self.links.for_device(update.device)
                if link is not None and link.ready:
                    due[update.id] = update.device
                continue
            try:
                await self.start_update(update)
            except Exception as exc:
                errors[update.id] = exc
        if due:
            # handed over: pushed behind the call, as a single start's PushCheck is
            self.ctx.mqtt.spawn(self._push_new(due))
        return errors

    async def _push_new(self, due: dict[int, str]) -> None:
        try:
            await self.ota.push_new(list(due), self.links.for_device)
        except Exception:
            log.exception("pushing %d EnOS updates at once failed; one at a time", len(due))
            for device in due.values():
                link = self.links.for_device(device)
                if link is not None and link.ready:
                    link.submit(PushCheck())

    async def start_update(self, update: UpdateView) -> None:
        """Push a push-mode update to its device if it is connected and ready (else it
        goes out when the device logs in); an on-request one waits to be asked for."""
        if update.kind != FIRMWARE:
            with contextlib.suppress(Conflict, NotFound):  # finished or deleted meanwhile
                await self.ctx.core.updates.transition(
                    update.id,
                    UpdateState.FAILED,
                    reason="EnOS OTA carries firmware only",
                    code="unsupported",
                    source=SOURCE,
                )
            return
        link = self.links.for_device(update.device)
        if update.mode == PUSH and link is not None and link.ready:
            link.submit(PushCheck())
