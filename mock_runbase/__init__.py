"""mock-runbase: a faithful local mock of the Runbase runs API.

``create_app(settings)`` builds the ASGI app; ``serve()`` runs one on a loopback port for a
``with`` block; ``VirtualClock`` is the clock tests move by hand.
"""

from __future__ import annotations

from mock_runbase.app import create_app
from mock_runbase.clock import VirtualClock
from mock_runbase.errors import RunbaseError
from mock_runbase.settings import MockSettings
from mock_runbase.testing import RunbaseMock, serve

__all__ = ["MockSettings", "RunbaseError", "RunbaseMock", "VirtualClock", "create_app", "serve"]
