"""What the start-up log says about MQTT clients without credentials."""

from __future__ import annotations

import logging

import pytest

from otahub.hub.app import warn_anonymous
from otahub.hub.settings import HubSettings


def test_allow_anonymous_beyond_loopback_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "otahub.hub"):
        warn_anonymous(HubSettings(host="0.0.0.0", allow_anonymous=True))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "accepted from anywhere that reaches 0.0.0.0" in record.getMessage()


def test_anonymous_networks_beyond_loopback_are_warned(caplog: pytest.LogCaptureFixture) -> None:
    settings = HubSettings(host="0.0.0.0", anonymous_from=("127.0.0.0/8", "10.0.0.0/8"))
    with caplog.at_level(logging.INFO, "otahub.hub"):
        warn_anonymous(settings)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "MQTT clients without credentials are accepted from 10.0.0.0/8, beyond this machine"
    )


@pytest.mark.parametrize(
    "settings",
    [
        HubSettings(host="127.0.0.1", allow_anonymous=True),
        HubSettings(host="0.0.0.0"),
        HubSettings(host="::1", allow_anonymous=True),
        HubSettings(host="127.0.0.1", anonymous_from=("10.0.0.0/8",)),
    ],
)
def test_no_warning_when_anonymous_clients_stay_local(
    settings: HubSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "otahub.hub"):
        warn_anonymous(settings)
    [record] = caplog.records
    assert record.levelno == logging.INFO
