"""The hub's copy of the repository metadata: files as TUF clients fetch them.

The directory holds ``N.root.json`` (every version: clients walk the chain),
``N.targets.json`` and ``N.snapshot.json`` (consistent snapshots: a client
that read one timestamp fetches exactly the versions it names) and
``timestamp.json``. The targets metadata comes signed from the publisher;
the hub signs only snapshot and timestamp, with its online keys.

Files are replaced atomically, and the versioned files a timestamp names
are written before that timestamp, so a client never finds a name it
cannot fetch.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from otahub.signing.metadata import (
    SNAPSHOT_LIFETIME,
    TIMESTAMP_LIFETIME,
    MetadataError,
    check_next_root,
    check_signed_by,
    parse,
    sign,
    snapshot_of,
    timestamp_of,
    to_bytes,
    utcnow,
    with_target,
)

log = logging.getLogger("otahub.signing")

TIMESTAMP_FILE = "timestamp.json"
#: Older snapshot and targets versions kept for clients in the middle of a refresh.
KEEP_VERSIONS = 8
_VERSIONED = re.compile(r"(\d+)\.(root|targets|snapshot)\.json")


@dataclass(frozen=True)
class OnlineKeys:
    """The keys the hub signs with; ``targets`` only in the hub-signs-targets mode."""

    snapshot: Signer
    timestamp: Signer
    targets: Signer | None = None


class Repository:
    """Current metadata in memory, every published version on disk."""

    def __init__(
        self,
        directory: Path,
        keys: OnlineKeys,
        *,
        timestamp_lifetime: timedelta = TIMESTAMP_LIFETIME,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.dir = directory
        self.keys = keys
        self.timestamp_lifetime = timestamp_lifetime
        self.now = now
        self.root: Metadata[Root]
        self.targets: Metadata[Targets]
        self.snapshot: Metadata[Snapshot] | None = None
        self.timestamp: Metadata[Timestamp] | None = None

    # -- opening ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        keys: OnlineKeys,
        *,
        roots: Sequence[bytes],
        initial_targets: bytes | None,
        timestamp_lifetime: timedelta = TIMESTAMP_LIFETIME,
        now: Callable[[], datetime] = utcnow,
    ) -> Repository:
        """Load ``directory``, add the newer ``roots`` (a chain), sign what is due.

        ``roots`` are the root versions from the key directory; the first one
        the directory lacks must follow its newest root. ``initial_targets``
        is used when the directory has no targets metadata yet.
        """
        repo = cls(directory, keys, timestamp_lifetime=timestamp_lifetime, now=now)
        directory.mkdir(parents=True, exist_ok=True)
        repo._load(roots, initial_targets)
        repo._check_online_keys()
        repo.refresh(force=not repo._online_signatures_valid())
        return repo

    def _load(self, roots: Sequence[bytes], initial_targets: bytes | None) -> None:
        stored = self._newest("root")
        candidates = sorted((parse(r, Root) for r in roots), key=lambda md: md.signed.version)
        if stored is None:
            if not candidates:
                raise MetadataError("no root metadata: give the key directory's online/ files")
            first = candidates[0]
            check_signed_by(first.signed, "root", first)
            self.root = first
            self._write(f"{first.signed.version}.root.json", to_bytes(first))
        else:
            self.root = parse(stored, Root)
        for candidate in candidates:
            if candidate.signed.version > self.root.signed.version:
                self.add_root(to_bytes(candidate), refresh=False)
        targets = self._newest("targets")
        if targets is None:
            if initial_targets is None:
                raise MetadataError("no targets metadata: give the key directory's online/ files")
            md = parse(initial_targets, Targets)
            check_signed_by(self.root.signed, "targets", md)
            self.targets = md
            self._write(f"{md.signed.version}.targets.json", to_bytes(md))
        else:
            self.targets = parse(targets, Targets)
        snapshot = self._newest("snapshot")
        self.snapshot = parse(snapshot, Snapshot) if snapshot is not None else None
        timestamp = self._read(TIMESTAMP_FILE)
        self.timestamp = parse(timestamp, Timestamp) if timestamp is not None else None

    def _check_online_keys(self, root: Root | None = None) -> None:
        root = root or self.root.signed
        roles = root.roles
        pairs: list[tuple[str, Signer]] = [
            ("snapshot", self.keys.snapshot),
            ("timestamp", self.keys.timestamp),
        ]
        if self.keys.targets is not None:
            pairs.append(("targets", self.keys.targets))
        for role, signer in pairs:
            if signer.public_key.keyid not in roles[role].keyids:
                raise MetadataError(
                    f"the {role} key given to the hub is not the {role} key of root version "
                    f"{root.version} (rotated? give the key directory's current online/ files)"
                )

    def _online_signatures_valid(self) -> bool:
        """Whether the stored snapshot and timestamp verify under the current root."""
        if self.snapshot is None or self.timestamp is None:
            return False
        try:
            check_signed_by(self.root.signed, "snapshot", self.snapshot)
            check_signed_by(self.root.signed, "timestamp", self.timestamp)
        except MetadataError:
            return False
        snap_meta = self.snapshot.signed.meta.get("targets.json")
        return (
            snap_meta is not None
            and snap_meta.version == self.targets.signed.version
            and self.timestamp.signed.snapshot_meta.version == self.snapshot.signed.version
        )

    # -- changes ------------------------------------------------------------

    def publish_targets(self, data: bytes) -> Metadata[Targets]:
        """Accept new targets metadata from the publisher; re-sign snapshot and timestamp."""
        md = parse(data, Targets)
        self._check_targets(md)
        self._write(f"{md.signed.version}.targets.json", to_bytes(md))
        self.targets = md
        self._sign_snapshot()
        return md

    def _check_targets(self, md: Metadata[Targets]) -> None:
        check_signed_by(self.root.signed, "targets", md)
        current = self.targets.signed.version
        if md.signed.version <= current:
            raise MetadataError(
                f"targets version {md.signed.version} is not newer than the current {current} "
                "(signed against an old copy? fetch the current targets metadata and sign again)"
            )
        if md.signed.is_expired(self.now()):
            raise MetadataError(f"targets metadata expired at {md.signed.expires.isoformat()}")

    def sign_targets(self, target: TargetFile) -> Metadata[Targets]:
        """The hub-signs-targets mode: add ``target`` and sign with the hub's targets key."""
        if self.keys.targets is None:
            raise MetadataError("the hub holds no targets key")
        md = sign(with_target(self.targets, target, self.now()), self.keys.targets)
        return self.publish_targets(to_bytes(md))

    def add_root(self, data: bytes, *, refresh: bool = True) -> Metadata[Root]:
        """Accept the next root version (signed by the current root keys and its own)."""
        md = parse(data, Root)
        check_next_root(self.root.signed, md)
        if refresh:
            # Never serve a root the hub cannot keep signing for.
            self._check_online_keys(md.signed)
        self._write(f"{md.signed.version}.root.json", to_bytes(md))
        self.root = md
        log.info("root metadata version %d", md.signed.version)
        if refresh:
            self.refresh(force=True)
        return md

    def refresh(self, *, force: bool = False) -> bool:
        """Re-sign snapshot and timestamp when half their lifetime is gone; whether it did."""
        now = self.now()
        if force or _due(self.snapshot, now, SNAPSHOT_LIFETIME):
            self._sign_snapshot()
            return True
        if _due(self.timestamp, now, self.timestamp_lifetime):
            self._sign_timestamp()
            return True
        return False

    def _sign_snapshot(self) -> None:
        version = self.snapshot.signed.version + 1 if self.snapshot is not None else 1
        md = sign(snapshot_of(self.targets, version, self.now()), self.keys.snapshot)
        self._write(f"{version}.snapshot.json", to_bytes(md))
        self.snapshot = md
        self._sign_timestamp()
        self._prune()

    def _sign_timestamp(self) -> None:
        assert self.snapshot is not None
        version = self.timestamp.signed.version + 1 if self.timestamp is not None else 1
        md = timestamp_of(self.snapshot, version, self.now(), self.timestamp_lifetime)
        sign(md, self.keys.timestamp)
        self._write(TIMESTAMP_FILE, to_bytes(md))
        self.timestamp = md

    # -- queries ------------------------------------------------------------

    def target(self, path: str) -> TargetFile | None:
        return self.targets.signed.targets.get(path)

    def next_refresh(self) -> datetime:
        """When :meth:`refresh` next has work to do."""
        assert self.snapshot is not None and self.timestamp is not None
        return min(
            self.snapshot.signed.expires - SNAPSHOT_LIFETIME / 2,
            self.timestamp.signed.expires - self.timestamp_lifetime / 2,
        )

    # -- files --------------------------------------------------------------

    def _newest(self, role: str) -> bytes | None:
        versions = self._versions(role)
        return self._read(f"{versions[-1]}.{role}.json") if versions else None

    def _versions(self, role: str) -> list[int]:
        found: list[int] = []
        for name in os.listdir(self.dir):
            match = _VERSIONED.fullmatch(name)
            if match is not None and match.group(2) == role:
                found.append(int(match.group(1)))
        return sorted(found)

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.dir / name).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, name: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _prune(self) -> None:
        for role in ("snapshot", "targets"):
            for version in self._versions(role)[:-KEEP_VERSIONS]:
                (self.dir / f"{version}.{role}.json").unlink(missing_ok=True)


def _due(md: Metadata[Any] | None, now: datetime, lifetime: timedelta) -> bool:
    return md is None or md.signed.expires - now < lifetime / 2
