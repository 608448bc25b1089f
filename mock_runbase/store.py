"""Where the mock's state lives: runs, ledgers, rate-limit windows, rules and the journal.

``Store`` is the seam: route handlers and domain code talk to it, never to a dict or a
database. ``MemoryStore`` keeps everything in one process (the default). Its ``create_run``
is atomic because it never awaits between the checks and the writes. ``RedisStore``
(``redis_store.py``) keeps the same state in Redis, for several processes; both pass the
same tests (tests/test_store.py).

Refunds are derived, not scheduled: a run that will fail is put in a heap keyed by the
instant it fails; every read settles the heap up to "now", so at any instant
``balance = start - sum(costs of runs not failed by then)`` without a background task. A heap
entry refunds only if the run still fails at that instant, so a run whose fate is changed
(``replace_run``) is refunded once, at its new failure time, or not at all. A pending
refund carries its account, key and cost, so it is paid even if the run expired (runs are
forgotten ``run_ttl_ms`` after they were stored, in real time, to keep a long-lived mock
bounded; money is never forgotten).

A run past its TTL is gone for every read at once (by id, by file, in listings), as in Redis,
whose keys expire on their own: every read and create first sweeps out the runs stored before
the TTL (oldest first, so a sweep that finds nothing costs one comparison).

Runs are stored packed into bytes (``packed_runs``), a third of the memory and nothing for the
cyclic garbage collector to walk, so a million stored runs neither exhaust memory nor make GC
pauses grow. Only the ``hot_runs`` most recently read ones are kept as ``Run`` objects: a run
is unpacked when it is read (its first poll), and packed again once it has cooled.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

import orjson

from mock_runbase.accounts import (
    AccountOverride,
    AccountSettings,
    Directory,
    KeySettings,
    Ledger,
    check_charge,
    merged_override,
    with_overrides,
)
from mock_runbase.clock import SettableClock, VirtualClock
from mock_runbase.journal_records import Exchange, JournalEntry, JournalFilter
from mock_runbase.packed_runs import packed_run, unpacked_run
from mock_runbase.ratelimit import MovingWindowLimiter, RateLimit
from mock_runbase.rules import Rule, RuleContext, first_firing, rule_from_body
from mock_runbase.runs import Run, completed_ms, polled

__all__ = [
    "DEFAULT_RUN_TTL_MS",
    "AccountState",
    "MemoryStore",
    "PendingRefund",
    "RunNameTaken",
    "Snapshot",
    "Store",
    "StoredState",
]

DEFAULT_RUN_TTL_MS = 24 * 3600 * 1000
HOT_RUNS = 10_000  # runs read lately, kept as objects; the rest packed (a read unpacks it)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class AccountState:
    """What an account was charged and refunded, in all and per key."""

    ledger: Ledger = field(default_factory=Ledger)
    keys: dict[str, Ledger] = field(default_factory=dict)

    def key(self, key: str) -> Ledger:
        return self.keys.get(key) or Ledger()


class Snapshot(NamedTuple):  # a NamedTuple: built on every request, the cheapest to build
    """What a request reads once, at its start: the accounts and keys in effect (the config's
    with the control API's changes) and the fault rules, in order."""

    directory: Directory
    rules: list[Rule]


class RunNameTaken(Exception):
    """``create_run`` was given a run id or file name a run of the store already has (only a
    seeded name can be: one a loaded state holds); nothing was written."""


class PendingRefund(NamedTuple):
    """A run's cost, to give back at the instant it fails (if its fate does not change)."""

    fails_at_ms: int
    account: str
    key: str
    cost_usd: int


@dataclass(frozen=True)
class StoredState:
    """Everything a store keeps but the journal and the rate-limit windows: what
    ``GET /_mock/state`` exports and ``PUT /_mock/state`` brings back (``state_document``).

    Refunds are settled up to the instant of the export; ``refunds`` are those still pending,
    by run id (a run's own, or an expired run's: money is never forgotten)."""

    runs: list[Run]  # oldest first
    overrides: dict[str, AccountOverride]
    ledgers: dict[str, AccountState]
    refunds: dict[str, PendingRefund]
    rules: list[Rule]  # in order, with their match and hit counts
    run_numbers: int  # run numbers handed out (``next_run_number``)
    rule_numbers: int  # the last rule's number (rule_N)


def copied_ledgers(ledgers: dict[str, AccountState]) -> dict[str, AccountState]:
    return {
        name: AccountState(
            replace(state.ledger), {key: replace(ledger) for key, ledger in state.keys.items()}
        )
        for name, state in ledgers.items()
    }


def pending_refund(run: Run) -> PendingRefund | None:
    failure = completed_ms(run)
    if run.outcome != "failed" or failure is None:
        return None
    return PendingRefund(failure, run.account, run.key, run.cost_usd)


class Store(Protocol):
    # Errors that mean "the store cannot be reached": answered 503, never a crash.
    unavailable_errors: tuple[type[Exception], ...]
    shared: bool  # True if several processes may use it at once

    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def snapshot(self, base: Directory) -> Snapshot: ...

    async def snapshot_with_run(self, base: Directory, run_id: str) -> tuple[Snapshot, Run | None]:
        """``snapshot`` and ``get_run`` at once (a poll's reads: one round trip on Redis)."""

    async def put_account(self, base: Directory, name: str, override: AccountOverride) -> None: ...

    def virtual_clock(self, start: str | int) -> SettableClock:
        """A virtual clock whose time is kept with the rest of this store's state."""

    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None: ...

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None: ...

    async def next_run_number(self) -> int:
        """The next number of this store's run sequence: 1, 2, ... (from 1 again after a
        global reset), each handed out once among all the processes sharing the store."""

    async def create_run(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None:
        """Charge and store ``run``, or raise (the checks of ``accounts.check_charge``, or
        ``RunNameTaken``) and change nothing."""

    async def replace_run(self, run: Run, now_ms: int) -> None: ...

    async def force_run(
        self, run_id: str, move: Callable[[Run], Run | None], now_ms: int
    ) -> Run | None:
        """``move`` of the run as stored, stored in its place (its refund with it) at once for
        every process, and returned; None, with nothing written, for no such run or when
        ``move`` answers None. Whatever ``move`` raises, nothing is written. ``move`` runs
        again if another process changed the run meanwhile (so two forced moves of one run
        never both succeed)."""

    async def count_poll(self, run_id: str, now_ms: int) -> Run | None:
        """One answered poll of a run timed by polls, counted at ``now_ms`` at once for every
        process (``runs.polled``: the count, and the move to the state that poll is due to
        show, with its refund); the run as stored then, or None if there is no such run. A run
        timed by the clock is answered as it is, unchanged."""

    async def get_run(self, run_id: str) -> Run | None: ...

    async def get_run_by_file(self, file_name: str) -> Run | None: ...

    async def list_runs(
        self, account: str | None, limit: int, keep: Callable[[Run], bool] | None = None
    ) -> list[Run]:
        """The newest ``limit`` runs (of ``account``; None: of all) that ``keep`` accepts,
        newest first; reads no further back than it needs to."""

    async def ledgers(self, account: str, now_ms: int) -> AccountState: ...

    async def account_names(self) -> list[str]: ...

    async def add_rule(self, body: dict[str, Any], seed: int) -> Rule: ...

    async def add_rules_once(self, bodies: list[dict[str, Any]], seed: int) -> None:
        """Add the config file's rules, unless this store already has (or had) them."""

    async def rules(self, account: str | None) -> list[Rule]: ...

    async def first_firing(self, rules: list[Rule], context: RuleContext) -> Rule | None:
        """The first of ``rules`` (from a snapshot) that matches and fires, counted."""

    async def delete_rules(self, account: str | None, rule_id: str | None) -> int: ...

    async def record(self, exchange: Exchange) -> None: ...

    def record_soon(self, exchange: Exchange) -> Awaitable[None] | None:
        """``record`` on the hot path: None once recorded, or what to await until it is."""

    async def journal(self, selection: JournalFilter) -> list[JournalEntry]: ...

    async def clear_journal(self, account: str | None) -> None: ...

    async def reset(self, account: str | None = None) -> None: ...

    async def export_state(self, now_ms: int) -> StoredState:
        """Everything but the journal, refunds settled up to ``now_ms``."""

    async def import_state(self, state: StoredState) -> None:
        """Replace everything but the journal with ``state`` at once (rate-limit windows start
        empty, the config file's rules count as added); runs are kept ``run_ttl_ms`` from now."""


class MemoryStore:
    unavailable_errors: tuple[type[Exception], ...] = ()
    shared = False

    def __init__(
        self,
        rate_limit: RateLimit | None,
        journal_size: int = 1000,
        *,
        run_ttl_ms: int = DEFAULT_RUN_TTL_MS,
        wall_clock: Callable[[], int] = wall_ms,
        hot_runs: int = HOT_RUNS,
    ) -> None:
        self.limiter = MovingWindowLimiter(rate_limit) if rate_limit else None
        self.runs: dict[str, Run | bytes] = {}  # oldest first; packed but the hot ones
        self.files: dict[str, str] = {}
        self.accounts: dict[str, AccountState] = {}
        self.run_ttl_ms = run_ttl_ms
        self.wall_clock = wall_clock
        self.hot_runs = hot_runs
        self._hot: deque[str] = deque()  # ids of the runs kept as objects, the coolest first
        self._stored_at: deque[tuple[int, str]] = deque()  # (wall ms, run id), oldest first
        self._failures: list[tuple[int, str]] = []  # (instant of failure, run id)
        self._refunds: dict[str, PendingRefund] = {}  # run id -> its refund, while pending
        self._overrides: dict[str, AccountOverride] = {}
        self._snapshot: tuple[Directory, Snapshot] | None = None  # (base, the last one)
        self._rules: list[Rule] = []
        self._rules_seeded = False
        self._rule_numbers = 0
        self._run_numbers = 0
        self._journal: deque[tuple[int, Exchange]] = deque(maxlen=journal_size)  # (seq, it)
        self._journal_seq = 0

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def virtual_clock(self, start: str | int) -> SettableClock:
        return VirtualClock(start)

    async def snapshot(self, base: Directory) -> Snapshot:
        return self.snapshot_now(base)

    def snapshot_now(self, base: Directory) -> Snapshot:
        """``snapshot`` without an await: the service's hot path, on this store."""
        last = self._snapshot
        if last is not None and last[0] is base:
            if last[1].rules is self._rules:
                return last[1]
            directory = last[1].directory
        else:
            directory = with_overrides(base, self._overrides)
        snapshot = Snapshot(directory, self._rules)
        self._snapshot = (base, snapshot)
        return snapshot

    async def snapshot_with_run(self, base: Directory, run_id: str) -> tuple[Snapshot, Run | None]:
        return self.snapshot_with_run_now(base, run_id)

    def snapshot_with_run_now(self, base: Directory, run_id: str) -> tuple[Snapshot, Run | None]:
        """``snapshot_with_run`` without an await."""
        return self.snapshot_now(base), self._run(run_id)

    async def put_account(self, base: Directory, name: str, override: AccountOverride) -> None:
        overrides = {**self._overrides, name: merged_override(self._overrides.get(name), override)}
        directory = with_overrides(base, overrides)  # raises on a key conflict
        self._overrides = overrides
        self._snapshot = (base, Snapshot(directory, self._rules))

    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None:
        return self.limiter.hit(key, now_ms) if self.limiter else None

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        self.limiter = MovingWindowLimiter(rate_limit) if rate_limit else None

    async def next_run_number(self) -> int:
        self._run_numbers += 1
        return self._run_numbers

    async def create_run(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None:
        self.create_run_now(run, key, account, now_ms)

    def create_run_now(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None:
        """``create_run`` without an await."""
        self._settle(now_ms)
        stored_ms = self._forget_expired_runs()  # first: an expired run's name is free, as in Redis
        if run.id in self.runs or run.file_name in self.files:
            raise RunNameTaken(run.id)
        state = self.accounts.get(account.name) or AccountState()
        key_ledger = state.keys.get(key.key) or Ledger()
        check_charge(key, key_ledger, account, state.ledger, run.cost_usd)
        # Checks passed: from here on nothing can fail, so the writes are all or nothing.
        self.accounts[account.name] = state
        state.keys[key.key] = key_ledger
        for ledger in (state.ledger, key_ledger):
            ledger.charged += run.cost_usd
            ledger.runs += 1
        self._store_new(run)
        self.files[run.file_name] = run.id
        self._schedule_refund(run)
        self._stored_at.append((stored_ms, run.id))

    async def replace_run(self, run: Run, now_ms: int) -> None:
        self._settle(now_ms)
        self._forget_expired_runs()
        if run.id in self.runs:
            self._keep_hot(run)
        self._schedule_refund(run)

    async def force_run(
        self, run_id: str, move: Callable[[Run], Run | None], now_ms: int
    ) -> Run | None:
        run = self._run(run_id)
        moved = None if run is None else move(run)
        if moved is not None:
            await self.replace_run(moved, now_ms)
        return moved

    async def count_poll(self, run_id: str, now_ms: int) -> Run | None:
        self._forget_expired_runs()
        kept = self.runs.get(run_id)
        if kept is None:
            return None
        run = as_run(run_id, kept)
        counted = polled(run, now_ms)
        if counted is run:
            return run  # timed by the clock
        if pending_refund(counted) != pending_refund(run):  # moved: failed now, or not at all
            self._settle(now_ms)
            self._schedule_refund(counted)
        self._keep_hot(counted)
        return counted

    async def get_run(self, run_id: str) -> Run | None:
        return self._run(run_id)

    def _run(self, run_id: str) -> Run | None:
        self._forget_expired_runs()
        kept = self.runs.get(run_id)
        if not isinstance(kept, bytes):
            return kept
        run = unpacked_run(run_id, kept)
        self._keep_hot(run)
        return run

    async def get_run_by_file(self, file_name: str) -> Run | None:
        run_id = self.files.get(file_name)
        return await self.get_run(run_id) if run_id else None

    async def list_runs(
        self, account: str | None, limit: int, keep: Callable[[Run], bool] | None = None
    ) -> list[Run]:
        self._forget_expired_runs()
        found = (
            run
            for run in self._newest_first(account)
            if (account is None or run.account == account) and (keep is None or keep(run))
        )
        return list(itertools.islice(found, limit))

    def _newest_first(self, account: str | None) -> Iterator[Run]:
        """The stored runs, newest first; of one ``account``, a packed run is unpacked only if
        its bytes hold the account's name as orjson wrote it (else it cannot be that account's:
        one account's runs among a million are listed without unpacking the million)."""
        marker = None if account is None else orjson.dumps(account)
        for run_id, kept in reversed(self.runs.items()):
            if marker is None or not isinstance(kept, bytes) or marker in kept:
                yield as_run(run_id, kept)

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

    async def add_rules_once(self, bodies: list[dict[str, Any]], seed: int) -> None:
        if not self._rules_seeded:
            self._rules_seeded = True
            for body in bodies:
                await self.add_rule(dict(body), seed)

    async def rules(self, account: str | None) -> list[Rule]:
        return [r for r in self._rules if account is None or r.account == account]

    async def first_firing(self, rules: list[Rule], context: RuleContext) -> Rule | None:
        return first_firing(rules, context)

    async def delete_rules(self, account: str | None, rule_id: str | None) -> int:
        doomed = [
            r
            for r in self._rules
            if (account is None or r.account == account) and rule_id in (None, r.id)
        ]
        self._rules = [r for r in self._rules if r not in doomed]
        return len(doomed)

    async def record(self, exchange: Exchange) -> None:
        self.record_soon(exchange)

    def record_soon(self, exchange: Exchange) -> None:
        self._journal_seq += 1
        self._journal.append((self._journal_seq, exchange))

    async def journal(self, selection: JournalFilter) -> list[JournalEntry]:
        return selection.select(exchange.entry(seq) for seq, exchange in self._journal)

    async def clear_journal(self, account: str | None) -> None:
        if account is None:
            self._journal.clear()
            return
        kept = [(seq, exchange) for seq, exchange in self._journal if exchange.account != account]
        self._journal.clear()
        self._journal.extend(kept)

    async def reset(self, account: str | None = None) -> None:
        if account is None:
            self._forget_state()
            self._journal.clear()
            self._journal_seq = 0
            return
        doomed = [
            run for run in itertools.starmap(as_run, self.runs.items()) if run.account == account
        ]
        for run in doomed:
            del self.runs[run.id]
            self.files.pop(run.file_name, None)
            self._refunds.pop(run.id, None)
        gone = {run.id for run in doomed}
        self._stored_at = deque(entry for entry in self._stored_at if entry[1] not in gone)
        state = self.accounts.pop(account, None)
        if self.limiter and state:
            for key in state.keys:
                self.limiter.forget(key)
        await self.delete_rules(account, None)
        await self.clear_journal(account)

    async def export_state(self, now_ms: int) -> StoredState:
        self._settle(now_ms)
        self._forget_expired_runs()
        return StoredState(
            runs=list(itertools.starmap(as_run, self.runs.items())),
            overrides=dict(self._overrides),
            ledgers=copied_ledgers(self.accounts),
            refunds=dict(self._refunds),
            rules=[replace(rule) for rule in self._rules],
            run_numbers=self._run_numbers,
            rule_numbers=self._rule_numbers,
        )

    async def import_state(self, state: StoredState) -> None:
        self._forget_state()
        stored_ms = self.wall_clock()
        for run in state.runs:
            self._store_new(run)
            self.files[run.file_name] = run.id
            self._stored_at.append((stored_ms, run.id))
        self.accounts = copied_ledgers(state.ledgers)
        self._refunds = dict(state.refunds)
        self._failures = [(refund.fails_at_ms, run_id) for run_id, refund in self._refunds.items()]
        heapq.heapify(self._failures)
        self._overrides = dict(state.overrides)
        self._rules = [replace(rule) for rule in state.rules]
        self._rules_seeded = True
        self._rule_numbers = state.rule_numbers
        self._run_numbers = state.run_numbers

    def _forget_state(self) -> None:
        """Everything but the journal."""
        self.runs.clear()
        self.files.clear()
        self.accounts.clear()
        self._stored_at.clear()
        self._hot.clear()
        self._failures.clear()
        self._refunds.clear()
        self._overrides.clear()
        self._snapshot = None
        self._rules = []
        self._rules_seeded = False
        self._rule_numbers = 0
        self._run_numbers = 0
        if self.limiter:
            self.limiter.reset()

    def _schedule_refund(self, run: Run) -> None:
        refund = pending_refund(run)
        if refund is None:
            self._refunds.pop(run.id, None)
            return
        self._refunds[run.id] = refund
        heapq.heappush(self._failures, (refund.fails_at_ms, run.id))

    def _settle(self, now_ms: int) -> None:
        """Refund every run that has failed by ``now_ms`` and was not refunded yet."""
        while self._failures and self._failures[0][0] <= now_ms:
            failed_at, run_id = heapq.heappop(self._failures)
            refund = self._refunds.get(run_id)
            if refund is None or refund.fails_at_ms != failed_at:
                continue  # reset, or its fate changed since this entry was scheduled
            del self._refunds[run_id]
            state = self.accounts[refund.account]
            for ledger in (state.ledger, state.keys[refund.key]):
                ledger.refunded += refund.cost_usd

    def _forget_expired_runs(self) -> int:
        """Forget the runs stored before the TTL, oldest first; the wall clock's now."""
        now = self.wall_clock()
        oldest_kept = now - self.run_ttl_ms
        stored_at = self._stored_at
        while stored_at and stored_at[0][0] <= oldest_kept:
            _, run_id = stored_at.popleft()
            kept = self.runs.pop(run_id, None)
            if kept is not None:
                self.files.pop(as_run(run_id, kept).file_name, None)
        return now

    def _store_new(self, run: Run) -> None:
        """Store a new ``run`` packed, while its fields are still in the CPU's caches (packed
        when it cooled, 10,000 creates later, its every object was a cache miss: about 7% of
        a served create's CPU). It becomes an object when it is first read."""
        packed = packed_run(run)
        if packed is None:
            self._keep_hot(run)
        else:
            self.runs[run.id] = packed

    def _keep_hot(self, run: Run) -> None:
        """Store ``run`` as an object; pack the coolest objects beyond ``hot_runs``."""
        was = self.runs.get(run.id)
        self.runs[run.id] = run
        if was is not None and not isinstance(was, bytes):
            return  # already counted among the hot ones
        hot = self._hot
        hot.append(run.id)
        while len(hot) > self.hot_runs:
            run_id = hot.popleft()
            cool = self.runs.get(run_id)
            if cool is not None and not isinstance(cool, bytes):
                self.runs[run_id] = packed_run(cool) or cool


def as_run(run_id: str, kept: Run | bytes) -> Run:
    """A stored run as an object (a packed one unpacked, without making it hot)."""
    return unpacked_run(run_id, kept) if isinstance(kept, bytes) else kept
