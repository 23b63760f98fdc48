"""Firmware: the list, the upload (streamed, with progress), a package's page, assign, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from otahub.hub.dashboard.web import dashboard_of
from otahub.hub.http.firmware import upload_multipart
from otahub.hub.http.ids import RowId
from otahub.hub.services.assignments import AssignmentService
from otahub.hub.services.errors import Invalid, ServiceError
from otahub.hub.services.updates import UpdateRequest
from otahub.protocols.checksums import Algorithm

if TYPE_CHECKING:
    from otahub.hub.drivers.thingsboard.assignment import Assignments

router = APIRouter()


def _type_assignments(request: Request) -> Assignments | None:
    found: Assignments | None = getattr(request.app.state, "type_assignments", None)
    return found


@router.get("/firmware", response_class=HTMLResponse)
async def firmware_page(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    return dash.render(
        request,
        "firmware.html",
        packages=await dash.core.firmware.list(),
        algorithms=[a.value for a in Algorithm],
    )


@router.post("/firmware/upload")
async def upload(request: Request) -> JSONResponse:
    """The upload form's XHR: the body streams to the blob store as the API's does."""
    dash = dashboard_of(request)
    dash.check_csrf_header(request)  # before a byte of the file is read
    if not request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise Invalid("the upload is a multipart form")
    fields: dict[str, str | None] = dict.fromkeys(
        ("title", "version", "kind", "device_type", "filename", "checksum_algorithm")
    )
    view = await upload_multipart(request, dash.core, fields)
    return JSONResponse({"id": view.id, "location": f"/firmware/{view.id}"}, status_code=201)


@router.get("/firmware/{package_id}", response_class=HTMLResponse)
async def package_page(request: Request, package_id: RowId) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    core = dash.core
    try:
        package = await core.firmware.get(package_id)
    except ServiceError as exc:
        return dash.render(request, "missing.html", status=exc.status, what=exc.detail)
    assigned = [a for a in await AssignmentService(core.db).list() if a.package.id == package.id]
    return dash.render(
        request,
        "package.html",
        package=package,
        assigned=assigned,
        running=await core.fleet.running(package.id, limit=50),
        updates=await core.fleet.update_counts(package.id),
        device_types=await core.fleet.device_types(),
        can_assign_type=_type_assignments(request) is not None,
    )


@router.post("/firmware/{package_id}/assign")
async def assign(request: Request, package_id: RowId) -> RedirectResponse:
    """To one device (an update, as "update this device") or to every device of a type."""
    dash = dashboard_of(request)
    form = await dash.checked_form(request)
    back = f"/firmware/{package_id}"
    try:
        package = await dash.core.firmware.get(package_id)
        device = form.get("device", "").strip()
        device_type = form.get("device_type", "").strip()
        if device:
            update = await dash.core.updates.create(
                UpdateRequest(device=device, title=package.title, version=package.version),
                source="dashboard",
            )
            return dash.redirect(request, back, msg=f"Update {update.id} created for {device}.")
        if device_type:
            assignments = _type_assignments(request)
            if assignments is None:
                raise Invalid("device type assignments need the ThingsBoard driver")
            await assignments.assign_type(device_type, package.title, package.version)
            return dash.redirect(request, back, msg=f"Assigned to device type {device_type}.")
        raise Invalid("name a device or a device type")
    except ServiceError as exc:
        return dash.redirect(request, back, error=exc.detail)


@router.post("/firmware/{package_id}/delete")
async def delete(request: Request, package_id: RowId) -> RedirectResponse:
    dash = dashboard_of(request)
    await dash.checked_form(request)
    try:
        view = await dash.core.firmware.delete(package_id)
    except ServiceError as exc:
        return dash.redirect(request, f"/firmware/{package_id}", error=exc.detail)
    return dash.redirect(request, "/firmware", msg=f"Deleted {view.title} {view.version}.")
