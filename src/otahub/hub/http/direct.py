"""Download routes the hub's HTTP listener runs without the framework around them.

A 1 MiB range costs the kernel about 0.3 ms; through FastAPI the same GET
cost the hub about as much again in Python (about 15 nested middleware and
router frames, dependency solving, parameter validation), twice nginx's CPU
per request. The download routes therefore register here too, with the same
handler their FastAPI route calls, so every route keeps its one
implementation of its rules (capability tokens, admin auth, integrity, ETag,
Range, HEAD). The listener (``listener.py``) runs the handler directly for a
GET or HEAD the app was seen to route to it (``DirectRoutes``).

A handler returns None when the request is not one it answers alone (a
malformed id, a refused token): the listener then runs the full app for it,
which answers exactly as before, errors and their logging included. An
exception from a handler does the same, so error answers keep coming from the
app's exception handlers. Handlers must therefore have no effect before they
decide (they only read), or an effect that may happen twice.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["DirectHandler", "DirectRoutes", "confirm", "direct_routes"]

DirectHandler = Callable[[Request, Mapping[str, str]], Awaitable[Response | None]]

#: Paths remembered per app at most; past it the oldest is forgotten.
PATHS = 4096
#: Longer paths are always served through the app (real download paths are far shorter).
MAX_PATH = 512


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    pattern: re.Pattern[str]
    handler: DirectHandler


class DirectRoutes:
    """The app's direct routes, and the requests the app was seen to route to them.

    A pattern alone could take a path from a route the app matches first (a
    device named ``firmware`` under ``/api/v1/devices/{name}`` looks like a
    ThingsBoard token route), so a method and path go the direct way only
    once the app itself routed them to the mirrored endpoint, which says so
    with ``confirm``: the first request for a URL goes through the app, the
    following ones (ranges, resumed downloads, other devices) do not.
    """

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._confirmed: dict[tuple[str, str], tuple[DirectHandler, dict[str, str]]] = {}

    def add(self, name: str, pattern: str, handler: DirectHandler) -> None:
        """``pattern``: a regular expression for the whole decoded path; its named
        groups go to ``handler``. ``name`` is what the mirrored endpoint confirms."""
        self._routes.append(_Route(name, re.compile(pattern), handler))
        self._confirmed.clear()

    def lookup(self, method: str, path: str) -> tuple[DirectHandler, dict[str, str]] | None:
        """The handler and its parameters, if the app routes ``method path`` to it."""
        return self._confirmed.get((method, path))

    def confirm(self, scope: Mapping[str, object], name: str) -> None:
        method, path = scope.get("method"), scope.get("path")
        if method not in ("GET", "HEAD") or not isinstance(path, str) or scope.get("root_path"):
            return
        if len(path) > MAX_PATH:
            # confirmed before the route checks its token: an unauthenticated client
            # must not make the table hold long paths
            return
        for route in self._routes:
            if route.name != name:
                continue
            found = route.pattern.fullmatch(path)
            if found is not None:
                while len(self._confirmed) >= PATHS:
                    # the oldest goes: a flood of new paths cannot flush the table at once
                    del self._confirmed[next(iter(self._confirmed))]
                self._confirmed[(method, path)] = (route.handler, found.groupdict())
                return

    def __len__(self) -> int:
        return len(self._routes)


def direct_routes(app: FastAPI) -> DirectRoutes:
    """The app's direct routes (created with the first one)."""
    routes = getattr(app.state, "direct_routes", None)
    if not isinstance(routes, DirectRoutes):
        routes = DirectRoutes()
        app.state.direct_routes = routes
    return routes


def confirm(request: Request, name: str) -> None:
    """Called by an endpoint that a direct route ``name`` mirrors: the app routes
    this request's method and path to it."""
    routes = getattr(request.app.state, "direct_routes", None)
    if isinstance(routes, DirectRoutes):
        routes.confirm(request.scope, name)
