"""One compact line per request on standard output: what ``serve`` shows a person by default.

uvicorn's access log formats each request through ``logging`` and flushes its stream every
time, which halved the mock's throughput. Here a line is one f-string appended to a list, and
the lines are written together, at most ``FLUSH_INTERVAL_S`` after the first of them (or at
once when ``MAX_PENDING`` wait): one write per batch, whatever standard output is (a terminal,
a pipe to ``docker logs``, a file). ``--log-level warning`` (or above) turns it off.

A line: wall-clock time of arrival, method, path and query, status (``dropped`` for a connection the
mock broke on purpose), duration, and the Runbase error code or the run id when there is one::

    12:00:01.234 POST /v1/runs 200 0.9 ms run_8w6CryKYi78Cgd0k65RzgY
    12:00:01.301 GET /v1/runs/run_nope 404 0.3 ms not_found

The health probe and the dashboard's own polling (``/_mock/ui/...``) are left out, as from the
journal: a probe every few seconds would bury the app's requests.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

__all__ = ["RequestLog", "logged"]

# when it arrived (epoch ms), method, path, query, status (None: dropped), duration (s), detail
Line = tuple[int, str, str, bytes, int | None, float, str | None]

FLUSH_INTERVAL_S = 0.1
MAX_PENDING = 512
UNLOGGED_PATHS = frozenset({"/healthz", "/favicon.ico"})
UNLOGGED_PREFIXES = ("/_mock/ui/", "/docs/assets/")


def logged(path: str) -> bool:
    """Whether a request to ``path`` gets a line: not the probe or the dashboard's polling."""
    return path not in UNLOGGED_PATHS and not path.startswith(UNLOGGED_PREFIXES)


class RequestLog:
    """Requests waiting to be written as lines, and the timer that writes them.

    A request is kept as its raw facts (a tuple) and formatted only when its batch is written:
    formatting it on the request's own path took about 2 us, a tenth of a poll's CPU."""

    def __init__(self, stream: TextIO | None = None, wait_s: float = FLUSH_INTERVAL_S) -> None:
        self.stream = stream  # None: sys.stdout as it is when a batch is written
        self.wait_s = wait_s
        self.pending: list[Line] = []
        self._second = -1
        self._second_text = ""

    def add(
        self,
        wall_ms: int,
        method: str,
        path: str,
        query: bytes,
        status: int | None,
        duration_s: float,
        detail: str | None,
    ) -> None:
        """A request that arrived at ``wall_ms`` (epoch milliseconds) and took ``duration_s``."""
        pending = self.pending
        pending.append((wall_ms, method, path, query, status, duration_s, detail))
        if len(pending) >= MAX_PENDING:
            self.flush()
        elif len(pending) == 1:
            try:
                asyncio.get_running_loop().call_later(self.wait_s, self.flush)
            except RuntimeError:  # no loop (a direct call): write it now
                self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        text = "".join([self.line(entry) for entry in lines])
        stream = self.stream or sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout must never fail a request
            pass

    def line(self, entry: Line) -> str:
        wall_ms, method, path, query, status, duration_s, detail = entry
        second, millis = divmod(wall_ms, 1000)
        if second != self._second:  # formatted once a second, not once a request
            self._second = second
            self._second_text = time.strftime("%H:%M:%S", time.localtime(second))
        target = f"{path}?{query.decode('latin-1')}" if query else path
        answered = "dropped" if status is None else status
        line = f"{self._second_text}.{millis:03d} {method} {target} {answered} "
        took = f"{duration_s * 1000:.1f} ms"
        return f"{line}{took} {detail}\n" if detail else f"{line}{took}\n"
