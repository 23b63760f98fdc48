"""Canonical update states, shared by every dialect.

An update moves forward along one line and may skip states, because not
every dialect reports every step (thin-edge reports only ``executing``)::

    pending -> sent -> downloading -> downloaded -> verified -> installing -> succeeded

From any non-terminal state it may also end in ``failed`` (with a reason and,
where the dialect has one, a code) or ``canceled``.

=============  ========  =====================================================
state          terminal  meaning
=============  ========  =====================================================
pending        no        assigned, not yet delivered to the device
sent           no        the request reached the device (pushed or answered)
downloading    no        the device fetches the image
downloaded     no        the whole image is on the device
verified       no        the device checked the image's integrity
installing     no        the device writes, activates or reboots into it
succeeded      yes       the device runs the target version
failed         yes       the device or a deadline gave up
canceled       yes       an operator or a superseding update withdrew it
=============  ========  =====================================================

A report of the state an update is already in is not a transition: it is
progress within that state (a new percentage, a repeated status) and
:func:`can_transition` returns ``False`` for it.
"""

from __future__ import annotations

from enum import StrEnum


class UpdateState(StrEnum):
    """Where one update of one device stands."""

    PENDING = "pending"
    SENT = "sent"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    INSTALLING = "installing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


#: The forward line, in order. ``failed`` and ``canceled`` are off the line.
FORWARD_ORDER: tuple[UpdateState, ...] = (
    UpdateState.PENDING,
    UpdateState.SENT,
    UpdateState.DOWNLOADING,
    UpdateState.DOWNLOADED,
    UpdateState.VERIFIED,
    UpdateState.INSTALLING,
    UpdateState.SUCCEEDED,
)

TERMINAL_STATES: frozenset[UpdateState] = frozenset(
    {UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.CANCELED}
)

_RANK: dict[UpdateState, int] = {state: rank for rank, state in enumerate(FORWARD_ORDER)}


class InvalidTransition(ValueError):
    """A state change that the canonical model does not allow."""

    def __init__(self, current: UpdateState, target: UpdateState) -> None:
        if current in TERMINAL_STATES:
            why = f"{current} is terminal"
        elif current == target:
            why = "it is already in that state"
        else:
            why = f"{target} is behind {current}"
        super().__init__(f"cannot move an update from {current} to {target}: {why}")
        self.current = current
        self.target = target


def is_terminal(state: UpdateState) -> bool:
    """True when nothing can follow ``state``."""
    return state in TERMINAL_STATES


def can_transition(current: UpdateState, target: UpdateState) -> bool:
    """True when an update in ``current`` may move to ``target``.

    Allowed: any strictly later state on the forward line (skipping is fine),
    and ``failed`` or ``canceled`` from any non-terminal state.
    """
    if current in TERMINAL_STATES:
        return False
    if target in (UpdateState.FAILED, UpdateState.CANCELED):
        return True
    return _RANK[target] > _RANK[current]


def check_transition(current: UpdateState, target: UpdateState) -> None:
    """Raise :class:`InvalidTransition` unless :func:`can_transition` allows it."""
    if not can_transition(current, target):
        raise InvalidTransition(current, target)


def allowed_targets(current: UpdateState) -> frozenset[UpdateState]:
    """Every state an update in ``current`` may move to next."""
    return frozenset(state for state in UpdateState if can_transition(current, state))
