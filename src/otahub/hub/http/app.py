"""Builds the hub's ASGI application."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from otahub import __version__
from otahub.hub.core import HubCore
from otahub.hub.dashboard import mount_dashboard
from otahub.hub.http import (
    devices,
    docs,
    firmware,
    groups,
    health,
    integrity,
    metrics,
    problems,
    rollouts,
    signing,
    tuf,
    updates,
)
from otahub.hub.http.auth import AdminAuth
from otahub.hub.http.direct import direct_routes
from otahub.hub.store.ids import is_row_id

API_PREFIX = "/api/v1"
DOCS_URL = f"{API_PREFIX}/docs"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"


def create_http_app(core: HubCore, *, admin_token: str | None, admin: bool = True) -> FastAPI:
    """The REST API under ``/api/v1``; ``admin_token=None`` turns auth off (loopback only).

    ``admin=False`` leaves the admin API (its documentation and ``/metrics``)
    out: the app devices reach when the admin API has a listener of its own.
    """
    app = FastAPI(
        title="otahub",
        version=__version__,
        description="Over-the-air firmware and software updates for MQTT-connected devices.",
        openapi_url=OPENAPI_URL if admin else None,
        docs_url=None,  # served from the installed package below, not from a CDN
        redoc_url=None,
    )
    app.state.core = core
    app.state.downloads = core.metrics.downloads
    problems.install(app)
    app.include_router(health.router)

    app.include_router(tuf.router)  # public: devices fetch the signed metadata
    if not admin:
        return app
    docs.install(app, docs_url=DOCS_URL, openapi_url=OPENAPI_URL)
    admin_auth = AdminAuth(admin_token)
    auth = [Depends(admin_auth)]
    app.include_router(metrics.router, dependencies=auth)
    api = APIRouter(prefix=API_PREFIX, dependencies=auth)
    api.include_router(integrity.router)  # before firmware's /{package_id} routes
    api.include_router(firmware.router)
    api.include_router(devices.router)
    api.include_router(updates.router)
    api.include_router(signing.router)
    api.include_router(groups.router)
    api.include_router(rollouts.router)
    app.include_router(api)
    _direct_content(app, core, admin_auth)
    # the dashboard follows the admin API: on its listener, behind the same token
    mount_dashboard(app, core, admin_token=admin_token)
    return app


def _direct_content(app: FastAPI, core: HubCore, admin_auth: AdminAuth) -> None:
    """The content route, run by the listener without FastAPI when the token is right."""

    async def content(request: Request, params: Mapping[str, str]) -> Response | None:
        package_id = int(params["package_id"])
        if not is_row_id(package_id) or not admin_auth.allows(request.headers.get("authorization")):
            return None  # the app's answer: 422, 401
        return await firmware.content(core, request, package_id)

    pattern = rf"{API_PREFIX}/firmware/(?P<package_id>[0-9]{{1,19}})/content"
    direct_routes(app).add(firmware.CONTENT_ROUTE, pattern, content)
