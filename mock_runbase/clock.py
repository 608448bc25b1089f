"""Clocks: the real one, and a virtual one that moves only when told to.

Times are epoch milliseconds (``int``): Runbase's timestamps have millisecond precision,
and integers keep a run's milestones exact on every poll.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock",
    "SettableClock",
    "SystemClock",
    "VirtualClock",
    "format_ms",
    "parse_timestamp",
]

DEFAULT_VIRTUAL_START = "2026-06-01T12:00:00.000Z"  # the Quickstart sample's createdAt


class Clock(Protocol):
    """What the mock reads the time from. ``now`` is async: a clock shared by several
    processes (``redis_store.SharedVirtualClock``) is read from the store."""

    virtual: bool

    async def now(self) -> int: ...


@runtime_checkable
class SettableClock(Clock, Protocol):
    """A virtual clock, moved by the control API; it never goes back (except on reset)."""

    async def move_by(self, seconds: float) -> int: ...

    async def move_to(self, when_ms: int) -> int: ...

    async def rewind(self) -> None: ...

    async def restore(self, when_ms: int) -> None:
        """Set the time to ``when_ms``, even back: the instant a loaded state is of."""


class SystemClock:
    virtual = False

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def now(self) -> int:
        return time.time_ns() // 1_000_000


class VirtualClock:
    """Starts at a fixed instant and moves only through ``advance`` or ``set``; never back.

    One process only; the sync methods are for tests that hold the clock in hand."""

    virtual = True

    def __init__(self, start: str | int = DEFAULT_VIRTUAL_START) -> None:
        self.start_ms = parse_timestamp(start) if isinstance(start, str) else start
        self._now_ms = self.start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._now_ms

    async def now(self) -> int:
        return self._now_ms

    async def move_by(self, seconds: float) -> int:
        return self.advance(seconds)

    async def move_to(self, when_ms: int) -> int:
        return self.set(when_ms)

    async def rewind(self) -> None:
        self.reset()

    async def restore(self, when_ms: int) -> None:
        with self._lock:
            self._now_ms = when_ms

    def advance(self, seconds: float) -> int:
        if not seconds >= 0:
            raise ValueError("a virtual clock only moves forward")
        with self._lock:
            self._now_ms += round(seconds * 1000)
            return self._now_ms

    def set(self, when_ms: int) -> int:
        with self._lock:
            if when_ms < self._now_ms:
                raise ValueError("a virtual clock only moves forward")
            self._now_ms = when_ms
            return self._now_ms

    def reset(self) -> None:
        with self._lock:
            self._now_ms = self.start_ms


@lru_cache(maxsize=65536)  # a run's timestamps are formatted again on every poll
def format_ms(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``, as Runbase writes timestamps."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{format_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=4096)  # every create has a new millisecond, rarely a new second
def format_second(epoch_s: int) -> str:
    return f"{datetime.fromtimestamp(epoch_s, tz=UTC):%Y-%m-%dT%H:%M:%S}"


def parse_timestamp(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)
