"""The ``tedge-legacy`` dialect on the hub: the ``c8y-firmware-plugin`` requester."""

from otahub.hub.drivers.tedge_legacy.driver import TedgeLegacyDriver

__all__ = ["TedgeLegacyDriver"]
