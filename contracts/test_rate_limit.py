"""Rate limits: a rate-limited answer is 429 ``RATE_LIMITED`` (upper case), forced through the
mock's control API where it answers; and a key's own limit engages where the docs put it.

A server that limits elsewhere, or never, fails the second, unless it is declared to have no
rate limiter (``--no-rate-limit``): then a missing 429 skips the contract, saying what was seen
(a declaration excuses nothing else)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.ratelimit import DOCUMENTED

from . import expect
from .facts import facts
from .options import options
from .registry import contract, violation
from .strategies import valid_bodies
from .target import Control, Exchange, Target

RETRY_AFTER = facts().document["components"]["headers"]["RetryAfter"]["schema"]
PROBE = "run_contractsProbe0"


def rate_limited(exchange: Exchange, endpoint: str) -> None:
    operation = facts().create if endpoint == "create" else facts().get
    expect.error(exchange, operation, "RATE_LIMITED")
    value = exchange.headers.get("retry-after")
    if value is not None and not (value.isdigit() and int(value) >= RETRY_AFTER["minimum"]):
        raise violation(
            "Retry-After is not whole seconds",
            received=f"Retry-After: {value}",
            documented=f"an integer >= {RETRY_AFTER['minimum']} (inferred)",
            curl=exchange.curl(),
        )


@contract(
    "rate_limited_is_upper_case_429",
    rule="a rate-limited create or poll is 429 with code RATE_LIMITED (upper case) and a "
    "message; Retry-After, when sent, is whole seconds",
    needs_control=True,
    examples=4,
)
@given(endpoint=st.sampled_from(["create", "get"]), body=valid_bodies(references=False))
def test_rate_limited_is_upper_case_429(
    target: Target, control: Control, endpoint: str, body: Any
) -> None:
    key = target.keys.key()
    control.add_rule(key, "rate-limit", endpoint=endpoint)
    if endpoint == "create":
        exchange = target.create(body, key, retry_rate_limited=False)
    else:
        exchange = target.get_run(PROBE, key, retry_rate_limited=False)
    rate_limited(exchange, endpoint)


LIMIT = DOCUMENTED.requests
WINDOW = DOCUMENTED.window_ms / 1000
PROBED = 5 * LIMIT + 1  # how far a burst goes to tell how high a wrong limit is
DOCUMENTED_LIMIT = f"{LIMIT} requests per {WINDOW:g} s per key"


@contract(
    "rate_limit_is_per_key_as_documented",
    rule=f"{DOCUMENTED_LIMIT}: request {LIMIT + 1} within the window is 429 RATE_LIMITED, and "
    f"the key is served again once {WINDOW:g} s have passed (skipped only for a server "
    "declared without a rate limiter: --no-rate-limit)",
    settings=False,
)
def test_rate_limit_is_per_key_as_documented(target: Target) -> None:
    key = target.keys.key()
    sent = Burst(target, key).until(LIMIT + 1)
    if sent.limited and len(sent) <= LIMIT and target.keys.fixed:
        target.pause(WINDOW)  # the suite's own earlier requests with this key counted: again
        sent = Burst(target, key).until(LIMIT + 1)
    if not sent.limited:
        unlimited(sent)
        return
    rate_limited(sent.last, "get")
    if len(sent) - 1 != LIMIT:
        target.pause(WINDOW)  # leave the key's window empty for what comes next
        raise violation(
            f"the rate limit engaged after {len(sent) - 1} requests",
            received=f"429 on request {len(sent)} of one key ({sent.seen()})",
            documented=f"{DOCUMENTED_LIMIT}: request {LIMIT + 1} is the first 429",
            curl=sent.last.curl(),
        )
    target.pause(WINDOW)  # the window has emptied: the key is served again
    after = target.get_run(PROBE, key, retry_rate_limited=False)
    if after.status == 429:
        raise violation(
            f"still rate limited {WINDOW:g} s after the limit engaged",
            received=f"{after.shown()} ({WINDOW:g} s after request {len(sent)} was limited)",
            documented=f"{DOCUMENTED_LIMIT}: once {WINDOW:g} s have passed the key is served",
            curl=after.curl(),
        )


def unlimited(sent: Burst) -> None:
    """No 429 where the docs put one: skipped where declared or inconclusive, else a failure
    that says how far the server went without limiting."""
    if sent.elapsed >= WINDOW:
        pytest.skip(
            f"inconclusive: {sent.seen()} answered without a 429, but that is longer than the "
            f"{WINDOW:g} s window (a slow server or network): the limit was not tested"
        )
    if options().no_rate_limit:
        pytest.skip(
            f"declared without a rate limiter (--no-rate-limit); {sent.seen()} answered "
            "without a 429"
        )
    first = len(sent)
    sent.until(PROBED)
    found = (
        f"the first 429 came on request {len(sent)} ({sent.seen()})"
        if sent.limited
        else f"no 429 at all ({sent.seen()})"
    )
    sent.target.pause(WINDOW)  # leave the key's window empty for what comes next
    raise violation(
        f"no 429 after {first} requests of one key within {WINDOW:g} s",
        received=f"request {first} answered {sent.exchanges[first - 1].status}; {found}",
        documented=f"{DOCUMENTED_LIMIT}: request {LIMIT + 1} within the window is 429 "
        "RATE_LIMITED (a server without a rate limiter must be declared: --no-rate-limit)",
        curl=sent.exchanges[first - 1].curl(),
    )


class Burst:
    """Polls of one key sent back to back (no time passing on a virtual clock), timed from
    the first request sent to the last answer received."""

    def __init__(self, target: Target, key: str) -> None:
        self.target, self.key = target, key
        self.exchanges: list[Exchange] = []
        self.started = 0.0
        self.elapsed = 0.0

    def until(self, count: int) -> Burst:
        """More polls, until a 429 or ``count`` in all."""
        if not self.exchanges:
            self.started = time.monotonic()
        while len(self.exchanges) < count and not self.limited:
            self.exchanges.append(self.target.get_run(PROBE, self.key, retry_rate_limited=False))
        self.elapsed = time.monotonic() - self.started
        return self

    def __len__(self) -> int:
        return len(self.exchanges)

    @property
    def last(self) -> Exchange:
        return self.exchanges[-1]

    @property
    def limited(self) -> bool:
        return bool(self.exchanges) and self.last.status == 429

    def seen(self) -> str:
        return f"{len(self)} requests of one key in {self.elapsed:.2f} s"
