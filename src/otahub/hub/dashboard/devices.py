"""Devices: a filtered, paginated list and a device's page (labels, history, update)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from otahub.hub.dashboard.web import dashboard_of
from otahub.hub.services.errors import ServiceError
from otahub.hub.services.fleet_queries import DeviceQuery
from otahub.hub.services.labels import parse_pairs
from otahub.hub.services.updates import UpdateRequest
from otahub.hub.services.views import UpdateView

router = APIRouter()

PAGE = 50
DIALECTS = ("thin-edge", "tedge-legacy", "thingsboard", "enos")
HISTORY = 20  # updates shown with their audit trail on a device page


def _int(text: str | None, default: int) -> int:
    try:
        return max(0, int(text or default))
    except ValueError:
        return default


@router.get("/devices", response_class=HTMLResponse)
async def devices_page(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    q = request.query_params
    online = {"yes": True, "no": False}.get(q.get("online", ""))
    query = DeviceQuery(
        search=q.get("q") or None,
        dialect=q.get("dialect") or None,
        device_type=q.get("type") or None,
        label=q.get("label") or None,
        version=q.get("version") or None,
        online=online,
    )
    offset = _int(q.get("offset"), 0)
    error = None
    try:
        page = await dash.core.fleet.devices(query, offset=offset, limit=PAGE)
    except ServiceError as exc:
        error = exc.detail
        page = await dash.core.fleet.devices(DeviceQuery(), offset=0, limit=PAGE)
    filters = {k: q.get(k, "") for k in ("q", "dialect", "type", "label", "version", "online")}
    # htmx asks for the table alone when a filter changes
    template = "devices_table.html" if request.headers.get("hx-request") else "devices.html"
    return dash.render(
        request,
        template,
        page=page,
        filters=filters,
        dialects=DIALECTS,
        device_types=await dash.core.fleet.device_types(),
        filter_error=error,
    )


@router.get("/devices/{name}", response_class=HTMLResponse)
async def device_page(request: Request, name: str) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    core = dash.core
    try:
        device = await core.devices.get(name)
    except ServiceError as exc:
        return dash.render(request, "missing.html", status=exc.status, what=exc.detail)
    history: list[UpdateView] = []
    for update in await core.updates.list(device=name, limit=HISTORY):
        history.append(await core.updates.get(update.id))
    packages = await core.firmware.list()
    return dash.render(
        request,
        "device.html",
        device=device,
        history=history,
        packages=packages,
        labels_text="\n".join(f"{k}={v}" for k, v in sorted(device.labels.items())),
    )


@router.post("/devices/{name}/labels")
async def set_labels(request: Request, name: str) -> RedirectResponse:
    dash = dashboard_of(request)
    form = await dash.checked_form(request)
    back = f"/devices/{name}"
    try:
        wanted = parse_pairs(form.get("labels", "").strip().replace("\r", ""), "\n")
        current = (await dash.core.devices.get(name)).labels
        removed = [k for k in current if k not in wanted]
        await dash.core.devices.set_labels(name, wanted, removed)
    except ServiceError as exc:
        return dash.redirect(request, back, error=exc.detail)
    return dash.redirect(request, back, msg="Labels saved.")


@router.post("/devices/{name}/update")
async def update_device(request: Request, name: str) -> RedirectResponse:
    """ "Update this device": one update through the update service, as the API makes it."""
    dash = dashboard_of(request)
    form = await dash.checked_form(request)
    back = f"/devices/{name}"
    try:
        package = await dash.core.firmware.get(_int(form.get("package"), 0))
        update = await dash.core.updates.create(
            UpdateRequest(
                device=name,
                title=package.title,
                version=package.version,
                replace=form.get("replace") == "on",
                force=form.get("force") == "on",
            ),
            source="dashboard",
        )
    except ServiceError as exc:
        return dash.redirect(request, back, error=exc.detail)
    return dash.redirect(request, back, msg=f"Update {update.id} created.")
