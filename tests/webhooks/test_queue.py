"""Delivery rows in the database on every backend: heads in ``seq`` order per account, the next
delivery claimed in the transaction that settles the one before it, and claims at birth."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.core.event_types import EventType
from wagate.db.database import Commit, Database
from wagate.db.models import Account, Workspace, utcnow
from wagate.db.outbox import record
from wagate.webhooks import queue

LEASE = 15.0


async def seed(database: Database, per_account: int) -> list[str]:
    """Two accounts of a workspace with a webhook URL, ``per_account`` events each."""

    async def work(session: AsyncSession) -> list[str]:
        workspace = Workspace(name="w", webhook_secret="x", webhook_url="http://127.0.0.1:9/h")
        session.add(workspace)
        await session.flush()
        accounts = [Account(workspace_id=workspace.id, label=f"a{n}") for n in range(2)]
        session.add_all(accounts)
        await session.flush()
        for n in range(per_account):
            for account in accounts:
                record(session, account, EventType.ACCOUNT_STATUS, {"n": n})
        await session.flush()
        return [account.id for account in accounts]

    return await database.run(work)


async def heads(database: Database) -> dict[str | None, int]:
    """The event seq each account's due head would send."""
    async with database.sessions() as session:
        ids, _ = await queue.due(session, utcnow(), 100)
        jobs = await queue.claim(session, ids, utcnow(), LEASE)
        seqs = {job.account_id: job.event["seq"] for job in jobs}
        await session.rollback()
    return seqs


def outcome(job: queue.Job, error: str | None = None, retry: bool = False) -> queue.Outcome:
    now = utcnow()
    retry_at = now + timedelta(seconds=60) if retry else None
    return queue.Outcome(job.delivery_id, job.account_id, now, 200, error, retry_at)


async def test_settling_claims_each_accounts_next_delivery(database: Database) -> None:
    first, second = await seed(database, per_account=3)
    assert await heads(database) == {first: 1, second: 1}

    async def take(session: AsyncSession) -> list[queue.Job]:
        found, _ = await queue.due(session, utcnow(), 100)
        return await queue.claim(session, found, utcnow(), LEASE)

    jobs = {job.account_id: job for job in await database.run(take)}
    assert {a: j.event["seq"] for a, j in jobs.items()} == {first: 1, second: 1}

    # Delivered: the next of that account comes back claimed; failed: nothing, it waits.
    async def settle_both(session: AsyncSession) -> list[queue.Job]:
        return await queue.settle(
            session,
            [outcome(jobs[first]), outcome(jobs[second], "http_5xx", retry=True)],
            lease=LEASE,
        )

    following = await database.run(settle_both)
    assert [(job.account_id, job.event["seq"], job.attempts) for job in following] == [
        (first, 2, 1)
    ]
    # Claimed rows are leased: neither account has a due head now.
    assert await heads(database) == {}

    # Dead also moves the queue on.
    async def kill(session: AsyncSession) -> list[queue.Job]:
        return await queue.settle(session, [outcome(following[0], "http_4xx")], lease=LEASE)

    after_dead = await database.run(kill)
    assert [(job.account_id, job.event["seq"]) for job in after_dead] == [(first, 3)]

    # Without a lease (shutting down) nothing more is claimed.
    async def last(session: AsyncSession) -> list[queue.Job]:
        return await queue.settle(session, [outcome(after_dead[0])], lease=None)

    assert await database.run(last) == []
    async with database.sessions() as session:
        rows = await queue.page(session, Caller(key_id=None, workspace_id=None), limit=100)
    statuses = {(d.account_id, seq): d.status for seq, (d, _type) in enumerate(rows)}
    assert sorted(statuses.values()) == ["dead", "delivered", "delivered", *["pending"] * 3]


async def test_a_deeper_claim_takes_the_due_prefix_and_unsent_get_their_attempt_back(
    database: Database,
) -> None:
    first, second = await seed(database, per_account=4)

    async def take(session: AsyncSession) -> list[queue.Job]:
        found, _ = await queue.due(session, utcnow(), 100)
        return await queue.claim(session, found, utcnow(), LEASE)

    heads = {job.account_id: job for job in await database.run(take)}

    async def deliver_first(session: AsyncSession) -> list[queue.Job]:
        return await queue.settle(session, [outcome(heads[first])], lease=LEASE, depth=2)

    prefetched = await database.run(deliver_first)
    assert [(j.account_id, j.event["seq"], j.attempts) for j in prefetched] == [
        (first, 2, 1),
        (first, 3, 1),
    ]

    # The second fails: the third was never sent and gives its attempt back; it waits behind.
    async def fail_second(session: AsyncSession) -> list[queue.Job]:
        return await queue.settle(
            session,
            [outcome(prefetched[0], "http_5xx", retry=True)],
            lease=LEASE,
            depth=2,
            unsent=[prefetched[1].delivery_id],
        )

    assert await database.run(fail_second) == []
    async with database.sessions() as session:
        rows = await queue.page(session, Caller(key_id=None, workspace_id=None), limit=100)
    attempts = {d.id: (d.status, d.attempts) for d, _type in rows}
    assert attempts[prefetched[0].delivery_id] == ("pending", 1)
    assert attempts[prefetched[1].delivery_id] == ("pending", 0)
    # Nothing is due now (a retry waits, a lease runs); later the failed one goes first again.
    assert await _due_seqs(database) == {}
    later = utcnow() + timedelta(seconds=61)
    assert await _due_seqs(database, later) == {first: 2, second: 1}


async def _due_seqs(database: Database, at: datetime | None = None) -> dict[str | None, int]:
    now = at or utcnow()
    async with database.sessions() as session:
        ids, _ = await queue.due(session, now, 100)
        jobs = await queue.claim(session, ids, now, LEASE)
        seqs = {job.account_id: job.event["seq"] for job in jobs}
        await session.rollback()
    return seqs


async def test_a_delivery_with_nothing_pending_is_claimed_at_birth_others_queue(
    database: Database,
) -> None:
    """With a dispatcher running (the birth lease in the session), an account's new deliveries
    are written leased and handed over when nothing of the account is pending; once something
    is, new ones queue behind it and are not handed over."""
    database.claim_at_birth(LEASE)
    commits: list[Commit] = []
    database.listen(commits.append)
    first, second = await seed(database, per_account=2)  # nothing pending before: all born
    born = commits[-1].notes.born
    assert [(j.account_id, j.event["seq"], j.attempts) for j in born] == [
        (first, 1, 1),
        (second, 1, 1),
        (first, 2, 1),
        (second, 2, 1),
    ]
    assert all(j.url == "http://127.0.0.1:9/h" and j.until > utcnow() for j in born)
    assert await heads(database) == {}  # leased: no other claimer finds them due

    async def more(session: AsyncSession) -> None:
        account = await session.get(Account, first)
        assert account is not None
        record(session, account, EventType.ACCOUNT_STATUS, {"n": 2})

    await database.run(more)
    assert commits[-1].notes.born == []
    assert commits[-1].notes.queued == {first}

    # Without the lease (no dispatcher in this process) nothing is claimed at birth.
    database.claim_at_birth(None)
    await database.run(more)
    assert commits[-1].notes.birth_lease is None and commits[-1].notes.born == []
