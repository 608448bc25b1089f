"""The one seam between the properties and a server: HTTP, the same way for every target.

A ``Target`` is an ``httpx.Client`` plus what the suite learns by asking over HTTP: whether
``/_mock`` answers (and whether its clock is virtual), which keys to use, and the spend
ledger every create goes through. In process, the client is Starlette's ``TestClient`` around
an ASGI app; otherwise a plain client to a base URL. Properties never see the difference.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from . import registry
from .facts import Price, facts
from .spend import Ledger, SpendCapReached

if TYPE_CHECKING:
    from .breakers import Request

__all__ = ["NOT_JSON", "Control", "Exchange", "Keys", "Target", "spend_line"]

NOT_JSON: Any = object()
RATE_LIMITED = "RATE_LIMITED"
TERMINAL = ("succeeded", "failed")
MAX_SHOWN = 400
MAX_CURL_BODY = 10_000
RETRIES = 6


@dataclass
class Exchange:
    """One request and its response, as sent and received."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    headers: httpx.Headers
    body: bytes
    render: Callable[[Exchange], str] = field(repr=False)

    @cached_property
    def data(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return NOT_JSON

    @property
    def code(self) -> str | None:
        data = self.data
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            return code if isinstance(code, str) else None
        return None

    def shown(self) -> str:
        text = self.body.decode("utf-8", "replace")
        if len(text) > MAX_SHOWN:
            text = text[:MAX_SHOWN] + f"... ({len(self.body)} bytes)"
        return f"{self.status} {text}"

    def curl(self) -> str:
        return self.render(self)


class Keys:
    """API keys: the ones given (``--api-key``), or a fresh ``sk-contract-...`` on each call.

    A fresh key is an account of its own on the mock, so examples never share money or runs.
    """

    def __init__(self, fixed: str | None = None, other: str | None = None) -> None:
        self.fixed = fixed
        self.other_fixed = other

    def key(self) -> str:
        return self.fixed or f"sk-contract-{secrets.token_hex(8)}"

    def other(self) -> str | None:
        """A key of another account: the given one, or fresh unless a fixed key is in use."""
        if self.fixed:
            return self.other_fixed
        return self.key()

    @property
    def secret(self) -> list[str]:
        return [k for k in (self.fixed, self.other_fixed) if k]


class Control:
    """The mock's own control API under ``/_mock``, when the server has one."""

    def __init__(self, target: Target, virtual: bool) -> None:
        self.target = target
        self.virtual = virtual

    def __repr__(self) -> str:
        return f"Control({self.target.origin}/_mock, virtual clock: {self.virtual})"

    def call(
        self, method: str, path: str, *, key: str | None = None, body: Any = None
    ) -> dict[str, Any]:
        headers = dict(self.target.admin_headers)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.target.origin}/_mock{path}"
        content = json.dumps(body).encode() if body is not None else b""
        if content:
            headers["Content-Type"] = "application/json"
        if key and method != "GET":  # what set the scene, shown before a failure's curl
            self.target.setup.setdefault(key, []).append(
                self.target.command(method, url, headers, content)
            )
        response = self.target.http.request(method, url, headers=headers, content=content or None)
        if response.status_code >= 300:
            raise RuntimeError(f"control call {method} /_mock{path}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def advance(self, seconds: float) -> None:
        self.call("POST", "/clock/advance", body={"seconds": seconds})

    def account(self, key: str) -> dict[str, Any]:
        return self.call("GET", "/account", key=key)

    def money(self, key: str) -> tuple[int, int, int]:
        """(balance, net spend, runs) of the key's account, micro-USD."""
        view = self.account(key)
        return view["balanceUsd"], view["spentUsd"], view["runs"]

    def set_balance(self, key: str, micro: int) -> None:
        name = self.account(key)["account"]
        self.call("PUT", f"/accounts/{quote(name)}", key=key, body={"balanceUsd": micro})

    def set_key(self, key: str, **settings: Any) -> None:
        """Declare ``key`` in its own account with these settings (``usageQuota=1``, ...)."""
        name = self.account(key)["account"]
        body = {"keys": [{"key": key, **settings}]}
        self.call("PUT", f"/accounts/{quote(name)}", key=key, body=body)

    def add_rule(self, key: str, scenario: str, endpoint: str = "any", times: int = 1) -> None:
        rule = {"match": {"endpoint": endpoint}, "effect": {"scenario": scenario}, "times": times}
        self.call("POST", "/rules", key=key, body=rule)


class Target:
    def __init__(
        self,
        *,
        description: str,
        api_base: str,
        http: httpx.Client,
        keys: Keys,
        ledger: Ledger,
        live: bool = False,
        app: Any = None,
        curl_base: str | None = None,
        curl_note: str | None = None,
        admin_token: str | None = None,
        run_timeout: float = 120.0,
    ) -> None:
        self.description = description
        self.api_base = api_base.rstrip("/")
        self.http = http
        self.keys = keys
        self.ledger = ledger
        self.live = live
        self.app = app
        self.origin = origin_of(self.api_base)
        self.curl_base = (curl_base or self.origin).rstrip("/")
        self.curl_note = curl_note
        self.admin_headers = {"X-Mock-Admin-Token": admin_token} if admin_token else {}
        self.run_timeout = run_timeout
        self.control_reason = ""
        self.setup: dict[str, list[str]] = {}  # key -> curl commands of its control calls

    def __repr__(self) -> str:
        return f"Target({self.description!r})"

    def close(self) -> None:
        self.http.close()

    # --- what the server offers -------------------------------------------------------------

    @cached_property
    def control(self) -> Control | None:
        """The control API if ``GET /_mock/clock`` answers like the mock's, else None."""
        url = f"{self.origin}/_mock/clock"
        try:
            response = self.http.get(url, headers=self.admin_headers)
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as error:
            self.control_reason = f"GET {url} failed: {error}"
            return None
        if not isinstance(body, dict) or not isinstance(body.get("virtual"), bool):
            self.control_reason = f"GET {url} answered {response.status_code}, not the mock's clock"
            return None
        return Control(self, body["virtual"])

    # --- requests ---------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        retry_rate_limited: bool = True,
    ) -> Exchange:
        """One API request (``path`` under the base URL); 429 RATE_LIMITED is waited out."""
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        content = None
        if body is not None:
            sent["Content-Type"] = "application/json"
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.update(headers or {})
        url = path if path.startswith(("http://", "https://")) else self.api_base + path
        for attempt in range(RETRIES + 1):
            exchange = self.exchange(method, url, sent, content or b"")
            if not (retry_rate_limited and exchange.status == 429 and attempt < RETRIES):
                return exchange
            if exchange.code != RATE_LIMITED:
                return exchange
            self.pause(retry_after(exchange, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def exchange(self, method: str, url: str, headers: dict[str, str], content: bytes) -> Exchange:
        response = self.http.request(method, url, headers=headers, content=content or None)
        return Exchange(
            method, url, headers, content, response.status_code, response.headers,
            response.content, self.render_curl,
        )  # fmt: skip

    def create(
        self,
        body: Any,
        key: str | None,
        *,
        headers: dict[str, str] | None = None,
        retry_rate_limited: bool = True,
    ) -> Exchange:
        """``POST /runs`` through the spend ledger: priced first, refused if past the cap (a
        create without one of our keys is free: no account of ours can be charged for it)."""
        billed = key is not None or any(
            k in v for k in self.keys.secret for v in (headers or {}).values()
        )
        for attempt in range(RETRIES + 1):
            held, price = self.hold(body, billed)
            try:
                exchange = self.send(
                    "POST", "/runs", key=key, body=body, headers=headers, retry_rate_limited=False
                )
            except BaseException:
                self.ledger.settle(held, price.micro_usd)  # it may have been created: count it
                raise
            self.settle(held, price, exchange.status, exchange.data)
            limited = exchange.status == 429 and exchange.code == RATE_LIMITED
            if not (retry_rate_limited and limited and attempt < RETRIES):
                return exchange
            self.pause(retry_after(exchange, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def hold(self, body: Any, billed: bool = True) -> tuple[int, Price]:
        """Reserve what a create of ``body`` may cost, or skip the contract at the cap."""
        parsed = body
        if isinstance(body, bytes):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        price = facts().price(parsed)
        if not billed:
            amount = 0
        elif self.ledger.surprised:  # this server charges what the catalog does not say
            amount = facts().most_expensive()
        else:
            amount = price.micro_usd if price.accepted else 0
        try:
            held = self.ledger.reserve(amount, describe_create(parsed))
        except SpendCapReached as refused:
            earlier = registry.raised()
            if earlier is not None:  # a replay of a failure was refused: the failure stands
                raise earlier from None
            pytest.skip(f"spend cap: {refused}")
        return held, price

    def settle(self, held: int, price: Price, status: int, data: Any) -> None:
        """Count the run a create answered with (its catalog price, or what it reports)."""
        charged = None
        if 200 <= status < 300:
            reported = data.get("costUsd") if isinstance(data, dict) else None
            floor = price.micro_usd  # the catalog price, or the worst case if not accepted
            charged = max(floor, reported) if isinstance(reported, int) else floor
            self.ledger.surprised |= not price.accepted or charged > max(held, floor)
            registry.count_run()
        self.ledger.settle(held, charged)

    def request(self, endpoint: str, request: Request, **options: Any) -> Exchange:
        """A strategy's request to ``create`` or ``get`` (an id no one was given)."""
        key = self.keys.key() if request.with_key else None
        if endpoint == "create":
            return self.create(request.body, key, headers=request.headers, **options)
        return self.get_run("run_contractsProbe0", key, headers=request.headers, **options)

    def get_run(self, run_id: str, key: str | None, **options: Any) -> Exchange:
        return self.send("GET", f"/runs/{quote(run_id, safe='')}", key=key, **options)

    def fetch(self, url: str) -> Exchange:
        """An output URL, as a browser would fetch it: no key is ever sent with it."""
        return self.exchange("GET", url, {}, b"")

    # --- time ------------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Let time pass: the mock's virtual clock moves, anything else is waited for."""
        control = self.control
        if control is not None and control.virtual:
            control.advance(seconds)
        else:
            time.sleep(seconds)

    def poll(
        self, run_id: str, key: str, steps: Iterable[float] = (), timeout: float | None = None
    ) -> list[Exchange]:
        """Poll until a terminal state, an error, or ``timeout`` (default ``run_timeout``)
        seconds of the target's clock; ``steps`` are the first waits between polls, then they
        grow from 50 ms to 2 s."""
        limit = self.run_timeout if timeout is None else timeout
        polls: list[Exchange] = []
        waited = 0.0
        for wait in waits(steps):
            polls.append(self.get_run(run_id, key))
            data = polls[-1].data
            done = not isinstance(data, dict) or data.get("status") in TERMINAL
            if polls[-1].status != 200 or done or waited >= limit:
                return polls
            self.pause(wait)
            waited += wait
        return polls  # pragma: no cover - waits() is endless

    # --- reproduction ----------------------------------------------------------------------

    def render_curl(self, exchange: Exchange) -> str:
        """The curl command of an exchange, after those of the control calls that set it up."""
        lines = [f"# {self.curl_note}"] if self.curl_note else []
        key = exchange.request_headers.get("Authorization", "").partition(" ")[2]
        lines += self.setup.get(key, [])
        lines.append(
            self.command(
                exchange.method, exchange.url, exchange.request_headers, exchange.request_body
            )
        )
        return "\n".join(lines)

    def command(self, method: str, url: str, headers: dict[str, str], body: bytes) -> str:
        if url.startswith(self.origin):
            url = self.curl_base + url[len(self.origin) :]
        parts = ["curl", "-sS", "-X", method, shlex.quote(url)]
        for name, value in headers.items():
            parts += ["-H", self.quote_header(name, value)]
        if body:
            parts += ["--data-binary", self.quote_body(body)]
        return " ".join(parts)

    def quote_header(self, name: str, value: str) -> str:
        for secret in self.keys.secret:
            if secret in value:
                return '"' + f"{name}: {value}".replace(secret, "$RUNBASE_API_KEY") + '"'
        return shlex.quote(f"{name}: {value}")

    @staticmethod
    def quote_body(body: bytes) -> str:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return f"\"$(printf '%b' {shlex.quote(body.decode('latin-1'))})\""
        if len(text) > MAX_CURL_BODY:
            return f"@body.json  # {len(body)} bytes, starting {text[:120]!r}"
        return shlex.quote(text)


def origin_of(api_base: str) -> str:
    """The server's root: the base URL without its documented API prefix (``/v1``, ...)."""
    parts = urlsplit(api_base)
    path = parts.path.rstrip("/")
    for prefix in facts().api_prefixes:
        if path.endswith(prefix):
            path = path[: -len(prefix)]
            break
    else:
        path = ""
    return f"{parts.scheme}://{parts.netloc}{path}"


def waits(first: Iterable[float]) -> Iterator[float]:
    yield from first
    wait = 0.05
    while True:
        yield wait
        wait = min(2.0, wait * 1.5)


def retry_after(exchange: Exchange, attempt: int) -> float:
    """``Retry-After`` when sent, else exponential back-off (1 s, 2 s, 4 s, ...)."""
    value = exchange.headers.get("retry-after", "")
    return float(value) if value.isdigit() else float(2**attempt)


def describe_create(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("input"), dict):
        fields = ", ".join(
            f"{k}={v}" for k, v in body["input"].items() if k != "prompt" and is_option(v)
        )
        return f"a create of {str(body.get('model'))[:40]} ({fields or 'defaults'})"
    return "a create"


def is_option(value: Any) -> bool:
    """A short scalar (never a list of references: a data: URI may be megabytes)."""
    return isinstance(value, str | int | float) and len(str(value)) <= 20


def spend_line(ledger: Ledger, runs: int) -> str:
    return ledger.summary() if ledger.cap is not None else f"Runs created: {runs}."
