"""What ``mock-runbase serve`` prints before it listens: where to reach it, and a summary of
what it loaded (models, accounts and keys, rules, clock, timing, store, state file), so a user
sees at a glance that the mock is set up as intended."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mock_runbase.accounts import MICRO, Directory
from mock_runbase.clock import format_ms
from mock_runbase.own_media import MediaDirectory, kind_of
from mock_runbase.serve_options import ServeOptions
from mock_runbase.settings import MockSettings
from mock_runbase.state_document import LoadedState

__all__ = ["banner", "first_request_example"]

LOOPBACK_OR_ANY = ("0.0.0.0", "::", "127.0.0.1", "localhost")


def banner(
    options: ServeOptions,
    settings: MockSettings,
    *,
    models: list[dict[str, Any]],
    directory: Directory,
    rules: int,
    virtual_start_ms: int | None,
    example: dict[str, Any],
    state: LoadedState | None = None,
) -> list[str]:
    host = "localhost" if options.host in LOOPBACK_OR_ANY else options.host
    base = f"http://{host}:{options.port}"
    return [
        f"mock-runbase on {base}",
        f"  API:        {base}/v1   and   {base}/api/v1",
        f"  docs:       {base}/docs   dashboard: {base}/_mock/ui",
        f"  spec:       {base}/openapi.yaml   health: {base}/healthz",
        f"  models:     {models_line(models)}",
        f"  accounts:   {accounts_line(directory)}",
        f"  rules:      {rules} from --config" if rules else "  rules:      none",
        f"  timing:     {settings.timing}",
        f"  clock:      {clock_line(settings, virtual_start_ms)}",
        f"  rate limit: {rate_limit_line(settings)}",
        f"  store:      {store_line(settings)}",
        *([f"  media:      {media_line(settings.media_dir)}"] if settings.media_dir else []),
        *([f"  state:      {state_line(settings, state)}"] if settings.state else []),
        *(["  /_mock:     needs X-Mock-Admin-Token"] if settings.admin_token else []),
        "  try:",
        f"    curl -s {base}/v1/runs -H 'Authorization: Bearer sk-test' \\",
        "      -H 'Content-Type: application/json' \\",
        f"      -d '{json.dumps(example)}'",
    ]


def models_line(models: list[dict[str, Any]]) -> str:
    """From ``GET /_mock/models``' views: how many of each kind, and what --models changed."""
    kinds = Counter(model["kind"] for model in models)
    by_kind = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    added = [model["id"] for model in models if model["source"] == "user"]
    changed = [model["id"] for model in models if model["overridden"]]
    notes = [f"added by --models: {', '.join(added)}"] * bool(added) + [
        f"changed by --models: {', '.join(changed)}"
    ] * bool(changed)
    return f"{sum(kinds.values())} ({by_kind})" + "".join(f"; {note}" for note in notes)


def usd(micro: int) -> str:
    return f"${micro / MICRO:,.2f}"


def accounts_line(directory: Directory) -> str:
    declared = ", ".join(
        f"{name} {usd(account.starting_balance_usd)}"
        for name, account in sorted(directory.accounts.items())
    )
    keys = len(directory.keys)
    head = f"{len(directory.accounts)} declared ({declared}), {keys} keys" if declared else "none"
    if directory.strict_keys:
        return f"{head}; strict: only the {keys} declared keys work"
    return f"{head}; any other sk- key gets an account of its own with " + usd(
        directory.default_balance_usd
    )


def clock_line(settings: MockSettings, virtual_start_ms: int | None) -> str:
    if virtual_start_ms is None:
        return "real"
    return f"virtual, at {format_ms(virtual_start_ms)}; moves only by POST /_mock/clock/advance"


def rate_limit_line(settings: MockSettings) -> str:
    limit = settings.rate_limit
    if limit is None:
        return "off"
    return f"{limit.requests} requests per {limit.window_ms / 1000:g} s per key"


def store_line(settings: MockSettings) -> str:
    hours = settings.run_ttl_s / 3600
    kept = f"runs kept {hours:g} h" if hours >= 1 else f"runs kept {settings.run_ttl_s:g} s"
    if settings.store == "memory":
        return f"memory (this process); {kept}"
    from mock_runbase.redis_store import redacted_url  # redis-py: loaded for a Redis store only

    return f"{redacted_url(settings.store)}; {kept}"


def media_line(media_dir: Path) -> str:
    names = MediaDirectory(media_dir).names()
    kinds = Counter(kind_of(name) for name in names)
    counted = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "no file"
    return f"{media_dir} ({counted} for rules' effect.media)"


def state_line(settings: MockSettings, state: LoadedState | None) -> str:
    if state is None:
        return f"{settings.state}, not there yet: starts empty; saved at exit"
    found = state.summary()
    return (
        f"{settings.state}: {found['runs']} runs, {found['accounts']} accounts changed, "
        f"{found['rules']} rules, clock at {format_ms(state.now_ms)}; saved at exit"
    )


def first_request_example(document: dict[str, Any]) -> dict[str, Any]:
    """The create example of ``openapi.yaml``, so the banner's curl is always valid."""
    media = document["paths"]["/runs"]["post"]["requestBody"]["content"]["application/json"]
    example: dict[str, Any] = next(iter(media["examples"].values()))["value"]
    return example
