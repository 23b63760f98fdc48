"""The publisher's side: sign a package into the targets metadata the hub serves.

The current targets metadata is fetched from the hub, which may be
compromised: it is re-signed only after it verified under the publisher's
own root, so a hub cannot slip a target of its own into the next signature.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Targets

from otahub.signing.metadata import (
    TARGETS_LIFETIME,
    MetadataError,
    check_signed_by,
    expiry,
    parse,
    sign,
    target_for_file,
    target_path,
    to_bytes,
    with_target,
)


def verified_targets(data: bytes, root: Root) -> Metadata[Targets]:
    """``data`` as targets metadata, refused unless the root's targets key(s) signed it."""
    md = parse(data, Targets)
    try:
        check_signed_by(root, "targets", md)
    except MetadataError as exc:
        raise MetadataError(
            f"the hub's current targets metadata does not verify under your root: {exc}"
        ) from None
    return md


def resigned_targets(current: Metadata[Targets], now: datetime) -> Metadata[Targets]:
    """The next targets version with the same targets, unsigned (after a key rotation)."""
    data = parse(to_bytes(current), Targets)
    data.signed.version += 1
    data.signed.expires = expiry(now, TARGETS_LIFETIME)
    data.signatures.clear()
    return data


def sign_package(
    current: Metadata[Targets],
    file: Path,
    *,
    title: str,
    version: str,
    kind: str,
    device_type: str | None,
    signer: Signer,
    now: datetime,
) -> bytes:
    """The next targets metadata, listing ``file`` as ``<title>/<version>``, signed."""
    target = target_for_file(target_path(title, version), file, kind=kind, device_type=device_type)
    return to_bytes(sign(with_target(current, target, now), signer))
