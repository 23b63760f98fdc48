"""The external-broker transport against a real mosquitto: reconnect, resubscribe, replay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from otahub.hub.broker_transport import BrokerTransport, parse_broker_url
from otahub.hub.supervision import Supervisor
from tests.interop.tedge_child import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs the mosquitto broker"),
]


def test_parse_broker_url() -> None:
    assert str(parse_broker_url("mqtt://127.0.0.1")) == "mqtt://127.0.0.1:1883"
    secure = parse_broker_url("mqtts://user:p%40ss@gw.local")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "user",
        "p@ss",
    )
    for bad in ("http://x:1", "mqtt://", "mqtt://x:99999", "mqtt://x/path", "x:1883"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


async def test_reconnects_resubscribes_and_replays_retained(tmp_path: Path) -> None:
    broker = await asyncio.to_thread(Mosquitto(tmp_path / "mosquitto").start)
    got: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
    transport = BrokerTransport(
        parse_broker_url(f"mqtt://127.0.0.1:{broker.port}"),
        client_id="otahub-test",
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    try:
        await transport.subscribe("te/+/+/+/+/twin/firmware", lambda *m: got.put_nowait(m))
        await transport.start(Supervisor())
        await transport.publish("te/device/c1///twin/firmware", b'{"version":"1"}', 1, True)
        assert await asyncio.wait_for(got.get(), 10) == (
            "te/device/c1///twin/firmware",
            b'{"version":"1"}',
            False,
        )
        # the broker goes away (persistence off: the retained message with it)
        await asyncio.to_thread(broker.stop)
        with pytest.raises(ConnectionError):
            transport._publish_wait = 0.2
            await transport.publish("te/device/c1///twin/firmware", b"{}", 1, True)
        port = broker.port
        await asyncio.to_thread(broker.start_on, port)
        transport._publish_wait = 10
        # reconnected and subscribed again: a fresh retained message is delivered
        await transport.publish("te/device/c2///twin/firmware", b'{"version":"2"}', 1, True)
        topic, payload, _ = await asyncio.wait_for(got.get(), 10)
        assert (topic, payload) == ("te/device/c2///twin/firmware", b'{"version":"2"}')
        # a subscription added later replays what is retained, flagged as such
        replay: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        await transport.subscribe("te/device/c2/#", lambda *m: replay.put_nowait(m))
        assert await asyncio.wait_for(replay.get(), 10) == (
            "te/device/c2///twin/firmware",
            b'{"version":"2"}',
            True,
        )
    finally:
        await transport.close()
        await asyncio.to_thread(broker.stop)
