"""The one error type of the mock and the body every error is rendered with.

    RunbaseError          a request the API rejects: HTTP status, Runbase code, message
    └── (no subclasses)   the code says what happened; the spec declares every (status, code)

(Faults that break the connection instead of answering are ``wire_faults.BrokenConnection``.)

Route handlers and domain code raise ``RunbaseError``; one exception handler in ``app``
renders it as ``{"error": {"message": ..., "code": ...}}``. Nothing else builds error JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RunbaseError", "error_body"]


class RunbaseError(Exception):
    """A documented (or, for the mock's own surface, declared) error response.

    ``answer_fault``: a connection fault (``wire_faults``) that breaks this answer on its way,
    as a scenario asked (``truncated``, ``malformed-chunk``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        answer_fault: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.answer_fault = answer_fault

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "code": code}}
