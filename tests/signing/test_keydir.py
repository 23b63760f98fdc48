"""Key directories: creation, passphrases, rotation, what the hub gets."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root

from otahub.signing.keydir import current_root, init_keydir, load_online, rotate, signer
from otahub.signing.keys import KeyFileError, load_signer
from otahub.signing.metadata import MetadataError, check_next_root, check_signed_by

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_init_writes_offline_and_online_keys_and_a_root_signed_by_the_root_key(
    tmp_path: Path,
) -> None:
    keydir = tmp_path / "keys"
    root = init_keydir(keydir, NOW)
    assert sorted(p.name for p in keydir.iterdir()) == [
        "online",
        "root.json",
        "root.pem",
        "targets.pem",
    ]
    assert sorted(p.name for p in (keydir / "online").iterdir()) == [
        "1.root.json",
        "1.targets.json",
        "root.json",
        "snapshot.pem",
        "timestamp.pem",
    ]
    for pem in [*keydir.glob("*.pem"), *(keydir / "online").glob("*.pem")]:
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600, pem
    check_signed_by(root.signed, "root", root)
    assert root.signed.consistent_snapshot
    for role in ("root", "targets", "snapshot", "timestamp"):
        key = signer(keydir, role)
        assert root.signed.roles[role].keyids == [key.public_key.keyid]
    assert (keydir / "root.json").read_bytes() == (keydir / "online" / "root.json").read_bytes()


def test_init_refuses_a_directory_that_already_has_keys(tmp_path: Path) -> None:
    init_keydir(tmp_path, NOW)
    with pytest.raises(KeyFileError, match="already holds"):
        init_keydir(tmp_path, NOW)


def test_passphrase_encrypts_the_offline_keys_only(tmp_path: Path) -> None:
    init_keydir(tmp_path, NOW, b"s3cret")
    with pytest.raises(KeyFileError, match="encrypted"):
        load_signer(tmp_path / "targets.pem")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_signer(tmp_path / "root.pem", b"nope")
    assert signer(tmp_path, "targets", b"s3cret")
    # the hub signs unattended: its keys carry no passphrase
    load_online(tmp_path / "online")


def test_rotation_signs_the_next_root_with_the_old_root_key_and_retires_the_old_key(
    tmp_path: Path,
) -> None:
    first = init_keydir(tmp_path, NOW)
    old_targets = signer(tmp_path, "targets")
    second, new_targets = rotate(tmp_path, "targets", NOW)
    check_next_root(first.signed, second)
    assert second.signed.roles["targets"].keyids == [new_targets.public_key.keyid]
    assert current_root(tmp_path).signed.version == 2
    retired = list((tmp_path / "retired").iterdir())
    assert len(retired) == 1
    assert load_signer(retired[0]).public_key.keyid == old_targets.public_key.keyid
    with pytest.raises(KeyFileError, match="not the targets key"):
        os.replace(retired[0], tmp_path / "targets.pem")
        signer(tmp_path, "targets")
    # the hub gets every root version, to serve the chain
    assert len(load_online(tmp_path / "online").roots) == 2


def test_a_new_root_key_signs_its_own_root_too(tmp_path: Path) -> None:
    first = init_keydir(tmp_path, NOW)
    second, _ = rotate(tmp_path, "root", NOW)
    check_next_root(first.signed, second)
    third, _ = rotate(tmp_path, "timestamp", NOW)
    check_next_root(second.signed, third)
    with pytest.raises(MetadataError, match="does not follow"):
        check_next_root(first.signed, third)


def test_a_root_signed_only_by_a_key_it_does_not_trust_is_refused(tmp_path: Path) -> None:
    first = init_keydir(tmp_path / "a", NOW)
    init_keydir(tmp_path / "b", NOW)
    foreign: Metadata[Root] = current_root(tmp_path / "b")
    foreign.signed.version = 2
    foreign.signatures.clear()
    foreign.sign(signer(tmp_path / "b", "root"))
    with pytest.raises(MetadataError, match="not signed by the root's root key"):
        check_next_root(first.signed, foreign)
