"""An EnOS device: signed login, ``inform`` on connect, ``upgrade`` pushed without subscription.

Like the SDK samples (``fastPublish``) it subscribes to nothing: the
upgrade command reaches it unsubscribed, and no reply is waited for.
``upgrade_reply`` 200 on acceptance; progress ``0`` at the start, ``80``
downloaded, ``90`` verified, ``100`` installing; then ``inform`` of the
new version. Failures are progress ``-2`` (download), ``-3`` (verification)
or ``-4`` (burning) with ``desc``. The image is fetched from an absolute
``fileUrl``, or for any other ``fileUrl`` through the EnOS HTTP broker pair
at the hub's HTTP address (``/auth/{pk}/{dk}`` login, then
``/multipart/.../file/download``), with Range resume; MD5 ``sign`` and
otahub's ``sha256`` are both checked.
"""

from __future__ import annotations

import itertools
import logging
import time

import httpx

from otahub.mqtt.packets import Connect
from otahub.protocols import enos
from otahub.protocols.checksums import Algorithm
from otahub.simulator.config import DeviceSpec, Dialect, FailAt
from otahub.simulator.device import Fleet, Job, SimDevice, Step, UpdateFailed

log = logging.getLogger("otahub.simulator")

BUSY_MESSAGE = "device is busy with another upgrade"

_PROGRESS: dict[Step, int] = {
    Step.ACCEPTED: 0,
    Step.DOWNLOADED: 80,
    Step.VERIFIED: 90,
    Step.INSTALLING: 100,
}
_FAILURE_STEP: dict[FailAt | None, int] = {
    FailAt.DOWNLOAD: enos.ProgressFailure.DOWNLOAD_FAILED,
    FailAt.VERIFY: enos.ProgressFailure.VERIFICATION_FAILED,
    FailAt.INSTALL: enos.ProgressFailure.BURNING_FAILED,
}


class EnosDevice(SimDevice):
    dialect = Dialect.ENOS

    def __init__(self, spec: DeviceSpec, fleet: Fleet) -> None:
        super().__init__(spec, fleet)
        self._ids = itertools.count(1)

    def _topic(self, kind: enos.OtaKind, *, reply: bool = False) -> str:
        return enos.ota_topic(self.spec.product_key, self.spec.device_key, kind, reply=reply)

    def connect_packet(self) -> Connect:
        login = enos.build_login(
            self.spec.product_key,
            self.spec.device_key,
            self.spec.secret,
            timestamp=str(int(time.time() * 1000)),
        )
        return Connect(
            client_id=login.client_id,
            username=login.username,
            password=login.password.encode(),
            keep_alive=self.fleet.cfg.keepalive,
        )

    def on_connect(self) -> None:
        if self.job is not None and self.job.installing:
            # After step 100 the hub reads another version as a rollback; a real
            # device is rebooting into the new one and informs that when it is up.
            return
        self.publish_now(
            self._topic(enos.OtaKind.INFORM), enos.build_inform(str(next(self._ids)), self.version)
        )

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = enos.parse_ota_topic(topic)
        if (
            parsed is None
            or parsed.is_reply
            or parsed.kind is not enos.OtaKind.UPGRADE
            or (parsed.product_key, parsed.device_key) != (self.spec.product_key, self.name)
        ):
            return
        reply_topic = self._topic(enos.OtaKind.UPGRADE, reply=True)
        try:
            request = enos.parse_request(payload)
            firmware = enos.parse_firmware(request.params)
        except enos.EnosError as exc:
            log.warning("%s: malformed upgrade command: %s", self.name, exc)
            self.publish_now(reply_topic, enos.build_error_reply(None, exc.code, str(exc)))
            return
        key = f"{firmware.version}:{firmware.sign.lower()}"
        if self.job is not None:
            if self.job.key == key:
                self.publish_now(reply_topic, enos.build_reply(request.id))
            else:
                self.publish_now(
                    reply_topic,
                    enos.build_error_reply(request.id, enos.EnosCode.HANDLER_FAILED, BUSY_MESSAGE),
                )
            return
        self.publish_now(reply_topic, enos.build_reply(request.id))
        if firmware.version == self.version:
            # done already: say so again, the cloud decides success by inform
            self.on_connect()
            return
        checksums: dict[str, str] = {}
        if firmware.sign_method.lower() == "md5":
            checksums[Algorithm.MD5.value] = firmware.sign
        if firmware.sha256:
            checksums[Algorithm.SHA256.value] = firmware.sha256
        self.start(
            Job(
                key=key,
                name="",
                version=firmware.version,
                size=firmware.file_size,
                checksums=checksums,
                context=firmware.file_url,
            )
        )

    async def report(self, job: Job, step: Step) -> None:
        request_id = str(next(self._ids))
        if step is Step.SUCCEEDED:
            await self.send(
                self._topic(enos.OtaKind.INFORM),
                enos.build_inform(request_id, job.version),
                reliable=True,
            )
        elif step is Step.FAILED:
            code = _FAILURE_STEP.get(job.failure, enos.ProgressFailure.UPGRADE_FAILED)
            await self.send(
                self._topic(enos.OtaKind.PROGRESS),
                enos.build_progress(request_id, int(code), job.reason),
                reliable=True,
            )
        elif step in _PROGRESS:
            await self.send(
                self._topic(enos.OtaKind.PROGRESS), enos.build_progress(request_id, _PROGRESS[step])
            )

    async def download(self, job: Job) -> None:
        url = str(job.context)
        if not enos.is_direct_file_url(url):
            url = await self._broker_url(url)
        await self.http_download(job, [url])

    async def _broker_url(self, file_uri: str) -> str:
        """Log in to the EnOS HTTP broker (the hub's HTTP address) for a relative ``fileUrl``."""
        broker = self.fleet.cfg.http_url.rstrip("/")
        pk, dk = self.spec.product_key, self.spec.device_key
        body = enos.build_http_auth_request(
            pk, dk, self.spec.secret, sdk_version="otahub-simulator"
        )
        try:
            response = await self.fleet.http.post(
                broker + enos.http_auth_path(pk, dk),
                content=body,
                headers={"Content-Type": "application/json"},
            )
            session_id = enos.parse_http_auth_response(response.content)
        except (httpx.HTTPError, enos.EnosError) as exc:
            raise UpdateFailed(
                FailAt.DOWNLOAD, f"EnOS HTTP broker login at {broker}: {exc}"
            ) from None
        return broker + enos.http_download_target(pk, dk, session_id, file_uri)
