"""The transition table, walked pair by pair."""

from __future__ import annotations

import itertools

import pytest

from wagate.core.states import (
    LINKABLE_STATUSES,
    LINKED_STATUSES,
    TRANSITIONS,
    AccountStatus,
    can_transition,
    check_transition,
)
from wagate.errors import IllegalTransition

PAIRS = list(itertools.product(AccountStatus, AccountStatus))


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_follows_the_table(current: AccountStatus, target: AccountStatus) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
        assert can_transition(current, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, target)
        assert (info.value.current, info.value.target) == (current.value, target.value)


def test_every_status_has_a_row_and_is_reachable_from_unlinked() -> None:
    assert set(TRANSITIONS) == set(AccountStatus)
    seen, frontier = {AccountStatus.UNLINKED}, [AccountStatus.UNLINKED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(AccountStatus)


def test_no_status_is_a_dead_end_and_linking_starts_only_when_unlinked() -> None:
    for status, targets in TRANSITIONS.items():
        assert targets, status
        assert status not in targets, "self-transitions are not status changes"
    into_linking = {s for s, targets in TRANSITIONS.items() if AccountStatus.LINKING in targets}
    assert into_linking == set(LINKABLE_STATUSES)
    assert not LINKED_STATUSES & LINKABLE_STATUSES
