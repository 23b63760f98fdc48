"""Per-client session state: subscriptions, in-flight and queued messages.

A session outlives its network connection when the client asked for it
(3.1.1 clean session 0, or a 5.0 session expiry interval); unacknowledged
QoS 1/2 messages are then sent again when the client resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from otahub.mqtt.handler_queue import Call, HandlerQueue
from otahub.mqtt.hooks import Identity
from otahub.mqtt.message import Message
from otahub.mqtt.packets import MQTT_5, Properties, Will
from otahub.mqtt.topics import topic_matches

if TYPE_CHECKING:
    from otahub.mqtt.connection import Connection
    from otahub.mqtt.server import MQTTServer

log = logging.getLogger("otahub.mqtt")

_MAX_PACKET_ID: Final = 65535


@dataclass(slots=True)
class SubscriptionOptions:
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    identifier: int | None = None


@dataclass(slots=True, init=False)
class Outgoing:
    """One message on its way to this session."""

    message: Message
    qos: int
    retain: bool
    sub_ids: list[int]
    # "publish": waiting for PUBACK/PUBREC; "pubrel": waiting for PUBCOMP
    state: str
    # its key in the server's store (otahub.mqtt.persistence); 0: not stored
    key: int

    # Written out, as Message's: one per delivery, natively built when compiled.
    def __init__(
        self, message: Message, qos: int, retain: bool, sub_ids: list[int] | None = None
    ) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.sub_ids = [] if sub_ids is None else sub_ids
        self.state = "publish"
        self.key = 0


class Session:
    """What the server keeps for one client id.

    Drivers get a session with every intercepted message, but see it only as
    an ``otahub.mqtt.hooks.Client``: ``client_id``, ``identity``, ``is_v5``
    and ``connected`` describe it, ``send`` delivers straight to it,
    ``disconnect`` ends its connection, ``is_subscribed`` and
    ``subscription_qos`` read its subscriptions and ``run_in_order`` runs
    driver code in line with its messages.
    """

    def __init__(
        self,
        server: MQTTServer,
        client_id: str,
        identity: Identity,
        protocol_level: int,
        expiry_interval: int,
    ) -> None:
        self.server = server
        self.client_id = client_id
        self.identity = identity
        self.protocol_level = protocol_level
        self.expiry_interval = expiry_interval
        self.subscriptions: dict[str, SubscriptionOptions] = {}
        self.inflight: dict[int, Outgoing] = {}
        # made when a message first has to wait (see _enqueue), dropped once drained:
        # an empty deque is some 600 bytes per idle connection
        self.queue: deque[Outgoing] | None = None
        self.incoming_qos2: set[int] = set()
        self.connection: Connection | None = None
        self.will: Will | None = None
        self.receive_maximum = _MAX_PACKET_ID
        self.max_packet_size: int | None = None
        self._next_pid = 1
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.will_timer: asyncio.TimerHandle | None = None
        self.dropped_messages = 0
        # the limits (otahub.mqtt.limits) this client has hit, each logged once
        self.limits_hit: set[str] | None = None
        # whether the server's store holds this session (it has a session expiry)
        self.persisted = False
        # driver code for this session's messages, run in their order
        self.handlers = HandlerQueue(server, self)

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r} {self.identity.name!r}>"

    @property
    def connected(self) -> bool:
        return self.connection is not None

    # -- the driver-facing API -------------------------------------------

    def send(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        """Deliver one message to this session, whether or not it subscribed."""
        if qos == 0 and properties is None:
            # nothing to queue, expire or keep for redelivery: straight to the wire
            conn = self.connection
            if conn is not None:
                conn.send_publish(topic, payload, 0, retain, False, None, None)
            return
        message = Message.from_publish(topic, payload, qos, retain, properties)
        self.deliver(Outgoing(message, qos, retain))

    def disconnect(self, reason_code: int = 0, reason: str | None = None) -> None:
        """End the session's network connection (DISCONNECT first for 5.0)."""
        if self.connection is not None:
            self.connection.close(reason_code, reason)

    def is_subscribed(self, topic: str) -> bool:
        """Whether one of its subscriptions matches ``topic``."""
        return self.subscription_qos(topic) is not None

    def subscription_qos(self, topic: str) -> int | None:
        """The highest QoS its subscriptions matching ``topic`` were granted; None
        when none matches."""
        granted: int | None = None
        for topic_filter, options in self.subscriptions.items():
            if topic_matches(topic_filter, topic) and (granted is None or options.qos > granted):
                granted = options.qos
        return granted

    def run_in_order(self, call: Call) -> None:
        """Run driver code for this session after what drivers still do with its
        earlier messages (and before what they do with later ones)."""
        self.handlers.run(call)

    async def handled(self) -> None:
        """Wait until driver code has done with everything queued for this session."""
        await self.handlers.idle()

    def warn_once(self, limit: str, message: str) -> None:
        """Log that this client hit ``limit``, the first time only: a client
        stuck against a limit must not flood the log."""
        hit = self.limits_hit
        if hit is None:
            hit = self.limits_hit = set()
        elif limit in hit:
            return
        hit.add(limit)
        log.warning(
            "client %r (%s) %s; refused (logged once per client)",
            self.client_id,
            self.identity.name,
            message,
        )

    # -- delivery ----------------------------------------------------------

    def deliver(self, out: Outgoing) -> None:
        conn = self.connection
        if conn is None:
            if out.qos > 0 and self.expiry_interval > 0:
                self._enqueue(out)
            return
        if out.qos == 0:
            conn.send_message(out, None, dup=False)
            return
        if self.queue or len(self.inflight) >= self.receive_maximum or conn.paused:
            self._enqueue(out)
            return
        self._send_inflight(conn, out)

    def _enqueue(self, out: Outgoing) -> None:
        # a QoS 0 message waiting behind others is not kept over a restart
        if self.persisted and out.qos and out.key == 0 and not self.server.store_message(self, out):
            self.dropped_messages += 1
            return
        queue = self.queued()
        limit = self.server.config.max_queued_messages
        if len(queue) >= limit:
            self._forget(queue.popleft())
            self.dropped_messages += 1
            if self.dropped_messages in (1, 10, 100) or self.dropped_messages % 1000 == 0:
                log.warning(
                    "session %r: queue full (%d), dropped %d oldest message(s) so far",
                    self.client_id,
                    limit,
                    self.dropped_messages,
                )
        queue.append(out)

    def queued(self) -> deque[Outgoing]:
        """The queue of messages waiting to be sent, made if there is none."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        return queue

    def _allocate_packet_id(self) -> int:
        pid = self._next_pid
        while pid in self.inflight:
            pid = pid % _MAX_PACKET_ID + 1
        self._next_pid = pid % _MAX_PACKET_ID + 1
        return pid

    def _send_inflight(self, conn: Connection, out: Outgoing) -> None:
        pid = self._allocate_packet_id()
        self.inflight[pid] = out
        if self.persisted:
            if out.key == 0:
                self.server.store_message(self, out, bounded=False)
            self.server.store.message_sent(self.client_id, out.key, pid, "publish")
        conn.send_message(out, pid, dup=False)

    def _forget(self, out: Outgoing) -> None:
        """``out`` is done with (acknowledged, dropped or expired): out of the store too."""
        if out.key:
            self.server.message_forgotten(self, out)

    def discard_inflight(self, pid: int) -> None:
        """An in-flight message that will not be sent after all."""
        out = self.inflight.pop(pid, None)
        if out is not None:
            self._forget(out)

    def drain(self) -> None:
        """Send queued messages while the client's receive window allows."""
        conn = self.connection
        if conn is None:
            return
        queue = self.queue
        if queue is None:
            return
        now = time.monotonic()
        while queue and len(self.inflight) < self.receive_maximum and not conn.paused:
            out = queue.popleft()
            if out.message.expired(now):
                self._forget(out)
                continue
            if out.qos == 0:
                conn.send_message(out, None, dup=False)
            else:
                self._send_inflight(conn, out)
        if not queue and self.queue is queue:
            self.queue = None

    def resend_inflight(self) -> None:
        """After a session is resumed: everything unacknowledged goes again."""
        conn = self.connection
        if conn is None:
            return
        for pid, out in list(self.inflight.items()):
            if out.state == "pubrel":
                conn.send_pubrel(pid)
            else:
                conn.send_message(out, pid, dup=True)

    def acknowledge(self, pid: int) -> bool:
        """PUBACK or PUBCOMP: the message is done."""
        out = self.inflight.pop(pid, None)
        if out is None:
            return False
        if out.key:
            self._forget(out)
        if self.queue:
            self.drain()
        return True

    def received(self, pid: int) -> bool:
        """PUBREC: the QoS 2 message moves to the release step."""
        out = self.inflight.get(pid)
        if out is None:
            return False
        out.state = "pubrel"
        if out.key:
            self.server.store.message_sent(self.client_id, out.key, pid, "pubrel")
        return True

    # -- lifecycle -----------------------------------------------------------

    def cancel_timers(self) -> None:
        for timer in (self.expiry_timer, self.will_timer):
            if timer is not None:
                timer.cancel()
        self.expiry_timer = None
        self.will_timer = None

    @property
    def is_v5(self) -> bool:
        return self.protocol_level >= MQTT_5
