"""mock-runbase: a faithful local mock of the Runbase runs API."""

from __future__ import annotations

from mock_runbase.errors import RunbaseError

__all__ = ["RunbaseError"]
