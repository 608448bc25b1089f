"""Where the mock's state lives: runs, ledgers and rate-limit windows.

``Store`` is the seam: route handlers and domain code talk to it, never to a dict or a
database. ``MemoryStore`` keeps everything in one process (the default). Its ``create_run``
is atomic because it never awaits between the checks and the writes.

Refunds are derived, not scheduled: a run that will fail is put in a heap keyed by the
instant it fails; every read settles the heap up to "now", so at any instant
``balance = start - sum(costs of runs not failed by then)`` without a background task.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Protocol

from mock_runbase.accounts import AccountSettings, KeySettings, Ledger, check_charge
from mock_runbase.ratelimit import MovingWindowLimiter, RateLimit
from mock_runbase.runs import Run, completed_ms

__all__ = ["MemoryStore", "Store"]


@dataclass
class AccountState:
    ledger: Ledger = field(default_factory=Ledger)
    keys: dict[str, Ledger] = field(default_factory=dict)


class Store(Protocol):
    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None: ...

    async def create_run(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None: ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def get_run_by_file(self, file_name: str) -> Run | None: ...

    async def ledgers(self, account: str, key: str, now_ms: int) -> tuple[Ledger, Ledger]: ...

    async def reset(self) -> None: ...


class MemoryStore:
    def __init__(self, rate_limit: RateLimit | None) -> None:
        self.limiter = MovingWindowLimiter(rate_limit) if rate_limit else None
        self.runs: dict[str, Run] = {}
        self.files: dict[str, str] = {}
        self.accounts: dict[str, AccountState] = {}
        self._failures: list[tuple[int, str]] = []  # (instant of failure, run id)

    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None:
        return self.limiter.hit(key, now_ms) if self.limiter else None

    async def create_run(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None:
        self._settle(now_ms)
        state = self.accounts.get(account.name) or AccountState()
        key_ledger = state.keys.get(key.key) or Ledger()
        check_charge(key, key_ledger, account, state.ledger, run.cost_usd)
        # Checks passed: from here on nothing can fail, so the writes are all or nothing.
        self.accounts[account.name] = state
        state.keys[key.key] = key_ledger
        for ledger in (state.ledger, key_ledger):
            ledger.charged += run.cost_usd
            ledger.runs += 1
        self.runs[run.id] = run
        self.files[run.file_name] = run.id
        failure = completed_ms(run)
        if run.outcome == "failed" and failure is not None:
            heapq.heappush(self._failures, (failure, run.id))

    async def get_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    async def get_run_by_file(self, file_name: str) -> Run | None:
        run_id = self.files.get(file_name)
        return self.runs.get(run_id) if run_id else None

    async def ledgers(self, account: str, key: str, now_ms: int) -> tuple[Ledger, Ledger]:
        self._settle(now_ms)
        state = self.accounts.get(account) or AccountState()
        return state.ledger, state.keys.get(key) or Ledger()

    async def reset(self) -> None:
        self.runs.clear()
        self.files.clear()
        self.accounts.clear()
        self._failures.clear()
        if self.limiter:
            self.limiter.reset()

    def _settle(self, now_ms: int) -> None:
        """Refund every run that has failed by ``now_ms`` and was not refunded yet."""
        while self._failures and self._failures[0][0] <= now_ms:
            _, run_id = heapq.heappop(self._failures)
            run = self.runs.get(run_id)
            if run is None:
                continue
            state = self.accounts[run.account]
            for ledger in (state.ledger, state.keys[run.key]):
                ledger.refunded += run.cost_usd
