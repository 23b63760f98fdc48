"""What every simulated device does, whatever its dialect: stay connected, run updates.

A device is one object and, while connected, one MQTT connection; it gets a
task of its own for the connection loop and one per update. The update
pipeline is the same for every dialect (download, verify, install, report)
and the dialect subclass says how each step sounds on the wire
(:meth:`SimDevice.report`) and where the bytes come from
(:meth:`SimDevice.download`). Faults are injected here, at the step they
name, so every dialect reports them its own way.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from otahub.mqtt.packets import Connect
from otahub.protocols import checksums
from otahub.simulator import http, mqtt
from otahub.simulator.config import DeviceSpec, Dialect, FailAt, SimConfig
from otahub.simulator.faults import DeviceFaults, Fault, FaultSwitch, choose
from otahub.simulator.stats import Stats

log = logging.getLogger("otahub.simulator")

#: Attempts at a failing HTTP download before the update fails.
DOWNLOAD_ATTEMPTS = 5
#: Finished updates a device remembers, to answer a repeated request
#: with its outcome instead of installing again.
REMEMBERED = 16


class Step(Enum):
    ACCEPTED = "accepted"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    INSTALLING = "installing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class UpdateFailed(Exception):
    def __init__(self, kind: FailAt, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class Fleet:
    """What all devices of a process share."""

    cfg: SimConfig
    stats: Stats
    switch: FaultSwitch
    pinger: mqtt.Pinger
    http: http.HttpPool
    connecting: asyncio.Semaphore


@dataclass(slots=True)
class Job:
    """One update as the device runs it."""

    key: str
    name: str
    version: str
    size: int | None
    #: algorithm -> expected checksum, as the dialect gave it
    checksums: dict[str, str]
    #: what the dialect needs to report on it (the command, a request id)
    context: Any = None
    received: int = 0
    crashed: bool = False
    hashers: dict[str, Any] = field(default_factory=dict)
    failure: FailAt | None = None
    reason: str | None = None
    #: past its last progress report: the device is installing (a real one reboots)
    installing: bool = False

    def reset(self) -> None:
        """Start the download over (the server ignored a Range)."""
        self.received = 0
        self.hashers = {alg: checksums.new(alg) for alg in self.checksums}

    def feed(self, data: bytes) -> None:
        for hasher in self.hashers.values():
            hasher.update(data)
        self.received += len(data)


class SimDevice(ABC):
    dialect: ClassVar[Dialect]

    def __init__(self, spec: DeviceSpec, fleet: Fleet) -> None:
        self.spec = spec
        self.fleet = fleet
        self.faults: DeviceFaults = choose(fleet.cfg.faults, spec.name)
        self.conn: mqtt.MqttConnection | None = None
        self.connected = asyncio.Event()
        self.version = fleet.cfg.initial_version
        self.job: Job | None = None
        #: key -> failure reason (None: succeeded) of the last finished updates
        self.finished: OrderedDict[str, str | None] = OrderedDict()
        self._rotation = spec.index
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.spec.name

    # -- dialect ------------------------------------------------------------

    @abstractmethod
    def connect_packet(self) -> Connect:
        """CONNECT with the device's credentials."""

    @abstractmethod
    def on_connect(self) -> None:
        """Announce the device and subscribe (on every connection)."""

    @abstractmethod
    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Handle one message; never raises for bad input."""

    @abstractmethod
    async def report(self, job: Job, step: Step) -> None:
        """Tell the hub about ``step``; terminal steps are delivered before returning."""

    @abstractmethod
    async def download(self, job: Job) -> None:
        """Fetch the image into ``job.feed``; raises :class:`UpdateFailed`."""

    # -- connection -----------------------------------------------------------

    async def run(self) -> None:
        """Connect, stay connected, reconnect with backoff on every loss; until cancelled."""
        fleet = self.fleet
        cfg = fleet.cfg
        if self.faults.offline and fleet.switch.active:
            fleet.stats.fault(Fault.OFFLINE)
            await fleet.switch.cleared()
        delay = cfg.backoff_initial
        connected_before = False
        while True:
            endpoint = cfg.endpoints[self._rotation % len(cfg.endpoints)]
            try:
                async with fleet.connecting:
                    conn = await mqtt.connect(
                        endpoint,
                        self.connect_packet(),
                        self.on_message,
                        timeout=cfg.request_timeout,
                    )
            except mqtt.ConnectRefused as exc:
                fleet.stats.add("connect_refused")
                log.warning("%s: %s refused the connection: %s", self.name, endpoint, exc)
            except (OSError, TimeoutError, mqtt.ConnectionLost) as exc:
                # out of descriptors is the simulator's own limit, not the hub's: say so
                level = (
                    logging.WARNING
                    if getattr(exc, "errno", None) == errno.EMFILE
                    else logging.DEBUG
                )
                log.log(level, "%s: cannot connect to %s: %s", self.name, endpoint, exc)
            else:
                delay = cfg.backoff_initial
                if connected_before:
                    fleet.stats.add("reconnects")
                connected_before = True
                await self._connected(conn)
            # the next endpoint on every reconnect: a lost hub is not waited for
            self._rotation += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, cfg.backoff_max)

    async def _connected(self, conn: mqtt.MqttConnection) -> None:
        stats = self.fleet.stats
        self.conn = conn
        self.fleet.pinger.connections.add(conn)
        stats.add("connected")
        stats.add("connections")
        self.connected.set()
        try:
            self.on_connect()
            await asyncio.shield(conn.closed)
        finally:
            self.connected.clear()
            self.conn = None
            self.fleet.pinger.connections.discard(conn)
            stats.add("connected", -1)
            if conn.is_open:  # cancelled: the run is ending
                conn.disconnect()

    async def wait_connected(self) -> mqtt.MqttConnection:
        while True:
            conn = self.conn
            if conn is not None and conn.is_open:
                return conn
            self.connected.clear()
            await self.connected.wait()

    def publish_now(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish on the current connection if there is one (announcements)."""
        conn = self.conn
        if conn is not None and conn.is_open:
            conn.publish(topic, payload, qos=qos, retain=retain)

    async def send(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        reliable: bool = False,
    ) -> None:
        """Publish once connected; ``reliable`` waits for the PUBACK, sending again
        on the next connection if this one is lost first."""
        while True:
            conn = await self.wait_connected()
            ack = conn.publish(topic, payload, qos=qos, retain=retain)
            if ack is None or not reliable:
                return
            try:
                await ack
                return
            except mqtt.ConnectionLost:
                continue

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- updates --------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, job: Job) -> None:
        """Run ``job`` unless another one runs (the dialect checks that first)."""
        assert self.job is None
        self.job = job
        job.reset()
        self.spawn(self._update(job))

    def remember(self, key: str, failure: str | None) -> None:
        self.finished[key] = failure
        self.finished.move_to_end(key)
        while len(self.finished) > REMEMBERED:
            self.finished.popitem(last=False)

    async def _update(self, job: Job) -> None:
        stats = self.fleet.stats
        stats.update_started(self.name)
        try:
            await self.report(job, Step.ACCEPTED)
            stats.download_started(self.name)
            await self.download(job)
            await self.report(job, Step.DOWNLOADED)
            self._verify(job)
            await self.report(job, Step.VERIFIED)
            job.installing = True
            await self.report(job, Step.INSTALLING)
            await self._install(job)
        except UpdateFailed as exc:
            job.failure, job.reason = exc.kind, exc.reason
            log.info("%s: update to %s failed: %s", self.name, job.version, exc.reason)
            await self._failed(job)
            return
        except Exception as exc:
            # a defect of the simulator: the hub hears of it rather than waiting forever
            log.exception("%s: update to %s broke", self.name, job.version)
            job.failure, job.reason = None, f"simulator error: {exc!r}"
            await self._failed(job)
            return
        self.version = job.version
        stats.add("updates_succeeded")
        self.remember(job.key, None)
        self.job = None
        await self.report(job, Step.SUCCEEDED)
        self.on_idle()

    async def _failed(self, job: Job) -> None:
        self.fleet.stats.add("updates_failed")
        self.remember(job.key, job.reason)
        self.job = None
        await self.report(job, Step.FAILED)
        self.on_idle()

    def on_idle(self) -> None:  # noqa: B027  # optional hook
        """The last update is over and reported; a dialect may start one it held back."""

    def fault_active(self, kind: FailAt) -> bool:
        return self.faults.fail_at is kind and self.fleet.switch.active

    def _verify(self, job: Job) -> None:
        if job.size is not None and job.received != job.size:
            raise UpdateFailed(
                FailAt.VERIFY, f"size mismatch: expected {job.size} bytes, got {job.received}"
            )
        for algorithm, expected in job.checksums.items():
            actual = job.hashers[algorithm].hexdigest()
            if self.fault_active(FailAt.VERIFY):
                self.fleet.stats.fault(Fault.VERIFY)
                raise UpdateFailed(
                    FailAt.VERIFY,
                    f"{algorithm} checksum mismatch: expected {expected}, "
                    f"got {actual[::-1]} (simulated fault)",
                )
            if not checksums.matches(expected, actual):
                raise UpdateFailed(
                    FailAt.VERIFY,
                    f"{algorithm} checksum mismatch: expected {expected}, got {actual}",
                )

    async def _install(self, job: Job) -> None:
        self.fleet.stats.installed(self.name, self.dialect.value, job.version, job.key)
        await asyncio.sleep(self.fleet.cfg.install_seconds)
        if self.fault_active(FailAt.INSTALL):
            self.fleet.stats.fault(Fault.INSTALL)
            raise UpdateFailed(
                FailAt.INSTALL, "install hook exited with status 1 (simulated fault)"
            )

    # -- download faults ------------------------------------------------------

    def interruption(self, job: Job) -> str | None:
        """The fault that cuts this download short, if any: a crash comes first."""
        if self.fleet.switch.active:
            if self.faults.crash and not job.crashed:
                return Fault.CRASH
            if self.faults.fail_at is FailAt.DOWNLOAD:
                return Fault.DOWNLOAD
        return None

    async def interrupted(self, job: Job, fault: str) -> None:
        """The download was cut at ``fault``: fail, or crash and come back."""
        if fault == Fault.DOWNLOAD:
            self.fleet.stats.fault(Fault.DOWNLOAD)
            raise UpdateFailed(
                FailAt.DOWNLOAD,
                f"download interrupted after {job.received} bytes: connection reset "
                "(simulated fault)",
            )
        job.crashed = True
        self.fleet.stats.fault(Fault.CRASH)
        log.info("%s: crashing after %d bytes of %s", self.name, job.received, job.version)
        conn = self.conn
        if conn is not None:
            conn.abort()
        self.connected.clear()
        await self.wait_connected()

    async def http_download(self, job: Job, urls: list[str]) -> None:
        """Fetch from the first URL that works, resuming with Range after any cut."""
        if not urls:
            raise UpdateFailed(FailAt.DOWNLOAD, "no download URL")
        fleet = self.fleet
        failures = 0
        url = urls[0]
        while True:
            fault = self.interruption(job)
            try:
                cut = await http.fetch(
                    fleet.http,
                    url,
                    offset=job.received,
                    on_data=self._counted(job),
                    on_restart=job.reset,
                    stop_halfway=fault is not None,
                )
            except http.DownloadFailed as exc:
                failures += 1
                if failures >= DOWNLOAD_ATTEMPTS * len(urls):
                    raise UpdateFailed(FailAt.DOWNLOAD, str(exc)) from None
                url = urls[failures % len(urls)]
                await asyncio.sleep(min(fleet.cfg.backoff_max, 0.2 * 2**failures))
                continue
            if fault is not None and cut:
                await self.interrupted(job, fault)
                continue
            if fault == Fault.DOWNLOAD:
                await self.interrupted(job, fault)  # too small to cut: fail all the same
            return

    def _counted(self, job: Job) -> Any:
        stats = self.fleet.stats

        def on_data(data: bytes) -> None:
            job.feed(data)
            stats.add("bytes_downloaded", len(data))

        return on_data
