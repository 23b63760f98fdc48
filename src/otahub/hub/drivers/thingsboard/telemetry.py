"""Telemetry: the device's reported versions and ``fw_state`` / ``sw_state``.

A telemetry message with OTA keys is recorded in the hub's ingest journal
and acknowledged once it is on disk; the journal applies it behind the
PUBACK, together with every report that arrived meanwhile. A device's
repeats of one state (a downloading device sends ``DOWNLOADING`` again and
again) are applied once per batch, in the order they came.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from otahub.hub.drivers.thingsboard.attributes import KIND_OF
from otahub.hub.drivers.thingsboard.fetches import Fetch, other_than
from otahub.hub.drivers.thingsboard.progress import advance
from otahub.hub.ingest import Entry
from otahub.mqtt import Client
from otahub.protocols.states import UpdateState
from otahub.protocols.thingsboard import (
    PACKAGES,
    OtaReport,
    PackageType,
    ThingsBoardError,
    TopicFamily,
    UpdatedCheck,
    check_updated,
    extract_ota_reports,
    parse_telemetry,
)

if TYPE_CHECKING:
    from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

log = logging.getLogger("otahub.hub.thingsboard")

#: The ingest journal's name for ThingsBoard telemetry with OTA keys.
JOURNAL_KIND = "thingsboard.telemetry"
# device name and topic family lengths, then per package what the device had
# fetched last when the message came: package id and update id (-1: none)
_HEAD = struct.Struct("<HB" + "qq" * len(PackageType))

# one telemetry message: its device, and each OTA report with the device's last
# fetch of that package when the message came
Recorded = tuple[str, list[tuple[OtaReport, Fetch | None]]]


def encode_recorded(
    device: str, family: TopicFamily, payload: bytes, fetched: dict[PackageType, Fetch | None]
) -> bytes:
    """A telemetry message as the journal keeps it: enough to apply it after a restart."""
    name = device.encode()
    tag = family.value.encode()
    ids: list[int] = []
    for package in PACKAGES:
        fetch = fetched.get(package)
        ids += (-1, -1) if fetch is None else (fetch.package_id, _or_minus(fetch.update_id))
    return _HEAD.pack(len(name), len(tag), *ids) + name + tag + payload


def decode_recorded(data: bytes) -> Recorded:
    """``encode_recorded`` undone, the payload parsed again."""
    name_len, tag_len, *ids = _HEAD.unpack_from(data)
    start = _HEAD.size
    device = data[start : start + name_len].decode()
    family = TopicFamily(data[start + name_len : start + name_len + tag_len].decode())
    fetched: dict[PackageType, Fetch | None] = {}
    for i, package in enumerate(PACKAGES):
        package_id, update_id = ids[2 * i], ids[2 * i + 1]
        fetched[package] = (
            None if package_id < 0 else Fetch(package_id, None if update_id < 0 else update_id)
        )
    reports = extract_ota_reports(parse_telemetry(data[start + name_len + tag_len :], family))
    return device, [(report, fetched[report.package]) for report in reports]


def _or_minus(value: int | None) -> int:
    return -1 if value is None else value


class Telemetry:
    def __init__(self, driver: ThingsBoardDriver) -> None:
        self.driver = driver

    def handle(
        self, session: Client, device: str, payload: bytes, family: TopicFamily
    ) -> Awaitable[int | None] | int | None:
        """Returns the PUBACK verdict: None, the payload error code, or (for OTA
        reports) what the ingest journal gives: done once the message is on disk
        (or, without the journal, applied)."""
        try:
            entries = parse_telemetry(payload, family)
        except ThingsBoardError as exc:
            return self.driver.payload_error(session, "telemetry", exc)
        reports = extract_ota_reports(entries)
        if not reports:
            return None
        fetches = self.driver.fetches
        fetched = {report.package: fetches.last(device, report.package) for report in reports}
        value: Recorded = (device, [(report, fetched[report.package]) for report in reports])
        return self.driver.core.ingest.record(
            JOURNAL_KIND, encode_recorded(device, family, payload, fetched), value
        )

    async def apply_recorded(self, entries: list[Entry]) -> None:
        """Apply journalled telemetry: each device's reports in order, devices together
        (so their transitions share commits), a repeat of the report before it once."""
        by_device: dict[str, list[tuple[OtaReport, Fetch | None, Entry]]] = {}
        for entry in entries:
            recorded: Recorded = entry.value
            device, reports = recorded
            queue = by_device.setdefault(device, [])
            for report, fetch in reports:
                if queue and queue[-1][0].same_as(report) and queue[-1][1] == fetch:
                    queue[-1] = (report, fetch, entry)
                else:
                    queue.append((report, fetch, entry))
        results = await asyncio.gather(
            *(self._apply_device(device, queue) for device, queue in by_device.items()),
            return_exceptions=True,
        )
        outage: BaseException | None = None
        for device, result in zip(by_device, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, DBAPIError | OSError):
                outage = result
            elif isinstance(result, BaseException):
                log.error("device %s: applying its telemetry failed", device, exc_info=result)
        if outage is not None:
            raise outage  # the journal tries the batch again

    async def _apply_device(
        self, device: str, queue: list[tuple[OtaReport, Fetch | None, Entry]]
    ) -> None:
        for report, fetch, entry in queue:
            await self.apply(device, report, fetch, entry.received if entry.replayed else None)

    async def apply(
        self, device: str, report: OtaReport, fetch: Fetch | None, received: float | None = None
    ) -> None:
        """``fetch``: what the device had fetched last of the report's package when the
        report came. ``received``: when a report recorded before a restart came; it
        applies to no update created after that."""
        p = report.package.prefix
        kind = KIND_OF[report.package]
        latest = {
            key: value
            for key, value in (
                (f"current_{p}_title", report.current_title),
                (f"current_{p}_version", report.current_version),
                (f"{p}_state", report.state),
                (f"{p}_error", report.error),
            )
            if value is not None
        }
        if latest:
            self.driver.states.note_telemetry(device, latest)
        view = await self.driver.core.devices.report(
            device, kind=kind, title=report.current_title, version=report.current_version
        )
        target = report.canonical_state
        if report.state is None:
            return
        update = await self.driver.active.get(device, kind)
        if update is None:
            log.debug(
                "device %s reports %s_state %s with no active update", device, p, report.state
            )
            return
        if target is None:
            log.info("device %s: %s_state %r stored verbatim", device, p, report.state)
            return
        if received is not None and update.created_at.timestamp() > received:
            log.info(
                "device %s: %s_state %s from before the restart predates update %d; ignored",
                device,
                p,
                report.state,
                update.id,
            )
            return
        other = other_than(fetch, update, target)
        if other is not None:
            log.info(
                "device %s: %s_state %s is about package %d (update %s) it fetched last, "
                "not update %d; ignored",
                device,
                p,
                report.state,
                other.package_id,
                other.update_id,
                update.id,
            )
            return
        core = self.driver.core
        if target is UpdateState.SUCCEEDED:
            check = check_updated(report, update.title, update.version)
            if check is UpdatedCheck.VERSION_UNKNOWN:
                runs = view.current_fw_version if kind == "firmware" else view.current_sw_version
                check = (
                    UpdatedCheck.CONFIRMED
                    if runs == update.version
                    else UpdatedCheck.VERSION_MISMATCH
                )
            if check is UpdatedCheck.CONFIRMED:
                await advance(core, update.id, UpdateState.SUCCEEDED)
            else:
                runs = report.current_version or "an unknown version"
                log.warning(
                    "device %s reports UPDATED but runs %s, not %s", device, runs, update.version
                )
                await advance(
                    core,
                    update.id,
                    UpdateState.FAILED,
                    reason=f"device reported UPDATED but runs {runs}, not {update.version}",
                    code="version_mismatch",
                )
            return
        if target is UpdateState.FAILED:
            await advance(
                core,
                update.id,
                UpdateState.FAILED,
                reason=report.error or f"device reported {p}_state FAILED",
                code="FAILED",
            )
            return
        await advance(core, update.id, target)
