"""``--replay FILE``: answer the requests a cassette recorded, from it.

A request matches a recorded one by method, path (``/v1`` and ``/api/v1`` alike), body (JSON
compared by value) and whether it sent a key (keys are redacted in cassettes, so which key
does not matter). Several recorded answers to the same request are given in recorded order,
the last one again once they run out.

A recorded run is replayed for every create that gets it: the first create keeps the
recorded id, each later one gets an id of its own (derived from the recorded one, so the
same on every replay), and each such run replays the recorded states from the first, one
state a poll (repeats collapsed), then stays in the last; its answers name its own id. URLs
of the recorded upstream point at this server instead.

The mock's own pages (``/_mock``, ``/docs``, ``/healthz``: what the journal leaves out) are
always the mock's. Any other request the cassette does not hold goes to the mock, or with
``strict`` (``--replay-strict``, VCR's ``record_mode=none``) is answered 501
``not_recorded``, naming the closest recorded request and how it differs. Sits inside the
journal, so replayed answers are journaled with their error code and run like any other.
"""

from __future__ import annotations

import hashlib
import string
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_runbase.cassette import Cassette, Recorded
from mock_runbase.conformance import Judge
from mock_runbase.errors import error_body
from mock_runbase.journal import note_answer, recorded
from mock_runbase.replay_diff import Asked, NearMiss, closest
from mock_runbase.spec import Spec, load_spec

__all__ = ["NOT_RECORDED", "ReplayApp"]

Key = tuple[str, str, bytes, bool]
REPLAY_HEADER = "x-mock-replayed"
NOT_RECORDED = "not_recorded"
BASE62 = string.digits + string.ascii_letters


def canonical(body: bytes) -> bytes:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


def json_of(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def replayed_id(recorded_id: str, replay: int) -> str:
    """The id of the ``replay``-th run (from 2) made from a recorded one: a run id of the
    usual form, the same for the same cassette every time."""
    digest = hashlib.blake2b(f"{recorded_id}:{replay}".encode(), digest_size=16).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    return "run_" + "".join(chars)


class ReplayApp:
    def __init__(
        self, app: ASGIApp, cassette: Cassette, spec: Spec | None = None, *, strict: bool = False
    ) -> None:
        self.app = app
        self.cassette = cassette
        self.strict = strict
        self.judge = Judge(spec or load_spec())
        self.answers: dict[Key, list[Recorded]] = defaultdict(list)
        self.states: dict[str, list[Recorded]] = defaultdict(list)
        self.candidates: list[tuple[int, Asked, str, int]] = []  # for the closest one
        for seq, exchange in enumerate(cassette.exchanges, 1):
            if not recorded(exchange.path):
                continue  # the mock's own pages are always the mock's
            keyed = "authorization" in exchange.request_headers
            asked = self.asked(exchange.method, exchange.path, exchange.request_body, keyed)
            self.candidates.append((seq, asked, exchange.path, exchange.status))
            run_id = self.polled_run(exchange.method, exchange.path)
            status = self.run_status(exchange) if run_id else None
            if run_id and status:
                states = self.states[run_id]
                if not states or self.run_status(states[-1]) != status:
                    states.append(exchange)
                continue
            self.answers[self.key(asked)].append(exchange)
        self.rewind()

    def rewind(self) -> None:
        """Back to the cassette's start: every answer and run as if never replayed."""
        self.given: Counter[Key] = Counter()
        self.polled: Counter[str] = Counter()  # polls of each run handed out
        self.handed: Counter[str] = Counter()  # runs handed out per recorded run
        self.aliases: dict[str, str] = {}  # a run handed out -> the recorded run it replays

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
        body = json_of(exchange.response_body)
        status = body.get("status") if isinstance(body, dict) else None
        return status if isinstance(status, str) else None

    def normal(self, path: str) -> str:
        for prefix in self.judge.prefixes:
            if path.startswith(prefix + "/"):
                return path[len(prefix) :]
        return path

    def asked(self, method: str, path: str, body: bytes, keyed: bool) -> Asked:
        return Asked(method.upper(), self.normal(path), body, keyed)

    @staticmethod
    def key(asked: Asked) -> Key:
        return asked.method, asked.path, canonical(asked.body), asked.keyed

    def match(self, asked: Asked, path: str) -> tuple[Recorded, str | None, str | None] | None:
        """The recorded answer, and (recorded id, id handed out) when it names a run whose
        id the answer must carry instead; None if the cassette does not hold the request."""
        run_id = self.polled_run(asked.method, path)
        source = None if run_id is None else self.aliases.get(run_id, run_id)
        if run_id is not None and source is not None:
            states = self.states.get(source)
            if states:
                found = states[min(self.polled[run_id], len(states) - 1)]
                self.polled[run_id] += 1
                return found, source, run_id
            asked = replace(asked, path=asked.path.replace(run_id, source))
        key = self.key(asked)
        answers = self.answers.get(key)
        if not answers:
            return None
        found = answers[min(self.given[key], len(answers) - 1)]
        self.given[key] += 1
        if run_id is not None:
            return found, source, run_id
        made = self.made_run(found)
        return (found, None, None) if made is None else (found, made, self.hand_out(made))

    def made_run(self, exchange: Recorded) -> str | None:
        """The run a recorded create answered with (one whose states were recorded)."""
        if exchange.method != "POST":
            return None
        body = json_of(exchange.response_body)
        run_id = body.get("id") if isinstance(body, dict) else None
        return run_id if isinstance(run_id, str) and run_id in self.states else None

    def hand_out(self, recorded_id: str) -> str:
        """The id of one more replay of a recorded run: its own the first time."""
        self.handed[recorded_id] += 1
        count = self.handed[recorded_id]
        run_id = recorded_id if count == 1 else replayed_id(recorded_id, count)
        self.aliases[run_id] = recorded_id
        self.polled[run_id] = 0
        return run_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not recorded(scope["path"]):
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
        asked = self.asked(scope["method"], scope["path"], body, keyed)
        found = self.match(asked, scope["path"])
        if found is not None:
            await self.answer(scope, send, *found)
            return
        if self.strict:
            await self.refuse(scope, send, asked, closest(asked, self.candidates))
            return

        async def again() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, again, send)

    async def answer(
        self, scope: Scope, send: Send, found: Recorded, source: str | None, run_id: str | None
    ) -> None:
        content = found.response_body
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if self.cassette.upstream and host:
            here = f"{scope.get('scheme', 'http')}://{host}"
            content = content.replace(self.cassette.upstream.encode(), here.encode())
        if source is not None and run_id is not None and run_id != source:
            content = content.replace(source.encode(), run_id.encode())
        parsed = json_of(content) if found.response_headers.get("content-type", "").startswith(
            "application/json") else None  # fmt: skip
        if parsed is not None:
            note_answer(scope, parsed, len(content))
        headers: list[Any] = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in found.response_headers.items()
            if k != "content-length"
        ]
        headers += [(b"content-length", str(len(content)).encode()), (REPLAY_HEADER.encode(), b"1")]
        await send({"type": "http.response.start", "status": found.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def refuse(self, scope: Scope, send: Send, asked: Asked, near: NearMiss | None) -> None:
        told = f"closest recorded: {near.told()}" if near else "the cassette holds no request"
        message = (
            f"{asked.method} {scope['path']} is not in the cassette, and --replay-strict "
            f"answers recorded requests only; {told}"
        )
        content = {**error_body(NOT_RECORDED, message), "closest": near.view() if near else None}
        body = orjson.dumps(content)
        note_answer(scope, content, len(body))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 501, "headers": headers})
        await send({"type": "http.response.body", "body": body})
