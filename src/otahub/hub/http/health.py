"""``/healthz`` and ``/readyz``: for load balancers and service managers, no auth."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from otahub.hub.http.deps import Core

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and answers HTTP."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    responses={503: {"description": "not ready; `problems` says why"}},
)
async def readyz(core: Core) -> JSONResponse:
    """The database answers and every listener (MQTT, HTTP) is up."""
    problems = await core.health.problems()
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok", "problems": []})
