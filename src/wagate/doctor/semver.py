"""npm versions and ranges (``^1.2.3``, ``~1.2``, ``1.x``, ``>=1 <2 || 3.0.0``, ``1.2 - 1.4``).

A range becomes a union of intervals, so the doctor can ask both "does this installed version
satisfy it" and "does this declared range admit any version of that affected range". PEP 440
specifiers (Python) become the same intervals, over ``packaging`` versions.

Written here rather than taken from a library: the one port of node-semver on PyPI is untyped and
has no interval intersection. Build metadata is ignored, as npm does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


class RangeError(ValueError):
    """A version or range that is not npm (or PEP 440) syntax."""


@dataclass(frozen=True, slots=True)
class Version:
    """A semantic version; prerelease identifiers compare as semver 2.0 says."""

    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    def key(self) -> tuple[Any, ...]:
        # A release sorts after all of its prereleases; numeric identifiers before alphanumeric.
        if not self.pre:
            return (self.major, self.minor, self.patch, 1, ())
        ids = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0, ids)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(str(p) for p in self.pre)}" if self.pre else core


_VERSION = re.compile(
    r"^[v=\s]*(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$",
)
_PARTIAL = re.compile(
    r"^[v=\s]*([0-9]+|[xX*])?(?:\.([0-9]+|[xX*]))?(?:\.([0-9]+|[xX*]))?"
    r"(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_COMPARATOR = re.compile(r"^(<=|>=|<|>|=|\^|~>|~)?\s*(.*)$")


def _pre(text: str | None) -> tuple[int | str, ...]:
    if not text:
        return ()
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def parse_version(text: str) -> Version:
    """``1.2.3``, ``v1.2.3-rc.1``; raises RangeError otherwise."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise RangeError(f"not a version: {text!r}")
    major, minor, patch, pre = match.groups()
    return Version(int(major), int(minor), int(patch), _pre(pre))


@dataclass(frozen=True, slots=True)
class Interval(Generic[T]):
    """Versions between two bounds; a missing bound is open-ended."""

    lo: T | None = None
    lo_incl: bool = True
    hi: T | None = None
    hi_incl: bool = False

    def contains(self, v: T) -> bool:
        if self.lo is not None and (v < self.lo or (not self.lo_incl and not self.lo < v)):
            return False
        return self.hi is None or v < self.hi or (self.hi_incl and not self.hi < v)

    def narrow(self, other: Interval[T]) -> Interval[T]:
        lo, lo_incl = self.lo, self.lo_incl
        if other.lo is not None and (lo is None or lo < other.lo):
            lo, lo_incl = other.lo, other.lo_incl
        elif other.lo is not None and lo is not None and not other.lo < lo:  # equal: stricter wins
            lo_incl = lo_incl and other.lo_incl
        hi, hi_incl = self.hi, self.hi_incl
        if other.hi is not None and (hi is None or other.hi < hi):
            hi, hi_incl = other.hi, other.hi_incl
        elif other.hi is not None and hi is not None and not hi < other.hi:
            hi_incl = hi_incl and other.hi_incl
        return Interval(lo, lo_incl, hi, hi_incl)

    def empty(self) -> bool:
        if self.lo is None or self.hi is None:
            return False
        if self.hi < self.lo:
            return True
        return not self.lo < self.hi and not (self.lo_incl and self.hi_incl)

    def overlaps(self, other: Interval[T]) -> bool:
        return not self.narrow(other).empty()


def _floor(major: int, minor: int = 0, patch: int = 0) -> Version:
    # "X.Y.Z-0" is the lowest version of X.Y.Z, below all its prereleases: npm's exclusive bound.
    return Version(major, minor, patch, (0,))


def _num(part: str | None) -> int | None:
    return None if part is None or part in "xX*" else int(part)


def _comparator(op: str, text: str) -> Interval[Version]:
    """One comparator (with x-ranges, carets and tildes) as an interval."""
    match = _PARTIAL.match(text)
    if match is None:
        raise RangeError(f"not a version range: {text!r}")
    major, minor, patch = (_num(p) for p in match.groups()[:3])
    pre = _pre(match.group(4))
    if major is None:
        return Interval() if op in ("", "=", "^", "~", "~>", ">=", "<=") else _nothing()
    if minor is None or patch is None:
        pre = ()
    if op in ("", "="):
        if minor is None:
            return Interval(Version(major, 0, 0), True, _floor(major + 1))
        if patch is None:
            return Interval(Version(major, minor, 0), True, _floor(major, minor + 1))
        exact = Version(major, minor, patch, pre)
        return Interval(exact, True, exact, True)
    low = Version(major, minor or 0, patch or 0, pre)
    if op == "^":
        if major > 0 or minor is None:
            return Interval(low, True, _floor(major + 1))
        if minor > 0 or patch is None:
            return Interval(low, True, _floor(0, minor + 1))
        return Interval(low, True, _floor(0, 0, patch + 1))
    if op in ("~", "~>"):
        upper = _floor(major + 1) if minor is None else _floor(major, minor + 1)
        return Interval(low, True, upper)
    return _inequality(op, major, minor, patch, low)


def _inequality(
    op: str, major: int, minor: int | None, patch: int | None, low: Version
) -> Interval[Version]:
    if op == ">=":
        return Interval(low, True)
    if op == "<":
        return Interval(hi=low if patch is not None else _floor(major, minor or 0))
    partial_next = _floor(major + 1) if minor is None else _floor(major, minor + 1)
    if op == ">":
        return Interval(low, False) if patch is not None else Interval(partial_next, True)
    # "<="
    return Interval(hi=low, hi_incl=True) if patch is not None else Interval(hi=partial_next)


def _nothing() -> Interval[Version]:
    zero = Version(0, 0, 0, (0,))
    return Interval(zero, False, zero, False)


@dataclass(frozen=True, slots=True)
class _Set:
    interval: Interval[Version]
    # Release tuples whose prereleases this set admits (npm: only if a comparator names one).
    pre_ok: frozenset[tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class NpmRange:
    """A parsed npm range: a union of comparator sets."""

    text: str
    sets: tuple[_Set, ...]

    def satisfied_by(self, version: Version) -> bool:
        for s in self.sets:
            if not s.interval.contains(version):
                continue
            if not version.pre or (version.major, version.minor, version.patch) in s.pre_ok:
                return True
        return False

    def intervals(self) -> list[Interval[Version]]:
        return [s.interval for s in self.sets]


_HYPHEN = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s*$")


def parse_range(text: str) -> NpmRange:
    """An npm range; raises RangeError for tags, git URLs and other non-ranges."""
    sets = []
    for part in text.split("||"):
        part = part.strip()
        hyphen = _HYPHEN.match(part)
        comparators = (
            [(">=", hyphen.group(1)), ("<=", hyphen.group(2))]
            if hyphen
            else [_split(c) for c in re.sub(r"(<=|>=|<|>|=|\^|~>|~)\s+", r"\1", part).split()]
        )
        interval: Interval[Version] = Interval()
        pre_ok = set()
        for op, version in comparators or [("", "*")]:
            interval = interval.narrow(_comparator(op, version))
            match = _VERSION.match(version)
            if match and match.group(4):
                pre_ok.add((int(match.group(1)), int(match.group(2)), int(match.group(3))))
        sets.append(_Set(interval, frozenset(pre_ok)))
    return NpmRange(text, tuple(sets))


def _split(comparator: str) -> tuple[str, str]:
    match = _COMPARATOR.match(comparator)
    assert match is not None  # the pattern accepts any string
    return match.group(1) or "", match.group(2)


def pep440_intervals(spec: SpecifierSet) -> list[Interval[Pep440Version]]:
    """The versions a PEP 440 specifier set admits, as one interval (``!=`` is ignored)."""
    interval: Interval[Pep440Version] = Interval()
    for item in spec:
        op, text = item.operator, item.version
        if text.endswith(".*"):
            base = Pep440Version(text[:-2])
            upper = Pep440Version(
                ".".join([*map(str, base.release[:-1]), str(base.release[-1] + 1)])
            )
            if op == "==":
                interval = interval.narrow(Interval(base, True, upper))
            continue
        version = Pep440Version(text)
        if op in ("==", "==="):
            interval = interval.narrow(Interval(version, True, version, True))
        elif op == ">=":
            interval = interval.narrow(Interval(version, True))
        elif op == ">":
            interval = interval.narrow(Interval(version, False))
        elif op == "<=":
            interval = interval.narrow(Interval(hi=version, hi_incl=True))
        elif op == "<":
            interval = interval.narrow(Interval(hi=version))
        elif op == "~=":
            release = version.release[:-1]
            upper = Pep440Version(".".join([*map(str, release[:-1]), str(release[-1] + 1)]))
            interval = interval.narrow(Interval(version, True, upper))
    return [interval]


def parse_pep440(text: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise RangeError(f"not a PEP 440 specifier: {text!r}") from exc


def parse_pep440_version(text: str) -> Pep440Version:
    try:
        return Pep440Version(text)
    except InvalidVersion as exc:
        raise RangeError(f"not a PEP 440 version: {text!r}") from exc
