"""The endpoint's log store: what it writes comes back, compacted, and a torn write is ignored."""

from __future__ import annotations

import asyncio
from pathlib import Path

from otahub.mqtt.limits import Limits
from otahub.mqtt.packets import Properties, Pubcomp, Publish, Pubrec, Pubrel
from otahub.mqtt.persistence import LogStore
from otahub.mqtt.server import MQTTServer, ServerConfig
from tests.mqtt.rawclient import RawClient


async def started(path: Path, limits: Limits | None = None) -> tuple[MQTTServer, int]:
    server = MQTTServer(ServerConfig(limits=limits or Limits()), store=LogStore(path))
    server.recover()
    return server, await server.listen("127.0.0.1", 0)


async def test_log_holds_live_records_only_after_many_updates_of_one_topic(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mqtt-state.log"
    server, port = await started(path)
    client = await RawClient.open(port, 4)
    await client.connect("often")
    for n in range(100):
        await client.publish(f"kept/{n}", b"v%d" % n, qos=0, retain=True)
    await client.publish("kept/5", b"", qos=0, retain=True)  # cleared
    for n in range(3000):
        await client.publish("status/often", b"%04d" % n + b"." * 1000, qos=0, retain=True)
    await client.publish("status/often", b"last", qos=1, retain=True)
    await client.recv()  # PUBACK: everything before it is handled
    # a 1 MiB log is compacted while running, long before 3000 x 1000 bytes
    assert path.stat().st_size < 2 * 1024 * 1024
    await server.close()

    server, port = await started(path)
    try:
        # start-up reads and rewrites only what is stored: 100 short messages
        assert path.stat().st_size < 100 * 64
        kept = {topic: m.payload for topic, m in server.retained.match("#")}
        expected = {f"kept/{n}": b"v%d" % n for n in range(100) if n != 5}
        assert kept == {**expected, "status/often": b"last"}
    finally:
        await server.close()


async def test_an_unfinished_last_record_is_ignored_and_the_rest_recovered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mqtt-state.log"
    server, port = await started(path)
    client = await RawClient.open(port, 4)
    await client.connect("writer")
    await client.publish("kept/1", b"one", qos=1, retain=True)
    await client.recv()
    await server.close()
    whole = path.read_bytes()
    server, port = await started(path)
    client = await RawClient.open(port, 4)
    await client.connect("writer")
    await client.publish("kept/2", b"two", qos=1, retain=True)
    await client.recv()
    await server.close()
    # the process died in the middle of writing the second record
    with_second = path.read_bytes()
    path.write_bytes(with_second[: len(with_second) - 3])
    assert len(path.read_bytes()) > len(whole)

    server, port = await started(path)
    try:
        assert {t: m.payload for t, m in server.retained.match("#")} == {"kept/1": b"one"}
    finally:
        await server.close()


async def test_a_released_qos2_message_is_released_again_not_redelivered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mqtt-state.log"
    server, port = await started(path)
    device = await RawClient.open(port, 5)
    await device.connect(
        "exactly-once", clean_start=False, properties=Properties(session_expiry_interval=3600)
    )
    await device.subscribe("once/#", qos=2)
    assert server.publish("once/x", b"exactly once", qos=2) == 1
    publish = await device.recv()
    assert isinstance(publish, Publish) and publish.packet_id is not None
    await device.send(Pubrec(publish.packet_id))
    assert isinstance(await device.recv(), Pubrel)
    # the client goes (no PUBCOMP), then the hub's process ends
    device.close()
    await asyncio.sleep(0.1)
    await server.close()

    server, port = await started(path)
    try:
        again = await RawClient.open(port, 5)
        connack = await again.connect(
            "exactly-once",
            clean_start=False,
            properties=Properties(session_expiry_interval=3600),
        )
        assert connack.session_present
        release = await again.recv()
        assert isinstance(release, Pubrel) and release.packet_id == publish.packet_id
        await again.send(Pubcomp(publish.packet_id))
        await again.expect_nothing()
        assert server.stored_messages == 0
    finally:
        await server.close()


async def test_stored_messages_are_bounded_in_total(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-state.log"
    server, port = await started(path, Limits(max_stored_messages=5))
    try:
        for n in range(2):
            device = await RawClient.open(port, 4)
            await device.connect(f"offline-{n}", clean_start=False)
            await device.subscribe("bulk/#", qos=1)
            device.close()
        await asyncio.sleep(0.1)
        for n in range(10):
            server.publish(f"bulk/{n}", b"x", qos=1)
        assert server.stored_messages == 5
    finally:
        await server.close()
