"""Renders in processes of their own, at a lower CPU priority than the server.

A render in a thread of the server's process shares its interpreter lock: while a 4K PNG or a
1080p MP4 was drawn, polls waited for the lock in 5 ms slices, and their p99 went from about
9 ms to 50-80 ms. In a worker process (started by a fork server that has the renderers loaded,
so a worker starts in milliseconds) a render takes no lock of the server's, and at ``nice``
+10 it takes only the CPU the server leaves: the server answers first, the render finishes a
little later. The bytes are the same: a render is a pure function of its arguments.

Where worker processes cannot be made (no ``fork server``, no POSIX semaphores in a locked-down
container), renders go on in the calling thread, as before, and a warning says so once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["RENDER_POOL", "RenderPool"]

log = logging.getLogger("mock_runbase.media")

T = TypeVar("T")
RENDER_NICENESS = 10
PRELOADED = ["mock_runbase.service", "mock_runbase.media.video"]  # what a worker needs


def lower_priority() -> None:
    """A render worker's start: below the server, so a render never delays an answer."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere: same priority, no lock
        os.nice(RENDER_NICENESS)


def ready() -> int:
    return os.getpid()


class RenderPool:
    """Worker processes for renders, made on first use (or ``warm``); ``render`` blocks the
    calling thread (a worker thread of the server) until the bytes are back."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or min(2, os.cpu_count() or 1)
        self._executor: ProcessPoolExecutor | None = None
        self._unavailable = False
        self._lock = threading.Lock()

    def render(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker process; in this thread if there is none. A pool
        whose worker died (killed, out of memory) is replaced once."""
        for attempt in range(2):
            executor = self._executor_or_none()
            if executor is None:
                return function(*args)
            try:
                return executor.submit(function, *args).result()
            except BrokenProcessPool:
                self._discard(executor)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def warm(self) -> Future[int] | None:
        """Start the fork server and a worker now, without waiting for them."""
        executor = self._executor_or_none()
        return executor.submit(ready) if executor is not None else None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _executor_or_none(self) -> ProcessPoolExecutor | None:
        executor = self._executor
        if executor is not None or self._unavailable:
            return executor
        with self._lock:
            if self._executor is None and not self._unavailable:
                self._executor = self._made()
            return self._executor

    def _made(self) -> ProcessPoolExecutor | None:
        try:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOADED)
            return ProcessPoolExecutor(self.workers, mp_context=context, initializer=lower_priority)
        except (ValueError, OSError, ImportError, NotImplementedError) as error:
            self._unavailable = True
            log.warning("renders run in the server's threads (no worker processes: %s)", error)
            return None

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)


RENDER_POOL = RenderPool()
