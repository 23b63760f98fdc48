"""What every dialect client provides to the agent and the runner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from otahub.agent.download import Downloader, ProgressCallback, UrlSource
from otahub.agent.link import ClientOptions
from otahub.agent.state import UpdateRecord

if TYPE_CHECKING:
    from otahub.agent.app import Agent


class Step(StrEnum):
    """The moments at which a dialect may tell its platform something."""

    #: The request was accepted (thin-edge ``executing``).
    ACCEPTED = "accepted"
    #: The download started or advanced (``percent`` set when known).
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    #: The install hook is about to run.
    INSTALLING = "installing"
    #: Installed; the device has to restart.
    RESTARTING = "restarting"
    #: Started again after a restart; checking the new version.
    RESTARTED = "restarted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DialectClient(ABC):
    """Glue between one protocol module, the MQTT link and the runner."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    @abstractmethod
    def client_options(self) -> ClientOptions:
        """Client id, credentials and protocol version for the MQTT connection."""

    @abstractmethod
    async def on_connect(self) -> None:
        """Announce the device and subscribe; runs after every (re)connect."""

    @abstractmethod
    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Handle one incoming message; must not raise for bad input."""

    @abstractmethod
    async def report(self, record: UpdateRecord, step: Step, percent: int | None = None) -> None:
        """Tell the platform about ``step``; terminal steps must be delivered before returning."""

    async def fetch(self, record: UpdateRecord, dest: Path, on_progress: ProgressCallback) -> int:
        """Complete ``dest``; returns bytes received. The default fetches ``record.urls``."""
        return await self.download(record.urls, record, dest, on_progress)

    async def download(
        self,
        urls: Sequence[str | UrlSource],
        record: UpdateRecord,
        dest: Path,
        on_progress: ProgressCallback,
    ) -> int:
        """Fetch ``dest`` over HTTP from ``urls`` (resume, retries); returns bytes received."""
        downloader = Downloader(self.agent.config.download)
        try:
            await downloader.fetch(urls, dest, expected_size=record.size, on_progress=on_progress)
        finally:
            record.bytes_received += downloader.received
        return downloader.received

    def hold_resume(self, record: UpdateRecord) -> bool:
        """Whether ``record``, found on disk at startup, waits for the platform to confirm it.

        A dialect whose platform can withdraw an update while the agent is
        stopped returns True and starts the runner itself once the update is
        confirmed, or abandons it (:meth:`Runner.abandon`) when it was withdrawn.
        """
        return False

    async def background(self) -> None:  # noqa: B027  # optional hook
        """Periodic work beside the message loop (e.g. polling); none by default."""

    async def on_idle(self) -> None:  # noqa: B027  # optional hook
        """Called when an update has been fully reported and the runner is free."""
