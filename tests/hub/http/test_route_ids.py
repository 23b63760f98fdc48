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


def _id_params(route: APIRoute) -> dict[tuple[str, str], bool]:
    """(where, name) of every id parameter of a route, and whether it is a row id.

    Row ids are integers in the path, or integer query parameters named like
    ids (``limit`` and ``offset`` are integers but no ids: 0 is a fine offset);
    a parameter only named like an id (an EnOS ``sessionId``) is walked too,
    and must not fail with a 5xx either.
    """
    dependant = route.dependant
    found: dict[tuple[str, str], bool] = {}
    for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
        for p in params:
            named_id = p.name == "id" or p.name.endswith("_id")
            row_id = p.field_info.annotation is int and (where == "path" or named_id)
            if row_id or named_id:
                found[(where, p.name if where == "path" else p.alias)] = row_id
    return found


def _requests(path: str, route: APIRoute) -> Iterator[tuple[str, str, dict[str, str], bool]]:
    """(method, path, query, row id) with each bad id in each id parameter, the rest harmless."""

    def fill(bad_param: str | None, bad: str) -> str:
        return _PARAM.sub(lambda m: bad if m.group(1) == bad_param else "x", path)

    for method in sorted(route.methods):
        for bad in BAD_IDS:
            for (where, name), row_id in _id_params(route).items():
                if where == "path":
                    yield method, fill(name, bad), {}, row_id
                else:
                    yield method, fill(None, bad), {name: bad}, row_id


def test_every_route_answers_impossible_ids_with_404_or_422_never_500(
    api: Api, tmp_path: Path
) -> None:
    routes = _routes(tmp_path)
    walked: set[str] = set()
    client = api.client
    base = api.hub.http_url
    for template, route in routes:
        for method, path, query, row_id in _requests(template, route):
            walked.add(template)
            r = client.request(method, f"{base}{path}", params=query, content=b"")
            where = (method, path, query, r.status_code, r.text)
            assert r.status_code < 500, where
            if row_id:
                assert r.status_code in (404, 422), where
                assert r.headers["content-type"] == "application/problem+json", where
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
