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
import importlib.machinery
import logging
import multiprocessing
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["RENDER_POOL", "RenderPool"]

log = logging.getLogger("mock_runbase.media")

T = TypeVar("T")
RENDER_NICENESS = 10
PRELOADED = ["mock_runbase.service", "mock_runbase.media.video"]  # what a worker needs


def start_worker(server_pid: int) -> None:
    """A render worker's start: below the server, so a render never delays an answer, and
    gone with the server, however it ends (a worker waits on a queue the server would close
    at a clean exit; killed, the server closes nothing)."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere: same priority, no lock
        os.nice(RENDER_NICENESS)
    threading.Thread(target=exit_with, args=(server_pid,), daemon=True).start()


def exit_with(server_pid: int) -> None:
    try:
        server = os.pidfd_open(server_pid)  # Linux: readable once the process has ended
    except (AttributeError, OSError):
        while server_alive(server_pid):
            time.sleep(1)
    else:
        select.select([server], [], [])
    os._exit(0)


def server_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        executor = self._executor_or_none()
        if executor is not None:
            try:
                return submitted(executor, function, *args).result()
            except BrokenProcessPool:
                self._discard(executor)
            executor = self._executor_or_none()
        if executor is None:
            return function(*args)
        return submitted(executor, function, *args).result()

    def warm(self) -> Future[int] | None:
        """Start the fork server and a worker now, without waiting for them."""
        executor = self._executor_or_none()
        return submitted(executor, ready) if executor is not None else None

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
            return ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=start_worker,
                initargs=(os.getpid(),),
            )
        except (ValueError, OSError, ImportError, NotImplementedError) as error:
            self._unavailable = True
            log.warning("renders run in the server's threads (no worker processes: %s)", error)
            return None

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)


_SUBMITTING = threading.Lock()
MAIN_LEFT_ALONE = importlib.machinery.ModuleSpec("__main__", None)


def submitted(executor: ProcessPoolExecutor, function: Callable[..., T], *args: Any) -> Future[T]:
    """``executor.submit``, which starts the fork server and workers when it needs them,
    without their importing this process's ``__main__`` again. multiprocessing re-runs the
    main script in each new process; a user's script that calls ``mock_runbase.serve()``
    without an ``if __name__ == "__main__":`` guard would then run again in every render
    worker. A main module whose spec is named ``__main__`` is left alone, so for the moment
    of the submit it is given one (renders need nothing of it: they are functions of this
    package)."""
    main = sys.modules.get("__main__")
    with _SUBMITTING:
        if main is None:
            return executor.submit(function, *args)
        kept = getattr(main, "__spec__", None)
        main.__spec__ = MAIN_LEFT_ALONE
        try:
            return executor.submit(function, *args)
        finally:
            main.__spec__ = kept


RENDER_POOL = RenderPool()
