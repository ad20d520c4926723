"""What one write transaction notes for its commit: one typed object in the session's ``info``.

``Database.run`` puts a fresh ``Notes`` into every write session. The outbox adds to it as events
are recorded and flushed (the deliveries it created, those claimed at birth); after the commit,
``Database.run`` hands it to the commit listeners (event streams, the dispatcher, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from wagate.db.models import Event

_KEY = "wagate.notes"

# (url, format, encrypted secret) of a workspace's webhook; None when it has no URL.
Target = tuple[str, str, str] | None


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed delivery, with what sending it needs (plain values, no ORM objects)."""

    delivery_id: str
    account_id: str | None
    attempts: int
    event: dict[str, Any]  # the envelope
    workspace_id: str
    url: str | None
    format: str
    secret: str | None
    until: datetime  # the end of the claim's lease: not sent after it


@dataclass(slots=True)
class Notes:
    """One transaction's notes; ``birth_lease`` is set when a dispatcher in this process claims
    new deliveries at birth (the seconds of that claim's lease)."""

    birth_lease: float | None = None
    # The topics (account ids) the transaction wrote events for: their streams wake.
    topics: set[str] = field(default_factory=set)
    # The events it recorded, in order.
    events: list[Event] = field(default_factory=list)
    # Events not yet given a delivery (they get one once flushed, with their id).
    unflushed: list[Event] = field(default_factory=list)
    # The workspaces' webhook targets read in this transaction.
    targets: dict[str, Target] = field(default_factory=dict)
    # Deliveries claimed at birth, in order; accounts whose new deliveries wait behind others.
    born: list[Job] = field(default_factory=list)
    queued: set[str] = field(default_factory=set)
    # Each account whose status the transaction changed, with its last new status: the session
    # layer takes or releases their leases before the commit.
    statuses: dict[str, str] = field(default_factory=dict)
    # Leases the transaction took (account → epoch) or let go (→ None): the session manager
    # records them as its own once the transaction has committed.
    leases: dict[str, int | None] = field(default_factory=dict)
    # The database's clock, read once for the transaction's leases (``db_clock``).
    clock: datetime | None = None


def start(session: AsyncSession, birth_lease: float | None) -> Notes:
    """Fresh notes for a transaction about to begin on ``session``."""
    notes = Notes(birth_lease)
    session.info[_KEY] = notes
    return notes


def of(session: AsyncSession | Session) -> Notes:
    """The notes of ``session``'s transaction (empty ones for a session ``run`` did not open)."""
    notes: Notes | None = session.info.get(_KEY)
    if notes is None:
        notes = Notes()
        session.info[_KEY] = notes
    return notes
