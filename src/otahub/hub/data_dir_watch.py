"""Notice when the hub's files are removed or replaced under it.

Open files keep working after their directory is deleted (or a volume is
unmounted lazily): a hub would go on writing its database and packages
where nobody will ever read them again, and lose all of it at the next
start. Watching the data dir (and a SQLite file) for that turns it into a
part of the hub that dies, so the hub stops and says why.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

DEFAULT_INTERVAL_S = 2.0


class DataDirGone(OSError):
    """A watched path no longer is the file or directory the hub started with."""


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def watch_paths(
    paths: list[Path], interval_s: float = DEFAULT_INTERVAL_S
) -> Coroutine[Any, Any, None]:
    """A coroutine that never returns; it raises :class:`DataDirGone` once one
    of ``paths`` is gone or replaced.

    The paths are looked at now, not when the coroutine first runs: a removal
    right after start-up must be seen as one.
    """
    return _watch({path: _identity(path) for path in paths}, interval_s)


async def _watch(started: dict[Path, tuple[int, int]], interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        for path, identity in started.items():
            try:
                now = _identity(path)
            except FileNotFoundError:
                raise DataDirGone(f"{path} was removed while the hub ran") from None
            if now != identity:
                raise DataDirGone(f"{path} was replaced while the hub ran")
