"""Checking a downloaded image against the publisher's signed TUF metadata.

Before every install the agent refreshes the repository metadata with
python-tuf's ``ngclient`` (root chain, timestamp, snapshot, targets: every
signature, version and expiry checked against what it trusted before) and
accepts the file only when its length and hashes match the signed target
``<name>/<version>``. The metadata it trusts is kept in
``<state_dir>/tuf``, so a rolled-back or frozen repository is noticed; the
provisioned root is the trust anchor only until then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import urllib3
from tuf.api import exceptions
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from otahub.agent.config import DownloadConfig, SigningConfig
from otahub.agent.download import tls_context
from otahub.agent.state import UpdateRecord
from otahub.agent.verify import VerifyResult
from otahub.signing.metadata import target_path

log = logging.getLogger(__name__)

METADATA_DIR = "tuf"
_CHUNK = 64 * 1024


class _Fetcher(FetcherInterface):
    """Metadata over HTTP(S) with the agent's TLS settings (CA file, verification)."""

    def __init__(self, download: DownloadConfig, timeout: float) -> None:
        self._pool = urllib3.PoolManager(ssl_context=tls_context(download))
        self._timeout = timeout

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._pool.request(
                "GET",
                url,
                preload_content=False,
                timeout=urllib3.Timeout(self._timeout),
                headers={"User-Agent": "otahub-agent"},
                retries=urllib3.Retry(2, redirect=5),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"GET {url}: {exc}") from None
        if response.status >= 400:
            response.release_conn()
            raise exceptions.DownloadHTTPError(
                f"GET {url}: HTTP {response.status}", response.status
            )
        return self._chunks(response)

    @staticmethod
    def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            yield from response.stream(_CHUNK)
        except urllib3.exceptions.HTTPError as exc:
            raise exceptions.DownloadError(f"metadata download cut: {exc}") from None
        finally:
            response.release_conn()


class SignedTargets:
    def __init__(self, config: SigningConfig, download: DownloadConfig, state_dir: Path) -> None:
        self.config = config
        self.download = download
        self.dir = state_dir / METADATA_DIR

    async def verify(self, record: UpdateRecord, path: Path) -> VerifyResult:
        """Refresh the metadata and compare ``path`` with the signed target of ``record``."""
        return await asyncio.to_thread(self._verify, record, path)

    def _updater(self) -> Updater:
        assert self.config.root is not None and self.config.repository is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        # The provisioned root is the anchor until the agent has trusted one
        # itself; from then on it follows the repository's chain of roots.
        bootstrap = None if (self.dir / "root.json").exists() else self.config.root.read_bytes()
        return Updater(
            str(self.dir),
            self.config.repository,
            fetcher=_Fetcher(self.download, self.config.timeout),
            bootstrap=bootstrap,
        )

    def _verify(self, record: UpdateRecord, path: Path) -> VerifyResult:
        name = target_path(record.name, record.version)
        try:
            updater = self._updater()
        except (OSError, ValueError, exceptions.RepositoryError) as exc:
            # A broken provisioned root (or trusted copy) is the device's fault, not the hub's.
            return _refused(f"the trusted root is not usable: {type(exc).__name__}: {exc}")
        try:
            updater.refresh()
            target = updater.get_targetinfo(name)
        except OSError as exc:
            return _refused(f"the trusted metadata cannot be stored: {exc}")
        except exceptions.DownloadError as exc:
            return _refused(f"the signed metadata could not be fetched: {exc}")
        except exceptions.ExpiredMetadataError as exc:
            return _refused(f"the signed metadata has expired: {exc}")
        except exceptions.BadVersionNumberError as exc:
            return _refused(f"the signed metadata was rolled back: {exc}")
        except exceptions.RepositoryError as exc:
            return _refused(f"the signed metadata was refused: {type(exc).__name__}: {exc}")
        if target is None:
            return _refused(f"{name} is not signed: the signed targets metadata does not list it")
        custom = target.custom if isinstance(target.custom, dict) else {}
        kind = custom.get("kind")
        if kind is not None and kind != record.kind.value:
            return _refused(f"{name} is signed as {kind}, not {record.kind.value}")
        try:
            with open(path, "rb") as f:
                target.verify_length_and_hashes(f)
        except exceptions.LengthOrHashMismatchError as exc:
            return _refused(f"the image does not match the signed target {name}: {exc}")
        log.info("the image matches the signed target %s", name)
        return VerifyResult(True)


def _refused(reason: str) -> VerifyResult:
    reason = f"signature check failed: {reason}"
    log.warning("%s", reason)
    return VerifyResult(False, reason)
