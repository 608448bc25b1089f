"""The hot path's pipelined Redis client: replies reach their own commands, errors are
redis-py's, a lost connection or script cache is recovered, credentials go first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import hiredis
import pytest
import redis.asyncio as redis
from redis import Redis as BlockingRedis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mock_runbase.redis_pipeline import (
    PipelinedRedis,
    RedisPyCommands,
    Script,
    commands_for,
)
from mock_runbase.runs import new_token
from tests.redis_server import RedisServer
from tests.served import free_port

COUNTER = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


def on_one_loop(step: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(step())


def test_concurrent_commands_each_get_their_own_reply(redis_server: RedisServer) -> None:
    prefix = f"pipe-{new_token(8)}:"

    async def scenario() -> None:
        fast = PipelinedRedis(redis_server.url)
        await asyncio.gather(*(fast.call("SET", f"{prefix}{n}", n * 10) for n in range(200)))
        found = await asyncio.gather(*(fast.call("GET", f"{prefix}{n}") for n in range(200)))
        assert found == [str(n * 10) for n in range(200)]
        assert await fast.calls(("GET", f"{prefix}7"), ("MGET", f"{prefix}1", "nope")) == [
            "70",
            ["10", None],
        ]
        await fast.close()

    on_one_loop(scenario)


def test_an_error_reply_is_raised_and_the_connection_goes_on(redis_server: RedisServer) -> None:
    key = f"pipe-{new_token(8)}"

    async def scenario() -> None:
        fast = PipelinedRedis(redis_server.url)
        await fast.call("SET", key, "text")
        with pytest.raises(ResponseError, match="not an integer"):
            await fast.call("INCR", key)
        with pytest.raises(ResponseError, match="not an integer"):
            await fast.calls(("GET", key), ("INCR", key))
        assert await fast.call("GET", key) == "text"
        await fast.close()

    on_one_loop(scenario)


def test_a_script_redis_forgot_is_loaded_again(redis_server: RedisServer) -> None:
    key = f"pipe-{new_token(8)}"

    async def scenario() -> None:
        fast = PipelinedRedis(redis_server.url)
        assert await fast.run(COUNTER, [key], [2]) == 2
        await fast.call("SCRIPT", "FLUSH")  # as a restarted Redis has no scripts
        assert await fast.run(COUNTER, [key], [3]) == 5
        await fast.close()

    on_one_loop(scenario)


def test_a_dropped_connection_fails_its_commands_and_the_next_one_reconnects(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        fast = PipelinedRedis(redis_server.url)
        first_id = await fast.call("CLIENT", "ID")
        killer = BlockingRedis.from_url(redis_server.url)
        killer.client_kill_filter(_id=first_id)
        killer.close()
        # sent before the loop saw the connection close, it fails, and only it
        with contextlib.suppress(RedisConnectionError):
            await fast.call("PING")
        assert await fast.call("PING") == "PONG"
        assert await fast.call("CLIENT", "ID") != first_id
        await fast.close()

    on_one_loop(scenario)


def test_each_event_loop_gets_its_own_connection(redis_server: RedisServer) -> None:
    fast = PipelinedRedis(redis_server.url)

    async def ping() -> None:
        assert await fast.call("PING") == "PONG"

    on_one_loop(ping)
    on_one_loop(ping)  # the first loop is closed: its connection is dropped, not reused
    on_one_loop(fast.close)


def test_nothing_listening_is_a_connection_error_worded_as_redis_py_words_it() -> None:
    port = free_port()

    async def scenario() -> None:
        fast = PipelinedRedis(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(RedisConnectionError, match=f"connecting to 127.0.0.1:{port}"):
            await fast.call("PING")

    on_one_loop(scenario)


@asynccontextmanager
async def fake_redis(
    answer: Callable[[list[str]], bytes | None],
) -> AsyncIterator[tuple[str, list[list[str]]]]:
    """A server on loopback that reads commands and answers each with ``answer`` (None: not
    at all); yields its URL (without credentials or database) and the commands it got."""
    got: list[list[str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader(encoding="utf-8")
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                got.append(command)
                reply = answer(command)
                if reply is not None:
                    writer.write(reply)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}", got
    finally:
        server.close()


def test_credentials_and_the_database_are_sent_before_any_command() -> None:
    async def scenario() -> None:
        async with fake_redis(lambda command: b"+OK\r\n") as (where, got):
            fast = PipelinedRedis(f"redis://app:s3cret@{where}/3")
            assert await fast.call("SET", "k", 1) == "OK"
            await fast.close()
        assert got == [["AUTH", "app", "s3cret"], ["SELECT", "3"], ["SET", "k", "1"]]

    on_one_loop(scenario)


def test_a_refused_password_is_an_authentication_error() -> None:
    def refuse(command: list[str]) -> bytes:
        return b"-WRONGPASS invalid username-password pair\r\n"

    async def scenario() -> None:
        async with fake_redis(refuse) as (where, got):
            fast = PipelinedRedis(f"redis://:wrong@{where}/0")
            with pytest.raises(AuthenticationError, match="WRONGPASS"):
                await fast.call("PING")
        assert got == [["AUTH", "wrong"]]

    on_one_loop(scenario)


def test_a_redis_that_stops_answering_times_out() -> None:
    async def scenario() -> None:
        async with fake_redis(lambda command: None) as (where, _):
            fast = PipelinedRedis(f"redis://{where}/0", timeout_s=0.05)
            with pytest.raises(RedisTimeoutError, match=f"Timeout reading from {where}"):
                await fast.call("PING")
            await fast.close()

    on_one_loop(scenario)


@pytest.mark.parametrize(
    ("url", "pipelined"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("redis://app:s3cret@cache:6379/2", True),
        ("unix:///run/redis.sock?db=1&password=s3cret", True),
        ("rediss://cache:6380/0", False),
        ("redis://cache:6379/0?socket_timeout=3", False),
    ],
)
def test_urls_it_cannot_serve_go_through_redis_py(url: str, pipelined: bool) -> None:
    client: Any = object()
    commands = commands_for(url, client)
    assert isinstance(commands, PipelinedRedis if pipelined else RedisPyCommands)


def test_the_redis_py_fallback_answers_alike(redis_server: RedisServer) -> None:
    key = f"pipe-{new_token(8)}"

    async def scenario() -> None:
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        slow = RedisPyCommands(client)
        await slow.call("SCRIPT", "FLUSH")
        assert await slow.run(COUNTER, [key], [4]) == 4
        assert await slow.calls(("GET", key), ("MGET", key, "nope")) == ["4", ["4", None]]
        await client.aclose()

    on_one_loop(scenario)
