"""The database tables (DESIGN §2). Migrations in ``wagate/migrations`` create exactly these."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Row
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from wagate.core.states import LINKED_STATUSES, AccountStatus, AttemptOutcome, LinkMethod
from wagate.core.statuses import (
    DeliveryStatus,
    LinkPolicy,
    MessageDirection,
    MessageStatus,
    NodeState,
    WebhookFormat,
)


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC with microseconds on every backend; always returns aware UTC."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
EventId = BigInteger().with_variant(Integer(), "sqlite")


def _sql_list(values: Iterable[StrEnum], *, ordered: bool = True) -> str:
    """The values as an SQL list; sorted, or in the enum's own order (``ordered=False``) where the
    migration that created the constraint wrote them so."""
    chosen = sorted(values, key=lambda v: v.value) if ordered else list(values)
    return ", ".join(f"'{v.value}'" for v in chosen)


# Every CHECK constraint on a status or choice is generated from its enum (wagate.core), so the
# code can write no value the schema refuses.
LINKED_SQL = _sql_list(LINKED_STATUSES)
STATUS_SQL = _sql_list(AccountStatus)
OUTCOME_SQL = _sql_list(AttemptOutcome)
METHOD_SQL = _sql_list(LinkMethod)
FORMAT_SQL = _sql_list(WebhookFormat, ordered=False)
POLICY_SQL = _sql_list(LinkPolicy, ordered=False)
DELIVERY_SQL = _sql_list(DeliveryStatus, ordered=False)
DIRECTION_SQL = _sql_list(MessageDirection, ordered=False)
MESSAGE_SQL = _sql_list(MessageStatus, ordered=False)
NODE_SQL = _sql_list(NodeState, ordered=False)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    # AES-GCM ciphertext (see wagate.core.crypto), never the plain secret.
    webhook_secret: Mapped[str] = mapped_column(Text)
    webhook_format: Mapped[str] = mapped_column(String(16), default=WebhookFormat.WAGATE.value)
    link_policy: Mapped[str] = mapped_column(String(16), default=LinkPolicy.REPLACE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(f"webhook_format IN ({FORMAT_SQL})", name="webhook_format"),
        CheckConstraint(f"link_policy IN ({POLICY_SQL})", name="link_policy"),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # NULL: the admin key.
    workspace_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), default=None, index=True
    )
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    label: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(16), default="web")
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.UNLINKED.value)
    status_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    jid: Mapped[str | None] = mapped_column(String(100), default=None)
    # The phone while the account counts as linked, else NULL: the database keeps it, so no code
    # path can forget it, and the unique index below can never collide on a status (invariant 2/3).
    linked_phone: Mapped[str | None] = mapped_column(
        String(20),
        Computed(f"CASE WHEN status IN ({LINKED_SQL}) THEN phone END", persisted=True),
    )
    linked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Last event sequence number written for this account (events.seq).
    last_seq: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint(f"status IN ({STATUS_SQL})", name="status"),
        UniqueConstraint("workspace_id", "linked_phone"),
        Index(None, "workspace_id", "status"),
    )


class LinkAttempt(Base):
    __tablename__ = "link_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    method: Mapped[str] = mapped_column(String(8))
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_qr_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    qr_count: Mapped[int] = mapped_column(Integer, default=0)
    paired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    # When the engine last reported on this attempt; the sweeper closes silent ones.
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The account id while the attempt is open, else NULL: one open attempt per account (inv. 1).
    open_account_id: Mapped[str | None] = mapped_column(
        String(36),
        Computed("CASE WHEN ended_at IS NULL THEN account_id END", persisted=True),
    )

    __table_args__ = (
        CheckConstraint(f"method IN ({METHOD_SQL})", name="method"),
        CheckConstraint(f"outcome IS NULL OR outcome IN ({OUTCOME_SQL})", name="outcome"),
        CheckConstraint(
            "(ended_at IS NULL AND outcome IS NULL)"
            " OR (ended_at IS NOT NULL AND outcome IS NOT NULL)",
            name="closed_has_outcome",
        ),
        UniqueConstraint("open_account_id"),
        Index(None, "account_id", "started_at"),
        Index(None, "started_at"),
    )


class AuthState(Base):
    __tablename__ = "auth_states"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    ciphertext: Mapped[bytes] = mapped_column(Blob)
    checksum: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(36))
    # No foreign key: the event log outlives a deleted account.
    account_id: Mapped[str | None] = mapped_column(String(36), default=None)
    seq: Mapped[int | None] = mapped_column(Integer, default=None)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("account_id", "seq"),
        Index(None, "workspace_id", "id"),
    )


# An event read as plain columns (``Bundle("event", *ENVELOPE_COLUMNS)``) has what
# ``envelope`` needs without an ORM object: the dispatcher reads one per delivery.
ENVELOPE_COLUMNS = (
    Event.id,
    Event.type,
    Event.created_at,
    Event.workspace_id,
    Event.account_id,
    Event.seq,
    Event.data,
)


def envelope(event: Event | Row[Any]) -> dict[str, Any]:
    """The public shape of an event (contract): the same in webhooks, polling and SSE."""
    return {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "workspace_id": event.workspace_id,
        "account_id": event.account_id,
        "seq": event.seq,
        "data": event.data,
    }


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[int] = mapped_column(
        EventId, ForeignKey("events.id", ondelete="CASCADE"), unique=True
    )
    workspace_id: Mapped[str] = mapped_column(String(36))
    # Deliveries of one account go out in seq order: the dispatcher sends an account's next
    # delivery only when the ones before it are delivered or dead.
    account_id: Mapped[str | None] = mapped_column(String(36), default=None)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(f"status IN ({DELIVERY_SQL})", name="status"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "status", "account_id", "event_id"),
        Index(None, "account_id", "event_id"),
        Index(None, "workspace_id", "status"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    direction: Mapped[str] = mapped_column(String(3))
    chat: Mapped[str] = mapped_column(String(100))
    wa_id: Mapped[str | None] = mapped_column(String(128), default=None)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    # The client's idempotency key: NULLs never collide, so only given refs are unique.
    client_ref: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    __table_args__ = (
        CheckConstraint(f"direction IN ({DIRECTION_SQL})", name="direction"),
        CheckConstraint(f"status IN ({MESSAGE_SQL})", name="status"),
        UniqueConstraint("account_id", "client_ref"),
        Index(None, "account_id", "wa_id"),
        Index(None, "account_id", "created_at"),
    )


class Node(Base):
    """A ``wagate serve`` process of the cluster; heartbeats on the database's clock."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(8), default=NodeState.LIVE.value)
    # Where the process runs: a node that finds one of its own host's nodes without a process
    # behind it knows at once that it died, without waiting for its leases to expire.
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    # ``Cipher.fingerprint`` of the node's secret key: every node of a cluster needs the same.
    key_fingerprint: Mapped[str | None] = mapped_column(String(16), default=None)
    # Where the other nodes reach this node's API, to carry it a command for a session it serves.
    url: Mapped[str | None] = mapped_column(String(255), default=None)

    __table_args__ = (CheckConstraint(f"state IN ({NODE_SQL})", name="state"),)


class LinkStart(Base):
    """One row per link attempt started, kept per workspace: what the workspace's link rate limit
    counts. Unlike the attempts, these rows stay when their account is deleted, so deleting an
    account cannot give its workspace its attempts back."""

    __tablename__ = "link_starts"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index(None, "workspace_id", "started_at"),)


class Lease(Base):
    """Which node serves an account's session or open attempt, until when, under which epoch.

    ``epoch`` grows by one with every new owner and is the fencing token: a transaction applying
    an engine event checks that its node still holds the lease at the epoch it took. A released
    lease keeps its row (``node`` NULL) so the next owner's epoch is still higher.
    """

    __tablename__ = "leases"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str | None] = mapped_column(String(100), default=None)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    __table_args__ = (Index(None, "node"),)
