"""Commands that work on the database directly (``webhooks``, ``cluster``): one helper to open it,
run the work, and turn failures into a message and an exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from wagate.cli.output import fail
from wagate.config import Settings
from wagate.db.database import Database
from wagate.errors import WagateError

T = TypeVar("T")


def on_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the database at ``WAGATE_DATABASE_URL``; errors become a message and an
    exit code (1: wagate refused, 2: the database could not be reached)."""

    async def main() -> T:
        db = Database(Settings().database_url)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except WagateError as exc:
        raise fail(exc.message, 1) from None
    except Exception as exc:  # the database's own message is what the user needs
        raise fail(f"could not reach the database: {exc}") from None
