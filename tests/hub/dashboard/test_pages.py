"""The dashboard served by ``otahub serve``: sign-in, the listener it follows, forms."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.hubproc import HubProcess, free_port

TOKEN = "pages-admin-token-0123456789"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def signed_in(hub: HubProcess, base: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=base or hub.http_url, timeout=30)
    answer = client.post("/signin", data={"token": TOKEN, "next": "/devices"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/devices"
    return client


def csrf_of(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def api(hub: HubProcess) -> httpx.Client:
    return httpx.Client(
        base_url=f"{hub.http_url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


def test_pages_ask_for_sign_in_and_the_cookie_is_httponly_strict(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory(env={"OTAHUB_ADMIN_TOKEN": TOKEN})
    anonymous = httpx.Client(base_url=hub.http_url, timeout=30)
    for path in ("/", "/devices", "/rollouts/x", "/live/overview"):
        answer = anonymous.get(path)
        assert answer.status_code in (303, 401), (path, answer.status_code)
    assert anonymous.get("/devices").headers["location"] == "/signin?next=%2Fdevices"
    refused = anonymous.post("/signin", data={"token": "wrong"})
    assert refused.status_code == 401
    assert "not the admin token" in refused.text
    for elsewhere in ("//elsewhere/x", "/\\elsewhere/x", "https://elsewhere/x"):
        answer = anonymous.post("/signin", data={"token": TOKEN, "next": elsewhere})
        assert answer.headers["location"] == "/"  # never an open redirect
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_the_dashboard_follows_the_admin_api_onto_the_admin_listener(
    hub_factory: Callable[..., HubProcess],
) -> None:
    admin_port = free_port()
    hub = hub_factory("--admin-port", str(admin_port), env={"OTAHUB_ADMIN_TOKEN": TOKEN})
    device_side = httpx.Client(base_url=hub.http_url, timeout=30)
    assert device_side.get("/").status_code == 404
    assert device_side.get("/static/htmx.min.js").status_code == 404
    admin = signed_in(hub, f"http://127.0.0.1:{admin_port}")
    assert admin.get("/devices").status_code == 200
    assert admin.get("/static/htmx.min.js").status_code == 200


def test_with_no_auth_the_dashboard_is_open_and_forms_still_need_their_csrf_token(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory("--no-auth")
    client = httpx.Client(base_url=hub.http_url, timeout=30)
    page = client.get("/")
    assert page.status_code == 200
    assert "no admin token (--no-auth)" in page.text
    assert "otahub_session" in client.cookies
    httpx.post(f"{hub.http_url}/api/v1/devices", json={"name": "n1", "dialect": "thin-edge"})
    assert client.post("/devices/n1/labels", data={"labels": "a=b"}).status_code == 403
    token = csrf_of(client, "/devices/n1")
    saved = client.post("/devices/n1/labels", data={"labels": "a=b", "csrf": token})
    assert saved.status_code == 303
    assert httpx.get(f"{hub.http_url}/api/v1/devices/n1").json()["labels"] == {"a": "b"}


def test_forms_act_through_the_services_and_show_their_refusals(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory(env={"OTAHUB_ADMIN_TOKEN": TOKEN})
    rest = api(hub)
    for i in range(3):
        assert rest.post("/devices", json={"name": f"d{i}", "dialect": "thin-edge"}).is_success
    package = rest.post("/firmware", params={"title": "fw", "version": "1"}, content=b"x" * 100)
    package_id = package.json()["id"]
    client = signed_in(hub)
    token = csrf_of(client, "/devices/d0")

    # labels: replaced by the form's lines, a bad key refused with the service's words
    client.post("/devices/d0/labels", data={"labels": "site=oslo\nring=1", "csrf": token})
    client.post("/devices/d0/labels", data={"labels": "site=rome", "csrf": token})
    assert rest.get("/devices/d0").json()["labels"] == {"site": "rome"}
    bad = client.post(
        "/devices/d0/labels", data={"labels": "bad key=x", "csrf": token}, follow_redirects=True
    )
    assert "label" in bad.text and 'class="flash error"' in bad.text

    # "update this device" makes an update; the package cannot go while it runs
    made = client.post(
        "/devices/d0/update", data={"package": str(package_id), "force": "on", "csrf": token}
    ).headers["location"]
    assert "created" in made
    refused = client.post(
        f"/firmware/{package_id}/delete", data={"csrf": token}, follow_redirects=True
    )
    assert "is used by active update" in refused.text
    assert rest.get(f"/firmware/{package_id}").status_code == 200

    # a rollout form with stages the API refuses gets the API's reason back
    form = {
        "csrf": token,
        "name": "r1",
        "package": "fw\x1f1",
        "filter": "dialect=thin-edge",
        "stages": "50%,10%",
    }
    answer = client.post("/rollouts/new", data=form)
    assert answer.status_code == 422
    assert "must grow" in answer.text
    form["stages"] = "1,100%"
    form["start_at"] = "2099-01-01T00:00:00+00:00"  # started, and waiting for its time
    created = client.post("/rollouts/new", data={**form, "start_now": "on"})
    assert created.headers["location"].startswith("/rollouts/r1")
    assert rest.get("/rollouts/r1").json()["state"] == "scheduled"
    paused = client.post("/rollouts/r1/pause", data={"csrf": token}, follow_redirects=True)
    assert "Pause: done." in paused.text
    assert rest.get("/rollouts/r1").json()["state"] == "paused"

    # the devices list pages and filters; htmx asks for the table alone
    listed = client.get("/devices", params={"q": "d1"}, headers={"HX-Request": "true"})
    assert "<html" not in listed.text
    assert "1 device," in listed.text and "/devices/d1" in listed.text


def test_the_live_rollout_stream_sends_the_rendered_stages(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory(env={"OTAHUB_ADMIN_TOKEN": TOKEN})
    rest = api(hub)
    assert rest.post("/devices", json={"name": "d0", "dialect": "thin-edge"}).is_success
    assert rest.post("/firmware", params={"title": "fw", "version": "1"}, content=b"x").is_success
    body = {"name": "live", "title": "fw", "version": "1", "filter": "dialect=thin-edge"}
    assert rest.post("/rollouts", json=body).is_success
    client = signed_in(hub)
    with client.stream("GET", "/live/rollouts/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        for line in stream.iter_lines():
            lines.append(line)
            if line == "" and lines[:1] == ["event: rollout"]:
                break
    assert 'data: <p>State: <span class="state state-created" id="rollout-state">' in lines[1]
    assert any('id="stage-1"' in line for line in lines)
    assert client.get("/live/rollouts/nothing").status_code == 404


def test_a_package_is_assigned_to_a_device_type_through_the_thingsboard_driver(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory(env={"OTAHUB_ADMIN_TOKEN": TOKEN})
    rest = api(hub)
    device = {"name": "tb1", "dialect": "thingsboard", "token": "tb1-token", "device_type": "meter"}
    assert rest.post("/devices", json=device).is_success
    package = rest.post(
        "/firmware", params={"title": "fw", "version": "3", "device_type": "meter"}, content=b"x"
    )
    package_id = package.json()["id"]
    client = signed_in(hub)
    token = csrf_of(client, f"/firmware/{package_id}")
    done = client.post(
        f"/firmware/{package_id}/assign",
        data={"device_type": "meter", "csrf": token},
        follow_redirects=True,
    )
    assert "Assigned to device type meter." in done.text
    assert "meter (firmware, since" in done.text
    assignments = rest.get("/device-types/assignments").json()
    assert [a["device_type"] for a in assignments] == ["meter"]
    # the type's package reaches its device as an update, as the REST route's does
    updates = rest.get("/updates", params={"device": "tb1"}).json()
    assert [(u["title"], u["version"]) for u in updates] == [("fw", "3")]
    wrong = client.post(
        f"/firmware/{package_id}/assign",
        data={"device_type": "other", "csrf": token},
        follow_redirects=True,
    )
    assert "is for device type" in wrong.text
