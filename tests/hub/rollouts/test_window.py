"""Maintenance windows read in their time zone, daylight saving included."""

from __future__ import annotations

import pytest

from otahub.hub.rollouts.window import Window, check_cron
from otahub.hub.services.errors import Invalid
from tests.hub.rollouts.conftest import at


def test_a_nightly_window_in_berlin_winter_and_summer() -> None:
    window = Window("0 2 * * *", 7200, "Europe/Berlin")
    # winter: Berlin is UTC+1, the window is 01:00-03:00 UTC
    assert not window.is_open(at("2026-12-02T00:59:59"))
    assert window.opened_at(at("2026-12-02T01:00:00")) == at("2026-12-02T01:00:00")
    assert window.is_open(at("2026-12-02T02:59:59"))
    assert not window.is_open(at("2026-12-02T03:00:00"))
    # summer: UTC+2, 00:00-02:00 UTC
    assert window.is_open(at("2026-07-01T00:30:00"))
    assert not window.is_open(at("2026-07-01T02:30:00"))
    assert window.next_open(at("2026-12-02T12:00:00")) == at("2026-12-03T01:00:00")


def test_weekday_windows() -> None:
    window = Window("30 22 * * 1-5", 3600)  # weekdays 22:30-23:30 UTC
    assert window.is_open(at("2026-12-02T23:00:00"))  # a Wednesday
    assert not window.is_open(at("2026-12-05T23:00:00"))  # a Saturday


@pytest.mark.parametrize("expression", ["nightly", "0 2 * *", "61 2 * * *", "0 2 * * * *"])
def test_bad_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(Invalid, match="cron"):
        check_cron(expression)
