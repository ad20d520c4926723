"""Cluster vocabulary (DESIGN §13): lease terms and where an account belongs, with no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from wagate.core.states import AccountStatus

S = AccountStatus
# Statuses in which an account has a session or an open attempt somewhere: each holds a lease.
SESSION_STATUSES: frozenset[AccountStatus] = frozenset(
    {S.LINKING, S.PAIRING, S.CONNECTED, S.RECONNECTING}
)


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How long a lease lasts and what follows from it.

    The holder renews every third of ``seconds``. One that could not renew for two thirds of it
    closes its sessions itself (``fence_after``); the others take a lease only once it is
    ``margin`` past its expiry, so the old holder has let go before anyone else connects.
    """

    seconds: float = 15.0

    @property
    def renew_every(self) -> float:
        return self.seconds / 3

    @property
    def fence_after(self) -> float:
        return self.seconds * 2 / 3

    @property
    def margin(self) -> float:
        return self.seconds / 3

    @property
    def silent_after(self) -> float:
        """A node not seen for this long is dead: its leases have expired past the margin."""
        return self.seconds + self.margin


DEFAULT_TERMS = LeaseTerms()


def place(account_id: str, nodes: Iterable[str]) -> str | None:
    """The node an account belongs on: rendezvous hashing over the live nodes' names, so each
    account moves only when its own node leaves or a node that outranks it for the account joins.
    None when there is no node."""
    best: tuple[bytes, str] | None = None
    for node in nodes:
        score = hashlib.sha256(f"{node}\x00{account_id}".encode()).digest()
        if best is None or score > best[0]:
            best = (score, node)
    return best[1] if best else None
