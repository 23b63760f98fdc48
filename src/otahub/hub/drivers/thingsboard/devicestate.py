"""What the driver keeps per device in ``Device.dialect_state``.

Layout (all optional)::

    {"shared": {...},            # shared attributes (fw_title, fw_size, ...)
     "client": {...},            # client attributes the device posted
     "telemetry": {...},         # latest OTA telemetry (fw_state, target_fw_*, ...)
     "checksum_algorithm": "MD5",
     "mqtt_basic": {"clientId": ..., "userName": ..., "password": ...}}

Edits are read-modify-write of one JSON document, so they are serialised
per device. The latest telemetry is not written per message: it is kept
here and merged into the stored documents of every device that reported,
in one transaction, at most ``FLUSH_S`` later (it is what the device said
last, not a state change: update states are recorded by the transitions).
Reads here see it at once. A device repeats the same ``fw_state`` in every
report while it downloads; values this hub stored within ``STORED_TTL_S``
are not stored again (the TTL bounds what a write by another hub instance
can hide).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from otahub.hub.services.devices import DeviceService
from otahub.hub.store.batching import Debounced

SHARED = "shared"
CLIENT = "client"
TELEMETRY = "telemetry"
CHECKSUM_ALGORITHM = "checksum_algorithm"
MQTT_BASIC = "mqtt_basic"

log = logging.getLogger("otahub.hub.thingsboard")

_ABSENT = object()

#: How long the latest telemetry may wait before it is stored.
FLUSH_S = 1.0
#: How long telemetry this hub stored counts as what the database holds.
STORED_TTL_S = 60.0


class DeviceStates:
    def __init__(self, devices: DeviceService, flush_s: float = FLUSH_S) -> None:
        self.devices = devices
        self._locks: dict[str, asyncio.Lock] = {}
        # device -> telemetry keys reported since the last flush
        self._telemetry: dict[str, dict[str, Any]] = {}
        self._later = Debounced(self.flush, flush_s, "the devices' latest telemetry", log)
        # device -> the telemetry section as this hub last stored it, and when (monotonic)
        self._stored: dict[str, tuple[dict[str, Any], float]] = {}

    async def get(self, name: str) -> dict[str, Any]:
        state = dict((await self.devices.get(name)).dialect_state)
        pending = self._telemetry.get(name)
        if pending:
            state[TELEMETRY] = {**section(state, TELEMETRY), **pending}
        return state

    @contextlib.asynccontextmanager
    async def edit(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """Yield the device's state; what the block leaves in it is stored."""
        async with self._lock(name):
            state = dict((await self.devices.get(name)).dialect_state)
            # what is pending is stored with the rest; what arrives meanwhile waits
            taken = self._telemetry.pop(name, None)
            if taken:
                state[TELEMETRY] = {**section(state, TELEMETRY), **taken}
            try:
                yield state
                await self.devices.set_dialect_state(name, state)
                self._stored[name] = (dict(section(state, TELEMETRY)), time.monotonic())
            except BaseException:
                self._stored.pop(name, None)
                if taken:
                    self._telemetry[name] = {**taken, **self._telemetry.get(name, {})}
                    self._later.touch()
                raise

    @contextlib.asynccontextmanager
    async def edit_many(self, names: Iterable[str]) -> AsyncIterator[dict[str, dict[str, Any]]]:
        """``edit`` for many devices: their states by name (devices gone are left
        out), read in one query and stored in one transaction."""
        wanted = sorted(set(names))
        async with contextlib.AsyncExitStack() as held:
            for name in wanted:  # in name order, as flush takes them
                await held.enter_async_context(self._lock(name))
            states = await self.devices.dialect_states(wanted)
            taken = {name: self._telemetry.pop(name) for name in states if name in self._telemetry}
            for name, values in taken.items():
                states[name][TELEMETRY] = {**section(states[name], TELEMETRY), **values}
            try:
                yield states
                await self.devices.set_dialect_states(states)
                now = time.monotonic()
                for name, state in states.items():
                    self._stored[name] = (dict(section(state, TELEMETRY)), now)
            except BaseException:
                for name in states:
                    self._stored.pop(name, None)
                for name, values in taken.items():
                    self._telemetry[name] = {**values, **self._telemetry.get(name, {})}
                if taken:
                    self._later.touch()
                raise

    def note_telemetry(self, name: str, values: dict[str, Any]) -> None:
        """Keep the device's latest telemetry; stored with the next flush."""
        pending = self._telemetry.get(name)
        if pending is None:
            stored = self._stored.get(name)
            if (
                stored is not None
                and time.monotonic() - stored[1] < STORED_TTL_S
                and all(stored[0].get(key, _ABSENT) == value for key, value in values.items())
            ):
                return  # the database holds these values already
            pending = self._telemetry[name] = {}
        pending.update(values)
        self._later.touch()

    async def flush(self) -> None:
        """Store every device's pending telemetry, in one transaction."""
        if not self._telemetry:
            return
        names = sorted(self._telemetry)
        async with contextlib.AsyncExitStack() as held:
            # an edit in progress finishes first (and stores what is pending itself)
            for name in names:
                await held.enter_async_context(self._lock(name))
            pending = {n: self._telemetry.pop(n) for n in names if n in self._telemetry}
            try:
                await self.devices.merge_dialect_section(TELEMETRY, pending)
            except BaseException:
                for name in pending:
                    self._stored.pop(name, None)
                for name, values in pending.items():  # newer values win
                    self._telemetry[name] = {**values, **self._telemetry.get(name, {})}
                raise
            now = time.monotonic()
            for name, values in pending.items():
                stored = self._stored.get(name)
                before = stored[0] if stored is not None and now - stored[1] < STORED_TTL_S else {}
                self._stored[name] = ({**before, **values}, now)
        if self._telemetry:
            self._later.touch()

    async def close(self) -> None:
        """Store what is pending and stop the timer (the driver stops)."""
        await self._later.close()

    def connected(self, name: str) -> None:
        """``name`` connected anew: another hub may have stored its telemetry meanwhile,
        so its next report is stored even if it repeats what this hub stored."""
        self._stored.pop(name, None)

    def forget(self, name: str) -> None:
        self._stored.pop(name, None)
        self._locks.pop(name, None)
        self._telemetry.pop(name, None)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


def section(state: dict[str, Any], name: str) -> dict[str, Any]:
    """The sub-object ``name`` of a state, created when missing or malformed."""
    value = state.get(name)
    if not isinstance(value, dict):
        value = {}
        state[name] = value
    return value
