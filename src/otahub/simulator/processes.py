"""``--processes P``: the fleet dealt out over P worker processes, counted as one.

Workers are forked before any event loop runs; each takes every P-th
device and sends its counters up a pipe once a second, its final ones last.
The parent draws the live view from their sum, passes SIGTERM/SIGINT
(stop) and SIGUSR1 (clear faults) on, and merges the finals.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkProcess
from pathlib import Path
from types import FrameType
from typing import Any

from otahub.simulator.config import DeviceSpec, SimConfig
from otahub.simulator.live import Display
from otahub.simulator.runner import run, run_fleet
from otahub.simulator.stats import merge

log = logging.getLogger("otahub.simulator")

FINAL = "final"


def _worker(
    cfg: SimConfig,
    specs: Sequence[DeviceSpec],
    duration: float | None,
    record: Path | None,
    clear_faults: bool,
    pipe: Connection,
) -> None:
    def report(counts: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            pipe.send(counts)

    final = run(
        run_fleet(
            cfg, specs, duration=duration, record=record, report=report, clear_faults=clear_faults
        )
    )
    pipe.send({**final, FINAL: True})
    pipe.close()


def run_processes(
    cfg: SimConfig,
    specs: Sequence[DeviceSpec],
    processes: int,
    *,
    duration: float | None,
    record: Path | None,
    display: Display,
    clear_faults: bool = False,
) -> dict[str, Any]:
    """Run ``specs`` over ``processes`` workers; returns the merged final counters."""
    ctx = multiprocessing.get_context("fork")
    workers: list[ForkProcess] = []
    pipes: dict[Connection, int] = {}
    for k in range(processes):
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker,
            args=(cfg, list(specs[k::processes]), duration, record, clear_faults, writer),
            name=f"simulate-{k}",
        )
        proc.start()
        writer.close()
        workers.append(proc)
        pipes[reader] = k

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in workers:
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    previous = {
        s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    }
    latest: dict[int, dict[str, Any]] = {}
    finals: dict[int, dict[str, Any]] = {}
    start = time.monotonic()
    try:
        while pipes:
            for ready in wait(list(pipes), timeout=1.0):
                reader = next(p for p in pipes if p is ready)
                try:
                    counts = reader.recv()
                except EOFError:
                    k = pipes.pop(reader)
                    if k not in finals:
                        log.error("simulator worker %d ended without its final counts", k)
                    continue
                k = pipes[reader]
                latest[k] = counts
                if counts.get(FINAL):
                    finals[k] = counts
            if latest:
                display.tick(merge(list(latest.values())), time.monotonic() - start)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for proc in workers:
            proc.join()
    return merge(list(finals.values()) or list(latest.values()))
