"""uvicorn's HTTP protocol with each answer sent in one write, after the event loop's turn.

uvicorn writes an answer's status line and headers as soon as the app sends
``http.response.start``, then the body in a second write: two system calls and two TCP
segments for every JSON answer. On loopback a write carries the kernel's whole delivery to the
client, so the second one cost about as much as all of the mock's own work on a poll (py-spy
under wrk: uvicorn's ``send`` was a third of the served mock's time, nearly all of it in the two
``write`` calls).

``OneWriteHttpToolsProtocol`` gives uvicorn a transport that holds what is written until the
event loop's next turn, joined into one write (up to ``JOINED_UP_TO``): an answer's head and
body go out together. Holding to the end of the turn matters as much as joining: under load a
turn answers many requests, and a write made in the middle of one answer ran the kernel's
delivery between two answers, so the next answer's Python code started with cold CPU caches.
Written after the turn, the answers are computed back to back and the writes follow one
another: served CPU time per create fell by a quarter (90.7 -> 68.6 us; the README's
Performance section). Nothing waits longer than a turn of the loop, ``close`` and ``write_eof``
send what is held first and ``abort`` drops it, as a transport's own buffer would be. The
bytes on the wire are the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["OneWriteHttpToolsProtocol", "OneWriteTransport"]

JOINED_UP_TO = 64 * 1024  # held bytes joined up to this; a larger body follows them as it is


class OneWriteTransport:
    """A transport whose writes wait for the loop's next turn to go out together. Everything
    but writing, closing and the buffer's size is the wrapped transport's."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self.release)
        elif len(held) + len(data) <= JOINED_UP_TO:
            self._held = held + data
        else:  # a large body: written after what is held, not copied onto it
            self._held = None
            self._transport.write(held)
            self._transport.write(data)

    def release(self) -> None:
        """Write what is held, if anything (and if the connection is still open)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(bytes(chunk))

    def close(self) -> None:
        self.release()
        self._transport.close()

    def write_eof(self) -> None:
        self.release()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``OneWriteTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = OneWriteTransport(transport, self.loop)
        super().connection_made(wrapped)  # type: ignore[arg-type]
