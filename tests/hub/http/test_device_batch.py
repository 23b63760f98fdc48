"""``POST /api/v1/devices/batch`` through a real ``otahub serve`` process."""

from __future__ import annotations

import time

import httpx

from tests.hub.http.conftest import Api
from tests.hub.http.test_api import problem, unique, upload


def test_batch_registers_all_rows_in_order(api: Api) -> None:
    prefix = unique("batch")
    rows = [
        {
            "name": f"{prefix}-tb",
            "dialect": "thingsboard",
            "token": f"{prefix}-T",
            "labels": {"a": "1"},
        },
        {"name": f"{prefix}-te", "dialect": "thin-edge", "password": "pw", "gateway": True},
        {
            "name": f"{prefix}-en",
            "dialect": "enos",
            "product_key": prefix,
            "device_key": "d",
            "secret": "s",
            "device_type": "inverter",
        },
    ]
    checked = api.client.post("/devices/batch", json=rows, params={"dry_run": "true"})
    assert checked.status_code == 200, checked.text
    assert (checked.json()["checked"], checked.json()["created"]) == (3, 0)
    problem(api.client.get(f"/devices/{prefix}-tb"), 404)  # a dry run registers nothing
    r = api.client.post("/devices/batch", json=rows)
    assert r.status_code == 201, r.text
    result = r.json()
    assert result["created"] == 3
    assert [d["name"] for d in result["devices"]] == [row["name"] for row in rows]
    shown = api.client.get(f"/devices/{prefix}-tb").json()
    assert (shown["token"], shown["labels"]) == (f"{prefix}-T", {"a": "1"})
    assert api.client.get(f"/devices/{prefix}-te").json()["has_password"]
    assert api.client.get(f"/devices/{prefix}-en").json()["device_type"] == "inverter"


def test_batch_with_bad_rows_registers_nothing_and_lists_every_bad_row(api: Api) -> None:
    prefix = unique("badbatch")
    taken = unique("taken")
    assert (
        api.client.post("/devices", json={"name": taken, "dialect": "thin-edge"}).status_code == 201
    )
    rows = [
        {"name": f"{prefix}-1", "dialect": "thin-edge"},
        {"name": f"{prefix}-2", "dialect": "mqtt"},  # row 2: no such dialect
        {"name": f"{prefix}-3", "dialect": "thingsboard", "tokn": "x"},  # row 3: misspelt key
        "not a device",  # row 4
        {"name": taken, "dialect": "thin-edge"},  # row 5: registered
        {"name": f"{prefix}-1", "dialect": "thin-edge"},  # row 6: twice in the batch
        {"name": f"{prefix}-7", "dialect": "thin-edge", "labels": {"online": "x"}},  # row 7
        {"name": f"{prefix}-8", "dialect": "thin-edge"},
    ]
    for params in ({}, {"dry_run": "true"}):
        body = problem(api.client.post("/devices/batch", json=rows, params=params), 422)
        assert [(r["row"], r["name"]) for r in body["refused"]] == [
            (2, f"{prefix}-2"),
            (3, f"{prefix}-3"),
            (4, None),
            (5, taken),
            (6, f"{prefix}-1"),
            (7, f"{prefix}-7"),
        ]
        reasons = [r["reason"] for r in body["refused"]]
        assert reasons[0].startswith("dialect:")
        assert reasons[1].startswith("tokn: Extra inputs")
        assert reasons[3] == f"device {taken!r} already exists"
        assert reasons[4] == f"name '{prefix}-1' is also on row 1"
        assert body["refused"][4]["same_as"] == 1
        assert "reserved" in reasons[5]
        assert body["detail"].startswith("6 of 8 device(s) refused, nothing was registered")
    listed = {d["name"] for d in api.client.get("/devices").json()}
    assert not any(name.startswith(prefix) for name in listed)


def test_batch_route_refuses_a_missing_or_wrong_token(api: Api) -> None:
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    row = [{"name": unique("x"), "dialect": "thin-edge"}]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        problem(bare.post("/devices/batch", json=row, headers=headers), 401)


def test_batch_registered_devices_of_an_assigned_type_get_its_package(api: Api) -> None:
    """Drivers follow batch registrations as they follow single ones (DeviceCreated)."""
    title = unique("typed-fw")
    upload(api, title, "1", data=b"image" * 200)
    device_type = unique("type")
    r = api.client.put(
        f"/device-types/{device_type}/assignment", json={"title": title, "version": "1"}
    )
    assert r.status_code == 200, r.text
    typed, plain = unique("typed"), unique("plain")
    rows = [
        {
            "name": typed,
            "dialect": "thingsboard",
            "token": f"{typed}-T",
            "device_type": device_type,
        },
        {"name": plain, "dialect": "thingsboard", "token": f"{plain}-T"},
    ]
    assert api.client.post("/devices/batch", json=rows).status_code == 201
    deadline = time.monotonic() + 20
    while not (updates := api.client.get("/updates", params={"device": typed}).json()):
        assert time.monotonic() < deadline, "no update for the typed device"
        time.sleep(0.1)
    assert [(u["title"], u["version"]) for u in updates] == [(title, "1")]
    assert api.client.get("/updates", params={"device": plain}).json() == []


def test_refusals_after_a_malformed_row_name_the_rows_of_the_request(api: Api) -> None:
    name = unique("after-bad")
    rows = [
        {"name": unique("bad"), "dialect": "thin-edge", "gateway": "perhaps"},  # row 1
        {"name": name, "dialect": "thin-edge"},  # row 2
        {"name": name, "dialect": "thin-edge"},  # row 3: as row 2
    ]
    body = problem(api.client.post("/devices/batch", json=rows), 422)
    assert [(r["row"], r.get("same_as")) for r in body["refused"]] == [(1, None), (3, 2)]
    assert body["refused"][1]["reason"] == f"name {name!r} is also on row 2"
