"""Where the mock's state lives: runs, ledgers, rate-limit windows, rules and the journal.

``Store`` is the seam: route handlers and domain code talk to it, never to a dict or a
database. ``MemoryStore`` keeps everything in one process (the default). Its ``create_run``
is atomic because it never awaits between the checks and the writes.

Refunds are derived, not scheduled: a run that will fail is put in a heap keyed by the
instant it fails; every read settles the heap up to "now", so at any instant
``balance = start - sum(costs of runs not failed by then)`` without a background task. A heap
entry refunds only if the run still fails at that instant, so a run whose fate is changed
(``replace_run``) is refunded once, at its new failure time, or not at all.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from mock_runbase.accounts import AccountSettings, KeySettings, Ledger, check_charge
from mock_runbase.journal import JournalEntry, JournalFilter
from mock_runbase.ratelimit import MovingWindowLimiter, RateLimit
from mock_runbase.rules import Rule, rule_from_body
from mock_runbase.runs import Run, completed_ms

__all__ = ["AccountState", "MemoryStore", "Store"]


@dataclass
class AccountState:
    """What an account was charged and refunded, in all and per key."""

    ledger: Ledger = field(default_factory=Ledger)
    keys: dict[str, Ledger] = field(default_factory=dict)

    def key(self, key: str) -> Ledger:
        return self.keys.get(key) or Ledger()


class Store(Protocol):
    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None: ...

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None: ...

    async def create_run(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None: ...

    async def replace_run(self, run: Run, now_ms: int) -> None: ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def get_run_by_file(self, file_name: str) -> Run | None: ...

    async def list_runs(self, account: str | None, limit: int) -> list[Run]: ...

    async def ledgers(self, account: str, now_ms: int) -> AccountState: ...

    async def account_names(self) -> list[str]: ...

    async def add_rule(self, body: dict[str, Any], seed: int) -> Rule: ...

    async def rules(self, account: str | None) -> list[Rule]: ...

    async def delete_rules(self, account: str | None, rule_id: str | None) -> int: ...

    async def record(self, **fields: Any) -> None: ...

    async def journal(self, selection: JournalFilter) -> list[JournalEntry]: ...

    async def clear_journal(self, account: str | None) -> None: ...

    async def reset(self, account: str | None = None) -> None: ...


class MemoryStore:
    def __init__(self, rate_limit: RateLimit | None, journal_size: int = 1000) -> None:
        self.limiter = MovingWindowLimiter(rate_limit) if rate_limit else None
        self.runs: dict[str, Run] = {}
        self.files: dict[str, str] = {}
        self.accounts: dict[str, AccountState] = {}
        self._failures: list[tuple[int, str]] = []  # (instant of failure, run id)
        self._rules: list[Rule] = []
        self._rule_numbers = 0
        self._journal: deque[JournalEntry] = deque(maxlen=journal_size)
        self._journal_seq = 0

    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None:
        return self.limiter.hit(key, now_ms) if self.limiter else None

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        self.limiter = MovingWindowLimiter(rate_limit) if rate_limit else None

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
        self._schedule_refund(run)

    async def replace_run(self, run: Run, now_ms: int) -> None:
        self._settle(now_ms)
        self.runs[run.id] = run
        self._schedule_refund(run)

    async def get_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    async def get_run_by_file(self, file_name: str) -> Run | None:
        run_id = self.files.get(file_name)
        return self.runs.get(run_id) if run_id else None

    async def list_runs(self, account: str | None, limit: int) -> list[Run]:
        newest_first = reversed(self.runs.values())
        found = [run for run in newest_first if account is None or run.account == account]
        return found[:limit]

    async def ledgers(self, account: str, now_ms: int) -> AccountState:
        """The account's ledger and its keys' ledgers, refunds settled up to ``now_ms``."""
        self._settle(now_ms)
        return self.accounts.get(account) or AccountState()

    async def account_names(self) -> list[str]:
        """Accounts that have been charged at least once."""
        return list(self.accounts)

    async def add_rule(self, body: dict[str, Any], seed: int) -> Rule:
        rule = rule_from_body(body, self._rule_numbers + 1, seed)
        self._rule_numbers += 1
        self._rules.append(rule)
        return rule

    async def rules(self, account: str | None) -> list[Rule]:
        return [r for r in self._rules if account is None or r.account == account]

    async def delete_rules(self, account: str | None, rule_id: str | None) -> int:
        doomed = [
            r
            for r in self._rules
            if (account is None or r.account == account) and rule_id in (None, r.id)
        ]
        self._rules = [r for r in self._rules if r not in doomed]
        return len(doomed)

    async def record(self, **fields: Any) -> None:
        self._journal_seq += 1
        self._journal.append(JournalEntry(seq=self._journal_seq, **fields))

    async def journal(self, selection: JournalFilter) -> list[JournalEntry]:
        return selection.select(self._journal)

    async def clear_journal(self, account: str | None) -> None:
        if account is None:
            self._journal.clear()
            return
        kept = [entry for entry in self._journal if entry.account != account]
        self._journal.clear()
        self._journal.extend(kept)

    async def reset(self, account: str | None = None) -> None:
        if account is None:
            self.runs.clear()
            self.files.clear()
            self.accounts.clear()
            self._failures.clear()
            self._rules.clear()
            self._rule_numbers = 0
            self._journal.clear()
            if self.limiter:
                self.limiter.reset()
            return
        doomed = [run for run in self.runs.values() if run.account == account]
        for run in doomed:
            del self.runs[run.id]
            self.files.pop(run.file_name, None)
        state = self.accounts.pop(account, None)
        if self.limiter and state:
            for key in state.keys:
                self.limiter.forget(key)
        await self.delete_rules(account, None)
        await self.clear_journal(account)

    def _schedule_refund(self, run: Run) -> None:
        failure = completed_ms(run)
        if run.outcome == "failed" and failure is not None:
            heapq.heappush(self._failures, (failure, run.id))

    def _settle(self, now_ms: int) -> None:
        """Refund every run that has failed by ``now_ms`` and was not refunded yet."""
        while self._failures and self._failures[0][0] <= now_ms:
            failed_at, run_id = heapq.heappop(self._failures)
            run = self.runs.get(run_id)
            if run is None or run.outcome != "failed" or completed_ms(run) != failed_at:
                continue  # forgotten, or its fate changed since this entry was scheduled
            state = self.accounts[run.account]
            for ledger in (state.ledger, state.keys[run.key]):
                ledger.refunded += run.cost_usd
