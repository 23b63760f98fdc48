"""Device labels and filtered device lists through a real ``otahub serve`` process."""

from __future__ import annotations

import httpx

from tests.hub.http.conftest import Api
from tests.hub.http.test_api import problem, unique


def test_labels_on_create_patch_and_in_every_device_answer(api: Api) -> None:
    name = unique("lab")
    r = api.client.post(
        "/devices",
        json={"name": name, "dialect": "thin-edge", "labels": {"site": "berlin", "ring": "a"}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == {"site": "berlin", "ring": "a"}
    r = api.client.patch(
        f"/devices/{name}/labels",
        json={"set": {"ring": "canary", "floor": "2"}, "remove": ["site"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"ring": "canary", "floor": "2"}
    assert api.client.get(f"/devices/{name}").json()["labels"] == {"ring": "canary", "floor": "2"}
    listed = {d["name"]: d for d in api.client.get("/devices").json()}
    assert listed[name]["labels"] == {"ring": "canary", "floor": "2"}
    r = api.client.patch(f"/devices/{name}/labels", json={"remove": ["ring", "floor"]})
    assert r.json()["labels"] == {}


def test_device_list_by_filter(api: Api) -> None:
    site = unique("site")
    names = [unique("flt") for _ in range(3)]
    for i, name in enumerate(names):
        body = {"name": name, "dialect": "thin-edge", "labels": {"site": site, "n": str(i % 2)}}
        assert api.client.post("/devices", json=body).status_code == 201
    found = api.client.get("/devices", params={"filter": f"site={site},n=0"}).json()
    assert [d["name"] for d in found] == sorted([names[0], names[2]])
    found = api.client.get("/devices", params={"filter": f"site={site}", "dialect": "enos"})
    assert found.json() == []
    body = problem(api.client.get("/devices", params={"filter": "online=perhaps"}), 422)
    assert "'online=perhaps'" in body["detail"]


def test_bad_labels_are_refused_and_change_nothing(api: Api) -> None:
    name = unique("badlab")
    assert (
        api.client.post("/devices", json={"name": name, "dialect": "thin-edge"}).status_code == 201
    )
    body = problem(api.client.patch(f"/devices/{name}/labels", json={"set": {"version": "2"}}), 422)
    assert "reserved" in body["detail"]
    problem(api.client.patch(f"/devices/{name}/labels", json={"set": {"a,b": "x"}}), 422)
    problem(api.client.patch(f"/devices/{name}/labels", json={"set": {"a": 1}}), 422)
    problem(api.client.patch("/devices/ghost-x/labels", json={"set": {"a": "b"}}), 404)
    assert api.client.get(f"/devices/{name}").json()["labels"] == {}
    body = problem(
        api.client.post(
            "/devices", json={"name": unique("x"), "dialect": "thin-edge", "labels": {"name": "n"}}
        ),
        422,
    )
    assert "reserved" in body["detail"]


def test_label_route_refuses_a_missing_or_wrong_token(api: Api) -> None:
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        problem(bare.patch("/devices/x/labels", json={"set": {"a": "b"}}, headers=headers), 401)
