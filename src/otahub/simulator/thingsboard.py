"""A ThingsBoard device as ``tb-mqtt-client`` drives OTA, without its sleeps.

Connects with its access token; on every connection reports
``current_fw_title``/``current_fw_version``, subscribes (exact filters the
server accepts) and requests the OTA shared attributes. An update starts
when the attributes name a package other than the running one: from an
attribute push always (the hub assigned it anew), from an attribute
response (after a connect) only if that package has not failed here
before, so a failing device does not loop as the SDK does. The image comes
in chunks on ``v2/fw/request/{rid}/chunk/{n}``, one at a time, a new
``rid`` per update; after a lost connection the next chunk is asked for on
the new one. ``fw_state``: ``DOWNLOADING``, ``DOWNLOADED``, ``VERIFIED``,
``UPDATING``, then ``UPDATED`` with the new version, or ``FAILED`` with
``fw_error``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from otahub.mqtt.packets import Connect
from otahub.protocols import thingsboard as tb
from otahub.protocols._json import JSONValue
from otahub.simulator.config import DeviceSpec, Dialect, FailAt
from otahub.simulator.device import Fleet, Job, SimDevice, Step, UpdateFailed

log = logging.getLogger("otahub.simulator")

FW = tb.PackageType.FIRMWARE
#: Unanswered requests for one chunk before the update fails.
CHUNK_ATTEMPTS = 5

_FW_STATE: dict[Step, tb.FwState] = {
    Step.ACCEPTED: tb.FwState.DOWNLOADING,
    Step.DOWNLOADED: tb.FwState.DOWNLOADED,
    Step.VERIFIED: tb.FwState.VERIFIED,
    Step.INSTALLING: tb.FwState.UPDATING,
    Step.SUCCEEDED: tb.FwState.UPDATED,
    Step.FAILED: tb.FwState.FAILED,
}


class ThingsBoardDevice(SimDevice):
    dialect = Dialect.THINGSBOARD

    def __init__(self, spec: DeviceSpec, fleet: Fleet) -> None:
        super().__init__(spec, fleet)
        self.title = fleet.cfg.firmware_name
        self._shared: dict[str, JSONValue] = {}
        self._request_id = 0
        self._rid = 0
        self._chunks: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._server_error: asyncio.Future[str] | None = None
        #: a package was assigned anew while another update ran
        self._held_back = False

    def connect_packet(self) -> Connect:
        return Connect(
            client_id=self.name, username=self.spec.token, keep_alive=self.fleet.cfg.keepalive
        )

    def on_connect(self) -> None:
        current: dict[str, JSONValue] = {
            "current_fw_title": self.title,
            "current_fw_version": self.version,
        }
        self.publish_now(tb.TELEMETRY_TOPIC, tb.build_telemetry(current))
        assert self.conn is not None
        self.conn.subscribe(
            tb.ATTRIBUTES_RESPONSE_FILTER,
            tb.ATTRIBUTES_TOPIC,
            tb.FW_CHUNK_FILTER,
            tb.FW_ERROR_TOPIC,
        )
        self._request_id += 1
        self.publish_now(
            tb.attributes_request_topic(self._request_id),
            tb.build_attribute_request(
                shared_keys=[tb.attribute_key(FW, k) for k in tb.REQUESTED_KEYS]
            ),
        )

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        chunk = tb.parse_chunk_response_topic(topic)
        if chunk is not None:
            future = self._chunks.pop((chunk.request_id, chunk.chunk), None)
            if future is not None and not future.done():
                future.set_result(payload)
            return
        if topic == tb.FW_ERROR_TOPIC:
            text = payload.decode("utf-8", errors="replace")
            if self._server_error is not None and not self._server_error.done():
                self._server_error.set_result(text)
            return
        try:
            if topic.startswith(tb.ATTRIBUTES_RESPONSE_PREFIX):
                self._shared.update(tb.parse_attributes_response(payload).shared)
                self._consider(pushed=False)
            elif topic == tb.ATTRIBUTES_TOPIC:
                push = tb.parse_attribute_push(payload)
                for key in push.deleted:
                    self._shared.pop(key, None)
                self._shared.update(push.updated)
                self._consider(pushed=True)
        except tb.ThingsBoardError as exc:
            log.warning("%s: ignoring malformed message on %s: %s", self.name, topic, exc)

    def _consider(self, *, pushed: bool) -> None:
        try:
            package = tb.package_from_attributes(FW, self._shared)
        except tb.ThingsBoardError as exc:
            log.warning("%s: unusable firmware attributes: %s", self.name, exc)
            return
        if package is None or package.assignment is None:
            return
        if self.job is not None:
            if pushed and package.assignment != (self.job.name, self.job.version):
                self._held_back = True  # started once this one is over
            return
        if package.assignment == (self.title, self.version):
            return
        key = f"{package.title}:{package.version}"
        if not pushed and self.finished.get(key, None) is not None:
            return  # failed before and not assigned anew
        algorithms: dict[str, str] = {}
        if package.checksum and package.checksum_algorithm:
            algorithms[package.checksum_algorithm] = package.checksum
        self._rid += 1
        self.start(
            Job(
                key=key,
                name=package.title,
                version=package.version,
                size=package.size,
                checksums=algorithms,
                context=str(self._rid),
            )
        )

    def on_idle(self) -> None:
        if self._held_back:
            self._held_back = False
            self._consider(pushed=True)

    async def report(self, job: Job, step: Step) -> None:
        state = _FW_STATE.get(step)
        if state is None:
            return
        succeeded = step is Step.SUCCEEDED
        if succeeded:
            self.title = job.name
        payload = tb.build_state_telemetry(
            FW,
            state,
            current_title=self.title,
            current_version=self.version,
            error=job.reason if step is Step.FAILED else None,
        )
        await self.send(tb.TELEMETRY_TOPIC, payload, reliable=succeeded or step is Step.FAILED)

    async def download(self, job: Job) -> None:
        if job.size is None:
            raise UpdateFailed(
                FailAt.DOWNLOAD, "fw_size is missing: the end of the image is unknown"
            )
        size, chunk_size = job.size, self.fleet.cfg.chunk_size
        count = -(-size // chunk_size)
        rid = str(job.context)
        stats = self.fleet.stats
        index = 0
        # a fault cuts the download halfway through its chunks; an image of
        # one chunk is cut before it (after it there would be nothing to cut)
        cut_at = min(max(1, count // 2), count - 1)
        self._server_error = asyncio.get_running_loop().create_future()
        try:
            while index < count:
                fault = self.interruption(job)
                if fault is not None and index >= cut_at:
                    await self.interrupted(job, fault)
                    continue
                data = await self._chunk(rid, index, chunk_size)
                expected = min(chunk_size, size - index * chunk_size)
                if len(data) != expected:
                    raise UpdateFailed(
                        FailAt.DOWNLOAD, f"chunk {index} has {len(data)} bytes, expected {expected}"
                    )
                job.feed(data)
                stats.add("bytes_downloaded", len(data))
                index += 1
            if count == 0 and (fault := self.interruption(job)) is not None:
                await self.interrupted(job, fault)
        finally:
            self._server_error = None

    async def _chunk(self, rid: str, index: int, chunk_size: int) -> bytes:
        """Ask for one chunk until it arrives, again on the next connection if this one goes."""
        loop = asyncio.get_running_loop()
        unanswered = 0
        while True:
            conn = await self.wait_connected()
            future: asyncio.Future[bytes] = loop.create_future()
            self._chunks[(rid, index)] = future
            conn.publish(tb.chunk_request_topic(FW, rid, index), str(chunk_size).encode(), qos=1)
            waiters: list[asyncio.Future[Any]] = [future, conn.closed]
            if self._server_error is not None:
                waiters.append(self._server_error)
            done, _ = await asyncio.wait(
                waiters, timeout=self.fleet.cfg.request_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            self._chunks.pop((rid, index), None)
            if future in done:
                return future.result()
            if self._server_error is not None and self._server_error.done():
                raise UpdateFailed(FailAt.DOWNLOAD, f"server error: {self._server_error.result()}")
            if not done:
                unanswered += 1
                if unanswered >= CHUNK_ATTEMPTS:
                    raise UpdateFailed(
                        FailAt.DOWNLOAD, f"no answer for chunk {index} after {unanswered} requests"
                    )
