"""What is written in a turn of the event loop leaves in one write after it
(``mock_runbase.one_write``): an answer's head and body together, and several answers' writes
after all of them were computed. Nothing is held longer than a turn, lost on close, or sent
after an abort."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.one_write import JOINED_UP_TO, OneWriteTransport
from mock_runbase.testing import MockServer
from tests.served import Server


class RecordingTransport:
    """The calls a transport got, and a buffer that never drains."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False
        self.buffered = 7

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def wrapped(loop: asyncio.AbstractEventLoop) -> tuple[OneWriteTransport, RecordingTransport]:
    inner = RecordingTransport()
    return OneWriteTransport(inner, loop), inner  # type: ignore[arg-type]


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def scenario() -> None:
        transport, inner = wrapped(asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert inner.writes == []
        assert transport.get_write_buffer_size() == 7 + 38
        transport.write(b"{}")
        assert inner.writes == []  # held to the end of the turn
        assert transport.get_write_buffer_size() == 7 + 40
        await asyncio.sleep(0)
        assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        await asyncio.sleep(0)
        assert len(inner.writes) == 1

    asyncio.run(scenario())


def test_a_lone_write_leaves_on_the_next_turn_of_the_loop() -> None:
    async def scenario() -> None:
        transport, inner = wrapped(asyncio.get_running_loop())
        transport.write(b"head")
        await asyncio.sleep(0)
        assert inner.writes == [b"head"]

    asyncio.run(scenario())


def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        closed, closed_inner = wrapped(loop)
        closed.write(b"last ")
        closed.write(b"words")
        closed.close()
        assert closed_inner.writes == [b"last words"] and closed_inner.closed
        ended, ended_inner = wrapped(loop)
        ended.write(b"all of it")
        ended.write_eof()
        assert ended_inner.writes == [b"all of it"] and ended_inner.eof
        aborted, aborted_inner = wrapped(loop)
        aborted.write(b"never sent")
        aborted.abort()
        await asyncio.sleep(0)
        assert aborted_inner.writes == [] and aborted_inner.aborted

    asyncio.run(scenario())


def test_nothing_is_written_to_a_transport_closed_under_it() -> None:
    async def scenario() -> None:
        transport, inner = wrapped(asyncio.get_running_loop())
        transport.write(b"head")
        inner.closed = True  # the peer went away: the real transport closed itself
        await asyncio.sleep(0)
        assert inner.writes == []

    asyncio.run(scenario())


def test_a_large_body_is_written_after_the_head_not_copied_onto_it() -> None:
    async def scenario() -> None:
        transport, inner = wrapped(asyncio.get_running_loop())
        body = bytes(JOINED_UP_TO + 1)
        transport.write(b"head")
        transport.write(body)
        assert inner.writes == [b"head", body]

    asyncio.run(scenario())


def test_anything_else_is_the_wrapped_transports() -> None:
    transport, _ = wrapped(asyncio.new_event_loop())
    assert transport.get_extra_info("socket") == "info:socket"


def test_answers_written_in_one_turn_leave_after_it_each_connection_in_one_write() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        connections = [wrapped(loop) for _ in range(3)]
        for number, (transport, inner) in enumerate(connections):
            transport.write(b"head %d|" % number)
            transport.write(b"body %d" % number)
            assert all(not inner.writes for _, inner in connections)  # none amid the answers
        await asyncio.sleep(0)
        assert [inner.writes for _, inner in connections] == [
            [b"head %d|body %d" % (number, number)] for number in range(3)
        ]

    asyncio.run(scenario())


# sizes around JOINED_UP_TO, made of a repeated byte so that large chunks stay cheap
CHUNKS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 64), st.integers(JOINED_UP_TO - 64, JOINED_UP_TO + 64)),
        st.integers(0, 255),
    ).map(lambda sized: bytes([sized[1]]) * sized[0]),
    min_size=1,
    max_size=12,
)


@given(CHUNKS, st.sampled_from(["turn", "close", "write_eof"]))
def test_the_bytes_on_the_wire_are_the_bytes_written_in_order(
    chunks: list[bytes], ending: str
) -> None:
    async def scenario() -> None:
        transport, inner = wrapped(asyncio.get_running_loop())
        for number, chunk in enumerate(chunks, 1):
            transport.write(chunk)
            held = transport.get_write_buffer_size() - inner.buffered
            assert sum(map(len, inner.writes)) + held == sum(map(len, chunks[:number]))
        if ending == "close":
            transport.close()
        elif ending == "write_eof":
            transport.write_eof()
        else:
            await asyncio.sleep(0)
        assert b"".join(inner.writes) == b"".join(chunks)
        large = [write for write in inner.writes if len(write) > JOINED_UP_TO]
        assert all(write in chunks for write in large)  # never joined: each goes out as written
        if sum(map(len, chunks)) <= JOINED_UP_TO:
            assert len(inner.writes) == 1

    asyncio.run(scenario())


def answers_arrive_whole(origin: str) -> None:
    """Over a real socket, a poll's whole answer (head and body) arrives in the first read:
    the head is never sent alone."""
    created = httpx.post(
        f"{origin}/v1/runs",
        headers={"Authorization": "Bearer sk-test-one-write"},
        json={"model": "openai/gpt-image-2", "input": {"prompt": "one write"}},
    )
    assert created.status_code == 200, created.text
    host, port = origin.removeprefix("http://").split(":")
    request = (
        f"GET /v1/runs/{created.json()['id']} HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: Bearer sk-test-one-write\r\n\r\n"
    ).encode()
    for _ in range(20):
        with socket.create_connection((host, int(port))) as client:
            client.sendall(request)
            first = client.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        assert len(body) == length > 0


def test_the_test_server_answers_each_request_in_one_segment() -> None:
    server = MockServer().start()
    try:
        answers_arrive_whole(server.origin)
    finally:
        server.stop()


def test_serve_answers_each_request_in_one_segment() -> None:
    server = Server("--no-rate-limit")
    try:
        answers_arrive_whole(server.base)
    finally:
        code, output = server.stop(signal.SIGINT)
    assert code == 0, output
