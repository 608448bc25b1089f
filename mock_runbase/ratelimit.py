"""A per-key moving-window rate limit on the mock's clock.

Runbase allows 20 requests per 10 seconds per key, creates and polls counted together.
The ``limits`` library's storages read ``time.time()`` directly, so they cannot follow a
virtual clock; this is the same moving-window log, keyed by API key, on an injected time.
Requests the limiter itself refuses are not logged (as in ``limits``' moving window).
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

__all__ = ["MovingWindowLimiter", "RateLimit", "parse_rate_limit"]


@dataclass(frozen=True)
class RateLimit:
    requests: int
    window_ms: int

    def __str__(self) -> str:
        return f"{self.requests}/{self.window_ms / 1000:g}"


DOCUMENTED = RateLimit(requests=20, window_ms=10_000)


def parse_rate_limit(text: str) -> RateLimit:
    """``N/SECONDS`` (``20/10``), also ``N/SECONDSs``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*", text)
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise ValueError(f"rate limit {text!r} is not of the form N/SECONDS, e.g. 20/10")
    return RateLimit(requests=int(match[1]), window_ms=round(float(match[2]) * 1000))


class MovingWindowLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._hits: dict[str, deque[int]] = {}

    def hit(self, key: str, now_ms: int) -> float | None:
        """Count one request; None if allowed, else seconds until one would be."""
        window = self._hits.get(key)
        if window is None:
            window = self._hits[key] = deque(maxlen=self.limit.requests)
        while window and window[0] <= now_ms - self.limit.window_ms:
            window.popleft()
        if len(window) >= self.limit.requests:
            return (window[0] + self.limit.window_ms - now_ms) / 1000
        window.append(now_ms)
        return None

    def forget(self, key: str) -> None:
        self._hits.pop(key, None)

    def reset(self) -> None:
        self._hits.clear()


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
