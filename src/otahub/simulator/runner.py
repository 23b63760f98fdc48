"""One process's share of the fleet: its devices, the shared timers, signals, the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from otahub.simulator import http, mqtt
from otahub.simulator.config import DeviceSpec, Dialect, SimConfig
from otahub.simulator.device import Fleet, SimDevice
from otahub.simulator.enos import EnosDevice
from otahub.simulator.faults import FaultSwitch
from otahub.simulator.stats import Stats, open_record
from otahub.simulator.tedge_legacy import TedgeLegacyDevice
from otahub.simulator.thin_edge import ThinEdgeDevice
from otahub.simulator.thingsboard import ThingsBoardDevice

log = logging.getLogger("otahub.simulator")

DEVICE_CLASSES: dict[Dialect, type[SimDevice]] = {
    Dialect.THINGSBOARD: ThingsBoardDevice,
    Dialect.ENOS: EnosDevice,
    Dialect.THIN_EDGE: ThinEdgeDevice,
    Dialect.TEDGE_LEGACY: TedgeLegacyDevice,
}
#: HTTP connections one process keeps open to the hub for downloads.
HTTP_CONNECTIONS = 100
#: Descriptors a process needs besides its devices' sockets (HTTP pool, logs, pipes).
SPARE_FILES = HTTP_CONNECTIONS + 64

Report = Callable[[dict[str, Any]], None]
T = TypeVar("T")


async def run_fleet(
    cfg: SimConfig,
    specs: Sequence[DeviceSpec],
    *,
    duration: float | None = None,
    record: Path | None = None,
    report: Report | None = None,
    report_interval: float = 1.0,
    clear_faults: bool = False,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run ``specs`` until SIGINT/SIGTERM or ``duration``; returns the final counters.

    SIGUSR1 clears every fault. ``report`` gets the counters every
    ``report_interval`` seconds (the live view, or a parent process).
    ``clear_faults``: a SIGUSR1 came before the devices started. Setting
    ``stop`` ends the run as a signal does (a program driving the fleet).
    """
    raise_open_files_limit(len(specs) + SPARE_FILES)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    switch = FaultSwitch()
    if clear_faults:
        switch.clear()
    stats = Stats(record=open_record(record))
    handled = []
    for signum, action in (
        (signal.SIGINT, stop.set),
        (signal.SIGTERM, stop.set),
        (signal.SIGUSR1, switch.clear),
    ):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _logged(signum, action))
            handled.append(signum)
    pinger = mqtt.Pinger(cfg.keepalive)
    client = http.HttpPool(cfg.request_timeout, HTTP_CONNECTIONS)
    fleet = Fleet(cfg, stats, switch, pinger, client, asyncio.Semaphore(cfg.connect_concurrency))
    devices = [DEVICE_CLASSES[spec.dialect](spec, fleet) for spec in specs]
    stats.counts["devices"] = len(devices)
    tasks = [loop.create_task(device.run(), name=device.name) for device in devices]
    helpers = [loop.create_task(pinger.run())]
    if report is not None:
        helpers.append(loop.create_task(_report_every(report, stats, report_interval)))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        final = stats.snapshot()
    finally:
        for device in devices:
            tasks.extend(device.tasks)
        for task in [*tasks, *helpers]:
            task.cancel()
        await asyncio.gather(*tasks, *helpers, return_exceptions=True)
        await client.aclose()
        for signum in handled:
            loop.remove_signal_handler(signum)
        if stats.record is not None:
            stats.record.close()
    return final


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop where it is installed (less CPU per connection), else asyncio."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def raise_open_files_limit(needed: int) -> None:
    """Lift the soft limit on open files towards ``needed`` (up to the hard limit).

    Every device holds a socket, and the usual soft limit (1,024) would
    refuse the rest of a large fleet its connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning(
                "open files are limited to %d (hard limit); %d devices need about %d: "
                "raise the limit (ulimit -Hn) or use more --processes",
                target,
                needed - SPARE_FILES,
                needed,
            )


def _logged(signum: int, action: Callable[[], None]) -> Callable[[], None]:
    def handler() -> None:
        if signum == signal.SIGUSR1:
            log.info("SIGUSR1: faults cleared")
        action()

    return handler


async def _report_every(report: Report, stats: Stats, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        report(stats.snapshot())
