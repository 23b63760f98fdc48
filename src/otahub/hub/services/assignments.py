"""Type assignments: one package for every device of a type (ThingsBoard's device profile).

A device's own update takes precedence over its type's assignment: drivers
that honour assignments create updates marked with :data:`TYPE_ORIGIN_KEY`
in their driver state, and a device-level update replaces such an update
without being asked to (see ``UpdateService.create``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.views import PackageView
from otahub.hub.store.database import Database
from otahub.hub.store.models import FirmwarePackage, TypeAssignment

KINDS = ("firmware", "software")
#: Driver-state key of an update created for a type assignment.
TYPE_ORIGIN_KEY = "type_assignment"


@dataclass(frozen=True, slots=True)
class AssignmentView:
    device_type: str
    kind: str
    package: PackageView
    created_at: datetime


def _check_type(device_type: str) -> str:
    if not device_type.strip() or len(device_type) > 255:
        raise Invalid("device type must be 1 to 255 characters")
    return device_type


class AssignmentService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, device_type: str | None = None) -> list[AssignmentView]:
        query = (
            select(TypeAssignment, FirmwarePackage)
            .join(FirmwarePackage, FirmwarePackage.id == TypeAssignment.package_id)
            .order_by(TypeAssignment.device_type, TypeAssignment.kind)
        )
        if device_type is not None:
            query = query.where(TypeAssignment.device_type == device_type)
        async with self.db.session() as s:
            rows = (await s.execute(query)).all()
        return [
            AssignmentView(a.device_type, a.kind, PackageView.of(p), a.created_at) for a, p in rows
        ]

    async def get(self, device_type: str, kind: str = "firmware") -> AssignmentView | None:
        found = [a for a in await self.list(device_type) if a.kind == kind]
        return found[0] if found else None

    async def assign(self, device_type: str, title: str, version: str) -> AssignmentView:
        """Assign a package to a type, replacing the type's package of the same kind."""
        _check_type(device_type)
        async with self.db.session() as s:
            package = await s.scalar(
                select(FirmwarePackage).where(
                    FirmwarePackage.title == title, FirmwarePackage.version == version
                )
            )
            if package is None:
                raise NotFound(f"no firmware package {title!r} version {version!r}")
            if package.device_type and package.device_type != device_type:
                raise Invalid(
                    f"package {title} {version} is for device type {package.device_type!r}"
                )
            row = await s.scalar(
                select(TypeAssignment).where(
                    TypeAssignment.device_type == device_type,
                    TypeAssignment.kind == package.kind,
                )
            )
            if row is None:
                row = TypeAssignment(device_type=device_type, kind=package.kind)
                s.add(row)
            row.package_id = package.id
            try:
                await s.commit()
            except IntegrityError:
                raise Conflict(f"device type {device_type!r} was assigned meanwhile") from None
            view = PackageView.of(package)
            return AssignmentView(device_type, package.kind, view, row.created_at)

    async def unassign(self, device_type: str, kind: str = "firmware") -> AssignmentView:
        if kind not in KINDS:
            raise Invalid(f"kind must be one of {', '.join(KINDS)}")
        existing = await self.get(device_type, kind)
        if existing is None:
            raise NotFound(f"device type {device_type!r} has no {kind} assignment")
        async with self.db.session() as s, s.begin():
            row = await s.scalar(
                select(TypeAssignment).where(
                    TypeAssignment.device_type == device_type, TypeAssignment.kind == kind
                )
            )
            if row is not None:
                await s.delete(row)
        return existing
