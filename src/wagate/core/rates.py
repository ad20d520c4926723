"""Rates such as ``10/h``: how many link attempts a window allows (settings and limits)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` attempts per ``seconds``; ``count == 0`` means no limit."""

    count: int
    seconds: int

    @property
    def unlimited(self) -> bool:
        return self.count == 0

    def __str__(self) -> str:
        return "unlimited" if self.unlimited else f"{self.count}/{self.seconds}s"


UNLIMITED = Rate(0, 1)


def parse_rate(value: object) -> Rate:
    """``10/h``, ``100/hour``, ``5/min``, ``30/s``, ``20/15min``, ``1/day``; ``off`` or ``0`` for
    no limit. Raises ``ValueError`` with the accepted forms."""
    if isinstance(value, Rate):
        return value
    text = str(value).strip().lower()
    if text in ("off", "none", "unlimited", "0"):
        return UNLIMITED
    match = _RATE.match(text)
    unit = _unit(match.group(3)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"invalid rate {value!r}: use <count>/<unit> with unit s, min, h or d "
            "(e.g. 10/h, 5/min, 30/s, 20/15min), or 'off'"
        )
    count, multiple = int(match.group(1)), int(match.group(2) or 1)
    if multiple == 0:
        raise ValueError(f"invalid rate {value!r}: the window cannot be 0")
    return Rate(count, multiple * unit) if count else UNLIMITED


def _unit(name: str) -> int | None:
    # Plurals of the long names ("hours", "mins"); "ms" stays unknown, never minutes.
    if name not in _UNITS and len(name) > 2 and name.endswith("s"):
        name = name[:-1]
    return _UNITS.get(name)
