"""``--processes P``: the fleet dealt out over P worker processes, counted as one.

Workers are forked before any event loop runs; each takes every P-th
device and sends its counters up a pipe once a second, its final ones last.
The parent draws the live view from their sum, passes SIGTERM/SIGINT
(stop) and SIGUSR1 (clear faults) on, and merges the finals. A program
that drives the fleet itself (a benchmark) forks a gated ``Workers``
early, before its own loop runs, and lets them go when the hub is ready.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
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
    report_interval: float,
    gate: Connection | None,
    pipe: Connection,
) -> None:
    def report(counts: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            pipe.send(counts)

    if gate is not None:
        try:
            go = gate.recv()
        except EOFError:
            go = None
        if go is None:  # the parent went away or called it off
            pipe.close()
            return
        cfg = go
    final = run(
        run_fleet(
            cfg,
            specs,
            duration=duration,
            record=record,
            report=report,
            report_interval=report_interval,
            clear_faults=clear_faults,
        )
    )
    pipe.send({**final, FINAL: True})
    pipe.close()


class Workers:
    """``processes`` forked workers, each running every P-th device of ``specs``.

    ``connect_concurrency`` is the fleet's: each worker gets its share, so
    the hub sees as many CONNECTs at once as with one process. ``gated``
    workers wait for ``go`` (with the final configuration) before they start.
    """

    def __init__(
        self,
        cfg: SimConfig,
        specs: Sequence[DeviceSpec],
        processes: int,
        *,
        duration: float | None = None,
        record: Path | None = None,
        clear_faults: bool = False,
        report_interval: float = 1.0,
        gated: bool = False,
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self.processes = processes
        self.procs: list[ForkProcess] = []
        self._gates: list[Connection] = []
        self._pipes: dict[Connection, int] = {}
        self.latest: dict[int, dict[str, Any]] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self._called_off = False
        cfg = self._share(cfg)
        for k in range(processes):
            reader, writer = ctx.Pipe(duplex=False)
            gate_reader: Connection | None = None
            if gated:
                gate_reader, gate_writer = ctx.Pipe(duplex=False)
                self._gates.append(gate_writer)
            proc = ctx.Process(
                target=_worker,
                args=(
                    cfg,
                    list(specs[k::processes]),
                    duration,
                    record,
                    clear_faults,
                    report_interval,
                    gate_reader,
                    writer,
                ),
                name=f"simulate-{k}",
            )
            proc.start()
            writer.close()
            if gate_reader is not None:
                gate_reader.close()
            self.procs.append(proc)
            self._pipes[reader] = k

    def _share(self, cfg: SimConfig) -> SimConfig:
        share = -(-cfg.connect_concurrency // self.processes)
        return replace(cfg, connect_concurrency=max(1, share))

    def go(self, cfg: SimConfig) -> None:
        """Start gated workers on ``cfg`` (e.g. now that the hub's port is known)."""
        cfg = self._share(cfg)
        for gate in self._gates:
            gate.send(cfg)
            gate.close()
        self._gates.clear()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every worker still alive (gated ones are called off)."""
        if self._gates:  # not let go yet: told to end, each ends by itself
            for gate in self._gates:
                with contextlib.suppress(OSError):
                    gate.send(None)
                gate.close()
            self._gates.clear()
            self._called_off = True
            return
        for proc in self.procs:
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    @property
    def running(self) -> bool:
        """Whether any worker may still send counters."""
        return bool(self._pipes)

    def poll(self, timeout: float) -> None:
        """Take in whatever the workers sent within ``timeout`` seconds."""
        for ready in wait(list(self._pipes), timeout=timeout):
            reader = next(p for p in self._pipes if p is ready)
            try:
                counts = reader.recv()
            except EOFError:
                k = self._pipes.pop(reader)
                if k not in self.finals and not self._called_off:
                    log.error("simulator worker %d ended without its final counts", k)
                continue
            k = self._pipes[reader]
            self.latest[k] = counts
            if counts.get(FINAL):
                self.finals[k] = counts

    def counts(self) -> dict[str, Any]:
        """The workers' latest counters as one."""
        return merge(list(self.latest.values()))

    def final(self) -> dict[str, Any]:
        return merge(list(self.finals.values()) or list(self.latest.values()))

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs if proc.pid is not None]

    def join(self) -> None:
        for proc in self.procs:
            proc.join()


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
    workers = Workers(
        cfg, specs, processes, duration=duration, record=record, clear_faults=clear_faults
    )

    def forward(signum: int, _frame: FrameType | None) -> None:
        workers.signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    previous = {
        s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    }
    start = time.monotonic()
    try:
        while workers.running:
            workers.poll(1.0)
            if workers.latest:
                display.tick(workers.counts(), time.monotonic() - start)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        workers.join()
    return workers.final()
