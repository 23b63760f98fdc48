"""ThingsBoard sessions are per connection: nothing anonymous reaches or replaces them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from otahub.mqtt.packets import Puback
from otahub.mqtt.reason_codes import ReasonCode
from tests.interop.paho_client import PahoClient
from tests.security.conftest import SecureHub

TOKEN = "tb-token-1"


@pytest.fixture
def tb_hub(secure_hub: Callable[..., SecureHub]) -> Iterator[tuple[SecureHub, PahoClient]]:
    hub = secure_hub()
    hub.add_device("tb1", "thingsboard", token=TOKEN)
    device = PahoClient(hub.port, "tb-dev-1", username=TOKEN)
    assert device.connect() == 0
    assert device.subscribe("v1/devices/me/attributes", 1) is not None
    yield hub, device
    device.disconnect()


async def test_anonymous_publish_on_me_attributes_does_not_reach_thingsboard_session(
    tb_hub: tuple[SecureHub, PahoClient],
) -> None:
    hub, device = tb_hub
    raw, accepted = await hub.client("anon-attributes", 5)
    assert accepted == 0
    await raw.publish(
        "v1/devices/me/attributes", b'{"fw_title":"evil","fw_version":"6.6.6"}', qos=1, retain=True
    )
    ack = await raw.recv()
    assert isinstance(ack, Puback)
    assert ack.reason_code == ReasonCode.NOT_AUTHORIZED
    hub.wait_log(
        r"client 'anon-attributes' \(anon-attributes\) may not publish to "
        r"'v1/devices/me/attributes'; dropped"
    )
    device.expect_none(1.0)
    # nor is anything kept for the next subscriber
    late = PahoClient(hub.port, "tb-dev-1b", username=TOKEN)
    assert late.connect() == 0
    late.subscribe("v1/devices/me/attributes", 1)
    late.expect_none(1.0)
    late.disconnect()
    raw.close()


@pytest.mark.parametrize(("version", "code"), [(4, 2), (5, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)])
async def test_anonymous_client_id_takeover_of_thingsboard_session_is_refused(
    tb_hub: tuple[SecureHub, PahoClient], version: int, code: int
) -> None:
    hub, device = tb_hub
    raw, refused = await hub.client("tb-dev-1", version)
    assert refused == code
    line = hub.wait_log(r"refused CONNECT from 127\.0\.0\.1:\d+ \(client id 'tb-dev-1'")
    assert "client id is in use by thingsboard 'tb1'" in line
    assert not device.wait_disconnected(1.0)
    # the device's session still works: it is still answered
    device.publish("v1/devices/me/attributes/request/1", b'{"sharedKeys":"fw_title"}', 1)
    assert device.expect().topic == "v1/devices/me/attributes/response/1"
    raw.close()


async def test_another_thingsboard_device_cannot_take_over_a_session(
    tb_hub: tuple[SecureHub, PahoClient],
) -> None:
    hub, device = tb_hub
    hub.add_device("tb2", "thingsboard", token="tb-token-2")
    _raw, refused = await hub.client("tb-dev-1", 5, username="tb-token-2")
    assert refused == ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
    hub.wait_log(r"client id 'tb-dev-1', user 'tb-token-2'\): client id is in use by thingsboard")
    assert not device.wait_disconnected(0.5)
    # the same device reconnecting still takes its own session over, as brokers do
    again = PahoClient(hub.port, "tb-dev-1", username=TOKEN)
    assert again.connect() == 0
    assert device.wait_disconnected(10)
    again.disconnect()


def test_changed_thingsboard_token_closes_the_session_and_only_the_new_one_logs_in(
    tb_hub: tuple[SecureHub, PahoClient],
) -> None:
    hub, device = tb_hub
    changed = hub.api.patch("/devices/tb1", json={"token": "tb-token-2"})
    assert changed.status_code == 200, changed.text
    assert device.wait_disconnected(10), "the session of the old token stayed open"
    old = PahoClient(hub.port, "tb-dev-old", username=TOKEN)
    assert old.connect() != 0
    new = PahoClient(hub.port, "tb-dev-new", username="tb-token-2")
    assert new.connect() == 0
    new.disconnect()
