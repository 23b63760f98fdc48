"""Identities at the endpoint: anonymous clients by network, per-connection sessions
kept out of routing, and client ids that only their own identity may take over."""

from __future__ import annotations

import pytest

from otahub.mqtt.anonymous import parse_networks, peer_in
from otahub.mqtt.hooks import Acl, ConnectInfo, Identity, Refusal
from otahub.mqtt.packets import Publish
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

VERSIONS = [pytest.param(4, id="3.1.1"), pytest.param(5, id="5.0")]


class PrivateSessions:
    """Accepts user names as identities whose topics are per connection (not routed)."""

    async def __call__(self, info: ConnectInfo) -> Identity | Refusal | None:
        if info.username is None:
            return None
        return Identity(info.username, dialect="private", routed=False)


@pytest.mark.parametrize(
    ("peer", "inside"),
    [
        ("127.0.0.1:5000", True),
        ("127.0.0.2:5000", False),
        ("::1:5000", False),
        ("::ffff:127.0.0.1:5000", True),
        ("?", False),
    ],
)
def test_peer_in_networks(peer: str, inside: bool) -> None:
    assert peer_in(peer, parse_networks(["127.0.0.1/32"])) is inside


def test_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks(["127.0.0.1", "10.0.0.0/33"])


async def test_routed_messages_never_reach_a_per_connection_session(
    running: RunningServer,
) -> None:
    running.server.add_authenticator(PrivateSessions())
    private = await RawClient.open(running.port, 5)
    assert (await private.connect("p", username="dev")).reason_code == 0
    await private.subscribe("v1/devices/me/attributes", qos=1)
    anon = await RawClient.open(running.port, 5)
    assert (await anon.connect("a")).reason_code == 0
    await anon.publish("v1/devices/me/attributes", b'{"evil":1}', qos=0, retain=True)
    await private.expect_nothing(0.5)
    # neither is the retained message handed to a new subscription
    await private.subscribe("v1/devices/me/#", qos=1)
    await private.expect_nothing(0.5)
    # what a driver sends the session directly still arrives
    assert running.server.deliver("p", "v1/devices/me/attributes", b"{}")
    got = await private.recv()
    assert isinstance(got, Publish) and got.payload == b"{}"
    private.close()
    anon.close()


@pytest.mark.parametrize(("version", "code"), [(4, 2), (5, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)])
async def test_live_session_is_not_taken_over_by_another_identity(
    running: RunningServer, version: int, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    running.server.add_authenticator(PrivateSessions())
    owner = await RawClient.open(running.port, 5)
    assert (await owner.connect("shared-id", username="dev")).reason_code == 0
    for username in (None, "other"):
        intruder = await RawClient.open(running.port, version)
        kwargs = {} if username is None else {"username": username}
        assert (await intruder.connect("shared-id", **kwargs)).reason_code == code
        assert await intruder.closed() == []
    assert "client id is in use by private 'dev'" in caplog.text
    await owner.expect_nothing(0.3)  # still connected, nothing sent to it
    # its own identity may take it over (a reconnect after a half-open link)
    again = await RawClient.open(running.port, 5)
    assert (await again.connect("shared-id", username="dev")).reason_code == 0
    assert [type(p).__name__ for p in await owner.closed()] == ["Disconnect"]
    again.close()


async def test_stored_session_of_another_identity_is_not_resumed(
    running: RunningServer,
) -> None:
    running.server.add_authenticator(PrivateSessions())
    owner = await RawClient.open(running.port, 4)
    assert (await owner.connect("kept", username="dev", clean_start=False)).reason_code == 0
    await owner.subscribe("dev/in", qos=1)
    owner.close()
    await owner.closed()
    other = await RawClient.open(running.port, 4)
    connack = await other.connect("kept", clean_start=False)
    assert (connack.reason_code, connack.session_present) == (0, False)
    assert "dev/in" not in running.server.sessions["kept"].subscriptions
    other.close()


async def test_anonymous_policy_gives_each_anonymous_client_its_acl(
    running: RunningServer,
) -> None:
    seen: list[tuple[str, bool]] = []

    class NoPublish:
        def can_publish(self, topic: str) -> bool:
            return False

        def can_subscribe(self, topic_filter: str) -> bool | int:
            return True

    def policy(info: ConnectInfo, trusted: bool) -> Acl:
        seen.append((info.client_id, trusted))
        return NoPublish()

    running.server.set_anonymous_policy(policy)
    anon = await RawClient.open(running.port, 5)
    assert (await anon.connect("a")).reason_code == 0
    assert seen == [("a", True)]
    session = running.server.sessions["a"]
    assert session.identity.anonymous and isinstance(session.identity.acl, NoPublish)
    anon.close()
