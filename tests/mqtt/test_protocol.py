"""The connection rules without a socket: bytes and decisions in, events and bytes out."""

from __future__ import annotations

import pytest

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from otahub.mqtt.protocol import (
    AUTHENTICATING,
    AWAIT_CONNECT,
    CLOSED,
    CONNACK_BAD_VERSION,
    CONNECTED,
    Acknowledged,
    Close,
    ConnectRequest,
    Event,
    InflightLimit,
    ProtocolLimits,
    Received,
    Send,
    ServerProtocol,
)
from otahub.mqtt.reason_codes import ReasonCode

LIMITS = ProtocolLimits(
    max_packet_size=64 * 1024,
    max_pre_connect_bytes=1024,
    max_inflight=2,
    topic_alias_maximum=4,
    max_session_expiry=3600,
    connect_timeout=10.0,
)


def events(proto: ServerProtocol) -> list[Event]:
    out: list[Event] = []
    while (event := proto.next_event()) is not None:
        out.append(event)
    return out


def decoded(data: bytes, version: int) -> list[Packet]:
    """What a client reads from ``data``."""
    return Decoder(version, role="client").feed(data)


def request(proto: ServerProtocol, connect: Connect, now: float = 0.0) -> ConnectRequest:
    proto.receive_data(encode(connect, connect.protocol_level), now)
    [event] = events(proto)
    assert isinstance(event, ConnectRequest)
    assert proto.phase == AUTHENTICATING
    return event


def connected(
    version: int = MQTT_3_1_1,
    keep_alive: int = 0,
    properties: Properties | None = None,
    now: float = 0.0,
) -> ServerProtocol:
    proto = ServerProtocol(LIMITS, now)
    connect = Connect("dev-1", version, True, keep_alive, properties=properties or Properties())
    request(proto, connect, now)
    assert decoded(proto.accept(False, set(), None), version) == [Connack(False, 0, _props(proto))]
    assert proto.phase == CONNECTED
    return proto


def _props(proto: ServerProtocol) -> Properties:
    if proto.version < MQTT_5:
        return Properties()
    return Properties(
        maximum_packet_size=LIMITS.max_packet_size,
        topic_alias_maximum=LIMITS.topic_alias_maximum,
        retain_available=1,
        wildcard_subscription_available=1,
        subscription_identifier_available=1,
        shared_subscription_available=0,
        receive_maximum=LIMITS.max_inflight,
    )


def feed(proto: ServerProtocol, *packets: Packet, now: float = 0.0) -> list[Event]:
    proto.receive_data(b"".join(encode(p, proto.version) for p in packets), now)
    return events(proto)


def closed_with(event: Event | None, kind: str, reason: int) -> Close:
    assert isinstance(event, Close), event
    assert (event.kind, event.reason_code) == (kind, reason), event
    return event


# -- CONNECT and authentication ----------------------------------------------------


def test_connect_asks_the_application_then_accept_answers_connack() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    assert proto.phase == AWAIT_CONNECT
    event = request(proto, Connect("dev-1", MQTT_3_1_1, clean_start=False, keep_alive=30))
    assert (event.client_id, event.report_assigned) == ("dev-1", False)
    assert event.session_expiry == LIMITS.max_session_expiry  # clean session 0 keeps it
    assert decoded(proto.accept(True, set(), None), MQTT_3_1_1) == [Connack(True, 0)]
    assert proto.phase == CONNECTED
    assert proto.keep_alive == 30


def test_connect_fed_one_byte_at_a_time() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    for byte in encode(Connect("dev-1", MQTT_3_1_1), MQTT_3_1_1):
        assert events(proto) == []
        proto.receive_data(bytes((byte,)), 0.0)
    [event] = events(proto)
    assert isinstance(event, ConnectRequest)


def test_v5_session_expiry_is_capped_and_the_connack_says_so() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    props = Properties(session_expiry_interval=9999)
    event = request(proto, Connect("d", MQTT_5, properties=props))
    assert event.session_expiry == 3600
    [connack] = decoded(proto.accept(False, set(), None), MQTT_5)
    assert isinstance(connack, Connack)
    assert connack.properties.session_expiry_interval == 3600


def test_v5_empty_client_id_is_assigned_and_reported() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    event = request(proto, Connect("", MQTT_5))
    assert (event.client_id, event.report_assigned) == ("", True)
    [connack] = decoded(proto.accept(False, set(), "otahub-1"), MQTT_5)
    assert isinstance(connack, Connack)
    assert connack.properties.assigned_client_identifier == "otahub-1"


def test_311_empty_client_id_with_clean_session_is_assigned_silently() -> None:
    event = request(ServerProtocol(LIMITS, 0.0), Connect("", MQTT_3_1_1, clean_start=True))
    assert (event.client_id, event.report_assigned) == ("", False)


def test_311_empty_client_id_without_clean_session_is_refused() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    proto.receive_data(encode(Connect("", MQTT_3_1_1, clean_start=False), MQTT_3_1_1), 0.0)
    [event] = events(proto)
    close = closed_with(event, "refused", ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
    assert close.refused
    assert decoded(close.data, MQTT_3_1_1) == [Connack(False, 2)]  # identifier rejected
    assert proto.phase == CLOSED


def test_enhanced_authentication_is_refused_with_bad_method() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    connect = Connect("d", MQTT_5, properties=Properties(authentication_method="SCRAM-SHA-1"))
    proto.receive_data(encode(connect, MQTT_5), 0.0)
    [event] = events(proto)
    close = closed_with(event, "refused", ReasonCode.BAD_AUTHENTICATION_METHOD)
    assert decoded(close.data, MQTT_5) == [Connack(False, ReasonCode.BAD_AUTHENTICATION_METHOD)]


def test_auth_packet_after_connect_is_a_protocol_error() -> None:
    proto = connected(MQTT_5)
    [event] = feed(proto, Auth())
    close = closed_with(event, "protocol_error", ReasonCode.PROTOCOL_ERROR)
    [disconnect] = decoded(close.data, MQTT_5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.PROTOCOL_ERROR
    assert not close.refused


@pytest.mark.parametrize(("version", "code"), [(MQTT_3_1_1, 5), (MQTT_5, 0x87)])
def test_refusal_sends_connack_in_the_clients_version(version: int, code: int) -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    request(proto, Connect("d", version))
    close = proto.refuse(ReasonCode.NOT_AUTHORIZED, "bad password")
    assert (close.kind, close.message, close.refused) == ("refused", "bad password", True)
    assert decoded(close.data, version) == [Connack(False, code)]
    assert proto.phase == CLOSED
    assert proto.close() is None  # already ended


def test_packets_sent_while_authenticating_wait_for_accept() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    data = encode(Connect("d", MQTT_3_1_1), 4) + encode(Pingreq(), 4)
    proto.receive_data(data, 0.0)
    [event] = events(proto)
    assert isinstance(event, ConnectRequest)
    proto.receive_data(encode(Publish("t", b"1"), 4), 0.0)
    assert events(proto) == []
    proto.accept(False, set(), None)
    sent, publish = events(proto)
    assert isinstance(sent, Send)
    assert sent.data == b"\xd0\x00"  # PINGRESP, before the PUBLISH sent after it
    assert publish == Publish("t", b"1")


def test_first_packet_not_connect_closes_without_answer() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    proto.receive_data(encode(Pingreq(), 4), 0.0)
    [event] = events(proto)
    close = closed_with(event, "protocol_error", ReasonCode.PROTOCOL_ERROR)
    assert (close.data, close.refused) == (b"", True)
    proto.receive_data(encode(Connect("d"), 4), 0.0)
    assert events(proto) == []  # nothing more is read


def test_unsupported_protocol_level_gets_the_311_refusal() -> None:
    data = bytearray(encode(Connect("d", MQTT_3_1_1), 4))
    assert data[8] == 4  # the protocol level byte
    data[8] = 6
    proto = ServerProtocol(LIMITS, 0.0)
    proto.receive_data(bytes(data), 0.0)
    [event] = events(proto)
    close = closed_with(event, "protocol_error", ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
    assert close.data == CONNACK_BAD_VERSION


def test_bytes_before_connect_is_accepted_are_limited() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    request(proto, Connect("d"))
    proto.receive_data(encode(Publish("t", bytes(600)), 4), 0.0)
    assert events(proto) == []
    proto.receive_data(encode(Publish("t", bytes(600)), 4), 0.0)
    [event] = events(proto)
    close = closed_with(event, "pre_connect_limit", 0)
    assert close.refused
    assert proto.phase == CLOSED


def test_malformed_bytes_after_intact_packets_end_the_connection_after_them() -> None:
    proto = connected(MQTT_3_1_1)
    proto.receive_data(encode(Publish("a", b"1"), 4) + b"\x00\x00", 0.0)
    publish, close = events(proto)
    assert publish == Publish("a", b"1")
    closed_with(close, "protocol_error", ReasonCode.MALFORMED_PACKET)
    assert proto.phase == CLOSED


def test_second_connect_is_a_protocol_error() -> None:
    proto = connected(MQTT_3_1_1)
    [event] = feed(proto, Connect("again"))
    closed_with(event, "protocol_error", ReasonCode.PROTOCOL_ERROR)


# -- QoS 1 and 2 ----------------------------------------------------------------------


def test_qos1_publish_and_its_puback() -> None:
    proto = connected(MQTT_3_1_1)
    [publish] = feed(proto, Publish("t", b"x", 1, packet_id=7))
    assert publish == Publish("t", b"x", 1, packet_id=7)
    assert decoded(proto.ack_publish(1, 7, 0), 4) == [Puback(7)]
    # 3.1.1 acknowledgements carry no reason
    assert decoded(proto.ack_publish(1, 8, ReasonCode.NOT_AUTHORIZED), 4) == [Puback(8)]
    assert proto.ack_publish(0, None, 0) == b""


def test_v5_puback_carries_the_reason() -> None:
    proto = connected(MQTT_5)
    data = proto.ack_publish(1, 3, ReasonCode.NO_MATCHING_SUBSCRIBERS)
    assert decoded(data, MQTT_5) == [Puback(3, ReasonCode.NO_MATCHING_SUBSCRIBERS)]


def test_qos2_receive_flow_and_resent_publish() -> None:
    proto = connected(MQTT_5)
    [publish] = feed(proto, Publish("t", b"x", 2, packet_id=5))
    assert isinstance(publish, Publish)
    assert decoded(proto.ack_publish(2, 5, 0), MQTT_5) == [Pubrec(5)]
    assert proto.incoming_qos2 == {5}
    # the same message again (the PUBREC was lost): acknowledged, not handled again
    [again] = feed(proto, Publish("t", b"x", 2, dup=True, packet_id=5))
    assert isinstance(again, Send)
    assert again.publish  # still a PUBLISH received
    assert decoded(again.data, MQTT_5) == [Pubrec(5)]
    [release] = feed(proto, Pubrel(5))
    assert isinstance(release, Send)
    assert decoded(release.data, MQTT_5) == [Pubcomp(5)]
    assert proto.incoming_qos2 == set()
    [unknown] = feed(proto, Pubrel(5))
    assert isinstance(unknown, Send)
    assert decoded(unknown.data, MQTT_5) == [Pubcomp(5, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]


def test_refused_qos2_publish_is_not_remembered() -> None:
    proto = connected(MQTT_5)
    feed(proto, Publish("t", b"x", 2, packet_id=5))
    data = proto.ack_publish(2, 5, ReasonCode.NOT_AUTHORIZED)
    assert decoded(data, MQTT_5) == [Pubrec(5, ReasonCode.NOT_AUTHORIZED)]
    assert proto.incoming_qos2 == set()


def test_incoming_qos2_state_is_the_sessions_set() -> None:
    """A resumed session's unreleased messages are still known to a new connection."""
    proto = ServerProtocol(LIMITS, 0.0)
    request(proto, Connect("d", MQTT_3_1_1, clean_start=False))
    session_set = {9}
    proto.accept(True, session_set, None)
    [event] = feed(proto, Publish("t", b"x", 2, packet_id=9))
    assert isinstance(event, Send)  # already received: PUBREC again
    feed(proto, Pubrel(9))
    assert session_set == set()


def test_our_qos1_and_qos2_messages_are_acknowledged_and_released() -> None:
    proto = connected(MQTT_5)
    got = feed(proto, Puback(1), Pubrec(2), Pubrec(3, ReasonCode.UNSPECIFIED_ERROR), Pubcomp(2))
    assert [(type(e), getattr(e, "packet_id", None)) for e in got] == [
        (Acknowledged, 1),
        (Received, 2),
        (Acknowledged, 3),  # a refusing PUBREC ends the flow
        (Acknowledged, 2),
    ]
    assert decoded(proto.release(2, True), MQTT_5) == [Pubrel(2)]
    assert decoded(proto.release(4, False), MQTT_5) == [
        Pubrel(4, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
    ]


def test_qos2_past_receive_maximum_v5_disconnects() -> None:
    proto = connected(MQTT_5)
    for pid in (1, 2):
        feed(proto, Publish("t", b"", 2, packet_id=pid))
        proto.ack_publish(2, pid, 0)
    [event] = feed(proto, Publish("t", b"", 2, packet_id=3))
    assert isinstance(event, InflightLimit)
    assert event.limit == 2
    assert event.data is not None
    [disconnect] = decoded(event.data, MQTT_5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert proto.phase == CLOSED


def test_qos2_past_receive_maximum_311_is_dropped_unacknowledged() -> None:
    proto = connected(MQTT_3_1_1)
    for pid in (1, 2):
        feed(proto, Publish("t", b"", 2, packet_id=pid))
        proto.ack_publish(2, pid, 0)
    [event] = feed(proto, Publish("t", b"", 2, packet_id=3))
    assert isinstance(event, InflightLimit)
    assert event.data is None
    assert proto.phase == CONNECTED
    feed(proto, Pubrel(1))
    [publish] = feed(proto, Publish("t", b"", 2, packet_id=3))  # room again
    assert isinstance(publish, Publish)


# -- topic aliases ------------------------------------------------------------------


def test_topic_alias_is_resolved() -> None:
    proto = connected(MQTT_5)
    [first] = feed(proto, Publish("dev/1/up", b"a", properties=Properties(topic_alias=2)))
    [second] = feed(proto, Publish("", b"b", properties=Properties(topic_alias=2)))
    assert isinstance(first, Publish)
    assert isinstance(second, Publish)
    assert (first.topic, second.topic) == ("dev/1/up", "dev/1/up")


@pytest.mark.parametrize(
    ("alias", "topic", "reason"),
    [
        (5, "t", ReasonCode.TOPIC_ALIAS_INVALID),  # above our Topic Alias Maximum
        (3, "", ReasonCode.PROTOCOL_ERROR),  # never set
    ],
)
def test_bad_topic_alias_disconnects(alias: int, topic: str, reason: int) -> None:
    proto = connected(MQTT_5)
    [event] = feed(proto, Publish(topic, b"", properties=Properties(topic_alias=alias)))
    close = closed_with(event, "protocol_error", reason)
    [disconnect] = decoded(close.data, MQTT_5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == reason


# -- keep alive and timeouts -----------------------------------------------------------


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_keep_alive_allows_one_and_a_half_intervals(version: int) -> None:
    proto = connected(version, keep_alive=10, now=100.0)
    assert proto.deadline() == 115.0
    assert proto.timer_fired(114.9) is None
    [pong] = feed(proto, Pingreq(), now=110.0)
    assert isinstance(pong, Send)
    assert pong.data == b"\xd0\x00"
    assert proto.deadline() == 125.0  # any packet counts as a sign of life
    assert proto.timer_fired(115.0) is None
    close = closed_with(proto.timer_fired(125.0), "keep_alive_timeout", 0x8D)
    if version == MQTT_5:
        [disconnect] = decoded(close.data, MQTT_5)
        assert isinstance(disconnect, Disconnect)
        assert disconnect.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT
    else:
        assert close.data == b""
    assert proto.phase == CLOSED
    assert proto.deadline() is None


def test_keep_alive_zero_has_no_timer() -> None:
    assert connected(MQTT_3_1_1, keep_alive=0).deadline() is None


@pytest.mark.parametrize("authenticating", [False, True])
def test_connect_timeout(authenticating: bool) -> None:
    proto = ServerProtocol(LIMITS, 50.0)
    if authenticating:
        request(proto, Connect("d"), now=55.0)  # the authenticator takes too long
    assert proto.deadline() == 60.0
    assert proto.timer_fired(59.0) is None
    close = closed_with(proto.timer_fired(60.0), "connect_timeout", 0)
    assert (close.data, close.refused) == (b"", True)


# -- DISCONNECT, takeover, server close ---------------------------------------------


@pytest.mark.parametrize(
    ("reason", "graceful"), [(0, True), (ReasonCode.DISCONNECT_WITH_WILL, False)]
)
def test_client_disconnect(reason: int, graceful: bool) -> None:
    proto = connected(MQTT_5)
    [event] = feed(proto, Disconnect(reason), Pingreq())
    close = closed_with(event, "disconnect", reason)
    assert (close.graceful, close.data, close.session_expiry) == (graceful, b"", None)
    assert events(proto) == []  # nothing after the DISCONNECT counts


def test_disconnect_changes_session_expiry_within_the_maximum() -> None:
    proto = connected(MQTT_5, properties=Properties(session_expiry_interval=60))
    [event] = feed(proto, Disconnect(0, Properties(session_expiry_interval=99999)))
    assert closed_with(event, "disconnect", 0).session_expiry == 3600


def test_disconnect_may_not_add_session_expiry_after_zero() -> None:
    proto = connected(MQTT_5)
    [event] = feed(proto, Disconnect(0, Properties(session_expiry_interval=10)))
    closed_with(event, "protocol_error", ReasonCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("version", [MQTT_3_1_1, MQTT_5])
def test_session_taken_over_ends_the_old_connection(version: int) -> None:
    proto = connected(version)
    close = proto.close(ReasonCode.SESSION_TAKEN_OVER, "session taken over")
    assert close is not None
    assert close.kind == "server"
    if version == MQTT_5:
        assert decoded(close.data, MQTT_5) == [
            Disconnect(
                ReasonCode.SESSION_TAKEN_OVER, Properties(reason_string="session taken over")
            )
        ]
    else:
        assert close.data == b""  # 3.1.1 has no server DISCONNECT
    assert proto.close() is None
    proto.receive_data(encode(Pingreq(), version), 0.0)
    assert events(proto) == []


def test_close_while_authenticating_sends_nothing_and_accept_is_not_awaited() -> None:
    proto = ServerProtocol(LIMITS, 0.0)
    request(proto, Connect("d", MQTT_5))
    close = proto.close(ReasonCode.SERVER_SHUTTING_DOWN)
    assert close is not None
    assert close.data == b""
    assert proto.phase == CLOSED


# -- subscriptions --------------------------------------------------------------------


def test_subscribe_and_unsubscribe_are_handed_to_the_application() -> None:
    proto = connected(MQTT_3_1_1)
    subscribe = Subscribe(1, [Subscription("a/#", 1)])
    unsubscribe = Unsubscribe(2, ["a/#"])
    assert feed(proto, subscribe, unsubscribe) == [subscribe, unsubscribe]


def test_311_suback_and_unsuback_leave_out_what_it_cannot_say() -> None:
    proto = connected(MQTT_3_1_1)
    suback = proto.suback(1, [1, ReasonCode.NOT_AUTHORIZED])
    assert decoded(suback, 4) == [Suback(1, [1, 0x80])]
    assert decoded(proto.unsuback(2, [ReasonCode.NO_SUBSCRIPTION_EXISTED]), 4) == [Unsuback(2, [])]
    proto5 = connected(MQTT_5)
    assert decoded(proto5.suback(1, [ReasonCode.NOT_AUTHORIZED]), MQTT_5) == [
        Suback(1, [ReasonCode.NOT_AUTHORIZED])
    ]


def test_will_is_the_applications_business() -> None:
    will = Will("dev/1/status", b"gone", 1, False)
    event = request(ServerProtocol(LIMITS, 0.0), Connect("d", MQTT_3_1_1, will=will))
    assert event.connect.will == will
