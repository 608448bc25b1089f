"""The documented operations, HTTP-free: authorize, create a run, read a run, serve its image.

Route handlers translate HTTP to these calls and back; everything here raises
``RunbaseError`` for a rejected request, and a rejected request changes no state (the rate
limiter's window aside, as with any real limiter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from mock_runbase.accounts import Directory, KeySettings, check_ip
from mock_runbase.clock import Clock, format_ms
from mock_runbase.errors import RunbaseError
from mock_runbase.images import ImageCache, render_png
from mock_runbase.ratelimit import retry_after_header
from mock_runbase.runs import (
    TIMING_PROFILES,
    Run,
    input_seed,
    new_token,
    plan_timing,
    status_at,
)
from mock_runbase.scenarios import SCENARIOS, pick_scenario
from mock_runbase.settings import MockSettings
from mock_runbase.spec import Spec
from mock_runbase.store import Store
from mock_runbase.validation import parse_create_request

__all__ = ["Created", "RunbaseService"]

PROMPT_EXCERPT = 160


@dataclass(frozen=True)
class Created:
    run: Run
    warning: str | None


class RunbaseService:
    def __init__(
        self,
        *,
        spec: Spec,
        settings: MockSettings,
        clock: Clock,
        store: Store,
        directory: Directory,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.clock = clock
        self.store = store
        self.directory = directory
        self.timing = TIMING_PROFILES[settings.timing]
        self.images = ImageCache(max_bytes=settings.image_cache_mb * 1024 * 1024)

    async def authorize(self, authorization: str | None, client_ip: str | None) -> KeySettings:
        """Auth, then the key's IP allow-list, then the rate limit (one request counted)."""
        now = self.clock.now_ms()
        key = self.directory.authenticate(authorization, now)
        check_ip(key, client_ip)
        wait = await self.store.hit_rate_limit(key.key, now)
        if wait is not None:
            raise RunbaseError(
                429,
                "RATE_LIMITED",
                "Rate limit exceeded",
                headers={"Retry-After": retry_after_header(wait)},
            )
        return key

    async def create_run(
        self, key: KeySettings, body: bytes, scenario_header: str | None
    ) -> Created:
        request = parse_create_request(self.spec, body)
        name, warning = pick_scenario(scenario_header, request.input)
        effect = SCENARIOS[name]()
        if effect.http_error is not None:
            raise effect.http_error
        now = self.clock.now_ms()
        seed = input_seed(self.settings.seed, request.model.id, request.input)
        pending_ms, processing_ms = plan_timing(self.timing, seed, effect.slowdown)
        width, height = request.model.output_size(request.input)
        run = Run(
            id="run_" + new_token(),
            account=key.account,
            key=key.key,
            model=request.model.id,
            input=request.input,
            cost_usd=request.model.cost_usd(request.input),
            created_ms=now,
            pending_ms=pending_ms,
            processing_ms=None if effect.never_finishes else processing_ms,
            outcome="failed" if effect.outcome == "failed" else "succeeded",
            error=effect.error,
            width=width,
            height=height,
            file_name=new_token(20),
            image_seed=seed,
            scenario=name,
        )
        await self.store.create_run(run, key, self.directory.account(key.account), now)
        return Created(run=run, warning=warning)

    async def get_run(self, key: KeySettings, run_id: str) -> Run:
        run = await self.store.get_run(run_id)
        if run is None or run.account != key.account:
            raise RunbaseError(404, "run_not_found", f"No run with id {run_id!r} for this account")
        return run

    async def image(self, file_name: str) -> tuple[Run, bytes]:
        """The PNG of a succeeded run, rendered once and then served from the cache."""
        run = await self.store.get_run_by_file(file_name)
        if run is None or status_at(run, self.clock.now_ms()) != "succeeded":
            raise RunbaseError(404, "file_not_found", "File not found")
        cache_key = image_cache_key(run)
        cached = self.images.get(cache_key)
        if cached is None:
            cached = await anyio.to_thread.run_sync(
                lambda: self.images.get_or_render(cache_key, lambda: render_run(run))
            )
        return run, cached

    async def account_view(self, key: KeySettings) -> dict[str, Any]:
        account = self.directory.account(key.account)
        account_ledger, key_ledger = await self.store.ledgers(
            key.account, key.key, self.clock.now_ms()
        )
        return {
            "account": account.name,
            "balanceUsd": account.starting_balance_usd - account_ledger.net_spent,
            "spentUsd": account_ledger.net_spent,
            "startingBalanceUsd": account.starting_balance_usd,
            "runs": account_ledger.runs,
            "key": {
                "last4": key.last4,
                "spendLimitCents": key.spend_limit_cents,
                "spentUsd": key_ledger.net_spent,
                "ipAllowList": list(key.ip_allow_list),
                "disabled": key.disabled,
                "expiresAt": format_ms(key.expires_ms) if key.expires_ms is not None else None,
                "usageQuota": key.usage_quota,
                "usageUsed": key_ledger.runs,
            },
        }

    async def reset(self) -> None:
        await self.store.reset()
        reset_clock = getattr(self.clock, "reset", None)
        if reset_clock is not None:
            reset_clock()


def image_cache_key(run: Run) -> str:
    return f"{run.image_seed:016x}-{run.width}x{run.height}"


def render_run(run: Run) -> bytes:
    prompt = str(run.input.get("prompt", ""))
    excerpt = prompt if len(prompt) <= PROMPT_EXCERPT else prompt[: PROMPT_EXCERPT - 1] + "…"
    details = " ".join(
        str(v) for k, v in sorted(run.input.items()) if k != "prompt" and isinstance(v, str)
    )
    return render_png(
        width=run.width,
        height=run.height,
        seed=run.image_seed,
        lines=[
            excerpt,
            f"{run.width}x{run.height}  {details}".strip(),
            f"{run.model} · mock-runbase",
        ],
    )
