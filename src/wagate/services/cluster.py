"""Nodes and leases in the database (DESIGN §13): membership by heartbeat, and one lease per
account with a session or an open attempt, fenced by its epoch.

Every time here is the database's clock (``db_clock``), so nodes on several machines agree on
what has expired. A lease's holder and epoch change only under the account's row lock (taking,
releasing), so a transaction that holds that lock reads them consistently; renewals only move
``expires_at``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.cluster import SESSION_STATUSES, LeaseTerms
from wagate.core.states import AccountStatus
from wagate.core.statuses import NodeState
from wagate.db.models import Account, Lease, LinkAttempt, Node
from wagate.errors import ConfigError


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as ``GET /v1/cluster`` shows it."""

    name: str
    state: str
    started_at: datetime
    last_seen_at: datetime
    sessions_owned: int


@dataclass(frozen=True, slots=True)
class Orphan:
    """An account with a session or attempt that no live node serves."""

    account_id: str
    status: str
    open_attempt: bool
    # Why it has no owner: its node let it go (``handoff``) or went silent (``failover``).
    reason: str


async def join(
    session: AsyncSession,
    node: str,
    now: datetime,
    host: str | None = None,
    pid: int | None = None,
    key_fingerprint: str | None = None,
    url: str | None = None,
) -> None:
    """Register ``node`` as live (again, when a node of that name ran before). Refused with
    ``ConfigError`` when another node of the cluster encrypts with another secret key."""
    if key_fingerprint is not None:
        await check_key(session, node, key_fingerprint)
    row = await session.get(Node, node, with_for_update=True)
    if row is None:
        row = Node(name=node, started_at=now, last_seen_at=now, state=NodeState.LIVE)
        session.add(row)
    row.started_at = now
    row.last_seen_at = now
    row.state = NodeState.LIVE
    row.host, row.pid, row.key_fingerprint, row.url = host, pid, key_fingerprint, url
    await session.flush()


async def check_key(session: AsyncSession, node: str, key_fingerprint: str) -> None:
    """``ConfigError`` when another node of the cluster seals with another secret key."""
    query = select(Node.name).where(
        Node.name != node,
        Node.key_fingerprint.is_not(None),
        Node.key_fingerprint != key_fingerprint,
    )
    other = (await session.execute(query.limit(1))).scalar_one_or_none()
    if other is not None:
        raise ConfigError(
            f"this node's WAGATE_SECRET_KEY differs from node {other!r}'s: every node of a "
            "cluster needs the same key (set WAGATE_SECRET_KEY, or share the key file)"
        )


async def neighbours(session: AsyncSession, node: str, host: str) -> dict[str, int]:
    """The other nodes not known dead on ``host``, by name, with their process ids."""
    query = select(Node.name, Node.pid).where(
        Node.host == host, Node.name != node, Node.state != NodeState.DEAD, Node.pid.is_not(None)
    )
    return {name: pid for name, pid in (await session.execute(query)).all() if pid is not None}


async def forget(session: AsyncSession, names: list[str]) -> None:
    """Nodes known to be gone (their process is not running): dead, their leases released so
    the others take them at once."""
    await session.execute(
        update(Node).where(Node.name.in_(names)).values(state=NodeState.DEAD.value)
    )
    await session.execute(
        update(Lease).where(Lease.node.in_(names)).values(node=None, expires_at=None)
    )


async def heartbeat(session: AsyncSession, node: str, now: datetime) -> None:
    """The node is alive now; one that was marked dead while it was silent comes back live."""
    row = await session.get(Node, node)
    if row is None:
        await join(session, node, now)
        return
    row.last_seen_at = now
    if row.state == NodeState.DEAD:
        row.state = NodeState.LIVE


async def set_state(session: AsyncSession, node: str, state: NodeState) -> None:
    await session.execute(update(Node).where(Node.name == node).values(state=state.value))


async def bury(session: AsyncSession, now: datetime, terms: LeaseTerms) -> list[str]:
    """Mark dead the nodes silent past their leases; their names."""
    cutoff = now - timedelta(seconds=terms.silent_after)
    query = select(Node.name).where(Node.state != NodeState.DEAD, Node.last_seen_at < cutoff)
    names = list((await session.execute(query)).scalars())
    if names:
        await session.execute(
            update(Node).where(Node.name.in_(names)).values(state=NodeState.DEAD.value)
        )
    return names


async def live_nodes(
    session: AsyncSession, now: datetime, terms: LeaseTerms, settled: float = 0.0
) -> list[str]:
    """Nodes that heartbeat and take sessions (not leaving, not silent); with ``settled``, only
    those that have run at least that many seconds."""
    cutoff = now - timedelta(seconds=terms.silent_after)
    query = select(Node.name).where(Node.state == NodeState.LIVE, Node.last_seen_at >= cutoff)
    if settled:
        query = query.where(Node.started_at <= now - timedelta(seconds=settled))
    return sorted((await session.execute(query)).scalars())


async def take(
    session: AsyncSession, account_id: str, node: str, now: datetime, terms: LeaseTerms
) -> int | None:
    """Take or renew the account's lease for ``node``: its epoch, or None when another node holds
    it. The caller holds the account row, which every change of a lease's holder takes first, so
    the lease row needs no lock of its own (and a batch may have loaded it already, see
    ``load_leases``); a new owner's epoch is one higher than the last."""
    lease = await session.get(Lease, account_id)
    until = now + timedelta(seconds=terms.seconds)
    if lease is None:
        session.add(Lease(account_id=account_id, node=node, epoch=1, expires_at=until))
        return 1
    if lease.node == node:
        lease.expires_at = until
        return lease.epoch
    expired = lease.expires_at is None or lease.expires_at < _takeover_cutoff(now, terms)
    if lease.node is not None and not expired:
        return None
    lease.node = node
    lease.epoch += 1
    lease.expires_at = until
    return lease.epoch


async def load_leases(session: AsyncSession, account_ids: list[str]) -> None:
    """Read the leases of a batch of accounts at once, so ``take`` finds them without a query
    each (restoration and takeover handle 64 accounts a transaction)."""
    await session.execute(select(Lease).where(Lease.account_id.in_(account_ids)))


async def release(session: AsyncSession, account_id: str, node: str | None = None) -> None:
    """Nobody serves the account any more (``node``: only if that node still holds it); the
    epoch stays for the next owner to exceed."""
    holder = Lease.node.is_not(None) if node is None else Lease.node == node
    await session.execute(
        update(Lease)
        .where(Lease.account_id == account_id, holder)
        .values(node=None, expires_at=None)
    )


async def release_all(session: AsyncSession, node: str) -> int:
    """A leaving node lets every lease go at once, so the others take them without waiting."""
    result = await session.execute(
        update(Lease).where(Lease.node == node).values(node=None, expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def holds(session: AsyncSession, account_id: str, node: str, epoch: int | None) -> bool:
    """Whether ``node`` still holds the account's lease at ``epoch`` (the fencing check)."""
    if epoch is None:
        return False
    lease = await session.get(Lease, account_id, populate_existing=True)
    return lease is not None and lease.node == node and lease.epoch == epoch


async def renew(
    session: AsyncSession, node: str, now: datetime, terms: LeaseTerms
) -> dict[str, int]:
    """Extend every lease ``node`` holds; the leases it still holds, with their epochs."""
    until = now + timedelta(seconds=terms.seconds)
    await session.execute(update(Lease).where(Lease.node == node).values(expires_at=until))
    query = select(Lease.account_id, Lease.epoch).where(Lease.node == node)
    return {account_id: epoch for account_id, epoch in (await session.execute(query)).all()}


def _takeover_cutoff(now: datetime, terms: LeaseTerms) -> datetime:
    """A lease that expired before this may be taken by another node (the holder has had the
    margin to close its session)."""
    return now - timedelta(seconds=terms.margin)


def _free(now: datetime, terms: LeaseTerms) -> ColumnElement[bool]:
    """An account (outer-joined with its lease) that no node serves: no lease yet, a released
    one, or one past its expiry and the margin."""
    return or_(
        Lease.account_id.is_(None),
        Lease.node.is_(None),
        Lease.expires_at < _takeover_cutoff(now, terms),
    )


async def orphans(
    session: AsyncSession, node: str, now: datetime, terms: LeaseTerms, limit: int = 2000
) -> list[Orphan]:
    """Accounts with a session status or an open attempt that no live node serves: no lease, a
    released one, or one past its expiry and the margin (``node``'s own are not orphans)."""
    statuses = [s.value for s in SESSION_STATUSES]
    query = (
        select(Account.id, Account.status, Lease.node, LinkAttempt.id)
        .outerjoin(Lease, Lease.account_id == Account.id)
        .outerjoin(LinkAttempt, LinkAttempt.open_account_id == Account.id)
        .where(
            Account.status.in_(statuses),
            _free(now, terms),
            or_(Lease.node.is_(None), Lease.node != node),
        )
        .order_by(Account.id)
        .limit(limit)
    )
    return [
        Orphan(account_id, status, attempt_id is not None, "failover" if holder else "handoff")
        for account_id, status, holder, attempt_id in (await session.execute(query)).all()
    ]


async def unserved(
    session: AsyncSession,
    node: str,
    now: datetime,
    terms: LeaseTerms,
    statuses: Collection[AccountStatus],
) -> list[str]:
    """Ids of the accounts in ``statuses`` whose lease ``node`` may take: none yet, released,
    ``node``'s own, or past its expiry and the margin."""
    query = (
        select(Account.id)
        .outerjoin(Lease, Lease.account_id == Account.id)
        .where(
            Account.status.in_([s.value for s in statuses]),
            or_(_free(now, terms), Lease.node == node),
        )
        .order_by(Account.id)
    )
    return list((await session.execute(query)).scalars())


async def owner(session: AsyncSession, account_id: str) -> tuple[str, str | None] | None:
    """The live node serving the account, and the URL it is reached at; None when none."""
    query = (
        select(Node.name, Node.url)
        .join(Lease, Lease.node == Node.name)
        .where(Lease.account_id == account_id, Node.state == NodeState.LIVE)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row[0], row[1])


async def in_transit(session: AsyncSession, account_id: str) -> bool:
    """Whether the account's session is between nodes: the account is connected, and no live
    node serves it (its lease was just released for a handoff, or its node is leaving)."""
    query = (
        select(Account.id)
        .outerjoin(Lease, Lease.account_id == Account.id)
        .outerjoin(Node, Node.name == Lease.node)
        .where(
            Account.id == account_id,
            Account.status == AccountStatus.CONNECTED.value,
            or_(Node.name.is_(None), Node.state != NodeState.LIVE),
        )
    )
    return (await session.execute(query)).first() is not None


async def owners(session: AsyncSession, account_ids: list[str]) -> dict[str, str]:
    """The node holding each account's lease, for those that have one."""
    if not account_ids:
        return {}
    query = select(Lease.account_id, Lease.node).where(
        Lease.account_id.in_(account_ids), Lease.node.is_not(None)
    )
    rows = (await session.execute(query)).all()
    return {account_id: node for account_id, node in rows if node is not None}


async def held_counts(session: AsyncSession) -> dict[str, int]:
    """How many leases each node holds."""
    query = select(Lease.node, func.count()).where(Lease.node.is_not(None)).group_by(Lease.node)
    return {node: int(n) for node, n in (await session.execute(query)).all() if node is not None}


async def nodes(session: AsyncSession) -> list[NodeInfo]:
    """Every node the cluster has seen, with the leases each holds."""
    counts = await held_counts(session)
    rows = (await session.execute(select(Node).order_by(Node.started_at, Node.name))).scalars()
    return [
        NodeInfo(n.name, n.state, n.started_at, n.last_seen_at, int(counts.get(n.name, 0)))
        for n in rows
    ]
