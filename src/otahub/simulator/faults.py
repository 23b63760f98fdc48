"""Which devices get which fault, decided from the seed, and switched off on request.

Each device draws from its own generator seeded with ``(seed, name)``, so
the choice does not depend on how many processes share the fleet or in what
order devices start. Clearing (SIGUSR1 on ``otahub simulate``) turns every
fault off at once: failing devices then update normally, crashing ones stop
crashing and offline ones connect — what a rollout's "retry failed" needs.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from otahub.simulator.config import FailAt, FaultRates


class Fault:
    DOWNLOAD = "download"
    VERIFY = "verify"
    INSTALL = "install"
    OFFLINE = "offline"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class DeviceFaults:
    """The faults one device was given (before any clearing)."""

    offline: bool = False
    fail_at: FailAt | None = None
    crash: bool = False


NO_FAULTS = DeviceFaults()


def choose(rates: FaultRates, name: str) -> DeviceFaults:
    """The faults of device ``name``: deterministic for a seed."""
    if not (rates.offline_rate or rates.fail_rate or rates.crash_rate):
        return NO_FAULTS
    rng = random.Random(f"{rates.seed}:{name}")
    offline = rng.random() < rates.offline_rate
    fail = rng.random() < rates.fail_rate
    crash = rng.random() < rates.crash_rate
    return DeviceFaults(offline=offline, fail_at=rates.fail_at if fail else None, crash=crash)


class FaultSwitch:
    """Faults are on until :meth:`clear`; offline devices wait on :meth:`cleared`."""

    def __init__(self) -> None:
        self._cleared = asyncio.Event()

    @property
    def active(self) -> bool:
        return not self._cleared.is_set()

    def clear(self) -> None:
        self._cleared.set()

    async def cleared(self) -> None:
        await self._cleared.wait()
