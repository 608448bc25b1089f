"""The hot path's Redis client: one connection per process and event loop, every command
issued in one turn of the loop sent in one write (automatic pipelining), replies parsed by
hiredis and handed back in order.

Why not redis-py's asyncio client for these: it spends some 60-80 us of CPU on each command
(a pool checkout, a timeout context, retry and event machinery); a command here costs a few
microseconds, and the concurrent requests of a worker share their writes and reads. redis-py
stays for everything else (transactions with WATCH, scans, the control API, start-up).

Only single commands and scripts go through here, never MULTI/EXEC: the requests of a
process share this connection. Errors are redis-py's: ``ConnectionError`` when Redis cannot
be reached or the connection drops (the commands in flight fail, the next one reconnects),
``TimeoutError`` when Redis stops answering for ``timeout_s``, ``ResponseError`` (and
``NoScriptError``, ``AuthenticationError``) for an error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from typing import Any, Protocol, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Commands", "PipelinedRedis", "RedisPyCommands", "Script", "commands_for"]

CONNECT_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 5.0
ERROR_CLASSES: dict[str, type[Exception]] = {
    "NOSCRIPT": NoScriptError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
    "NOPERM": NoPermissionError,
}


def pipelinable(url: str) -> bool:
    """Whether ``PipelinedRedis`` can serve ``url``: plain TCP or a Unix socket, with no
    option but the database and the credentials (TLS and tuned sockets stay with redis-py)."""
    options = parse_url(url)
    connection_class = options.pop("connection_class", None)
    if connection_class is not None and "path" not in options:
        return False
    return set(options) <= {"host", "port", "db", "username", "password", "path"}


class Commands(Protocol):
    """Single commands and scripts, whichever client sends them."""

    async def call(self, *args: str | bytes | int | float) -> Any: ...

    async def calls(self, *commands: tuple[str | bytes | int | float, ...]) -> list[Any]:
        """Several commands in one round trip (not a transaction), their replies in order."""

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any: ...

    async def close(self) -> None: ...


def commands_for(url: str, client: Any) -> Commands:
    """``PipelinedRedis`` where it can serve ``url``, else ``client`` (redis-py's)."""
    return PipelinedRedis(url) if pipelinable(url) else RedisPyCommands(client)


class Script:
    """A Lua script run by its SHA-1, loaded on the first NOSCRIPT (a restarted Redis)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class PipelinedRedis:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = REPLY_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        options = parse_url(url)
        self.path: str | None = options.get("path")
        self.host: str = options.get("host", "localhost")
        self.port: int = int(options.get("port", 6379))
        self.db = int(options.get("db", 0))
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.link: _Link | None = None
        self.connecting: asyncio.Task[_Link] | None = None

    @property
    def where(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    async def call(self, *args: str | bytes | int | float) -> Any:
        """One command's reply (decoded: str, int, None, lists of those)."""
        link = self.link
        if link is None or not link.usable():
            link = await self.connected()
        return await link.send(pack(args))

    async def calls(self, *commands: tuple[str | bytes | int | float, ...]) -> list[Any]:
        link = self.link
        if link is None or not link.usable():
            link = await self.connected()
        waiters = [link.send(pack(command)) for command in commands]
        return await replies(waiters)

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", script.text)
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def connected(self) -> _Link:
        loop = asyncio.get_running_loop()
        if self.connecting is None or self.connecting.get_loop() is not loop:
            self.connecting = loop.create_task(self.open(loop))
        connecting = self.connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self.connecting is connecting:
                self.connecting = None

    async def open(self, loop: asyncio.AbstractEventLoop) -> _Link:
        self.forget_link()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.path is not None:
                    _, link = await loop.create_unix_connection(
                        lambda: _Link(loop, self.timeout_s, self.where), self.path
                    )
                else:
                    _, link = await loop.create_connection(
                        lambda: _Link(loop, self.timeout_s, self.where), self.host, self.port
                    )
        except (OSError, TimeoutError) as error:
            raise RedisConnectionError(connect_error(self.where, error)) from None
        try:
            if self.password is not None:
                user = () if self.username is None else (self.username,)
                await link.send(pack(("AUTH", *user, self.password)))
            if self.db:
                await link.send(pack(("SELECT", self.db)))
        except BaseException:
            link.close()
            raise
        self.link = link
        return link

    def forget_link(self) -> None:
        """Drop the connection (of a finished event loop, or a broken one)."""
        link, self.link = self.link, None
        if link is not None:
            with contextlib.suppress(RuntimeError):  # its event loop has closed
                link.fail(RedisConnectionError(f"Connection to {self.where} closed."))

    async def close(self) -> None:
        self.forget_link()


class _Link(asyncio.Protocol):
    """One open connection: commands written once per loop turn, replies matched in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, where: str) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.where = where
        self.reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        self.unsent: list[bytes] = []
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.replies = 0  # replies read so far: the watchdog's sign of life
        self.replies_at_check = 0
        self.watchdog: asyncio.TimerHandle | None = None

    def usable(self) -> bool:
        return self.transport is not None and asyncio.get_running_loop() is self.loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.transport is None:
            raise RedisConnectionError(f"Connection to {self.where} closed.")
        if not self.unsent:
            self.loop.call_soon(self.flush)
        self.unsent.append(packed)
        waiter = self.loop.create_future()
        if not self.waiters and self.watchdog is None:
            self.replies_at_check = self.replies
            self.watchdog = self.loop.call_later(self.timeout_s, self.check_alive)
        self.waiters.append(waiter)
        return waiter

    def flush(self) -> None:
        if self.transport is not None and self.unsent:
            self.transport.write(b"".join(self.unsent))
        self.unsent.clear()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        try:
            while (reply := self.reader.gets()) is not False:
                self.replies += 1
                waiter = waiters.popleft()
                if waiter.done():  # its request was cancelled; the reply is still its own
                    continue
                if isinstance(reply, ResponseError):
                    waiter.set_exception(error_reply(reply))
                else:
                    waiter.set_result(reply)
        except hiredis.ProtocolError as error:
            self.fail(RedisConnectionError(f"Protocol error from {self.where}: {error}"))

    def check_alive(self) -> None:
        self.watchdog = None
        if not self.waiters:
            return
        if self.replies == self.replies_at_check:
            self.fail(RedisTimeoutError(f"Timeout reading from {self.where}"))
            return
        self.replies_at_check = self.replies
        self.watchdog = self.loop.call_later(self.timeout_s, self.check_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self.fail(RedisConnectionError(f"Connection to {self.where} lost{reason}"))

    def fail(self, error: Exception) -> None:
        """Close, and fail every command not answered yet with ``error``."""
        self.close()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        transport, self.transport = self.transport, None
        self.unsent.clear()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if transport is not None:
            with contextlib.suppress(RuntimeError):  # its event loop has closed
                transport.abort()


class RedisPyCommands:
    """``Commands`` through a redis-py client: for what ``PipelinedRedis`` does not speak (TLS,
    socket options in the URL)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def call(self, *args: str | bytes | int | float) -> Any:
        return await self.client.execute_command(*args)

    async def calls(self, *commands: tuple[str | bytes | int | float, ...]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(script.text)
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    async def close(self) -> None:
        return None  # the client is the store's, closed with it


async def replies(waiters: list[asyncio.Future[Any]]) -> list[Any]:
    """Every waiter's reply; the first error once all have answered (none left unread)."""
    found, error = [], None
    for waiter in waiters:
        try:
            found.append(await waiter)
        except Exception as problem:
            error = error or problem
    if error is not None:
        raise error
    return found


def pack(args: tuple[str | bytes | int | float, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub: a 1-tuple
    return packed


def error_reply(reply: ResponseError) -> Exception:
    message = str(reply)
    return ERROR_CLASSES.get(message.split(" ", 1)[0], ResponseError)(message)


def connect_error(where: str, error: OSError | TimeoutError) -> str:
    """As redis-py words it, so logs and /healthz read the same whichever client failed."""
    if isinstance(error, TimeoutError) or error.errno is None:
        return f"Timeout connecting to {where}."
    return f"Error {error.errno} connecting to {where}. {error.strerror}."
