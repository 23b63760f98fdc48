"""What dialect drivers plug into the MQTT endpoint.

- an *authenticator* sees every CONNECT and accepts it with an identity,
  refuses it with a reason code, or passes (returns ``None``) so the next
  authenticator decides;
- the identity may carry an *ACL* consulted for every PUBLISH and SUBSCRIBE
  of that session;
- a *certificate check* has the last word on a CONNECT that presented a
  verified TLS client certificate: it gets the authenticators' verdict
  (None when none decided) and confirms, replaces or refuses it;
- a CONNECT no authenticator accepts is *anonymous*: allowed only from the
  networks in ``ServerConfig.anonymous_from`` (or from anywhere with
  ``allow_anonymous``), with the ACL an *anonymous policy* gives it;
- a driver may *intercept* topic patterns: PUBLISHes on them are handed to
  the driver with the sending session instead of being routed;
- a driver may *deliver* a PUBLISH straight to one session (see
  ``MQTTServer.deliver`` and ``Client.send``), subscribed or not.

Drivers see the endpoint only through :class:`Endpoint` and each client
only through :class:`Client`; the concrete server and session classes (their
queues, in-flight messages and connections) are the endpoint's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from otahub.mqtt.packets import Properties
from otahub.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from otahub.mqtt.packets import Publish


@dataclass(frozen=True, slots=True)
class ConnectInfo:
    """What an authenticator gets to decide on."""

    client_id: str
    username: str | None
    password: bytes | None
    protocol_level: int
    listener: str  # "mqtt" or "mqtts" (or a name given to MQTTServer.listen)
    peer: str  # "host:port"
    peer_cert: Mapping[str, Any] | None = None  # TLS client certificate, as ssl.getpeercert()
    peer_cert_der: bytes | None = None  # the same certificate, DER-encoded
    properties: Properties = field(default_factory=Properties)


class Acl(Protocol):
    def can_publish(self, topic: str) -> bool: ...

    def can_subscribe(self, topic_filter: str) -> bool | int:
        """True to allow; False to refuse (NOT_AUTHORIZED); or an MQTT 5 refusal code (>= 0x80).

        Read by value, not identity: compiled code keeps ``bool | int`` as an int.
        """
        ...


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session is, as the accepting authenticator saw it."""

    name: str
    dialect: str | None = None
    acl: Acl | None = None
    # anything the driver wants back with every intercepted message
    data: Any = None
    # accepted without credentials (see ServerConfig.anonymous_from)
    anonymous: bool = False
    # False for sessions whose topics are per connection (ThingsBoard's
    # ``v1/devices/me/...``): plain routing and retained messages never reach
    # their subscriptions, only what a driver sends them directly.
    routed: bool = True

    def same_principal(self, other: Identity) -> bool:
        """Whether two identities are the same client (may take over its session)."""
        return (
            self.name == other.name
            and self.dialect == other.dialect
            and self.anonymous == other.anonymous
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    reason_code: int = ReasonCode.NOT_AUTHORIZED
    message: str = "not authorized"


Authenticator = Callable[[ConnectInfo], Awaitable["Identity | Refusal | None"]]

# Given a CONNECT with a client certificate and the authenticators' verdict
# (None: no credentials any authenticator claimed), the final verdict; None
# lets the client in anonymously.
CertificateCheck = Callable[
    [ConnectInfo, "Identity | Refusal | None"], Awaitable["Identity | Refusal | None"]
]

# The ACL of an anonymous client, given its CONNECT and whether it came from
# one of the ``anonymous_from`` networks (False: let in by ``allow_anonymous``).
AnonymousPolicy = Callable[[ConnectInfo, bool], "Acl | None"]

# An interception handler may be a plain function or a coroutine function;
# a coroutine is run as a task so the connection keeps reading. One session's
# handlers (and in-process subscribers of its messages) run one after another,
# in the order it sent the messages; other sessions' meanwhile. What it
# returns decides the acknowledgement of a QoS 1/2 PUBLISH, sent once the
# handler is done: None = success, a reason code = that code (MQTT 5; 3.1.1
# acknowledgements carry none), NO_ACK = no acknowledgement at all. What a
# plain handler sends meanwhile goes out after the acknowledgement; a
# coroutine's sends go out as they happen, its acknowledgement last.
# A handler may also return an ``asyncio.Future`` of its verdict: it is done
# with the message, only the acknowledgement waits (for a write to disk, say),
# so the session's next messages are handled meanwhile. A cancelled future
# means NO_ACK, a failed one IMPLEMENTATION_SPECIFIC_ERROR. Whatever the
# handler, a client's acknowledgements go out in the order of its PUBLISHes.
InterceptHandler = Callable[["Client", "Publish"], "Awaitable[int | None] | int | None"]
NO_ACK: Final = -1

# Called when a session connects (after CONNACK) or its connection ends
# (closed, lost, or taken over by a new connection with the same client id).
SessionObserver = Callable[["Client"], "Awaitable[None] | None"]

# Called with each topic filter a session was granted, after the SUBACK and
# the retained messages it brought: what a driver sends then arrives after them.
SubscriptionObserver = Callable[["Client", str], "Awaitable[None] | None"]

# An in-process subscriber: gets every routed message matching its filter.
MessageCallback = Callable[["Publish"], "Awaitable[None] | None"]


class Client(Protocol):
    """One client of the endpoint, as drivers see it: what hooks are handed.

    It stands for the client id's session, which may outlive a connection
    (``connected`` says whether one is up). Clients compare and hash by
    identity: a driver may key its own state by them.
    """

    def __hash__(self) -> int: ...

    @property
    def client_id(self) -> str: ...

    @property
    def identity(self) -> Identity:
        """Who it is, as the accepting authenticator (or the anonymous policy) saw it."""
        ...

    @property
    def connected(self) -> bool: ...

    @property
    def is_v5(self) -> bool:
        """Whether it speaks MQTT 5.0 (else 3.1.1)."""
        ...

    def send(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Deliver one message to it, whether or not it subscribed; with QoS 1/2 it
        waits for the client's next connection if the session outlives this one."""
        ...

    def disconnect(self, reason_code: int = 0, reason: str | None = None) -> None:
        """End its connection (a DISCONNECT with the reason first, in MQTT 5.0)."""
        ...

    def is_subscribed(self, topic: str) -> bool:
        """Whether one of its subscriptions matches ``topic``."""
        ...

    def subscription_qos(self, topic: str) -> int | None:
        """The highest QoS its subscriptions matching ``topic`` were granted; None
        when none matches."""
        ...

    def run_in_order(self, call: Callable[[], Awaitable[None] | None]) -> None:
        """Run driver code after what drivers still do with its earlier messages
        (and before what they do with later ones)."""
        ...

    async def handled(self) -> None:
        """Wait until driver code has done with everything queued for it."""
        ...


class Endpoint(Protocol):
    """The MQTT endpoint as drivers see it: the hooks they install, the hub's own
    publishing and subscribing, and the clients connected now."""

    def add_authenticator(
        self, authenticator: Authenticator, listeners: set[str] | None = None
    ) -> None:
        """Consulted in order; the first that does not pass (None) decides."""
        ...

    def set_certificate_check(self, check: CertificateCheck | None) -> None: ...

    def set_anonymous_policy(self, policy: AnonymousPolicy | None) -> None: ...

    def intercept(self, pattern: str, handler: InterceptHandler) -> Callable[[], None]:
        """Claim a topic pattern; returns a function that releases the claim."""
        ...

    def on_session_connected(self, observer: SessionObserver) -> None: ...

    def on_session_disconnected(self, observer: SessionObserver) -> None: ...

    def on_subscribed(self, observer: SubscriptionObserver) -> Callable[[], None]:
        """Be told of every accepted subscription; returns a function that stops it."""
        ...

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        """Publish as the hub itself: routed and retained like any message; returns
        how many subscribers got it."""
        ...

    async def subscribe_replayed(
        self, topic_filter: str, callback: MessageCallback, *, acknowledges: bool = False
    ) -> Callable[[], None]:
        """An in-process subscription, returning once the retained messages it matched
        are handled; returns a function that ends it. ``acknowledges``: a client's
        QoS 1/2 PUBLISH it gets is acknowledged once ``callback`` is done with it."""
        ...

    def clients(self) -> Iterable[Client]:
        """The clients connected now."""
        ...

    def spawn(self, awaitable: Awaitable[Any]) -> None:
        """Run ``awaitable`` as a task the endpoint waits for (or cancels) when it closes."""
        ...
