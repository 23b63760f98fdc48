"""``/api/v1/groups``: static and dynamic device groups."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from otahub.hub.http.deps import Core
from otahub.hub.services.views import GroupView

router = APIRouter(prefix="/groups", tags=["groups"])


class GroupCreate(BaseModel):
    name: str
    filter: str | None = Field(
        None,
        description="a dynamic group: devices matching this filter expression, evaluated "
        "whenever the group is used (e.g. 'site=berlin,dialect=thingsboard'; '' is every device)",
    )
    devices: list[str] | None = Field(
        None, description="a static group: these devices (by name), all of which must exist"
    )


class GroupOut(BaseModel):
    id: int
    name: str
    kind: Literal["static", "dynamic"]
    filter: str | None = Field(description="the canonical filter of a dynamic group")
    size: int = Field(description="how many devices belong to the group now")
    created_at: datetime

    @classmethod
    def of(cls, view: GroupView, size: int) -> GroupOut:
        return cls(
            id=view.id,
            name=view.name,
            kind="dynamic" if view.dynamic else "static",
            filter=view.filter,
            size=size,
            created_at=view.created_at,
        )


class GroupDetail(GroupOut):
    members: list[str] = Field(description="a page of the member names, by device id")
    limit: int
    offset: int


@router.post("", status_code=201)
async def create_group(body: GroupCreate, core: Core) -> GroupOut:
    """Create a group from a filter (dynamic) or a list of devices (static): exactly one."""
    view = await core.groups.create(body.name, filter=body.filter, devices=body.devices)
    sizes = await core.groups.sizes([view])
    return GroupOut.of(view, sizes[view.name])


@router.get("")
async def list_groups(core: Core) -> list[GroupOut]:
    """The groups by name, each with its size now."""
    groups = await core.groups.list()
    sizes = await core.groups.sizes(groups)
    return [GroupOut.of(g, sizes[g.name]) for g in groups]


@router.get("/{name}")
async def get_group(
    name: str,
    core: Core,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> GroupDetail:
    """A group, its size and a page of its member names (ordered by device id)."""
    view = await core.groups.get(name)
    size, members = await core.groups.member_names(name, limit=limit, offset=offset)
    return GroupDetail(
        **GroupOut.of(view, size).model_dump(), members=members, limit=limit, offset=offset
    )


@router.delete("/{name}", status_code=204)
async def delete_group(name: str, core: Core) -> Response:
    """Delete a group; its devices stay."""
    await core.groups.delete(name)
    return Response(status_code=204)
