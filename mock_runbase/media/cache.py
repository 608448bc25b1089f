"""A byte-bounded LRU cache of rendered media (PNGs, MP4s), keyed by a string."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MediaCache"]


class MediaCache:
    """Thread-safe LRU cache of rendered file bytes (PNG, MP4), bounded by their total size.
    Items larger than `max_bytes` are returned by `get_or_render` but not kept. Rendering runs
    outside the lock, so two threads may render the same key at once; the later result wins."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._current_bytes = 0
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def current_bytes(self) -> int:
        with self._lock:
            return self._current_bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: str) -> bytes | None:
        """The cached bytes for `key` (marking them most recently used), or None."""
        with self._lock:
            if (data := self._items.get(key)) is not None:
                self._items.move_to_end(key)
            return data

    def get_or_render(self, key: str, render: Callable[[], bytes]) -> bytes:
        """The cached bytes for `key`, else the result of `render()`, kept if it fits."""
        if (cached := self.get(key)) is not None:
            return cached
        data = render()
        with self._lock:
            if (old := self._items.pop(key, None)) is not None:
                self._current_bytes -= len(old)
            if len(data) <= self._max_bytes:
                self._items[key] = data
                self._current_bytes += len(data)
                while self._current_bytes > self._max_bytes:
                    self._current_bytes -= len(self._items.popitem(last=False)[1])
        return data

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._current_bytes = 0
