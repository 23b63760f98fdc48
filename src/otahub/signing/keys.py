"""A key directory: the repository's ed25519 keys and its trusted root.

Layout of ``KEYDIR`` (``otahub keys init``)::

    root.json                 the current trusted root, to provision on devices
    root.pem, targets.pem     offline keys: stay with the publisher
    retired/                  keys replaced by a rotation (kept, never used to sign)
    online/                   what the hub gets (``otahub serve --signing-keys``)
        snapshot.pem, timestamp.pem
        root.json, N.root.json every root version, so the hub can serve the chain
        1.targets.json        the first (empty) targets metadata

Private keys are PKCS#8 PEM, encrypted only when a passphrase is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

#: The four top-level TUF roles.
ROLES = ("root", "targets", "snapshot", "timestamp")
#: Roles whose keys the hub holds.
ONLINE_ROLES = ("snapshot", "timestamp")
#: Roles whose keys stay with the publisher.
OFFLINE_ROLES = ("root", "targets")
ONLINE_DIR = "online"
RETIRED_DIR = "retired"
ROOT_FILE = "root.json"
PASSPHRASE_ENV = "OTAHUB_KEY_PASSPHRASE"


class KeyFileError(Exception):
    """A key file is missing, unreadable or needs a passphrase."""


def key_path(keydir: Path, role: str) -> Path:
    """Where ``role``'s private key lives in a key directory."""
    if role in ONLINE_ROLES:
        return keydir / ONLINE_DIR / f"{role}.pem"
    return keydir / f"{role}.pem"


@dataclass(frozen=True)
class NewKey:
    signer: CryptoSigner
    pem: bytes

    @property
    def public(self) -> Key:
        return self.signer.public_key


def generate_key(passphrase: bytes | None = None) -> NewKey:
    """A fresh ed25519 key and its PEM (encrypted with ``passphrase`` when given)."""
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public = SSlibKey.from_crypto(private.public_key())
    return NewKey(CryptoSigner(private, public), pem)


def write_private(path: Path, pem: bytes) -> None:
    """Write a private key readable by its owner only, never over an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def is_encrypted(path: Path) -> bool:
    return b"ENCRYPTED" in path.read_bytes()[:64]


def load_signer(path: Path, passphrase: bytes | None = None) -> CryptoSigner:
    """The signer for the PEM private key at ``path``."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the key {path}: {exc.strerror or exc}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=passphrase or None)
    except TypeError:
        raise KeyFileError(
            f"the key {path} is encrypted: give its passphrase (${PASSPHRASE_ENV})"
        ) from None
    except ValueError:
        raise KeyFileError(f"the key {path} cannot be read (wrong passphrase?)") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"the key {path} is not an ed25519 key")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))
