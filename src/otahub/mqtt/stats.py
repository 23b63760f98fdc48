"""The endpoint's traffic counters: plain ints, read when metrics are scraped.

An increment per packet is all the hot path pays; no labels, no locks (the
endpoint runs on one event loop).
"""

from __future__ import annotations


class EndpointStats:
    def __init__(self) -> None:
        self.messages_in: int = 0  # PUBLISH packets received
        self.messages_out: int = 0  # PUBLISH packets sent
        self.bytes_in: int = 0  # every byte read from a connection
        self.bytes_out: int = 0  # every byte written to one
        #: connections refused or closed before their CONNECT was accepted, by reason
        self.refused: dict[str, int] = {}

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
