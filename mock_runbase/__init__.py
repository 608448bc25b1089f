"""mock-runbase: a faithful local mock of the Runbase runs API.

``create_app(settings)`` builds the ASGI app; ``serve()`` runs one on a loopback port for a
``with`` block; ``VirtualClock`` is the clock tests move by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mock_runbase.app import create_app
from mock_runbase.clock import VirtualClock
from mock_runbase.errors import RunbaseError
from mock_runbase.settings import MockSettings

if TYPE_CHECKING:
    from mock_runbase.testing import RunbaseMock, serve

__all__ = ["MockSettings", "RunbaseError", "RunbaseMock", "VirtualClock", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    """``serve`` and ``RunbaseMock`` (and httpx with them) are loaded when first used, not by
    ``mock-runbase serve``'s start."""
    if name in ("RunbaseMock", "serve"):
        from mock_runbase import testing

        return getattr(testing, name)
    raise AttributeError(f"module 'mock_runbase' has no attribute {name!r}")
