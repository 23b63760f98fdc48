"""Read-only queries over the whole fleet for views: a page of devices, counts.

They run in SQL with a limit and an offset, so a view of 10,000 devices reads
one page and a few aggregates, never every row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true

from otahub.hub.services.errors import Invalid
from otahub.hub.services.labels import check_key
from otahub.hub.services.views import DeviceView
from otahub.hub.store.database import Database
from otahub.hub.store.models import Device, FirmwarePackage, Update

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """What a device list is narrowed to; ``None`` or empty: no condition."""

    search: str | None = None  # a part of the name
    dialect: str | None = None
    device_type: str | None = None
    label: str | None = None  # key=value, or key alone: has that label
    version: str | None = None  # the firmware version it reports
    online: bool | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.search:
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found.append(Device.name.ilike(f"%{escaped}%", escape="\\"))
        if self.dialect:
            found.append(Device.dialect == self.dialect)
        if self.device_type:
            found.append(Device.device_type == self.device_type)
        if self.version:
            found.append(Device.current_fw_version == self.version)
        if self.online is not None:
            found.append(Device.online.is_(self.online))
        if self.label:
            key, eq, value = self.label.partition("=")
            check_key(key.strip())
            stored = Device.labels[key.strip()].as_string()
            found.append(stored == value.strip() if eq else stored.is_not(None))
        return found


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[DeviceView]
    total: int  # matching the query, over all pages
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class DialectCount:
    dialect: str
    total: int
    online: int


@dataclass(frozen=True, slots=True)
class VersionCount:
    title: str | None
    version: str | None
    devices: int


class FleetQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def devices(self, query: DeviceQuery, *, offset: int = 0, limit: int = 50) -> DevicePage:
        """One page of the matching devices in name order, and how many match in all."""
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
        if offset < 0:
            raise Invalid("offset must not be negative")
        where = and_(true(), *query.conditions())
        page: Select[Device] = (
            select(Device).where(where).order_by(Device.name).offset(offset).limit(limit)
        )
        async with self.db.session() as s:
            total = await s.scalar(select(func.count()).select_from(Device).where(where)) or 0
            rows = (await s.scalars(page)).all()
        return DevicePage([DeviceView.of(r) for r in rows], total, offset, limit)

    async def by_dialect(self) -> list[DialectCount]:
        online = func.sum(func.cast(Device.online, Device.id.type))
        query = (
            select(Device.dialect, func.count(), online)
            .group_by(Device.dialect)
            .order_by(Device.dialect)
        )
        async with self.db.session() as s:
            rows = (await s.execute(query)).all()
        return [DialectCount(d, int(n), int(o or 0)) for d, n, o in rows]

    async def versions(self, *, kind: str = "firmware", limit: int = 20) -> list[VersionCount]:
        """The versions devices report, most common first."""
        title, version = (
            (Device.current_sw_title, Device.current_sw_version)
            if kind == "software"
            else (Device.current_fw_title, Device.current_fw_version)
        )
        query = (
            select(title, version, func.count().label("n"))
            .group_by(title, version)
            .order_by(func.count().desc(), version)
            .limit(limit)
        )
        async with self.db.session() as s:
            rows = (await s.execute(query)).all()
        return [VersionCount(t, v, int(n)) for t, v, n in rows]

    async def running(self, package_id: int, *, limit: int = 100) -> DevicePage:
        """The devices that report the package's title and version as what they run."""
        async with self.db.session() as s:
            package = await s.get(FirmwarePackage, package_id)
            if package is None:
                return DevicePage([], 0, 0, limit)
            title, version = (
                (Device.current_sw_title, Device.current_sw_version)
                if package.kind == "software"
                else (Device.current_fw_title, Device.current_fw_version)
            )
            where = and_(version == package.version, or_(title == package.title, title.is_(None)))
            total = await s.scalar(select(func.count()).select_from(Device).where(where)) or 0
            rows = (
                await s.scalars(select(Device).where(where).order_by(Device.name).limit(limit))
            ).all()
        return DevicePage([DeviceView.of(r) for r in rows], total, 0, limit)

    async def device_types(self) -> list[str]:
        query = (
            select(Device.device_type)
            .where(Device.device_type.is_not(None))
            .distinct()
            .order_by(Device.device_type)
        )
        async with self.db.session() as s:
            return [t for t in (await s.scalars(query)).all() if t is not None]

    async def update_counts(self, package_id: int) -> dict[str, int]:
        """The package's updates by state."""
        query = (
            select(Update.state, func.count())
            .where(Update.package_id == package_id)
            .group_by(Update.state)
        )
        async with self.db.session() as s:
            return {state: int(n) for state, n in (await s.execute(query)).all()}
