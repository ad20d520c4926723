"""Retry delays as one small frozen value, shared by reconnects and webhook deliveries."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``min * factor**(attempt-1)``, capped at ``max``, with full jitter.

    ``jitter`` is the share of the delay that is randomised (0 = none, 1 = anywhere in [0, d]).
    """

    min: float = 1.0
    max: float = 3600.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        base = min(self.max, self.min * self.factor ** min(attempt - 1, 64))
        spread = base * self.jitter
        return base - spread + (rng or random).uniform(0.0, spread)
