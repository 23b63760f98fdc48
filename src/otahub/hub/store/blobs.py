"""Content-addressed blob store: firmware files keyed by their SHA-256.

The interface is what the hub needs from any backend (a directory here, an
S3-compatible bucket later): stream bytes in while every checksum is computed
once, stream ranges out, and tell whether a local file exists for zero-copy
sending.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from otahub.hub.store.integrity import BlobMismatch, FileStamp, Verdict, VerdictCache
from otahub.protocols.checksums import Algorithm, MultiHasher

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PATHS_KEPT = 4096  # blob paths remembered (path_for)
# Chunks are gathered to this size before one trip to a worker thread, so that
# hashing and disk writes do not stall the event loop and thread hops stay rare.
_FLUSH_SIZE = 1024 * 1024
READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int
    checksums: dict[Algorithm, str]

    @property
    def sha256(self) -> str:
        return self.checksums[Algorithm.SHA256]


class BlobUpload(abc.ABC):
    """One blob being written. Use as an async context manager; ``commit`` keeps it."""

    @abc.abstractmethod
    async def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes written so far."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Forget everything written (a resumed download that must start over)."""

    @abc.abstractmethod
    async def commit(self) -> BlobInfo: ...

    @abc.abstractmethod
    async def abort(self) -> None: ...

    async def __aenter__(self) -> BlobUpload:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.abort()


LatencyObserver = Callable[[str, float], None]


class BlobStore(abc.ABC):
    #: told the seconds each operation took, by name (the hub's metrics)
    latency_observer: LatencyObserver | None = None

    @contextlib.contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        observe = self.latency_observer
        if observe is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            observe(operation, time.perf_counter() - start)

    @abc.abstractmethod
    def begin(self) -> BlobUpload: ...

    @abc.abstractmethod
    async def exists(self, sha256: str) -> bool: ...

    @abc.abstractmethod
    async def delete(self, sha256: str) -> None: ...

    @abc.abstractmethod
    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of a blob, in chunks."""

    def local_path(self, sha256: str) -> Path | None:
        """A file on this machine holding the blob, if the backend has one."""
        return None

    async def verify(self, sha256: str) -> Verdict:
        """Read the whole blob again and say whether its bytes still match ``sha256``."""
        if not await self.exists(sha256):
            return Verdict(sha256, None, changed=True)
        digest = hashlib.sha256()
        async for chunk in self.read(sha256):
            digest.update(chunk)
        return Verdict(sha256, digest.hexdigest(), changed=True)

    def known_intact(self, sha256: str, st: os.stat_result) -> bool:
        """Whether a file with this ``stat`` was verified to hold ``sha256``; no I/O.

        False means "not known": ask ``verified_path``.
        """
        return False

    async def verified_path(self, sha256: str) -> Path | None:
        """``local_path``, once the file's bytes are known to match ``sha256``.

        None when there is no local file; raises ``BlobMismatch`` when its
        bytes changed. Every path that serves a blob to a device asks this.
        """
        path = self.local_path(sha256)
        if path is None:
            return None
        verdict = await self.verify(sha256)
        if verdict.missing:
            return None
        if not verdict.ok:
            raise BlobMismatch(verdict)
        return path


class FileBlobStore(BlobStore):
    """Blobs as files ``<root>/sha256/<aa>/<sha256>``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: SHA-256 verdicts per blob, kept while the file is unchanged (integrity.py)
        self.verdicts = VerdictCache()
        self._paths: dict[str, Path] = {}
        self._tmp = root / "tmp"
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Partial files of a previous run that died mid-upload are garbage.
        for stale in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                stale.unlink()

    def path_for(self, sha256: str) -> Path:
        # Asked on every download request: three pathlib joins showed in its CPU.
        path = self._paths.get(sha256)
        if path is not None:
            return path
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a lowercase SHA-256 hex digest: {sha256!r}")
        path = self.root / "sha256" / sha256[:2] / sha256
        if len(self._paths) >= _PATHS_KEPT:
            self._paths.clear()
        self._paths[sha256] = path
        return path

    def begin(self) -> BlobUpload:
        return _FileUpload(self)

    async def exists(self, sha256: str) -> bool:
        with self.timed("exists"):
            return await asyncio.to_thread(self.path_for(sha256).is_file)

    async def delete(self, sha256: str) -> None:
        path = self.path_for(sha256)

        def _delete() -> None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        with self.timed("delete"):
            await asyncio.to_thread(_delete)
        self.verdicts.forget(sha256)

    def local_path(self, sha256: str) -> Path | None:
        path = self.path_for(sha256)
        return path if path.is_file() else None

    def known_intact(self, sha256: str, st: os.stat_result) -> bool:
        verdict = self.verdicts.cached(sha256, FileStamp.of(st))
        return verdict is not None and verdict.ok

    async def verify(self, sha256: str) -> Verdict:
        """Hash the file again, whatever the cached verdict says (a scrub)."""
        with self.timed("verify"):
            return await self.verdicts.check(sha256, self.path_for(sha256), force=True)

    async def verified_path(self, sha256: str) -> Path | None:
        # One stat on the event loop when the file is unchanged since its last
        # verdict; a hash in a worker thread when it is new to this process or changed.
        path = self.path_for(sha256)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        verdict = self.verdicts.cached(sha256, FileStamp.of(st))
        if verdict is None:
            with self.timed("verify"):
                verdict = await self.verdicts.check(sha256, path)
        if verdict.missing:
            return None
        if not verdict.ok:
            raise BlobMismatch(verdict)
        return path

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self.path_for(sha256)
        f = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(f.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            f.close()


class _FileUpload(BlobUpload):
    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        self._tmp_path = store._tmp / f"upload-{secrets.token_hex(8)}"
        self._file = self._tmp_path.open("wb")
        self._hasher = MultiHasher()
        self._buffer = bytearray()
        self._size = 0
        self._done = False
        self._pending: asyncio.Future[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise RuntimeError("blob upload already finished")
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= _FLUSH_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        """Hand the buffer to a worker thread once the previous batch is done.

        One batch is hashed and written while the next one is received, so
        network and CPU overlap and at most two batches are ever held.
        """
        await self._settle()
        if not self._buffer:
            return
        chunk = bytes(self._buffer)
        self._buffer.clear()

        def _work() -> None:
            self._hasher.update(chunk)
            self._file.write(chunk)

        self._pending = asyncio.ensure_future(asyncio.to_thread(_work))

    async def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def reset(self) -> None:
        await self._settle()
        self._buffer.clear()
        self._size = 0
        self._hasher = MultiHasher()

        def _truncate() -> None:
            self._file.seek(0)
            self._file.truncate()

        await asyncio.to_thread(_truncate)

    async def commit(self) -> BlobInfo:
        await self._flush()
        await self._settle()
        info = BlobInfo(size=self._hasher.size, checksums=self._hasher.hexdigests())
        final = self._store.path_for(info.sha256)

        def _finish() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final.parent.mkdir(parents=True, exist_ok=True)
            # rename is atomic: readers see no file or the whole file. The same
            # content uploaded twice simply replaces identical bytes.
            os.replace(self._tmp_path, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

        with self._store.timed("commit"):
            await asyncio.to_thread(_finish)
        self._done = True
        return info

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            await self._settle()  # the worker must be off the file before it closes

        def _discard() -> None:
            self._file.close()
            with contextlib.suppress(FileNotFoundError):
                self._tmp_path.unlink()

        await asyncio.to_thread(_discard)
