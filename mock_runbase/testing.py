"""Run the mock inside your own process, on a real loopback port, and drive it from tests.

    with mock_runbase.serve(timing="realistic") as mock:
        app = MyApp(base_url=mock.base_url, api_key=mock.api_key)
        run = app.generate("a lighthouse")
        mock.clock.advance(5)
        assert app.result(run)["status"] == "succeeded"

The server runs uvicorn in a background thread on a virtual clock; the handle talks to it
through the mock's own control API, exactly as a test on another machine would.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import httpx
import uvicorn

from mock_runbase.app import create_app
from mock_runbase.client_checks.plan import Plan
from mock_runbase.client_checks.verdicts import (
    ClientViolation,
    Conduct,
    exchange_line,
    judge_client,
)
from mock_runbase.one_write import OneWriteHttpToolsProtocol
from mock_runbase.ratelimit import RateLimit, parse_rate_limit
from mock_runbase.service import RunbaseService
from mock_runbase.settings import MockSettings
from mock_runbase.spec import load_spec

__all__ = ["MockServer", "RunbaseMock", "serve"]

T = TypeVar("T")
TEST_DEFAULTS = MockSettings(timing="instant", clock="virtual", rate_limit=None)


class MockServer:
    """uvicorn serving one mock app on 127.0.0.1 in a daemon thread."""

    def __init__(self, settings: MockSettings = TEST_DEFAULTS) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.service: RunbaseService = self.app.state.service
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            http=OneWriteHttpToolsProtocol,  # as serve answers
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="mock-runbase", daemon=True)
        self.origin = ""

    def start(self, timeout: float = 10) -> MockServer:
        self.thread.start()
        ready = threading.Event()

        def wait() -> None:
            while not self.server.started and self.thread.is_alive():
                ready.wait(0.005)

        wait()
        if not self.server.started:
            raise RuntimeError("mock-runbase did not start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.origin, timeout=30)  # shared: built once
        return self

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's own loop (state changes stay on one thread)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def fresh(
        self,
        *,
        timing: str | None = None,
        rate_limit: str | RateLimit | None = None,
        balance_usd: float | None = None,
        seed: int | None = None,
    ) -> RunbaseMock:
        """Forget everything, apply these settings, and hand out a new key."""
        changes: dict[str, Any] = {}
        if timing is not None:
            changes["timing"] = timing
        if seed is not None:
            changes["seed"] = seed
        if balance_usd is not None:
            changes["balance_usd"] = round(balance_usd * 1_000_000)
        if isinstance(rate_limit, str):
            rate_limit = parse_rate_limit(rate_limit)
        settings = replace(self.settings, **changes, rate_limit=rate_limit)
        self.call(self._reset(settings))
        key = f"sk-test-{secrets.token_hex(8)}"
        return RunbaseMock(self.origin, key, KeyedClient(self.http, key))

    async def _reset(self, settings: MockSettings) -> None:
        self.service.reconfigure(
            timing=settings.timing,
            seed=settings.seed,
            balance_usd=settings.balance_usd,
            rate_limit=settings.rate_limit,
        )
        await self.service.reset()


class KeyedClient:
    """The server's shared HTTP client, sending one test's key on every call."""

    def __init__(self, http: httpx.Client, api_key: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {api_key}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, path, headers=self._headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def unscoped(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call without the key: the whole mock's, not the test's account's."""
        return self._http.request(method, path, **kwargs)


class Clock:
    def __init__(self, client: KeyedClient) -> None:
        self._client = client

    def advance(self, seconds: float) -> str:
        response = self._client.post("/_mock/clock/advance", json={"seconds": seconds})
        response.raise_for_status()
        now: str = response.json()["now"]
        return now

    @property
    def now(self) -> str:
        now: str = self._client.get("/_mock/clock").json()["now"]
        return now


class Account:
    def __init__(self, client: KeyedClient) -> None:
        self._client = client

    def view(self) -> dict[str, Any]:
        response = self._client.get("/_mock/account")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    @property
    def name(self) -> str:
        return str(self.view()["account"])

    @property
    def balance(self) -> int:
        """Micro-USD (1 USD = 1,000,000)."""
        return int(self.view()["balanceUsd"])

    def set_balance(self, micro_usd: int) -> None:
        response = self._client.put(f"/_mock/accounts/{self.name}", json={"balanceUsd": micro_usd})
        response.raise_for_status()


class RunbaseMock:
    """One test's view of the mock: its own key, account, runs, rules and journal."""

    def __init__(self, origin: str, api_key: str, control: KeyedClient) -> None:
        self.origin = origin
        self.base_url = f"{origin}/v1"
        self.api_key = api_key
        self.control = control
        self.clock = Clock(self.control)
        self.account = Account(self.control)
        self.plan: Plan | None = None  # the last behave()'s

    def add_rule(
        self,
        scenario: str,
        *,
        times: int | None = None,
        every: int | None = None,
        probability: float | None = None,
        code: str | None = None,
        message: str | None = None,
        ms: int | None = None,
        media: str | None = None,
        pending_polls: int | None = None,
        processing_polls: int | None = None,
        **match: str,
    ) -> dict[str, Any]:
        """A fault rule for this test's key: ``add_rule("fail", times=1, prompt_regex="^cat")``;
        ``add_rule("succeed", media="cat.png")``: its runs serve that file of ``media_dir``;
        ``add_rule("fail", pending_polls=2, processing_polls=3)``: its runs are timed by polls."""
        effect = {"scenario": scenario, "code": code, "message": message, "ms": ms, "media": media,
                  "pending_polls": pending_polls, "processing_polls": processing_polls}  # fmt: skip
        body = {
            "match": match,
            "effect": {k: v for k, v in effect.items() if v is not None},
            "times": times,
            "every": every,
            "probability": probability,
        }
        response = self.control.post("/_mock/rules", json={k: v for k, v in body.items() if v})
        if response.status_code != 201:
            raise ValueError(response.json()["error"]["message"])
        rule: dict[str, Any] = response.json()
        return rule

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The journal of this test's key, oldest first."""
        entries: list[dict[str, Any]] = self.control.get("/_mock/requests").json()["requests"]
        return entries

    @property
    def runs(self) -> list[dict[str, Any]]:
        """This test's runs, newest first, with the mock's own facts under ``mock``."""
        runs: list[dict[str, Any]] = self.control.get("/_mock/runs").json()["runs"]
        return runs

    def state(self) -> dict[str, Any]:
        """The whole mock's state (``GET /_mock/state``): runs, accounts, ledgers, rules and
        clock. A test has the mock to itself (reset before it), so this is the test's."""
        response = self.control.unscoped("GET", "/_mock/state")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def load_state(self, document: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole mock's state with ``document`` (``PUT /_mock/state``); its runs
        stay their accounts' (use the keys it declares). ValueError naming what is wrong."""
        response = self.control.unscoped("PUT", "/_mock/state", json=document)
        if response.status_code != 200:
            raise ValueError(response.json()["error"]["message"])
        loaded: dict[str, Any] = response.json()
        return loaded

    def force(self, run_id: str, status: str, error: dict[str, str] | None = None) -> None:
        body: dict[str, Any] = {"status": status}
        if error is not None:
            body["error"] = error
        self.control.post(f"/_mock/runs/{run_id}/state", json=body).raise_for_status()

    def count_requests(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | str | None = None,
        code: str | None = None,
        run: str | None = None,
        since: str | None = None,
    ) -> int:
        """How many of this test's requests match every filter given, counted by the mock
        (``GET /_mock/requests/count``): ``count_requests(method="POST", path="/v1/runs")``,
        ``count_requests(code="RATE_LIMITED")``, ``count_requests(run=run_id)``. ``path`` is
        a prefix; ``status`` a code (429), a class ("4xx"), "errors" or "dropped"."""
        given = {"method": method, "path": path, "status": status, "code": code, "run": run,
                 "since": since}  # fmt: skip
        query = {name: str(value) for name, value in given.items() if value is not None}
        response = self.control.get("/_mock/requests/count", params=query)
        if response.status_code != 200:
            raise ValueError(response.json()["error"]["message"])
        return int(response.json()["count"])

    def assert_requested(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        code: str | None = None,
        run: str | None = None,
        count: int = 1,
    ) -> None:
        """Exactly ``count`` requests like this (``path`` ends the request's path; ``code``
        is the error code answered, ``run`` a run id); on failure, lists what was received."""
        made = self.requests
        found = [
            r
            for r in made
            if r["method"] == method.upper()
            and r["path"].endswith(path)
            and status in (None, r["status"])
            and code in (None, r["errorCode"])
            and run in (None, r["runId"])
        ]
        if len(found) != count:
            seen = "\n".join(
                f"  {r['method']} {r['path']} -> {r['status']}"
                + (f" {r['errorCode']}" if r["errorCode"] else "")
                for r in made
            )
            wanted = " ".join(
                f"{label}{value}"
                for label, value in (("-> ", status), ("", code), ("run ", run))
                if value
            )
            raise AssertionError(
                f"expected {count} x {method.upper()} {path}"
                + (f" {wanted}" if wanted else "")
                + f", found {len(found)}; received:\n{seen or '  (nothing)'}"
            )

    def behave(self, plan: Plan) -> None:
        """Follow ``plan`` (``mock_runbase.strategies.runbase_behaviours()`` draws them) for
        this test's next requests: this test's account is reset first (runs, journal, rules,
        charges), so each example of a property test starts afresh. A plan the mock refuses
        is a ValueError naming the rule and the problem."""
        self.control.post("/_mock/reset").raise_for_status()
        for number, body in enumerate(plan.rules(), start=1):
            response = self.control.post("/_mock/rules", json=body)
            if response.status_code != 201:
                problem = response.json()["error"]["message"]
                raise ValueError(f"the plan's rule {number} ({body}) was refused: {problem}")
        self.plan = plan

    def client_violations(
        self,
        *,
        min_poll_interval: float = 1.0,
        max_polls: int = 30,
        off: Iterable[str] = (),
        advice: bool = True,
    ) -> list[ClientViolation]:
        """What the client did against the rules of ``client_checks.verdicts`` in this test's
        journal (see ``assert_client_conformed``)."""
        conduct = Conduct(min_poll_interval, max_polls, frozenset(off), advice)
        return judge_client(self.requests, conduct, load_spec(), self.plan)

    def assert_client_conformed(
        self,
        *,
        min_poll_interval: float = 1.0,
        max_polls: int = 30,
        off: Iterable[str] = (),
        advice: bool = True,
    ) -> None:
        """Fail, listing each violation with its exchange, if the client sent a request the
        spec rejects, asked again before a 429's Retry-After, retried a 400-404, polled a
        finished run, polled a run more often than every ``min_poll_interval`` seconds (0:
        any), polled one more than ``max_polls`` times, left a run it created unpolled, or
        stopped on a transient failure. ``off`` names rules to leave out; ``advice=False``
        leaves out the rules that are advice, not documented fact."""
        found = self.client_violations(
            min_poll_interval=min_poll_interval, max_polls=max_polls, off=off, advice=advice
        )
        if not found:
            return
        lines = [f"the client broke {len(found)} rule(s):"]
        lines += [f"  {violation.text()}" for violation in found]
        if self.plan is not None:
            lines += ["the plan the mock followed:", self.plan.text()]
        lines += ["what the client sent:"] + [f"  {exchange_line(e)}" for e in self.requests]
        raise AssertionError("\n".join(lines))

    def close(self) -> None:
        """Nothing to release: the HTTP client belongs to the server."""


@contextmanager
def serve(**settings: Any) -> Iterator[RunbaseMock]:
    """A mock on a free loopback port for the duration of a ``with`` block."""
    fresh_options = {
        k: settings.pop(k) for k in ("timing", "rate_limit", "balance_usd", "seed") if k in settings
    }
    server = MockServer(replace(TEST_DEFAULTS, **settings)).start()
    mock = server.fresh(**fresh_options)
    try:
        yield mock
    finally:
        mock.close()
        server.stop()
