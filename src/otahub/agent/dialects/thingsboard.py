"""The ``thingsboard`` dialect: a ThingsBoard / ServicePleX device, firmware (``fw_*``)
and, with ``thingsboard.software.enabled``, software (``sw_*``).

On every connect: telemetry ``current_fw_title``/``current_fw_version`` (and
``current_sw_*``), subscriptions (attribute responses, attribute pushes,
chunk responses of each package kind, ``v2/fw/error``; exact strings the
server accepts), then one attribute request for the OTA keys of both kinds.
An update starts when the assignment (``fw_title``/``fw_version``, or
``sw_*``) changes to a package other than the running one; firmware and
software take turns, one at a time. Nothing else starts one: not a push of
other keys (the ``{"deleted": [...]}`` before every assignment, an unrelated
shared attribute), not a reconnect or restart, whatever the last attempt's
outcome. The assignment acted on is persisted (``AgentState.assignments``).
When the running package is unassigned or replaced before its install hook
started, the agent stops working on it and reports nothing more about it:
ThingsBoard's telemetry names no update, so a late report would count for
the package assigned now. An update found on disk at startup resumes only
after the first attribute response says its package is still assigned.

The image comes over MQTT in chunks (``v2/fw/request/{rid}/chunk/{n}``, or
``v2/sw/…`` for software, a new ``rid`` per update and unique across both
kinds), or over HTTP when the package has an external ``fw_url``/``sw_url``.
Chunks are written at their offsets; after a reconnect or a restart the
download continues with the first chunk not completely on disk. Errors for
both kinds arrive on ``v2/fw/error``, as upstream sends them.

=============  ==============================================================
step           ``fw_state`` (``sw_state``) telemetry
=============  ==============================================================
downloading    ``DOWNLOADING`` (once, when the download starts)
downloaded     ``DOWNLOADED``
verified       ``VERIFIED``
installing     ``UPDATING``
succeeded      ``UPDATED`` with the new ``current_fw_title``/``current_fw_version``
failed         ``FAILED`` with ``fw_error``
=============  ==============================================================
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otahub.agent.dialects.base import DialectClient, Step
from otahub.agent.download import DownloadError, ProgressCallback
from otahub.agent.link import ClientOptions
from otahub.agent.state import PackageKind, Phase, UpdateRecord
from otahub.protocols import thingsboard as tb
from otahub.protocols._json import JSONValue

if TYPE_CHECKING:
    from otahub.agent.app import Agent

log = logging.getLogger(__name__)

_KIND: dict[tb.PackageType, PackageKind] = {
    tb.PackageType.FIRMWARE: PackageKind.FIRMWARE,
    tb.PackageType.SOFTWARE: PackageKind.SOFTWARE,
}
_PACKAGE: dict[PackageKind, tb.PackageType] = {kind: pkg for pkg, kind in _KIND.items()}

_FW_STATE: dict[Step, tb.FwState] = {
    Step.DOWNLOADED: tb.FwState.DOWNLOADED,
    Step.VERIFIED: tb.FwState.VERIFIED,
    Step.INSTALLING: tb.FwState.UPDATING,
    Step.SUCCEEDED: tb.FwState.UPDATED,
    Step.FAILED: tb.FwState.FAILED,
}


class ThingsBoardClient(DialectClient):
    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self._shared: dict[str, JSONValue] = {}
        self._request_id = 0
        #: (package, rid, chunk) -> the future its response resolves.
        self._waiting: dict[tuple[tb.PackageType, str, int], asyncio.Future[bytes]] = {}
        self._server_error: asyncio.Future[str] | None = None
        #: Set when a connection is ready for chunk requests (``on_connect`` done).
        self._reconnected = asyncio.Event()
        #: ``link.connections`` of the connection ``on_connect`` last completed for.
        self._ready_connection = 0
        #: An update found on disk waits for the first attribute response to
        #: say whether its package is still assigned (see :meth:`hold_resume`).
        self._unconfirmed = False

    def hold_resume(self, record: UpdateRecord) -> bool:
        # Unassigned while the agent was stopped, the push never reached it.
        if record.phase in (Phase.INSTALLING, Phase.REBOOT_PENDING):
            return False
        self._unconfirmed = True
        return True

    @property
    def packages(self) -> tuple[tb.PackageType, ...]:
        if self.agent.config.thingsboard.software.enabled:
            return (tb.PackageType.FIRMWARE, tb.PackageType.SOFTWARE)
        return (tb.PackageType.FIRMWARE,)

    def client_options(self) -> ClientOptions:
        cfg = self.agent.config
        return ClientOptions(identifier=cfg.mqtt.client_id, username=cfg.thingsboard.token)

    async def on_connect(self) -> None:
        link = self.agent.link
        current: dict[str, JSONValue] = {}
        for package in self.packages:
            name, version = await self.agent.runner.installed(_KIND[package])
            current[f"current_{package.prefix}_title"] = name
            current[f"current_{package.prefix}_version"] = version
        await link.publish(tb.TELEMETRY_TOPIC, tb.build_telemetry(current))
        filters = [tb.ATTRIBUTES_RESPONSE_FILTER, tb.ATTRIBUTES_TOPIC]
        filters += [tb.chunk_response_filter(package) for package in self.packages]
        filters.append(tb.FW_ERROR_TOPIC)  # software errors come here too
        for topic_filter in filters:
            await link.subscribe(topic_filter, qos=1)
        self._ready_connection = link.connections
        self._reconnected.set()
        await self._request_attributes()

    async def _request_attributes(self) -> None:
        self._request_id += 1
        keys = [
            tb.attribute_key(package, key)
            for package in self.packages
            for key in (*tb.REQUESTED_KEYS, tb.OtaKey.URL)
        ]
        await self.agent.link.publish(
            tb.attributes_request_topic(self._request_id),
            tb.build_attribute_request(shared_keys=keys),
        )

    # -- incoming ---------------------------------------------------------

    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        chunk = tb.parse_chunk_response_topic(topic)
        if chunk is not None:
            future = self._waiting.pop((chunk.package, chunk.request_id, chunk.chunk), None)
            if future is not None and not future.done():
                future.set_result(payload)
            return
        if topic == tb.FW_ERROR_TOPIC:
            text = payload.decode("utf-8", errors="replace")
            log.warning("server reports an OTA error: %s", text)
            if self._server_error is not None and not self._server_error.done():
                self._server_error.set_result(text)
            return
        try:
            if topic.startswith(tb.ATTRIBUTES_RESPONSE_PREFIX):
                response = tb.parse_attributes_response(payload)
                self._shared.update(response.shared)
                await self._consider()  # abandons an update no longer assigned
                if self._unconfirmed:
                    self._unconfirmed = False
                    self.agent.runner.start()
            elif topic == tb.ATTRIBUTES_TOPIC:
                push = tb.parse_attribute_push(payload)
                for key in push.deleted:
                    self._shared.pop(key, None)
                self._shared.update(push.updated)
                await self._consider()
        except tb.ThingsBoardError as exc:
            log.warning("ignoring malformed message on %s: %s", topic, exc)

    async def _consider(self) -> None:
        """Act on the packages the shared attributes assign now."""
        for kind in self.packages:
            await self._consider_package(kind)

    async def _consider_package(self, kind: tb.PackageType) -> None:
        """Start an update when the assignment of ``kind`` changed to a package not running.

        What decides is the current state: the assignment now, the assignment
        last acted on and the version running now. History does not: a version
        installed before is installed again when assigned again (a rollback),
        and a package that failed is tried again only when it is assigned anew.
        """
        try:
            package = tb.package_from_attributes(kind, self._shared)
        except tb.ThingsBoardError as exc:
            log.warning("unusable %s attributes: %s", _KIND[kind], exc)
            return
        assigned = None if package is None else package.assignment
        runner = self.agent.runner
        state = self.agent.state
        current = runner.current
        if (
            current is not None
            and current.kind is _KIND[kind]
            and (current.name, current.version) != assigned
        ):
            # Unassigned or replaced: the server no longer wants it, and a
            # report about it would land on whatever is assigned now.
            what = "unassigned" if assigned is None else "replaced by another package"
            await runner.abandon(current.key, f"the package was {what}")
        if assigned is None:
            if state.assignments.pop(_KIND[kind], None) is not None:
                runner.save()
            return
        if state.assignments.get(_KIND[kind]) == assigned:
            return  # not a reassignment: nothing starts again
        if runner.busy:
            log.info("%s %s %s assigned; starts after the current update", _KIND[kind], *assigned)
            return
        state.assignments[_KIND[kind]] = assigned
        runner.save()
        if assigned == await runner.installed(_KIND[kind]):
            return
        assert package is not None
        checksums: dict[str, str] = {}
        if package.checksum and package.checksum_algorithm:
            checksums[package.checksum_algorithm] = package.checksum
        record = UpdateRecord(
            key=f"{kind.prefix}:{package.title}:{package.version}",
            kind=_KIND[kind],
            name=package.title,
            version=package.version,
            urls=[package.url] if package.url else [],
            checksums=checksums,
            size=package.size,
            extra={"rid": self._next_rid(), "chunk_size": self.agent.config.thingsboard.chunk_size},
        )
        log.info("starting %s %s %s", record.kind, record.name, record.version)
        runner.accept(record)

    def _next_rid(self) -> int:
        # A new request id for every update, firmware or software: the server
        # caches rid -> package per session.
        rids = [int(h.extra.get("rid", 0)) for h in self.agent.state.history]
        return max(rids, default=0) + 1

    async def on_idle(self) -> None:
        await self._consider()

    # -- reports ----------------------------------------------------------

    async def report(self, record: UpdateRecord, step: Step, percent: int | None = None) -> None:
        if step is Step.DOWNLOADING:
            if percent:
                return
            state = tb.FwState.DOWNLOADING
        elif step in _FW_STATE:
            state = _FW_STATE[step]
        else:
            return
        if step is Step.SUCCEEDED:
            name, version = record.name, record.version
        else:
            name, version = await self.agent.runner.installed(record.kind)
        error = record.reason if step is Step.FAILED else None
        await self.agent.link.publish(
            tb.TELEMETRY_TOPIC,
            tb.build_state_telemetry(
                _PACKAGE[record.kind],
                state,
                current_title=name,
                current_version=version,
                error=error,
            ),
        )

    # -- chunked download ---------------------------------------------------

    async def fetch(self, record: UpdateRecord, dest: Path, on_progress: ProgressCallback) -> int:
        if record.urls:
            return await super().fetch(record, dest, on_progress)
        if record.size is None:
            prefix = _PACKAGE[record.kind].prefix
            raise DownloadError(f"{prefix}_size is missing, so the end of the image is unknown")
        size = record.size
        chunk_size = int(record.extra.get("chunk_size", self.agent.config.thingsboard.chunk_size))
        rid = str(record.extra["rid"])
        # Only whole chunks count: a partly written one is fetched again.
        index = await asyncio.to_thread(_truncate_to_chunks, dest, chunk_size)
        # Whole chunks already on disk are never asked for again.
        log.info(
            "%s download (rid %s) starts at chunk %d of %d",
            record.kind,
            rid,
            index,
            -(-size // chunk_size),
        )
        received = 0
        loop = asyncio.get_running_loop()
        self._server_error = loop.create_future()
        try:
            with _open_rw(dest) as f:
                while index * chunk_size < size:
                    data = await self._chunk(_PACKAGE[record.kind], rid, index, chunk_size)
                    expected = min(chunk_size, size - index * chunk_size)
                    if len(data) != expected:
                        raise DownloadError(
                            f"chunk {index} has {len(data)} bytes, expected {expected}"
                        )
                    f.seek(index * chunk_size)
                    f.write(data)
                    received += len(data)
                    record.bytes_received += len(data)
                    index += 1
                    on_progress(min(index * chunk_size, size), size)
                f.flush()
                await asyncio.to_thread(os.fsync, f.fileno())
        finally:
            self._server_error = None
        return received

    async def _chunk(self, package: tb.PackageType, rid: str, index: int, chunk_size: int) -> bytes:
        """Request one chunk until it arrives; re-requested after a reconnect or a timeout."""
        cfg = self.agent.config
        link = self.agent.link
        timeouts = 0
        while True:
            # Only on a connection whose subscriptions are in place: a request
            # sent before on_connect finished would be sent again after it.
            while not (link.connected.is_set() and self._ready_connection == link.connections):
                self._reconnected.clear()
                await self._reconnected.wait()
            self._reconnected.clear()
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self._waiting[(package, rid, index)] = future
            log.debug("requesting chunk %d (rid %s)", index, rid)
            published = await link.publish(
                tb.chunk_request_topic(package, rid, index), str(chunk_size).encode(), qos=1
            )
            assert published
            waiters: list[asyncio.Future[Any]] = [
                future,
                asyncio.ensure_future(self._reconnected.wait()),
            ]
            if self._server_error is not None:
                waiters.append(self._server_error)
            done, _ = await asyncio.wait(
                waiters, timeout=cfg.thingsboard.chunk_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            waiters[1].cancel()
            self._waiting.pop((package, rid, index), None)
            if future in done:
                return future.result()
            if self._server_error is not None and self._server_error.done():
                raise DownloadError(f"server error: {self._server_error.result()}")
            if not done:
                timeouts += 1
                if timeouts > cfg.download.retries:
                    raise DownloadError(f"no answer for chunk {index} after {timeouts} requests")
                log.info("chunk %d timed out; asking again", index)


def _truncate_to_chunks(path: Path, chunk_size: int) -> int:
    """Cut ``path`` back to whole chunks; returns the number of whole chunks."""
    try:
        have = path.stat().st_size
    except FileNotFoundError:
        path.touch()
        return 0
    whole = have // chunk_size
    if have != whole * chunk_size:
        os.truncate(path, whole * chunk_size)
    return whole


def _open_rw(path: Path) -> Any:
    return open(path, "r+b")
