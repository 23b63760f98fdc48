"""Legacy children with credentials: only they answer their own requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from otahub.mqtt.packets import Puback, Publish
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.rawclient import RawClient
from tests.security.conftest import SecureHub
from tests.security.test_thin_edge_devices import puback_of

FIRMWARE = b"legacy firmware\n" * 100
RESPONSE_TOPIC = "tedge/leg01/commands/res/firmware_update"


@dataclass
class SentRequest:
    hub: SecureHub
    leg01: RawClient  # the child the request is for, logged in and subscribed
    update_id: int
    op_id: str

    def response(self, status: str) -> bytes:
        return json.dumps({"id": self.op_id, "status": status}).encode()

    async def child_answers_and_succeeds(self) -> None:
        """What was refused before changed nothing: the child's own answer still counts."""
        assert self.hub.update(self.update_id)["state"] == "sent"
        await self.leg01.publish(RESPONSE_TOPIC, self.response("successful"), qos=1)
        assert (await puback_of(self.leg01)).reason_code in (
            0,
            ReasonCode.NO_MATCHING_SUBSCRIBERS,
        )
        done = self.hub.wait_update(self.update_id, lambda u: u["state"] == "succeeded")
        assert done["state"] == "succeeded"


@pytest.fixture
async def sent(secure_hub: Callable[..., SecureHub]) -> AsyncIterator[SentRequest]:
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
    assert hub.wait_update(update_id, lambda u: u["state"] == "sent")["state"] == "sent"
    yield SentRequest(hub, leg01, update_id, json.loads(request.payload)["id"])
    leg01.close()


async def test_legacy_child_answering_another_childs_request_is_refused(
    sent: SentRequest,
) -> None:
    leg02, _ = await sent.hub.client("l2", 5, username="leg02", password="leg02-pw")
    await leg02.publish(RESPONSE_TOPIC, sent.response("failed"), qos=1)
    ack = await leg02.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED
    sent.hub.wait_log(rf"client 'l2' \(leg02\) may not publish to '{RESPONSE_TOPIC}'; dropped")
    # nor may it listen to other children's requests
    suback = await leg02.subscribe("tedge/+/commands/req/firmware_update", qos=1)
    assert suback.reason_codes == [ReasonCode.NOT_AUTHORIZED]
    sent.hub.wait_log(r"client 'l2' \(leg02\) may not subscribe to 'tedge/\+/commands/req/")
    leg02.close()
    await sent.child_answers_and_succeeds()


@pytest.mark.parametrize("version", [4, 5])
async def test_spoofed_legacy_successful_from_an_anonymous_client_is_refused(
    sent: SentRequest, version: int
) -> None:
    anonymous, _ = await sent.hub.client("anon", version)
    await anonymous.publish(RESPONSE_TOPIC, sent.response("successful"), qos=1)
    ack = await anonymous.recv()
    assert isinstance(ack, Puback)
    # MQTT 5 says why; a 3.1.1 PUBACK carries no reason: the message is dropped
    assert ack.reason_code == (ReasonCode.NOT_AUTHORIZED if version == 5 else 0)
    sent.hub.wait_log(rf"client 'anon' \(anon\) may not publish to '{RESPONSE_TOPIC}'; dropped")
    anonymous.close()
    await sent.child_answers_and_succeeds()
