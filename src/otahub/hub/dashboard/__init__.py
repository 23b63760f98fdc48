"""The web dashboard: the fleet, its packages, updates and rollouts, in the browser.

Served at ``/`` by the app that carries the admin API (the HTTP port, or the
admin listener with ``--admin-port``); server-rendered pages, htmx for partial
updates, server-sent events for live parts. Every action goes through the
hub's services, as the REST API's do.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from otahub.hub.core import HubCore
from otahub.hub.dashboard import devices, firmware, live, overview, rollouts, signin, updates
from otahub.hub.dashboard.session import Sessions
from otahub.hub.dashboard.web import HERE, CsrfRefused, Dashboard, NotSignedIn

log = logging.getLogger("otahub.hub.dashboard")

STATIC = "/static"


async def _not_signed_in(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith("/live/") or request.method != "GET":
        return JSONResponse({"detail": "sign in first"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


async def _csrf_refused(request: Request, _exc: Exception) -> Response:
    log.warning("dashboard: %s %s refused: no valid CSRF token", request.method, request.url.path)
    return HTMLResponse(
        "<!doctype html><title>Refused</title><h1>Refused</h1>"
        "<p>The form did not carry this session's CSRF token; reload the page and try again.</p>",
        status_code=403,
    )


def mount_dashboard(app: FastAPI, core: HubCore, *, admin_token: str | None) -> None:
    app.state.dashboard = Dashboard(core, Sessions(admin_token))
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    for module in (signin, overview, devices, firmware, rollouts, updates, live):
        app.include_router(module.router, include_in_schema=False)
