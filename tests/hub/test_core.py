"""The hub's name among the hubs on one database."""

from __future__ import annotations

from pathlib import Path

from otahub.hub.core import HUB_ID_FILE, hub_id


def test_a_hub_keeps_its_id_across_restarts_and_two_data_dirs_never_share_one(
    tmp_path: Path,
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = hub_id(tmp_path / "a")
    assert hub_id(tmp_path / "a") == first
    assert (tmp_path / "a" / HUB_ID_FILE).read_text().strip() == first
    assert hub_id(tmp_path / "b") != first
