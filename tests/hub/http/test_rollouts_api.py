"""``/api/v1/rollouts`` through a real ``otahub serve`` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.hub.http.conftest import Api
from tests.hub.http.test_api import problem, unique, upload


def fleet(api: Api, prefix: str, n: int) -> None:
    for i in range(n):
        r = api.client.post("/devices", json={"name": f"{prefix}-{i}", "dialect": "thin-edge"})
        assert r.status_code == 201, r.text


def test_rollout_routes_refuse_a_missing_or_wrong_token(api: Api) -> None:
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        problem(bare.get("/rollouts", headers=headers), 401)
        problem(bare.post("/rollouts", json={}, headers=headers), 401)
        for action in ("start", "pause", "resume", "cancel", "retry-failed"):
            problem(bare.post(f"/rollouts/any/{action}", headers=headers), 401)
    bare.close()


def test_create_start_pause_resume_cancel_and_the_trail(api: Api) -> None:
    prefix = unique("ra")
    fleet(api, prefix, 3)
    title = unique("ra-fw")
    upload(api, title, "2.0", b"x" * 1000)
    body = {
        "name": prefix,
        "title": title,
        "version": "2.0",
        "filter": f"name={prefix}-*",
        "stages": "1,100%",
        "rate": "600/min",
        "ramp": "2x",
        "window": "0 2 * * *",
        "window_duration": "2h",
        "timezone": "Europe/Berlin",
        "retries": 2,
        "update_timeout": "1h",
    }
    r = api.client.post("/rollouts", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "created"
    assert created["settings"]["stages"] == ["1", "100%"]
    assert created["settings"]["rate_per_min"] == 600
    assert created["settings"]["window_duration_s"] == 7200
    started = api.client.post(f"/rollouts/{prefix}/start").json()
    assert started["state"] == "running"
    assert [s["size"] for s in started["stages"]] == [1, 2]
    assert started["counts"]["waiting"] == 3
    paused = api.client.post(f"/rollouts/{prefix}/pause", json={"reason": "checking"}).json()
    assert (paused["state"], paused["pause_reason"]) == ("paused", "checking")
    problem(api.client.post(f"/rollouts/{prefix}/pause"), 409)
    assert api.client.post(f"/rollouts/{prefix}/resume").json()["state"] == "running"
    members = api.client.get(f"/rollouts/{prefix}/devices").json()
    assert sorted(m["device"] for m in members) == [f"{prefix}-{i}" for i in range(3)]
    assert [m["stage"] for m in members] == [1, 2, 2]
    canceled = api.client.post(f"/rollouts/{prefix}/cancel").json()
    assert canceled["state"] == "canceled"
    assert canceled["counts"]["canceled"] == 3
    kinds = [e["kind"] for e in api.client.get(f"/rollouts/{prefix}/events").json()]
    assert kinds[:3] == ["created", "targets", "stage_started"]
    assert {"paused", "resumed", "canceled"} <= set(kinds)
    assert prefix in [r["name"] for r in api.client.get("/rollouts").json()]


def test_overlap_is_refused_with_409_naming_the_devices_unless_superseding(api: Api) -> None:
    prefix = unique("ro")
    fleet(api, prefix, 2)
    title = unique("ro-fw")
    upload(api, title, "2.0", b"y" * 1000)
    body = {"title": title, "version": "2.0", "filter": f"name={prefix}-*"}
    assert api.client.post("/rollouts", json={"name": f"{prefix}-a", **body}).status_code == 201
    refused = problem(api.client.post("/rollouts", json={"name": f"{prefix}-b", **body}), 409)
    assert refused["devices"] == [f"{prefix}-0", f"{prefix}-1"]
    assert refused["rollouts"] == [f"{prefix}-a"]
    assert f"{prefix}-0 ({prefix}-a)" in refused["detail"]
    r = api.client.post("/rollouts", json={"name": f"{prefix}-b", "supersede": True, **body})
    assert r.status_code == 201, r.text


def test_bad_rollouts_are_refused_in_their_own_terms(api: Api) -> None:
    title = unique("rb-fw")
    upload(api, title, "2.0", b"z" * 1000)
    good = {"name": unique("rb"), "title": title, "version": "2.0", "filter": "name=none-*"}
    for bad, words in (
        ({"stages": "50%,10%"}, "must grow"),
        ({"stages": "0"}, "neither a device count"),
        ({"rate": "fast"}, "1000/min"),
        ({"ramp": "0.5x"}, "ramp"),
        ({"window": "0 2 * * *"}, "both a cron expression and a duration"),
        ({"window": "nightly", "window_duration": "2h"}, "cron"),
        ({"timezone": "Nowhere/Town"}, "time zone"),
        ({"start_at": "2026-12-24T02:00:00"}, "time zone"),
        ({"group": "g"}, "either a group or a filter"),
        ({"name": "bad name"}, "rollout name"),
    ):
        r = api.client.post("/rollouts", json={**good, **bad})
        assert words in problem(r, 422)["detail"], (bad, r.text)
    problem(api.client.post("/rollouts", json={**good, "version": "9"}), 404)
    problem(api.client.get("/rollouts/nope"), 404)
    problem(api.client.post("/rollouts/nope/start"), 404)


def test_openapi_document_lists_the_rollout_routes(api: Api) -> None:
    paths = set(httpx.get(f"{api.hub.http_url}/api/v1/openapi.json").json()["paths"])
    assert {
        "/api/v1/rollouts",
        "/api/v1/rollouts/{name}",
        "/api/v1/rollouts/{name}/events",
        "/api/v1/rollouts/{name}/devices",
        "/api/v1/rollouts/{name}/start",
        "/api/v1/rollouts/{name}/pause",
        "/api/v1/rollouts/{name}/resume",
        "/api/v1/rollouts/{name}/cancel",
        "/api/v1/rollouts/{name}/retry-failed",
    } <= paths
