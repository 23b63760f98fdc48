"""Legacy children with credentials answer only their own requests."""

from __future__ import annotations

import json
from collections.abc import Callable

from otahub.mqtt.packets import Puback, Publish
from otahub.mqtt.reason_codes import ReasonCode
from tests.security.conftest import SecureHub
from tests.security.test_thin_edge_devices import puback_of

FIRMWARE = b"legacy firmware\n" * 100


async def test_legacy_child_answering_another_childs_request_is_refused(
    secure_hub: Callable[..., SecureHub],
) -> None:
    hub = secure_hub()
    hub.add_device("leg01", "tedge-legacy", password="leg01-pw")
    hub.add_device("leg02", "tedge-legacy", password="leg02-pw")
    leg01, accepted = await hub.client("l1", 5, username="leg01", password="leg01-pw")
    assert accepted == 0
    await leg01.subscribe("tedge/leg01/commands/req/firmware_update", qos=1)
    hub.upload("fw", "3.0", FIRMWARE)
    update_id = hub.start_update("leg01", "fw", "3.0")
    request = await leg01.recv()
    assert isinstance(request, Publish)
    await leg01.send(Puback(request.packet_id or 0))
    op_id = json.loads(request.payload)["id"]
    assert hub.wait_update(update_id, lambda u: u["state"] == "sent")["state"] == "sent"
    spoof = json.dumps({"id": op_id, "status": "successful"}).encode()
    response_topic = "tedge/leg01/commands/res/firmware_update"

    # another child answers leg01's request; so does an anonymous client
    leg02, _ = await hub.client("l2", 5, username="leg02", password="leg02-pw")
    await leg02.publish(response_topic, spoof, qos=1)
    ack = await leg02.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED
    hub.wait_log(rf"client 'l2' \(leg02\) may not publish to '{response_topic}'; dropped")
    # nor may it listen to leg01's requests
    suback = await leg02.subscribe("tedge/+/commands/req/firmware_update", qos=1)
    assert suback.reason_codes == [ReasonCode.NOT_AUTHORIZED]
    hub.wait_log(r"client 'l2' \(leg02\) may not subscribe to 'tedge/\+/commands/req/")

    anonymous, _ = await hub.client("anon", 4)
    await anonymous.publish(response_topic, spoof, qos=1)
    ack = await anonymous.recv()
    assert isinstance(ack, Puback)  # 3.1.1 has no refusal in a PUBACK: dropped
    hub.wait_log(rf"client 'anon' \(anon\) may not publish to '{response_topic}'; dropped")

    update = hub.update(update_id)
    assert update["state"] == "sent"
    # leg01 itself is heard
    await leg01.publish(response_topic, spoof, qos=1)
    assert (await puback_of(leg01)).reason_code in (0, ReasonCode.NO_MATCHING_SUBSCRIBERS)
    done = hub.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    for raw in (leg01, leg02, anonymous):
        raw.close()
