"""The MQTT rules of one client connection, server side, without I/O.

``ServerProtocol`` is a state machine in the manner of h11: the bytes a
client sent, the time and the application's decisions go in; events (what
the application must act on) and the bytes to send come out. It keeps the
rules of the connection: the CONNECT handshake and its refusals, the
authentication step, the QoS 1 and 2 handshakes, topic aliases, the keep
alive and connect timeouts, DISCONNECT and the session taken over by a new
connection. It reads no socket, starts no timer and never logs:
``otahub.mqtt.connection`` drives it with asyncio, and runs what only the
application knows (authenticators, sessions, routing, drivers).

Driving it::

    proto.receive_data(data, now)
    while (event := proto.next_event()) is not None:
        ...  # act on the event; write the bytes it carries

Events, one class each: the incoming ``Publish`` packet itself (topic alias
resolved; acknowledge it with ``ack_publish``), ``Subscribe`` and
``Unsubscribe`` packets, ``ConnectRequest`` (authenticate, then ``accept``
or ``refuse``), ``Send`` (bytes to write: PINGRESP, PUBCOMP, ...),
``Acknowledged`` and ``Received`` (the client's side of our QoS 1/2
messages), ``InflightLimit`` and ``Close`` (write its bytes, then close).
"""

from __future__ import annotations

from typing import Final, TypeAlias

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.errors import MQTTError
from otahub.mqtt.packets import (
    MQTT_3_1,
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
    Unsuback,
    Unsubscribe,
)
from otahub.mqtt.reason_codes import ReasonCode, connack_code_for

__all__ = [
    "AUTHENTICATING",
    "AWAIT_CONNECT",
    "CLOSED",
    "CONNECTED",
    "Acknowledged",
    "Close",
    "ConnectRequest",
    "Event",
    "InflightLimit",
    "ProtocolLimits",
    "Received",
    "Send",
    "ServerProtocol",
]

# The phases of a connection.
AWAIT_CONNECT: Final = 0  # nothing but a CONNECT is allowed
AUTHENTICATING: Final = 1  # CONNECT received, the application decides; packets wait
CONNECTED: Final = 2
CLOSED: Final = 3

PHASE_NAMES: Final = ("await-connect", "authenticating", "connected", "closed")

# CONNACK for a protocol level we do not speak, in the 3.1.1 layout every
# MQTT version can read: return code 1 "unacceptable protocol version".
CONNACK_BAD_VERSION: Final = b"\x20\x02\x00\x01"
_PINGRESP: Final = b"\xd0\x00"

# What _packets holds when every packet is handled: shared, never changed
# in place (packets received later replace it).
_NO_PACKETS: Final[list[Packet]] = []

# A client may stay silent this many keep-alive intervals (MQTT-3.1.2-24).
KEEP_ALIVE_GRACE: Final = 1.5


class ProtocolLimits:
    """The server's settings the rules depend on."""

    __slots__ = (
        "connect_timeout",
        "max_inflight",
        "max_packet_size",
        "max_pre_connect_bytes",
        "max_session_expiry",
        "topic_alias_maximum",
    )

    def __init__(
        self,
        *,
        max_packet_size: int,
        max_pre_connect_bytes: int,
        max_inflight: int,
        topic_alias_maximum: int,
        max_session_expiry: int,
        connect_timeout: float,
    ) -> None:
        self.max_packet_size = max_packet_size
        self.max_pre_connect_bytes = max_pre_connect_bytes
        self.max_inflight = max_inflight
        self.topic_alias_maximum = topic_alias_maximum
        self.max_session_expiry = max_session_expiry
        self.connect_timeout = connect_timeout


# -- events -------------------------------------------------------------------


class Send:
    """Bytes the rules answer with on their own (PINGRESP, PUBCOMP, ...).

    ``publish``: the answer to a PUBLISH sent again (a QoS 2 one already
    received), which counts as a PUBLISH received.
    """

    __slots__ = ("data", "publish")

    def __init__(self, data: bytes, publish: bool = False) -> None:
        self.data = data
        self.publish = publish

    def __repr__(self) -> str:
        return f"Send({self.data!r})"


class ConnectRequest:
    """A well-formed CONNECT: the application authenticates the client, then
    calls ``accept`` or ``refuse``.

    ``client_id`` is empty when the server must assign one; ``report_assigned``
    says whether the CONNACK tells the client (MQTT 5). ``session_expiry`` is
    the interval the session gets, already capped by the server's maximum.
    """

    __slots__ = ("client_id", "connect", "report_assigned", "session_expiry")

    def __init__(
        self, connect: Connect, client_id: str, report_assigned: bool, session_expiry: int
    ) -> None:
        self.connect = connect
        self.client_id = client_id
        self.report_assigned = report_assigned
        self.session_expiry = session_expiry


class Acknowledged:
    """The client is done with our QoS 1/2 message ``packet_id`` (PUBACK,
    PUBCOMP, or a PUBREC refusing it)."""

    __slots__ = ("packet_id",)

    def __init__(self, packet_id: int) -> None:
        self.packet_id = packet_id

    def __repr__(self) -> str:
        return f"Acknowledged({self.packet_id})"


class Received:
    """PUBREC for our QoS 2 message ``packet_id``: the application looks it up
    and answers with ``release``."""

    __slots__ = ("packet_id",)

    def __init__(self, packet_id: int) -> None:
        self.packet_id = packet_id

    def __repr__(self) -> str:
        return f"Received({self.packet_id})"


class InflightLimit:
    """A QoS 2 PUBLISH past our Receive Maximum, dropped unacknowledged.

    MQTT 5 names it a protocol violation: ``data`` is then the DISCONNECT
    (0x93) and the connection is closed; 3.1.1 has no such limit, so the
    client sends it again once its earlier ones are released (``data`` is None).
    """

    __slots__ = ("data", "limit")

    def __init__(self, limit: int, data: bytes | None) -> None:
        self.limit = limit
        self.data = data


class Close:
    """The connection ends: write ``data``, then close the transport.

    ``kind`` says why: ``protocol_error``, ``refused`` (the CONNECT was
    refused with ``reason_code``), ``pre_connect_limit``, ``connect_timeout``,
    ``keep_alive_timeout``, ``disconnect`` (the client's DISCONNECT; ``graceful``
    unless it asked for its will, ``session_expiry`` when it changed it) or
    ``server`` (the application closed it). ``refused`` marks an end before
    the CONNECT was accepted.
    """

    __slots__ = (
        "data",
        "graceful",
        "kind",
        "message",
        "reason_code",
        "refused",
        "session_expiry",
    )

    def __init__(
        self,
        kind: str,
        data: bytes = b"",
        reason_code: int = 0,
        message: str = "",
        refused: bool = False,
        graceful: bool = False,
        session_expiry: int | None = None,
    ) -> None:
        self.kind = kind
        self.data = data
        self.reason_code = reason_code
        self.message = message
        self.refused = refused
        self.graceful = graceful
        self.session_expiry = session_expiry

    def __repr__(self) -> str:
        return f"Close({self.kind!r}, {self.data!r}, 0x{self.reason_code:02X}, {self.message!r})"


Event: TypeAlias = (
    Publish
    | Subscribe
    | Unsubscribe
    | ConnectRequest
    | Send
    | Acknowledged
    | Received
    | InflightLimit
    | Close
)


class ServerProtocol:
    """The rules of one client connection; see the module's documentation."""

    def __init__(self, limits: ProtocolLimits, now: float) -> None:
        self.limits = limits
        self.decoder = Decoder(None, max_packet_size=limits.max_packet_size, role="server")
        self.phase = AWAIT_CONNECT
        self.version = 0  # the CONNECT's protocol level, once received
        self.connect: Connect | None = None
        self.keep_alive = 0
        self.session_expiry = 0
        self.last_rx = now
        self.pre_connect_bytes = 0
        self.topic_aliases: dict[int, str] = {}
        # QoS 2 PUBLISHes acknowledged (PUBREC) and not yet released (PUBREL):
        # the session's set, so that it outlives this connection
        self.incoming_qos2: set[int] = set()
        self._connect_deadline = now + limits.connect_timeout
        self._packets: list[Packet] = _NO_PACKETS
        self._next = 0  # index of the next packet of _packets to handle
        self._error: MQTTError | None = None  # what stopped the decoder, after _packets
        self._pending: Close | None = None  # an end decided outside next_event

    @property
    def phase_name(self) -> str:
        return PHASE_NAMES[self.phase]

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the client; ``next_event`` then says what they mean."""
        phase = self.phase
        if phase == CLOSED:
            return
        self.last_rx = now
        if phase != CONNECTED:
            # Neither the decoder's partial packet nor the waiting packets may
            # grow on what an unauthenticated peer sends.
            self.pre_connect_bytes += len(data)
            if self.pre_connect_bytes > self.limits.max_pre_connect_bytes:
                self._end()
                self._pending = Close(
                    "pre_connect_limit",
                    message=f"sent more than {self.limits.max_pre_connect_bytes} bytes "
                    "before its CONNECT was accepted",
                    refused=True,
                )
                return
        try:
            packets = self.decoder.feed(data)
        except MQTTError as exc:
            # what arrived intact before the bad packet is still handled
            packets = exc.packets
            self._error = exc
        if self._next < len(self._packets):
            self._packets = self._packets[self._next :] + packets
        else:
            self._packets = packets
        self._next = 0

    def next_event(self) -> Event | None:
        """The next thing the application must act on, or None for now."""
        phase = self.phase
        packets = self._packets
        index = self._next
        if phase == CONNECTED:
            if index < len(packets):
                # every packet makes one event
                packet = packets[index]
                self._next = index + 1
                if type(packet) is Publish:
                    # nearly all of the traffic: below QoS 2 and without
                    # properties (all of 3.1.1's), handed on as it is
                    if packet.qos != 2 and (
                        self.version < MQTT_5 or packet.given_properties is None
                    ):
                        return packet
                    try:
                        return self._publish(packet)
                    except MQTTError as exc:
                        return self._protocol_error(exc)
                try:
                    return self._packet(packet)
                except MQTTError as exc:
                    return self._protocol_error(exc)
        elif phase == AWAIT_CONNECT:
            if index < len(packets):
                packet = packets[index]
                self._next = index + 1
                if not isinstance(packet, Connect):
                    return self._protocol_error(
                        MQTTError("first packet is not CONNECT", ReasonCode.PROTOCOL_ERROR)
                    )
                return self._connect(packet)
        elif phase == CLOSED:
            # only an end decided in receive_data (the connection is closed by then)
            pending = self._pending
            self._pending = None
            return pending
        # AUTHENTICATING keeps its packets until accepted, but ends on a bad one
        error = self._error
        if error is not None:
            self._error = None
            return self._protocol_error(error)
        if packets and index >= len(packets):
            self._packets = _NO_PACKETS  # not kept alive (a large payload) until the next read
            self._next = 0
        return None

    # -- the application's decisions ---------------------------------------

    def accept(
        self, present: bool, incoming_qos2: set[int], assigned_client_id: str | None
    ) -> bytes:
        """The CONNECT is accepted (its session attached): the CONNACK to send.

        ``incoming_qos2`` is the session's set of QoS 2 packet ids received
        and not yet released; ``assigned_client_id`` the id the server chose
        when the CONNECT had none and the client is told of it (MQTT 5).
        """
        connect = self.connect
        assert connect is not None
        limits = self.limits
        self.incoming_qos2 = incoming_qos2
        self.keep_alive = connect.keep_alive
        props = Properties()
        if self.version >= MQTT_5:
            props.assigned_client_identifier = assigned_client_id
            props.maximum_packet_size = limits.max_packet_size
            props.topic_alias_maximum = limits.topic_alias_maximum
            props.retain_available = 1
            props.wildcard_subscription_available = 1
            props.subscription_identifier_available = 1
            props.shared_subscription_available = 0
            props.receive_maximum = limits.max_inflight
            if (connect.properties.session_expiry_interval or 0) > limits.max_session_expiry:
                props.session_expiry_interval = limits.max_session_expiry
        self.phase = CONNECTED
        # the CONNECT (its password, its properties) is not needed past this point:
        # kept, it would be some 700 bytes per idle connection
        self.connect = None
        return encode(Connack(present, 0, props), self.version)

    def refuse(self, reason_code: int, message: str) -> Close:
        """The CONNECT is refused (authentication, a session that may not be
        taken over): the ``Close`` with its CONNACK."""
        self._end()
        return Close(
            "refused",
            encode(Connack(False, connack_code_for(self.version, reason_code)), self.version),
            reason_code,
            message,
            refused=True,
        )

    def close(self, reason_code: int = 0, reason: str | None = None) -> Close | None:
        """The server ends the connection (shut-down, takeover, a driver):
        DISCONNECT with the reason for MQTT 5. None if it has ended already."""
        if self.phase == CLOSED:
            return None
        data = b""
        if self.version >= MQTT_5 and self.phase == CONNECTED:
            props = Properties(reason_string=reason) if reason else Properties()
            data = encode(Disconnect(reason_code, props), self.version)
        self._end()
        return Close("server", data, reason_code, reason or "")

    def ack_publish(self, qos: int, packet_id: int | None, reason: int) -> bytes:
        """The acknowledgement of an incoming PUBLISH (nothing for QoS 0)."""
        if packet_id is None or qos == 0:
            return b""
        if self.version < MQTT_5:
            reason = 0  # 3.1.1 acknowledgements carry no reason
        if qos == 1:
            if reason == 0 and 0 < packet_id <= 0xFFFF:
                # the shortest form, as the codec encodes it for every version
                return bytes((0x40, 2, packet_id >> 8, packet_id & 0xFF))
            return encode(Puback(packet_id, reason), self.version)
        if reason < 0x80:
            self.incoming_qos2.add(packet_id)
        return encode(Pubrec(packet_id, reason), self.version)

    def release(self, packet_id: int, found: bool) -> bytes:
        """PUBREL answering a ``Received``; ``found``: the message was in flight."""
        if found:
            return encode(Pubrel(packet_id), self.version)
        return encode(Pubrel(packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND), self.version)

    def encode(self, packet: Packet) -> bytes:
        """Any other packet, for this connection's protocol version."""
        return encode(packet, self.version or 4)

    def suback(self, packet_id: int, reason_codes: list[int]) -> bytes:
        """SUBACK; refusals before MQTT 5 all read 0x80 (failure)."""
        if self.version < MQTT_5:
            reason_codes = [code if code < 0x80 else 0x80 for code in reason_codes]
        return encode(Suback(packet_id, reason_codes), self.version)

    def unsuback(self, packet_id: int, reason_codes: list[int]) -> bytes:
        """UNSUBACK; before MQTT 5 it carries no reason codes."""
        return encode(
            Unsuback(packet_id, reason_codes if self.version >= MQTT_5 else []), self.version
        )

    # -- time ----------------------------------------------------------------

    def deadline(self) -> float | None:
        """When ``timer_fired`` must be called next; None: no timer."""
        phase = self.phase
        if phase in (AWAIT_CONNECT, AUTHENTICATING):
            return self._connect_deadline
        if phase == CONNECTED and self.keep_alive > 0:
            return self.last_rx + self.keep_alive * KEEP_ALIVE_GRACE
        return None

    def timer_fired(self, now: float) -> Close | None:
        """The ``Close`` a timeout causes, or None (then ask ``deadline`` again)."""
        phase = self.phase
        if phase in (AWAIT_CONNECT, AUTHENTICATING):
            if now < self._connect_deadline:
                return None
            self._end()
            return Close(
                "connect_timeout",
                message=f"no CONNECT within {self.limits.connect_timeout:.0f}s",
                refused=True,
            )
        if phase != CONNECTED or self.keep_alive <= 0:
            return None
        idle = now - self.last_rx
        if idle < self.keep_alive * KEEP_ALIVE_GRACE:
            return None
        closing = self.close(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep alive timeout")
        assert closing is not None
        closing.kind = "keep_alive_timeout"
        closing.message = f"silent for {idle:.1f}s (keep alive {self.keep_alive}s)"
        return closing

    # -- the rules -------------------------------------------------------------

    def _end(self) -> None:
        self.phase = CLOSED
        self._packets = _NO_PACKETS
        self._next = 0
        self._error = None

    def _protocol_error(self, exc: MQTTError) -> Close:
        phase = self.phase
        data = b""
        if phase == AWAIT_CONNECT:
            if exc.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
                data = CONNACK_BAD_VERSION
        elif phase == CONNECTED and self.version >= MQTT_5:
            props = Properties(reason_string=exc.message) if exc.message else Properties()
            data = encode(Disconnect(exc.reason_code, props), self.version)
        self._end()
        return Close(
            "protocol_error",
            data,
            exc.reason_code,
            exc.message,
            refused=phase in (AWAIT_CONNECT, AUTHENTICATING),
        )

    def _connect(self, connect: Connect) -> Event:
        self.phase = AUTHENTICATING
        self.connect = connect
        level = self.version = connect.protocol_level
        client_id = connect.client_id
        report = False
        if not client_id:
            if level == MQTT_5:
                report = True
            elif not (connect.clean_start and level > MQTT_3_1):
                return self.refuse(
                    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id needs a clean session"
                )
        method = connect.properties.authentication_method
        if method is not None:
            # enhanced authentication (AUTH exchanges) is not offered
            return self.refuse(
                ReasonCode.BAD_AUTHENTICATION_METHOD,
                f"authentication method {method!r} is not supported",
            )
        maximum = self.limits.max_session_expiry
        if level >= MQTT_5:
            expiry = connect.properties.session_expiry_interval or 0
        else:
            expiry = 0 if connect.clean_start else maximum
        self.session_expiry = min(expiry, maximum)
        return ConnectRequest(connect, client_id, report, self.session_expiry)

    def _publish(self, packet: Publish) -> Event:
        if self.version >= MQTT_5:
            props = packet.given_properties
            if props is not None and props.topic_alias is not None:
                packet.topic = self._resolve_alias(packet.topic, props.topic_alias)
        if packet.qos == 2:
            pid = packet.packet_id
            assert pid is not None  # the decoder guarantees one for QoS > 0
            incoming = self.incoming_qos2
            if pid in incoming:
                # a re-sent QoS 2 message: acknowledged, not handled again
                return Send(encode(Pubrec(pid), self.version), publish=True)
            if len(incoming) >= self.limits.max_inflight:
                if self.version >= MQTT_5:
                    closing = self.close(
                        ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded"
                    )
                    assert closing is not None
                    return InflightLimit(self.limits.max_inflight, closing.data)
                return InflightLimit(self.limits.max_inflight, None)
        return packet

    def _resolve_alias(self, topic: str, alias: int) -> str:
        if alias == 0 or alias > self.limits.topic_alias_maximum:
            raise MQTTError(f"topic alias {alias} out of range", ReasonCode.TOPIC_ALIAS_INVALID)
        if topic:
            self.topic_aliases[alias] = topic
            return topic
        known = self.topic_aliases.get(alias)
        if known is None:
            raise MQTTError(f"unknown topic alias {alias}", ReasonCode.PROTOCOL_ERROR)
        return known

    def _packet(self, packet: Packet) -> Event:
        if isinstance(packet, (Puback, Pubcomp)):
            return Acknowledged(packet.packet_id)
        if isinstance(packet, Pubrec):
            if packet.reason_code >= 0x80:
                return Acknowledged(packet.packet_id)
            return Received(packet.packet_id)
        if isinstance(packet, Pubrel):
            pid = packet.packet_id
            if pid in self.incoming_qos2:
                self.incoming_qos2.discard(pid)
                return Send(encode(Pubcomp(pid), self.version))
            return Send(encode(Pubcomp(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND), self.version))
        if isinstance(packet, (Subscribe, Unsubscribe)):
            return packet
        if isinstance(packet, Pingreq):
            return Send(_PINGRESP)
        if isinstance(packet, Disconnect):
            return self._disconnect(packet)
        if isinstance(packet, Connect):
            raise MQTTError("second CONNECT on one connection", ReasonCode.PROTOCOL_ERROR)
        if isinstance(packet, Auth):
            raise MQTTError("AUTH without an authentication method", ReasonCode.PROTOCOL_ERROR)
        raise MQTTError(f"unexpected {type(packet).__name__}", ReasonCode.PROTOCOL_ERROR)

    def _disconnect(self, packet: Disconnect) -> Close:
        expiry: int | None = None
        if self.version >= MQTT_5:
            new_expiry = packet.properties.session_expiry_interval
            if new_expiry is not None:
                if self.session_expiry == 0 and new_expiry > 0:
                    raise MQTTError(
                        "session expiry set at DISCONNECT after 0 at CONNECT",
                        ReasonCode.PROTOCOL_ERROR,
                    )
                expiry = self.session_expiry = min(new_expiry, self.limits.max_session_expiry)
        self._end()
        return Close(
            "disconnect",
            reason_code=packet.reason_code,
            graceful=packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL,
            session_expiry=expiry,
        )
