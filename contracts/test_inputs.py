"""Inputs: what the spec accepts is created at its catalog price; each broken rule gets the
documented code; an id no one created is ``run_not_found``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import expect
from .breakers import BREAKERS, Breaker
from .facts import facts
from .options import options
from .registry import contract
from .strategies import run_ids, valid_bodies, with_every_combination
from .target import Target

LIVE = options().live


@contract(
    "valid_input_is_accepted_pending_at_catalog_price",
    rule="a create whose input the spec accepts is answered at once with a run: "
    "status pending, the catalog's costUsd (every model's every combination of options, "
    "then random inputs of any model)",
    creates_runs=True,
    examples=40,
)
@with_every_combination
@given(body=valid_bodies(cheapest=LIVE, references=not LIVE))
def test_valid_input_is_accepted_pending_at_catalog_price(
    target: Target, body: dict[str, Any]
) -> None:
    expect.created(target.create(body, target.keys.key()), facts().price(body))


@contract(
    "invalid_input_gets_its_documented_code",
    rule="a request breaking one documented rule gets exactly that rule's status and code",
    examples=8,
)
@pytest.mark.parametrize("breaker", BREAKERS(), ids=lambda b: b.name)
@given(data=st.data())
def test_invalid_input_gets_its_documented_code(
    target: Target, breaker: Breaker, data: st.DataObject
) -> None:
    request = data.draw(breaker.strategy(), label=f"request breaking {breaker.rule!r}")
    operation = facts().create if breaker.endpoint == "create" else facts().get
    expect.error(target.request(breaker.endpoint, request), operation, breaker.code)


@contract(
    "unknown_run_is_run_not_found",
    rule="GET /runs/{id} of an id the account never created is 404 run_not_found",
    examples=25,
)
@given(run_id=run_ids())
def test_unknown_run_is_run_not_found(target: Target, run_id: str) -> None:
    expect.error(target.get_run(run_id, target.keys.key()), facts().get, "run_not_found")
