"""``otahub_rollout_devices{rollout,state}``: how far each rollout has got.

The hub fills it at each scrape from the rollout service's counts of the
active rollouts; this module only keeps the series consistent:
``set`` replaces every state of one rollout at once (a state no longer
counted drops to 0 rather than keeping its last value), ``forget`` removes a
finished or deleted rollout's series.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge

NAME = "otahub_rollout_devices"


class RolloutProgress:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(
            NAME,
            "Devices of a rollout in each state (pending, running, succeeded, failed, ...)",
            ["rollout", "state"],
            registry=registry,
        )
        self._states: dict[str, set[str]] = {}

    def set(self, rollout: str, counts: Mapping[str, int]) -> None:
        """The rollout's devices per state now; states left out are 0."""
        known = self._states.setdefault(rollout, set())
        for state in known - counts.keys():
            self._gauge.labels(rollout=rollout, state=state).set(0)
        for state, count in counts.items():
            self._gauge.labels(rollout=rollout, state=state).set(count)
            known.add(state)

    def forget(self, rollout: str) -> None:
        """Remove every series of ``rollout``."""
        for state in self._states.pop(rollout, set()):
            self._gauge.remove(rollout, state)

    def replace_all(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Every rollout's counts now; rollouts left out lose their series."""
        for rollout in set(self._states) - counts.keys():
            self.forget(rollout)
        for rollout, by_state in counts.items():
            self.set(rollout, by_state)
