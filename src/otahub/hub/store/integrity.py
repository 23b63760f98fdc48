"""Whether a stored blob still holds the bytes its SHA-256 names.

A blob is hashed before the hub first serves it — after its upload, after
start-up, or when its file changed — and the verdict is kept with the file's *stamp*: size,
modification time, inode, device and status-change time (ctime). Serving an
unchanged blob then costs one ``stat`` and a comparison; a large file is
hashed in a worker thread, once however many devices ask for it at once.

What the stamp sees: any write through the file system. Rewriting a blob in
place with bytes of the same size and setting its mtime back with
``os.utime`` keeps size, mtime and inode, but the kernel sets ctime to the
current time on every write and every ``utime``, and nothing short of
changing the system clock sets it back; so the next request hashes the
file again and finds the change. File times come from the kernel's coarse
clock, though: a write within the same tick as the read that made a verdict
leaves the stamp as it was (git's "racy" index entries). A verdict whose
file changed less than ``RACY_NS`` before it was made is therefore not
trusted; the next request hashes again, until the file has been still for
that long. What the stamp cannot see: bytes that change beneath the file
system (a failing disk, a block device written directly, a network file
system that keeps ctime), or a clock set back around the tampering.
``otahub firmware verify`` reads every byte again whatever the stamp says,
for those.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

_READ = 1024 * 1024  # hashlib releases the GIL for chunks this large
_ATTEMPTS = 3  # a file that changes while being hashed is hashed again
#: a verdict made this soon after its file changed may have missed a later write
RACY_NS = 100_000_000


@dataclass(frozen=True, slots=True)
class FileStamp:
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a blob's file held when it was last read."""

    sha256: str
    #: the SHA-256 of the bytes read; None when there is no file
    actual: str | None
    #: the first verdict of this process for the blob, or unlike the one before:
    #: what deserves a log line (a re-read that finds the same is no news)
    changed: bool

    @property
    def ok(self) -> bool:
        return self.actual == self.sha256

    @property
    def missing(self) -> bool:
        return self.actual is None


class BlobMismatch(Exception):
    """A blob's bytes no longer match the SHA-256 it is stored under."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(
            f"blob {verdict.sha256} no longer matches its SHA-256 (its bytes hash to "
            f"{verdict.actual})"
        )
        self.verdict = verdict


def _hash_file(path: Path) -> tuple[FileStamp, str, FileStamp]:
    """(stamp before, SHA-256, stamp after) of one read of the whole file."""
    with path.open("rb", buffering=0) as f:
        before = FileStamp.of(os.fstat(f.fileno()))
        digest = hashlib.sha256()
        buffer = bytearray(_READ)
        view = memoryview(buffer)
        while n := f.readinto(buffer):
            digest.update(view[:n])
        after = FileStamp.of(os.fstat(f.fileno()))
    return before, digest.hexdigest(), after


class VerdictCache:
    """SHA-256 verdicts per blob, each valid while its file's stamp is unchanged."""

    def __init__(self) -> None:
        # sha256 -> (stamp, actual digest, whether the stamp can be trusted for good)
        self._verdicts: dict[str, tuple[FileStamp, str, bool]] = {}
        self._running: dict[str, asyncio.Future[Verdict]] = {}

    def cached(self, sha256: str, stamp: FileStamp) -> Verdict | None:
        """The verdict for a file with this stamp, if one was made; no I/O."""
        known = self._verdicts.get(sha256)
        if known is None or known[0] != stamp:
            return None
        if not known[2]:
            return None  # racy: made in the tick the file last changed
        return Verdict(sha256, known[1], changed=False)

    def remember(self, sha256: str, stamp: FileStamp, actual: str) -> None:
        """Record what a file with ``stamp`` hashed to (an upload hashes while it writes)."""
        settled = stamp.ctime_ns < time.time_ns() - RACY_NS
        self._verdicts[sha256] = (stamp, actual, settled)

    def forget(self, sha256: str) -> None:
        self._verdicts.pop(sha256, None)

    async def check(self, sha256: str, path: Path, *, force: bool = False) -> Verdict:
        """The verdict for the file at ``path``: cached when its stamp is unchanged
        (unless ``force``), else from hashing it in a worker thread."""
        if not force:
            try:
                stamp = FileStamp.of(os.stat(path))
            except FileNotFoundError:
                self.forget(sha256)
                return Verdict(sha256, None, changed=True)
            known = self.cached(sha256, stamp)
            if known is not None:
                return known
        running = self._running.get(sha256)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._running[sha256] = future
        try:
            verdict = await self._hash(sha256, path)
            future.set_result(verdict)
            return verdict
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so no "never retrieved" warning
            raise
        finally:
            del self._running[sha256]

    async def _hash(self, sha256: str, path: Path) -> Verdict:
        actual = ""
        for _ in range(_ATTEMPTS):
            try:
                before, actual, after = await asyncio.to_thread(_hash_file, path)
            except FileNotFoundError:
                self.forget(sha256)
                return Verdict(sha256, None, changed=True)
            if before == after:
                previous = self._verdicts.get(sha256)
                self.remember(sha256, after, actual)
                return Verdict(sha256, actual, changed=previous is None or previous[1] != actual)
        # still being written: what was read is no verdict to keep
        self.forget(sha256)
        return Verdict(sha256, actual, changed=True)
