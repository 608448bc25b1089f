"""The one ``Target`` of a run, built from the suite's options, and its hypothesis settings.

(nothing)            the in-process mock: create_app() on a virtual clock, no network
--app MODULE:ATTR    another ASGI app in process (an app, or a function that returns one)
--base-url URL       any live server (RUNBASE_BASE_URL)
--live               the real API (RUNBASE_API_KEY required), under --max-spend-usd
"""

from __future__ import annotations

import importlib
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from .facts import facts
from .options import Options, choose, options
from .registry import Contract
from .spend import MICRO, Ledger
from .target import Keys, Target

__all__ = [
    "PROFILES",
    "build_target",
    "close_target",
    "current_target",
    "settings_for",
    "use_options",
]

PROFILES = {"quick": 0.2, "default": 1.0, "thorough": 5.0}
LIVE_EXAMPLES = {"free": 10, "paid": 2}
IN_PROCESS_ORIGIN = "http://mock.test"
IN_PROCESS_CURL = (
    "in process; to reproduce, run `mock-runbase serve --clock virtual --timing fast` and send"
)


_TARGET: list[Target] = []


def use_options(chosen: Options) -> None:
    """Run with ``chosen``: the target of earlier options, if built, is closed."""
    choose(chosen)
    close_target()


def current_target() -> Target:
    """The run's one target, built on first use (schemathesis needs its app at import)."""
    if not _TARGET:
        _TARGET.append(build_target(options()))
    return _TARGET[0]


def built_target() -> Target | None:
    return _TARGET[0] if _TARGET else None


def close_target() -> None:
    while _TARGET:
        _TARGET.pop().close()


def settings_for(contract: Contract) -> hypothesis_settings:
    """The hypothesis settings of one contract under the chosen profile."""
    chosen = options()
    examples = max(1, round(contract.examples * PROFILES[chosen.profile]))
    phases = list(Phase) if chosen.profile != "quick" else [p for p in Phase if p != Phase.explain]
    if chosen.live:
        examples = min(examples, LIVE_EXAMPLES["paid" if contract.creates_runs else "free"])
        if contract.creates_runs:  # shrinking a paid failure would create more paid runs
            phases = [Phase.explicit, Phase.reuse, Phase.generate]
    return hypothesis_settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=chosen.ci or chosen.live,
        print_blob=chosen.ci,
        phases=phases,
    )


def build_target(chosen: Options) -> Target:
    ledger = Ledger(cap=round(chosen.max_spend_usd * MICRO) if chosen.live else None)
    keys = Keys(chosen.api_key, chosen.other_api_key) if chosen.api_key else Keys()
    common: dict[str, Any] = {
        "keys": keys,
        "ledger": ledger,
        "admin_token": chosen.admin_token,
        "run_timeout": chosen.run_timeout,
    }
    if chosen.live or chosen.base_url:
        base = chosen.base_url or facts().real_bases[0]
        kind = f"LIVE (spend cap ${chosen.max_spend_usd:.2f})" if chosen.live else "live server"
        return Target(
            description=f"{kind} {base}",
            api_base=base,
            http=httpx.Client(timeout=30, follow_redirects=False),
            live=chosen.live,
            **common,
        )
    from starlette.testclient import TestClient

    app, description = in_process_app(chosen.app)
    client = TestClient(app, base_url=IN_PROCESS_ORIGIN, raise_server_exceptions=False)
    return Target(
        description=description,
        api_base=IN_PROCESS_ORIGIN + facts().api_prefixes[-1],
        http=client,
        app=app,
        curl_base="http://localhost:8080",
        curl_note=IN_PROCESS_CURL,
        **common,
    )


def in_process_app(spec: str | None) -> tuple[Any, str]:
    if spec is None:
        from mock_runbase.app import create_app
        from mock_runbase.settings import MockSettings

        # The documented rate limit: the suite judges the mock's limiter like any server's.
        settings = MockSettings(clock="virtual", timing="fast", balance_usd=1000 * MICRO)
        return create_app(settings), "in-process mock (create_app, virtual clock, fast timing)"
    module_name, _, attribute = spec.partition(":")
    found: Any = getattr(importlib.import_module(module_name), attribute or "app")
    app = found() if is_factory(found) else found
    return app, f"in-process app {spec}"


def is_factory(candidate: Any) -> bool:
    """A plain function of no arguments (an ASGI app takes three)."""
    code = getattr(candidate, "__code__", None)
    return code is not None and code.co_argcount == 0
