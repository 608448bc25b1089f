"""Connection faults: what the mock does to the socket instead of answering, or to its answer.

    drop             the connection is closed at once, nothing sent (an abort)
    reset            a TCP reset (SO_LINGER 0, then close): the client reads ECONNRESET
    empty-response   closed cleanly (FIN) without a byte: WireMock's EMPTY_RESPONSE
    garbage          bytes that are not HTTP, then closed: RANDOM_DATA_THEN_CLOSE
    truncated        the answer's head and half its body, its Content-Length the whole body
    malformed-chunk  the answer's status and headers, chunked, then a chunk that is not one

The first four strike *instead of* an answer: the request is not handled (a create creates
nothing). The last two strike the answer on its way back: the request was handled (a create
made its run and charged it) and its answer is broken after the status line, so the client
cannot tell what it was.

A fault is raised as ``BrokenConnection`` (a ``BaseException``, so no error handler turns it
into a 500) up to ``MockApp``, which acts on uvicorn's transport: the transport of the ASGI
``send`` it was given (``RequestResponseCycle.transport``). In process (Starlette's
TestClient, ``httpx.ASGITransport``: no socket) the caller gets a ``ConnectionResetError``
naming the fault instead, never an answer.

The bytes each fault writes are a pure function of the answer (``wire_bytes``); ``garbage``
is the same bytes every time, so a client's reaction to it is reproducible.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "WIRE_FAULTS",
    "BrokenAnswer",
    "BrokenConnection",
    "RawAnswer",
    "WireFault",
    "answer_fault",
    "break_connection",
]


def garbage_lines(count: int) -> bytes:
    """``count`` lines of 64 bytes that are not HTTP, then a blank line: a client reads a
    status line and headers it cannot parse (without line ends it would wait for more)."""
    lines = []
    for number in range(count):
        digest = hashlib.sha512(b"mock-runbase garbage %d" % number).digest()
        lines.append(b"\xff" + digest[1:].replace(b"\r", b"?").replace(b"\n", b"?"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


GARBAGE = garbage_lines(8)
BAD_CHUNK_SIZE = b"not-a-chunk-size\r\n"
FLUSH_POLL_S = 0.001
FLUSH_TIMEOUT_S = 10.0  # a client that stops reading: give up and abort
BODYLESS_STATUSES = frozenset({204, 304})
Ending = Literal["abort", "close", "reset"]


@dataclass(frozen=True)
class RawAnswer:
    """An answer as it would go on the wire: status, headers, and the body if one is sent
    (none for ``HEAD``, 204 and 304, whatever the Content-Length says)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    has_body: bool

    def head(self, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
        try:
            reason = HTTPStatus(self.status).phrase.encode()
        except ValueError:
            reason = b""
        lines = [b"HTTP/1.1 %d %s" % (self.status, reason)]
        lines += [name + b": " + value for name, value in (headers or self.headers)]
        return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(frozen=True)
class WireFault:
    name: str
    breaks_answer: bool  # strikes the answer of a handled request, not instead of it
    ending: Ending
    what: str  # what the client sees, for the in-process error
    wire_bytes: Callable[[RawAnswer | None], bytes] = lambda answer: b""


def cut_head(answer: RawAnswer) -> bytes:
    """Half the head, never its blank line: for an answer that has no body to cut."""
    head = answer.head()
    return head[: len(head) // 2]


def truncated(answer: RawAnswer | None) -> bytes:
    assert answer is not None
    if not answer.has_body or not answer.body:
        return cut_head(answer)
    kept = [(n, v) for n, v in answer.headers if n.lower() != b"content-length"]
    length = [(b"content-length", b"%d" % len(answer.body))]
    return answer.head(kept + length) + answer.body[: len(answer.body) // 2]


def malformed_chunk(answer: RawAnswer | None) -> bytes:
    assert answer is not None
    if not answer.has_body or not answer.body:
        return cut_head(answer)
    kept = [(n, v) for n, v in answer.headers if n.lower() != b"content-length"]
    head = answer.head([*kept, (b"transfer-encoding", b"chunked")])
    first = answer.body[: max(1, len(answer.body) // 2)]  # an empty chunk would end the body
    return head + b"%x\r\n" % len(first) + first + b"\r\n" + BAD_CHUNK_SIZE


WIRE_FAULTS: dict[str, WireFault] = {
    fault.name: fault
    for fault in (
        WireFault("drop", False, "abort", "closed the connection without an answer"),
        WireFault("reset", False, "reset", "reset the connection (TCP RST) without an answer"),
        WireFault("empty-response", False, "close", "closed the connection without a byte"),
        WireFault(
            "garbage", False, "close", "sent bytes that are not HTTP and closed", lambda _: GARBAGE
        ),
        WireFault(
            "truncated", True, "close", "cut its answer off before the end of the body", truncated
        ),
        WireFault(
            "malformed-chunk",
            True,
            "close",
            "sent a malformed chunk in its answer",
            malformed_chunk,
        ),
    )
}


class BrokenConnection(BaseException):
    """Raised to break the client's connection (``fault``), instead of answering (``answer``
    None) or while sending ``answer``. A ``BaseException`` so that no error handler turns it
    into a 500 on the way out."""

    def __init__(self, fault: str, answer: RawAnswer | None = None) -> None:
        super().__init__(fault)
        self.fault = WIRE_FAULTS[fault]
        self.answer = answer


def answer_fault(name: str | None) -> str | None:
    """``name`` if it is a fault that strikes the answer of a handled request, else None."""
    return name if name is not None and WIRE_FAULTS[name].breaks_answer else None


class BrokenAnswer(Response):
    """``answer`` as it would be sent, raised as ``fault`` instead of being sent."""

    def __init__(self, answer: Response, fault: str) -> None:
        self.answer = answer
        self.fault = fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.answer
        status = answer.status_code
        has_body = scope["method"] != "HEAD" and status not in BODYLESS_STATUSES
        raw = RawAnswer(status, list(answer.raw_headers), bytes(answer.body), has_body)
        raise BrokenConnection(self.fault, raw)


async def break_connection(
    cycle: Any, broken: BrokenConnection, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    """Do ``broken``'s fault on the socket of uvicorn's ``cycle`` (the owner of the ASGI
    ``send``); without one (in process), raise ``ConnectionResetError`` naming it."""
    fault = broken.fault
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionResetError(f"mock-runbase ({fault.name}) {fault.what}") from None
    answer = broken.answer
    if answer is not None and extra_headers:
        answer = RawAnswer(
            answer.status, answer.headers + extra_headers, answer.body, answer.has_body
        )
    data = fault.wire_bytes(answer)
    if data:
        transport.write(data)
        await flushed(transport)
    if fault.ending == "reset":
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if fault.ending == "close":
        transport.close()
    else:
        transport.abort()
    await disconnected(cycle)


async def flushed(transport: Any) -> None:
    """Until the transport has sent what it buffered (uvicorn would write its own 500 into a
    closing transport's buffer), or the client stopped reading for FLUSH_TIMEOUT_S."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while transport.get_write_buffer_size() and not transport.is_closing():
        if time.monotonic() > deadline:
            transport.abort()
            return
        await asyncio.sleep(FLUSH_POLL_S)


async def disconnected(cycle: Any) -> None:
    """Until uvicorn has seen the connection lost, so that it does not answer after us (it
    answers 500 to a request that ended without an answer on a live connection)."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    await asyncio.sleep(0)
    while not getattr(cycle, "disconnected", True) and time.monotonic() < deadline:
        await asyncio.sleep(FLUSH_POLL_S)
