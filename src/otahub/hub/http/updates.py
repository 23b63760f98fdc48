"""``/api/v1/updates``: requesting updates and following them."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from otahub.hub.http.deps import Core
from otahub.hub.http.ids import RowId
from otahub.hub.services.errors import Invalid, ServiceError
from otahub.hub.services.updates import MAX_BATCH, MAX_OFFSET, MAX_PAGE, UpdateRequest
from otahub.hub.services.views import TransitionView, UpdateView
from otahub.protocols.states import UpdateState

log = logging.getLogger("otahub.hub.http")

router = APIRouter(prefix="/updates", tags=["updates"])


class Transition(BaseModel):
    from_state: UpdateState | None
    to_state: UpdateState
    progress: int | None
    reason: str | None
    code: str | None
    source: str
    at: datetime

    @classmethod
    def of(cls, view: TransitionView) -> Transition:
        return cls(
            from_state=None if view.from_state is None else UpdateState(view.from_state),
            to_state=UpdateState(view.to_state),
            progress=view.progress,
            reason=view.reason,
            code=view.code,
            source=view.source,
            at=view.at,
        )


class UpdateOut(BaseModel):
    id: int
    device: str
    device_id: int | None = Field(description="null once the device was deleted")
    dialect: str
    package_id: int | None
    title: str
    version: str
    from_version: str | None = Field(
        None, description="what the device reported running when the update was created"
    )
    kind: str
    state: UpdateState
    progress: int | None
    reason: str | None
    code: str | None
    timeout: float = Field(description="seconds without progress before the update fails")
    mode: Literal["push", "on-request"] = "push"
    force: bool = False
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    transitions: list[Transition] | None = None

    @classmethod
    def of(cls, view: UpdateView) -> UpdateOut:
        return cls(
            id=view.id,
            device=view.device,
            device_id=view.device_id,
            dialect=view.dialect,
            package_id=view.package_id,
            title=view.title,
            version=view.version,
            from_version=view.from_version,
            kind=view.kind,
            state=UpdateState(view.state),
            progress=view.progress,
            reason=view.reason,
            code=view.code,
            timeout=view.timeout_s,
            mode="on-request" if view.mode == "on-request" else "push",
            force=view.force,
            deadline_at=view.deadline_at,
            created_at=view.created_at,
            updated_at=view.updated_at,
            finished_at=view.finished_at,
            transitions=None
            if view.transitions is None
            else [Transition.of(t) for t in view.transitions],
        )


class UpdateCreate(BaseModel):
    device: str
    title: str
    version: str
    replace: bool = Field(False, description="cancel the device's active update of this kind")
    timeout: float | None = Field(
        None, gt=0, description="seconds without progress before failing; hub default if unset"
    )
    mode: Literal["push", "on-request"] = Field(
        "push", description="push: the hub sends it; on-request: offered when the device asks"
    )
    force: bool = Field(
        False, description="start even if the device has not announced it can take updates"
    )

    def request(self) -> UpdateRequest:
        return UpdateRequest(
            device=self.device,
            title=self.title,
            version=self.version,
            replace=self.replace,
            timeout_s=self.timeout,
            mode=self.mode,
            force=self.force,
        )


class StateReport(BaseModel):
    state: UpdateState
    progress: int | None = Field(None, ge=0, le=100)
    reason: str | None = Field(None, max_length=2000)
    code: str | None = Field(None, max_length=64)


class CancelRequest(BaseModel):
    reason: str | None = Field(None, max_length=2000)


@router.post("", status_code=201)
async def create_update(body: UpdateCreate, core: Core) -> UpdateOut:
    """Request an update; 409 if the device already has an active one of that kind."""
    return UpdateOut.of(await core.updates.create(body.request()))


class UpdateRow(UpdateCreate):
    """An item of a batch: a misspelt key is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ItemProblem(BaseModel):
    """Why an item was refused: the problem document ``POST /updates`` would answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str

    @classmethod
    def of(cls, error: ServiceError) -> ItemProblem:
        return cls(title=error.title, status=error.status, detail=error.detail)


class BatchItem(BaseModel):
    row: int = Field(description="the item's position in the request, from 1")
    device: str | None = Field(description="the device the item names (null: none)")
    update: UpdateOut | None = Field(
        description=(
            "the update created, as its driver has it so far: mostly pending, the driver"
            " sends behind the answer (null: refused)"
        )
    )
    problem: ItemProblem | None = Field(description="why it was refused (null: created)")


class UpdateBatchResult(BaseModel):
    requested: int = Field(description="items in the request")
    created: int = Field(description="updates created and handed to their drivers")
    refused: int = Field(description="items refused")
    items: list[BatchItem] = Field(description="one per item of the request, in its order")


@router.post(
    "/batch",
    responses={422: {"description": f"not a JSON array, or more than {MAX_BATCH} items"}},
)
async def create_updates(
    items: Annotated[
        list[Any],
        Body(description=f"update objects as for POST /updates, at most {MAX_BATCH}"),
    ],
    core: Core,
) -> UpdateBatchResult:
    """Start many updates: each item is created and handed to its driver, or refused
    alone with the problem ``POST /updates`` would answer for it (an unknown key too).
    ``replace`` is not offered: a device with an active update is refused. Answers
    once every update created is handed to its driver."""
    if len(items) > MAX_BATCH:
        raise Invalid(f"at most {MAX_BATCH} updates per batch, not {len(items)}")
    answered: dict[int, BatchItem] = {}
    rows: list[UpdateRow] = []
    positions: list[int] = []  # each row's item
    for index, item in enumerate(items):
        if index % 1000 == 999:
            await asyncio.sleep(0)  # a large batch does not hold the event loop
        try:
            rows.append(UpdateRow.model_validate(item))
            positions.append(index)
        except ValidationError as exc:
            named = item.get("device") if isinstance(item, dict) else None
            answered[index] = BatchItem(
                row=index + 1,
                device=named if isinstance(named, str) else None,
                update=None,
                problem=ItemProblem.of(Invalid(_validation_reason(exc))),
            )
    if answered:
        log.info("update batch: %d of %d item(s) malformed", len(answered), len(items))
    outcome = await core.updates.create_many([row.request() for row in rows])
    for index, view in outcome.created:
        answered[positions[index]] = BatchItem(
            row=positions[index] + 1, device=view.device, update=UpdateOut.of(view), problem=None
        )
    for index, error in outcome.refused:
        answered[positions[index]] = BatchItem(
            row=positions[index] + 1,
            device=rows[index].device,
            update=None,
            problem=ItemProblem.of(error),
        )
    return UpdateBatchResult(
        requested=len(items),
        created=len(outcome.created),
        refused=len(items) - len(outcome.created),
        items=[answered[index] for index in range(len(items))],
    )


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "item"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


@router.get("")
async def list_updates(
    core: Core,
    device: Annotated[str | None, Query()] = None,
    state: Annotated[UpdateState | None, Query()] = None,
    active: Annotated[bool | None, Query(description="only unfinished (true) or finished")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="updates per page")] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="updates to skip (newest first)")
    ] = 0,
) -> list[UpdateOut]:
    """Newest first, a page at a time: the next page is at ``offset + limit``."""
    views = await core.updates.list(
        device=device,
        state=None if state is None else state.value,
        active=active,
        limit=limit,
        offset=offset,
    )
    return [UpdateOut.of(v) for v in views]


@router.get("/{update_id}")
async def get_update(update_id: RowId, core: Core) -> UpdateOut:
    """One update with its transitions (the audit trail)."""
    return UpdateOut.of(await core.updates.get(update_id))


@router.post("/{update_id}/cancel")
async def cancel_update(
    update_id: RowId, core: Core, body: CancelRequest | None = None
) -> UpdateOut:
    """Cancel an unfinished update; 409 when it has already finished."""
    await core.updates.cancel(update_id, reason=body.reason if body else None)
    return UpdateOut.of(await core.updates.get(update_id))


@router.post("/{update_id}/state")
async def report_state(update_id: RowId, body: StateReport, core: Core) -> UpdateOut:
    """Record a state reported outside the MQTT dialects (scripts, manual installs).

    Only forward moves and failed/canceled are accepted; the same state again
    records progress.
    """
    await core.updates.transition(
        update_id, body.state, progress=body.progress, reason=body.reason, code=body.code
    )
    return UpdateOut.of(await core.updates.get(update_id))
