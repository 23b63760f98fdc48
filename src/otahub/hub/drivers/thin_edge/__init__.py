"""The ``thin-edge`` dialect on the hub: the ``te/`` v1 requester."""

from otahub.hub.drivers.thin_edge.driver import ThinEdgeDriver

__all__ = ["ThinEdgeDriver"]
