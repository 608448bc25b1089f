"""``mock-runbase proxy``: a validating proxy that judges the clients (and servers) it sits between.

Every request is forwarded to the upstream (the mock, or the real API) and both directions are
judged against ``openapi.yaml`` by ``conformance``: what the client sent, what the server
answered, and how the client behaves across exchanges (does it back off after a 429?). Each
violation is logged with its exchange and counted; ``GET /_proxy/report`` shows the counts
and the latest violations, and a summary is printed on exit. ``--record FILE`` also writes
every exchange to a cassette (``cassette``) that ``serve --replay`` answers from.

Output URLs that point at the upstream are rewritten to point at the proxy, so a client's
image downloads go through it too (and are recorded).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from starlette.types import Message, Receive, Scope, Send

from mock_runbase.cassette import CassetteWriter, Recorded
from mock_runbase.conformance import Judge, Violation, Watch
from mock_runbase.errors import error_body
from mock_runbase.journal_records import redact
from mock_runbase.spec import Spec, load_spec

__all__ = ["REPORT_PATH", "Proxy", "Report"]

log = logging.getLogger("mock_runbase.proxy")

REPORT_PATH = "/_proxy/report"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
}  # fmt: skip
NOT_RETURNED = HOP_BY_HOP | {"content-encoding", "date", "server"}
EXCERPT = 300


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def excerpt(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= EXCERPT else f"{text[:EXCERPT]}... ({len(body)} bytes)"


@dataclass
class Report:
    """Counts of exchanges and violations, and the latest exchanges that broke a rule."""

    upstream: str
    started: str = field(default_factory=now_iso)
    exchanges: int = 0
    judged: int = 0
    upstream_errors: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    by_direction: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))

    @property
    def violations(self) -> int:
        return sum(self.by_rule.values())

    def add(self, summary: dict[str, Any], violations: list[Violation], judged: bool) -> None:
        self.exchanges += 1
        self.judged += judged
        for violation in violations:
            self.by_rule[violation.rule] += 1
            self.by_direction[violation.direction] += 1
        if violations:
            self.recent.append({**summary, "violations": [v.view() for v in violations]})

    def view(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "started": self.started,
            "exchanges": self.exchanges,
            "judged": self.judged,
            "violations": self.violations,
            "upstreamErrors": self.upstream_errors,
            "byDirection": dict(self.by_direction),
            "byRule": dict(self.by_rule),
            "recent": list(self.recent),
        }

    def summary(self) -> str:
        lines = [
            f"mock-runbase proxy: {self.exchanges} exchanges ({self.judged} judged against the "
            f"spec), {self.violations} violations, {self.upstream_errors} upstream errors"
        ]
        for direction, count in sorted(self.by_direction.items()):
            lines.append(f"  {direction}: {count}")
        for rule, count in self.by_rule.most_common():
            lines.append(f"    {rule}: {count}")
        return "\n".join(lines)


class Proxy:
    """The ASGI app of ``mock-runbase proxy``."""

    def __init__(
        self,
        upstream: str,
        *,
        spec: Spec | None = None,
        record: Path | None = None,
        min_backoff: float = 0.5,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--upstream {upstream!r} is not an http(s) URL")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")
        self.judge = Judge(spec or load_spec())
        self.watch = Watch(min_backoff=min_backoff)
        self.report = Report(upstream=upstream)
        self.recorder = CassetteWriter(record, self.origin) if record else None
        self.timeout = timeout
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, transport=self.transport, follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] != "http":
            return
        elif scope["path"] == REPORT_PATH:
            await respond(send, 200, orjson.dumps(self.report.view()))
        else:
            await self.forward(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def target(self, path: str, query: str) -> str:
        within = self.prefix and (path == self.prefix or path.startswith(self.prefix + "/"))
        url = self.origin + ("" if within else self.prefix) + path
        return f"{url}?{query}" if query else url

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        query = scope["query_string"].decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await read_body(receive)
        auth = headers.get("authorization")
        violations = self.watch.before(auth)
        operation, found = self.judge.request(method, path, headers, body)
        violations += found
        sent = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        try:
            response = await self.client.request(
                method,
                self.target(path, query),
                headers={**sent, "accept-encoding": "identity"},
                content=body,
            )
        except httpx.HTTPError as error:
            self.report.upstream_errors += 1
            log.warning("upstream error on %s %s: %r", method, path, error)
            message = f"mock-runbase proxy: upstream {self.origin}: {type(error).__name__} {error}"
            await respond(send, 502, orjson.dumps(error_body("upstream_unreachable", message)))
            return
        answer = {
            k.lower(): v for k, v in response.headers.items() if k.lower() not in NOT_RETURNED
        }
        content = response.content
        if operation is not None:
            violations += self.judge.response(operation, response.status_code, answer, content)
        violations += self.watch.after(auth, operation, response.status_code, content)
        recorded = Recorded(
            method, path, query, sent, body, response.status_code, answer, content
        ).redacted()
        self.note(recorded, violations, judged=operation is not None)
        if self.recorder is not None:
            self.recorder.write(recorded, now_iso(), [v.view() for v in violations])
        proxy_origin = f"{scope['scheme']}://{headers.get('host', '')}"
        if answer.get("content-type", "").startswith("application/json") and headers.get("host"):
            content = content.replace(self.origin.encode(), proxy_origin.encode())
        await respond(send, response.status_code, content, answer)

    def note(self, exchange: Recorded, violations: list[Violation], judged: bool) -> None:
        summary = {
            "at": now_iso(),
            "method": exchange.method,
            "path": exchange.path,
            "status": exchange.status,
            "key": redact(exchange.request_headers.get("authorization", "")) or None,
            "request": excerpt(exchange.request_body),
            "response": excerpt(exchange.response_body),
        }
        self.report.add(summary, violations, judged)
        for violation in violations:
            log.warning(
                "VIOLATION (%s) %s: %s\n  %s %s -> %s\n  request:  %s\n  response: %s",
                violation.direction, violation.rule, violation.message, exchange.method,
                exchange.path, exchange.status, summary["request"], summary["response"],
            )  # fmt: skip


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send, status: int, content: bytes, headers: dict[str, str] | None = None
) -> None:
    sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if headers is None:
        sent.append((b"content-type", b"application/json"))
    sent.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": content})


def run(
    upstream: str,
    *,
    host: str,
    port: int,
    record: Path | None,
    strict: bool,
    min_backoff: float,
    spec: Path | None,
    log_level: str,
) -> int:
    """``mock-runbase proxy``: serve until interrupted (SIGINT or SIGTERM), print the summary,
    exit non-zero in strict mode when anything broke the spec."""
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    proxy = Proxy(upstream, spec=load_spec(spec), record=record, min_backoff=min_backoff)
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    print(
        f"mock-runbase proxy on http://{shown}:{port} -> {upstream}\n"
        f"  report: http://{shown}:{port}{REPORT_PATH}"
        + (f"\n  recording to {record}" if record else ""),
        flush=True,
    )
    with sigterm_as_interrupt():
        uvicorn.run(proxy, host=host, port=port, log_level=log_level.lower())
    if proxy.recorder is not None:
        proxy.recorder.close()
    print(proxy.report.summary(), flush=True)
    return 1 if strict and proxy.report.violations else 0


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, ``docker stop``, CI) stops the proxy as Ctrl-C does.

    uvicorn shuts down gracefully on either signal, then raises it again under the handler it
    found: Python's default for SIGTERM kills the process before the summary is printed and
    before strict mode can exit 1. Under ``default_int_handler`` it is a KeyboardInterrupt,
    which ends ``uvicorn.run`` (or start-up, if it comes that early) like Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
