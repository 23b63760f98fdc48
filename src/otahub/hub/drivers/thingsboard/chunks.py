"""The ``v2/fw`` and ``v2/sw`` chunk protocol.

A request whose ``{rid}`` this session already resolved is answered on the
spot, without a task or a database query: a pread on a shared descriptor
and a direct delivery. The first request of a ``{rid}`` resolves the
device's effective package once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from otahub.hub.drivers.thingsboard.attributes import subscription_qos
from otahub.hub.drivers.thingsboard.auth import Link, RidState
from otahub.hub.drivers.thingsboard.fetches import Fetch
from otahub.mqtt import NO_ACK, Client, ReasonCode
from otahub.protocols.thingsboard import (
    ChunkError,
    ChunkTopic,
    CloseConnection,
    SendChunk,
    UnknownTopic,
    decide_chunk,
    parse_chunk_topic,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

log = logging.getLogger("otahub.hub.thingsboard")


class Chunks:
    def __init__(self, driver: ThingsBoardDriver, max_chunk_size: int) -> None:
        self.driver = driver
        self.max_chunk_size = max_chunk_size

    def handle(
        self, session: Client, link: Link, topic: str, payload: bytes
    ) -> Awaitable[int | None] | int | None:
        """Answer a chunk request; the result is the PUBACK verdict (see mqtt.hooks)."""
        # parsed once here and handed on: every chunk comes this way
        parsed = parse_chunk_topic(topic)
        if parsed is None:
            log.info("device %s: %r is not a chunk request topic; dropped", link.device, topic)
            return ReasonCode.TOPIC_NAME_INVALID
        rid = link.rids.get((parsed.package, parsed.request_id))
        if rid is None or not self.driver.intact(rid):
            return self._first(session, link, topic, parsed, payload)
        return self._answer(session, link, topic, parsed, payload, rid)

    async def _first(
        self, session: Client, link: Link, topic: str, parsed: ChunkTopic, payload: bytes
    ) -> int | None:
        key = (parsed.package, parsed.request_id)
        rid = link.rids.get(key)
        if rid is not None and not self.driver.intact(rid) and not await self.driver.reverify(rid):
            # the blob no longer matches: resolved again, and refused as absent
            del link.rids[key]
            rid = None
        if rid is None:
            rid = await self.driver.resolve_rid(link.device, parsed.package)
            if rid is not None:
                rid = link.rids.setdefault(key, rid)
                self.driver.fetches.note(
                    link.device, parsed.package, Fetch(rid.package_id, rid.update_id)
                )
        return self._answer(session, link, topic, parsed, payload, rid)

    def _answer(
        self,
        session: Client,
        link: Link,
        topic: str,
        parsed: ChunkTopic,
        payload: bytes,
        rid: RidState | None,
    ) -> int | None:
        """Send the chunk or the error; errors close the session without a PUBACK."""
        decision = decide_chunk(
            parsed,
            payload,
            remembered_size=None if rid is None else rid.chunk_size,
            package_size=None if rid is None else rid.size,
            external_url=rid is not None and rid.path is None,
            max_chunk_size=self.max_chunk_size,
        )
        if isinstance(decision, SendChunk):
            assert rid is not None
            if decision.remember_size is not None:
                rid.chunk_size = decision.remember_size
            data = self.driver.blobs.read(rid.path, decision.start, decision.end)
            qos = subscription_qos(session, decision.topic)
            session.send(decision.topic, data, 1 if qos is None else qos)
            if rid.update_id is not None:
                self.driver.progress.note(rid.update_id, decision.end, rid.size)
            return None
        elif isinstance(decision, ChunkError):
            if rid is not None and decision.remember_size is not None:
                rid.chunk_size = decision.remember_size
            log.warning(
                "device %s: %s for chunk request %r (%d bytes payload); closing",
                link.device,
                decision.error,
                topic,
                len(payload),
            )
            qos = subscription_qos(session, decision.topic)
            session.send(decision.topic, decision.error.encode(), 1 if qos is None else qos)
            session.disconnect(decision.disconnect_reason, decision.error)
            return NO_ACK
        elif isinstance(decision, CloseConnection):
            log.warning("device %s: %s; closing", link.device, decision.reason)
            session.disconnect(decision.disconnect_reason, decision.reason)
            return NO_ACK
        elif isinstance(decision, UnknownTopic):
            log.info("device %s: unknown topic %r; dropped", link.device, topic)
            return ReasonCode.TOPIC_NAME_INVALID
