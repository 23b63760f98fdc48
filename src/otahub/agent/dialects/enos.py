"""The ``enos`` dialect: an EnOS device doing OTA over ``/sys/{pk}/{dk}/ota/device/…``.

Login is signed (``securemode=2``, SHA-256 over the sorted parameters plus
the device secret). After every connect the agent ``inform``s its version.
``upgrade`` commands arrive without any subscription; the agent persists the
job first and only then replies ``upgrade_reply`` 200. In request mode it
polls ``getversion`` and takes the first offered version it does not run.
An http(s) ``fileUrl`` is downloaded as is; any other (a relative path) is a
``fileUri`` fetched through the EnOS HTTP broker (``enos.http_broker``).

=============  ==============================================================
step           ``progress`` step (a string) / message
=============  ==============================================================
downloading    ``0`` at the start, then the download percentage scaled to 0..80
verified       ``90``
installing     ``100``
succeeded      ``inform`` of the new version
failed         ``-2`` download, ``-3`` verification, ``-4`` install (burning),
               ``-1`` anything else; ``desc`` carries the reason
=============  ==============================================================

Cancel: EnOS sends a device nothing when an upgrade is canceled. What the
protocol does offer is the reply to ``progress``: 764 "Device task not
found" says the cloud has no task for the device. Until the install hook
starts, such a reply to a progress report of the running update makes the
agent stop it and delete its download (it reports nothing more). An update
found on disk at startup is first reported as progress, and resumed unless
the reply is 764. A cancel between two progress reports is noticed at the
next one; once the install hook has started the update completes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from otahub.agent.config import EnosMode
from otahub.agent.dialects.base import DialectClient, Step
from otahub.agent.download import DownloadError, ProgressCallback
from otahub.agent.enos_broker import BrokerFile
from otahub.agent.link import ClientOptions
from otahub.agent.state import FailureKind, Outcome, Phase, UpdateRecord
from otahub.protocols import enos
from otahub.protocols.checksums import Algorithm

if TYPE_CHECKING:
    from otahub.agent.app import Agent

log = logging.getLogger(__name__)

_Builder = Callable[[str], bytes]

_FAILURE_STEP: dict[FailureKind | None, int] = {
    FailureKind.DOWNLOAD: enos.ProgressFailure.DOWNLOAD_FAILED,
    FailureKind.VERIFY: enos.ProgressFailure.VERIFICATION_FAILED,
    FailureKind.INSTALL: enos.ProgressFailure.BURNING_FAILED,
    FailureKind.DECLINED: enos.ProgressFailure.DECLINED,
}
BUSY_MESSAGE = "device is busy with another upgrade"
TASK_GONE = "the cloud has no upgrade task for the device any more (progress reply 764)"
#: Progress request ids remembered to match a 764 reply to its update.
_TRACKED_PROGRESS = 64
#: ``UpdateRecord.extra`` key of a ``fileUrl`` to fetch through the HTTP broker.
FILE_URI = "file_uri"
_UNDECIDED = (Phase.INSTALLING, Phase.REBOOT_PENDING)
#: Phases of an update found on disk that the cloud is asked about before resuming.
_BEFORE_INSTALL = (Phase.RECEIVED, Phase.DOWNLOADING, Phase.DOWNLOADED, Phase.VERIFIED)


class EnosClient(DialectClient):
    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[enos.EnosReply]] = {}
        #: progress request id -> key of the update it reported on.
        self._progress_of: dict[str, str] = {}
        #: Key of an update found on disk, resumed once the cloud confirms its task.
        self._unconfirmed: str | None = None
        self._confirming: asyncio.Task[None] | None = None

    def hold_resume(self, record: UpdateRecord) -> bool:
        # A canceled task is only visible as a 764 reply to progress: ask first.
        if record.phase not in _BEFORE_INSTALL:
            return False
        self._unconfirmed = record.key
        return True

    @property
    def keys(self) -> tuple[str, str]:
        cfg = self.agent.config.enos
        return cfg.product_key, cfg.device_key

    def _topic(self, kind: enos.OtaKind, *, reply: bool = False) -> str:
        return enos.ota_topic(*self.keys, kind, reply=reply)

    def client_options(self) -> ClientOptions:
        cfg = self.agent.config.enos
        login = enos.build_login(
            cfg.product_key,
            cfg.device_key,
            cfg.device_secret,
            timestamp=str(int(time.time() * 1000)),
        )
        return ClientOptions(
            identifier=login.client_id,
            username=login.username,
            password=login.password,
            clean_session=True,
        )

    async def on_connect(self) -> None:
        for kind in (enos.OtaKind.INFORM, enos.OtaKind.PROGRESS, enos.OtaKind.GETVERSION):
            await self.agent.link.subscribe(self._topic(kind, reply=True), qos=1)
        current = self.agent.runner.current
        if current is not None and current.phase in _UNDECIDED:
            # An install whose outcome is being decided (after a restart): its
            # report follows at once, and an inform now could claim a version
            # the verification is about to reject; the hub counts an inform
            # of the target as success.
            log.info("version report deferred until %s is verified", current.version)
        else:
            _, version = await self.agent.runner.installed()
            await self._request(enos.OtaKind.INFORM, lambda rid: enos.build_inform(rid, version))
        if self._unconfirmed is not None and self._confirming is None:
            self._confirming = asyncio.create_task(self._confirm(self._unconfirmed))
        if self.agent.config.enos.mode is EnosMode.REQUEST:
            asyncio.get_running_loop().create_task(self._poll_once())

    async def _confirm(self, key: str) -> None:
        """Resume an update found on disk unless the cloud says its task is gone.

        The question is a progress report of where the update stands; no reply
        in time counts as "still wanted" (nothing says otherwise).
        """
        record = self.agent.runner.current
        if record is None or record.key != key:
            return
        step = _resume_step(record, self.agent.store.download_path(record))
        reply = await self._call(enos.OtaKind.PROGRESS, lambda rid: enos.build_progress(rid, step))
        self._unconfirmed = None
        if reply is not None and reply.code == enos.EnosCode.DEVICE_TASK_NOT_FOUND:
            await self.agent.runner.abandon(key, TASK_GONE)
            return
        log.info("resuming the update to %s", record.version)
        self.agent.runner.start()

    async def _request(self, kind: enos.OtaKind, build: _Builder) -> str:
        request_id = str(next(self._ids))
        await self.agent.link.publish(self._topic(kind), build(request_id), qos=1)
        return request_id

    async def _call(self, kind: enos.OtaKind, build: _Builder) -> enos.EnosReply | None:
        """A request whose reply matters (``getversion``); ``None`` on timeout."""
        request_id = str(next(self._ids))
        future: asyncio.Future[enos.EnosReply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.agent.link.publish(self._topic(kind), build(request_id), qos=1)
            return await asyncio.wait_for(future, self.agent.config.enos.reply_timeout)
        except TimeoutError:
            log.warning("no %s reply within %ss", kind, self.agent.config.enos.reply_timeout)
            return None
        finally:
            self._pending.pop(request_id, None)

    # -- incoming ---------------------------------------------------------

    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = enos.parse_ota_topic(topic)
        if parsed is None or (parsed.product_key, parsed.device_key) != self.keys:
            return
        if parsed.is_reply:
            if parsed.kind is not enos.OtaKind.UPGRADE:
                await self._on_reply(parsed.kind, payload)
            return
        if parsed.kind is enos.OtaKind.UPGRADE:
            await self._on_upgrade(payload)

    async def _on_reply(self, kind: enos.OtaKind, payload: bytes) -> None:
        try:
            reply = enos.parse_reply(payload)
        except enos.EnosError as exc:
            log.warning("ignoring malformed %s reply: %s", kind, exc)
            return
        if not reply.ok:
            log.warning("%s reply %s: %s", kind, reply.code, reply.message)
        future = self._pending.get(str(reply.id))
        if future is not None and not future.done():
            future.set_result(reply)
        if kind is enos.OtaKind.PROGRESS:
            key = self._progress_of.pop(str(reply.id), None)
            if key is not None and reply.code == enos.EnosCode.DEVICE_TASK_NOT_FOUND:
                # The upgrade was canceled (or timed out) in the cloud: stop
                # working on it, unless its install already started.
                await self.agent.runner.abandon(key, TASK_GONE)

    async def _upgrade_reply(
        self, request_id: enos.MessageId | None, code: int, message: str | None = None
    ) -> None:
        if code == enos.EnosCode.SUCCESS:
            payload = enos.build_reply(request_id)
        else:
            payload = enos.build_error_reply(request_id, code, message)
        await self.agent.link.publish(self._topic(enos.OtaKind.UPGRADE, reply=True), payload)

    async def _on_upgrade(self, payload: bytes) -> None:
        try:
            request = enos.parse_request(payload)
            firmware = enos.parse_firmware(request.params)
        except enos.EnosError as exc:
            log.warning("malformed upgrade command: %s", exc)
            request_id = _id_of(payload)
            await self._upgrade_reply(request_id, exc.code, str(exc))
            return
        code, message = await self._offer(firmware, pushed=True)
        await self._upgrade_reply(request.id, code, message)

    async def _offer(self, firmware: enos.Firmware, *, pushed: bool) -> tuple[int, str | None]:
        """Accept ``firmware`` unless it runs already or another job is active."""
        runner = self.agent.runner
        key = f"{firmware.version}:{firmware.sign.lower()}"
        _, version = await runner.installed()
        if version == firmware.version and not runner.busy:
            # Already done: say so again, the cloud decides success by inform.
            await self._request(
                enos.OtaKind.INFORM, lambda rid: enos.build_inform(rid, firmware.version)
            )
            return enos.EnosCode.SUCCESS, None
        if runner.busy:
            if runner.current is not None and runner.current.key == key:
                return enos.EnosCode.SUCCESS, None
            return enos.EnosCode.HANDLER_FAILED, BUSY_MESSAGE
        done = self.agent.state.finished(key)
        if not pushed and done is not None and done.outcome is not Outcome.SUCCEEDED:
            return enos.EnosCode.SUCCESS, None  # not polled into a retry loop
        checksums: dict[str, str] = {}
        if firmware.sign_method.lower() == "md5":
            checksums[Algorithm.MD5.value] = firmware.sign
        if firmware.sha256:
            checksums[Algorithm.SHA256.value] = firmware.sha256
        direct = enos.is_direct_file_url(firmware.file_url)
        record = UpdateRecord(
            key=key,
            name=self.agent.config.version.name,
            version=firmware.version,
            urls=[firmware.file_url] if direct else [],
            checksums=checksums,
            size=firmware.file_size,
            extra={} if direct else {FILE_URI: firmware.file_url},
        )
        runner.accept(record)
        return enos.EnosCode.SUCCESS, None

    # -- request mode -------------------------------------------------------

    async def _poll_once(self) -> None:
        if self.agent.runner.busy:
            return
        reply = await self._call(enos.OtaKind.GETVERSION, enos.build_getversion)
        if reply is None or not reply.ok:
            return
        try:
            offered = enos.parse_getversion_data(reply.data)
        except enos.EnosError as exc:
            log.warning("malformed getversion reply: %s", exc)
            return
        _, version = await self.agent.runner.installed()
        for firmware in offered:
            if firmware.version != version:
                await self._offer(firmware, pushed=False)
                return

    async def background(self) -> None:
        if self.agent.config.enos.mode is not EnosMode.REQUEST:
            return
        while True:
            await asyncio.sleep(self.agent.config.enos.poll_interval)
            await self.agent.link.connected.wait()
            await self._poll_once()

    # -- download -----------------------------------------------------------

    async def fetch(self, record: UpdateRecord, dest: Path, on_progress: ProgressCallback) -> int:
        file_uri = record.extra.get(FILE_URI)
        if not isinstance(file_uri, str):
            return await super().fetch(record, dest, on_progress)
        cfg = self.agent.config
        if cfg.enos.http_broker is None:
            # Fails as a download failure (step -2) with this reason as desc.
            raise DownloadError(
                f"fileUrl {file_uri!r} is not an http(s) URL and no EnOS HTTP broker "
                "is configured (enos.http_broker) to download it through"
            )
        source = BrokerFile(cfg.enos.http_broker, cfg.enos, cfg.download, file_uri)
        return await self.download([source], record, dest, on_progress)

    # -- reports ----------------------------------------------------------

    async def _progress(
        self, key: str, step: int, desc: str | None = None, *, best_effort: bool = False
    ) -> None:
        request_id = str(next(self._ids))
        self._progress_of[request_id] = key
        while len(self._progress_of) > _TRACKED_PROGRESS:
            del self._progress_of[next(iter(self._progress_of))]
        await self.agent.link.publish(
            self._topic(enos.OtaKind.PROGRESS),
            enos.build_progress(request_id, step, desc),
            qos=1,
            best_effort=best_effort,
        )

    async def report(self, record: UpdateRecord, step: Step, percent: int | None = None) -> None:
        if step is Step.DOWNLOADING:
            await self._progress(record.key, (percent or 0) * 80 // 100, best_effort=bool(percent))
        elif step is Step.VERIFIED:
            await self._progress(record.key, 90)
        elif step is Step.INSTALLING:
            await self._progress(record.key, 100)
        elif step is Step.SUCCEEDED:
            await self._request(
                enos.OtaKind.INFORM, lambda rid: enos.build_inform(rid, record.version)
            )
        elif step is Step.FAILED:
            code = _FAILURE_STEP.get(record.failure, enos.ProgressFailure.UPGRADE_FAILED)
            await self._progress(record.key, int(code), record.reason)


def _resume_step(record: UpdateRecord, download: Path) -> int:
    """The progress step of an update found on disk, as last reported (at most)."""
    if record.phase is Phase.VERIFIED:
        return 90
    if record.phase is Phase.DOWNLOADED:
        return 80
    try:
        have = download.stat().st_size
    except FileNotFoundError:
        return 0
    if not record.size:
        return 0
    return min(have, record.size) * 80 // record.size


def _id_of(payload: bytes) -> enos.MessageId | None:
    """The id of a command that failed to parse, when there is one to echo."""
    try:
        request = enos.parse_request(payload)
    except enos.EnosError:
        return None
    return request.id
