"""The overview: fleet counts, firmware versions, active rollouts, latest failures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from otahub.hub.core import HubCore
from otahub.hub.dashboard.web import dashboard_of
from otahub.hub.rollouts.views import ACTIVE_STATES

router = APIRouter()


async def overview_numbers(core: HubCore) -> dict[str, Any]:
    """What the overview shows; the live stream sends the same, re-rendered."""
    dialects = await core.fleet.by_dialect()
    versions = await core.fleet.versions()
    rollouts = [r for r in await core.rollouts.list() if r.state in ACTIVE_STATES]
    failures = await core.updates.list(state="failed", limit=10)
    return {
        "dialects": dialects,
        "total": sum(d.total for d in dialects),
        "online": sum(d.online for d in dialects),
        "versions": [
            (f"{v.title or '?'} {v.version}" if v.version else "(none reported)", v.devices)
            for v in versions
        ],
        "rollouts": rollouts,
        "failures": failures,
    }


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    numbers = await overview_numbers(dash.core)
    return dash.render(request, "overview.html", **numbers)
