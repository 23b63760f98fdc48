"""The canonical state machine: forward moves, skips, failure and cancel."""

from __future__ import annotations

import pytest

from otahub.protocols.states import (
    FORWARD_ORDER,
    TERMINAL_STATES,
    InvalidTransition,
    UpdateState,
    allowed_targets,
    can_transition,
    check_transition,
    is_terminal,
)

S = UpdateState


def test_values_are_the_documented_names() -> None:
    assert [s.value for s in UpdateState] == [
        "pending",
        "sent",
        "downloading",
        "downloaded",
        "verified",
        "installing",
        "succeeded",
        "failed",
        "canceled",
    ]


def test_terminal_states() -> None:
    assert frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED}) == TERMINAL_STATES
    for state in UpdateState:
        assert is_terminal(state) is (state in TERMINAL_STATES)


def test_forward_order() -> None:
    assert FORWARD_ORDER == (
        S.PENDING,
        S.SENT,
        S.DOWNLOADING,
        S.DOWNLOADED,
        S.VERIFIED,
        S.INSTALLING,
        S.SUCCEEDED,
    )


@pytest.mark.parametrize(
    ("i", "j"),
    [(i, j) for i in range(len(FORWARD_ORDER)) for j in range(len(FORWARD_ORDER))],
)
def test_forward_moves_and_skips_allowed_backwards_refused(i: int, j: int) -> None:
    current, target = FORWARD_ORDER[i], FORWARD_ORDER[j]
    expected = j > i and current is not S.SUCCEEDED
    assert can_transition(current, target) is expected


@pytest.mark.parametrize("current", [s for s in UpdateState if s not in TERMINAL_STATES])
@pytest.mark.parametrize("target", [S.FAILED, S.CANCELED])
def test_failed_and_canceled_from_any_non_terminal_state(
    current: UpdateState, target: UpdateState
) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize("current", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("target", list(UpdateState))
def test_nothing_leaves_a_terminal_state(current: UpdateState, target: UpdateState) -> None:
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransition, match="is terminal"):
        check_transition(current, target)


def test_same_state_is_not_a_transition() -> None:
    for state in UpdateState:
        assert not can_transition(state, state)
    with pytest.raises(InvalidTransition, match="already in that state"):
        check_transition(S.DOWNLOADING, S.DOWNLOADING)


def test_check_transition_message_names_both_states() -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(S.INSTALLING, S.DOWNLOADING)
    assert info.value.current is S.INSTALLING
    assert info.value.target is S.DOWNLOADING
    assert "downloading is behind installing" in str(info.value)
    check_transition(S.PENDING, S.SUCCEEDED)


def test_allowed_targets() -> None:
    assert allowed_targets(S.VERIFIED) == {S.INSTALLING, S.SUCCEEDED, S.FAILED, S.CANCELED}
    assert allowed_targets(S.PENDING) == set(UpdateState) - {S.PENDING}
    assert allowed_targets(S.FAILED) == frozenset()
