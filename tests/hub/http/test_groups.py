"""``/api/v1/groups`` through a real ``otahub serve`` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.hub.http.conftest import Api
from tests.hub.http.test_api import problem, unique


def add_devices(api: Api, prefix: str, n: int, first: int = 0) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(first, first + n)]
    for name in names:
        r = api.client.post("/devices", json={"name": name, "dialect": "thin-edge"})
        assert r.status_code == 201, r.text
    return names


def test_dynamic_group_lists_its_members_a_page_at_a_time(api: Api) -> None:
    prefix = unique("dyn")
    names = add_devices(api, prefix, 5)
    group = unique("g")
    r = api.client.post("/groups", json={"name": group, "filter": f"name={prefix}-*"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["kind"] == "dynamic"
    assert created["filter"] == f"name={prefix}-*"
    assert created["size"] == 5
    page = api.client.get(f"/groups/{group}", params={"limit": 2, "offset": 1}).json()
    assert (page["size"], page["members"], page["limit"], page["offset"]) == (5, names[1:3], 2, 1)
    # a device registered later is a member at once
    (later,) = add_devices(api, prefix, 1, first=5)
    assert api.client.get(f"/groups/{group}", params={"offset": 5}).json()["members"] == [later]


def test_static_group_create_list_show_delete(api: Api) -> None:
    prefix = unique("static")
    names = add_devices(api, prefix, 3)
    group = unique("pilot")
    r = api.client.post("/groups", json={"name": group, "devices": [names[2], names[0]]})
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["filter"], r.json()["size"]) == ("static", None, 2)
    listed = {g["name"]: g for g in api.client.get("/groups").json()}
    assert listed[group]["size"] == 2
    shown = api.client.get(f"/groups/{group}").json()
    assert shown["members"] == [names[0], names[2]]  # by device id
    assert api.client.delete(f"/devices/{names[0]}").status_code == 204
    assert api.client.get(f"/groups/{group}").json()["members"] == [names[2]]
    assert api.client.delete(f"/groups/{group}").status_code == 204
    problem(api.client.get(f"/groups/{group}"), 404)
    problem(api.client.delete(f"/groups/{group}"), 404)
    assert api.client.get(f"/devices/{names[1]}").status_code == 200  # devices stay


def test_bad_groups_are_refused_with_the_reason(api: Api) -> None:
    prefix = unique("bad")
    names = add_devices(api, prefix, 1)
    group = unique("g")
    body = problem(
        api.client.post("/groups", json={"name": group, "devices": [names[0], "ghost-1"]}), 422
    )
    assert "ghost-1" in body["detail"]
    assert body["unknown_devices"] == ["ghost-1"]
    body = problem(api.client.post("/groups", json={"name": group, "filter": "online=maybe"}), 422)
    assert "'online=maybe'" in body["detail"]
    problem(api.client.post("/groups", json={"name": group}), 422)
    problem(api.client.post("/groups", json={"name": group, "filter": "", "devices": names}), 422)
    problem(api.client.post("/groups", json={"name": "a/b", "filter": ""}), 422)
    problem(api.client.post("/groups", json={"name": "with space", "filter": ""}), 422)
    assert api.client.post("/groups", json={"name": group, "filter": ""}).status_code == 201
    body = problem(api.client.post("/groups", json={"name": group, "filter": ""}), 409)
    assert group in body["detail"]
    problem(api.client.get(f"/groups/{group}", params={"limit": 0}), 422)


def test_group_routes_refuse_a_missing_or_wrong_token(api: Api) -> None:
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        problem(bare.get("/groups", headers=headers), 401)
        problem(bare.post("/groups", json={"name": "x", "filter": ""}, headers=headers), 401)
        problem(bare.get("/groups/x", headers=headers), 401)
        problem(bare.delete("/groups/x", headers=headers), 401)
