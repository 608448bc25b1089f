"""Documented behaviour only the mock's control API (``/_mock``) can set up or observe: money,
refunds, quotas, spend limits, disabled keys, rate limits and forced failures.

Each contract here asks for the ``control`` fixture, so it is skipped, with the reason, on a
server where ``/_mock`` does not answer (the real API, a gateway). The documented part is
still judged over HTTP; ``/_mock`` only arranges the situation and reads the balance.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from . import expect
from .breakers import BREAKERS, MISSING_API_KEY, Breaker
from .facts import facts
from .registry import contract, violation
from .spend import MICRO
from .strategies import valid_bodies
from .target import Control, Exchange, Target

BODIES = valid_bodies(references=False)
REJECTED = [b for b in BREAKERS() if b.endpoint == "create" and b.code != MISSING_API_KEY]
CENTS = MICRO // 100
RETRY_AFTER = facts().document["components"]["headers"]["RetryAfter"]["schema"]


def unchanged(before: Any, after: Any, what: str, exchange: Exchange) -> None:
    if before != after:
        raise violation(
            f"{what} changed the account",
            received=f"(balance, spend, runs) {before} -> {after}",
            documented=f"{what} changes nothing",
            curl=exchange.curl(),
        )


@contract(
    "rejected_request_changes_nothing",
    rule="a rejected create changes no balance, spend or run count (each rule of the envelope "
    "and of every model's input broken in turn)",
    needs_control=True,
    examples=3,
)
@pytest.mark.parametrize("breaker", REJECTED, ids=lambda b: b.name)
@given(data=st.data())
def test_rejected_request_changes_nothing(
    target: Target, control: Control, breaker: Breaker, data: st.DataObject
) -> None:
    key = target.keys.key()
    request = data.draw(breaker.strategy(), label=f"request breaking {breaker.rule!r}")
    before = control.money(key)
    exchange = target.create(request.body, key, headers=request.headers)
    expect.error(exchange, facts().create, breaker.code)
    unchanged(before, control.money(key), f"a rejected create ({breaker.name})", exchange)


@contract(
    "cost_is_charged_at_creation",
    rule="a create deducts its costUsd from the prepaid balance at once",
    needs_control=True,
    creates_runs=True,
    examples=10,
)
@given(body=BODIES)
def test_cost_is_charged_at_creation(target: Target, control: Control, body: Any) -> None:
    key = target.keys.key()
    balance, spent, runs = control.money(key)
    cost = facts().price(body).micro_usd
    exchange = target.create(body, key)
    expect.created(exchange, facts().price(body))
    after = control.money(key)
    if after != (balance - cost, spent + cost, runs + 1):
        raise violation(
            "the balance did not drop by the run's cost",
            received=f"(balance, spend, runs) {(balance, spent, runs)} -> {after}",
            documented=f"balance - {cost}, spend + {cost}, runs + 1",
            curl=exchange.curl(),
        )


@contract(
    "failed_run_is_refunded_in_full",
    rule="a run that fails says why in error.message and is refunded in full",
    needs_control=True,
    creates_runs=True,
    examples=6,
)
@given(body=BODIES)
def test_failed_run_is_refunded_in_full(target: Target, control: Control, body: Any) -> None:
    key = target.keys.key()
    balance, spent, runs = control.money(key)
    control.add_rule(key, "fail", endpoint="create")
    run = expect.created(target.create(body, key), facts().price(body))
    last = expect.finished(target, run, key, [])[-1]
    if last.data["status"] != "failed":
        raise violation(
            "a run forced to fail did not fail",
            received=last.shown(),
            documented="status failed",
            curl=last.curl(),
        )
    after = control.money(key)
    if after != (balance, spent, runs + 1):
        raise violation(
            "a failed run was not refunded in full",
            received=f"(balance, spend, runs) {(balance, spent, runs)} -> {after}",
            documented=f"balance {balance} and spend {spent} again (refunded in full)",
            curl=last.curl(),
        )


@contract(
    "insufficient_balance_is_402",
    rule="a create costing more than the balance is 402 insufficient_balance and creates "
    "nothing; a balance of exactly the cost is enough",
    needs_control=True,
    creates_runs=True,
    examples=8,
)
@given(body=BODIES, data=st.data())
def test_insufficient_balance_is_402(
    target: Target, control: Control, body: Any, data: st.DataObject
) -> None:
    key = target.keys.key()
    cost = facts().price(body).micro_usd
    control.set_balance(key, cost - data.draw(st.integers(1, cost), label="short by"))
    before = control.money(key)
    exchange = target.create(body, key)
    expect.error(exchange, facts().create, "insufficient_balance")
    unchanged(before, control.money(key), "a create refused for its balance", exchange)
    control.set_balance(key, cost)
    expect.created(target.create(body, key), facts().price(body))


@contract(
    "usage_quota_exhausted_is_USAGE_EXCEEDED",
    rule="once a key's usage quota is used up, a create is 429 USAGE_EXCEEDED (upper case) "
    "and changes nothing",
    needs_control=True,
    creates_runs=True,
    examples=3,
)
@given(body=BODIES)
def test_usage_quota_exhausted_is_usage_exceeded(
    target: Target, control: Control, body: Any
) -> None:
    key = target.keys.key()
    control.set_key(key, usageQuota=1)
    expect.created(target.create(body, key), facts().price(body))
    before = control.money(key)
    exchange = target.create(body, key, retry_rate_limited=False)
    expect.error(exchange, facts().create, "USAGE_EXCEEDED")
    unchanged(before, control.money(key), "a create over the quota", exchange)


@contract(
    "spend_limit_reached_is_403",
    rule="once a key's lifetime spend reaches its limit (in cents), a create is 403 "
    "api_key_spend_limit_exceeded",
    needs_control=True,
    creates_runs=True,
    examples=3,
)
@given(body=BODIES)
def test_spend_limit_reached_is_403(target: Target, control: Control, body: Any) -> None:
    key = target.keys.key()
    price = facts().price(body)
    if price.micro_usd == 0:
        reject()  # a free run never reaches a limit
    limit = max(1, price.micro_usd // CENTS)  # whole cents: one run (of a cent or more) reaches it
    control.set_key(key, spendLimitCents=limit)
    for _ in range(math.ceil(limit * CENTS / price.micro_usd)):
        expect.created(target.create(body, key), price)
    exchange = target.create(body, key)
    expect.error(exchange, facts().create, "api_key_spend_limit_exceeded")


@contract(
    "disabled_key_is_invalid_api_key",
    rule="a disabled key is 401 invalid_api_key on every request",
    needs_control=True,
    examples=3,
)
@given(body=BODIES)
def test_disabled_key_is_invalid_api_key(target: Target, control: Control, body: Any) -> None:
    key = target.keys.key()
    control.set_key(key, disabled=True)
    expect.error(target.create(body, key), facts().create, "invalid_api_key")
    expect.error(target.get_run("run_contractsProbe0", key), facts().get, "invalid_api_key")
