"""The request journal: every request the mock answered, newest last, bounded in size.

``JournalMiddleware`` (pure ASGI) records method, path, headers (the API key redacted to its
last 4 characters), body, status, Runbase error code, run id and timing. The mock's own pages
and probes are not recorded (``recorded``): a dashboard polling ``/_mock``, a browser on
``/docs`` or a health check every few seconds leaves the journal to the app under test.

Recording is on the hot path, reading is not: the middleware keeps each request's raw facts
in an ``Exchange`` and the store turns it into a ``JournalEntry`` (decoded, redacted) only
when the journal is read (those records are in ``journal_records``, below the server layer).
Answers are not buffered: handlers that answer JSON say what it carries with ``note_answer``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.clock import Clock, SystemClock
from mock_runbase.journal_records import Exchange
from mock_runbase.request_log import RequestLog, logged

log = logging.getLogger("mock_runbase.journal")

__all__ = [
    "HotApp",
    "JournalMiddleware",
    "last_header",
    "note_account",
    "note_answer",
    "note_body",
    "note_run",
    "note_sent",
    "recorded",
]

MAX_BODY = 64 * 1024
# The mock's own: the control API and dashboard, the docs and their assets, the health probe,
# the spec and the icon a browser asks for. Anything else is recorded (a 404 too: a path the
# app got wrong is what a journal is for).
UNRECORDED_PATHS = frozenset({"/_mock", "/docs", "/healthz", "/openapi.yaml", "/favicon.ico"})
UNRECORDED_PREFIXES = ("/_mock/", "/docs/")
ANSWER_FACTS = "mock_runbase.journal"  # scope key: what note_answer or note_run told
ACCOUNT_FACT = "mock_runbase.journal.account"  # scope key: the caller's account, note_account
BODY_FACT = "mock_runbase.journal.body"  # scope key: a hot route's request body, note_body
SENT_FACTS = "mock_runbase.journal.sent"  # scope key: a hot route's status, note_sent
NOT_SENT: tuple[None, None] = (None, None)
NO_FACTS: tuple[None, None, None, None] = (None, None, None, None)
NO_PARAMS: dict[str, str] = {}


def note_answer(scope: Scope, content: Any, size: int) -> None:
    """Tell the journal what a JSON answer carries: ``error.code``, a top-level ``id``,
    ``model`` and ``status`` (a run's, as the answer showed it).

    Handlers call this with the content they serialized (to ``size`` bytes), so the journal
    never buffers or parses answers. An answer longer than MAX_BODY is left out, as the
    journal never read further than that (such an entry has no error code).
    """
    if size > MAX_BODY or not isinstance(content, dict):
        return
    error = content.get("error")
    run_id = content.get("id")
    model = content.get("model")
    run_status = content.get("status")
    scope[ANSWER_FACTS] = (
        error.get("code") if isinstance(error, dict) else None,
        run_id if isinstance(run_id, str) else None,
        model if isinstance(model, str) else None,
        run_status if isinstance(run_status, str) else None,
    )


def note_run(scope: Scope, run_id: str, model: str) -> None:
    """Tell the journal which run an answer that is not JSON (a run's file) belongs to."""
    scope[ANSWER_FACTS] = (None, run_id, model, None)


def note_body(scope: Scope, body: bytes) -> None:
    """Tell the journal the request body a hot route read (its first MAX_BODY bytes kept)."""
    scope[BODY_FACT] = body[:MAX_BODY]


def note_sent(scope: Scope, status: int | None, headers: list[tuple[bytes, bytes]]) -> None:
    """Tell the journal the status a hot route sent (None: it broke the connection instead)
    and, on a 429 or 503, its ``Retry-After``."""
    scope[SENT_FACTS] = (status, retry_after_of(status, headers))


def retry_after_of(status: int | None, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The ``Retry-After`` of the answers that may say when to ask again (429, 503)."""
    return last_header(headers, b"retry-after") if status == 429 or status == 503 else None


class HotApp(Protocol):
    """What ``JournalMiddleware`` sends hot requests to (``hot_routes.HotRoutes``)."""

    def endpoint(self, scope: Scope) -> Any: ...

    async def answer(self, endpoint: Any, scope: Scope, receive: Receive, send: Send) -> None: ...


def note_account(scope: Scope, account: str) -> None:
    """Tell the journal whose request this is, once the handler has authenticated it (else
    the journal finds the account from the Authorization header itself)."""
    scope[ACCOUNT_FACT] = account


class JournalMiddleware:
    """Records each exchange with ``record(Exchange)`` (awaited if it returns an awaitable),
    and gives it a line in ``request_log`` (if any); never changes the exchange.

    ``hot``, if given, is ``app`` itself or a part of it that answers some requests (the hot
    routes) and notes in the scope what it read and sent (``note_body``, ``note_sent``): those
    requests go to it directly, without wrapping ``receive`` and ``send``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Callable[[], Clock],
        record: Callable[[Exchange], Awaitable[None] | None],
        account_of: Callable[[str | None], str | None],
        unavailable: tuple[type[BaseException], ...] = (),
        request_log: RequestLog | None = None,
        hot: HotApp | None = None,
    ) -> None:
        self.app = app
        self.hot = hot
        self.request_log = request_log
        self.clock = clock
        self.record = record
        self.account_of = account_of
        self.unavailable = unavailable  # the store's errors when it cannot be reached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not recorded(scope["path"]):
            if self.request_log is not None and logged(scope["path"]):
                await self.logged_only(scope, receive, send, self.request_log)
            else:
                await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        wall_ms = time.time_ns() // 1_000_000
        clock = self.clock()
        try:
            # the real clock is the wall clock: read once, not awaited again
            at_ms = wall_ms if type(clock) is SystemClock else await clock.now()
        except self.unavailable:
            # A shared clock lives in the store: with the store away the request goes on
            # unrecorded, and the app answers it (503 store_unavailable), never a bare 500.
            if self.request_log is not None:
                await self.logged_only(scope, receive, send, self.request_log)
            else:
                await self.app(scope, receive, send)
            return
        hot = self.hot
        endpoint = None if hot is None else hot.endpoint(scope)
        if endpoint is not None:
            # a hot route notes what it read and sent in the scope: no wrapped receive and send
            try:
                await hot.answer(endpoint, scope, receive, send)  # type: ignore[union-attr]
            finally:
                sent = scope.get(SENT_FACTS, NOT_SENT)
                read = scope.get(BODY_FACT, b"")
                recording = self.finish(scope, started, wall_ms, at_ms, read, *sent)
                if recording is not None:
                    await recording
            return
        body: list[bytes] = []
        body_size = 0
        status: int | None = None
        retry_after: str | None = None

        async def recording_receive() -> Message:
            nonlocal body_size
            message = await receive()
            if message["type"] == "http.request" and body_size < MAX_BODY:
                chunk = message.get("body", b"")[: MAX_BODY - body_size]
                body.append(chunk)
                body_size += len(chunk)
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status, retry_after
            if message["type"] == "http.response.start":
                status = message["status"]
                retry_after = retry_after_of(status, message.get("headers", []))
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            recording = self.finish(
                scope, started, wall_ms, at_ms, b"".join(body), status, retry_after
            )
            if recording is not None:
                await recording

    def finish(
        self,
        scope: Scope,
        started: float,
        wall_ms: int,
        at_ms: int,
        body: bytes,
        status: int | None,
        retry_after: str | None,
    ) -> Awaitable[None] | None:
        """The exchange's line in the request log, and its record in the journal (None once
        recorded, else what to await until it is)."""
        duration_s = time.perf_counter() - started
        error_code, answer_run_id, model, run_status = scope.get(ANSWER_FACTS, NO_FACTS)
        path_run_id = scope.get("path_params", NO_PARAMS).get("run_id")
        headers = scope["headers"]
        if self.request_log is not None:
            self.request_log.add(
                wall_ms,
                scope["method"],
                scope["path"],
                scope.get("query_string", b""),
                status,
                duration_s,
                error_code or (answer_run_id if path_run_id is None else None),
            )
        exchange = Exchange(  # positional: the fields' order; keyword arguments cost more here
            at_ms,
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            headers,
            body,
            status,
            duration_s,
            error_code,
            answer_run_id if path_run_id is None else path_run_id,
            scope[ACCOUNT_FACT]
            if ACCOUNT_FACT in scope
            else self.account_of(last_header(headers, b"authorization")),
            model,
            run_status,
            retry_after,
            wall_ms,
        )
        try:
            return self.record(exchange)
        except self.unavailable as error:  # the answer is sent: losing its record is all
            log.warning("journal: not recorded, the store is unavailable: %s", error)
            return None

    async def logged_only(
        self, scope: Scope, receive: Receive, send: Send, lines: RequestLog
    ) -> None:
        """A request the journal leaves out (the control API, docs): a line, no record."""
        started = time.perf_counter()
        wall_ms = time.time_ns() // 1_000_000
        status: int | None = None

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            duration_s = time.perf_counter() - started
            query = scope.get("query_string", b"")
            lines.add(wall_ms, scope["method"], scope["path"], query, status, duration_s, None)


def recorded(path: str) -> bool:
    """Whether a request to ``path`` goes into the journal: not the mock's own pages."""
    return path not in UNRECORDED_PATHS and not path.startswith(UNRECORDED_PREFIXES)


def last_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of header ``name`` (lower case) in ASGI scope headers; if it was sent twice,
    the last one (a journal entry's headers are a dict: the last wins)."""
    found = None
    for sent, value in headers:
        if sent == name:
            found = value
    return None if found is None else found.decode("latin-1")
