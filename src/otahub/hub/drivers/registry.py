"""The drivers a hub runs, in start order."""

from __future__ import annotations

from otahub.hub.drivers.base import Driver
from otahub.hub.drivers.enos import EnosDriver
from otahub.hub.drivers.tedge_legacy import TedgeLegacyDriver
from otahub.hub.drivers.thin_edge import ThinEdgeDriver
from otahub.hub.drivers.thingsboard import ThingsBoardDriver

DRIVERS: list[type[Driver]] = [EnosDriver, ThingsBoardDriver, ThinEdgeDriver, TedgeLegacyDriver]
