"""A tedge-legacy child's response is acknowledged once its transition is stored.

The child sends each response once and not retained: acknowledged before the
hub stored it, it would be lost to a hub that stops in between.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from otahub.hub.drivers.tedge_legacy.driver import TedgeLegacyDriver
from otahub.mqtt.packets import Puback, Publish
from otahub.protocols import tedge_legacy as legacy
from tests.hubproc import InProcessHub
from tests.mqtt.rawclient import RawClient

CHILD = "legacy-ack"


async def _started(hub: InProcessHub, child: RawClient) -> tuple[int, str]:
    """An update for CHILD, and the operation id of the request it got."""
    http = hub.http
    created = await http.post("/api/v1/devices", json={"name": CHILD, "dialect": "tedge-legacy"})
    assert created.status_code == 201, created.text
    uploaded = await http.post(
        "/api/v1/firmware", params={"title": "fw", "version": "2.0"}, content=b"image" * 100
    )
    assert uploaded.status_code == 201, uploaded.text
    await child.subscribe(legacy.request_topic(CHILD), qos=1)
    started = await http.post(
        "/api/v1/updates", json={"device": CHILD, "title": "fw", "version": "2.0"}
    )
    assert started.status_code == 201, started.text
    request = await child.recv()
    assert isinstance(request, Publish) and request.topic == legacy.request_topic(CHILD)
    if request.qos:
        await child.send(Puback(request.packet_id))
    return int(started.json()["id"]), str(json.loads(request.payload)["id"])


async def test_the_response_is_acknowledged_after_its_transition_is_stored(
    inproc_hub: InProcessHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    applying = asyncio.Event()
    original = TedgeLegacyDriver._apply

    async def held(
        self: TedgeLegacyDriver, child: str, update_id: int, response: legacy.FirmwareResponse
    ) -> None:
        applying.set()
        await release.wait()  # a store that takes its time
        await original(self, child, update_id, response)

    monkeypatch.setattr(TedgeLegacyDriver, "_apply", held)
    child = await RawClient.open(inproc_hub.settings.mqtt_port, 4)
    await child.connect(CHILD)
    update_id, operation = await _started(inproc_hub, child)

    executing = legacy.build_response(operation, legacy.LegacyStatus.EXECUTING)
    await child.publish(legacy.response_topic(CHILD), executing, qos=1)
    await asyncio.wait_for(applying.wait(), 10)
    await child.expect_nothing(0.5)  # no PUBACK while the transition is not stored
    release.set()
    ack = await child.recv()
    assert isinstance(ack, Puback)
    # acknowledged: the transition is already there
    update = (await inproc_hub.http.get(f"/api/v1/updates/{update_id}")).json()
    assert update["state"] == "downloading"
    child.close()


async def test_a_response_that_changes_nothing_is_still_acknowledged(
    inproc_hub: InProcessHub,
) -> None:
    child = await RawClient.open(inproc_hub.settings.mqtt_port, 4)
    await child.connect(CHILD)
    await _started(inproc_hub, child)
    stranger = legacy.build_response("not-an-operation", legacy.LegacyStatus.EXECUTING)
    started = time.monotonic()
    await child.publish(legacy.response_topic(CHILD), stranger, qos=1)
    ack = await child.recv()
    assert isinstance(ack, Puback) and time.monotonic() - started < 5
    await child.publish(legacy.response_topic(CHILD), b"not json", qos=1)
    assert isinstance(await child.recv(), Puback)
    child.close()
