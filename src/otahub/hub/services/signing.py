"""The hub's side of signed updates: accept the publisher's metadata, keep it fresh.

The hub holds the online keys only (snapshot, timestamp). New targets
metadata arrives signed by the publisher together with a package; the hub
checks it against the current root and the uploaded bytes, then re-signs
snapshot and timestamp. A task re-signs the timestamp (and snapshot) before
they expire, so devices can tell a live repository from a frozen one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from otahub.hub.services.errors import Conflict, Invalid
from otahub.hub.services.views import PackageView
from otahub.hub.store.blobs import BlobInfo
from otahub.protocols.checksums import Algorithm
from otahub.signing.keydir import load_online
from otahub.signing.metadata import (
    TIMESTAMP_LIFETIME,
    MetadataError,
    check_next_root,
    check_signed_by,
    parse,
    target_path,
    to_bytes,
    utcnow,
)
from otahub.signing.repository import Repository

log = logging.getLogger("otahub.hub.signing")

#: Longest sleep of the re-signing task, so a changed clock is noticed.
MAX_SLEEP_S = 60.0
#: Pause before signing again after the metadata could not be written.
RETRY_S = 5.0
METADATA_DIR = "tuf"


@dataclass(frozen=True, slots=True)
class StagedTargets:
    """Targets metadata checked against the root, waiting for its package's bytes."""

    metadata: Metadata[Targets]
    target: TargetFile


class SigningService:
    def __init__(
        self, repo: Repository, *, require_signed: bool = False, hub_signs_targets: bool = False
    ) -> None:
        self.repo = repo
        self.require_signed = require_signed
        self.hub_signs_targets = hub_signs_targets
        # One change of the metadata at a time; versions must follow each other.
        self.lock = asyncio.Lock()

    @classmethod
    def open(
        cls,
        data_dir: Path,
        keys_dir: Path,
        *,
        require_signed: bool = False,
        hub_signs_targets: bool = False,
        timestamp_lifetime: timedelta | None = None,
    ) -> SigningService:
        """Load the online keys from ``keys_dir`` and the metadata from ``data_dir/tuf``."""
        online = load_online(keys_dir, with_targets_key=hub_signs_targets)
        repo = Repository.open(
            data_dir / METADATA_DIR,
            online.keys,
            roots=online.roots,
            initial_targets=online.initial_targets,
            timestamp_lifetime=timestamp_lifetime or TIMESTAMP_LIFETIME,
        )
        log.info(
            "serving signed metadata: root version %d, targets version %d%s",
            repo.root.signed.version,
            repo.targets.signed.version,
            " (the hub signs targets itself)" if hub_signs_targets else "",
        )
        return cls(repo, require_signed=require_signed, hub_signs_targets=hub_signs_targets)

    @property
    def directory(self) -> Path:
        return self.repo.dir

    # -- publishing ---------------------------------------------------------

    def stage(self, data: bytes, title: str, version: str, kind: str) -> StagedTargets:
        """Check new targets metadata before the package's bytes arrive (422 when bad)."""
        path = target_path(title, version)
        try:
            md = parse(data, Targets)
            check_signed_by(self.repo.root.signed, "targets", md)
        except MetadataError as exc:
            raise Invalid(f"targets metadata refused: {exc}") from None
        self._check_version(md)
        target = md.signed.targets.get(path)
        if target is None:
            raise Invalid(f"the signed targets metadata does not list {path}")
        custom = target.custom if isinstance(target.custom, dict) else {}
        if custom.get("kind", kind) != kind:
            raise Invalid(f"{path} is signed as {custom.get('kind')}, not {kind}")
        return StagedTargets(md, target)

    def _check_version(self, md: Metadata[Targets]) -> None:
        current = self.repo.targets.signed.version
        if md.signed.version <= current:
            raise Conflict(
                f"targets metadata version {md.signed.version} is not newer than the hub's "
                f"{current}: sign again against the current targets metadata"
            )

    @staticmethod
    def check_blob(staged: StagedTargets, info: BlobInfo) -> None:
        """The uploaded bytes must be the signed target's (422 otherwise)."""
        target = staged.target
        actual = {
            "sha256": info.checksums[Algorithm.SHA256],
            "sha512": info.checksums[Algorithm.SHA512],
        }
        if target.length != info.size:
            raise Invalid(
                f"the file has {info.size} bytes, the signed target {target.path} {target.length}"
            )
        known = [name for name in target.hashes if name in actual]
        if not known:
            raise Invalid(f"the signed target {target.path} has no sha256 or sha512 hash")
        for name in known:
            if target.hashes[name].lower() != actual[name]:
                raise Invalid(f"the file does not match the {name} of the signed target")

    def check_version(self, staged: StagedTargets) -> None:
        """409 when other metadata was published since ``staged`` was checked."""
        self._check_version(staged.metadata)

    async def publish(self, staged: StagedTargets) -> None:
        """Make the staged metadata current. Call with :attr:`lock` held."""
        self._check_version(staged.metadata)
        try:
            await asyncio.to_thread(self.repo.publish_targets, _bytes(staged.metadata))
        except MetadataError as exc:
            raise Invalid(f"targets metadata refused: {exc}") from None
        log.info(
            "targets metadata version %d signs %s",
            staged.metadata.signed.version,
            staged.target.path,
        )

    async def sign_package(self, package: PackageView) -> None:
        """The hub-signs-targets mode: sign ``package`` with the hub's own targets key."""
        custom: dict[str, str] = {"kind": package.kind}
        if package.device_type:
            custom["device_type"] = package.device_type
        target = TargetFile(
            length=package.size,
            hashes={
                "sha256": package.checksums[Algorithm.SHA256],
                "sha512": package.checksums[Algorithm.SHA512],
            },
            path=target_path(package.title, package.version),
            unrecognized_fields={"custom": custom},
        )
        async with self.lock:
            await asyncio.to_thread(self.repo.sign_targets, target)
        log.info("signed %s with the hub's targets key", target.path)

    async def current_targets(self) -> bytes:
        async with self.lock:
            return _bytes(self.repo.targets)

    async def add_root(self, root: bytes, targets: bytes | None) -> int:
        """A rotation from the publisher: the next root, and targets re-signed for it.

        Refused (422) unless the current and the new root keys signed it, and
        unless the targets metadata devices will get verifies under it: a new
        targets key comes with the current targets signed again by that key.
        """
        async with self.lock:
            try:
                new_root = parse(root, Root)
                check_next_root(self.repo.root.signed, new_root)
                md = self.repo.targets if targets is None else parse(targets, Targets)
                try:
                    check_signed_by(new_root.signed, "targets", md)
                except MetadataError:
                    if targets is not None:
                        raise
                    raise MetadataError(
                        "the new root names another targets key: send the current targets "
                        "metadata signed by it along (otahub keys rotate does)"
                    ) from None
                if targets is not None:
                    self._check_version(md)
                await asyncio.to_thread(self.repo.add_root, root)
                if targets is not None:
                    await asyncio.to_thread(self.repo.publish_targets, targets)
            except MetadataError as exc:
                raise Invalid(f"root metadata refused: {exc}") from None
            log.info("root metadata version %d installed", self.repo.root.signed.version)
            return self.repo.root.signed.version

    # -- enforcement --------------------------------------------------------

    def unsigned_reason(self, package: PackageView) -> str | None:
        """Why ``package`` is not signed as it is stored, or None when it is."""
        path = target_path(package.title, package.version)
        target = self.repo.target(path)
        if target is None:
            return (
                f"package {package.title} {package.version} is not signed "
                f"({path} is not a signed target) and the hub requires signed packages"
            )
        if target.length != package.size or target.hashes.get("sha256", "").lower() != (
            package.sha256
        ):
            return (
                f"package {package.title} {package.version} does not match its signed target {path}"
            )
        return None

    # -- freshness ----------------------------------------------------------

    async def run(self) -> None:
        """Re-sign snapshot and timestamp before they expire, forever."""
        while True:
            delay = (self.repo.next_refresh() - utcnow()).total_seconds()
            await asyncio.sleep(min(max(delay, 0.05), MAX_SLEEP_S))
            async with self.lock:
                try:
                    signed = await asyncio.to_thread(self.repo.refresh)
                except OSError as exc:
                    # A full or read-only disk: try again, devices see an error only
                    # once the current timestamp expires.
                    log.error("cannot write signed metadata: %s; retrying", exc)
                    await asyncio.sleep(RETRY_S)
                    continue
                if signed:
                    assert self.repo.timestamp is not None
                    log.debug("timestamp version %d signed", self.repo.timestamp.signed.version)


def _bytes(md: Metadata[Targets]) -> bytes:
    return to_bytes(md)
