"""Counters of a run, the per-device install record and the JSON summary."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: Counters summed over processes; everything else in a summary is derived.
COUNTERS = (
    "devices",
    "connected",
    "connections",
    "reconnects",
    "connect_refused",
    "updates_started",
    "updates_succeeded",
    "updates_failed",
    "bytes_downloaded",
    "installs",
)


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    #: device -> install hook runs
    installs: Counter[str] = field(default_factory=Counter)
    #: device -> update starts
    starts: Counter[str] = field(default_factory=Counter)
    #: device -> downloads begun (a resumed one counts once)
    downloads: Counter[str] = field(default_factory=Counter)
    record: IO[str] | None = None

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def update_started(self, device: str) -> None:
        self.counts["updates_started"] += 1
        self.starts[device] += 1

    def download_started(self, device: str) -> None:
        self.downloads[device] += 1

    def installed(self, device: str, dialect: str, version: str, key: str) -> None:
        """One run of the install step; every one is recorded (``--record``)."""
        self.counts["installs"] += 1
        self.installs[device] += 1
        if self.record is not None:
            line = json.dumps(
                {
                    "device": device,
                    "dialect": dialect,
                    "version": version,
                    "update": key,
                    "at": time.time(),
                    "pid": os.getpid(),
                }
            )
            # one write per line in append mode: processes sharing the file
            # never interleave within a line
            self.record.write(line + "\n")
            self.record.flush()

    def snapshot(self) -> dict[str, Any]:
        """Counters as one JSON object (what a worker process reports)."""
        return {
            **{name: self.counts[name] for name in COUNTERS},
            "faults": dict(self.faults),
            "installs_per_device_max": max(self.installs.values(), default=0),
            "starts_per_device_max": max(self.starts.values(), default=0),
            "downloads_per_device_max": max(self.downloads.values(), default=0),
            "devices_installed_twice": sorted(d for d, n in self.installs.items() if n > 1),
        }


def open_record(path: Path | None) -> IO[str] | None:
    if path is None:
        return None
    return open(path, "a", encoding="utf-8", buffering=1)


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters of several processes as one: sums, and maxima of the per-device maxima."""
    total: dict[str, Any] = {name: 0 for name in COUNTERS}
    faults: Counter[str] = Counter()
    twice: list[str] = []
    maxima = {
        "installs_per_device_max": 0,
        "starts_per_device_max": 0,
        "downloads_per_device_max": 0,
    }
    for snap in snapshots:
        for name in COUNTERS:
            total[name] += int(snap.get(name, 0))
        faults.update(snap.get("faults", {}))
        for name in maxima:
            maxima[name] = max(maxima[name], int(snap.get(name, 0)))
        twice.extend(snap.get("devices_installed_twice", []))
    return {**total, "faults": dict(faults), **maxima, "devices_installed_twice": sorted(twice)}


def summary(merged: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """The JSON printed at the end of a run."""
    return {**merged, "duration_s": round(elapsed, 3)}


def live_line(merged: dict[str, Any], elapsed: float) -> str:
    """The one-line view of the counters."""
    faults = merged.get("faults") or {}
    fault_text = ",".join(f"{k}={v}" for k, v in sorted(faults.items())) or "none"
    return (
        f"[{elapsed:7.1f}s] devices {merged['devices']} connected {merged['connected']} "
        f"updates started {merged['updates_started']} ok {merged['updates_succeeded']} "
        f"failed {merged['updates_failed']} bytes {merged['bytes_downloaded']} "
        f"reconnects {merged['reconnects']} faults {fault_text}"
    )
