"""Building, signing and checking TUF metadata (python-tuf's Metadata API).

Every function takes the current time where expiry matters, so the hub's
scheduler and the tests decide what "now" is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

T = TypeVar("T", Root, Timestamp, Snapshot, Targets)

#: Hashes of every target: SHA-256 for the agents' own check, SHA-512 as TUF recommends.
TARGET_HASHES = ("sha256", "sha512")

#: Default lifetimes: the offline roles long, the online ones short (re-signed by the hub).
ROOT_LIFETIME = timedelta(days=365)
TARGETS_LIFETIME = timedelta(days=365)
SNAPSHOT_LIFETIME = timedelta(days=7)
TIMESTAMP_LIFETIME = timedelta(days=1)

_SERIALIZER = JSONSerializer(compact=False)


class MetadataError(Exception):
    """Metadata that is malformed, badly signed or out of sequence."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def expiry(now: datetime, lifetime: timedelta) -> datetime:
    """``now + lifetime`` to the second (TUF dates carry no fractions)."""
    return (now + lifetime).replace(microsecond=0)


def to_bytes(md: Metadata[Any]) -> bytes:
    return bytes(md.to_bytes(_SERIALIZER))


def parse(data: bytes, signed_type: type[T]) -> Metadata[T]:
    """Parse ``data`` as metadata of ``signed_type``; :class:`MetadataError` otherwise."""
    try:
        md = Metadata[Any].from_bytes(data)
    except DeserializationError as exc:
        raise MetadataError(f"not TUF metadata: {exc}") from None
    if not isinstance(md.signed, signed_type):
        raise MetadataError(f"expected {signed_type.type} metadata, got {md.signed.type}")
    return md


def new_root(keys: Mapping[str, Iterable[Key]], now: datetime) -> Metadata[Root]:
    """Version 1 of a root naming ``keys`` per role (threshold 1), consistent snapshots."""
    root = Root(expires=expiry(now, ROOT_LIFETIME), consistent_snapshot=True)
    for role, role_keys in keys.items():
        for key in role_keys:
            root.add_key(key, role)
    return Metadata(root)


def rotated_root(current: Metadata[Root], role: str, new_key: Key, now: datetime) -> Metadata[Root]:
    """The next root version with ``role``'s keys replaced by ``new_key``.

    The caller signs it with the current root keys (and the new ones when the
    root role itself rotates), so devices can follow the chain.
    """
    data = Metadata[Root].from_bytes(to_bytes(current))
    root = data.signed
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    root.add_key(new_key, role)
    root.version += 1
    root.expires = expiry(now, ROOT_LIFETIME)
    data.signatures.clear()
    return data


def sign(md: Metadata[Any], *signers: Signer) -> Metadata[Any]:
    """Replace the signatures of ``md`` with those of ``signers``."""
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md


def target_path(title: str, version: str) -> str:
    """The TUF target path of a package: ``<title>/<version>``."""
    return f"{title}/{version}"


def target_for_file(
    path: str, file: Path, *, kind: str = "firmware", device_type: str | None = None
) -> TargetFile:
    """A target entry for ``file``: length, SHA-256 and SHA-512, kind and device type."""
    target = TargetFile.from_file(path, str(file), list(TARGET_HASHES))
    custom: dict[str, Any] = {"kind": kind}
    if device_type:
        custom["device_type"] = device_type
    target.unrecognized_fields["custom"] = custom
    return target


def with_target(current: Metadata[Targets], target: TargetFile, now: datetime) -> Metadata[Targets]:
    """The next targets version: ``current`` plus ``target``, unsigned."""
    data = parse(to_bytes(current), Targets)
    data.signed.targets[target.path] = target
    data.signed.version += 1
    data.signed.expires = expiry(now, TARGETS_LIFETIME)
    data.signatures.clear()
    return data


def check_signed_by(root: Root, role: str, md: Metadata[Any]) -> None:
    """Raise :class:`MetadataError` unless ``md`` carries ``role``'s threshold of signatures."""
    try:
        root.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise MetadataError(
            f"{role} metadata is not signed by the root's {role} key(s): {exc}"
        ) from None


def check_next_root(current: Root, new: Metadata[Root]) -> None:
    """A root rotation: the next version, signed by the current and by its own root keys."""
    if new.signed.version != current.version + 1:
        raise MetadataError(
            f"root version {new.signed.version} does not follow the current {current.version}"
        )
    check_signed_by(current, "root", new)
    check_signed_by(new.signed, "root", new)


def snapshot_of(targets: Metadata[Targets], version: int, now: datetime) -> Metadata[Snapshot]:
    snapshot = Snapshot(
        version=version,
        expires=expiry(now, SNAPSHOT_LIFETIME),
        meta={"targets.json": MetaFile(version=targets.signed.version)},
    )
    return Metadata(snapshot)


def timestamp_of(
    snapshot: Metadata[Snapshot], version: int, now: datetime, lifetime: timedelta
) -> Metadata[Timestamp]:
    timestamp = Timestamp(
        version=version,
        expires=expiry(now, lifetime),
        snapshot_meta=MetaFile(version=snapshot.signed.version),
    )
    return Metadata(timestamp)
