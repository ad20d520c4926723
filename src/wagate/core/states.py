"""Account statuses, link-attempt outcomes and the one table of allowed transitions (DESIGN §3)."""

from __future__ import annotations

from enum import StrEnum

from wagate.errors import IllegalTransition


class AccountStatus(StrEnum):
    """Where an account stands; the database is the source of truth."""

    UNLINKED = "unlinked"  # no credentials; needs linking
    LINKING = "linking"  # a link attempt is open; codes are being shown
    PAIRING = "pairing"  # the phone accepted the code; the session is being established
    CONNECTED = "connected"  # ready: can send and receive
    RECONNECTING = "reconnecting"  # credentials valid, connection lost, retrying with backoff
    STOPPED = "stopped"  # credentials kept, session deliberately not running
    LOGGED_OUT = "logged_out"  # credentials revoked; needs a new link
    FAILED = "failed"  # cannot continue without an operator; status_reason says why


class AttemptOutcome(StrEnum):
    """How a link attempt ended; every closed attempt has exactly one."""

    LINKED = "linked"  # the phone linked and the session connected
    EXPIRED = "expired"  # all codes shown, none scanned
    CANCELLED = "cancelled"  # the client cancelled it
    FAILED = "failed"  # the engine or the server refused; reason says why
    SUPERSEDED = "superseded"  # the phone linked elsewhere before this attempt finished
    INTERRUPTED = "interrupted"  # the process stopped while it was open


class LinkMethod(StrEnum):
    """How the phone proves itself."""

    QR = "qr"  # the phone scans a QR code
    CODE = "code"  # the user types an 8-character pairing code on the phone


S = AccountStatus

# Statuses whose phone counts as linked: at most one per (workspace, phone), enforced by an index.
LINKED_STATUSES: frozenset[AccountStatus] = frozenset(
    {S.PAIRING, S.CONNECTED, S.RECONNECTING, S.STOPPED}
)

# Statuses restoration reopens at start.
RESTORABLE_STATUSES: frozenset[AccountStatus] = frozenset({S.PAIRING, S.CONNECTED, S.RECONNECTING})

# Statuses from which a new link attempt may start.
LINKABLE_STATUSES: frozenset[AccountStatus] = frozenset({S.UNLINKED, S.LOGGED_OUT, S.FAILED})

TRANSITIONS: dict[AccountStatus, frozenset[AccountStatus]] = {
    S.UNLINKED: frozenset({S.LINKING}),
    S.LINKING: frozenset({S.PAIRING, S.UNLINKED, S.FAILED}),
    S.PAIRING: frozenset({S.CONNECTED, S.RECONNECTING, S.UNLINKED, S.LOGGED_OUT, S.FAILED}),
    S.CONNECTED: frozenset({S.RECONNECTING, S.STOPPED, S.LOGGED_OUT, S.FAILED}),
    S.RECONNECTING: frozenset({S.CONNECTED, S.STOPPED, S.LOGGED_OUT, S.FAILED}),
    S.STOPPED: frozenset({S.RECONNECTING, S.LOGGED_OUT, S.FAILED}),
    S.LOGGED_OUT: frozenset({S.LINKING}),
    S.FAILED: frozenset({S.LINKING, S.LOGGED_OUT}),
}


def can_transition(current: AccountStatus, target: AccountStatus) -> bool:
    """Whether the table allows ``current -> target``."""
    return target in TRANSITIONS[current]


def check_transition(current: AccountStatus, target: AccountStatus) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``current -> target``."""
    if not can_transition(current, target):
        raise IllegalTransition(current.value, target.value)
