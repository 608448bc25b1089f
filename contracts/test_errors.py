"""Any request to a documented operation gets a documented status, and every error answer has
the documented body with a non-empty message and code."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, reject

from . import expect
from .breakers import Request, any_request
from .facts import facts
from .registry import contract
from .target import Target


def would_create(request: Request) -> bool:
    body: Any = request.body
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return request.with_key and facts().accepted(body) is not None


@contract(
    "error_bodies_have_message_and_code",
    rule='every error answer is a documented status with {"error": {"message", "code"}}, '
    "both non-empty",
    examples=60,
)
@given(case=any_request())
def test_error_bodies_have_message_and_code(target: Target, case: tuple[str, Request]) -> None:
    endpoint, request = case
    if target.live and endpoint == "create" and would_create(request):
        reject()  # a paid run; this contract is about errors, which are free
    exchange = target.request(endpoint, request, retry_rate_limited=False)
    expect.conforms(exchange, facts().create if endpoint == "create" else facts().get)
    if exchange.status >= 400:
        expect.error_shape(exchange)
