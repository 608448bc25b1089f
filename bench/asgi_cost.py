"""What one create and one poll cost inside the mock's ASGI app, without sockets or uvicorn.

Far less noisy than wrk on a busy machine (only this process's CPU time counts), so it is the
first thing to look at when changing the hot path; wrk (``bench/ab.py``) then confirms. It
drives ``create_app()`` as ``serve`` builds it (a line per request included, written to
``/dev/null``) with the scopes uvicorn would send and prints microseconds per request
(the best of ``--repeats`` batches)::

    python bench/asgi_cost.py                    # the installed mock_runbase
    PYTHONPATH=/tmp/before python -P bench/asgi_cost.py   # another source tree
    python bench/asgi_cost.py --cprofile mix     # where a workload's time goes, by function
    python bench/asgi_cost.py --bare             # bench/bare_app.py: the stack's own cost
    python bench/asgi_cost.py --store redis://127.0.0.1:6379/0   # on a Redis store (flushed!)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.types import ASGIApp, Message

from mock_runbase import create_app
from mock_runbase.settings import MockSettings

KEY = b"Bearer sk-bench"
BODY = orjson.dumps(
    {
        "model": "openai/gpt-image-2",
        "input": {"prompt": "a lighthouse at dawn", "aspect_ratio": "1:1", "resolution": "1K"},
    }
)
POLLED_RUNS = 200
MIX_POLLS = 10


def scope(method: str, path: str, extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A scope as uvicorn (httptools) builds it for a request from wrk."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"authorization", KEY), *extra],
        "state": {},
    }


class Exchange:
    """One request through the app: its status and body as sent."""

    def __init__(self, app: ASGIApp, template: dict[str, Any], body: bytes = b"") -> None:
        self.app = app
        self.template = template
        self.body = body

    async def __call__(self) -> tuple[int, bytes]:
        answer: dict[str, Any] = {"body": b""}
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if sent_body:
                await asyncio.Event().wait()  # a client that stays connected
            sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            else:
                answer["body"] += message.get("body", b"")

        await self.app(dict(self.template), receive, send)
        return answer["status"], answer["body"]


def create_exchange(app: ASGIApp) -> Exchange:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    return Exchange(app, scope("POST", "/v1/runs", headers), BODY)


async def checked(exchange: Exchange) -> bytes:
    status, body = await exchange()
    if status != 200:
        raise SystemExit(f"asgi_cost: {exchange.template['path']} answered {status}: {body!r}")
    return body


async def workloads(app: ASGIApp) -> dict[str, Callable[[], Awaitable[Any]]]:
    """name -> one unit of that workload (the mix's unit is 1 create and 10 polls)."""
    create = create_exchange(app)
    ids = [orjson.loads(await checked(create))["id"] for _ in range(POLLED_RUNS)]
    await asyncio.sleep(0.3)  # past the fast profile's ~50 ms: the polled runs have succeeded
    polls = [Exchange(app, scope("GET", f"/v1/runs/{run_id}", [])) for run_id in ids]
    cursor = 0

    async def poll() -> None:
        nonlocal cursor
        cursor = (cursor + 1) % len(polls)
        await checked(polls[cursor])

    async def mix() -> None:
        await checked(create)
        for _ in range(MIX_POLLS):
            await poll()

    async def create_one() -> None:
        await checked(create)

    return {"create": create_one, "poll": poll, "mix": mix}


REQUESTS_PER_UNIT = {"create": 1, "poll": 1, "mix": 1 + MIX_POLLS}


async def best_us(unit: Callable[[], Awaitable[Any]], count: int, repeats: int) -> float:
    """Microseconds of one unit: the fastest of ``repeats`` batches of ``count``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time_ns()
        for _ in range(count):
            await unit()
        best = min(best, (time.process_time_ns() - started) / count / 1000)
    return best


def the_app(bare: bool, store: str) -> ASGIApp:
    if bare:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bare_app import app as bare_app

        ceiling: ASGIApp = bare_app
        return ceiling
    settings = MockSettings(
        timing="fast", rate_limit=None, balance_usd=10**15, store=store, log_requests=True
    )
    app = create_app(settings)
    assert app.request_log is not None  # serve's line per request, written to nowhere
    app.request_log.stream = open(os.devnull, "w")  # noqa: SIM115 (open while the bench runs)
    return app


async def main_async(args: argparse.Namespace) -> None:
    app = the_app(args.bare, args.store)
    units = await workloads(app)
    if args.cprofile:
        unit = units[args.cprofile]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.count):
            await unit()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
        return
    for name, unit in units.items():
        count = max(1, args.count // REQUESTS_PER_UNIT[name])
        micros = await best_us(unit, count, args.repeats) / REQUESTS_PER_UNIT[name]
        print(f"{name:7} {micros:7.1f} us/request  ({1e6 / micros:9,.0f} requests/s of CPU)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--count", type=int, default=5000, help="requests per batch (5000)")
    add("--repeats", type=int, default=5, help="batches; the fastest counts (5)")
    add("--bare", action="store_true", help="drive bench/bare_app.py instead of the mock")
    add("--store", default="memory", help="the mock's --store: memory, or a Redis URL (memory)")
    add("--cprofile", choices=sorted(REQUESTS_PER_UNIT), help="profile this workload instead")
    add("--sort", default="tottime", help="pstats sort key with --cprofile (tottime)")
    add("--top", type=int, default=40, help="functions shown with --cprofile (40)")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
