"""Reading byte ranges of stored packages for many devices at once.

Every chunk is one ``os.pread`` on a descriptor shared by all sessions: no
open per chunk, no seek state, no copy of the file per device. The page
cache does the rest, so a pread of a hot 64 KiB range is cheap enough to do
on the event loop itself.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path


class OpenBlobs:
    """A bounded LRU of read-only descriptors, one per blob file."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._fds: OrderedDict[Path, int] = OrderedDict()

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._fds[path] = fd
        while len(self._fds) > self.limit:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def stat(self, path: Path) -> os.stat_result:
        """The file behind the descriptor that reads are served from."""
        return os.fstat(self._fd(path))

    def forget(self, path: Path) -> None:
        """Close the descriptor, so the next read opens the file now at ``path``."""
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def read(self, path: Path, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; shorter only if the file is."""
        if end <= start:
            return b""
        fd = self._fd(path)
        data = os.pread(fd, end - start, start)
        if len(data) == end - start:
            return data
        parts = [data]  # pread may return less for large ranges
        pos = start + len(data)
        while pos < end:
            more = os.pread(fd, end - pos, pos)
            if not more:
                break
            parts.append(more)
            pos += len(more)
        return b"".join(parts)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
