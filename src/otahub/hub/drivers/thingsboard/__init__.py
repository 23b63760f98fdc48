"""The ThingsBoard / ServicePleX dialect driver (see ``driver.py`` for the mapping)."""

from otahub.hub.drivers.thingsboard.driver import ThingsBoardDriver

__all__ = ["ThingsBoardDriver"]
