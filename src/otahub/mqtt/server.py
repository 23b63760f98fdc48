"""The hub's MQTT 3.1.1 + 5.0 endpoint.

A plain broker (sessions, QoS 0/1/2, retained messages, wildcard routing)
with the hooks dialect drivers need: authenticators, per-session ACLs,
interception of topic patterns and direct delivery to one session.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, cast

from otahub.mqtt.anonymous import LOOPBACK, IPNetwork, parse_networks, peer_in
from otahub.mqtt.connection import Connection
from otahub.mqtt.handler_queue import HandlerQueue
from otahub.mqtt.hooks import (
    NO_ACK,
    AnonymousPolicy,
    Authenticator,
    CertificateCheck,
    ConnectInfo,
    Identity,
    InterceptHandler,
    MessageCallback,
    Refusal,
    SessionObserver,
    SubscriptionObserver,
)
from otahub.mqtt.limits import HUB_OWNER, Limits, RetainedQuota
from otahub.mqtt.message import Message
from otahub.mqtt.packets import MQTT_5, Connect, Properties, Publish
from otahub.mqtt.persistence import (
    BrokerStore,
    MemoryStore,
    StoredMessage,
    StoredSession,
    StoredState,
    StoredSubscription,
)
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.session import Outgoing, Session, SubscriptionOptions
from otahub.mqtt.stats import EndpointStats
from otahub.mqtt.topics import FilterTree, TopicStore, is_valid_topic_filter, is_valid_topic_name

log = logging.getLogger("otahub.mqtt")

# Topic lookups are cached per concrete topic; past this many topics a cache
# starts over, so a stream of ever-new topic names cannot grow it without bound.
_CACHE_LIMIT: Final = 4096


@dataclass(slots=True)
class ServerConfig:
    max_packet_size: int = 1024 * 1024
    connect_timeout: float = 10.0
    # upper bound for any session expiry; also what a 3.1.1 persistent session gets
    max_session_expiry: int = 7 * 24 * 3600
    max_queued_messages: int = 1000
    topic_alias_maximum: int = 16
    # a QoS 0 message is dropped rather than buffered past this many bytes
    write_buffer_limit: int = 8 * 1024 * 1024
    # clients no authenticator accepts are let in from these networks (CIDRs)...
    anonymous_from: tuple[str, ...] = LOOPBACK
    # ...or from anywhere when this is set
    allow_anonymous: bool = False
    limits: Limits = field(default_factory=Limits)


def _stored_subscription(options: SubscriptionOptions) -> StoredSubscription:
    return StoredSubscription(
        options.qos,
        options.no_local,
        options.retain_as_published,
        options.retain_handling,
        options.identifier,
    )


def _describe(identity: Identity) -> str:
    if identity.anonymous:
        return "an anonymous client"
    return f"{identity.dialect or 'device'} {identity.name!r}"


class _InternalSubscriber:
    """An in-process subscriber (a driver on the hub's own endpoint)."""

    __slots__ = ("acknowledges", "callback", "topic_filter")

    def __init__(self, topic_filter: str, callback: MessageCallback, acknowledges: bool) -> None:
        self.topic_filter = topic_filter
        self.callback = callback
        # the sender's QoS 1/2 acknowledgement waits until the callback is done
        self.acknowledges = acknowledges


class MQTTServer:
    def __init__(
        self, config: ServerConfig | None = None, store: BrokerStore | None = None
    ) -> None:
        self.config = config or ServerConfig()
        # retained messages, persistent sessions and their messages outlive the
        # process through this (see recover()); the default keeps them in memory
        self.store: BrokerStore = MemoryStore() if store is None else store
        self._next_key = 1  # the store's key of the next stored message
        self.stored_messages = 0  # messages the store holds for sessions
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.stats = EndpointStats()
        self.retained: TopicStore[Message] = TopicStore()
        self.retained_quota = RetainedQuota(self.config.limits)
        self._subscriptions: FilterTree[SubscriptionOptions] = FilterTree()
        self._internal: FilterTree[_InternalSubscriber] = FilterTree()
        # how many of them hold back the sender's acknowledgement (see subscribe)
        self.acknowledging_subscriptions = 0
        self._intercepts: FilterTree[InterceptHandler] = FilterTree()
        # Walking a tree per PUBLISH is the costliest part of handling one, and the
        # same topics come again and again: both answers are cached per topic and
        # dropped whenever the tree they come from changes.
        self._intercept_cache: dict[str, InterceptHandler | None] = {}
        self._route_cache: dict[str, list[tuple[object, SubscriptionOptions]]] = {}
        self._authenticators: list[tuple[Authenticator, frozenset[str] | None]] = []
        self._anonymous_policy: AnonymousPolicy | None = None
        self._certificate_check: CertificateCheck | None = None
        # ``config.anonymous_from`` parsed, redone only when the setting changes
        self._anonymous_cidrs: tuple[str, ...] = self.config.anonymous_from
        self._anonymous_networks = parse_networks(self._anonymous_cidrs)
        self._on_connected: list[SessionObserver] = []
        self._on_disconnected: list[SessionObserver] = []
        self._on_subscribed: list[SubscriptionObserver] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # in-process subscribers get the hub's own messages in order, too
        self._own_handlers = HandlerQueue(self, None)

    # -- listening -------------------------------------------------------------

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        name: str | None = None,
    ) -> int:
        """Start a listener; returns the bound port (useful with port 0)."""
        listener = name or ("mqtts" if ssl is not None else "mqtt")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Connection(self, listener), host, port, ssl=ssl, reuse_address=True
        )
        self._servers.append(server)
        # typeshed says a tuple, uvloop returns a list: read it untyped, or the
        # compiled module would check for a tuple
        bound: int = cast(Any, server).sockets[0].getsockname()[1]
        log.info("MQTT%s listening on %s:%d", " over TLS" if ssl else "", host, bound)
        return bound

    def listening(self) -> bool:
        """Whether every listener started is still accepting connections."""
        return bool(self._servers) and all(server.is_serving() for server in self._servers)

    async def close(self, drain_timeout: float = 0.0) -> list[asyncio.Task[Any]]:
        """Stop listening and end every connection, then let the hook tasks finish.

        Ending the connections runs the disconnect hooks; they (and every other
        hook task) get up to ``drain_timeout`` seconds. Those still running then
        are cancelled and returned, for the caller to wait on and report.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close(ReasonCode.SERVER_SHUTTING_DOWN, "server shutting down")
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        # A closed connection's hooks run when its transport reports the loss.
        while self.connections:
            if loop.time() >= deadline:
                break  # still flushing to a slow reader: its hooks run when it goes
            await asyncio.sleep(0.01)
        for session in self.sessions.values():
            session.cancel_timers()
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=left)
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        self.store.close()
        return pending

    # -- hooks -------------------------------------------------------------------

    def add_authenticator(
        self, authenticator: Authenticator, listeners: set[str] | None = None
    ) -> None:
        """Consulted in order; the first that does not pass (None) decides."""
        self._authenticators.append(
            (authenticator, frozenset(listeners) if listeners is not None else None)
        )

    def set_anonymous_policy(self, policy: AnonymousPolicy | None) -> None:
        """What anonymous clients may do: the ACL ``policy`` gives each of them."""
        self._anonymous_policy = policy

    def intercept(self, pattern: str, handler: InterceptHandler) -> Callable[[], None]:
        """Claim a topic pattern; returns a function that releases the claim."""
        if not is_valid_topic_filter(pattern):
            raise ValueError(f"invalid topic pattern {pattern!r}")
        self._intercepts.add(pattern, handler, handler)
        self._intercept_cache.clear()

        def release() -> None:
            self._intercepts.remove(pattern, handler)
            self._intercept_cache.clear()

        return release

    def interceptor_for(self, topic: str) -> InterceptHandler | None:
        cache = self._intercept_cache
        try:
            return cache[topic]
        except KeyError:
            pass
        found: InterceptHandler | None = None
        if len(self._intercepts):
            for _, handler in self._intercepts.match(topic):
                found = handler
                break
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[topic] = found
        return found

    def on_session_connected(self, observer: SessionObserver) -> None:
        self._on_connected.append(observer)

    def on_session_disconnected(self, observer: SessionObserver) -> None:
        self._on_disconnected.append(observer)

    def on_subscribed(self, observer: SubscriptionObserver) -> Callable[[], None]:
        """Be told of every accepted subscription; returns a function that stops it."""
        self._on_subscribed.append(observer)

        def stop() -> None:
            if observer in self._on_subscribed:
                self._on_subscribed.remove(observer)

        return stop

    def set_certificate_check(self, check: CertificateCheck | None) -> None:
        """Who a client with a TLS client certificate is: ``check`` has the last word."""
        self._certificate_check = check

    async def authenticate(self, info: ConnectInfo) -> Identity | Refusal:
        verdict: Identity | Refusal | None = None
        for authenticator, listeners in self._authenticators:
            if listeners is not None and info.listener not in listeners:
                continue
            verdict = await authenticator(info)
            if verdict is not None:
                break
        check = self._certificate_check
        if check is not None and info.peer_cert_der is not None:
            verdict = await check(info, verdict)
        if verdict is not None:
            return verdict
        return self._anonymous(info)

    def _anonymous(self, info: ConnectInfo) -> Identity | Refusal:
        trusted = peer_in(info.peer, self._anonymous_from())
        if not trusted and not self.config.allow_anonymous:
            return Refusal(
                ReasonCode.NOT_AUTHORIZED,
                "anonymous access is allowed only from "
                + (", ".join(self.config.anonymous_from) or "nowhere"),
            )
        policy = self._anonymous_policy
        acl = None if policy is None else policy(info, trusted)
        return Identity(name=info.client_id, acl=acl, anonymous=True)

    def _anonymous_from(self) -> tuple[IPNetwork, ...]:
        cidrs = self.config.anonymous_from
        if cidrs != self._anonymous_cidrs:
            self._anonymous_networks = parse_networks(cidrs)
            self._anonymous_cidrs = cidrs
        return self._anonymous_networks

    def takeover_refusal(self, client_id: str, identity: Identity) -> Refusal | None:
        """Refuse a CONNECT that would take over another client's live session."""
        session = self.sessions.get(client_id)
        if session is None or session.connection is None:
            return None
        if session.identity.same_principal(identity):
            return None
        return Refusal(
            ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
            f"client id is in use by {_describe(session.identity)}",
        )

    # -- the in-process API for drivers ------------------------------------------

    def session(self, client_id: str) -> Session | None:
        return self.sessions.get(client_id)

    def clients(self) -> list[Session]:
        """The sessions with a live connection (``hooks.Endpoint.clients``)."""
        return [session for session in self.sessions.values() if session.connection is not None]

    def connection_identities(self) -> list[Identity | None]:
        """Who each open connection is: None while its CONNECT is not accepted yet."""
        identities: list[Identity | None] = []
        for conn in list(self.connections):
            session = conn.session
            identities.append(None if session is None else session.identity)
        return identities

    def deliver(
        self,
        client_id: str,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> bool:
        """Send to one session, subscribed or not; False if there is no such session."""
        session = self.sessions.get(client_id)
        if session is None:
            return False
        session.send(topic, payload, qos, retain, properties)
        return True

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish as the hub itself: routed to subscribers and retained like any message."""
        if not is_valid_topic_name(topic):
            raise ValueError(f"invalid topic name {topic!r}")
        return self.route(Message.from_publish(topic, payload, qos, retain, properties), None)

    def subscribe(
        self,
        topic_filter: str,
        callback: MessageCallback,
        *,
        retained: bool = True,
        acknowledges: bool = False,
    ) -> Callable[[], None]:
        """An in-process subscription; returns a function that ends it. The retained
        messages it matches are handed over in the background.

        ``acknowledges``: a client's QoS 1/2 PUBLISH this subscription gets is
        acknowledged only once ``callback`` is done with it, so a message the hub
        acknowledged is one its driver has handled (a hub that stops before that
        leaves the client to send it again)."""
        return self._subscribe(
            topic_filter, callback, HandlerQueue(self, None), retained, acknowledges
        )

    async def subscribe_replayed(
        self, topic_filter: str, callback: MessageCallback, *, acknowledges: bool = False
    ) -> Callable[[], None]:
        """``subscribe``, returning once the retained messages it matched are handled:
        a replay still under way when devices send newer news would overwrite it."""
        replay = HandlerQueue(self, None)
        unsubscribe = self._subscribe(topic_filter, callback, replay, True, acknowledges)
        await replay.idle()
        return unsubscribe

    def _subscribe(
        self,
        topic_filter: str,
        callback: MessageCallback,
        replay: HandlerQueue,
        retained: bool,
        acknowledges: bool,
    ) -> Callable[[], None]:
        if not is_valid_topic_filter(topic_filter):
            raise ValueError(f"invalid topic filter {topic_filter!r}")
        sub = _InternalSubscriber(topic_filter, callback, acknowledges)
        self._internal.add(topic_filter, sub, sub)
        if acknowledges:
            self.acknowledging_subscriptions += 1
        if retained:
            # in the order they are stored
            for topic, message in list(self.retained.match(topic_filter)):
                replay.run(partial(callback, self._as_publish(message, topic)))

        def unsubscribe() -> None:
            if self._internal.remove(topic_filter, sub) and acknowledges:
                self.acknowledging_subscriptions -= 1

        return unsubscribe

    # -- routing -----------------------------------------------------------------

    def retained_refusal(self, message: Message, owner: str) -> str | None:
        """Why ``owner`` may not retain ``message`` (its quota is full); None if it may."""
        if not message.retain or not message.payload or owner == HUB_OWNER:
            return None
        return self.retained_quota.refusal(message.topic, owner, len(message.payload))

    def route(
        self,
        message: Message,
        sender: Session | None,
        retained_by: str | None = None,
        gates: list[asyncio.Future[int | None]] | None = None,
    ) -> int:
        """Deliver to every matching subscriber; returns how many got it.

        A retained message is kept for ``retained_by`` (default: the sender's client
        id, or the hub's own); the caller has checked ``retained_refusal``. With
        ``gates``, each in-process subscription that ``acknowledges`` adds a future
        there: the verdict for the sender's acknowledgement once it is done.
        """
        if message.retain:
            if message.payload:
                self.retained.set(message.topic, message)
                if retained_by is None:
                    retained_by = HUB_OWNER if sender is None else sender.client_id
                self.retained_quota.stored(message.topic, retained_by, len(message.payload))
                self.store.retained(message, retained_by)
            else:
                self._forget_retained(message.topic)
        topic = message.topic
        # one delivery per session even with overlapping subscriptions (5.0 3.3.4)
        targets: dict[Session, Outgoing] | None = None
        first: tuple[Session, Outgoing] | None = None
        for owner, options in self._subscribers(topic):
            assert isinstance(owner, Session)
            if (options.no_local and owner is sender) or not owner.identity.routed:
                continue
            qos = message.qos if message.qos < options.qos else options.qos
            if first is None:
                first = (owner, self._outgoing(message, qos, options))
                continue
            if targets is None:
                targets = {first[0]: first[1]}
            existing = targets.get(owner)
            if existing is None:
                targets[owner] = self._outgoing(message, qos, options)
            else:
                existing.qos = max(existing.qos, qos)
                existing.retain = existing.retain or (
                    options.retain_as_published and message.retain
                )
                if options.identifier is not None:
                    existing.sub_ids.append(options.identifier)
        count = 0
        if targets is not None:
            for session, out in targets.items():
                session.deliver(out)
            count = len(targets)
        elif first is not None:
            first[0].deliver(first[1])
            count = 1
        if len(self._internal):
            publish: Publish | None = None
            for owner, _ in self._internal.match(topic):
                assert isinstance(owner, _InternalSubscriber)
                publish = publish or self._as_publish(message, topic)
                # after what drivers still do with the sender's earlier messages
                queue = self._own_handlers if sender is None else sender.handlers
                if gates is not None and owner.acknowledges:
                    done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
                    gates.append(done)
                    queue.run(partial(_gated, owner.callback, publish, done))
                else:
                    queue.run(partial(owner.callback, publish))
                count += 1
        return count

    def _subscribers(self, topic: str) -> list[tuple[object, SubscriptionOptions]]:
        """Every (session, options) whose subscription matches ``topic``, cached."""
        cache = self._route_cache
        found = cache.get(topic)
        if found is None:
            found = list(self._subscriptions.match(topic))
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[topic] = found
        return found

    @staticmethod
    def _outgoing(message: Message, qos: int, options: SubscriptionOptions) -> Outgoing:
        sub_ids = [options.identifier] if options.identifier is not None else []
        return Outgoing(message, qos, message.retain and options.retain_as_published, sub_ids)

    @staticmethod
    def _as_publish(message: Message, topic: str) -> Publish:
        return Publish(
            topic,
            message.payload,
            message.qos,
            message.retain,
            properties=message.properties,
        )

    def send_retained(
        self, session: Session, topic_filter: str, options: SubscriptionOptions
    ) -> None:
        if not session.identity.routed:
            return  # its topics are per connection: nothing retained is its own
        now = time.monotonic()
        sub_ids = [options.identifier] if options.identifier is not None else []
        for _, message in list(self.retained.match(topic_filter)):
            if message.expired(now):
                self._forget_retained(message.topic)
                continue
            qos = min(message.qos, options.qos)
            session.deliver(Outgoing(message, qos, True, list(sub_ids)))

    def _forget_retained(self, topic: str) -> None:
        self.retained.delete(topic)
        self.retained_quota.removed(topic)
        self.store.retained_cleared(topic)

    def subscribe_session(
        self, session: Session, topic_filter: str, options: SubscriptionOptions
    ) -> bool:
        """Add or replace a session's subscription; True if it already existed."""
        existed = topic_filter in session.subscriptions
        session.subscriptions[topic_filter] = options
        self._subscriptions.add(topic_filter, session, options)
        self._route_cache.clear()
        if session.persisted:
            self.store.subscribed(session.client_id, topic_filter, _stored_subscription(options))
        return existed

    def unsubscribe_session(self, session: Session, topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        self._subscriptions.remove(topic_filter, session)
        self._route_cache.clear()
        if session.persisted:
            self.store.unsubscribed(session.client_id, topic_filter)
        return True

    # -- session lifecycle -------------------------------------------------------

    def new_client_id(self) -> str:
        while True:
            candidate = "otahub-" + secrets.token_hex(8)
            if candidate not in self.sessions:
                return candidate

    def attach(
        self,
        conn: Connection,
        client_id: str,
        identity: Identity,
        connect: Connect,
        expiry: int,
    ) -> tuple[Session, bool]:
        """Bind a new connection to its session (taking it over if need be)."""
        session = self.sessions.get(client_id)
        if session is not None and session.connection is not None:
            old = session.connection
            log.info("client id %r taken over by %s (was %s)", client_id, conn.peer, old.peer)
            old.session = None
            will_delay = (session.will.properties.will_delay_interval or 0) if session.will else 0
            if session.will is not None and (will_delay == 0 or connect.clean_start):
                self._publish_will(session)
            session.will = None
            old.close(ReasonCode.SESSION_TAKEN_OVER, "session taken over")
            session.connection = None
            # That connection has ended: observers hear of it like any other
            # end (its own connection_ended no longer matches the session).
            self._notify(self._on_disconnected, session)
        present = False
        if (
            session is not None
            and not connect.clean_start
            and session.identity.same_principal(identity)
        ):
            session.cancel_timers()
            session.will = None  # a resumed session cancels a delayed will
            present = True
            session.identity = identity
            session.protocol_level = connect.protocol_level
        else:
            if session is not None:
                self._drop_session(session)
            session = Session(self, client_id, identity, connect.protocol_level, expiry)
            self.sessions[client_id] = session
        session.expiry_interval = expiry
        session.connection = conn
        session.will = connect.will
        session.incoming_qos2 = session.incoming_qos2 if present else set()
        window = self.config.limits.max_inflight
        if connect.protocol_level >= MQTT_5:
            session.receive_maximum = min(connect.properties.receive_maximum or 65535, window)
            session.max_packet_size = connect.properties.maximum_packet_size
        else:
            session.receive_maximum = window
            session.max_packet_size = None
        self._save_session(session, None)
        return session, present

    def session_connected(self, session: Session) -> None:
        self._notify(self._on_connected, session)

    def session_subscribed(self, session: Session, topic_filter: str) -> None:
        """After the SUBACK (and the retained messages) of one accepted filter."""
        for observer in self._on_subscribed:
            self.call(observer, session, topic_filter)

    def _notify(self, observers: list[SessionObserver], session: Session) -> None:
        for observer in observers:
            self.call(observer, session)

    def connection_ended(self, session: Session, conn: Connection, publish_will: bool) -> None:
        if session.connection is not conn:
            return
        session.connection = None
        will = session.will
        session.will = None
        loop = asyncio.get_running_loop()
        if will is not None and publish_will:
            delay = will.properties.will_delay_interval or 0
            delay = min(delay, session.expiry_interval)
            if delay > 0:
                session.will = will
                session.will_timer = loop.call_later(delay, self._delayed_will, session)
            else:
                session.will = will
                self._publish_will(session)
        if session.expiry_interval == 0:
            if session.will_timer is None:
                self._drop_session(session)
            else:
                self._save_session(session, time.time())  # no longer persistent
        else:
            self._save_session(session, time.time())
            session.expiry_timer = loop.call_later(
                session.expiry_interval, self._expire_session, session
            )
        self._notify(self._on_disconnected, session)

    def _delayed_will(self, session: Session) -> None:
        session.will_timer = None
        self._publish_will(session)
        if session.expiry_interval == 0 and session.connection is None:
            self._drop_session(session)

    def _publish_will(self, session: Session) -> None:
        will = session.will
        session.will = None
        if will is None:
            return
        log.info("publishing will of %r to %r", session.client_id, will.topic)
        props = will.properties if session.is_v5 else None
        message = Message.from_publish(will.topic, will.payload, will.qos, will.retain, props)
        refusal = self.retained_refusal(message, session.client_id)
        if refusal is not None:
            # the will still reaches today's subscribers; it is only not kept
            session.warn_once("retained", f"{refusal}; its will is published without retain")
            message.retain = False
        self.route(message, None, session.client_id)

    def _expire_session(self, session: Session) -> None:
        session.expiry_timer = None
        if session.connection is None:
            if session.will is not None:
                self._publish_will(session)
            self._drop_session(session)

    def _drop_session(self, session: Session) -> None:
        session.cancel_timers()
        for topic_filter in list(session.subscriptions):
            self._subscriptions.remove(topic_filter, session)
        if session.subscriptions:
            self._route_cache.clear()
        session.subscriptions.clear()
        self._unpersist(session)
        session.inflight.clear()
        session.queue = None
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    # -- the store -----------------------------------------------------------------

    def _save_session(self, session: Session, disconnected_at: float | None) -> None:
        """Keep a session with an expiry in the store (and one without out of it)."""
        if session.expiry_interval == 0:
            self._unpersist(session)
            return
        identity = session.identity
        self.store.session_saved(
            StoredSession(
                session.client_id,
                identity.name,
                identity.dialect,
                identity.anonymous,
                identity.routed,
                session.protocol_level,
                session.expiry_interval,
                disconnected_at,
            )
        )
        if session.persisted:
            return
        # newly persistent: what it already holds goes into the store too
        session.persisted = True
        for topic_filter, options in session.subscriptions.items():
            self.store.subscribed(session.client_id, topic_filter, _stored_subscription(options))
        for pid, out in session.inflight.items():
            if out.qos > 0:
                self.store_message(session, out, bounded=False)
                self.store.message_sent(session.client_id, out.key, pid, out.state)
        for out in session.queue or ():
            if out.qos > 0:
                self.store_message(session, out, bounded=False)

    def _unpersist(self, session: Session) -> None:
        if not session.persisted:
            return
        session.persisted = False
        self.store.session_dropped(session.client_id)
        for out in session.inflight.values():
            self._unkey(out)
        for out in session.queue or ():
            self._unkey(out)

    def _unkey(self, out: Outgoing) -> None:
        if out.key:
            out.key = 0
            self.stored_messages -= 1

    def store_message(self, session: Session, out: Outgoing, bounded: bool = True) -> bool:
        """Put a message for a persistent session in the store; False if the store is full.

        ``bounded=False`` for a message that is already in flight: the client
        window bounds those.
        """
        limit = self.config.limits.max_stored_messages
        if bounded and self.stored_messages >= limit:
            session.warn_once(
                "stored",
                f"would pass the {limit} messages the endpoint stores for offline sessions; "
                "a message for it was dropped",
            )
            return False
        out.key = self._next_key
        self._next_key += 1
        self.stored_messages += 1
        self.store.message_queued(
            session.client_id,
            StoredMessage(out.key, out.message, out.qos, out.retain, list(out.sub_ids)),
        )
        return True

    def message_forgotten(self, session: Session, out: Outgoing) -> None:
        if out.key and session.persisted:
            self.store.message_done(session.client_id, out.key)
        self._unkey(out)

    def recover(self) -> None:
        """Load what the store holds: retained messages and unexpired sessions.

        Run once, in the event loop, before listening. A session whose
        connection was still up when the process ended counts as ending now.
        """
        state: StoredState = self.store.load()
        now = time.time()
        monotonic = time.monotonic()
        loop = asyncio.get_running_loop()
        for topic, retained in state.retained.items():
            message = retained.message
            if message.expired(monotonic):
                self.store.retained_cleared(topic)
                continue
            self.retained.set(topic, message)
            self.retained_quota.stored(topic, retained.owner, len(message.payload))
        dropped = 0
        for stored in state.sessions.values():
            ended = now if stored.disconnected_at is None else stored.disconnected_at
            left = stored.expiry_interval - (now - ended)
            if left <= 0:
                self.store.session_dropped(stored.client_id)
                dropped += 1
                continue
            self._restore_session(stored, ended)
            session = self.sessions[stored.client_id]
            session.expiry_timer = loop.call_later(left, self._expire_session, session)
        self._route_cache.clear()
        log.info(
            "MQTT state recovered: %d retained messages, %d sessions (%d expired, dropped)",
            len(state.retained),
            len(self.sessions),
            dropped,
        )

    def _restore_session(self, stored: StoredSession, ended: float) -> None:
        identity = Identity(
            name=stored.name,
            dialect=stored.dialect,
            anonymous=stored.anonymous,
            routed=stored.routed,
        )
        session = Session(
            self, stored.client_id, identity, stored.protocol_level, stored.expiry_interval
        )
        session.persisted = True
        self.sessions[stored.client_id] = session
        for topic_filter, sub in stored.subscriptions.items():
            options = SubscriptionOptions(
                sub.qos, sub.no_local, sub.retain_as_published, sub.retain_handling, sub.identifier
            )
            session.subscriptions[topic_filter] = options
            self._subscriptions.add(topic_filter, session, options)
        for key in sorted(stored.messages):
            kept = stored.messages[key]
            out = Outgoing(kept.message, kept.qos, kept.retain, list(kept.sub_ids))
            out.key = key
            self.stored_messages += 1
            if key >= self._next_key:
                self._next_key = key + 1
            pid = kept.packet_id
            if pid is not None and 0 < pid <= 0xFFFF and pid not in session.inflight:
                out.state = kept.state
                session.inflight[pid] = out
            else:
                session.queued().append(out)
        if stored.disconnected_at is None:
            self._save_session(session, ended)

    # -- running driver code -------------------------------------------------------

    def call(self, fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        """Run a hook; a coroutine becomes a task, and no error reaches the connection."""
        try:
            result = fn(*args)
        except Exception:
            log.exception("hook %r failed", fn)
            return
        # most hooks are plain functions: skip the awaitable check for their None
        if result is not None and inspect.isawaitable(result):
            self.spawn(result)

    def run_interceptor(
        self,
        handler: InterceptHandler,
        session: Session,
        packet: Publish,
        acknowledge: Callable[[int | None], None],
    ) -> None:
        """Hand a claimed PUBLISH to its driver; ``acknowledge`` gets the handler's verdict.

        The handler runs after the session's earlier ones (see handler_queue.py).
        """
        queue = session.handlers
        if queue.busy:
            queue.run(partial(self._call_interceptor, handler, session, packet, acknowledge))
            return
        # nothing of this session runs (nearly always): no need to wrap the call
        pending = self._call_interceptor(handler, session, packet, acknowledge)
        if pending is not None:
            queue.started(pending)

    def _call_interceptor(
        self,
        handler: InterceptHandler,
        session: Session,
        packet: Publish,
        acknowledge: Callable[[int | None], None],
    ) -> Awaitable[None] | None:
        try:
            result = handler(session, packet)
        except Exception:
            log.exception("interception handler %r failed", handler)
            acknowledge(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
            return None
        if result is None or isinstance(result, int):
            acknowledge(result)
            return None
        if isinstance(result, asyncio.Future):
            # the handler is done, only its verdict comes later: the session's
            # next PUBLISHes need not wait for it (their acknowledgements do)
            result.add_done_callback(partial(_late_verdict, handler, acknowledge))
            return None
        return self._finish_interceptor(handler, result, acknowledge)

    @staticmethod
    async def _finish_interceptor(
        handler: InterceptHandler,
        pending: Awaitable[int | None],
        acknowledge: Callable[[int | None], None],
    ) -> None:
        try:
            verdict = await pending
        except Exception:
            log.exception("interception handler %r failed", handler)
            verdict = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
        acknowledge(verdict)

    def spawn(self, awaitable: Awaitable[Any]) -> None:
        self.start_task(awaitable)

    def start_task(self, awaitable: Awaitable[Any]) -> asyncio.Task[None]:
        """Run ``awaitable`` as a task the server waits for (or cancels) on close."""

        async def run() -> None:
            try:
                await awaitable
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task failed")

        coro: Coroutine[Any, Any, None] = run()
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _gated(
    callback: MessageCallback, publish: Publish, done: asyncio.Future[int | None]
) -> Awaitable[None] | None:
    """``callback`` for a subscription that acknowledges: ``done`` gets the verdict
    for the sender's acknowledgement once the callback is done."""
    try:
        result = callback(publish)
    except Exception:
        _give(done, ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
        raise  # the handler queue logs it
    if result is None:
        _give(done, None)
        return None
    return _finish_gated(result, done)


async def _finish_gated(pending: Awaitable[None], done: asyncio.Future[int | None]) -> None:
    try:
        await pending
    except asyncio.CancelledError:
        done.cancel()  # not handled (the hub stops): unacknowledged, the client resends
        raise
    except Exception:
        _give(done, ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
        raise  # the handler queue logs it
    _give(done, None)


def _give(done: asyncio.Future[int | None], verdict: int | None) -> None:
    if not done.done():
        done.set_result(verdict)


def _late_verdict(
    handler: InterceptHandler,
    acknowledge: Callable[[int | None], None],
    future: asyncio.Future[int | None],
) -> None:
    """The verdict of a handler that returned a future; none when it was cancelled."""
    if future.cancelled():
        acknowledge(NO_ACK)
        return
    exc = future.exception()
    if exc is not None:
        log.error("interception handler %r failed: %s", handler, exc)
        acknowledge(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
        return
    acknowledge(future.result())
