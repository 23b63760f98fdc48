"""The drivers a hub runs, in start order."""

from __future__ import annotations

from otahub.hub.drivers.base import Driver
from otahub.hub.drivers.enos import EnosDriver

DRIVERS: list[type[Driver]] = [EnosDriver]
