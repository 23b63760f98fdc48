"""EnOS download paths: what ``fileUri`` names an update."""

from __future__ import annotations

import pytest

from otahub.hub.drivers.enos.downloads import parse_download_path


def test_download_path_names_an_update_and_its_token() -> None:
    assert parse_download_path("/enos/ota/12/abc") == (12, "abc")
    assert parse_download_path("https://hub.local:8000/enos/ota/12/abc?x=1") == (12, "abc")


@pytest.mark.parametrize(
    "update_id", ["99999999999999999999999", "2147483648", "0", "-1", "\u00b2", "1.5"]
)
def test_download_path_with_an_impossible_update_id_names_nothing(update_id: str) -> None:
    assert parse_download_path(f"/enos/ota/{update_id}/abc") is None
