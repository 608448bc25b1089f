"""The request journal: every request the mock answered, newest last, bounded in size.

``JournalMiddleware`` (pure ASGI) records method, path, headers (the API key redacted to its
last 4 characters), body, status, Runbase error code, run id and timing. The mock's own
``/_mock`` calls are not recorded, so a dashboard polling them leaves the journal alone.

Recording is on the hot path, reading is not: the middleware keeps each request's raw facts
in an ``Exchange`` and the store turns it into a ``JournalEntry`` (decoded, redacted) only
when the journal is read. Answers are not buffered: handlers that answer JSON say what it
carries with ``note_answer``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.clock import Clock, format_ms, parse_timestamp

__all__ = [
    "Exchange",
    "JournalEntry",
    "JournalFilter",
    "JournalMiddleware",
    "last_header",
    "note_account",
    "note_answer",
    "redact",
]

MAX_BODY = 64 * 1024
UNRECORDED_PREFIX = "/_mock"
ANSWER_FACTS = "mock_runbase.journal"  # scope key: (error code, run id) from note_answer
ACCOUNT_FACT = "mock_runbase.journal.account"  # scope key: the caller's account, note_account
NO_FACTS: tuple[None, None] = (None, None)
NO_PARAMS: dict[str, str] = {}


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    at_ms: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str
    status: int | None
    error_code: str | None
    run_id: str | None
    duration_ms: float
    key_last4: str | None
    account: str | None
    dropped: bool

    def view(self) -> dict[str, Any]:
        """camelCase, like the rest of the wire."""
        data = asdict(self)
        data["at"] = format_ms(data.pop("at_ms"))
        return {camel(name): value for name, value in data.items()}


@dataclass(frozen=True)
class JournalFilter:
    account: str | None = None
    key: str | None = None
    path: str | None = None
    status: int | None = None
    since_ms: int | None = None

    @classmethod
    def from_query(cls, query: dict[str, Any], account: str | None) -> JournalFilter:
        """From a query already validated against the spec (``status`` an int, ``since`` ISO)."""
        since = query.get("since")
        return cls(
            account=account,
            key=query.get("key"),
            path=query.get("path"),
            status=query.get("status"),
            since_ms=parse_timestamp(since) if since else None,
        )

    def keeps(self, entry: JournalEntry) -> bool:
        if self.account is not None and entry.account != self.account:
            return False
        if self.key is not None and entry.key_last4 != self.key[-4:]:
            return False
        if self.path is not None and not entry.path.startswith(self.path):
            return False
        if self.status is not None and entry.status != self.status:
            return False
        return self.since_ms is None or entry.at_ms >= self.since_ms

    def select(self, entries: Iterable[JournalEntry]) -> list[JournalEntry]:
        return [entry for entry in entries if self.keeps(entry)]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def redact(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if not token:
        return "****" + authorization[-4:] if len(authorization) > 4 else "****"
    return f"{scheme} ****{token.strip()[-4:]}"


@dataclass(slots=True)
class Exchange:
    """One request as the middleware saw it, kept raw: recording must cost next to nothing.

    ``entry`` decodes it (headers, redaction, key) when the journal is read. ``account`` is
    the caller's account at the time of the request (the store filters on it when clearing).
    """

    at_ms: int
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]  # as in the ASGI scope
    body: bytes  # the request body, its first MAX_BODY bytes
    status: int | None  # None: no answer was sent (a dropped connection)
    duration_s: float
    error_code: str | None
    run_id: str | None
    account: str | None

    @property
    def dropped(self) -> bool:
        return self.status is None

    def entry(self, seq: int) -> JournalEntry:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        authorization = headers.get("authorization")
        if authorization is not None:
            headers["authorization"] = redact(authorization)
        token = authorization.partition(" ")[2].strip() if authorization else ""
        return JournalEntry(
            seq=seq,
            at_ms=self.at_ms,
            method=self.method,
            path=self.path,
            query=self.query.decode("latin-1"),
            headers=headers,
            body=self.body.decode("utf-8", errors="replace"),
            status=self.status,
            error_code=self.error_code,
            run_id=self.run_id,
            duration_ms=round(self.duration_s * 1000, 3),
            key_last4=token[-4:] if token else None,
            account=self.account,
            dropped=self.dropped,
        )


def note_answer(scope: Scope, content: Any, size: int) -> None:
    """Tell the journal what a JSON answer carries: ``error.code`` and a top-level ``id``.

    Handlers call this with the content they serialized (to ``size`` bytes), so the journal
    never buffers or parses answers. An answer longer than MAX_BODY is left out, as the
    journal never read further than that (such an entry has no error code).
    """
    if size > MAX_BODY or not isinstance(content, dict):
        return
    error = content.get("error")
    run_id = content.get("id")
    scope[ANSWER_FACTS] = (
        error.get("code") if isinstance(error, dict) else None,
        run_id if isinstance(run_id, str) else None,
    )


def note_account(scope: Scope, account: str) -> None:
    """Tell the journal whose request this is, once the handler has authenticated it (else
    the journal finds the account from the Authorization header itself)."""
    scope[ACCOUNT_FACT] = account


class JournalMiddleware:
    """Records each exchange with ``await record(Exchange)``; never changes the exchange."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Callable[[], Clock],
        record: Callable[[Exchange], Awaitable[None]],
        account_of: Callable[[str | None], str | None],
    ) -> None:
        self.app = app
        self.clock = clock
        self.record = record
        self.account_of = account_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNRECORDED_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at_ms = await self.clock().now()
        body: list[bytes] = []
        body_size = 0
        status: int | None = None

        async def recording_receive() -> Message:
            nonlocal body_size
            message = await receive()
            if message["type"] == "http.request" and body_size < MAX_BODY:
                chunk = message.get("body", b"")[: MAX_BODY - body_size]
                body.append(chunk)
                body_size += len(chunk)
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            duration_s = time.perf_counter() - started
            error_code, answer_run_id = scope.get(ANSWER_FACTS, NO_FACTS)
            path_run_id = scope.get("path_params", NO_PARAMS).get("run_id")
            headers = scope["headers"]
            await self.record(
                Exchange(  # positional: the fields' order; keyword arguments cost more here
                    at_ms,
                    scope["method"],
                    scope["path"],
                    scope.get("query_string", b""),
                    headers,
                    b"".join(body),
                    status,
                    duration_s,
                    error_code,
                    answer_run_id if path_run_id is None else path_run_id,
                    scope[ACCOUNT_FACT]
                    if ACCOUNT_FACT in scope
                    else self.account_of(last_header(headers, b"authorization")),
                )
            )


def last_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of header ``name`` (lower case) in ASGI scope headers; if it was sent twice,
    the last one (a journal entry's headers are a dict: the last wins)."""
    found = None
    for sent, value in headers:
        if sent == name:
            found = value
    return None if found is None else found.decode("latin-1")
