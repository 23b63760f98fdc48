"""``GET /metrics`` of ``otahub serve``, scraped while a thin-edge update runs.

The device is played with paho on the hub's own endpoint; its firmware is
downloaded over HTTP from the URL the hub sends, as a device would.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otahub.hub.metrics import HubMetrics
from tests.hubproc import HubProcess, free_port
from tests.interop.paho_client import PahoClient

IMAGE = b"metrics image\n" * 4096

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Scraper:
    def __init__(self, hub: HubProcess, token: str) -> None:
        self.hub = hub
        self.http = httpx.Client(
            base_url=hub.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def scrape(self) -> Samples:
        response = self.http.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, tuple(sorted(labels.items()))), 0.0)

    def wait_for(self, name: str, ready: Callable[[float], bool], **labels: str) -> float:
        deadline = time.monotonic() + 30
        while True:
            value = self.value(name, **labels)
            if ready(value):
                return value
            assert time.monotonic() < deadline, f"{name}{labels} stayed at {value}"
            time.sleep(0.05)


@pytest.fixture
def scraper(tmp_path: Path) -> Iterator[Scraper]:
    hub = HubProcess(data_dir=tmp_path / "data").start()
    token = (hub.data_dir / "admin.token").read_text().strip()
    scraper = Scraper(hub, token)
    try:
        yield scraper
    finally:
        scraper.http.close()
        hub.stop()
        assert "Traceback" not in hub.log()


def test_metrics_need_the_admin_token(scraper: Scraper) -> None:
    response = httpx.get(f"{scraper.hub.http_url}/metrics", timeout=10)
    assert response.status_code == 401
    wrong = httpx.get(
        f"{scraper.hub.http_url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 401


def test_metrics_follow_an_update_from_start_to_success(scraper: Scraper) -> None:
    api = scraper.http
    uploaded = api.post("/api/v1/firmware", params={"title": "fw", "version": "2.0"}, content=IMAGE)
    assert uploaded.status_code == 201, uploaded.text
    before = scraper.scrape()
    assert before[("otahub_mqtt_connections", (("dialect", "thin-edge"),))] == 0
    assert before[("otahub_updates", (("state", "sent"),))] == 0
    assert ("otahub_database_query_seconds_count", ()) in before
    assert before[("otahub_blob_store_seconds_count", (("operation", "commit"),))] >= 1
    assert before[("otahub_event_loop_lag_seconds_count", ())] >= 0

    # with its own credentials: an anonymous client is counted as "anonymous"
    registered = api.post(
        "/api/v1/devices",
        json={"name": "te-metrics", "dialect": "thin-edge", "password": "metrics-password-1"},
    )
    assert registered.status_code == 201, registered.text
    device = PahoClient(
        scraper.hub.mqtt_port, "te-metrics", username="te-metrics", password="metrics-password-1"
    )
    assert device.connect() == 0
    entity = "te/device/te-metrics//"
    device.publish(entity, json.dumps({"@type": "child-device", "type": "demo"}), 1, True)
    device.publish(f"{entity}/cmd/firmware_update", "{}", 1, True)
    device.publish(f"{entity}/twin/firmware", '{"name":"fw","version":"1.0"}', 1, True)
    device.subscribe(f"{entity}/cmd/firmware_update/+", 1)
    scraper.wait_for("otahub_mqtt_connections", lambda v: v == 1, dialect="thin-edge")
    received = scraper.value("otahub_mqtt_messages_received_total")
    assert received >= 3
    assert scraper.value("otahub_mqtt_received_bytes_total") > 0

    created = api.post(
        "/api/v1/updates", json={"device": "te-metrics", "title": "fw", "version": "2.0"}
    )
    assert created.status_code == 201, created.text
    update_id = created.json()["id"]
    command_message = device.expect(10)
    scraper.wait_for("otahub_updates", lambda v: v == 1, state="sent")
    assert scraper.value("otahub_mqtt_messages_sent_total") >= 1
    assert scraper.value("otahub_mqtt_sent_bytes_total") > 0

    command = json.loads(command_message.payload)
    sent_before = scraper.value("otahub_download_sent_bytes_total")
    download = httpx.get(command["tedgeUrl"], timeout=30)
    assert download.content == IMAGE
    assert scraper.value("otahub_download_sent_bytes_total") - sent_before == len(IMAGE)
    assert scraper.value("otahub_downloads_total") >= 1
    assert scraper.value("otahub_downloads_active") == 0

    for status in ("executing", "successful"):
        device.publish(command_message.topic, json.dumps({**command, "status": status}), 1, True)
    scraper.wait_for("otahub_updates", lambda v: v == 1, state="succeeded")
    after = scraper.scrape()
    assert after[("otahub_updates", (("state", "sent"),))] == 0
    assert after[("otahub_mqtt_messages_received_total", ())] > received
    state = api.get(f"/api/v1/updates/{update_id}").json()["state"]
    assert state == "succeeded"

    device.disconnect()
    scraper.wait_for("otahub_mqtt_connections", lambda v: v == 0, dialect="thin-edge")


def test_refused_connects_are_counted_by_reason(scraper: Scraper) -> None:
    # a password-protected device logging in with the wrong password
    registered = scraper.http.post(
        "/api/v1/devices",
        json={"name": "te-locked", "dialect": "thin-edge", "password": "right-password-1"},
    )
    assert registered.status_code == 201, registered.text
    wrong = PahoClient(
        scraper.hub.mqtt_port, "te-locked", username="te-locked", password="wrong-password"
    )
    assert wrong.connect() != 0
    scraper.wait_for(
        "otahub_mqtt_refused_connects_total", lambda v: v == 1, reason="bad_user_name_or_password"
    )
    # a client whose first packet is not CONNECT (PINGREQ)
    with socket.create_connection(("127.0.0.1", scraper.hub.mqtt_port), timeout=10) as raw:
        raw.sendall(b"\xc0\x00")
        assert raw.recv(16) == b""
    scraper.wait_for(
        "otahub_mqtt_refused_connects_total", lambda v: v == 1, reason="protocol_error"
    )


def test_rollout_progress_replaces_every_state_of_a_rollout() -> None:
    metrics = HubMetrics()
    metrics.rollouts.set("spring", {"pending": 3, "succeeded": 1})
    metrics.rollouts.set("spring", {"succeeded": 4})

    def value(state: str) -> float | None:
        return metrics.registry.get_sample_value(
            "otahub_rollout_devices", {"rollout": "spring", "state": state}
        )

    assert value("succeeded") == 4
    assert value("pending") == 0  # not left at its last count
    metrics.rollouts.forget("spring")
    assert value("succeeded") is None


def test_metrics_are_only_on_the_admin_listener_when_it_has_one(tmp_path: Path) -> None:
    admin_port = free_port()
    hub = HubProcess(data_dir=tmp_path / "data", extra_args=["--admin-port", str(admin_port)])
    hub.start()
    try:
        token = (hub.data_dir / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        on_device_port = httpx.get(f"{hub.http_url}/metrics", headers=auth, timeout=10)
        assert on_device_port.status_code == 404
        admin = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", headers=auth, timeout=10)
        assert admin.status_code == 200
        assert "otahub_mqtt_connections" in admin.text
    finally:
        hub.stop()
