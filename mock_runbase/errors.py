"""The one error type of the mock and the body every error is rendered with.

    RunbaseError          a request the API rejects: HTTP status, Runbase code, message
    └── (no subclasses)   the code says what happened; the spec declares every (status, code)
    ConnectionDropped     a fault: close the connection without any answer

Route handlers and domain code raise ``RunbaseError``; one exception handler in ``app``
renders it as ``{"error": {"message": ..., "code": ...}}``. Nothing else builds error JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ConnectionDropped", "RunbaseError", "error_body"]


class RunbaseError(Exception):
    """A documented (or, for the mock's own surface, declared) error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class ConnectionDropped(BaseException):
    """Raised to close the client's connection without an answer (the ``drop`` fault).

    A ``BaseException`` so that no error handler turns it into a 500 on the way out.
    """


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "code": code}}
