"""Hypothesis strategies for valid MQTT packets of each protocol version."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from hypothesis import strategies as st

from otahub.mqtt.codec import (
    AUTH_REASONS,
    CONNACK_REASONS,
    DISCONNECT_REASONS,
    PUBACK_REASONS,
    PUBREL_REASONS,
    SUBACK_REASONS,
    SUBACK_RETURN_CODES_V3,
    UNSUBACK_REASONS,
)
from otahub.mqtt.packets import (
    MQTT_3_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
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

VERSIONS = (3, 4, 5)
WILL = 0  # the will-properties context, as in otahub.mqtt.properties
T = PacketType

# Which properties each context may carry, written out from the spec's table
# (section 2.2.2.2) rather than taken from the code under test.
ALLOWED: dict[int, tuple[str, ...]] = {
    T.CONNECT: (
        "session_expiry_interval",
        "authentication_method",
        "authentication_data",
        "request_problem_information",
        "request_response_information",
        "receive_maximum",
        "topic_alias_maximum",
        "user_properties",
        "maximum_packet_size",
    ),
    T.CONNACK: (
        "session_expiry_interval",
        "assigned_client_identifier",
        "server_keep_alive",
        "authentication_method",
        "authentication_data",
        "response_information",
        "server_reference",
        "reason_string",
        "receive_maximum",
        "topic_alias_maximum",
        "maximum_qos",
        "retain_available",
        "user_properties",
        "maximum_packet_size",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    ),
    T.PUBLISH: (
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "subscription_identifiers",
        "topic_alias",
        "user_properties",
    ),
    WILL: (
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "will_delay_interval",
        "user_properties",
    ),
    T.PUBACK: ("reason_string", "user_properties"),
    T.PUBREC: ("reason_string", "user_properties"),
    T.PUBREL: ("reason_string", "user_properties"),
    T.PUBCOMP: ("reason_string", "user_properties"),
    T.SUBSCRIBE: ("subscription_identifiers", "user_properties"),
    T.SUBACK: ("reason_string", "user_properties"),
    T.UNSUBSCRIBE: ("user_properties",),
    T.UNSUBACK: ("reason_string", "user_properties"),
    T.DISCONNECT: (
        "session_expiry_interval",
        "server_reference",
        "reason_string",
        "user_properties",
    ),
    T.AUTH: ("authentication_method", "authentication_data", "reason_string", "user_properties"),
}

# A small alphabet keeps generation fast while covering 1- to 4-byte UTF-8 sequences,
# the last BMP code points and the wildcard characters; test_codec_wire.py tries
# every code point on the string primitives themselves.
_CHARS = "a/Z0 $+#\x01\x7f\xe9\u0800\u20ac\ufeff\uffff\U00010000\U0001f600\U0010ffff"
text = st.text(alphabet=_CHARS, max_size=12)
topic_name = st.text(alphabet=_CHARS.replace("+", "").replace("#", ""), min_size=1, max_size=12)
topic_filter = st.one_of(
    st.text(alphabet=_CHARS, min_size=1, max_size=12),
    st.sampled_from(["a/+/c", "#", "$share/g/a/#", "+/x/#", "$SYS/#"]),
)
binary = st.binary(max_size=24)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
flag = st.integers(0, 1)
packet_id = st.integers(1, 0xFFFF)
qos = st.integers(0, 2)

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": flag,
    "message_expiry_interval": u32,
    "content_type": text,
    "response_topic": topic_name,
    "correlation_data": binary,
    "session_expiry_interval": u32,
    "assigned_client_identifier": text,
    "server_keep_alive": u16,
    "authentication_method": text,
    "authentication_data": binary,
    "request_problem_information": flag,
    "will_delay_interval": u32,
    "request_response_information": flag,
    "response_information": text,
    "server_reference": text,
    "reason_string": text,
    "receive_maximum": st.integers(1, 0xFFFF),
    "topic_alias_maximum": u16,
    "topic_alias": st.integers(1, 0xFFFF),
    "maximum_qos": flag,
    "retain_available": flag,
    "maximum_packet_size": st.integers(1, 0xFFFF_FFFF),
    "wildcard_subscription_available": flag,
    "subscription_identifier_available": flag,
    "shared_subscription_available": flag,
}
_subscription_identifier = st.integers(1, 268_435_455)


@st.composite
def properties(draw: st.DrawFn, context: int) -> Properties:
    values: dict[str, Any] = {}
    for name in ALLOWED[context]:
        if name == "user_properties":
            values[name] = draw(st.lists(st.tuples(text, text), max_size=3))
        elif name == "subscription_identifiers":
            most = 3 if context == T.PUBLISH else 1
            values[name] = draw(st.lists(_subscription_identifier, max_size=most))
        elif draw(st.booleans()):
            values[name] = draw(_VALUES[name])
    if "authentication_data" in values and "authentication_method" not in values:
        # CONNECT forbids data without a method; keep every context consistent.
        del values["authentication_data"]
    return Properties(**values)


def props_for(version: int, context: int) -> st.SearchStrategy[Properties]:
    return properties(context) if version == MQTT_5 else st.just(Properties())


@st.composite
def connects(draw: st.DrawFn, version: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_name),
            draw(binary),
            draw(qos),
            draw(st.booleans()),
            draw(props_for(version, WILL)),
        )
    username = draw(st.none() | text)
    password = draw(st.none() | binary)
    if version < MQTT_5 and username is None:
        password = None
    return Connect(
        client_id=draw(text),
        protocol_level=version,
        clean_start=draw(st.booleans()),
        keep_alive=draw(u16),
        username=username,
        password=password,
        will=will,
        properties=draw(props_for(version, T.CONNECT)),
    )


@st.composite
def connacks(draw: st.DrawFn, version: int) -> Connack:
    if version == MQTT_5:
        code = draw(st.sampled_from(sorted(CONNACK_REASONS)))
    else:
        code = draw(st.integers(0, 5))
    present = code == 0 and version != MQTT_3_1 and draw(st.booleans())
    return Connack(present, code, draw(props_for(version, T.CONNACK)))


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    level = draw(qos)
    props = draw(props_for(version, T.PUBLISH))
    topic = draw(topic_name)
    if props.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return Publish(
        topic=topic,
        payload=draw(st.binary(max_size=300)),
        qos=level,
        retain=draw(st.booleans()),
        dup=level > 0 and draw(st.booleans()),
        packet_id=draw(packet_id) if level else None,
        properties=props,
    )


def acks(cls: type[Puback | Pubrec | Pubrel | Pubcomp], version: int) -> st.SearchStrategy[Any]:
    reasons = PUBACK_REASONS if cls in (Puback, Pubrec) else PUBREL_REASONS
    context = {Puback: T.PUBACK, Pubrec: T.PUBREC, Pubrel: T.PUBREL, Pubcomp: T.PUBCOMP}[cls]
    if version < MQTT_5:
        return st.builds(cls, packet_id)
    return st.builds(cls, packet_id, st.sampled_from(sorted(reasons)), props_for(version, context))


@st.composite
def subscriptions(draw: st.DrawFn, version: int) -> Subscription:
    topic = draw(topic_filter)
    if version < MQTT_5:
        return Subscription(topic, draw(qos))
    return Subscription(
        topic,
        draw(qos),
        no_local=not topic.startswith("$share/") and draw(st.booleans()),
        retain_as_published=draw(st.booleans()),
        retain_handling=draw(st.integers(0, 2)),
    )


@functools.cache  # building strategies is costly; draws inside st.data() reuse them
def packets(version: int) -> st.SearchStrategy[Packet]:
    """Any packet valid in ``version``, in either direction."""
    v5 = version == MQTT_5
    suback_codes = SUBACK_REASONS if v5 else SUBACK_RETURN_CODES_V3
    choices: list[st.SearchStrategy[Any]] = [
        connects(version),
        connacks(version),
        publishes(version),
        acks(Puback, version),
        acks(Pubrec, version),
        acks(Pubrel, version),
        acks(Pubcomp, version),
        st.builds(
            Subscribe,
            packet_id,
            st.lists(subscriptions(version), min_size=1, max_size=4),
            props_for(version, T.SUBSCRIBE),
        ),
        st.builds(
            Suback,
            packet_id,
            st.lists(st.sampled_from(sorted(suback_codes)), min_size=1, max_size=4),
            props_for(version, T.SUBACK),
        ),
        st.builds(
            Unsubscribe,
            packet_id,
            st.lists(topic_filter, min_size=1, max_size=4),
            props_for(version, T.UNSUBSCRIBE),
        ),
        st.builds(
            Unsuback,
            packet_id,
            st.lists(st.sampled_from(sorted(UNSUBACK_REASONS)), min_size=1, max_size=4)
            if v5
            else st.just([]),
            props_for(version, T.UNSUBACK),
        ),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(
            Disconnect,
            st.sampled_from(sorted(DISCONNECT_REASONS)) if v5 else st.just(0),
            props_for(version, T.DISCONNECT),
        ),
    ]
    if v5:
        choices.append(st.builds(Auth, st.sampled_from(sorted(AUTH_REASONS)), properties(T.AUTH)))
    return st.one_of(choices)


def strip_v5(packet: Packet, version: int) -> Packet:
    """What a 3.1 / 3.1.1 round trip keeps of ``packet``: no properties or v5-only fields."""
    if isinstance(packet, Publish):
        # not a dataclass: its properties are created on demand
        return Publish(
            packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id
        )
    changes: dict[str, Any] = {}
    if isinstance(packet, Connack) and version == MQTT_3_1:
        changes["session_present"] = False  # 3.1 has no such flag
    for f in dataclasses.fields(packet):
        if f.name == "properties":
            changes["properties"] = Properties()
    if isinstance(packet, Puback | Pubrec | Pubrel | Pubcomp | Disconnect):
        changes["reason_code"] = 0
    if isinstance(packet, Unsuback):
        changes["reason_codes"] = []
    if isinstance(packet, Subscribe):
        changes["subscriptions"] = [
            Subscription(s.topic_filter, s.qos) for s in packet.subscriptions
        ]
    if isinstance(packet, Connect) and packet.will is not None:
        changes["will"] = dataclasses.replace(packet.will, properties=Properties())
    return dataclasses.replace(packet, **changes) if changes else packet
