"""Creating a key directory, rotating its keys, and reading its online part.

See :mod:`otahub.signing.keys` for the layout.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Targets

from otahub.signing.keys import (
    OFFLINE_ROLES,
    ONLINE_DIR,
    ONLINE_ROLES,
    PASSPHRASE_ENV,
    RETIRED_DIR,
    ROLES,
    ROOT_FILE,
    KeyFileError,
    NewKey,
    generate_key,
    is_encrypted,
    key_path,
    load_signer,
    write_private,
)
from otahub.signing.metadata import (
    ROOT_LIFETIME,
    TARGETS_LIFETIME,
    MetadataError,
    expiry,
    new_root,
    parse,
    rotated_root,
    sign,
    to_bytes,
)
from otahub.signing.repository import OnlineKeys

_ROOT_VERSION = re.compile(r"(\d+)\.root\.json")
INITIAL_TARGETS = "1.targets.json"


def init_keydir(keydir: Path, now: datetime, passphrase: bytes | None = None) -> Metadata[Root]:
    """Create the four keys, root version 1 and an empty targets version 1 in ``keydir``.

    Only the offline keys are encrypted with ``passphrase``: the hub must
    sign with the online ones unattended.
    """
    if (keydir / ROOT_FILE).exists() or any(key_path(keydir, r).exists() for r in ROLES):
        raise KeyFileError(f"{keydir} already holds a repository's keys")
    keys: dict[str, NewKey] = {
        role: generate_key(passphrase if role in OFFLINE_ROLES else None) for role in ROLES
    }
    root = sign(new_root({r: [k.public] for r, k in keys.items()}, now), keys["root"].signer)
    targets = Metadata(Targets(expires=expiry(now, TARGETS_LIFETIME)))
    sign(targets, keys["targets"].signer)
    for role, key in keys.items():
        write_private(key_path(keydir, role), key.pem)
    _write_root(keydir, root)
    (keydir / ONLINE_DIR / INITIAL_TARGETS).write_bytes(to_bytes(targets))
    return root


def current_root(keydir: Path) -> Metadata[Root]:
    try:
        return parse((keydir / ROOT_FILE).read_bytes(), Root)
    except OSError as exc:
        raise KeyFileError(f"no root metadata in {keydir}: {exc.strerror or exc}") from None


def signer(keydir: Path, role: str, passphrase: bytes | None = None) -> Signer:
    """The key ``role`` signs with, checked against the current root."""
    path = key_path(keydir, role)
    if passphrase is None and path.exists() and is_encrypted(path):
        env = os.environ.get(PASSPHRASE_ENV)
        passphrase = env.encode() if env else None
    loaded = load_signer(path, passphrase)
    root = current_root(keydir).signed
    if loaded.public_key.keyid not in root.roles[role].keyids:
        raise KeyFileError(
            f"{path} is not the {role} key of root version {root.version} in {keydir}"
        )
    return loaded


def rotate(
    keydir: Path, role: str, now: datetime, passphrase: bytes | None = None
) -> tuple[Metadata[Root], Signer]:
    """Replace ``role``'s key: a new key, and the next root signed by the old root key.

    A new root key signs the new root as well. The old key moves to
    ``retired/``. Returns the new root and the new key's signer.
    """
    if role not in ROLES:
        raise KeyFileError(f"no such role {role!r}; one of {', '.join(ROLES)}")
    old_root_signer = signer(keydir, "root", passphrase)
    current = current_root(keydir)
    key = generate_key(passphrase if role in OFFLINE_ROLES else None)
    root = rotated_root(current, role, key.public, now)
    signers = [old_root_signer, key.signer] if role == "root" else [old_root_signer]
    sign(root, *signers)
    path = key_path(keydir, role)
    old_id = current.signed.roles[role].keyids[0][:16]
    retired = keydir / RETIRED_DIR / f"{role}-{old_id}.pem"
    retired.parent.mkdir(exist_ok=True)
    shutil.move(path, retired)
    write_private(path, key.pem)
    _write_root(keydir, root)
    return root, key.signer


def renew_root(keydir: Path, now: datetime, passphrase: bytes | None = None) -> Metadata[Root]:
    """The next root version with the same keys and a fresh expiry, signed by the root key."""
    root_signer = signer(keydir, "root", passphrase)
    root = parse(to_bytes(current_root(keydir)), Root)
    root.signed.version += 1
    root.signed.expires = expiry(now, ROOT_LIFETIME)
    sign(root, root_signer)
    _write_root(keydir, root)
    return root


def _write_root(keydir: Path, root: Metadata[Root]) -> None:
    data = to_bytes(root)
    online = keydir / ONLINE_DIR
    online.mkdir(parents=True, exist_ok=True)
    (online / f"{root.signed.version}.root.json").write_bytes(data)
    for path in (keydir / ROOT_FILE, online / ROOT_FILE):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


@dataclass(frozen=True)
class OnlineDir:
    """What ``otahub serve --signing-keys DIR`` reads."""

    keys: OnlineKeys
    roots: list[bytes]
    initial_targets: bytes | None


def load_online(directory: Path, *, with_targets_key: bool = False) -> OnlineDir:
    """The online keys, every root version and the first targets metadata in ``directory``.

    ``with_targets_key``: the hub-signs-targets mode also needs ``targets.pem``
    in the directory.
    """
    if not directory.is_dir():
        raise KeyFileError(f"{directory} is not a directory")
    snapshot, timestamp = (load_signer(directory / f"{role}.pem") for role in ONLINE_ROLES)
    targets = load_signer(directory / "targets.pem") if with_targets_key else None
    roots: list[bytes] = []
    for name in sorted(os.listdir(directory)):
        if _ROOT_VERSION.fullmatch(name):
            roots.append((directory / name).read_bytes())
    if not roots and (directory / ROOT_FILE).exists():
        roots.append((directory / ROOT_FILE).read_bytes())
    if not roots:
        raise MetadataError(f"no root metadata (N.root.json) in {directory}")
    initial = directory / INITIAL_TARGETS
    return OnlineDir(
        OnlineKeys(snapshot=snapshot, timestamp=timestamp, targets=targets),
        roots,
        initial.read_bytes() if initial.exists() else None,
    )
