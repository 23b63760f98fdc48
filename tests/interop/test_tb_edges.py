"""Every row of the chunk and HTTP tables of the ThingsBoard reference, bad payloads and auth.

Each test names the row it checks (docs/protocols/thingsboard.md, sections 1, 3, 7 and 8).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V5, V311, PahoClient
from tests.interop.tbhub import TbHub

pytestmark = pytest.mark.interop

IMAGE = os.urandom(20_000)
_counter = iter(range(1_000_000))


@pytest.fixture(scope="module")
def hubproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        data_dir=tmp_path_factory.mktemp("tb-edges") / "data", extra_args=["--no-auth"]
    )
    hub.start()
    yield hub
    hub.stop()
    assert "Traceback" not in hub.log()


@pytest.fixture(scope="module")
def tb(hubproc: HubProcess) -> Iterator[TbHub]:
    client = TbHub(hubproc)
    yield client
    client.close()


def _device(tb: TbHub, *, assigned: bool = True, kind: str = "firmware") -> tuple[str, str]:
    name = f"edge-{next(_counter)}"
    tb.add_device(name, f"tok-{name}")
    if assigned:
        tb.upload(name, "1", IMAGE, kind=kind)
        update_id = tb.start_update(name, name, "1")
        tb.wait_update(update_id, ("pending", "sent"))
    return name, f"tok-{name}"


def _connect(tb: TbHub, token: str, protocol: object = V5) -> PahoClient:
    dev = PahoClient(tb.mqtt_port, f"c-{token}", protocol, username=token)  # type: ignore[arg-type]
    assert dev.connect() == 0
    return dev


def _chunk(dev: PahoClient, topic: str, payload: str | bytes) -> bytes:
    dev.publish(topic, payload, qos=1)
    message = dev.expect()
    assert message.topic == topic.replace("/request/", "/response/")
    return bytes(message.payload)


# -- section 7: the chunk table ---------------------------------------------------


def test_positive_size_is_used_and_remembered_for_the_rid(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    assert _chunk(dev, "v2/fw/request/7/chunk/0", "1000") == IMAGE[:1000]
    assert _chunk(dev, "v2/fw/request/7/chunk/1", "") == IMAGE[1000:2000]
    assert _chunk(dev, "v2/fw/request/7/chunk/2", "-3") == IMAGE[2000:3000]
    dev.disconnect()


def test_empty_payload_without_a_remembered_size_is_the_whole_file(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    assert _chunk(dev, "v2/fw/request/1/chunk/0", "") == IMAGE
    dev.disconnect()


def test_size_zero_is_the_whole_file(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token, V311)
    assert _chunk(dev, "v2/fw/request/3/chunk/0", "0") == IMAGE
    dev.disconnect()


def test_index_past_the_end_is_an_empty_payload(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    assert _chunk(dev, "v2/fw/request/1/chunk/4", "4096") == IMAGE[4 * 4096 :]
    assert _chunk(dev, "v2/fw/request/1/chunk/5", "4096") == b""
    assert _chunk(dev, "v2/fw/request/1/chunk/99999999999", "4096") == b""
    dev.disconnect()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_non_decimal_size_closes_the_connection(tb: TbHub, protocol: object) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token, protocol)
    dev.client.publish("v2/fw/request/1/chunk/0", "abc", qos=1)
    assert dev.wait_disconnected(5)
    if protocol == V5:
        assert dev.disconnect_rc == 0x8B
    dev.messages.empty()
    dev.client.loop_stop()


def test_size_over_65536_is_payload_too_large_then_close(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    dev.client.publish("v2/fw/request/1/chunk/0", "65537", qos=1)
    error = dev.expect()
    assert (error.topic, error.payload) == ("v2/fw/error", b"PAYLOAD_TOO_LARGE")
    assert dev.wait_disconnected(5)
    dev.client.loop_stop()


def test_largest_size_65536_is_served(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    assert _chunk(dev, "v2/fw/request/1/chunk/0", "65536") == IMAGE
    dev.disconnect()


def test_nothing_assigned_is_not_found_then_close(tb: TbHub) -> None:
    _, token = _device(tb, assigned=False)
    dev = _connect(tb, token)
    dev.client.publish("v2/fw/request/1/chunk/0", "1024", qos=1)
    error = dev.expect()
    assert (error.topic, error.payload) == ("v2/fw/error", b"NOT_FOUND")
    assert dev.wait_disconnected(5)
    dev.client.loop_stop()


def test_package_without_local_bytes_is_failure_then_close(tb: TbHub, hubproc: HubProcess) -> None:
    # otahub keeps the bytes of every package (URL imports are downloaded once), so
    # upstream's "external URL package" row is reached when the stored file is gone.
    name, token = _device(tb)
    package = tb.call("GET", "/firmware", params={"title": name})[0]
    blob = next(Path(hubproc.data_dir, "blobs", "sha256").rglob(package["sha256"]))
    blob.unlink()
    dev = _connect(tb, token)
    dev.client.publish("v2/fw/request/1/chunk/0", "1024", qos=1)
    error = dev.expect()
    assert (error.topic, error.payload) == ("v2/fw/error", b"FAILURE")
    assert dev.wait_disconnected(5)
    dev.client.loop_stop()


@pytest.mark.parametrize(
    "topic", ["v2/fw/request/x/chunk/0", "v2/fw/request/1/chunk/-1", "v2/fw/request/1/chunk/"]
)
def test_rid_or_index_not_digits_is_an_unknown_topic(tb: TbHub, topic: str) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    dev.publish(topic, "1024", qos=1)  # acknowledged
    dev.expect_none(0.5)
    assert _chunk(dev, "v2/fw/request/1/chunk/0", "1024") == IMAGE[:1024]  # still connected
    dev.disconnect()


def test_software_replies_on_sw_and_errors_on_fw(tb: TbHub) -> None:
    _, token = _device(tb, kind="software")
    dev = _connect(tb, token)
    assert _chunk(dev, "v2/sw/request/1/chunk/1", "5000") == IMAGE[5000:10000]
    dev.client.publish("v2/sw/request/2/chunk/0", "70000", qos=1)
    error = dev.expect()
    assert (error.topic, error.payload) == ("v2/fw/error", b"PAYLOAD_TOO_LARGE")
    assert dev.wait_disconnected(5)
    dev.client.loop_stop()


def test_chunk_qos_follows_the_exact_subscription(tb: TbHub) -> None:
    _, token = _device(tb)
    dev = _connect(tb, token)
    assert dev.subscribe("v2/fw/response/+/chunk/+", 0) == [0]
    dev.publish("v2/fw/request/1/chunk/0", "100", qos=1)
    assert dev.expect().qos == 0
    dev.disconnect()


# -- section 3: subscriptions ------------------------------------------------------


def test_subscriptions_are_exact_strings(tb: TbHub) -> None:
    _, token = _device(tb, assigned=False)
    dev = _connect(tb, token)
    # Refused with 0x8F (topic filter invalid) as upstream does; the session stays.
    for refused in ("v1/devices/me/attributes/", "v2/fw/response/+", "#"):
        assert [rc.value for rc in dev.subscribe(refused, 0)] == [0x8F]
    assert [rc.value for rc in dev.subscribe("v1/devices/me/attributes", 1)] == [1]
    dev.disconnect()


# -- section 8: the HTTP table -------------------------------------------------------


def _sent_bytes(http: httpx.Client) -> float:
    found = re.search(r"^otahub_download_sent_bytes_total (\S+)$", http.get("/metrics").text, re.M)
    assert found is not None
    return float(found.group(1))


def test_http_firmware_api(tb: TbHub) -> None:
    name, token = _device(tb)
    base = tb.hub.http_url
    with httpx.Client(base_url=base) as http:
        assert http.get("/api/v1/no-such-token/firmware?title=a&version=b").status_code == 401
        _, idle = _device(tb, assigned=False)
        assert http.get(f"/api/v1/{idle}/firmware?title=a&version=b").status_code == 404
        assert http.get(f"/api/v1/{token}/firmware?title={name}&version=2").status_code == 400
        assert http.get(f"/api/v1/{token}/firmware?title={name}").status_code == 400
        whole = http.get(f"/api/v1/{token}/firmware", params={"title": name, "version": "1"})
        assert whole.status_code == 200 and whole.content == IMAGE
        assert whole.headers["x-filename"]
        assert whole.headers["content-disposition"].startswith("attachment;filename=")
        assert whole.headers["content-type"] == "application/octet-stream"
        params = {"title": name, "version": "1", "size": "3000", "chunk": "2"}
        sent_before = _sent_bytes(http)
        part = http.get(f"/api/v1/{token}/firmware", params=params)
        assert part.status_code == 200 and part.content == IMAGE[6000:9000]
        # a chunk counts in the download counters like any other download
        assert _sent_bytes(http) - sent_before == 3000
        params["chunk"] = "6"
        last = http.get(f"/api/v1/{token}/firmware", params=params)
        assert last.content == IMAGE[18000:]
        params["chunk"] = "7"
        past = http.get(f"/api/v1/{token}/firmware", params=params)
        assert past.status_code == 200 and past.content == b""
        ranged = http.get(
            f"/api/v1/{token}/firmware",
            params={"title": name, "version": "1"},
            headers={"Range": "bytes=100-199"},
        )
        assert ranged.status_code == 206 and ranged.content == IMAGE[100:200]
        head = http.head(f"/api/v1/{token}/firmware", params={"title": name, "version": "1"})
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(IMAGE)
        soft = http.get(f"/api/v1/{token}/software", params={"title": name, "version": "1"})
        assert soft.status_code == 404


# -- malformed payloads ------------------------------------------------------------

BAD = [
    ("v1/devices/me/telemetry", b"not json"),
    ("v1/devices/me/telemetry", b"[1,2]"),
    ("v1/devices/me/telemetry", b'{"ts":"soon","values":{"a":1}}'),
    ("v1/devices/me/attributes", b"[]"),
    ("v1/devices/me/attributes/request/1", b'{"sharedKeys":["fw_title","fw_version"]}'),
    ("v1/devices/me/attributes/request/1", b"\xff\xfe"),
    ("v1/devices/me/attributes/request/abc", b'{"sharedKeys":"fw_title"}'),
]


@pytest.mark.parametrize(("topic", "payload"), BAD)
def test_malformed_payload_closes_a_311_session(
    tb: TbHub, hubproc: HubProcess, topic: str, payload: bytes
) -> None:
    _, token = _device(tb, assigned=False)
    dev = _connect(tb, token, V311)
    dev.client.publish(topic, payload, qos=1)
    assert dev.wait_disconnected(5)
    dev.client.loop_stop()
    assert "malformed" in hubproc.log()


@pytest.mark.parametrize(("topic", "payload"), BAD)
def test_malformed_payload_keeps_a_5_session(
    tb: TbHub, hubproc: HubProcess, topic: str, payload: bytes
) -> None:
    _, token = _device(tb, assigned=False)
    dev = _connect(tb, token, V5)
    dev.publish(topic, payload, qos=1)
    dev.publish("v1/devices/me/attributes/request/2", b"{}", qos=1)
    answer = dev.expect()
    assert answer.topic == "v1/devices/me/attributes/response/2"
    assert json.loads(answer.payload) == {}
    dev.disconnect()


def test_telemetry_shapes_and_client_attributes(tb: TbHub) -> None:
    name, token = _device(tb, assigned=False)
    dev = _connect(tb, token)
    dev.publish(
        "v1/devices/me/telemetry",
        b'{"ts":1700000000000,"values":{"current_fw_version":"a"}}',
        qos=1,
    )
    dev.publish(
        "v1/devices/me/telemetry", b'[{"current_fw_title":"T"},{"current_fw_version":"b"}]', qos=1
    )
    dev.publish("v1/devices/me/attributes", b'{"model":"X1","serial":42}', qos=1)
    dev.publish("v1/devices/me/attributes/request/5", b'{"clientKeys":"model,serial,nope"}', qos=1)
    answer = dev.expect()
    assert json.loads(answer.payload) == {"client": {"model": "X1", "serial": 42}}
    dev.disconnect()
    # stored before the PUBACKs (the ingest journal), applied just behind them
    deadline = time.monotonic() + 10
    while tb.device(name)["firmware"] != {"title": "T", "version": "b"}:
        assert time.monotonic() < deadline, tb.device(name)["firmware"]
        time.sleep(0.05)


# -- section 1: connection ---------------------------------------------------------


# paho reports the 3.1.1 CONNACK code 4 as the reason code 0x86 it stands for
@pytest.mark.parametrize(("protocol", "code"), [(V311, 0x86), (V5, 0x86)], ids=["mqtt311", "mqtt5"])
def test_unknown_token_is_refused(tb: TbHub, protocol: object, code: int) -> None:
    dev = PahoClient(tb.mqtt_port, "x", protocol, username="no-such-token")  # type: ignore[arg-type]
    rc = dev.connect()
    assert int(getattr(rc, "value", rc)) == code
    dev.client.loop_stop()


def test_basic_mqtt_credentials(tb: TbHub) -> None:
    name, _ = _device(tb)
    tb.settings(name, mqtt_basic={"clientId": f"cid-{name}", "userName": "u1", "password": "pw"})
    good = PahoClient(tb.mqtt_port, f"cid-{name}", V5, username="u1", password="pw")
    assert good.connect() == 0
    assert _chunk(good, "v2/fw/request/1/chunk/0", "10") == IMAGE[:10]
    good.disconnect()
    bad = PahoClient(tb.mqtt_port, f"cid-{name}", V5, username="u1", password="wrong")
    assert bad.connect() == 0x86
    bad.client.loop_stop()
    other, _ = _device(tb)
    tb.settings(other, mqtt_basic={"clientId": f"only-{other}"})
    bare = PahoClient(tb.mqtt_port, f"only-{other}", V311)
    assert bare.connect() == 0
    assert _chunk(bare, "v2/fw/request/1/chunk/0", "10") == IMAGE[:10]
    bare.disconnect()


def test_online_and_last_seen_follow_the_session(tb: TbHub) -> None:
    name, token = _device(tb, assigned=False)
    dev = _connect(tb, token)
    deadline = time.monotonic() + 5
    while not tb.device(name)["online"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tb.device(name)["online"] and tb.device(name)["last_seen_at"]
    dev.disconnect()
    while tb.device(name)["online"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tb.device(name)["online"]


# -- acknowledgements: what the PUBACK says (MQTT 5) -------------------------------


async def test_puback_reason_codes_follow_thingsboard(tb: TbHub) -> None:
    from otahub.mqtt.packets import Disconnect, Puback, Publish
    from tests.mqtt.rawclient import RawClient

    name, token = _device(tb, assigned=False)
    client = await RawClient.open(tb.mqtt_port, 5)
    assert (await client.connect(f"raw-{name}", username=token)).reason_code == 0
    # unknown topic: PUBACK 0x90, dropped
    await client.send(Publish("v1/devices/me/nowhere", b"{}", qos=1, packet_id=1))
    assert await client.recv() == Puback(1, 0x90)
    # malformed telemetry: PUBACK 0x99, the MQTT 5 session stays
    await client.send(Publish("v1/devices/me/telemetry", b"{not json", qos=1, packet_id=2))
    assert await client.recv() == Puback(2, 0x99)
    # well-formed telemetry: PUBACK 0
    await client.send(Publish("v1/devices/me/telemetry", b'{"t": 1}', qos=1, packet_id=3))
    assert await client.recv() == Puback(3)
    # a chunk request with nothing assigned: the error and a close, no PUBACK
    await client.send(Publish("v2/fw/request/1/chunk/0", b"1024", qos=1, packet_id=4))
    sent = await client.closed()
    assert not any(isinstance(p, Puback) for p in sent)
    assert any(isinstance(p, Publish) and p.topic == "v2/fw/error" for p in sent)
    assert isinstance(sent[-1], Disconnect)
