"""``mock-runbase serve --replay FILE``: answer the requests a cassette recorded, from it.

A request matches a recorded one by method, path (``/v1`` and ``/api/v1`` alike), body (JSON
compared by value) and whether it sent a key (keys are redacted in cassettes, so which key
does not matter). Several recorded answers to the same request are given in recorded order,
the last one again once they run out. A recorded run replays its recorded states in order,
one state a poll (repeats of a state collapsed), and then stays in the last. Anything the
cassette does not hold is answered by the mock, as usual. URLs of the recorded upstream in
the answers point at this server instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.cassette import Cassette, Recorded
from mock_runbase.conformance import Judge
from mock_runbase.spec import Spec, load_spec

__all__ = ["ReplayApp"]

Key = tuple[str, str, bytes, bool]
REPLAY_HEADER = "x-mock-replayed"


def canonical(body: bytes) -> bytes:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


class ReplayApp:
    def __init__(self, app: ASGIApp, cassette: Cassette, spec: Spec | None = None) -> None:
        self.app = app
        self.cassette = cassette
        self.judge = Judge(spec or load_spec())
        self.answers: dict[Key, list[Recorded]] = defaultdict(list)
        self.given: Counter[Key] = Counter()
        self.states: dict[str, list[Recorded]] = defaultdict(list)
        self.polled: Counter[str] = Counter()
        for exchange in cassette.exchanges:
            run_id = self.polled_run(exchange.method, exchange.path)
            status = self.run_status(exchange) if run_id else None
            if run_id and status:
                states = self.states[run_id]
                if not states or self.run_status(states[-1]) != status:
                    states.append(exchange)
                continue
            keyed = "authorization" in exchange.request_headers
            key = self.key(exchange.method, exchange.path, exchange.request_body, keyed)
            self.answers[key].append(exchange)

    def __len__(self) -> int:
        return len(self.cassette.exchanges)

    def polled_run(self, method: str, path: str) -> str | None:
        operation, params, _ = self.judge.match(method, path)
        if operation is None or operation.method != "GET" or len(params) != 1:
            return None
        return next(iter(params.values()))

    @staticmethod
    def run_status(exchange: Recorded) -> str | None:
        if exchange.status != 200:
            return None
        try:
            body = orjson.loads(exchange.response_body)
        except orjson.JSONDecodeError:
            return None
        status = body.get("status") if isinstance(body, dict) else None
        return status if isinstance(status, str) else None

    def normal(self, path: str) -> str:
        for prefix in self.judge.prefixes:
            if path.startswith(prefix + "/"):
                return path[len(prefix) :]
        return path

    def key(self, method: str, path: str, body: bytes, keyed: bool) -> Key:
        return method.upper(), self.normal(path), canonical(body), keyed

    def match(self, method: str, path: str, body: bytes, keyed: bool) -> Recorded | None:
        run_id = self.polled_run(method, path)
        if run_id is not None and run_id in self.states:
            states = self.states[run_id]
            found = states[min(self.polled[run_id], len(states) - 1)]
            self.polled[run_id] += 1
            return found
        key = self.key(method, path, body, keyed)
        recorded = self.answers.get(key)
        if not recorded:
            return None
        found = recorded[min(self.given[key], len(recorded) - 1)]
        self.given[key] += 1
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        keyed = any(name.lower() == b"authorization" for name, _ in scope["headers"])
        found = self.match(scope["method"], scope["path"], body, keyed)
        if found is None:

            async def again() -> Message:
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, again, send)
            return
        await self.answer(scope, send, found)

    async def answer(self, scope: Scope, send: Send, found: Recorded) -> None:
        content = found.response_body
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if self.cassette.upstream and host:
            here = f"{scope.get('scheme', 'http')}://{host}"
            content = content.replace(self.cassette.upstream.encode(), here.encode())
        headers: list[Any] = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in found.response_headers.items()
            if k != "content-length"
        ]
        headers += [(b"content-length", str(len(content)).encode()), (REPLAY_HEADER.encode(), b"1")]
        await send({"type": "http.response.start", "status": found.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
