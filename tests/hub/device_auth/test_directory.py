from __future__ import annotations

import pytest

from otahub.hub.device_auth.directory import DeviceDirectory


def test_a_gateway_holds_a_bounded_number_of_claims_on_ids_that_are_no_device_yet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = DeviceDirectory(max_pending_claims=2)
    assert directory.claim("c1", "gw1") and directory.claim("c2", "gw1")
    assert directory.claim("c1", "gw1")  # its own claim, again: no new one
    assert not directory.claim("c3", "gw1")
    assert "gateway 'gw1' holds 2 claims on ids that are no device yet; refusing 'c3'" in (
        caplog.text
    )
    assert directory.owner("c3") is None
    assert directory.claim("c3", "gw2")  # the bound is per gateway
    directory.release("c1")  # a claim dropped frees its place
    assert directory.claim("c4", "gw1")
