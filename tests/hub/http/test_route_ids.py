"""Every route of the hub answers an impossible id with 404 or 422, never 500.

The routes are read from the hub's own FastAPI application (the REST API and
every driver's routes), so a route added later is walked too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

from fastapi.routing import APIRoute, iter_route_contexts

from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.registry import DRIVERS
from otahub.hub.http.app import create_http_app
from otahub.hub.settings import HubSettings
from otahub.hub.transport import LocalTransport
from otahub.mqtt.server import MQTTServer, ServerConfig
from tests.hub.http.conftest import Api

BAD_IDS = (
    "99999999999999999999999",  # beyond any integer column
    "9223372036854775808",  # just past SQLite's 64-bit range
    "2147483648",  # just past PostgreSQL's INTEGER
    "-1",
    "0",
    "abc",
    "1.5",
    "\u00b2",  # a Unicode digit that int() refuses
)
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _routes(tmp: Path) -> list[tuple[str, APIRoute]]:
    """The routes of a hub application built exactly as ``otahub serve`` builds it."""
    settings = HubSettings(data_dir=tmp / "data", no_auth=True)
    core = HubCore(CoreConfig(data_dir=settings.data_dir))
    mqtt = MQTTServer(ServerConfig())
    ctx = DriverContext(core=core, mqtt=mqtt, transport=LocalTransport(mqtt), settings=settings)
    app = create_http_app(core, admin_token=None)
    for driver_class in DRIVERS:
        driver_class(ctx).mount(app)
    asyncio.run(core.close())
    # Included routers are resolved lazily; this yields each route with its full path.
    return [
        (context.path, context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.path is not None
    ]


def _id_params(route: APIRoute) -> tuple[set[str], set[str]]:
    """The integer path and query parameters of a route."""
    dependant = route.dependant
    path = {p.name for p in dependant.path_params if p.field_info.annotation is int}
    query = {p.alias for p in dependant.query_params if p.field_info.annotation is int}
    return path, query


def _requests(path: str, route: APIRoute) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(method, path, query) with each bad id in each id parameter, the rest harmless."""
    path_ids, query_ids = _id_params(route)

    def fill(bad_param: str | None, bad: str) -> str:
        return _PARAM.sub(
            lambda m: bad if m.group(1) == bad_param else "x",
            path,
        )

    for method in sorted(route.methods):
        for bad in BAD_IDS:
            for name in path_ids:
                yield method, fill(name, bad), {}
            for name in query_ids:
                yield method, fill(None, bad), {name: bad}


def test_every_route_answers_impossible_ids_with_404_or_422_never_500(
    api: Api, tmp_path: Path
) -> None:
    routes = _routes(tmp_path)
    walked: set[str] = set()
    client = api.client
    base = api.hub.http_url
    for template, route in routes:
        for method, path, query in _requests(template, route):
            walked.add(template)
            r = client.request(method, f"{base}{path}", params=query, content=b"")
            assert r.status_code in (404, 422), (method, path, query, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json", (path, r.text)
    # The walk reached the id routes known today (new ones are walked as they come).
    assert {
        "/api/v1/firmware/{package_id}",
        "/api/v1/firmware/{package_id}/content",
        "/api/v1/updates/{update_id}",
        "/api/v1/updates/{update_id}/cancel",
        "/api/v1/updates/{update_id}/state",
        "/enos/ota/{update_id}/{token}",
    } <= walked
    assert "OverflowError" not in api.hub.log()
    assert "Traceback" not in api.hub.log()
