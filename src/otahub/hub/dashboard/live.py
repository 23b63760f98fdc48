"""Server-sent events for live pages: aggregates re-rendered, a few per second at most.

A page's stream wakes on bus events (update transitions, device reports) and
also every few seconds (the rollout engine's own decisions, such as the brake,
are not bus events). It re-renders the page's changing part from the
database and sends it only when it changed, at most every ``MIN_INTERVAL_S``:
thousands of devices updating at once cost a few renders per second per page,
never one message per device event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from markupsafe import Markup

from otahub.hub.dashboard.overview import overview_numbers
from otahub.hub.dashboard.rollouts import rollout_numbers
from otahub.hub.dashboard.web import Dashboard, dashboard_of
from otahub.hub.services.errors import ServiceError
from otahub.hub.services.events import (
    DeviceCreated,
    DeviceDeleted,
    DeviceReported,
    UpdateCreated,
    UpdateTransitioned,
)

router = APIRouter()

MIN_INTERVAL_S = 0.4
IDLE_REFRESH_S = 2.0
_WAKING = (UpdateCreated, UpdateTransitioned, DeviceCreated, DeviceReported, DeviceDeleted)


def sse(event: str, html: str) -> str:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


async def _stream(
    dash: Dashboard, request: Request, event: str, render: Callable[[], Awaitable[str]]
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    last = ""
    async with dash.core.bus.listen(*_WAKING, maxsize=1) as queue:
        # the hub stopping ends every stream, so it need not wait out uvicorn's grace time
        while not dash.core.parts.is_stopping and not await request.is_disconnected():
            began = loop.time()
            html = await render()
            if html != last:
                last = html
                yield sse(event, html)
            else:
                yield ": idle\n\n"  # a comment: finds a closed connection
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.get(), IDLE_REFRESH_S)
            await asyncio.sleep(max(0.0, MIN_INTERVAL_S - (loop.time() - began)))
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()  # what came in meanwhile is in the next render


def _response(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/live/overview")
async def live_overview(request: Request) -> StreamingResponse:
    dash = dashboard_of(request)
    dash.session(request)

    async def render() -> str:
        return dash.fragment("overview_live.html", **await overview_numbers(dash.core))

    return _response(_stream(dash, request, "overview", render))


@router.get("/live/rollouts/{name}")
async def live_rollout(request: Request, name: str) -> StreamingResponse:
    dash = dashboard_of(request)
    dash.session(request)
    await dash.core.rollouts.get(name)  # 404 before the stream starts

    async def render() -> str:
        try:
            numbers = await rollout_numbers(dash.core, name)
        except ServiceError as exc:
            return str(Markup('<p class="error">{}</p>').format(exc.detail))
        return dash.fragment("rollout_live.html", **numbers)

    return _response(_stream(dash, request, "rollout", render))
