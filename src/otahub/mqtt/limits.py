"""What one client may make the endpoint hold: subscriptions, retained messages,
bytes before its CONNECT is accepted, messages in flight.

Every limit answers in the protocol's own terms where the protocol has one
(MQTT 5 ``QUOTA_EXCEEDED`` on SUBACK and PUBACK, 3.1.1 SUBACK ``0x80`` or a
dropped PUBLISH) and is logged once per client, however often it is hit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The hub's own retained messages (a driver's ``MQTTServer.publish``) count in
# the totals but are never refused: a full store must not stop an update.
HUB_OWNER: Final = ""


@dataclass(slots=True)
class Limits:
    #: subscriptions one session may hold (mosquitto has no default; EMQX: unlimited)
    max_subscriptions: int = 1000
    #: retained messages one client id may have set, and their payload bytes
    max_retained_per_client: int = 1000
    max_retained_bytes_per_client: int = 16 * 1024 * 1024
    #: retained messages of all clients together, and their payload bytes
    max_retained: int = 100_000
    max_retained_bytes: int = 256 * 1024 * 1024
    #: bytes a connection may send before its CONNECT is accepted (the CONNECT
    #: itself included, with its will): an unauthenticated peer holds no more
    max_pre_connect_bytes: int = 64 * 1024
    #: QoS 1/2 messages in flight per session, each way: towards the client
    #: (more wait in its queue) and from it (MQTT 5 Receive Maximum)
    max_inflight: int = 1000
    #: QoS 1/2 messages the endpoint holds for persistent sessions, all together
    #: (each session's queue is bounded by ServerConfig.max_queued_messages)
    max_stored_messages: int = 100_000
    #: a session's messages waiting for driver code still busy with an earlier
    #: one (handler_queue.py); past this, its socket is not read until half are done
    max_queued_handlers: int = 100

    def __post_init__(self) -> None:
        values = {
            "max_subscriptions": self.max_subscriptions,
            "max_retained_per_client": self.max_retained_per_client,
            "max_retained_bytes_per_client": self.max_retained_bytes_per_client,
            "max_retained": self.max_retained,
            "max_retained_bytes": self.max_retained_bytes,
            "max_pre_connect_bytes": self.max_pre_connect_bytes,
            "max_inflight": self.max_inflight,
            "max_stored_messages": self.max_stored_messages,
            "max_queued_handlers": self.max_queued_handlers,
        }
        for name, value in values.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_inflight > 65535:
            raise ValueError("max_inflight must be at most 65535 (MQTT Receive Maximum)")


class _Usage:
    __slots__ = ("count", "size")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0


class RetainedQuota:
    """Who set each retained message, and how many and how many bytes each client holds.

    A retained message belongs to the client id that set it last, and keeps
    counting against that client after it disconnects: a reconnect does not
    start a new quota.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._held: dict[str, tuple[str, int]] = {}  # topic -> (owner, payload bytes)
        self._usage: dict[str, _Usage] = {}
        self.count = 0
        self.size = 0

    def refusal(self, topic: str, owner: str, size: int) -> str | None:
        """Why retaining ``size`` bytes on ``topic`` for ``owner`` is refused; None if it fits."""
        limits = self.limits
        count, total = self.count + 1, self.size + size
        usage = self._usage.get(owner)
        mine, mine_size = (0, 0) if usage is None else (usage.count, usage.size)
        mine += 1
        mine_size += size
        old = self._held.get(topic)
        if old is not None:  # replacing: the old message's share is given back
            count -= 1
            total -= old[1]
            if old[0] == owner:
                mine -= 1
                mine_size -= old[1]
        if mine > limits.max_retained_per_client:
            return (
                f"holds {limits.max_retained_per_client} retained messages, the most one client may"
            )
        if mine_size > limits.max_retained_bytes_per_client:
            return (
                f"retained messages of {mine_size} bytes would pass the per-client limit "
                f"of {limits.max_retained_bytes_per_client}"
            )
        if count > limits.max_retained:
            return f"the endpoint holds {limits.max_retained} retained messages, its limit"
        if total > limits.max_retained_bytes:
            return f"retained messages would pass the endpoint's {limits.max_retained_bytes} bytes"
        return None

    def stored(self, topic: str, owner: str, size: int) -> None:
        self.removed(topic)
        self._held[topic] = (owner, size)
        usage = self._usage.get(owner)
        if usage is None:
            usage = self._usage[owner] = _Usage()
        usage.count += 1
        usage.size += size
        self.count += 1
        self.size += size

    def removed(self, topic: str) -> None:
        old = self._held.pop(topic, None)
        if old is None:
            return
        owner, size = old
        self.count -= 1
        self.size -= size
        usage = self._usage[owner]
        usage.count -= 1
        usage.size -= size
        if usage.count == 0:
            del self._usage[owner]

    def usage(self, owner: str) -> tuple[int, int]:
        """(messages, payload bytes) retained by ``owner``."""
        usage = self._usage.get(owner)
        return (0, 0) if usage is None else (usage.count, usage.size)
