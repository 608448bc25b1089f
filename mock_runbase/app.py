"""``create_app()``: the Starlette app, serving the runs API under ``/v1`` and ``/api/v1``.

Handlers only translate HTTP to ``RunbaseService`` calls and back; every error is a
``RunbaseError`` rendered by one handler.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.byte_ranges import NOT_SATISFIABLE, requested_range
from mock_runbase.clock import DEFAULT_VIRTUAL_START, Clock, SystemClock
from mock_runbase.control import AdminTokenMiddleware, control_routes, service_of
from mock_runbase.control_spec import load_control_spec
from mock_runbase.dashboard import dashboard_routes
from mock_runbase.docs import docs_routes
from mock_runbase.errors import RunbaseError, error_body
from mock_runbase.hot_routes import HotRoutes
from mock_runbase.journal import (
    JournalMiddleware,
    last_header,
    note_account,
    note_answer,
    note_body,
    note_run,
)
from mock_runbase.own_media import MEDIA_TYPES, MediaDirectory
from mock_runbase.request_log import RequestLog
from mock_runbase.runs import FILES_PATH, created_view, file_path, run_view
from mock_runbase.service import RunbaseService, ServedFile
from mock_runbase.settings import MockSettings
from mock_runbase.spec import Spec, load_spec
from mock_runbase.state_transfer import save_state
from mock_runbase.store import MemoryStore, Store
from mock_runbase.wire_faults import BrokenAnswer, BrokenConnection, break_connection

if TYPE_CHECKING:
    from mock_runbase.replay import ReplayApp

__all__ = ["create_app"]

log = logging.getLogger("mock_runbase")

API_PREFIXES = ("/v1", "/api/v1")
HEALTH_PATH = "/healthz"
MEDIA_HEADER = "X-Mock-Media"  # on a download of a --media-dir file: which one (URL-quoted)


class JSONAnswer(Response):
    """JSON by orjson, its headers built directly (Starlette's ``init_headers`` merges and
    checks for cases a JSON answer never has: no body, 1xx, 204, 304, a charset)."""

    media_type = "application/json"

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = orjson.dumps(content)
        self.status_code = status_code
        self.background = None
        self.raw_headers = [
            (b"content-length", b"%d" % len(self.body)),
            (b"content-type", b"application/json"),
        ]
        if headers:
            self.raw_headers += [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]


def create_app(settings: MockSettings | None = None, *, clock: Clock | None = None) -> MockApp:
    """Build the mock. Costly work (spec, validators, config) happens here, once."""
    settings = settings or MockSettings()
    spec = load_spec(settings.spec, models=settings.models)
    own_media = MediaDirectory(settings.media_dir, listed=True)
    control = load_control_spec(spec, media_names=own_media.listed or ())
    store = make_store(settings)
    clock = clock or make_clock(settings, store)
    service = RunbaseService(
        spec=spec, control=control, settings=settings, clock=clock, store=store, own_media=own_media
    )
    routes: list[BaseRoute] = []
    for prefix in API_PREFIXES:
        routes.append(Route(f"{prefix}/runs", create_run, methods=["POST"]))
        routes.append(Route(f"{prefix}/runs/{{run_id:str}}", get_run, methods=["GET"]))
    routes += [
        Route(f"{FILES_PATH}/{{name:str}}", get_file, methods=["GET", "HEAD"]),
        Route(HEALTH_PATH, health, methods=["GET"]),
        Route("/openapi.yaml", openapi_document, methods=["GET"]),
        *control_routes(control),
        *dashboard_routes(control),
        *docs_routes(control),
    ]
    exception_handlers: dict[Any, Any] = {
        RunbaseError: render_runbase_error,
        HTTPException: render_http_exception,
        **dict.fromkeys(store.unavailable_errors, render_store_unavailable),
        Exception: render_unexpected,
    }
    request_log = RequestLog() if settings.log_requests else None
    app = MockApp(
        routes=routes,
        middleware=(
            [Middleware(AdminTokenMiddleware, token=settings.admin_token)]
            if settings.admin_token
            else []
        ),
        exception_handlers=exception_handlers,
        lifespan=closing(service, request_log),
    )
    hot = HotRoutes(
        prefixes=API_PREFIXES,
        create=create_run,
        poll=get_run,
        exception_handlers=exception_handlers,
        fallback=app.starlette,
    )
    api: ASGIApp = hot
    if settings.replay is not None:
        app.replay = replaying(api, settings, spec)
        service.reserved_names = app.replay.cassette.run_names()  # its runs are not the mock's
        service.on_reset.append(app.replay.rewind)
        api = app.replay
    app.entry = JournalMiddleware(
        api,
        clock=lambda: service.clock,
        record=store.record_soon,
        account_of=lambda header: service.last_directory.account_of(header),
        unavailable=store.unavailable_errors,
        request_log=request_log,
        hot=hot if api is hot else None,  # a replay answers in front of the hot routes
    )
    if settings.cors:
        app.entry = cors(app.entry, settings.cors)
    app.state.service = app.service = service
    app.request_log = request_log
    app.state.replay = app.replay
    app.worker = str(os.getpid()) if store.shared else None
    log.info(
        "mock ready: %d models, timing %s, %s clock, %s store",
        len(spec.catalog.models),
        settings.timing,
        settings.clock,
        "shared" if store.shared else "in-memory",
    )
    return app


EXPOSED_HEADERS = [  # what a browser client may read besides the CORS-safelisted ones
    "Retry-After",
    "X-Mock-Warning",
    "X-Mock-Worker",
    "X-Mock-Media",
    "Content-Range",
    "Accept-Ranges",
    "Content-Length",
]


def cors(app: ASGIApp, origins: tuple[str, ...]) -> ASGIApp:
    """``--cors``: preflights answered and CORS headers added, outside the journal (a
    preflight is the browser's business, not a request of the client's). Runbase's own CORS
    behaviour is undocumented; off unless asked (inferred)."""
    return CORSMiddleware(
        app,
        allow_origins=list(origins),
        allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )


def replaying(api: ASGIApp, settings: MockSettings, spec: Spec) -> ReplayApp:
    """``--replay``: the cassette's answers in front of the API, inside the journal."""
    from mock_runbase.cassette import Cassette
    from mock_runbase.replay import ReplayApp

    assert settings.replay is not None
    try:
        cassette = Cassette.load(settings.replay)
    except (ValueError, OSError) as error:
        raise ValueError(f"--replay {settings.replay}: {error}") from None
    return ReplayApp(api, cassette, spec, strict=settings.replay_strict)


def make_store(settings: MockSettings) -> Store:
    """``memory`` (one process), or a ``redis://`` URL (any number of processes) that answers
    within a few seconds (else ``StoreUnreachable``, an ``OSError``)."""
    ttl_ms = round(settings.run_ttl_s * 1000)
    if settings.store == "memory":
        return MemoryStore(settings.rate_limit, settings.journal_size, run_ttl_ms=ttl_ms)
    from mock_runbase.redis_store import DEFAULT_PREFIX, RedisStore, redacted_url

    if settings.store.startswith(("redis://", "rediss://", "unix://")):
        store = RedisStore(
            settings.store,
            settings.rate_limit,
            settings.journal_size,
            run_ttl_ms=ttl_ms,
            prefix=f"{settings.store_prefix}:" if settings.store_prefix else DEFAULT_PREFIX,
        )
        store.wait_until_reachable()
        return store
    where = redacted_url(settings.store)
    raise ValueError(f"--store {where!r}: expected memory or redis://host:port/db")


def make_clock(settings: MockSettings, store: Store) -> Clock:
    if settings.clock != "virtual":
        return SystemClock()
    return store.virtual_clock(DEFAULT_VIRTUAL_START)


def closing(service: RunbaseService, request_log: RequestLog | None) -> Any:
    """At shutdown (SIGINT, SIGTERM): the last request lines written, the state saved to
    ``--state``, then the store closed."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if request_log is not None:
            request_log.flush()
        try:
            if service.settings.state is not None:
                await save_state(service, service.settings.state)
        finally:
            await service.store.close()

    return lifespan


class MockApp(Starlette):
    """Starlette behind the journal and the hot routes (``entry``), plus the connection faults
    (``wire_faults``: done on uvicorn's transport), the service's start-up work on the first request
    (lifespan does not run in every host) and, on a shared store, an ``X-Mock-Worker`` header
    naming the process that answered."""

    service: RunbaseService
    entry: ASGIApp
    worker: str | None = None
    replay: ReplayApp | None = None  # --replay
    request_log: RequestLog | None = None  # a line per request (serve's default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        cycle = getattr(send, "__self__", None)  # uvicorn's, with the socket's transport
        worker_headers = []
        if scope["type"] == "http" and self.worker is not None:
            send = with_worker_header(send, self.worker.encode())
            worker_headers = [(b"x-mock-worker", self.worker.encode())]
        if scope["type"] == "http" and scope["path"] == HEALTH_PATH:
            # a probe needs only the store's answer: no start-up work and no journal entry
            # (either would need the store, and a probe's answer must not depend on them)
            await self.starlette(scope, receive, send)
            return
        if not service.started and scope["type"] == "http":
            try:
                await service.start()
            except service.store.unavailable_errors as error:
                answer = JSONAnswer(store_unavailable(error).body(), status_code=503)
                await answer(scope, receive, send)
                return
        scope["app"] = self
        try:
            await self.entry(scope, receive, send)
        except BrokenConnection as broken:
            await break_connection(cycle, broken, worker_headers)

    async def starlette(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def with_worker_header(send: Send, worker: bytes) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-mock-worker", worker)]
        await send(message)

    return sending


def store_unavailable(error: BaseException) -> RunbaseError:
    return RunbaseError(
        503, "store_unavailable", f"The mock's shared store is unavailable: {error}"
    )


def client_ip(request: Request) -> str | None:
    client = request.scope.get("client")  # not request.client: that builds an Address each time
    return client[0] if client else None


def header(request: Request, name: bytes) -> str | None:
    """Header ``name`` (lower case) as the journal records it: if sent twice, the last one.
    Cheaper than ``request.headers.get``, which builds a ``Headers`` and raises a ``KeyError``
    inside for a missing header."""
    return last_header(request.scope["headers"], name)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to exceed ``limit`` bytes; noted
    for the journal (the hot routes' requests are journaled from what they note)."""
    declared = header(request, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    more = True
    try:
        while more:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            more = message.get("more_body", False)
    except BaseException:
        note_body(request.scope, b"".join(chunks))  # what was read is journaled, as it came
        raise
    body = b"".join(chunks)
    note_body(request.scope, body)
    return body


def too_large(limit: int) -> RunbaseError:
    return RunbaseError(413, "payload_too_large", f"Request body exceeds {limit} bytes")


def public_base(request: Request, service: RunbaseService) -> str:
    """Where output URLs point: ``--public-url``, else the host the client asked for.

    Read from the scope, not ``request.url``, which re-parses the whole URL on every poll.
    """
    configured = service.settings.public_url
    if configured:
        return configured.rstrip("/")
    host = header(request, b"host")
    if host is None:
        server_host, port = request.scope.get("server") or ("localhost", 80)
        host = f"{server_host}:{port}"
    return f"{request.scope.get('scheme', 'http')}://{host}"


async def create_run(request: Request) -> Response:
    service = service_of(request)
    caller = await service.authorize(header(request, b"authorization"), client_ip(request))
    note_account(request.scope, caller.key.account)
    body = await read_body(request, service.settings.max_body_bytes)
    created = await service.create_run(caller, body, header(request, b"x-mock-scenario"))
    headers = {"X-Mock-Warning": created.warning} if created.warning else None
    answer = json_answer(request, created_view(created.run), headers=headers)
    return broken(answer, created.answer_fault)


async def get_run(request: Request) -> Response:
    service = service_of(request)
    run_id = request.path_params["run_id"]
    caller = await service.authorize(header(request, b"authorization"), client_ip(request), run_id)
    note_account(request.scope, caller.key.account)
    polled = await service.get_run(caller, run_id, header(request, b"x-mock-scenario"))
    base = public_base(request, service)
    now = polled.now_ms
    if now is None:
        local = service.local_now
        now = local() if local is not None else await service.now()
    view = run_view(polled.run, now, lambda name: base + file_path(name))
    headers = {"X-Mock-Warning": polled.warning} if polled.warning else None
    return broken(json_answer(request, view, headers=headers), polled.answer_fault)


async def get_file(request: Request) -> Response:
    """A generated file, like a CDN serves it: ETag, HEAD and single byte ranges."""
    name: str = request.path_params["name"]
    if name.rsplit(".", 1)[-1] not in MEDIA_TYPES:
        raise RunbaseError(404, "file_not_found", "File not found")
    served = await service_of(request).generated_file(name, header(request, b"x-mock-scenario"))
    run = served.media.run
    note_run(request.scope, run.id, run.model)
    note_account(request.scope, run.account)  # a download carries no key: its run's account
    return broken(file_answer(request, served), served.answer_fault)


def file_answer(request: Request, served: ServedFile) -> Response:
    run, content, etag = served.media
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=31536000, immutable",
        "Accept-Ranges": "bytes",
    }
    if served.warning is not None:
        headers["X-Mock-Warning"] = served.warning
    if run.media is not None:
        headers[MEDIA_HEADER] = quote(run.media)
    if request.headers.get("if-none-match") == etag:
        kept = {k: v for k, v in headers.items() if k in ("ETag", "X-Mock-Warning")}
        return Response(status_code=304, headers=kept)
    media_type = MEDIA_TYPES[run.file_name.rsplit(".", 1)[-1]][1]
    wanted = requested_range(request.headers.get("range"), len(content))
    status = 200
    if wanted == NOT_SATISFIABLE:
        headers["Content-Range"] = f"bytes */{len(content)}"
        return Response(status_code=416, headers=headers)
    if wanted is not None:
        first, last = wanted
        headers["Content-Range"] = f"bytes {first}-{last}/{len(content)}"
        content, status = content[first : last + 1], 206
    headers["Content-Length"] = str(len(content))
    body = b"" if request.method == "HEAD" else content
    return Response(body, status_code=status, media_type=media_type, headers=headers)


async def health(request: Request) -> Response:
    """200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reason"}`` when the store
    cannot be reached (the body documented in the control document, never an error body)."""
    store = service_of(request).store
    try:
        await store.ping()
    except store.unavailable_errors as error:
        return json_answer(request, {"status": "unhealthy", "reason": str(error)}, 503)
    return json_answer(request, {"status": "ok"})


async def openapi_document(request: Request) -> Response:
    return Response(service_of(request).spec.text, media_type="application/yaml")


async def render_runbase_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RunbaseError)
    answer = json_answer(request, exc.body(), exc.status, exc.headers or None)
    return broken(answer, exc.answer_fault)


async def render_http_exception(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) get the same JSON error body."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return json_answer(request, error_body(code, message), exc.status_code, exc.headers)


async def render_store_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return json_answer(request, store_unavailable(exc).body(), 503)


async def render_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_answer(request, error_body("internal_error", "Internal server error"), 500)


def broken(answer: Response, fault: str | None) -> Response:
    """``answer``, or, if a scenario asked for a fault that breaks it, the answer broken."""
    return answer if fault is None else BrokenAnswer(answer, fault)


def json_answer(
    request: Request,
    content: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON answer, with its error code and run id noted for the journal."""
    answer = JSONAnswer(content, status_code=status_code, headers=headers)
    note_answer(request.scope, content, len(answer.body))
    return answer
