"""The signing key of download links: created once, kept, taken over from older hubs,
shared by every hub on one database."""

from __future__ import annotations

import stat
from pathlib import Path

from otahub.hub.core import CoreConfig, HubCore
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


async def test_hubs_on_one_database_sign_with_the_first_hubs_key(
    database_url: str, tmp_path: Path
) -> None:
    """A link one hub handed out is honoured by every other hub on the database."""
    a = HubCore(CoreConfig(data_dir=tmp_path / "a", database_url=database_url))
    b = HubCore(CoreConfig(data_dir=tmp_path / "b", database_url=database_url))
    own_a = load_or_create_key(tmp_path / "a")
    assert load_or_create_key(tmp_path / "b") != own_a
    try:
        await a.start()
        await b.start()
        assert a.links.key == b.links.key == own_a  # the first hub's key, kept for its links
        token = a.links.token("enos-update", 7, "abc")
        assert b.links.check("enos-update", 7, "abc", token)
    finally:
        await a.close()
        await b.close()
