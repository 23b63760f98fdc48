"""One client's network connection: bytes in, packets handled, bytes out."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from otahub.mqtt.codec import Decoder, encode, encode_publish_head
from otahub.mqtt.errors import MQTTError
from otahub.mqtt.hooks import NO_ACK, ConnectInfo, Identity, Refusal
from otahub.mqtt.message import Message
from otahub.mqtt.packets import (
    MQTT_3_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
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
    Unsuback,
    Unsubscribe,
)
from otahub.mqtt.reason_codes import ReasonCode, connack_code_for
from otahub.mqtt.session import Outgoing, Session, SubscriptionOptions
from otahub.mqtt.stats import EndpointStats
from otahub.mqtt.topics import is_shared_filter, is_valid_topic_filter

if TYPE_CHECKING:
    from otahub.mqtt.server import MQTTServer

log = logging.getLogger("otahub.mqtt")

# CONNACK for a protocol level we do not speak, in the 3.1.1 layout every
# MQTT version can read: return code 1 "unacceptable protocol version".
_CONNACK_BAD_VERSION: Final = b"\x20\x02\x00\x01"

# Payloads at least this large go to the transport as a separate buffer
# (one writev) instead of being copied behind their header. Below it, the
# copy is cheaper than the transport's bookkeeping for several buffers
# (measured with uvloop: join wins at 8 KiB, writev from about 16 KiB).
_GATHER_MIN: Final = 16 * 1024


def _reason_name(code: int) -> str:
    """A reason code as a metric label: ``not_authorized``, ``protocol_error``, ..."""
    try:
        return ReasonCode(code).name.lower()
    except ValueError:
        return f"0x{code:02x}"


def _ignore_verdict(verdict: int | None) -> None:
    """A QoS 0 PUBLISH is never acknowledged, whatever its handler decides."""


def _publish_head(
    topic: str, size: int, qos: int, retain: bool, dup: bool, pid: int | None, v5: bool
) -> bytes | None:
    """Everything before the payload of a PUBLISH without properties, from the
    codec's encoder; None where the codec refuses it."""
    try:
        return encode_publish_head(topic, size, qos, retain, dup, pid, None, MQTT_5 if v5 else 4)
    except ValueError:
        return None


class Connection(asyncio.Protocol):
    def __init__(self, server: MQTTServer, listener: str) -> None:
        self.server = server
        self.stats: EndpointStats = server.stats
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(None, max_packet_size=server.config.max_packet_size, role="server")
        self.version = 0
        self.peer = "?"
        self.session: Session | None = None
        self.connect: Connect | None = None
        self.state = "await-connect"  # authenticating, connected, closed
        self.backlog: list[Packet] = []
        self.paused = False
        self.reading_paused = False
        self.graceful = False  # a DISCONNECT (not "with will") was received
        self.last_rx = time.monotonic()
        self.keep_alive = 0
        self.topic_aliases: dict[int, str] = {}
        self.pre_connect_bytes = 0
        # output produced while a driver handles a claimed PUBLISH, held back so
        # that the PUBLISH's acknowledgement goes out first (as brokers do)
        self._held: list[bytes] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.server.config.connect_timeout, self._connect_timeout)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.stats.bytes_in += len(data)
        if self.state != "connected" and self._over_pre_connect_limit(len(data)):
            return
        error: MQTTError | None = None
        try:
            packets = self.decoder.feed(data)
        except MQTTError as exc:
            # what arrived intact before the bad packet is still handled
            packets, error = exc.packets, exc
        for packet in packets:
            if self.state == "connected":
                try:
                    session = self.session
                    # PUBLISH, nearly all of the traffic, skips the dispatch in handle()
                    if type(packet) is Publish and session is not None:
                        self._on_publish(session, packet)
                    else:
                        self.handle(packet)
                except MQTTError as exc:
                    self.protocol_error(exc)
                    return
            elif self.state == "await-connect":
                if not isinstance(packet, Connect):
                    self.protocol_error(
                        MQTTError("first packet is not CONNECT", ReasonCode.PROTOCOL_ERROR)
                    )
                    return
                self.state = "authenticating"
                self.connect = packet
                self.server.spawn(self._authenticate(packet))
            elif self.state == "authenticating":
                self.backlog.append(packet)
            else:
                return
        if error is not None:
            self.protocol_error(error)

    def _over_pre_connect_limit(self, size: int) -> bool:
        """Count bytes until the CONNECT is accepted; close the connection past the limit.

        Neither the decoder's partial packet nor the backlog may grow on what
        an unauthenticated peer sends. There is no CONNACK yet to refuse with.
        """
        if self.state == "closed":
            return True
        self.pre_connect_bytes += size
        limit = self.server.config.limits.max_pre_connect_bytes
        if self.pre_connect_bytes <= limit:
            return False
        self.stats.refuse("pre_connect_limit")
        log.warning(
            "%s (client id %r) sent more than %d bytes before its CONNECT was accepted; closing",
            self.peer,
            self.connect.client_id if self.connect else None,
            limit,
        )
        self.state = "closed"
        self.backlog.clear()
        if self.transport is not None:
            self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "closed"
        if self._timer is not None:
            self._timer.cancel()
        self.server.connections.discard(self)
        session = self.session
        self.session = None
        if session is not None:
            self.server.connection_ended(session, self, publish_will=not self.graceful)

    def pause_reading(self) -> None:
        """Read no more from the client (its driver code has a backlog)."""
        if self.transport is not None and self.state != "closed" and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.state != "closed" and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.session is not None:
            self.session.drain()

    # -- output --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            self.stats.bytes_out += len(data)
        elif self.transport is not None and self.state != "closed":
            self.transport.write(data)
            self.stats.bytes_out += len(data)

    def _take_held(self) -> list[bytes] | None:
        # A method, not inline: after `self._held = []` the type checker takes
        # the attribute for a list even when a handler's close() has reset it
        # to None, and compiled code checks what the checker believed.
        held, self._held = self._held, None
        return held

    def _release_held(self) -> None:
        held = self._take_held()
        if held and self.transport is not None:
            self.transport.writelines(held)

    def send(self, packet: Packet) -> None:
        self.write(encode(packet, self.version or 4))

    def send_message(self, out: Outgoing, pid: int | None, dup: bool) -> None:
        message = out.message
        props: Properties | None = None
        if self.version >= MQTT_5:
            if message.expires_at is not None or out.sub_ids:
                now = time.monotonic()
                if message.expired(now):
                    session = self.session
                    if pid is not None and session is not None:
                        session.discard_inflight(pid)
                    return
                props = message.outgoing_properties(out.sub_ids, now)
            else:
                props = message.properties
        self.send_publish(message.topic, message.payload, out.qos, out.retain, dup, pid, props)

    def send_publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        dup: bool,
        pid: int | None,
        props: Properties | None,
    ) -> None:
        """Encode and write one PUBLISH: the end of every delivery."""
        session = self.session
        transport = self.transport
        if (
            qos == 0
            and transport is not None
            and transport.get_write_buffer_size() > self.server.config.write_buffer_limit
        ):
            # a QoS 0 message may be lost; a stalled reader must not grow us without bound
            if session is not None:
                session.dropped_messages += 1
            return
        head = encode_publish_head(topic, len(payload), qos, retain, dup, pid, props, self.version)
        size = len(head) + len(payload)
        if session is not None and session.max_packet_size and size > session.max_packet_size:
            # MQTT 5: never send a packet larger than the client's Maximum Packet Size
            log.debug(
                "dropping %d-byte message for %r: over its maximum packet size",
                size,
                session.client_id,
            )
            if pid is not None:
                session.discard_inflight(pid)
            return
        if transport is None or self.state == "closed":
            return
        stats = self.stats
        stats.messages_out += 1
        stats.bytes_out += size
        if self._held is not None:
            if len(payload) >= _GATHER_MIN and type(payload) is bytes:
                self._held += (head, payload)  # released with one writev, as below
            else:
                self._held.append(head + payload)
        elif len(payload) >= _GATHER_MIN and type(payload) is bytes:
            # header and payload in one writev, without copying the payload;
            # only immutable bytes, as the transport may keep them queued
            transport.writelines((head, payload))
        else:
            transport.write(head + payload)

    def send_pubrel(self, pid: int) -> None:
        self.send(Pubrel(pid))

    def close(self, reason_code: int = 0, reason: str | None = None) -> None:
        """Server-side disconnect: DISCONNECT with a reason for 5.0, then close."""
        if self.state == "closed":
            return
        if self.version >= MQTT_5 and self.state == "connected":
            props = Properties(reason_string=reason) if reason else Properties()
            self.send(Disconnect(reason_code, props))
        self._release_held()  # what a driver sent before closing still goes out
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()

    def protocol_error(self, exc: MQTTError) -> None:
        client = self.connect.client_id if self.connect else None
        log.warning(
            "protocol error from %s (client id %r): %s [reason 0x%02X]; disconnecting",
            self.peer,
            client,
            exc.message,
            exc.reason_code,
        )
        if self.state == "await-connect" or self.state == "authenticating":
            self.stats.refuse(_reason_name(exc.reason_code))
        if self.state == "await-connect":
            if exc.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
                self.write(_CONNACK_BAD_VERSION)
            self.state = "closed"
            if self.transport is not None:
                self.transport.close()
            return
        self.close(exc.reason_code, exc.message)

    # -- timers --------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._timer = None
        if self.state in ("await-connect", "authenticating"):
            self.stats.refuse("connect_timeout")
            log.warning(
                "no CONNECT from %s within %.0fs; closing",
                self.peer,
                self.server.config.connect_timeout,
            )
            self.close()

    def _start_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.keep_alive > 0:
            self._timer = asyncio.get_running_loop().call_later(
                self.keep_alive * 1.5, self._check_keepalive
            )

    def _check_keepalive(self) -> None:
        limit = self.keep_alive * 1.5
        idle = time.monotonic() - self.last_rx
        if idle >= limit:
            self._timer = None
            client = self.session.client_id if self.session else "?"
            log.info(
                "client %r (%s) silent for %.1fs (keep alive %ds); disconnecting",
                client,
                self.peer,
                idle,
                self.keep_alive,
            )
            self.close(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep alive timeout")
            return
        self._timer = asyncio.get_running_loop().call_later(limit - idle, self._check_keepalive)

    # -- CONNECT -------------------------------------------------------------

    async def _authenticate(self, connect: Connect) -> None:
        self.connect = connect
        self.version = connect.protocol_level
        server = self.server
        client_id = connect.client_id
        assigned: str | None = None
        if not client_id:
            if connect.protocol_level == MQTT_5:
                assigned = client_id = server.new_client_id()
            elif connect.clean_start and connect.protocol_level > MQTT_3_1:
                client_id = server.new_client_id()
            else:
                self._refuse(
                    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id needs a clean session"
                )
                return
        if connect.properties.authentication_method is not None:
            self._refuse(
                ReasonCode.BAD_AUTHENTICATION_METHOD,
                f"authentication method {connect.properties.authentication_method!r} "
                "is not supported",
            )
            return
        info = ConnectInfo(
            client_id=client_id,
            username=connect.username,
            password=connect.password,
            protocol_level=connect.protocol_level,
            listener=self.listener,
            peer=self.peer,
            peer_cert=self._peer_cert(),
            peer_cert_der=self._peer_cert_der(),
            properties=connect.properties,
        )
        try:
            verdict = await server.authenticate(info)
        except Exception:
            log.exception("authenticator failed for client id %r from %s", client_id, self.peer)
            verdict = Refusal(ReasonCode.SERVER_UNAVAILABLE, "authentication failed")
        if self.state != "authenticating":
            return  # the client went away meanwhile
        if isinstance(verdict, Refusal):
            self._refuse(verdict.reason_code, verdict.message)
            return
        refusal = server.takeover_refusal(client_id, verdict)
        if refusal is not None:
            self._refuse(refusal.reason_code, refusal.message)
            return
        self._accept(connect, client_id, assigned, verdict)

    def _peer_cert(self) -> dict[str, Any] | None:
        if self.transport is None:
            return None
        cert = self.transport.get_extra_info("peercert")
        return cert if cert else None

    def _peer_cert_der(self) -> bytes | None:
        if self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return der if isinstance(der, bytes) and der else None

    def _refuse(self, reason: int, message: str) -> None:
        client = self.connect.client_id if self.connect else ""
        log.warning(
            "refused CONNECT from %s (client id %r, user %r): %s [reason 0x%02X]",
            self.peer,
            client,
            self.connect.username if self.connect else None,
            message,
            reason,
        )
        self.stats.refuse(_reason_name(reason))
        self.send(Connack(False, connack_code_for(self.version, reason)))
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()

    def _accept(
        self, connect: Connect, client_id: str, assigned: str | None, identity: Identity
    ) -> None:
        server = self.server
        config = server.config
        v5 = self.version >= MQTT_5
        if v5:
            expiry = connect.properties.session_expiry_interval or 0
        else:
            expiry = 0 if connect.clean_start else config.max_session_expiry
        expiry = min(expiry, config.max_session_expiry)
        session, present = server.attach(self, client_id, identity, connect, expiry)
        self.session = session
        self.keep_alive = connect.keep_alive
        props = Properties()
        if v5:
            props.assigned_client_identifier = assigned
            props.maximum_packet_size = config.max_packet_size
            props.topic_alias_maximum = config.topic_alias_maximum
            props.retain_available = 1
            props.wildcard_subscription_available = 1
            props.subscription_identifier_available = 1
            props.shared_subscription_available = 0
            props.receive_maximum = config.limits.max_inflight
            if (connect.properties.session_expiry_interval or 0) > config.max_session_expiry:
                props.session_expiry_interval = config.max_session_expiry
        self.send(Connack(present, 0, props))
        self.state = "connected"
        self._start_keepalive()
        server.session_connected(session)
        if present:
            session.resend_inflight()
            session.drain()
        backlog, self.backlog = self.backlog, []
        for packet in backlog:
            if self.state != "connected":
                break
            try:
                self.handle(packet)
            except MQTTError as exc:
                self.protocol_error(exc)
                break

    # -- packets after CONNECT ---------------------------------------------

    def handle(self, packet: Packet) -> None:
        session = self.session
        assert session is not None
        if isinstance(packet, Publish):
            self._on_publish(session, packet)
        elif isinstance(packet, Puback):
            session.acknowledge(packet.packet_id)
        elif isinstance(packet, Pubrec):
            if packet.reason_code >= 0x80:
                session.acknowledge(packet.packet_id)
            elif session.received(packet.packet_id):
                self.send(Pubrel(packet.packet_id))
            else:
                self.send(Pubrel(packet.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
        elif isinstance(packet, Pubcomp):
            session.acknowledge(packet.packet_id)
        elif isinstance(packet, Pubrel):
            if packet.packet_id in session.incoming_qos2:
                session.incoming_qos2.discard(packet.packet_id)
                self.send(Pubcomp(packet.packet_id))
            else:
                self.send(Pubcomp(packet.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
        elif isinstance(packet, Subscribe):
            self._on_subscribe(session, packet)
        elif isinstance(packet, Unsubscribe):
            self._on_unsubscribe(session, packet)
        elif isinstance(packet, Pingreq):
            self.send(Pingresp())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(session, packet)
        elif isinstance(packet, Connect):
            raise MQTTError("second CONNECT on one connection", ReasonCode.PROTOCOL_ERROR)
        elif isinstance(packet, Auth):
            raise MQTTError("AUTH without an authentication method", ReasonCode.PROTOCOL_ERROR)
        else:
            raise MQTTError(f"unexpected {type(packet).__name__}", ReasonCode.PROTOCOL_ERROR)

    def _resolve_alias(self, packet: Publish) -> str:
        props = packet.given_properties
        alias = None if props is None else props.topic_alias
        if alias is None:
            return packet.topic
        if alias == 0 or alias > self.server.config.topic_alias_maximum:
            raise MQTTError(f"topic alias {alias} out of range", ReasonCode.TOPIC_ALIAS_INVALID)
        if packet.topic:
            self.topic_aliases[alias] = packet.topic
            return packet.topic
        topic = self.topic_aliases.get(alias)
        if topic is None:
            raise MQTTError(f"unknown topic alias {alias}", ReasonCode.PROTOCOL_ERROR)
        return topic

    def _on_publish(self, session: Session, packet: Publish) -> None:
        self.stats.messages_in += 1
        topic = self._resolve_alias(packet) if self.version >= MQTT_5 else packet.topic
        qos = packet.qos
        pid = packet.packet_id
        if qos == 2:
            if pid in session.incoming_qos2:
                self.send(Pubrec(pid))  # a re-sent QoS 2 message: acknowledged, not routed again
                return
            if len(session.incoming_qos2) >= self.server.config.limits.max_inflight:
                self._over_inflight(session)
                return
        acl = session.identity.acl
        if acl is not None and not acl.can_publish(topic):
            log.warning(
                "client %r (%s) may not publish to %r; dropped",
                session.client_id,
                session.identity.name,
                topic,
            )
            self._ack_publish(qos, pid, ReasonCode.NOT_AUTHORIZED)
            return
        server = self.server
        handler = server.interceptor_for(topic)
        if handler is not None:
            if topic != packet.topic:
                packet.topic = topic
            if not qos:
                # No acknowledgement, so no verdict to wait for and no replies to
                # hold back behind one: they go out as the handler sends them.
                server.run_interceptor(handler, session, packet, _ignore_verdict)
                return

            verdicts: list[int | None] = []
            handling = True

            def acknowledge(verdict: int | None) -> None:
                if handling:
                    verdicts.append(verdict)  # a plain handler: acknowledged below
                elif qos and verdict != NO_ACK and self.state == "connected":
                    self._ack_publish(qos, pid, verdict or 0)

            self._held = []
            try:
                server.run_interceptor(handler, session, packet, acknowledge)
            finally:
                handling = False
                held = self._take_held()
            if verdicts and qos and verdicts[0] != NO_ACK and self.state == "connected":
                self._ack_publish(qos, pid, verdicts[0] or 0)
            if held and self.transport is not None and self.state != "closed":
                self.transport.writelines(held)
            return
        message = Message.from_publish(
            topic,
            packet.payload,
            qos,
            packet.retain,
            packet.given_properties if self.version >= MQTT_5 else None,
        )
        if packet.retain:
            refusal = server.retained_refusal(message, session.client_id)
            if refusal is not None:
                # not routed either: MQTT 5 says the message was not accepted
                session.warn_once("retained", refusal)
                self._ack_publish(qos, pid, ReasonCode.QUOTA_EXCEEDED)
                return
        matched = server.route(message, sender=session)
        reason = 0
        if self.version >= MQTT_5 and not matched:
            reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
        if qos:
            self._ack_publish(qos, pid, reason)

    def _over_inflight(self, session: Session) -> None:
        """A QoS 2 PUBLISH past the in-flight limit (our Receive Maximum).

        MQTT 5 names this a protocol violation (DISCONNECT 0x93); 3.1.1 has no
        such limit, so the PUBLISH is dropped unacknowledged and the client
        sends it again once its earlier ones are released.
        """
        limit = self.server.config.limits.max_inflight
        session.warn_once(
            "inflight", f"has {limit} QoS 2 messages in flight, the most it may (Receive Maximum)"
        )
        if self.version >= MQTT_5:
            self.close(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded")

    def _ack_publish(self, qos: int, pid: int | None, reason: int) -> None:
        if pid is None or qos == 0:
            return
        if self.version < MQTT_5:
            reason = 0  # 3.1.1 acknowledgements carry no reason
        if qos == 1:
            if reason == 0 and 0 < pid <= 0xFFFF:
                # the shortest form, as the codec encodes it for every version
                self.write(bytes((0x40, 2, pid >> 8, pid & 0xFF)))
            else:
                self.send(Puback(pid, reason))
        else:
            if reason < 0x80:
                assert self.session is not None
                self.session.incoming_qos2.add(pid)
            self.send(Pubrec(pid, reason))

    def _on_subscribe(self, session: Session, packet: Subscribe) -> None:
        v5 = self.version >= MQTT_5
        failure = 0x80
        sub_id = (
            packet.properties.subscription_identifiers[0]
            if packet.properties.subscription_identifiers
            else None
        )
        codes: list[int] = []
        retained: list[tuple[str, SubscriptionOptions, bool]] = []
        acl = session.identity.acl
        max_subscriptions = self.server.config.limits.max_subscriptions
        for sub in packet.subscriptions:
            topic_filter = sub.topic_filter
            if not is_valid_topic_filter(topic_filter):
                log.warning("client %r: invalid topic filter %r", session.client_id, topic_filter)
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else failure)
                continue
            if is_shared_filter(topic_filter):
                codes.append(ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED if v5 else failure)
                continue
            verdict = 1 if acl is None else int(acl.can_subscribe(topic_filter))
            if not 0 < verdict < 0x80:
                log.warning(
                    "client %r (%s) may not subscribe to %r",
                    session.client_id,
                    session.identity.name,
                    topic_filter,
                )
                refusal = verdict or ReasonCode.NOT_AUTHORIZED
                codes.append(refusal if v5 else failure)
                continue
            if (
                len(session.subscriptions) >= max_subscriptions
                and topic_filter not in session.subscriptions
            ):
                session.warn_once(
                    "subscriptions",
                    f"holds {max_subscriptions} subscriptions, the most one client may",
                )
                codes.append(ReasonCode.QUOTA_EXCEEDED if v5 else failure)
                continue
            options = SubscriptionOptions(
                qos=min(sub.qos, 2),
                no_local=sub.no_local if v5 else False,
                retain_as_published=sub.retain_as_published if v5 else False,
                retain_handling=sub.retain_handling if v5 else 0,
                identifier=sub_id,
            )
            existed = self.server.subscribe_session(session, topic_filter, options)
            codes.append(options.qos)
            if options.retain_handling == 0 or (options.retain_handling == 1 and not existed):
                retained.append((topic_filter, options, existed))
        self.send(Suback(packet.packet_id, codes))
        for topic_filter, options, _ in retained:
            self.server.send_retained(session, topic_filter, options)
        for i, sub in enumerate(packet.subscriptions):
            if codes[i] < 0x80:
                self.server.session_subscribed(session, sub.topic_filter)

    def _on_unsubscribe(self, session: Session, packet: Unsubscribe) -> None:
        codes = []
        for topic_filter in packet.topic_filters:
            removed = self.server.unsubscribe_session(session, topic_filter)
            codes.append(0 if removed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self.send(Unsuback(packet.packet_id, codes if self.version >= MQTT_5 else []))

    def _on_disconnect(self, session: Session, packet: Disconnect) -> None:
        if self.version >= MQTT_5:
            new_expiry = packet.properties.session_expiry_interval
            if new_expiry is not None:
                if session.expiry_interval == 0 and new_expiry > 0:
                    raise MQTTError(
                        "session expiry set at DISCONNECT after 0 at CONNECT",
                        ReasonCode.PROTOCOL_ERROR,
                    )
                session.expiry_interval = min(new_expiry, self.server.config.max_session_expiry)
        self.graceful = packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()
