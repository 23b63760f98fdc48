"""The directory behind ``/te/v1/files/<path>``: user files and firmware links.

Firmware offered to a child is a symlink ``<child>/firmware_update/<key>``
into the hub's blob store, as upstream links into its cache: one stored copy
serves every child. Unlike upstream, a link is removed when its update ends.
Every write goes to a temporary file renamed over the target, so a file being
served (memory-mapped) is never truncated in place.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from otahub.protocols import tedge_legacy as legacy

_SHA256 = re.compile(r"[0-9a-f]{64}")  # the name of every file in the blob store


class FileTransferRoot:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, path: legacy.FileTransferPath) -> Path:
        """The file for an already validated path (``parse_file_path`` refused traversal)."""
        return self.root.joinpath(*path.segments)

    def link_firmware(self, child: str, key: str, target: Path) -> None:
        """Serve ``target`` as ``<child>/firmware_update/<key>`` (replacing an older link)."""
        legacy.file_path(child, key)  # validates child and key as single segments
        link = self.root / child / legacy.OPERATION / key
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{key}.{secrets.token_hex(4)}.link")
        os.symlink(target, tmp)
        try:
            os.replace(tmp, link)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def firmware_blob(self, path: legacy.FileTransferPath) -> str | None:
        """The SHA-256 of the blob a firmware link points to; None for any other file."""
        segments = path.segments
        if len(segments) != 3 or segments[1] != legacy.OPERATION:
            return None
        try:
            target = os.readlink(self.path_of(path))
        except OSError:  # not there, or a file a device put (not a link)
            return None
        name = Path(target).name
        return name if _SHA256.fullmatch(name) else None

    def unlink_firmware(self, child: str, key: str) -> None:
        link = self.root / child / legacy.OPERATION / key
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(link.lstat().st_mode):
                link.unlink()

    @staticmethod
    def temporary_for(target: Path) -> Path:
        return target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")


def etag_of(result: os.stat_result) -> str:
    """A strong tag from inode, size and modification time.

    Files are only ever replaced by renaming a new file over them, which gives
    a new inode, so the tag changes whenever the bytes do.
    """
    return f"{result.st_ino:x}-{result.st_size:x}-{result.st_mtime_ns:x}"
