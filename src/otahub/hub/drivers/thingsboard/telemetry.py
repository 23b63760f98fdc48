"""Telemetry: the device's reported versions and ``fw_state`` / ``sw_state``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from otahub.hub.drivers.thingsboard.attributes import KIND_OF
from otahub.hub.drivers.thingsboard.progress import advance
from otahub.mqtt import Client
from otahub.protocols.states import UpdateState
from otahub.protocols.thingsboard import (
    OtaReport,
    PackageType,
    ThingsBoardError,
    TopicFamily,
    UpdatedCheck,
    check_updated,
    extract_ota_report,
    parse_telemetry,
)

if TYPE_CHECKING:
    from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

log = logging.getLogger("otahub.hub.thingsboard")


class Telemetry:
    def __init__(self, driver: ThingsBoardDriver) -> None:
        self.driver = driver

    async def handle(
        self, session: Client, device: str, payload: bytes, family: TopicFamily
    ) -> int | None:
        """Returns the PUBACK verdict: None, or the payload error code."""
        try:
            entries = parse_telemetry(payload, family)
        except ThingsBoardError as exc:
            return self.driver.payload_error(session, "telemetry", exc)
        for package in PackageType:
            report = extract_ota_report(entries, package)
            if report is not None:
                await self.apply(device, report)
        return None

    async def apply(self, device: str, report: OtaReport) -> None:
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
        other = self.driver.fetches.other_than(device, report.package, update, target)
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
