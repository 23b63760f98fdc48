"""Prometheus metrics of a running hub (``GET /metrics``).

Hot paths (every MQTT packet, every download chunk) count in plain ints on
their own objects; the collector here reads them when Prometheus scrapes, so
a packet costs an integer increment, not a labelled metric call.
"""

from otahub.hub.metrics.hub import HubMetrics
from otahub.hub.metrics.rollouts import RolloutProgress

__all__ = ["HubMetrics", "RolloutProgress"]
