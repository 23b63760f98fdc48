"""Rendering and the guards every dashboard page passes: signed in, CSRF checked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from otahub import __version__
from otahub.hub.core import HubCore
from otahub.hub.dashboard.charts import bar_chart
from otahub.hub.dashboard.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, Sessions

HERE = Path(__file__).parent


class NotSignedIn(Exception):
    """A page asked for without a valid session: the answer is the sign-in page."""


class CsrfRefused(Exception):
    """A POST without its session's CSRF token."""


def _when(value: datetime | None) -> str:
    if value is None:
        return "\u2013"  # an en dash: no time
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _percent(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else round(100.0 * part / whole, 2)


class Dashboard:
    def __init__(self, core: HubCore, sessions: Sessions) -> None:
        self.core = core
        self.sessions = sessions
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["size"] = _size
        self.env.globals["percent"] = _percent
        self.env.globals["bar_chart"] = bar_chart
        self.env.globals["version"] = __version__

    # -- sessions --------------------------------------------------------------

    def session(self, request: Request) -> Session:
        """The request's session; with ``--no-auth`` a new one if it has none."""
        found = self.sessions.read(request.cookies.get(COOKIE))
        if found is not None:
            return found
        if not self.sessions.open:
            raise NotSignedIn
        session, cookie = self.sessions.new()
        request.state.new_cookie = cookie
        return session

    async def checked_form(self, request: Request) -> dict[str, str]:
        """A POSTed form of a session, its CSRF token checked before anything else."""
        session = self.session(request)
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.sessions.check_csrf(session, fields.get(CSRF_FIELD)):
            raise CsrfRefused
        return fields

    def check_csrf_header(self, request: Request) -> None:
        """For requests whose body is not a form (the firmware upload's stream)."""
        session = self.session(request)
        if not self.sessions.check_csrf(session, request.headers.get(CSRF_HEADER)):
            raise CsrfRefused

    def set_cookie(self, response: HTMLResponse | RedirectResponse, cookie: str) -> None:
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=self.sessions.lifetime_s,
            httponly=True,
            samesite="strict",
            path="/",
        )

    # -- answers ---------------------------------------------------------------

    def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        session = self.session(request) if "csrf" not in context else None
        if session is not None:
            context["csrf"] = self.sessions.csrf(session)
        context.setdefault("signed_in", session is not None)
        context.setdefault("message", request.query_params.get("msg"))
        context.setdefault("error", request.query_params.get("error"))
        html = self.env.get_template(template).render(
            request=request, open=self.sessions.open, **context
        )
        response = HTMLResponse(html, status_code=status)
        self._finish(request, response)
        return response

    def fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def redirect(
        self, request: Request, to: str, *, msg: str | None = None, error: str | None = None
    ) -> RedirectResponse:
        query = urlencode({k: v for k, v in (("msg", msg), ("error", error)) if v})
        sep = "&" if "?" in to else "?"
        response = RedirectResponse(f"{to}{sep}{query}" if query else to, status_code=303)
        self._finish(request, response)
        return response

    def _finish(self, request: Request, response: HTMLResponse | RedirectResponse) -> None:
        cookie = getattr(request.state, "new_cookie", None)
        if cookie:
            self.set_cookie(response, cookie)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'"
        )


def dashboard_of(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found
