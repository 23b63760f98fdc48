"""The cyclic garbage collector, set for a long-running hub process.

Profiled with 500 devices sending QoS 1 telemetry, a third of the hub's CPU
went to the collector. Each message makes tasks and futures that live until
its commit, so with the default threshold (a young collection every 700 new
container objects) thousands of them were promoted each second, and full
collections, which walk every object the process holds, ran many times a
second. Two settings, applied once when ``otahub serve`` starts:

- young collections after ``YOUNG_THRESHOLD`` new container objects, so
  short-lived ones are freed by reference counting before they are promoted
  (it bounds the garbage cycles that wait for a collection to a few MB);
- what exists when the hub starts (modules, classes, the schema) is frozen
  out of every later collection: it lives as long as the process anyway.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_for_server() -> None:
    """Apply both settings; call once, after the hub's modules are imported."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
