"""The agent's persisted update state, written atomically at every step.

One JSON file holds the update in progress (if any), the outcomes of recent
updates (so a replayed or re-sent request is never installed twice) and the
version the agent last installed. It is replaced with write-to-temp, fsync,
rename, fsync-directory, so after a power cut the file is either the old or
the new state, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
#: How many finished updates are remembered for duplicate detection.
HISTORY_LIMIT = 64


class Phase(StrEnum):
    """Where the update in progress stands; each is persisted before acting on it."""

    #: Accepted; nothing reported yet.
    RECEIVED = "received"
    #: Fetching the image into ``download_path``; resumable.
    DOWNLOADING = "downloading"
    #: The whole image is on disk, not yet checked.
    DOWNLOADED = "downloaded"
    #: The checksums matched.
    VERIFIED = "verified"
    #: The install hook was started. Found on restart, it is never started
    #: again: the outcome is decided by checking the running version.
    INSTALLING = "installing"
    #: The hook said "reboot required"; verified on the next start.
    REBOOT_PENDING = "reboot_pending"
    #: The outcome is decided and persisted; only the report is left.
    FINISHED = "finished"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The requester withdrew the update before anything was installed; the
    #: agent stopped working on it (see :meth:`otahub.agent.runner.Runner.abandon`).
    CANCELED = "canceled"


class FailureKind(StrEnum):
    """Why an update failed, for dialects that report a code (EnOS steps)."""

    DOWNLOAD = "download"
    VERIFY = "verify"
    INSTALL = "install"
    DECLINED = "declined"
    OTHER = "other"


class PackageKind(StrEnum):
    """What an update replaces; only ThingsBoard distinguishes software."""

    FIRMWARE = "firmware"
    SOFTWARE = "software"


class UpdateRecord(BaseModel):
    """One update as the agent tracks it."""

    #: Dialect-specific identity (command topic, operation id, package + version …).
    key: str
    kind: PackageKind = PackageKind.FIRMWARE
    name: str
    version: str
    #: Where to fetch the image, in order of preference (empty for MQTT chunks).
    urls: list[str] = Field(default_factory=list)
    #: Expected checksums: algorithm name (``checksums.Algorithm``) -> hex value.
    checksums: dict[str, str] = Field(default_factory=dict)
    size: int | None = None
    phase: Phase = Phase.RECEIVED
    outcome: Outcome | None = None
    failure: FailureKind | None = None
    reason: str | None = None
    #: Whether the install hook ended in "reboot required".
    rebooted: bool = False
    #: Bytes received over the network for this update, across restarts.
    bytes_received: int = 0
    #: Dialect-specific data (the command as received, request ids …).
    extra: dict[str, Any] = Field(default_factory=dict)
    created: float = Field(default_factory=time.time)
    #: The version that ran when the update was accepted (rollback detection).
    from_version: str | None = None


class FinishedUpdate(BaseModel):
    key: str
    name: str
    version: str
    outcome: Outcome
    reason: str | None = None
    failure: FailureKind | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    finished: float = Field(default_factory=time.time)


class AgentState(BaseModel):
    current: UpdateRecord | None = None
    history: list[FinishedUpdate] = Field(default_factory=list)
    #: Name and version the agent last installed (used when no version file/command is set).
    installed_name: str | None = None
    installed_version: str | None = None
    #: The same for software packages.
    installed_software_name: str | None = None
    installed_software_version: str | None = None
    #: ThingsBoard: per package kind, the ``(title, version)`` assignment the agent
    #: last acted on. Only a different assignment starts an update; a push that
    #: leaves it unchanged (a deletion of other keys, an unrelated attribute) or a
    #: reconnect never does, whatever the outcome of the last attempt.
    assignments: dict[PackageKind, tuple[str, str]] = Field(default_factory=dict)

    def finished(self, key: str) -> FinishedUpdate | None:
        for entry in reversed(self.history):
            if entry.key == key:
                return entry
        return None

    def remember(self, record: UpdateRecord) -> None:
        """Move the (reported) current update into the history."""
        if record.outcome is None:
            raise ValueError("only a finished update can be remembered")
        self.history.append(
            FinishedUpdate(
                key=record.key,
                name=record.name,
                version=record.version,
                outcome=record.outcome,
                reason=record.reason,
                failure=record.failure,
                extra=record.extra,
            )
        )
        del self.history[:-HISTORY_LIMIT]
        if self.current is record:
            self.current = None


class StateStore:
    """Reads and atomically replaces ``<state_dir>/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        self.downloads = state_dir / "downloads"

    def load(self) -> AgentState:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(exist_ok=True)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AgentState()
        try:
            return AgentState.model_validate_json(text)
        except (ValidationError, ValueError) as exc:
            # Only a bug or manual editing gets here (writes are atomic). Keep the
            # evidence and start clean rather than refuse to run at all.
            broken = self.path.with_suffix(f".broken-{int(time.time())}")
            os.replace(self.path, broken)
            log.error("state file unreadable (%s); moved to %s", exc, broken)
            return AgentState()

    def save(self, state: AgentState) -> None:
        data = json.dumps(state.model_dump(mode="json"), indent=1).encode()
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.dir)

    def download_path(self, record: UpdateRecord) -> Path:
        """Where the image of ``record`` is stored; stable across restarts."""
        digest = hashlib.sha256(record.key.encode()).hexdigest()[:24]
        return self.downloads / f"{digest}.bin"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
