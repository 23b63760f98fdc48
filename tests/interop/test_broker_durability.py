"""What the hub's MQTT endpoint has acknowledged survives ``kill -9`` of ``otahub serve``.

Real clients (paho 3.1.1 and 5.0, mosquitto_sub) against the real process,
killed with SIGKILL and started again on the same data dir and ports.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V5, V311, PahoClient

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="needs mosquitto-clients"),
]

VERSIONS = [pytest.param(V311, id="3.1.1"), pytest.param(V5, id="5.0")]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    process = HubProcess(data_dir=tmp_path / "data", extra_args=["--no-auth"])
    process.start()
    yield process
    process.stop()


def kill_and_restart(hub: HubProcess) -> None:
    assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
    hub.start()


def retained(hub: HubProcess, topic_filter: str) -> dict[str, str]:
    """Topic -> payload of what a fresh mosquitto_sub gets from the retained store."""
    proc = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-t",
            topic_filter,
            "--retained-only",
            "-W",
            "2",
            "-F",
            "%t\t%p",
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    found = {}
    for line in proc.stdout.splitlines():
        topic, _, payload = line.partition("\t")
        found[topic] = payload
    return found


def wait_retained(hub: HubProcess, topic_filter: str, count: int) -> dict[str, str]:
    deadline = time.monotonic() + 15
    while True:
        found = retained(hub, topic_filter)
        if len(found) >= count or time.monotonic() > deadline:
            return found


def connected(client: PahoClient) -> PahoClient:
    client.connect()
    return client


def test_retained_messages_survive_kill_9(hub: HubProcess) -> None:
    v311 = connected(PahoClient(hub.mqtt_port, "keep-v311", V311))
    v5 = connected(PahoClient(hub.mqtt_port, "keep-v5", V5))
    v311.publish("keep/qos1", b"after its PUBACK", qos=1, retain=True)
    v5.publish("keep/qos2", b"after its PUBCOMP", qos=2, retain=True)
    v5.publish("keep/qos0", b"after its PUBLISH", qos=0, retain=True)
    v311.publish("keep/cleared", b"soon gone", qos=1, retain=True)
    v311.publish("keep/cleared", b"", qos=1, retain=True)
    v311.publish("keep/qos1", b"the last one counts", qos=1, retain=True)
    # a QoS 0 PUBLISH has no acknowledgement: it is kept once the endpoint has it
    assert len(wait_retained(hub, "keep/#", 3)) == 3
    v311.disconnect()
    v5.disconnect()

    kill_and_restart(hub)

    assert retained(hub, "keep/#") == {
        "keep/qos1": "the last one counts",
        "keep/qos2": "after its PUBCOMP",
        "keep/qos0": "after its PUBLISH",
    }


def test_thin_edge_registrations_and_twins_survive_kill_9(hub: HubProcess) -> None:
    child = connected(PahoClient(hub.mqtt_port, "main-device", V311))
    registration = '{"@type":"child-device","name":"child07"}'
    twin = '{"name":"firmware","version":"1.2.3"}'
    child.publish("te/device/child07//", registration, qos=1, retain=True)
    child.publish("te/device/child07///twin/firmware", twin, qos=1, retain=True)
    child.publish("te/device/child07///cmd/firmware_update", "{}", qos=1, retain=True)
    child.disconnect()

    kill_and_restart(hub)

    kept = retained(hub, "te/device/child07/#")
    assert kept["te/device/child07//"] == registration
    assert kept["te/device/child07///twin/firmware"] == twin
    assert kept["te/device/child07///cmd/firmware_update"] == "{}"


@pytest.mark.parametrize("protocol", VERSIONS)
def test_persistent_session_subscriptions_and_queued_messages_survive_kill_9(
    hub: HubProcess, protocol: object
) -> None:
    name = "v5" if protocol == V5 else "v311"
    client_id = f"durable-{name}"

    def device() -> PahoClient:
        if protocol == V5:
            return PahoClient(hub.mqtt_port, client_id, V5, clean=False, session_expiry=3600)
        return PahoClient(hub.mqtt_port, client_id, V311, clean=False)

    first = connected(device())
    first.subscribe(f"queued/{name}/#", qos=1)
    first.disconnect()

    sender = connected(PahoClient(hub.mqtt_port, f"sender-{name}", V311))
    for n in range(3):
        sender.publish(f"queued/{name}/{n}", f"before {n}", qos=1)  # accepted: PUBACK
    sender.disconnect()

    kill_and_restart(hub)

    # the subscription itself survived: a message published now is queued too
    sender = connected(PahoClient(hub.mqtt_port, f"sender-{name}", V311))
    sender.publish(f"queued/{name}/after", b"after the restart", qos=1)
    sender.disconnect()

    again = device()
    again.connect()
    try:
        assert again.session_present is True
        got = [(m.topic, m.payload.decode(), m.qos) for m in (again.expect(10) for _ in range(4))]
        assert got == [
            (f"queued/{name}/0", "before 0", 1),
            (f"queued/{name}/1", "before 1", 1),
            (f"queued/{name}/2", "before 2", 1),
            (f"queued/{name}/after", "after the restart", 1),
        ]
        again.expect_none()
    finally:
        again.disconnect()


def test_expired_session_is_dropped_when_the_hub_starts_again(hub: HubProcess) -> None:
    short = PahoClient(hub.mqtt_port, "short-lived", V5, clean=False, session_expiry=2)
    short.connect()
    short.subscribe("expiring/#", qos=1)
    short.disconnect()
    sender = connected(PahoClient(hub.mqtt_port, "sender-expiring", V311))
    sender.publish("expiring/one", b"for a session about to expire", qos=1)
    sender.disconnect()
    ended = time.monotonic()

    assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
    # the session expires while the hub is down
    time.sleep(max(0.0, 3.0 - (time.monotonic() - ended)))
    hub.start()

    again = PahoClient(hub.mqtt_port, "short-lived", V5, clean=False, session_expiry=2)
    again.connect()
    try:
        assert again.session_present is False
        again.expect_none(1.0)
    finally:
        again.disconnect()
    assert "1 expired, dropped" in hub.log()
