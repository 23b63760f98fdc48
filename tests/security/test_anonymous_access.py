"""Clients without credentials: only from the ``--anonymous-from`` networks, and never
bringing devices into being from beyond them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from otahub.mqtt.packets import Puback
from otahub.mqtt.reason_codes import ReasonCode
from tests.security.conftest import OUTSIDE, SecureHub


@pytest.mark.parametrize(("version", "code"), [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
async def test_anonymous_client_from_outside_anonymous_from_is_refused(
    secure_hub: Callable[..., SecureHub], version: int, code: int
) -> None:
    hub = secure_hub("--anonymous-from", "127.0.0.1/32")
    raw, refused = await hub.client("intruder", version, source=OUTSIDE)
    assert refused == code
    assert await raw.closed() == []
    line = hub.wait_log(r"refused CONNECT from 127\.0\.0\.2:\d+ \(client id 'intruder'")
    assert "anonymous access is allowed only from 127.0.0.1/32" in line
    # the same client from inside the set is let in
    inside, accepted = await hub.client("neighbour", version)
    assert accepted == 0
    inside.close()


async def test_anonymous_client_from_outside_is_admitted_with_allow_anonymous(
    secure_hub: Callable[..., SecureHub],
) -> None:
    hub = secure_hub("--anonymous-from", "127.0.0.1/32", "--allow-anonymous")
    raw, accepted = await hub.client("guest", 5, source=OUTSIDE)
    assert accepted == 0
    raw.close()


async def test_anonymous_registrations_from_outside_create_no_devices(
    secure_hub: Callable[..., SecureHub],
) -> None:
    hub = secure_hub("--anonymous-from", "127.0.0.1/32", "--allow-anonymous")
    raw, accepted = await hub.client("spammer", 5, source=OUTSIDE)
    assert accepted == 0
    for n in range(30):
        await raw.publish(f"te/device/spam-{n}//", b'{"@type":"child-device"}', qos=1, retain=True)
        ack = await raw.recv()
        assert isinstance(ack, Puback)
        assert ack.reason_code == ReasonCode.NOT_AUTHORIZED
    hub.wait_log(r"client 'spammer' \(spammer\) may not publish to 'te/device/spam-29//'")
    assert hub.log_count(r"may not publish to 'te/device/spam-\d+//'") == 30
    # a registration from inside the set still works, so the 30 had their chance
    inside, _ = await hub.client("connector", 5)
    await inside.publish("te/device/legit//", b'{"@type":"child-device"}', qos=1, retain=True)
    assert (await inside.recv()).reason_code == 0  # type: ignore[attr-defined]
    hub.wait_log(r"registered thin-edge device legit")
    assert hub.devices() == ["legit"]
    raw.close()
    inside.close()
