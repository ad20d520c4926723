"""Garbage collection for a long-running gateway process (``wagate serve``).

CPython runs a full collection whenever the objects that survived the younger generations grow
by a quarter, so while sessions, streams and link attempts accumulate the whole heap is walked
again and again: measured with a thousand open streams and attempts, 230-400 ms with the event
loop stopped, several times a minute. A gateway's long-lived objects rarely become garbage,
and its short-lived cycles are found by the young collections, so here the full collection runs
on a timer instead (and never walks what existed when serving began, which is frozen).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("wagate.collector")

FULL_EVERY = 300.0  # seconds between full collections
# Young generations as CPython's defaults; the oldest never collected by count.
THRESHOLDS = (700, 10, 1_000_000_000)


def tune() -> None:
    """Collect once, set what exists now aside for good (modules, settings, restored state),
    and leave full collections to ``collect_forever``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


async def collect_forever(every: float = FULL_EVERY) -> None:
    while True:
        await asyncio.sleep(every)
        started = time.perf_counter()
        found = gc.collect()
        log.debug(
            "full garbage collection",
            extra={"objects": found, "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
