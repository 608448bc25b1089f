"""The two routes that carry nearly all traffic, dispatched without Starlette's stack.

``POST /v1/runs`` and ``GET /v1/runs/{run_id}`` (and their ``/api/v1`` twins) go straight to
their endpoints: no error and exception middleware layers, no matching against every route, no
endpoint wrapper. Under load each of those layers costs a few microseconds a request, together
about a fifth of the mock's CPU per poll (``bench/asgi_cost.py``).

The answers are the same: the same endpoints, and errors rendered by the same exception
handlers, looked up the way Starlette looks them up (the exception's MRO). As with Starlette's
``ServerErrorMiddleware``, an unexpected error is answered (500) and then re-raised for the
server to log. Anything that is not an exact match (``HEAD``, a trailing slash, a
``root_path``, a nested path) falls through to the full Starlette app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mock_runbase.journal import note_sent
from mock_runbase.wire_faults import BrokenAnswer

__all__ = ["HotRoutes"]

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class HotRoutes:
    """``create`` for ``POST {prefix}/runs``, ``poll`` for ``GET {prefix}/runs/{run_id}``;
    every other request to ``fallback``."""

    def __init__(
        self,
        *,
        prefixes: Iterable[str],
        create: Endpoint,
        poll: Endpoint,
        exception_handlers: Mapping[Any, ErrorHandler],
        fallback: ASGIApp,
    ) -> None:
        self.create_paths = frozenset(f"{prefix}/runs" for prefix in prefixes)
        self.poll_prefixes = tuple(f"{path}/" for path in self.create_paths)
        self.create = create
        self.poll = poll
        self.handlers = dict(exception_handlers)
        self.fallback = fallback

    def endpoint(self, scope: Scope) -> Endpoint | None:
        """The endpoint for this request, with ``path_params`` set; None for the fallback."""
        if scope["type"] != "http" or scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        if method == "POST":
            return self.create if path in self.create_paths else None
        if method != "GET" or not path.startswith(self.poll_prefixes):
            return None
        run_id = path[path.index("/runs/") + len("/runs/") :]
        if not run_id or "/" in run_id:
            return None
        scope["path_params"] = {"run_id": run_id}
        return self.poll

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoint(scope)
        if endpoint is None:
            await self.fallback(scope, receive, send)
            return
        await self.answer(endpoint, scope, receive, send)

    async def answer(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """``endpoint``'s answer (or its error's), its status noted for the journal."""
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as error:
            kind, handler = self.handler_of(error)
            if handler is None:
                raise
            answer = await handler(request, error)
            note_what_is_sent(answer, scope)
            await answer(scope, receive, send)
            if kind is Exception:
                raise
            error.__traceback__ = None  # a reused exception instance would pile up tracebacks
            return
        note_what_is_sent(response, scope)
        await response(scope, receive, send)

    def handler_of(self, error: Exception) -> tuple[type, ErrorHandler | None]:
        for kind in type(error).__mro__:
            if kind in self.handlers:
                return kind, self.handlers[kind]
        return Exception, None


def note_what_is_sent(response: Response, scope: Scope) -> None:
    """What the journal records of ``response``, noted before it is sent (a broken answer
    sends no status: it breaks the connection instead)."""
    if isinstance(response, BrokenAnswer):
        note_sent(scope, None, [])
    else:
        note_sent(scope, response.status_code, response.raw_headers)
