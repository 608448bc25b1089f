"""The suite's options: which server to judge and how, as chosen on the command line.

Set once per run (``session.use_options``, from conftest) and read wherever a choice changes
what runs: the session builds its target from them, strategies and properties skip paid
examples when ``live``. Only the spec's facts sit below this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .facts import facts

__all__ = ["Options", "choose", "options"]


@dataclass(frozen=True)
class Options:
    base_url: str | None = None
    app: str | None = None
    live: bool = False
    api_key: str | None = None
    other_api_key: str | None = None
    max_spend_usd: float = 0.5
    checks: tuple[str, ...] = ()
    profile: str = "default"
    admin_token: str | None = None
    run_timeout: float = 120.0
    no_rate_limit: bool = False  # declared: the server has no rate limiter
    ci: bool = field(default_factory=lambda: bool(os.environ.get("CI")))

    @property
    def problem(self) -> str | None:
        """Why this run cannot go ahead (every contract is skipped with it), or None."""
        if self.live and not self.api_key:
            return "--live needs RUNBASE_API_KEY (the real API's key): nothing was sent"
        host = urlsplit(self.base_url or "").hostname
        if not self.live and host in facts().real_hosts:
            return f"{self.base_url} is the real Runbase API: add --live (spend-capped) to use it"
        return None


_OPTIONS: list[Options] = [Options()]


def choose(chosen: Options) -> None:
    """Make ``chosen`` the run's options (``session.use_options`` also drops the old target)."""
    _OPTIONS[0] = chosen


def options() -> Options:
    return _OPTIONS[0]
