"""ThingsBoard telemetry through the ingest journal, against ``otahub serve``.

A telemetry message is acknowledged once it is in the journal; what a hub
acknowledged and did not apply before it stopped is applied at its next
start, before devices can connect, and never to an update created after
the message came.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from otahub.hub.core import INGEST_DIR
from otahub.hub.drivers.thingsboard.telemetry import JOURNAL_KIND, encode_recorded
from otahub.hub.ingest.journal import _HEAD, JOURNAL_FILE
from otahub.mqtt.packets import Puback
from otahub.protocols.thingsboard import TopicFamily
from tests.hubproc import HubProcess
from tests.interop.tbhub import TbHub
from tests.mqtt.rawclient import RawClient
from tests.pgserver import PostgresServer

TELEMETRY = "v1/devices/me/telemetry"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    process = HubProcess(data_dir=tmp_path / "data", extra_args=["--no-auth"]).start()
    yield process
    process.stop()
    assert "Traceback" not in process.log()


def _device_with_update(tb: TbHub, name: str) -> int:
    tb.upload(name, "2.0", b"image " * 100)
    tb.add_device(name, f"tok-{name}")
    return tb.start_update(name, name, "2.0")


async def _connect_and_publish(port: int, name: str, payloads: list[bytes]) -> list[object]:
    """Connect as the device, publish each payload with QoS 1; the acknowledgements."""
    client = await RawClient.open(port, 4)
    try:
        await client.connect(name, username=f"tok-{name}")
        acks = []
        for payload in payloads:
            await client.publish(TELEMETRY, payload, qos=1)
            packet = await client.recv()
            while not isinstance(packet, Puback):  # the update's attributes come first
                packet = await client.recv()
            acks.append(packet)
        return acks
    finally:
        client.close()


def _metric(hub: HubProcess, name: str) -> float:
    text = httpx.get(f"{hub.http_url}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not exported"
    return float(found.group(1))


def test_telemetry_is_acknowledged_and_applied_through_the_journal(hub: HubProcess) -> None:
    tb = TbHub(hub)
    try:
        update_id = _device_with_update(tb, "journal-live")
        state = json.dumps({"fw_state": "DOWNLOADING"}).encode()
        acks = asyncio.run(_connect_and_publish(hub.mqtt_port, "journal-live", [state] * 3))
        assert len(acks) == 3
        assert tb.wait_update(update_id, "downloading", timeout=10)["state"] == "downloading"
        # three recorded, all applied; one state change, however often repeated
        deadline = time.monotonic() + 10
        while _metric(hub, "otahub_ingest_backlog") != 0:
            assert time.monotonic() < deadline, "the journal did not catch up"
            time.sleep(0.05)
        assert _metric(hub, "otahub_ingest_recorded_total") == 3
        assert _metric(hub, "otahub_ingest_applied_total") == 3
        assert tb.states(update_id).count("downloading") == 1
    finally:
        tb.close()


def _record(received: float, device: str, payload: dict[str, str]) -> bytes:
    """One journal record as a hub writes it (``received``: when it came)."""
    data = encode_recorded(device, TopicFamily.V1, json.dumps(payload).encode(), {})
    body = JOURNAL_KIND.encode() + b"\0" + data
    return _HEAD.pack(len(body), zlib.crc32(body), received) + body


def test_what_a_stopped_hub_had_not_applied_is_applied_before_devices_connect(
    hub: HubProcess,
) -> None:
    tb = TbHub(hub)
    try:
        fresh = _device_with_update(tb, "journal-fresh")
        stale = _device_with_update(tb, "journal-stale")
        created = datetime.fromisoformat(tb.update(stale)["created_at"]).timestamp()
    finally:
        tb.close()
    hub.stop()
    # as if the hub had acknowledged these and died before applying them: one
    # message that came after its update was created, one from a minute before
    journal = hub.data_dir / INGEST_DIR / JOURNAL_FILE
    journal.parent.mkdir(exist_ok=True)
    journal.write_bytes(
        _record(time.time(), "journal-fresh", {"fw_state": "DOWNLOADING"})
        + _record(created - 60, "journal-stale", {"fw_state": "FAILED", "fw_error": "old"})
    )
    hub.start()
    tb = TbHub(hub)
    try:
        # applied before the hub was ready: no waiting
        assert tb.update(fresh)["state"] == "downloading"
        assert tb.update(stale)["state"] == "pending"
        assert "predates update" in hub.log()
    finally:
        tb.close()
    assert journal.stat().st_size == 0


def test_on_postgresql_telemetry_is_committed_before_the_puback(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # hubs sharing the database take over each other's devices: no local journal
    hub = HubProcess(
        data_dir=tmp_path / "data",
        extra_args=["--no-auth", "--database-url", postgres.create_database()],
    ).start()
    tb = TbHub(hub)
    try:
        update_id = _device_with_update(tb, "journal-pg")
        state = json.dumps({"fw_state": "DOWNLOADING"}).encode()
        asyncio.run(_connect_and_publish(hub.mqtt_port, "journal-pg", [state]))
        # no waiting: the PUBACK came after the commit
        assert tb.update(update_id)["state"] == "downloading"
        assert _metric(hub, "otahub_ingest_recorded_total") == 0
    finally:
        tb.close()
        hub.stop()
    assert not (hub.data_dir / INGEST_DIR / JOURNAL_FILE).exists()
