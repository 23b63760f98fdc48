"""HTTP routes of the dialect.

- ``GET /api/v1/{token}/firmware`` and ``/software``: ThingsBoard's device
  download API (``DeviceApiController``), token in the path, no admin auth.
  ``size``/``chunk`` select ``[size·chunk, size·chunk+size)``; without them
  the whole file is served with Range, HEAD and ETag support.
- ``PUT /api/v1/thingsboard/devices/{name}``: the dialect's per-device
  settings (checksum algorithm, basic MQTT credentials), admin only.
- the device-type assignment routes (see ``assignment.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field

from otahub.hub.drivers.thingsboard.assignment import mount_assignments
from otahub.hub.drivers.thingsboard.devicestate import CHECKSUM_ALGORITHM, MQTT_BASIC
from otahub.hub.drivers.thingsboard.fetches import Fetch
from otahub.hub.http.auth import AdminAuth, load_or_create_token
from otahub.hub.http.direct import confirm, direct_routes
from otahub.hub.http.files import FileStreamResponse, download_stats, file_response
from otahub.hub.services.errors import Invalid, NotFound
from otahub.hub.services.integrity import FirmwareCorrupt
from otahub.protocols.checksums import Algorithm
from otahub.protocols.thingsboard import (
    BasicMqttCredentials,
    PackageAttributes,
    PackageType,
    ThingsBoardError,
    decide_http_firmware,
    http_firmware_headers,
)

if TYPE_CHECKING:
    from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

log = logging.getLogger("otahub.hub.thingsboard")

DIRECT_NAME = "thingsboard download"  # among the listener's direct routes


async def serve_package(
    driver: ThingsBoardDriver, request: Request, token: str, package: PackageType
) -> Response:
    device = await driver.core.devices.by_token(token)
    known = device is not None and device.dialect == driver.dialect
    found = None
    if known:
        assert device is not None
        found = await driver.effective(device.name, package)
    view = None if found is None else found[0]
    try:
        path = None if view is None else await driver.core.integrity.servable(view.sha256)
    except FirmwareCorrupt as exc:  # the update has failed with this reason
        return Response(exc.detail, status_code=500, media_type="text/plain")
    attrs = None
    if view is not None:
        # A package whose bytes are not a local file is served like an external URL one: 404.
        attrs = PackageAttributes(
            view.title, view.version, size=view.size, url=None if path else view.source_url or "-"
        )
    decision = decide_http_firmware(dict(request.query_params), token_known=known, package=attrs)
    if decision.status != 200:
        log.info(
            "GET %s for %s: %d %s",
            request.url.path,
            device.name if device else "unknown token",
            decision.status,
            decision.reason,
        )
        return Response(decision.reason, status_code=decision.status, media_type="text/plain")
    assert view is not None and path is not None and device is not None and found is not None
    driver.fetches.note(device.name, package, Fetch(view.id, found[1]))
    file_name = view.filename or f"{view.title}-{view.version}.bin"
    headers = http_firmware_headers(file_name, view.content_type)
    content_type = headers.pop("Content-Type")
    whole = decision.start == 0 and decision.end == view.size
    if whole:
        return file_response(
            request,
            path,
            etag=view.sha256,
            media_type=content_type,
            extra_headers=headers,
            size=view.size,
        )
    # One chunk of the file: the same response as any file part, sent zero-copy
    # where the server can (a 200, as ThingsBoard answers chunk requests).
    framing = {name.lower(): value for name, value in headers.items()}
    framing["content-type"] = content_type
    framing["content-length"] = str(decision.end - decision.start)
    return FileStreamResponse(
        path,
        status_code=200,
        headers=framing,
        start=decision.start,
        stop=decision.end,
        size=view.size,
        send_body=request.method != "HEAD",
        stats=download_stats(request),
    )


class BasicCredentialsIn(BaseModel):
    clientId: str | None = None
    userName: str | None = None
    password: str | None = None


class DeviceSettingsIn(BaseModel):
    checksum_algorithm: str | None = Field(
        None, description="MD5, SHA256, SHA384, SHA512, CRC32, MURMUR3_32 or MURMUR3_128"
    )
    mqtt_basic: BasicCredentialsIn | None = Field(
        None, description="basic MQTT credentials, in addition to the access token"
    )


class DeviceSettingsOut(BaseModel):
    name: str
    checksum_algorithm: str
    mqtt_basic: dict[str, str] | None


async def update_settings(
    driver: ThingsBoardDriver, name: str, body: DeviceSettingsIn
) -> DeviceSettingsOut:
    device = await driver.core.devices.get(name)
    if device.dialect != driver.dialect:
        raise NotFound(f"device {name!r} is not a ThingsBoard device")
    algorithm: Algorithm | None = None
    if body.checksum_algorithm is not None:
        try:
            algorithm = Algorithm.parse(body.checksum_algorithm)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    basic: BasicMqttCredentials | None = None
    if body.mqtt_basic is not None:
        try:
            basic = BasicMqttCredentials(
                body.mqtt_basic.clientId or None,
                body.mqtt_basic.userName or None,
                body.mqtt_basic.password or None,
            )
        except ThingsBoardError as exc:
            raise Invalid(str(exc)) from None
        owner = driver.basic.owner(basic.client_id, basic.user_name)
        if owner is not None and owner != name:
            raise Invalid(f"device {owner!r} already uses these basic MQTT credentials")
    async with driver.states.edit(name) as state:
        if algorithm is not None:
            state[CHECKSUM_ALGORITHM] = algorithm.value
        if basic is not None:
            stored: dict[str, Any] = {
                "clientId": basic.client_id,
                "userName": basic.user_name,
                "password": basic.password,
            }
            state[MQTT_BASIC] = {k: v for k, v in stored.items() if v}
        current = dict(state)
    if basic is not None:
        driver.basic.put(name, basic)
    shown = current.get(MQTT_BASIC)
    return DeviceSettingsOut(
        name=name,
        checksum_algorithm=driver.algorithm(await driver.core.devices.get(name)).value,
        mqtt_basic=None
        if not isinstance(shown, dict)
        else {k: v for k, v in shown.items() if k != "password"},
    )


def mount_routes(driver: ThingsBoardDriver, app: FastAPI) -> None:
    """ThingsBoard's device HTTP API, where ThingsBoard has it (``/api/v1/{token}/...``)."""
    devices = APIRouter(tags=["thingsboard devices"])

    @devices.get("/api/v1/{token}/firmware")
    @devices.head("/api/v1/{token}/firmware")
    async def firmware(token: str, request: Request) -> Response:
        """ThingsBoard's HTTP firmware download for a device token."""
        confirm(request, DIRECT_NAME)
        return await serve_package(driver, request, token, PackageType.FIRMWARE)

    @devices.get("/api/v1/{token}/software")
    @devices.head("/api/v1/{token}/software")
    async def software(token: str, request: Request) -> Response:
        """ThingsBoard's HTTP software download for a device token."""
        confirm(request, DIRECT_NAME)
        return await serve_package(driver, request, token, PackageType.SOFTWARE)

    app.include_router(devices)

    # the same two routes, run by the hub's listener without FastAPI (direct.py)
    async def direct(request: Request, params: Mapping[str, str]) -> Response:
        kind = PackageType.FIRMWARE if params["kind"] == "firmware" else PackageType.SOFTWARE
        return await serve_package(driver, request, params["token"], kind)

    direct_routes(app).add(
        DIRECT_NAME, r"/api/v1/(?P<token>[^/]+)/(?P<kind>firmware|software)", direct
    )


def mount_admin_routes(driver: ThingsBoardDriver, app: FastAPI) -> None:
    """Device settings and device-type assignments, for the operator."""
    settings = driver.ctx.settings
    auth = AdminAuth(
        None if settings.no_auth else load_or_create_token(settings.data_dir, settings.admin_token)
    )
    admin = APIRouter(prefix="/api/v1/thingsboard", tags=["thingsboard"])
    admin.dependencies.append(Depends(auth))

    @admin.put("/devices/{name}")
    async def settings_route(name: str, body: DeviceSettingsIn) -> DeviceSettingsOut:
        """Set a ThingsBoard device's checksum algorithm and/or basic MQTT credentials."""
        return await update_settings(driver, name, body)

    mount_assignments(driver.assignments, app, auth)
    app.state.type_assignments = driver.assignments  # the dashboard assigns through it too
    app.include_router(admin)
