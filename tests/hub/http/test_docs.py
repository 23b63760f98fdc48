"""The API documentation of ``otahub serve``: offline, valid, with a working Authorize."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx

from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.registry import DRIVERS
from otahub.hub.http.app import create_http_app
from otahub.hub.settings import HubSettings
from otahub.hub.transport import LocalTransport
from otahub.mqtt.server import MQTTServer
from tests.hubproc import HubProcess

_URL_IN_PAGE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")
_PARAM = re.compile(r"{([^}]+)}")


def test_docs_page_loads_nothing_from_outside_the_hub(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory()
    page = httpx.get(f"{hub.http_url}/api/v1/docs", timeout=10)
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    assert "://" not in page.text, "the docs page names an outside URL"
    loaded = [a or b for a, b in _URL_IN_PAGE.findall(page.text)]
    assert any(url.endswith(".js") for url in loaded), loaded
    for url in loaded:
        assert url.startswith("/"), url
        asset = httpx.get(f"{hub.http_url}{url}", timeout=10)
        assert asset.status_code == 200, url
        assert asset.content, url


def _app(tmp_path: Path) -> object:
    settings = HubSettings(data_dir=tmp_path / "data")
    core = HubCore(CoreConfig(settings.data_dir))
    app = create_http_app(core, admin_token="secret")
    mqtt = MQTTServer()
    ctx = DriverContext(core=core, mqtt=mqtt, transport=LocalTransport(mqtt), settings=settings)
    for driver_class in DRIVERS:
        driver = driver_class(ctx)
        driver.mount(app)
        driver.mount_admin(app)
    return app


def test_openapi_document_has_unique_operation_ids_and_declares_its_path_parameters(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Duplicate Operation ID" is a warning
        document = app.openapi()  # type: ignore[attr-defined]
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for path, operations in document["paths"].items():
        wanted = set(_PARAM.findall(path))
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == wanted, (method, path, declared)


def test_openapi_document_declares_the_admin_bearer_token(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory()
    document = httpx.get(f"{hub.http_url}/api/v1/openapi.json", timeout=10).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["adminToken"]["type"] == "http"
    assert schemes["adminToken"]["scheme"] == "bearer"
    assert document["paths"]["/api/v1/devices"]["get"]["security"] == [{"adminToken": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]
