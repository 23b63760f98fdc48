"""One client's network connection, driven by asyncio.

The MQTT rules of the connection (CONNECT, QoS handshakes, keep alive, ...)
are ``otahub.mqtt.protocol.ServerProtocol``, which does no I/O. This
adapter feeds it what the socket delivers, acts on its events with the
server (authentication, sessions, routing, drivers), runs its timers and
writes the bytes it produces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from otahub.mqtt.codec import encode_publish_head
from otahub.mqtt.hooks import NO_ACK, ConnectInfo, Refusal
from otahub.mqtt.message import Message
from otahub.mqtt.packets import (
    MQTT_5,
    Packet,
    Properties,
    Publish,
    Pubrel,
    Subscribe,
    Unsubscribe,
)
from otahub.mqtt.protocol import (
    AUTHENTICATING,
    CLOSED,
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
from otahub.mqtt.session import Outgoing, Session, SubscriptionOptions
from otahub.mqtt.stats import EndpointStats
from otahub.mqtt.topics import is_shared_filter, is_valid_topic_filter

if TYPE_CHECKING:
    from otahub.mqtt.server import MQTTServer

log = logging.getLogger("otahub.mqtt")

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


def _gate_verdict(done: asyncio.Future[Any], reason: int) -> int:
    """The acknowledgement's verdict from its gates: none if one was not handled
    (cancelled), an error if one failed, else ``reason``."""
    if done.cancelled():
        return NO_ACK
    result = done.result()
    verdicts = result if isinstance(result, list) else [result]
    if any(isinstance(v, BaseException) or v == NO_ACK for v in verdicts):
        return NO_ACK
    failed = [v for v in verdicts if v]
    return failed[0] if failed else reason


def _ignore_verdict(verdict: int | None) -> None:
    """A QoS 0 PUBLISH is never acknowledged, whatever its handler decides."""


class _LateAck:
    """The acknowledgement of a QoS 1/2 PUBLISH whose handler decides later.

    MQTT sends acknowledgements in the order the PUBLISHes came: until this
    one's verdict arrives, those of the client's later PUBLISHes wait behind it.
    """

    __slots__ = ("pid", "qos", "ready", "verdict")

    def __init__(self, qos: int, pid: int | None) -> None:
        self.qos = qos
        self.pid = pid
        self.ready = False
        self.verdict = 0


def _publish_head(
    topic: str, size: int, qos: int, retain: bool, dup: bool, pid: int | None, v5: bool
) -> bytes | None:
    """Everything before the payload of a PUBLISH without properties, from the
    codec's encoder; None where the codec refuses it."""
    try:
        return encode_publish_head(topic, size, qos, retain, dup, pid, None, MQTT_5 if v5 else 4)
    except ValueError:
        return None


def protocol_limits(server: MQTTServer) -> ProtocolLimits:
    config = server.config
    return ProtocolLimits(
        max_packet_size=config.max_packet_size,
        max_pre_connect_bytes=config.limits.max_pre_connect_bytes,
        max_inflight=config.limits.max_inflight,
        topic_alias_maximum=config.topic_alias_maximum,
        max_session_expiry=config.max_session_expiry,
        connect_timeout=config.connect_timeout,
    )


class Connection(asyncio.Protocol):
    def __init__(self, server: MQTTServer, listener: str) -> None:
        self.server = server
        self.stats: EndpointStats = server.stats
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.proto = ServerProtocol(protocol_limits(server), time.monotonic())
        self.peer = "?"
        self.version = 0  # the client's protocol level, from its CONNECT on
        self.session: Session | None = None
        self.paused = False
        self.reading_paused = False
        self.graceful = False  # a DISCONNECT (not "with will") was received
        # output produced while a driver handles a claimed PUBLISH, held back so
        # that the PUBLISH's acknowledgement goes out first (as brokers do)
        self._held: list[bytes] | None = None
        # acknowledgements waiting for a handler's late verdict, oldest first;
        # every later one queues behind them (see _LateAck). Made when first
        # needed: most connections never have one, and an empty deque is 600 bytes
        self._late: deque[_LateAck] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def state(self) -> str:
        """``await-connect``, ``authenticating``, ``connected`` or ``closed``."""
        return self.proto.phase_name

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.server.connections.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        proto = self.proto
        proto.receive_data(data, time.monotonic())
        # _handle_events, inlined: this runs for every read
        session = self.session
        while True:
            event = proto.next_event()
            if event is None:
                return
            if type(event) is Publish and session is not None:
                self._on_publish(session, event)
            else:
                self._on_event(event)
                session = self.session

    def connection_lost(self, exc: Exception | None) -> None:
        self.proto.close()
        self._late = None  # unacknowledged: the client sends them again
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server.connections.discard(self)
        session = self.session
        self.session = None
        if session is not None:
            self.server.connection_ended(session, self, publish_will=not self.graceful)

    def pause_reading(self) -> None:
        """Read no more from the client (its driver code has a backlog)."""
        if self.transport is not None and self.proto.phase != CLOSED and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.proto.phase != CLOSED and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.session is not None:
            self.session.drain()

    # -- the machine's events ------------------------------------------------

    def _handle_events(self, proto: ServerProtocol) -> None:
        session = self.session
        while True:
            event = proto.next_event()
            if event is None:
                return
            # PUBLISH, nearly all of the traffic, skips the dispatch below
            if type(event) is Publish and session is not None:
                self._on_publish(session, event)
            else:
                self._on_event(event)
                session = self.session

    def _on_event(self, event: Event) -> None:
        session = self.session
        if isinstance(event, Send):
            if event.publish:
                self.stats.messages_in += 1
            self.write(event.data)
        elif isinstance(event, Acknowledged):
            if session is not None:
                session.acknowledge(event.packet_id)
        elif isinstance(event, Received):
            if session is not None:
                found = session.received(event.packet_id)
                self.write(self.proto.release(event.packet_id, found))
        elif isinstance(event, Subscribe):
            if session is not None:
                self._on_subscribe(session, event)
        elif isinstance(event, Unsubscribe):
            if session is not None:
                self._on_unsubscribe(session, event)
        elif isinstance(event, ConnectRequest):
            self.version = event.connect.protocol_level
            self.server.spawn(self._authenticate(event))
        elif isinstance(event, InflightLimit):
            self.stats.messages_in += 1
            if session is not None:
                session.warn_once(
                    "inflight",
                    f"has {event.limit} QoS 2 messages in flight, the most it may"
                    " (Receive Maximum)",
                )
            if event.data is not None:
                self._shut(event.data)
        elif isinstance(event, Close):
            self._on_close(event)
        elif session is not None:  # a Publish before the session is set: cannot be
            self._on_publish(session, event)

    def _on_close(self, event: Close) -> None:
        kind = event.kind
        connect = self.proto.connect
        if connect is not None:
            client: str | None = connect.client_id
        else:  # past the CONNACK, the session knows it
            client = None if self.session is None else self.session.client_id
        if kind == "disconnect":
            session = self.session
            if session is not None and event.session_expiry is not None:
                session.expiry_interval = event.session_expiry
            self.graceful = event.graceful
        elif kind == "protocol_error":
            log.warning(
                "protocol error from %s (client id %r): %s [reason 0x%02X]; disconnecting",
                self.peer,
                client,
                event.message,
                event.reason_code,
            )
            if event.refused:
                self.stats.refuse(_reason_name(event.reason_code))
        elif kind == "refused":
            log.warning(
                "refused CONNECT from %s (client id %r, user %r): %s [reason 0x%02X]",
                self.peer,
                client or "",
                connect.username if connect is not None else None,
                event.message,
                event.reason_code,
            )
            self.stats.refuse(_reason_name(event.reason_code))
        elif kind == "pre_connect_limit":
            self.stats.refuse("pre_connect_limit")
            log.warning("%s (client id %r) %s; closing", self.peer, client, event.message)
        elif kind == "connect_timeout":
            self.stats.refuse("connect_timeout")
            log.warning(
                "no CONNECT from %s within %.0fs; closing",
                self.peer,
                self.proto.limits.connect_timeout,
            )
        elif kind == "keep_alive_timeout":
            log.info(
                "client %r (%s) %s; disconnecting",
                self.session.client_id if self.session else "?",
                self.peer,
                event.message,
            )
        self._shut(event.data)

    def _shut(self, data: bytes) -> None:
        """Write ``data`` (after what a driver sent first), then close the transport."""
        if data:
            self.write(data, force=True)
        self._release_held()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    # -- output --------------------------------------------------------------

    def write(self, data: bytes, force: bool = False) -> None:
        if self._held is not None:
            self._held.append(data)
            self.stats.bytes_out += len(data)
        elif self.transport is not None and (force or self.proto.phase != CLOSED):
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
        self.write(self.proto.encode(packet))

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
        if transport is None or self.proto.phase == CLOSED:
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
        closing = self.proto.close(reason_code, reason)
        if closing is not None:
            self._shut(closing.data)  # what a driver sent before closing still goes out

    # -- timers --------------------------------------------------------------

    def _arm_timer(self) -> None:
        """One timer for the machine's next deadline (CONNECT, keep alive)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.proto.deadline()
        if deadline is not None:
            delay = max(deadline - time.monotonic(), 0.0)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        closing = self.proto.timer_fired(time.monotonic())
        if closing is not None:
            self._on_close(closing)
        else:
            self._arm_timer()

    # -- CONNECT -------------------------------------------------------------

    async def _authenticate(self, request: ConnectRequest) -> None:
        server = self.server
        connect = request.connect
        client_id = request.client_id or server.new_client_id()
        assigned = client_id if request.report_assigned else None
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
        if self.proto.phase != AUTHENTICATING:
            return  # the client went away meanwhile
        if isinstance(verdict, Refusal):
            self._on_close(self.proto.refuse(verdict.reason_code, verdict.message))
            return
        refusal = server.takeover_refusal(client_id, verdict)
        if refusal is not None:
            self._on_close(self.proto.refuse(refusal.reason_code, refusal.message))
            return
        session, present = server.attach(self, client_id, verdict, connect, request.session_expiry)
        self.session = session
        self.write(self.proto.accept(present, session.incoming_qos2, assigned))
        self._arm_timer()
        server.session_connected(session)
        if present:
            session.resend_inflight()
            session.drain()
        # what the client sent while it was authenticated
        self._handle_events(self.proto)

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

    def _on_publish(self, session: Session, packet: Publish) -> None:
        self.stats.messages_in += 1
        topic = packet.topic  # an alias already resolved by the rules
        qos = packet.qos
        pid = packet.packet_id
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
            if not qos:
                # No acknowledgement, so no verdict to wait for and no replies to
                # hold back behind one: they go out as the handler sends them.
                server.run_interceptor(handler, session, packet, _ignore_verdict)
                return

            verdicts: list[int | None] = []
            handling = True
            late: _LateAck | None = None

            def acknowledge(verdict: int | None) -> None:
                if handling:
                    verdicts.append(verdict)  # a plain handler: acknowledged below
                elif late is not None:
                    self._settle_late(late, verdict)

            self._held = []
            try:
                server.run_interceptor(handler, session, packet, acknowledge)
            finally:
                handling = False
                held = self._take_held()
            if not verdicts:
                # a coroutine, or a verdict the driver gives later (see mqtt.hooks)
                late = _LateAck(qos, pid)
                if self._late is None:
                    self._late = deque()
                self._late.append(late)
            elif verdicts[0] != NO_ACK and self.proto.phase == CONNECTED:
                self._ack_publish(qos, pid, verdicts[0] or 0)
            if held and self.transport is not None and self.proto.phase != CLOSED:
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
        # in-process subscriptions that acknowledge: the ack waits for them
        gates: list[asyncio.Future[int | None]] | None = (
            [] if qos and server.acknowledging_subscriptions else None
        )
        matched = server.route(message, sender=session, gates=gates)
        reason = 0
        if self.version >= MQTT_5 and not matched:
            reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
        if gates:
            self._ack_after(gates, qos, pid, reason)
        elif qos:
            self._ack_publish(qos, pid, reason)

    def _ack_after(
        self, gates: list[asyncio.Future[int | None]], qos: int, pid: int | None, reason: int
    ) -> None:
        """Acknowledge once every gate has its verdict, in order with the others."""
        late = _LateAck(qos, pid)
        if self._late is None:
            self._late = deque()
        self._late.append(late)
        waiting: asyncio.Future[Any] = (
            gates[0] if len(gates) == 1 else asyncio.gather(*gates, return_exceptions=True)
        )
        waiting.add_done_callback(lambda done: self._settle_late(late, _gate_verdict(done, reason)))

    def _ack_publish(self, qos: int, pid: int | None, reason: int) -> None:
        late = self._late
        if late:
            ack = _LateAck(qos, pid)
            ack.ready = True
            ack.verdict = reason
            late.append(ack)
            return
        self._send_ack(qos, pid, reason)

    def _send_ack(self, qos: int, pid: int | None, reason: int) -> None:
        data = self.proto.ack_publish(qos, pid, reason)
        if data:
            self.write(data)

    def _settle_late(self, late: _LateAck, verdict: int | None) -> None:
        """A late verdict came: send every acknowledgement now due, in order."""
        late.ready = True
        late.verdict = NO_ACK if verdict == NO_ACK else verdict or 0
        queue = self._late
        if queue is None:
            return
        while queue and queue[0].ready:
            ack = queue.popleft()
            if ack.verdict != NO_ACK and self.proto.phase == CONNECTED:
                self._send_ack(ack.qos, ack.pid, ack.verdict)

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
        self.write(self.proto.suback(packet.packet_id, codes))
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
        self.write(self.proto.unsuback(packet.packet_id, codes))
