"""Sign-in with the admin token, and sign-out."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from otahub.hub.dashboard.session import COOKIE
from otahub.hub.dashboard.web import dashboard_of

log = logging.getLogger("otahub.hub.dashboard")

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only paths of this site: never an open redirect to another host.
    # ("/\\host" is "//host" to browsers)
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    return dash.render(
        request,
        "signin.html",
        csrf="",
        signed_in=False,
        next=_safe_next(request.query_params.get("next")),
    )


@router.post("/signin", response_model=None)
async def signin(request: Request) -> HTMLResponse | RedirectResponse:
    dash = dashboard_of(request)
    form = await request.form()
    token = form.get("token")
    target = _safe_next(str(form.get("next") or "/"))
    if not isinstance(token, str) or not dash.sessions.check_token(token):
        log.info(
            "dashboard sign-in refused from %s", request.client.host if request.client else "?"
        )
        return dash.render(
            request,
            "signin.html",
            status=401,
            csrf="",
            signed_in=False,
            next=target,
            error="That is not the admin token.",
        )
    _session, cookie = dash.sessions.new()
    response = RedirectResponse(target, status_code=303)
    dash.set_cookie(response, cookie)
    return response


@router.post("/signout")
async def signout(request: Request) -> RedirectResponse:
    dash = dashboard_of(request)
    await dash.checked_form(request)
    response = RedirectResponse("/signin?msg=Signed+out.", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
