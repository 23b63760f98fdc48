"""The drivers a hub runs, in start order."""

from __future__ import annotations

from otahub.hub.drivers.base import Driver

DRIVERS: list[type[Driver]] = []
