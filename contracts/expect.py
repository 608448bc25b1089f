"""Checks the properties share. Each one raises a ``ContractViolation`` that shows the rule,
what was received next to what is documented, and a curl command for the exchange."""

from __future__ import annotations

import struct
from typing import Any

from .facts import Operation, Price, facts
from .registry import violation
from .target import NOT_JSON, Exchange, Target

__all__ = [
    "conforms",
    "created",
    "error",
    "error_shape",
    "finished",
    "png_size",
    "run_body",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def conforms(exchange: Exchange, operation: Operation) -> None:
    """A documented status, and a body that matches the spec's schema for it."""
    if exchange.status not in operation.statuses:
        raise violation(
            f"{operation.method.upper()} {operation.path} answered an undocumented status",
            received=exchange.shown(),
            documented=f"one of {sorted(operation.statuses)}",
            curl=exchange.curl(),
        )
    if exchange.status in operation.validators:
        problems = facts().validate(operation, exchange.status, exchange.data)
        if exchange.data is NOT_JSON:
            problems = ["the body is not JSON"]
        if problems:
            raise violation(
                f"{exchange.status} body of {operation.id} does not match the spec",
                received=exchange.shown() + "\n              " + "; ".join(problems[:3]),
                documented=f"the {exchange.status} response schema of {operation.id}",
                curl=exchange.curl(),
            )


def error_shape(exchange: Exchange) -> None:
    """``{"error": {"message": <non-empty>, "code": <non-empty>}}``."""
    data = exchange.data
    inner = data.get("error") if isinstance(data, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    if not (isinstance(message, str) and message and isinstance(code, str) and code):
        raise violation(
            "error body without a non-empty message and code",
            received=exchange.shown(),
            documented='{"error": {"message": "<non-empty>", "code": "<non-empty>"}}',
            curl=exchange.curl(),
        )


def error(exchange: Exchange, operation: Operation, code: str) -> None:
    """Exactly the documented status and code, in the documented body."""
    status = operation.codes[code]
    if exchange.status != status or exchange.code != code:
        raise violation(
            f"expected {status} {code}",
            received=exchange.shown(),
            documented=f'{status} {{"error": {{"message": "...", "code": "{code}"}}}}',
            curl=exchange.curl(),
        )
    error_shape(exchange)
    conforms(exchange, operation)


def run_body(exchange: Exchange, operation: Operation) -> dict[str, Any]:
    """A 2xx run body that conforms to the spec."""
    success = operation.success_statuses()
    if exchange.status not in success:
        raise violation(
            f"{operation.id} was not answered with a run",
            received=exchange.shown(),
            documented=f"{' or '.join(map(str, sorted(success)))} with the run",
            curl=exchange.curl(),
        )
    conforms(exchange, operation)
    body: dict[str, Any] = exchange.data
    return body


def created(exchange: Exchange, price: Price) -> dict[str, Any]:
    """A run created at once: ``pending``, the catalog's ``costUsd``, the model asked for."""
    run = run_body(exchange, facts().create)
    assert price.model is not None
    expected = {"status": "pending", "costUsd": price.micro_usd, "model": price.model.id}
    got = {k: run.get(k) for k in expected}
    if got != expected:
        raise violation(
            "created run differs from the catalog",
            received=str(got),
            documented=f"{expected} (input with defaults: {price.full_input})",
            curl=exchange.curl(),
        )
    return run


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None if the bytes are not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def finished(target: Target, run: dict[str, Any], key: str, steps: list[float]) -> list[Exchange]:
    """The polls of a run up to its terminal state; a run that never ends is a violation."""
    polls = target.poll(run["id"], key, steps)
    last = run_body(polls[-1], facts().get)
    if last["status"] not in ("succeeded", "failed"):
        raise violation(
            f"run did not finish within {target.run_timeout:g} s",
            received=polls[-1].shown(),
            documented="image runs finish within seconds (succeeded or failed)",
            curl=polls[-1].curl(),
        )
    return polls
