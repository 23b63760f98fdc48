"""``POST /api/v1/updates/batch`` through a real ``otahub serve`` process."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.hub.http.conftest import Api
from tests.hub.http.test_api import add_device, problem, start_update, unique, upload


def _thin_edge_child(api: Api) -> str:
    return str(add_device(api, dialect="thin-edge")["name"])


def _state(api: Api, update_id: int, want: str) -> str:
    """The update's state once it is ``want`` (or what it is after a few seconds)."""
    deadline = time.monotonic() + 10
    while True:
        state: str = api.client.get(f"/updates/{update_id}").json()["state"]
        if state == want or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_batch_creates_each_update_and_hands_it_to_its_driver(api: Api) -> None:
    title = unique("batchfw")
    upload(api, title)
    children = [_thin_edge_child(api) for _ in range(3)]
    enos = add_device(api)["name"]
    items = [{"device": name, "title": title, "version": "1.0", "force": True} for name in children]
    items.append({"device": enos, "title": title, "version": "1.0", "timeout": 600})
    r = api.client.post("/updates/batch", json=items)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["requested"], result["created"], result["refused"]) == (4, 4, 0)
    assert [i["row"] for i in result["items"]] == [1, 2, 3, 4]
    assert [i["device"] for i in result["items"]] == [*children, enos]
    assert all(i["problem"] is None for i in result["items"])
    updates = [i["update"] for i in result["items"]]
    assert [u["device"] for u in updates] == [*children, enos]
    assert updates[3]["timeout"] == 600
    # started: the thin-edge driver published each forced command (sent); the EnOS
    # device never connected, so its update waits for it
    for update in updates[:3]:
        assert _state(api, update["id"], "sent") == "sent"
    assert api.client.get(f"/updates/{updates[3]['id']}").json()["state"] == "pending"
    listed = api.client.get("/updates", params={"device": children[0]}).json()
    assert [u["id"] for u in listed] == [updates[0]["id"]]


def test_each_refused_item_is_answered_with_its_problem_and_the_rest_start(api: Api) -> None:
    title = unique("batchref")
    upload(api, title)
    fine, busy, unready = add_device(api)["name"], add_device(api)["name"], _thin_edge_child(api)
    running = start_update(api, busy, title)
    items: list[Any] = [
        {"device": "ghost-" + unique("d"), "title": title, "version": "1.0"},  # row 1
        {"device": fine, "title": title, "version": "9.9"},  # row 2: no such package
        {"device": busy, "title": title, "version": "1.0"},  # row 3: active update
        {"device": fine, "title": title, "version": "1.0", "mode": "sometimes"},  # row 4
        {"device": fine, "title": title, "version": "1.0", "forse": True},  # row 5: misspelt
        "not an update",  # row 6
        {"title": title, "version": "1.0"},  # row 7: no device
        {"device": unready, "title": title, "version": "1.0"},  # row 8: no capability
        {"device": busy, "title": title, "version": "1.0", "replace": True},  # row 9
        {"device": fine, "title": title, "version": "1.0"},  # row 10: fine
        {"device": fine, "title": title, "version": "1.0"},  # row 11: the same device again
    ]
    r = api.client.post("/updates/batch", json=items)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["requested"], result["created"], result["refused"]) == (11, 1, 10)
    answers = result["items"]
    assert [a["row"] for a in answers] == list(range(1, 12))
    assert answers[9]["update"]["device"] == fine and answers[9]["problem"] is None
    refused = {a["row"]: a["problem"] for a in answers if a["row"] != 10}
    assert all(a["update"] is None for a in answers if a["row"] != 10)
    assert {row: p["status"] for row, p in refused.items()} == {
        1: 404,
        2: 404,
        3: 409,
        4: 422,
        5: 422,
        6: 422,
        7: 422,
        8: 409,
        9: 422,
        11: 409,
    }
    for p in refused.values():
        assert (p["type"], p["title"]) == (
            "about:blank",
            {404: "Not found", 409: "Conflict", 422: "Invalid request"}[p["status"]],
        )
    assert "does not exist" in refused[1]["detail"]
    assert "version '9.9'" in refused[2]["detail"]
    assert f"update {running['id']}" in refused[3]["detail"]
    assert refused[4]["detail"].startswith("mode:")
    assert refused[5]["detail"].startswith("forse: Extra inputs")
    assert "firmware_update capability" in refused[8]["detail"]
    assert "does not replace" in refused[9]["detail"]
    assert "twice" in refused[11]["detail"]
    assert [a["device"] for a in answers[:3]] == [items[0]["device"], fine, busy]
    assert answers[5]["device"] is None and answers[6]["device"] is None
    # the running update was left alone
    assert api.client.get(f"/updates/{running['id']}").json()["state"] == "pending"


def test_a_batch_over_the_limit_is_refused_before_anything_starts(api: Api) -> None:
    title = unique("batchbig")
    upload(api, title)
    device = add_device(api)["name"]
    items = [{"device": device, "title": title, "version": "1.0"}] * 10_001
    body = problem(api.client.post("/updates/batch", json=items), 422)
    assert body["detail"] == "at most 10000 updates per batch, not 10001"
    assert api.client.get("/updates", params={"device": device}).json() == []


def test_a_body_that_is_not_a_list_of_updates_is_refused(api: Api) -> None:
    problem(api.client.post("/updates/batch", json={"device": "x"}), 422)
    malformed = api.client.post(
        "/updates/batch",
        content=b'[{"device": "x",}]',
        headers={"content-type": "application/json"},
    )
    assert "malformed JSON" in problem(malformed, 422)["detail"]
    empty = api.client.post("/updates/batch", json=[])
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"requested": 0, "created": 0, "refused": 0, "items": []}


def test_a_caller_without_the_admin_token_starts_nothing(api: Api) -> None:
    title = unique("batchauth")
    upload(api, title)
    device = add_device(api)["name"]
    items = [{"device": device, "title": title, "version": "1.0"}]
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    problem(bare.post("/updates/batch", json=items), 401)
    wrong = {"Authorization": "Bearer wrong"}
    problem(bare.post("/updates/batch", json=items, headers=wrong), 401)
    assert api.client.get("/updates", params={"device": device}).json() == []
