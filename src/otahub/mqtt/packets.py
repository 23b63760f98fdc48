"""MQTT control packets as plain data, shared by MQTT 3.1.1 and 5.0.

Fields that only exist in MQTT 5.0 (properties, most reason codes) keep
their defaults when a 3.1.1 packet is decoded and are ignored when one is
encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

# Protocol levels as carried in CONNECT.
MQTT_3_1: Final = 3
MQTT_3_1_1: Final = 4
MQTT_5: Final = 5
SUPPORTED_VERSIONS: Final = (MQTT_3_1, MQTT_3_1_1, MQTT_5)


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


@dataclass(slots=True)
class Properties:
    """MQTT 5.0 properties; ``None`` (or empty) means absent."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: list[int] = field(default_factory=list)
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: list[tuple[str, str]] = field(default_factory=list)
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


# compared against, never handed out or changed
_EMPTY: Final = Properties()


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Connect:
    client_id: str = ""
    protocol_level: int = MQTT_3_1_1
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Connack:
    session_present: bool = False
    # v5 reason code, or the 3.1.1 return code when encoded for 3.1.1
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


class Publish:
    """A PUBLISH; ``packet_id`` is present exactly when ``qos`` > 0.

    Written out rather than a dataclass: it is built for every message, and
    its ``properties`` are only created when first asked for, since almost
    every PUBLISH (all of 3.1.1's) carries none.
    """

    __slots__ = ("_properties", "dup", "packet_id", "payload", "qos", "retain", "topic")
    __match_args__ = ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")

    def __init__(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        packet_id: int | None = None,
        properties: Properties | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self._properties = properties

    @property
    def properties(self) -> Properties:
        props = self._properties
        if props is None:
            props = self._properties = Properties()
        return props

    @properties.setter
    def properties(self, value: Properties) -> None:
        self._properties = value

    @property
    def given_properties(self) -> Properties | None:
        """The properties if any were set or decoded, without creating empty ones."""
        return self._properties

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Publish):
            return NotImplemented
        return (
            self.topic == other.topic
            and self.payload == other.payload
            and self.qos == other.qos
            and self.retain == other.retain
            and self.dup == other.dup
            and self.packet_id == other.packet_id
            and (self._properties or _EMPTY) == (other._properties or _EMPTY)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclasses here

    def __repr__(self) -> str:
        return (
            f"Publish(topic={self.topic!r}, payload={self.payload!r}, qos={self.qos!r}, "
            f"retain={self.retain!r}, dup={self.dup!r}, packet_id={self.packet_id!r}, "
            f"properties={self.properties!r})"
        )


@dataclass(slots=True)
class Puback:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Pubrec:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Pubrel:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Pubcomp:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Subscription:
    topic_filter: str
    qos: int = 0
    # MQTT 5.0 subscription options
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]  # granted QoS (0..2) or 0x80 (3.1.1) / a v5 failure code
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)  # MQTT 5.0 only
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Pingreq:
    pass


@dataclass(slots=True)
class Pingresp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0  # MQTT 5.0 only
    properties: Properties = field(default_factory=Properties)


@dataclass(slots=True)
class Auth:  # MQTT 5.0 only
    reason_code: int = 0
    properties: Properties = field(default_factory=Properties)


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
