"""Where the endpoint keeps what must outlive its process.

The endpoint tells a ``BrokerStore`` of every change to its durable state:
retained messages, persistent sessions (those with a session expiry) with
their subscriptions, and the QoS 1/2 messages queued or in flight for them.
``MemoryStore`` keeps nothing (the endpoint's memory is all, as for a test
or an embedded endpoint; the default); ``LogStore`` appends each change to
a file. ``BrokerStore`` is a protocol, so a store may also be plain Python
code next to the compiled endpoint.

Each change is written to the operating system before the endpoint answers
for it (the PUBACK of a retained message, the acknowledgement of a message
queued for a persistent session), so killing the process loses nothing
acknowledged. ``fsync`` decides what a power loss may take: ``"always"``
(each record), ``"interval"`` (at most a second's worth, the default) or
``"never"``.

The log holds one record per change; the store also keeps the live records
by what they describe, so it can rewrite the log as just those (compaction):
at start-up, after reading it, and whenever the file grows past twice the
live data. Reading the log on start-up therefore costs what is stored, not
the history that led to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from otahub.mqtt.errors import MQTTError
from otahub.mqtt.message import Message
from otahub.mqtt.packets import PacketType, Properties
from otahub.mqtt.properties import decode_properties, encode_properties
from otahub.mqtt.wire import Reader

log = logging.getLogger("otahub.mqtt")

FSYNC_POLICIES: Final = ("always", "interval", "never")

# record kinds
_RETAIN: Final = 1
_RETAIN_CLEAR: Final = 2
_SESSION: Final = 3
_SESSION_DROP: Final = 4
_SUBSCRIBE: Final = 5
_UNSUBSCRIBE: Final = 6
_MESSAGE: Final = 7
_SENT: Final = 8
_DONE: Final = 9

_HEADER: Final = struct.Struct("!II")  # body length, CRC-32 of the body
_U32: Final = struct.Struct("!I")
_U64: Final = struct.Struct("!Q")
_F64: Final = struct.Struct("!d")
_MAGIC: Final = b"otahub-mqtt-store 1\n"
# a log smaller than this is never compacted while running
_COMPACT_MIN: Final = 1024 * 1024


@dataclass(slots=True)
class StoredSubscription:
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int
    identifier: int | None


@dataclass(slots=True)
class StoredMessage:
    """A QoS 1/2 message on its way to a persistent session."""

    key: int  # order of arrival, unique per store
    message: Message
    qos: int
    retain: bool
    sub_ids: list[int]
    # the packet id it was last sent with, and "publish" or "pubrel"; None: queued
    packet_id: int | None = None
    state: str = "publish"


@dataclass(slots=True)
class StoredSession:
    client_id: str
    name: str
    dialect: str | None
    anonymous: bool
    routed: bool
    protocol_level: int
    expiry_interval: int
    # wall-clock time its connection ended; None while it was connected
    disconnected_at: float | None
    subscriptions: dict[str, StoredSubscription] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)


@dataclass(slots=True)
class StoredRetained:
    message: Message
    owner: str


@dataclass(slots=True)
class StoredState:
    retained: dict[str, StoredRetained] = field(default_factory=dict)
    sessions: dict[str, StoredSession] = field(default_factory=dict)


class BrokerStore(Protocol):
    """What the endpoint calls for each change to its durable state."""

    def load(self) -> StoredState: ...

    def retained(self, message: Message, owner: str) -> None: ...

    def retained_cleared(self, topic: str) -> None: ...

    def session_saved(self, session: StoredSession) -> None:
        """A persistent session's own fields (not its subscriptions or messages)."""
        ...

    def session_dropped(self, client_id: str) -> None: ...

    def subscribed(self, client_id: str, topic_filter: str, sub: StoredSubscription) -> None: ...

    def unsubscribed(self, client_id: str, topic_filter: str) -> None: ...

    def message_queued(self, client_id: str, stored: StoredMessage) -> None: ...

    def message_sent(self, client_id: str, key: int, packet_id: int, state: str) -> None: ...

    def message_done(self, client_id: str, key: int) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """Keeps none of it: the endpoint's memory is all there is."""

    def load(self) -> StoredState:
        return StoredState()

    def retained(self, message: Message, owner: str) -> None:
        pass

    def retained_cleared(self, topic: str) -> None:
        pass

    def session_saved(self, session: StoredSession) -> None:
        pass

    def session_dropped(self, client_id: str) -> None:
        pass

    def subscribed(self, client_id: str, topic_filter: str, sub: StoredSubscription) -> None:
        pass

    def unsubscribed(self, client_id: str, topic_filter: str) -> None:
        pass

    def message_queued(self, client_id: str, stored: StoredMessage) -> None:
        pass

    def message_sent(self, client_id: str, key: int, packet_id: int, state: str) -> None:
        pass

    def message_done(self, client_id: str, key: int) -> None:
        pass

    def close(self) -> None:
        pass


# -- record encoding -----------------------------------------------------------


def _blob(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _text(value: str) -> bytes:
    return _blob(value.encode("utf-8"))


class _RecordReader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _take(self, n: int) -> bytes:
        start = self.pos
        if start + n > len(self.buf):
            raise ValueError("record is shorter than its fields")
        self.pos = start + n
        return self.buf[start : start + n]

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        value: int = _U32.unpack(self._take(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack(self._take(8))[0]
        return value

    def f64(self) -> float:
        value: float = _F64.unpack(self._take(8))[0]
        return value

    def blob(self) -> bytes:
        return self._take(self.u32())

    def text(self) -> str:
        return self.blob().decode("utf-8")


def _wall_expiry(message: Message) -> float:
    """A message's expiry as wall-clock time (-1: none): monotonic time restarts."""
    if message.expires_at is None:
        return -1.0
    return time.time() + (message.expires_at - time.monotonic())


def _monotonic_expiry(wall: float) -> float | None:
    if wall < 0:
        return None
    return time.monotonic() + (wall - time.time())


def _encode_message_fields(message: Message) -> bytes:
    props = b"" if message.properties is None else encode_properties(message.properties, 3)
    return (
        _text(message.topic)
        + bytes((message.qos, 1 if message.retain else 0))
        + _F64.pack(_wall_expiry(message))
        + _blob(props)
        + _blob(message.payload)
    )


def _decode_message_fields(reader: _RecordReader) -> Message:
    topic = reader.text()
    qos = reader.u8()
    retain = reader.u8() == 1
    expires_at = _monotonic_expiry(reader.f64())
    raw_props = reader.blob()
    properties: Properties | None = None
    if raw_props:
        try:
            properties = decode_properties(Reader(raw_props), PacketType.PUBLISH)
        except MQTTError as exc:
            raise ValueError(f"stored properties: {exc.message}") from exc
    payload = reader.blob()
    return Message(topic, payload, qos, retain, properties, expires_at)


def _session_fields(session: StoredSession) -> bytes:
    flags = (
        (1 if session.anonymous else 0)
        | (2 if session.routed else 0)
        | (4 if session.dialect is not None else 0)
    )
    return (
        _text(session.client_id)
        + _text(session.name)
        + _text(session.dialect or "")
        + bytes((flags, session.protocol_level))
        + _U32.pack(session.expiry_interval)
        + _F64.pack(-1.0 if session.disconnected_at is None else session.disconnected_at)
    )


def _subscription_fields(sub: StoredSubscription) -> bytes:
    flags = (1 if sub.no_local else 0) | (2 if sub.retain_as_published else 0)
    ident = 0 if sub.identifier is None else sub.identifier
    return bytes((sub.qos, flags, sub.retain_handling)) + _U32.pack(ident)


def _stored_message_fields(stored: StoredMessage) -> bytes:
    sub_ids = b"".join(_U32.pack(i) for i in stored.sub_ids)
    return (
        _U64.pack(stored.key)
        + bytes((stored.qos, 1 if stored.retain else 0))
        + _blob(sub_ids)
        + _encode_message_fields(stored.message)
    )


class _Replay:
    """Rebuilds the state from records, in log order."""

    def __init__(self) -> None:
        self.state = StoredState()

    def apply(self, kind: int, body: bytes) -> None:
        reader = _RecordReader(body)
        state = self.state
        if kind == _RETAIN:
            owner = reader.text()
            message = _decode_message_fields(reader)
            state.retained[message.topic] = StoredRetained(message, owner)
        elif kind == _RETAIN_CLEAR:
            state.retained.pop(reader.text(), None)
        elif kind == _SESSION:
            client_id = reader.text()
            name = reader.text()
            dialect = reader.text()
            flags = reader.u8()
            protocol_level = reader.u8()
            expiry = reader.u32()
            disconnected = reader.f64()
            old = state.sessions.get(client_id)
            session = StoredSession(
                client_id,
                name,
                dialect if flags & 4 else None,
                bool(flags & 1),
                bool(flags & 2),
                protocol_level,
                expiry,
                None if disconnected < 0 else disconnected,
            )
            if old is not None:
                session.subscriptions = old.subscriptions
                session.messages = old.messages
            state.sessions[client_id] = session
        elif kind == _SESSION_DROP:
            state.sessions.pop(reader.text(), None)
        elif kind == _SUBSCRIBE:
            owner_session = state.sessions.get(reader.text())
            topic_filter = reader.text()
            qos = reader.u8()
            flags = reader.u8()
            retain_handling = reader.u8()
            ident = reader.u32()
            if owner_session is not None:
                owner_session.subscriptions[topic_filter] = StoredSubscription(
                    qos, bool(flags & 1), bool(flags & 2), retain_handling, ident or None
                )
        elif kind == _UNSUBSCRIBE:
            owner_session = state.sessions.get(reader.text())
            topic_filter = reader.text()
            if owner_session is not None:
                owner_session.subscriptions.pop(topic_filter, None)
        elif kind == _MESSAGE:
            owner_session = state.sessions.get(reader.text())
            key = reader.u64()
            qos = reader.u8()
            retain = reader.u8() == 1
            raw_ids = reader.blob()
            sub_ids = [_U32.unpack_from(raw_ids, i)[0] for i in range(0, len(raw_ids), 4)]
            message = _decode_message_fields(reader)
            if owner_session is not None:
                owner_session.messages[key] = StoredMessage(key, message, qos, retain, sub_ids)
        elif kind == _SENT:
            owner_session = state.sessions.get(reader.text())
            key = reader.u64()
            packet_id = reader.u32()
            released = reader.u8() == 1
            if owner_session is not None:
                stored = owner_session.messages.get(key)
                if stored is not None:
                    stored.packet_id = packet_id
                    stored.state = "pubrel" if released else "publish"
        elif kind == _DONE:
            owner_session = state.sessions.get(reader.text())
            key = reader.u64()
            if owner_session is not None:
                owner_session.messages.pop(key, None)
        else:
            raise ValueError(f"unknown record kind {kind}")


class LogStore:
    """An append-only log file, compacted to the live records."""

    def __init__(self, path: Path, fsync: str = "interval") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = path
        self.fsync = fsync
        self._fd = -1
        self._size = 0  # bytes in the log file
        self._live_size = 0  # bytes of the records below
        # the live records, by what they describe; a retained message as the message
        # itself (which the server keeps anyway), its owner and its record's length,
        # encoded again only when the log is compacted: a second copy of every
        # retained payload would be memory per device for nothing
        self._retained: dict[str, tuple[Message, str, int]] = {}
        self._sessions: dict[str, bytes] = {}
        self._subscriptions: dict[str, dict[str, bytes]] = {}
        self._messages: dict[str, dict[int, bytes]] = {}
        self._sent: dict[str, dict[int, bytes]] = {}
        self._last_sync = 0.0
        self._unsynced = False
        self._sync_timer: asyncio.TimerHandle | None = None

    # -- start-up ------------------------------------------------------------

    def load(self) -> StoredState:
        """Read the log, then rewrite it as the live records only."""
        replay = _Replay()
        started = time.monotonic()
        records = 0
        if self.path.exists():
            data = self.path.read_bytes()
            pos = len(_MAGIC) if data.startswith(_MAGIC) else len(data)
            if pos != len(_MAGIC) and data:
                raise ValueError(f"{self.path} is not an otahub MQTT store")
            while pos + _HEADER.size <= len(data):
                length, crc = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if end > len(data):
                    break
                record = data[pos + _HEADER.size : end]
                if zlib.crc32(record) != crc or not record:
                    break
                try:
                    replay.apply(record[0], record[1:])
                except (ValueError, UnicodeDecodeError, struct.error) as exc:
                    log.warning("%s: skipping a record that cannot be read (%s)", self.path, exc)
                pos = end
                records += 1
            if pos < len(data):
                # the tail of a write the process did not finish: it was never acknowledged
                log.warning(
                    "%s: ignoring %d bytes of an unfinished last record", self.path, len(data) - pos
                )
        state = replay.state
        self._rewrite(state)
        log.info(
            "MQTT store %s: %d retained, %d sessions from %d records in %.3fs",
            self.path,
            len(state.retained),
            len(state.sessions),
            records,
            time.monotonic() - started,
        )
        return state

    def _rewrite(self, state: StoredState) -> None:
        """Index ``state`` as live records and write them as a fresh log."""
        self._retained.clear()
        self._sessions.clear()
        self._subscriptions.clear()
        self._messages.clear()
        self._sent.clear()
        for retained in state.retained.values():
            record = self._retain_record(retained.message, retained.owner)
            self._retained[retained.message.topic] = (retained.message, retained.owner, len(record))
        for session in state.sessions.values():
            cid = session.client_id
            self._sessions[cid] = _record(_SESSION, _session_fields(session))
            for topic_filter, sub in session.subscriptions.items():
                self._subscriptions.setdefault(cid, {})[topic_filter] = _record(
                    _SUBSCRIBE, _text(cid) + _text(topic_filter) + _subscription_fields(sub)
                )
            for key, stored in session.messages.items():
                self._messages.setdefault(cid, {})[key] = _record(
                    _MESSAGE, _text(cid) + _stored_message_fields(stored)
                )
                if stored.packet_id is not None:
                    self._sent.setdefault(cid, {})[key] = self._sent_record(
                        cid, key, stored.packet_id, stored.state
                    )
        self._compact()

    def _compact(self) -> None:
        """Write the live records to a new file and put it in the log's place."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".compacting")
        size = len(_MAGIC)
        with open(tmp, "wb") as out:
            out.write(_MAGIC)
            for record in self._live_records():
                out.write(record)
                size += len(record)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._sync_directory()
        self._size = size
        self._live_size = size
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def _live_records(self) -> list[bytes]:
        records = [self._retain_record(m, owner) for m, owner, _ in self._retained.values()]
        for cid, session in self._sessions.items():
            records.append(session)
            records.extend(self._subscriptions.get(cid, {}).values())
            records.extend(self._messages.get(cid, {}).values())
            records.extend(self._sent.get(cid, {}).values())
        return records

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------

    def _append(self, record: bytes, live_delta: int) -> None:
        if self._fd < 0:
            raise RuntimeError("the MQTT store is not open (load() first)")
        os.write(self._fd, record)
        self._size += len(record)
        self._live_size += live_delta
        if self.fsync == "always":
            os.fsync(self._fd)
        elif self.fsync == "interval":
            now = time.monotonic()
            if now - self._last_sync >= 1.0:
                self._sync()
            else:
                self._unsynced = True
                self._sync_later()
        if self._size > _COMPACT_MIN and self._size > 2 * self._live_size:
            self._compact()

    def _sync(self) -> None:
        self._sync_timer = None
        if self._fd >= 0:
            os.fsync(self._fd)
        self._last_sync = time.monotonic()
        self._unsynced = False

    def _sync_later(self) -> None:
        """What is written now is synced within a second, even if nothing follows."""
        if self._sync_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # used outside an event loop: synced by the next write or close()
        self._sync_timer = loop.call_later(1.0, self._timed_sync)

    def _timed_sync(self) -> None:
        self._sync_timer = None
        if self._unsynced:
            self._sync()

    def _replace(self, table: dict[str, bytes], key: str, record: bytes) -> None:
        old = table.get(key)
        table[key] = record
        self._append(record, len(record) - (0 if old is None else len(old)))

    def _retain_record(self, message: Message, owner: str) -> bytes:
        return _record(_RETAIN, _text(owner) + _encode_message_fields(message))

    @staticmethod
    def _sent_record(cid: str, key: int, packet_id: int, state: str) -> bytes:
        return _record(
            _SENT,
            _text(cid)
            + _U64.pack(key)
            + _U32.pack(packet_id)
            + bytes((1 if state == "pubrel" else 0,)),
        )

    def retained(self, message: Message, owner: str) -> None:
        record = self._retain_record(message, owner)
        old = self._retained.get(message.topic)
        self._retained[message.topic] = (message, owner, len(record))
        self._append(record, len(record) - (0 if old is None else old[2]))

    def retained_cleared(self, topic: str) -> None:
        old = self._retained.pop(topic, None)
        if old is not None:
            self._append(_record(_RETAIN_CLEAR, _text(topic)), -old[2])

    def session_saved(self, session: StoredSession) -> None:
        self._replace(
            self._sessions, session.client_id, _record(_SESSION, _session_fields(session))
        )

    def session_dropped(self, client_id: str) -> None:
        old = self._sessions.pop(client_id, None)
        if old is None:
            return
        freed = len(old)
        for table in (self._subscriptions, self._messages, self._sent):
            records = table.pop(client_id, None)
            if records:
                freed += sum(len(r) for r in records.values())
        self._append(_record(_SESSION_DROP, _text(client_id)), -freed)

    def subscribed(self, client_id: str, topic_filter: str, sub: StoredSubscription) -> None:
        record = _record(
            _SUBSCRIBE, _text(client_id) + _text(topic_filter) + _subscription_fields(sub)
        )
        table = self._subscriptions.setdefault(client_id, {})
        old = table.get(topic_filter)
        table[topic_filter] = record
        self._append(record, len(record) - (0 if old is None else len(old)))

    def unsubscribed(self, client_id: str, topic_filter: str) -> None:
        old = self._subscriptions.get(client_id, {}).pop(topic_filter, None)
        if old is not None:
            self._append(_record(_UNSUBSCRIBE, _text(client_id) + _text(topic_filter)), -len(old))

    def message_queued(self, client_id: str, stored: StoredMessage) -> None:
        record = _record(_MESSAGE, _text(client_id) + _stored_message_fields(stored))
        self._messages.setdefault(client_id, {})[stored.key] = record
        self._append(record, len(record))

    def message_sent(self, client_id: str, key: int, packet_id: int, state: str) -> None:
        record = self._sent_record(client_id, key, packet_id, state)
        table = self._sent.setdefault(client_id, {})
        old = table.get(key)
        table[key] = record
        self._append(record, len(record) - (0 if old is None else len(old)))

    def message_done(self, client_id: str, key: int) -> None:
        messages = self._messages.get(client_id)
        old = None if messages is None else messages.pop(key, None)
        if old is None:
            return
        freed = len(old)
        sent = self._sent.get(client_id)
        if sent is not None:
            old_sent = sent.pop(key, None)
            if old_sent is not None:
                freed += len(old_sent)
        self._append(_record(_DONE, _text(client_id) + _U64.pack(key)), -freed)

    def close(self) -> None:
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._fd >= 0:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def _record(kind: int, body: bytes) -> bytes:
    payload = bytes((kind,)) + body
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
