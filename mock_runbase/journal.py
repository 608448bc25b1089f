"""The request journal: every request the mock answered, newest last, bounded in size.

``JournalMiddleware`` (pure ASGI) records method, path, headers (the API key redacted to its
last 4 characters), body, status, Runbase error code, run id and timing. The mock's own
``/_mock`` calls are not recorded, so a dashboard polling them leaves the journal alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.clock import Clock, format_ms, parse_timestamp

__all__ = ["JournalEntry", "JournalFilter", "JournalMiddleware", "redact"]

MAX_BODY = 64 * 1024
UNRECORDED_PREFIX = "/_mock"


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


class JournalMiddleware:
    """Records each exchange with ``record(entry_fields)``; never changes the exchange."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Callable[[], Clock],
        record: Callable[..., Awaitable[None]],
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
        at_ms = self.clock().now_ms()
        request_body = bytearray()
        response_body = bytearray()
        status: int | None = None

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(request_body) < MAX_BODY:
                request_body.extend(message.get("body", b"")[: MAX_BODY - len(request_body)])
            return message

        json_answer = False

        async def recording_send(message: Message) -> None:
            nonlocal status, json_answer
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                json_answer = headers.get(b"content-type", b"").startswith(b"application/json")
            elif (
                json_answer
                and message["type"] == "http.response.body"
                and len(response_body) < MAX_BODY
            ):
                response_body.extend(message.get("body", b"")[: MAX_BODY - len(response_body)])
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            authorization = headers.get("authorization")
            if authorization is not None:
                headers["authorization"] = redact(authorization)
            error_code, run_id = summarize(scope, bytes(response_body))
            token = authorization.partition(" ")[2].strip() if authorization else ""
            await self.record(
                at_ms=at_ms,
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=bytes(request_body).decode("utf-8", errors="replace"),
                status=status,
                error_code=error_code,
                run_id=run_id,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                key_last4=token[-4:] if token else None,
                account=self.account_of(authorization),
                dropped=status is None,
            )


def summarize(scope: Scope, body: bytes) -> tuple[str | None, str | None]:
    """(error code, run id) of a JSON answer, when it has them."""
    run_id = scope.get("path_params", {}).get("run_id")
    if not body.startswith(b"{"):
        return None, run_id
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, run_id
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if run_id is None and isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
        run_id = parsed["id"]
    return code, run_id
