"""The signing key of download links: created once, kept, taken over from older hubs."""

from __future__ import annotations

import stat
from pathlib import Path

from otahub.hub.drivers.download_links import KEY_FILE, LinkSigner, load_or_create_key


def test_key_is_created_private_and_kept_across_restarts(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert len(key) == 32
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key


def test_enos_key_of_an_older_hub_is_taken_over_so_sent_links_keep_working(
    tmp_path: Path,
) -> None:
    old = bytes(range(32))
    (tmp_path / "enos-download.key").write_text(old.hex() + "\n")
    assert load_or_create_key(tmp_path) == old
    assert (tmp_path / KEY_FILE).read_text().strip() == old.hex()


def test_token_is_bound_to_purpose_update_and_resource() -> None:
    signer = LinkSigner(b"k" * 32)
    token = signer.token("enos-update", 7, "abc")
    assert signer.check("enos-update", 7, "abc", token)
    assert not signer.check("enos-update", 8, "abc", token)
    assert not signer.check("enos-update", 7, "abd", token)
    assert not signer.check("file-transfer", 7, "abc", token)
    assert not signer.check(
        "enos-update", 7, "abc", token[:-1] + ("0" if token[-1] != "0" else "1")
    )
