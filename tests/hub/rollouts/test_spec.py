"""Parsing what an operator types: stages, rates, ramps, durations."""

from __future__ import annotations

import pytest

from otahub.hub.rollouts.spec import (
    parse_duration,
    parse_ramp,
    parse_rate,
    parse_stages,
    stage_sizes,
)
from otahub.hub.services.errors import Invalid


def test_stages_are_cumulative_and_always_end_with_everyone() -> None:
    stages = parse_stages("5,10%,50%,100%")
    assert [str(s) for s in stages] == ["5", "10%", "50%", "100%"]
    assert stage_sizes(stages, 1000) == [5, 100, 500, 1000]
    # a percentage below an earlier count widens nothing: the stage is empty
    assert stage_sizes(stages, 20) == [5, 5, 10, 20]
    assert [str(s) for s in parse_stages("5,10%")] == ["5", "10%", "100%"]
    assert stage_sizes(parse_stages("5"), 3) == [3, 3]


@pytest.mark.parametrize("text", ["", "0", "-1", "abc", "10%,5%", "150%", "5,3"])
def test_bad_stages_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        parse_stages(text)


def test_rates_ramps_and_durations() -> None:
    assert parse_rate("1000/min") == pytest.approx(1000 / 60)
    assert parse_rate("20/s") == 20.0
    assert parse_rate("3600/h") == 1.0
    assert parse_ramp("2x") == 2.0
    assert parse_ramp("1.5") == 1.5
    assert parse_duration("2h") == 7200.0
    assert parse_duration("90m") == 5400.0
    assert parse_duration("45") == 45.0
    for bad in ("fast", "0/min", "10/fortnight"):
        with pytest.raises(Invalid, match="1000/min"):
            parse_rate(bad)
    for bad in ("0.5x", "x", "1000x"):
        with pytest.raises(Invalid, match="ramp"):
            parse_ramp(bad)
    for bad in ("soon", "0h", "-2h"):
        with pytest.raises(Invalid, match="duration"):
            parse_duration(bad)
