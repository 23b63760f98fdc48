"""Device-type assignments (ThingsBoard's device profile) and their REST routes.

A type's package reaches each ThingsBoard device of that type as an update
marked as made for the type; the device's own update overrides it, and
when the device's own update is canceled the type's package applies again.
A device that already runs the type's package only gets the attributes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel

from otahub.hub.drivers.thingsboard.attributes import KIND_OF
from otahub.hub.drivers.thingsboard.devicestate import SHARED, section
from otahub.hub.drivers.thingsboard.progress import SOURCE
from otahub.hub.http.auth import AdminAuth
from otahub.hub.services.assignments import (
    TYPE_ORIGIN_KEY,
    AssignmentService,
    AssignmentView,
)
from otahub.hub.services.errors import NotFound, ServiceError
from otahub.hub.services.updates import UpdateRequest
from otahub.hub.services.views import DeviceView, UpdateView
from otahub.protocols.thingsboard import OtaKey, PackageType, attribute_key

if TYPE_CHECKING:
    from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

log = logging.getLogger("otahub.hub.thingsboard")

_PACKAGE_OF = {kind: package for package, kind in KIND_OF.items()}


class Assignments:
    def __init__(self, driver: ThingsBoardDriver) -> None:
        self.driver = driver
        self.core = driver.core
        self.service = AssignmentService(driver.core.db)

    async def _devices_of(self, device_type: str) -> list[DeviceView]:
        return [
            d
            for d in await self.core.devices.list(dialect=self.driver.dialect)
            if d.device_type == device_type
        ]

    async def assign_type(self, device_type: str, title: str, version: str) -> AssignmentView:
        assignment = await self.service.assign(device_type, title, version)
        for device in await self._devices_of(device_type):
            active = await self.core.updates.active_for(device.name, assignment.kind)
            if active is not None and not active.driver_state.get(TYPE_ORIGIN_KEY):
                continue  # the device's own update overrides its type's
            if active is not None and active.package_id == assignment.package.id:
                continue
            await self._offer(device, assignment, only_new=False)
        return assignment

    async def unassign_type(self, device_type: str, kind: str) -> AssignmentView:
        assignment = await self.service.unassign(device_type, kind)
        package = _PACKAGE_OF[kind]
        for device in await self._devices_of(device_type):
            active = await self.core.updates.active_for(device.name, kind)
            if active is not None:
                if active.driver_state.get(TYPE_ORIGIN_KEY):
                    await self.core.updates.cancel(
                        active.id, reason="device type assignment removed", source=SOURCE
                    )
                continue
            if self._shows(device, package, assignment):
                await self.driver.unassign(device.name, package)
        return assignment

    @staticmethod
    def _shows(device: DeviceView, package: PackageType, assignment: AssignmentView) -> bool:
        shared = section(dict(device.dialect_state), SHARED)
        return (
            shared.get(attribute_key(package, OtaKey.TITLE)) == assignment.package.title
            and shared.get(attribute_key(package, OtaKey.VERSION)) == assignment.package.version
        )

    async def reconcile_device(self, name: str, device: DeviceView | None = None) -> None:
        """A device (new, or connecting) of a type with an assignment gets it once.

        ``device``: the device as just registered, which need not be read again.
        """
        if device is None:
            try:
                device = await self.core.devices.get(name)
            except NotFound:
                return
        if not device.device_type:
            return
        for assignment in await self.service.list(device.device_type):
            if await self.core.updates.active_for(name, assignment.kind) is None:
                await self._offer(device, assignment, only_new=True)

    async def fall_back_to_type(self, update: UpdateView) -> bool:
        """After a device's own update is canceled, its type's package applies again."""
        if update.driver_state.get(TYPE_ORIGIN_KEY):
            return False
        try:
            device = await self.core.devices.get(update.device)
        except NotFound:
            return False
        if not device.device_type:
            return False
        assignment = await self.service.get(device.device_type, update.kind)
        if assignment is None:
            return False
        await self._offer(device, assignment, only_new=False)
        return True

    async def _offer(
        self, device: DeviceView, assignment: AssignmentView, *, only_new: bool
    ) -> None:
        package = assignment.package
        kind = _PACKAGE_OF[assignment.kind]
        if kind is PackageType.FIRMWARE:
            runs = (device.current_fw_title, device.current_fw_version)
        else:
            runs = (device.current_sw_title, device.current_sw_version)
        if runs[1] == package.version and runs[0] in (None, package.title):
            if not self._shows(device, kind, assignment):
                await self.driver.set_shared(device.name, kind, package)
            return
        if only_new:
            # Offered once: a device that failed it is not retried on every connect.
            history = await self.core.updates.list(device=device.name, limit=1000)
            if any(u.package_id == package.id for u in history):
                return
        try:
            update = await self.core.updates.create(
                UpdateRequest(device.name, package.title, package.version),
                source=f"type:{assignment.device_type}",
            )
        except ServiceError as exc:
            log.warning("device %s: type assignment not applied: %s", device.name, exc.detail)
            return
        await self.driver.driver_states.merge(update.id, {TYPE_ORIGIN_KEY: True})


class AssignIn(BaseModel):
    title: str
    version: str


class AssignmentOut(BaseModel):
    device_type: str
    kind: str
    title: str
    version: str
    package_id: int
    created_at: datetime

    @classmethod
    def of(cls, view: AssignmentView) -> AssignmentOut:
        return cls(
            device_type=view.device_type,
            kind=view.kind,
            title=view.package.title,
            version=view.package.version,
            package_id=view.package.id,
            created_at=view.created_at,
        )


def assignment_router(assignments: Assignments, auth: AdminAuth) -> APIRouter:
    router = APIRouter(prefix="/api/v1/device-types", tags=["device types"])
    router.dependencies.append(Depends(auth))

    @router.get("/assignments")
    async def list_assignments(
        device_type: Annotated[str | None, Query()] = None,
    ) -> list[AssignmentOut]:
        """Every device-type assignment."""
        return [AssignmentOut.of(a) for a in await assignments.service.list(device_type)]

    @router.put("/{device_type}/assignment")
    async def assign(device_type: str, body: AssignIn) -> AssignmentOut:
        """Assign a package to every device of a type (replaces the type's package)."""
        return AssignmentOut.of(
            await assignments.assign_type(device_type, body.title, body.version)
        )

    @router.delete("/{device_type}/assignment")
    async def unassign(
        device_type: str,
        kind: Annotated[Literal["firmware", "software"], Query()] = "firmware",
    ) -> AssignmentOut:
        """Remove a type's package; devices of the type lose its attributes."""
        return AssignmentOut.of(await assignments.unassign_type(device_type, kind))

    return router


def mount_assignments(assignments: Assignments, app: FastAPI, auth: AdminAuth) -> None:
    app.include_router(assignment_router(assignments, auth))
