"""Rollouts: the list, the create form (the API's own model and checks), a rollout's page
and its actions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from otahub.hub.core import HubCore
from otahub.hub.dashboard.web import dashboard_of
from otahub.hub.http.rollouts import RolloutCreate
from otahub.hub.rollouts.views import RolloutView
from otahub.hub.services.errors import ServiceError

router = APIRouter()

EVENTS = 50  # newest entries of the event log on the page


def create_fields(form: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the API's request body: an empty field takes the API's default."""
    body: dict[str, Any] = {}
    for key in RolloutCreate.model_fields:
        if key in ("dynamic", "supersede"):
            body[key] = form.get(key) == "on"
        elif value := form.get(key, "").strip():
            body[key] = value
    return body


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
    )


async def rollout_numbers(core: HubCore, name: str) -> dict[str, Any]:
    """The parts of a rollout's page that change while it runs; the live stream re-sends them."""
    rollout = await core.rollouts.get(name)
    return {"rollout": rollout, "events": await core.rollouts.events(name, limit=EVENTS)}


@router.get("/rollouts", response_class=HTMLResponse)
async def rollouts_page(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    return dash.render(request, "rollouts.html", rollouts=await dash.core.rollouts.list())


@router.get("/rollouts/new", response_class=HTMLResponse)
async def new_rollout_page(request: Request) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    return await _form(request, {})


async def _form(request: Request, values: dict[str, str], error: str | None = None) -> HTMLResponse:
    dash = dashboard_of(request)
    return dash.render(
        request,
        "rollout_new.html",
        status=422 if error else 200,
        values=values,
        error=error,
        packages=await dash.core.firmware.list(),
        groups=await dash.core.groups.list(),
    )


@router.post("/rollouts/new", response_model=None)
async def create_rollout(request: Request) -> HTMLResponse | RedirectResponse:
    dash = dashboard_of(request)
    form = await dash.checked_form(request)
    package = form.get("package", "")
    title, _, version = package.partition("\x1f")
    fields = {**form, "title": title, "version": version}
    try:
        body = RolloutCreate.model_validate(create_fields(fields))
        view: RolloutView = await dash.core.rollouts.create(body.spec(), supersede=body.supersede)
        if form.get("start_now") == "on":
            view = await dash.core.rollouts.start(view.name)
    except ValidationError as exc:
        return await _form(request, form, _validation_text(exc))
    except ServiceError as exc:
        return await _form(request, form, exc.detail)
    return dash.redirect(request, f"/rollouts/{view.name}", msg=f"Rollout {view.name} created.")


@router.get("/rollouts/{name}", response_class=HTMLResponse)
async def rollout_page(request: Request, name: str) -> HTMLResponse:
    dash = dashboard_of(request)
    dash.session(request)
    try:
        numbers = await rollout_numbers(dash.core, name)
    except ServiceError as exc:
        return dash.render(request, "missing.html", status=exc.status, what=exc.detail)
    return dash.render(request, "rollout.html", **numbers)


@router.post("/rollouts/{name}/{action}")
async def rollout_action(request: Request, name: str, action: str) -> RedirectResponse:
    dash = dashboard_of(request)
    form = await dash.checked_form(request)
    back = f"/rollouts/{name}"
    service = dash.core.rollouts
    try:
        if action == "start":
            await service.start(name)
        elif action == "pause":
            await service.pause(name, form.get("reason") or "paused in the dashboard")
        elif action == "resume":
            await service.resume(name)
        elif action == "cancel":
            await service.cancel(name)
        elif action == "retry-failed":
            await service.retry_failed(name)
        else:
            return dash.redirect(request, back, error=f"unknown action {action!r}")
    except ServiceError as exc:
        return dash.redirect(request, back, error=exc.detail)
    return dash.redirect(request, back, msg=f"{action.capitalize().replace('-', ' ')}: done.")
