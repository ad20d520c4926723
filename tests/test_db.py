import asyncio

from wagate.db import Database, WriteGate, head_revision


async def test_upgrade_reaches_head(database: Database) -> None:
    assert await database.current_revision() == head_revision()


async def test_write_gate_serves_urgent_waiters_first_and_survives_cancellation() -> None:
    gate = WriteGate()
    order: list[str] = []
    entered = asyncio.Event()

    async def writer(name: str, urgent: bool = False, hold: float = 0.0) -> None:
        async with gate.hold(urgent):
            order.append(name)
            entered.set()
            await asyncio.sleep(hold)

    first = asyncio.create_task(writer("first", hold=0.05))
    await entered.wait()
    waiting = [
        asyncio.create_task(writer("plain-1")),
        asyncio.create_task(writer("plain-2")),
        asyncio.create_task(writer("urgent", urgent=True)),
    ]
    cancelled = asyncio.create_task(writer("cancelled"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(first, *waiting)
    assert order == ["first", "urgent", "plain-1", "plain-2"]
    async with gate.hold():  # free again: nobody holds it after the cancelled waiter left
        pass
