"""The token bucket behind --rate: at most one second's worth of starts at once."""

from __future__ import annotations

from otahub.hub.rollouts.rate import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_is_one_second_and_refill_follows_the_rate() -> None:
    clock = FakeTime()
    bucket = TokenBucket(1000 / 60, clock=clock)  # 1000/min
    assert bucket.available() == 16
    bucket.take(16)
    assert bucket.available() == 0
    clock.now = 0.3
    assert bucket.available() == 5
    clock.now = 100.0  # a long pause earns no more than a second's worth
    assert bucket.available() == 16


def test_slow_rates_still_start_one_and_wait_for_the_next() -> None:
    clock = FakeTime()
    bucket = TokenBucket(1 / 60, clock=clock)  # 1/min
    assert bucket.available() == 1
    bucket.take(1)
    assert bucket.available() == 0
    assert bucket.wait_s() == 60.0
    clock.now = 60.0
    assert bucket.available() == 1


def test_ramp_raises_the_rate_and_the_burst() -> None:
    clock = FakeTime()
    bucket = TokenBucket(10, clock=clock)
    bucket.take(10)
    bucket.set_rate(20)
    clock.now = 1.0
    assert bucket.available() == 20
