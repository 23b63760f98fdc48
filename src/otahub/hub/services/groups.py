"""Device groups: static (listed devices) or dynamic (a filter over the fleet).

A dynamic group has no stored members: it is evaluated whenever it is asked
for, so devices registered or relabelled later belong to it at once. Devices
are read in chunks by id (keyset pages, each its own short read), first only
the columns a filter looks at, then the full rows of the devices that match:
resolving 10,000 devices never holds the event loop for long, and large driver
state is read only for the devices selected. A device changed while a group
is being resolved is seen before or after the change.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import Select, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from otahub.hub.services.device_filter import DeviceFacts, DeviceFilter
from otahub.hub.services.errors import Conflict, Invalid, NotFound
from otahub.hub.services.events import EventBus, GroupCreated, GroupDeleted
from otahub.hub.services.views import DeviceView, GroupView
from otahub.hub.store.database import Database
from otahub.hub.store.models import Device, DeviceGroup, DeviceGroupMember

log = logging.getLogger("otahub.hub.groups")

#: Rows per read while resolving: small enough that one page never stalls the loop.
PAGE = 1000
# like device names: they end up in URLs
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_MAX_NAME = 255
_FACTS = (
    Device.id,
    Device.name,
    Device.dialect,
    Device.device_type,
    Device.current_fw_version,
    Device.current_sw_version,
    Device.online,
    Device.labels,
)


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise Invalid(
            f"group name {name!r} must be 1 to {_MAX_NAME} characters of letters, "
            "digits and . _ : @ -, starting with a letter or digit"
        )
    return name


class GroupService:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus

    async def create(
        self, name: str, *, filter: str | None = None, devices: Sequence[str] | None = None
    ) -> GroupView:
        """A dynamic group (``filter``) or a static one (``devices``, by name): exactly one."""
        _check_name(name)
        if (filter is None) == (devices is None):
            raise Invalid("give either a filter (a dynamic group) or devices (a static group)")
        canonical = None if filter is None else str(DeviceFilter.parse(filter))
        async with self.db.session() as s:
            if await s.scalar(select(DeviceGroup.id).where(DeviceGroup.name == name)) is not None:
                raise Conflict(f"group {name!r} already exists")
            ids: list[int] = []
            if devices is not None:
                ids = await self._device_ids(s, devices)
            row = DeviceGroup(name=name, filter=canonical)
            s.add(row)
            try:
                await s.flush()
                if ids:
                    await s.execute(
                        insert(DeviceGroupMember),
                        [{"group_id": row.id, "device_id": i} for i in ids],
                    )
                await s.commit()
            except IntegrityError:
                raise Conflict(
                    f"group {name!r} was created meanwhile, or one of its devices was deleted"
                ) from None
            view = GroupView.of(row)
        if view.dynamic:
            log.info("group %s created: devices where %r", name, canonical or "(all)")
        else:
            log.info("group %s created with %d device(s)", name, len(ids))
        await self.bus.publish(GroupCreated(view))
        return view

    @staticmethod
    async def _device_ids(s: AsyncSession, names: Sequence[str]) -> list[int]:
        wanted = list(dict.fromkeys(names))  # once each, in the order given
        if not wanted:
            raise Invalid("a static group needs at least one device")
        found: dict[str, int] = {}
        for start in range(0, len(wanted), PAGE):
            chunk = wanted[start : start + PAGE]
            rows = await s.execute(select(Device.name, Device.id).where(Device.name.in_(chunk)))
            found.update({n: i for n, i in rows})
        if unknown := [n for n in wanted if n not in found]:
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            shown = ", ".join(unknown[:20]) + more
            raise Invalid(f"no such device(s): {shown}", unknown_devices=unknown)
        return sorted(found[n] for n in wanted)

    async def get(self, name: str) -> GroupView:
        async with self.db.session() as s:
            row = await s.scalar(select(DeviceGroup).where(DeviceGroup.name == name))
            if row is None:
                raise NotFound(f"group {name!r} does not exist")
            return GroupView.of(row)

    async def list(self) -> list[GroupView]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(DeviceGroup).order_by(DeviceGroup.name))).all()
            return [GroupView.of(row) for row in rows]

    async def delete(self, name: str) -> GroupView:
        """Remove a group (not its devices)."""
        async with self.db.session() as s, s.begin():
            row = await s.scalar(select(DeviceGroup).where(DeviceGroup.name == name))
            if row is None:
                raise NotFound(f"group {name!r} does not exist")
            view = GroupView.of(row)
            await s.delete(row)
        log.info("group %s deleted", name)
        await self.bus.publish(GroupDeleted(view))
        return view

    async def members(self, name: str) -> builtins.list[DeviceView]:
        """The group's devices now, ordered by device id."""
        return await self._members(await self.get(name))

    async def member_names(
        self, name: str, *, limit: int, offset: int = 0
    ) -> tuple[int, builtins.list[str]]:
        """How many devices the group has, and a page of their names (by device id).

        Only names are read, not whole devices: cheap enough for a listing.
        """
        group = await self.get(name)
        if group.filter is not None:
            flt = DeviceFilter.parse(group.filter)
            names = [d.name async for facts in self._facts() for d in facts if flt.matches(d)]
            return len(names), names[offset : offset + limit]
        of_group = DeviceGroupMember.group_id == group.id
        async with self.db.session() as s:
            total = await s.scalar(
                select(func.count()).select_from(DeviceGroupMember).where(of_group)
            )
            page = await s.scalars(
                select(Device.name)
                .join(DeviceGroupMember, DeviceGroupMember.device_id == Device.id)
                .where(of_group)
                .order_by(Device.id)
                .limit(limit)
                .offset(offset)
            )
            return total or 0, list(page)

    async def resolve(
        self, *, group: str | None = None, filter: str | None = None
    ) -> builtins.list[DeviceView]:
        """The devices of a group, or those a filter expression selects (exactly one of
        the two), ordered by device id."""
        if (group is None) == (filter is None):
            raise Invalid("give either a group or a filter")
        if group is not None:
            return await self.members(group)
        assert filter is not None
        return await self._matching(DeviceFilter.parse(filter))

    async def contains(self, name: str, device: DeviceView) -> bool:
        """Whether ``device`` (as given: e.g. just relabelled) belongs to the group now."""
        group = await self.get(name)
        if group.filter is not None:
            return DeviceFilter.parse(group.filter).matches(device)
        async with self.db.session() as s:
            found = await s.scalar(
                select(DeviceGroupMember.device_id).where(
                    DeviceGroupMember.group_id == group.id,
                    DeviceGroupMember.device_id == device.id,
                )
            )
        return found is not None

    async def sizes(self, groups: Sequence[GroupView]) -> dict[str, int]:
        """How many devices each group has now; the fleet is read once for all dynamic ones."""
        sizes: dict[str, int] = {}
        static = [g for g in groups if g.filter is None]
        if static:
            async with self.db.session() as s:
                counted = await s.execute(
                    select(DeviceGroupMember.group_id, func.count())
                    .where(DeviceGroupMember.group_id.in_([g.id for g in static]))
                    .group_by(DeviceGroupMember.group_id)
                )
                by_id: dict[int, int] = {g: n for g, n in counted}
            sizes.update({g.name: by_id.get(g.id, 0) for g in static})
        dynamic = [(g.name, DeviceFilter.parse(g.filter)) for g in groups if g.filter is not None]
        if dynamic:
            for name, _ in dynamic:
                sizes[name] = 0
            async for facts in self._facts():
                for name, flt in dynamic:
                    sizes[name] += sum(1 for d in facts if flt.matches(d))
        return sizes

    async def _members(self, group: GroupView) -> builtins.list[DeviceView]:
        if group.filter is not None:
            return await self._matching(DeviceFilter.parse(group.filter))
        query = (
            select(Device)
            .join(DeviceGroupMember, DeviceGroupMember.device_id == Device.id)
            .where(DeviceGroupMember.group_id == group.id)
        )
        return [d async for page in self._pages(query) for d in page]

    async def _matching(self, flt: DeviceFilter) -> builtins.list[DeviceView]:
        if flt.everything:
            return [d async for page in self._pages(select(Device)) for d in page]
        ids = [d.id async for facts in self._facts() for d in facts if flt.matches(d)]
        found: builtins.list[DeviceView] = []
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            async with self.db.session() as s:
                rows = await s.scalars(
                    select(Device).where(Device.id.in_(chunk)).order_by(Device.id)
                )
                found.extend(DeviceView.of(row) for row in rows)
            await asyncio.sleep(0)
        return found

    async def _facts(self) -> AsyncIterator[builtins.list[DeviceFacts]]:
        """Every device's filterable fields, a page at a time, by id."""
        last = 0
        while True:
            async with self.db.session() as s:
                rows = (
                    await s.execute(
                        select(*_FACTS).where(Device.id > last).order_by(Device.id).limit(PAGE)
                    )
                ).all()
            if not rows:
                return
            page = [
                DeviceFacts(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), dict(r[7] or {}))
                for r in rows
            ]
            last = page[-1].id
            yield page

    async def _pages(self, query: Select[Device]) -> AsyncIterator[builtins.list[DeviceView]]:
        """The devices ``query`` selects, a page at a time, by id."""
        last = 0
        while True:
            async with self.db.session() as s:
                rows = (
                    await s.scalars(query.where(Device.id > last).order_by(Device.id).limit(PAGE))
                ).all()
                page = [DeviceView.of(row) for row in rows]
            if not page:
                return
            last = page[-1].id
            yield page
