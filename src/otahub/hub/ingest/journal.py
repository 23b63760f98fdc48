"""A durable log of device reports: acknowledged once on disk, applied behind.

A driver hands a status report (a ThingsBoard ``fw_state``, say) to
:meth:`IngestJournal.record`, which appends it to a file in the data dir.
Everything recorded while one write is on its way goes into the next, so a
burst of N reports costs a few ``write`` + ``fdatasync`` calls, not N
database transactions; the future ``record`` returns completes once the
report is on disk, and only then is the device's PUBACK sent.

A task applies the written reports to the database behind the
acknowledgements, in the order they came, handing each kind's applier all
that is waiting at once, so it can coalesce repeats and commit many in one
transaction. What was written but not applied when the hub died is applied
at its next start (:meth:`replay`), before devices can connect. Applying
is at least once: a report applied just before a crash may be applied
again, which the appliers tolerate (a state the update has passed is
ignored).

The file is emptied whenever everything in it is applied; a small mark file
says how far applying got in between, so a restart does not apply a long
backlog twice. Records carry a CRC: a record torn by a crash mid-write was
never acknowledged, and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.exc import DBAPIError

from otahub.mqtt import NO_ACK

log = logging.getLogger("otahub.hub.ingest")

JOURNAL_FILE = "journal"
MARK_FILE = "journal.applied"
# body length, CRC-32 of the body, when it was received (Unix time); the body is
# the kind (ASCII), a NUL, and the report's bytes
_HEAD = struct.Struct("<IId")
_MARK = struct.Struct("<Q")
#: Written but unapplied reports beyond which acknowledgements wait for the applier.
MAX_BACKLOG = 100_000
#: Reports handed to the appliers at once.
MAX_APPLY = 20_000
#: Shortest time between two batches handed to the appliers: what a device repeats
#: meanwhile (a downloading device's DOWNLOADING) is applied once, not per message.
APPLY_INTERVAL_S = 0.1
#: Longest wait between attempts to apply reports the database refused.
MAX_RETRY_S = 30.0


class Entry(NamedTuple):
    """One report, as its kind's applier gets it (a tuple: one is made per message)."""

    value: Any  # what the driver recorded (after a restart: what its decoder made of the bytes)
    received: float  # Unix time it reached this hub
    replayed: bool  # recorded before this hub last started


# a kind's report bytes back into what the driver recorded (after a restart)
Decode = Callable[[bytes], Any]
# applies a kind's reports, oldest first; raising DBAPIError or OSError retries them
Apply = Callable[[list[Entry]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Kind:
    decode: Decode
    apply: Apply
    prefix: bytes  # the kind and its NUL, ahead of each record's bytes


class IngestJournal:
    def __init__(
        self,
        directory: Path,
        *,
        max_backlog: int = MAX_BACKLOG,
        apply_interval_s: float = APPLY_INTERVAL_S,
        enabled: bool = True,
    ) -> None:
        self.directory = directory
        #: False: ``record`` applies each report before its acknowledgement instead
        #: (the journal still replays what an earlier run left, and writes nothing)
        self.enabled = enabled
        self.max_backlog = max_backlog
        self.apply_interval_s = apply_interval_s
        self._kinds: dict[str, _Kind] = {}
        self._fd = -1
        self._io = ThreadPoolExecutor(1, thread_name_prefix="otahub-ingest")
        # recorded, waiting for the next write: bytes, their futures, their entries
        self._buffer: list[bytes] = []
        self._waiting: list[asyncio.Future[int | None]] = []
        self._buffered: list[tuple[str, Entry, int]] = []  # kind, entry, record size
        # written, not yet applied: (kind, entry, file offset after it)
        self._unapplied: deque[tuple[str, Entry, int]] = deque()
        self._size = 0  # the file's size once every write handed to the I/O thread is done
        self._writer: asyncio.Task[None] | None = None
        self._applier: asyncio.Task[None] | None = None
        self._in_flight = 0  # reports in the write under way
        self._applying = 0  # reports the appliers have now
        self._room = asyncio.Event()
        self._room.set()
        self._replayed = False
        self._closed = False
        self.recorded = 0
        self.applied = 0

    def register(self, kind: str, decode: Decode, apply: Apply) -> None:
        """How reports of ``kind`` are read back after a restart and applied."""
        self._kinds[kind] = _Kind(decode, apply, kind.encode("ascii") + b"\0")

    @property
    def backlog(self) -> int:
        """Reports recorded and not yet applied."""
        return len(self._buffered) + len(self._unapplied) + self._in_flight + self._applying

    # -- recording ---------------------------------------------------------------

    def record(self, kind: str, data: bytes, value: Any) -> Awaitable[int | None]:
        """Append a report: the future gives its PUBACK verdict once it is on disk
        (None), or NO_ACK when it could not be written. With the journal disabled,
        a coroutine that applies the report first (its errors fail the PUBACK)."""
        handler = self._kinds.get(kind)
        if not self.enabled and handler is not None:
            return self._apply_at_once(handler, value)
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        if self._closed or handler is None:
            why = "the journal is closed" if self._closed else "no applier for it"
            log.error("ingest journal: a %s report was not recorded: %s", kind, why)
            done.set_result(NO_ACK)
            return done
        body = handler.prefix + data
        now = time.time()
        self._buffer.append(_HEAD.pack(len(body), zlib.crc32(body), now) + body)
        self._waiting.append(done)
        self._buffered.append((kind, Entry(value, now, False), _HEAD.size + len(body)))
        self.recorded += 1
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return done

    @staticmethod
    async def _apply_at_once(handler: _Kind, value: Any) -> None:
        # a coroutine, not a future: the device's later messages wait for it
        await handler.apply([Entry(value, time.time(), False)])

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._buffer:
                data = b"".join(self._buffer)
                waiting, entries = self._waiting, self._buffered
                self._buffer, self._waiting, self._buffered = [], [], []
                start = self._size
                self._size += len(data)
                self._in_flight = len(entries)
                try:
                    await loop.run_in_executor(self._io, self._append, data, start)
                except OSError as exc:
                    self._size = start
                    log.error(
                        "ingest journal: writing %d report(s) failed (%s); not acknowledged",
                        len(entries),
                        exc,
                    )
                    _settle(waiting, NO_ACK)
                    continue
                except BaseException:
                    _settle(waiting, NO_ACK)
                    raise
                finally:
                    self._in_flight = 0
                end = start
                for kind, entry, size in entries:
                    end += size
                    self._unapplied.append((kind, entry, end))
                self._start_applier()
                if len(self._unapplied) > self.max_backlog:
                    # acknowledgements wait until the applier catches up
                    self._room.clear()
                    try:
                        await self._room.wait()
                    except BaseException:
                        _settle(waiting, None)  # written: acknowledged all the same
                        raise
                _settle(waiting, None)
        finally:
            self._writer = None
            # cancelled: what was not written is not acknowledged
            _settle(self._waiting, NO_ACK)
            self._buffer.clear()
            self._buffered.clear()

    def _append(self, data: bytes, start: int) -> None:
        """In the I/O thread: write at ``start`` and wait for the disk."""
        fd = self._open()
        try:
            written = os.pwrite(fd, data, start)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            os.fdatasync(fd)
        except OSError:
            # what a failed write may have left is not acknowledged: cut it off
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise

    def _open(self) -> int:
        if self._fd < 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / JOURNAL_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            left = os.fstat(fd).st_size
            if left and not self._replayed:
                # only replay() may read an earlier run's reports; new ones start the file
                log.warning(
                    "ingest journal: %d byte(s) of an earlier run's reports were not replayed; "
                    "dropped",
                    left,
                )
                os.ftruncate(fd, 0)
            self._fd = fd
        return self._fd

    # -- applying ------------------------------------------------------------------

    def _start_applier(self) -> None:
        if self._applier is None:
            self._applier = asyncio.create_task(self._apply_all())

    async def _apply_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self._unapplied:
                    began = loop.time()
                    count = min(len(self._unapplied), MAX_APPLY)
                    batch = [self._unapplied.popleft() for _ in range(count)]
                    self._applying = count
                    try:
                        await self._apply([(kind, entry) for kind, entry, _ in batch])
                    finally:
                        self._applying = 0
                    self.applied += count
                    if len(self._unapplied) <= self.max_backlog // 2:
                        self._room.set()
                    if self._unapplied or self._writer is not None:
                        await loop.run_in_executor(self._io, self._mark, batch[-1][2])
                        pause = began + self.apply_interval_s - loop.time()
                        if pause > 0 and not self._closed:
                            await asyncio.sleep(pause)
                if self._writer is not None:
                    return  # its write starts the applier again
                # everything written is applied, and no write is under way: start
                # the file afresh (a write recorded meanwhile goes after the reset)
                self._size = 0
                await loop.run_in_executor(self._io, self._reset)
                if not self._unapplied:
                    return
        finally:
            self._applier = None

    async def _apply(self, batch: list[tuple[str, Entry]]) -> None:
        """Each kind's reports to its applier, the kinds in the order they first came."""
        by_kind: dict[str, list[Entry]] = {}
        for kind, entry in batch:
            by_kind.setdefault(kind, []).append(entry)
        for kind, entries in by_kind.items():
            await self._apply_kind(kind, entries)

    async def _apply_kind(self, kind: str, entries: list[Entry]) -> None:
        wait = 0.5
        while True:
            try:
                await self._kinds[kind].apply(entries)
                return
            except (DBAPIError, OSError) as exc:
                # the store is unavailable: the reports wait for it (and with a
                # full backlog, so do acknowledgements); nothing is dropped
                log.warning(
                    "ingest journal: applying %d %s report(s) failed (%s); again in %g s",
                    len(entries),
                    kind,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, MAX_RETRY_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                # a defect, not an outage: trying again would fail again
                log.exception("ingest journal: applying %d %s report(s) failed", len(entries), kind)
                return

    def _mark(self, offset: int) -> None:
        """In the I/O thread: how far applying got (no fsync: a lost mark costs a re-apply)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / MARK_FILE).write_bytes(_MARK.pack(offset))

    def _reset(self) -> None:
        """In the I/O thread, with no write pending: empty the file, then the mark."""
        os.ftruncate(self._open(), 0)
        self._mark(0)

    # -- start and stop ------------------------------------------------------------------

    async def replay(self) -> int:
        """Apply what the last run wrote and did not apply; how many reports that was.

        Call once, after every kind is registered and before devices connect.
        """
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(self._io, self._read_unapplied)
        self._replayed = True
        if records is None:
            return 0  # no file: nothing was ever recorded here
        batch: list[tuple[str, Entry]] = []
        for kind, received, data in records:
            handler = self._kinds.get(kind)
            if handler is None:
                log.error(
                    "ingest journal: a %s report of the last run has no applier; dropped", kind
                )
                continue
            try:
                value = handler.decode(data)
            except Exception as exc:
                log.error(
                    "ingest journal: a %s report of the last run is unreadable (%s); dropped",
                    kind,
                    exc,
                )
                continue
            batch.append((kind, Entry(value, received, True)))
        if batch:
            log.info("ingest journal: applying %d report(s) the last run did not", len(batch))
        for start in range(0, len(batch), MAX_APPLY):
            await self._apply(batch[start : start + MAX_APPLY])
        self.applied += len(batch)
        # always: new records start at the beginning, and the old mark must not
        # point past them at the next replay
        await loop.run_in_executor(self._io, self._reset)
        return len(batch)

    def _read_unapplied(self) -> list[tuple[str, float, bytes]] | None:
        """In the I/O thread: the records after the mark, up to the first torn one
        (None: there is no journal file)."""
        try:
            data = (self.directory / JOURNAL_FILE).read_bytes()
        except FileNotFoundError:
            return None
        offset = 0
        with contextlib.suppress(FileNotFoundError, struct.error):
            (offset,) = _MARK.unpack((self.directory / MARK_FILE).read_bytes())
        records: list[tuple[str, float, bytes]] = []
        while offset + _HEAD.size <= len(data):
            length, crc, received = _HEAD.unpack_from(data, offset)
            body = data[offset + _HEAD.size : offset + _HEAD.size + length]
            if len(body) != length or zlib.crc32(body) != crc or b"\0" not in body:
                log.warning(
                    "ingest journal: a torn record at byte %d (never acknowledged); "
                    "%d byte(s) after it dropped",
                    offset,
                    len(data) - offset,
                )
                break
            kind, _, report = body.partition(b"\0")
            records.append((kind.decode("ascii", "replace"), received, report))
            offset += _HEAD.size + length
        return records

    async def close(self) -> None:
        """Record no more; write and apply what is recorded. Cancelled (a shutdown
        out of time), it stops both: what is unapplied waits in the file for the
        next start."""
        self._closed = True
        try:
            while self._writer is not None or self._applier is not None:
                running = [t for t in (self._writer, self._applier) if t is not None]
                await asyncio.wait(running)
        except asyncio.CancelledError:
            for task in (self._writer, self._applier):
                if task is not None:
                    task.cancel()
            raise
        finally:
            if self._writer is None and self._applier is None:
                self._io.shutdown(wait=True)
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1


def _settle(futures: list[asyncio.Future[int | None]], verdict: int | None) -> None:
    for future in futures:
        if not future.done():
            future.set_result(verdict)
    futures.clear()
