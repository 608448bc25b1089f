"""Rate limits: a rate-limited answer is 429 ``RATE_LIMITED`` (upper case), forced through the
mock's control API where it answers; and a key's own limit engages where the docs put it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.ratelimit import DOCUMENTED

from . import expect
from .facts import facts
from .registry import contract, note, violation
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


@contract(
    "rate_limit_is_per_key_as_documented",
    rule=f"{DOCUMENTED.requests} requests per {DOCUMENTED.window_ms // 1000} s per key: "
    f"request {DOCUMENTED.requests + 1} within the window is 429 RATE_LIMITED",
    settings=False,
)
def test_rate_limit_is_per_key_as_documented(target: Target) -> None:
    window = DOCUMENTED.window_ms / 1000
    sent = burst(target)
    if sent[-1].status == 429 and len(sent) <= DOCUMENTED.requests and target.keys.fixed:
        target.pause(window)  # the suite's own earlier requests with this key counted: again
        sent = burst(target)
    if sent[-1].status != 429:
        note(f"no 429 after {len(sent)} requests: the server's own rate limiter is off")
        return
    target.pause(window)  # leave the key's window empty for what comes next
    rate_limited(sent[-1], "get")
    if len(sent) - 1 != DOCUMENTED.requests:
        raise violation(
            f"the rate limit engaged after {len(sent) - 1} requests",
            received=f"429 on request {len(sent)} of one key",
            documented=f"{DOCUMENTED} per key: request {DOCUMENTED.requests + 1} is the first 429",
            curl=sent[-1].curl(),
        )


def burst(target: Target) -> list[Exchange]:
    """Polls of one key with no time passing, until a 429 or one more than the limit."""
    key = target.keys.key()
    sent = [target.get_run(PROBE, key, retry_rate_limited=False)]
    while len(sent) <= DOCUMENTED.requests and sent[-1].status != 429:
        sent.append(target.get_run(PROBE, key, retry_rate_limited=False))
    return sent
