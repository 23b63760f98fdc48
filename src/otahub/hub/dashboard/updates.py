"""The update list: filterable by device, state and whether it is still running."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from otahub.hub.dashboard.web import dashboard_of
from otahub.hub.services.errors import ServiceError
from otahub.hub.services.views import UpdateView
from otahub.protocols.states import UpdateState

router = APIRouter()

STATES = tuple(s.value for s in UpdateState)


@router.get("/updates", response_class=HTMLResponse)
async def updates_page(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    q = request.query_params
    device = q.get("device") or None
    state = q.get("state") or None
    active = {"yes": True, "no": False}.get(q.get("active", ""))
    error = None
    found: list[UpdateView] = []
    try:
        found = await dash.core.updates.list(device=device, state=state, active=active, limit=200)
    except ServiceError as exc:
        error = exc.detail
    return dash.render(
        request,
        "updates.html",
        updates=found,
        states=STATES,
        device=device or "",
        state=state or "",
        active=q.get("active", ""),
        error=error or q.get("error"),
    )
