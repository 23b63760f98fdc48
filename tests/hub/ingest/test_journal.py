"""The ingest journal: on disk before the acknowledgement, applied behind it, replayed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from otahub.hub.ingest import Entry, IngestJournal
from otahub.hub.ingest.journal import _MARK, JOURNAL_FILE, MARK_FILE
from otahub.mqtt import NO_ACK

KIND = "test.report"


class Collector:
    """An applier that keeps what it is given; ``gate`` holds it back when cleared."""

    def __init__(self) -> None:
        self.batches: list[list[Entry]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def apply(self, entries: list[Entry]) -> None:
        await self.gate.wait()
        self.batches.append(entries)

    @property
    def values(self) -> list[object]:
        return [entry.value for batch in self.batches for entry in batch]


def journal_with(directory: Path, collector: Collector, **kwargs: int) -> IngestJournal:
    journal = IngestJournal(directory, **kwargs)
    journal.register(KIND, bytes.decode, collector.apply)
    return journal


async def settle(journal: IngestJournal) -> None:
    for _ in range(500):
        if journal.backlog == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backlog {journal.backlog} not applied")


async def test_reports_are_acknowledged_once_written_then_applied_in_order(tmp_path: Path) -> None:
    collector = Collector()
    journal = journal_with(tmp_path, collector)
    await journal.replay()
    futures = [journal.record(KIND, str(n).encode(), str(n)) for n in range(100)]
    assert await asyncio.gather(*futures) == [None] * 100
    await settle(journal)
    assert collector.values == [str(n) for n in range(100)]
    # recorded in one tick: written together and handed to the applier as one batch
    assert len(collector.batches) == 1
    assert not any(entry.replayed for entry in collector.batches[0])
    assert (journal.recorded, journal.applied) == (100, 100)
    await journal.close()
    # everything applied: the file starts afresh
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0


async def test_the_acknowledgement_does_not_wait_for_the_applier(tmp_path: Path) -> None:
    collector = Collector()
    collector.gate.clear()
    journal = journal_with(tmp_path, collector)
    await journal.replay()
    assert await asyncio.wait_for(journal.record(KIND, b"a", "a"), 5) is None
    assert collector.batches == [] and journal.backlog == 1
    assert (tmp_path / JOURNAL_FILE).stat().st_size > 0
    collector.gate.set()
    await settle(journal)
    assert collector.values == ["a"]
    await journal.close()


async def test_a_full_backlog_holds_acknowledgements_until_the_applier_catches_up(
    tmp_path: Path,
) -> None:
    collector = Collector()
    collector.gate.clear()
    journal = journal_with(tmp_path, collector, max_backlog=5)
    await journal.replay()
    first = [journal.record(KIND, b"x", n) for n in range(3)]
    await asyncio.gather(*first)
    more = [journal.record(KIND, b"y", n) for n in range(3, 10)]
    await asyncio.sleep(0.3)
    assert not any(f.done() for f in more), "acknowledged past the backlog limit"
    collector.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*more), 5) == [None] * 7
    await settle(journal)
    assert collector.values == list(range(10))
    await journal.close()


async def test_an_unavailable_database_is_tried_again_and_nothing_is_dropped(
    tmp_path: Path,
) -> None:
    attempts: list[int] = []

    async def apply(entries: list[Entry]) -> None:
        attempts.append(len(entries))
        if len(attempts) == 1:
            raise OperationalError("UPDATE updates", {}, Exception("database is locked"))

    journal = IngestJournal(tmp_path)
    journal.register(KIND, bytes.decode, apply)
    await journal.replay()
    await asyncio.gather(*(journal.record(KIND, b"r", n) for n in range(4)))
    await settle(journal)
    assert attempts == [4, 4]
    await journal.close()


async def test_unknown_kinds_and_a_closed_journal_are_not_acknowledged(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, Collector())
    await journal.replay()
    assert await journal.record("nobody.applies", b"x", None) == NO_ACK
    await journal.close()
    assert await journal.record(KIND, b"x", "x") == NO_ACK


async def test_close_applies_what_is_recorded(tmp_path: Path) -> None:
    collector = Collector()
    journal = journal_with(tmp_path, collector)
    await journal.replay()
    for n in range(10):
        journal.record(KIND, str(n).encode(), str(n))
    await journal.close()
    assert collector.values == [str(n) for n in range(10)]
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from otahub.hub.ingest import IngestJournal

    async def never(entries):
        await asyncio.Event().wait()  # the database never answers before the kill

    async def main():
        journal = IngestJournal(Path(sys.argv[1]))
        journal.register("test.report", bytes.decode, never)
        await journal.replay()
        for n in range(int(sys.argv[2])):
            assert await journal.record("test.report", f"r{n}".encode(), None) is None
        print("acknowledged", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_what_was_acknowledged_before_a_kill_is_applied_at_the_next_start(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), "50"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acknowledged"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    async def restart() -> tuple[int, Collector]:
        collector = Collector()
        journal = journal_with(tmp_path, collector)
        count = await journal.replay()
        await journal.close()
        return count, collector

    count, collector = asyncio.run(restart())
    assert count == 50
    assert collector.values == [f"r{n}" for n in range(50)]
    assert all(entry.replayed for batch in collector.batches for entry in batch)
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0
    # applied once: a second start finds nothing
    count, collector = asyncio.run(restart())
    assert count == 0 and collector.values == []


async def test_a_torn_last_record_is_dropped_and_the_rest_replayed(tmp_path: Path) -> None:
    collector = Collector()
    collector.gate.clear()
    journal = journal_with(tmp_path, collector)
    await journal.replay()
    await asyncio.gather(*(journal.record(KIND, f"r{n}".encode(), None) for n in range(3)))
    # a crash in the middle of the next write: half a record at the end
    path = tmp_path / JOURNAL_FILE
    path.write_bytes(path.read_bytes() + b"\x20\x00\x00\x00\x01\x02")
    again = Collector()
    assert await journal_with(tmp_path, again).replay() == 3
    assert again.values == ["r0", "r1", "r2"]


@pytest.mark.parametrize("damage", ["unknown kind", "unreadable"])
async def test_a_report_no_applier_can_read_is_dropped_with_an_error(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = IngestJournal(tmp_path)
    gate = Collector()
    gate.gate.clear()  # nothing is applied before the "crash"
    writer.register("other.kind", bytes.decode, gate.apply)
    writer.register(KIND, bytes.decode, gate.apply)
    await writer.replay()
    kind = "other.kind" if damage == "unknown kind" else KIND
    data = b"fine" if damage == "unknown kind" else b"\xff\xfe"
    await writer.record(kind, data, None)
    await writer.record(KIND, b"good", None)
    collector = Collector()
    assert await journal_with(tmp_path, collector).replay() == 1
    assert collector.values == ["good"]
    assert "dropped" in caplog.text


async def test_records_after_a_start_that_found_only_applied_ones_are_replayed(
    tmp_path: Path,
) -> None:
    first = Collector()
    first.gate.clear()
    journal = journal_with(tmp_path, first)
    await journal.replay()
    await asyncio.gather(*(journal.record(KIND, b"old", None) for _ in range(3)))
    # as if the run had applied all three and died before emptying the file
    size = (tmp_path / JOURNAL_FILE).stat().st_size
    (tmp_path / MARK_FILE).write_bytes(_MARK.pack(size))
    second = Collector()
    second.gate.clear()
    restarted = journal_with(tmp_path, second)
    assert await restarted.replay() == 0
    await restarted.record(KIND, b"new", None)
    # the next run must find the new record, not look past it from the old mark
    third = Collector()
    assert await journal_with(tmp_path, third).replay() == 1
    assert third.values == ["new"]


async def test_a_disabled_journal_applies_each_report_before_its_acknowledgement(
    tmp_path: Path,
) -> None:
    collector = Collector()
    journal = IngestJournal(tmp_path, enabled=False)
    journal.register(KIND, bytes.decode, collector.apply)
    await journal.replay()
    pending = journal.record(KIND, b"a", "a")
    assert not isinstance(pending, asyncio.Future)  # the session's next message waits
    assert collector.values == []
    assert await pending is None
    assert collector.values == ["a"]
    assert journal.recorded == 0 and not (tmp_path / JOURNAL_FILE).exists()
