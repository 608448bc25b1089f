"""The mock's state on Redis, so several workers and replicas act as one mock.

Same contract as ``MemoryStore`` (tests/test_store.py runs both). What must be atomic across
processes is:

- creating a run: one Lua script settles the account's due refunds, applies the checks of
  ``accounts.check_charge`` (quota, key spend limit, balance) and, if they pass, charges and
  stores the run and schedules its refund, so a balance never goes below zero by a race;
- refunds: a per-account sorted set of pending refunds scored by the instant the run fails
  (member ``cost:run_id:key``, so a refund does not need the run, which may have expired);
  a Lua script moves the due ones into the ledger, once;
- the rate limit: a moving-window log per key in a list, checked and appended in Lua (as the
  ``limits`` library does on Redis, but on the mock's clock, which may be virtual);
- rules: their hit counts and the fire decision in Lua, with the same SHA-1 draw as
  ``rules.draw``;
- the journal: a capped stream whose sequence numbers come from one counter.

Runs expire ``run_ttl_ms`` after they are stored (real time). Caches of the account
overrides and rules are keyed by a version token that changes with every write, so a
process re-reads them only when another one changed them; a poll reads the tokens and its run
in one round trip (``snapshot_with_run``).

The hot path's single commands and scripts go through ``redis_pipeline`` (one pipelined
connection per process); transactions, scans and the control API through redis-py.

At start-up ``wait_until_reachable`` gives Redis a few seconds to answer (containers started
together), then fails loudly: a mock whose store never answered would only serve 503s.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any

import orjson
import redis.asyncio as redis
from redis import Redis as BlockingRedis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mock_runbase.accounts import (
    AccountOverride,
    AccountSettings,
    Directory,
    KeySettings,
    Ledger,
    insufficient_balance,
    merged_override,
    spend_limit_exceeded,
    spend_limit_micro,
    usage_exceeded,
    with_overrides,
)
from mock_runbase.clock import parse_timestamp
from mock_runbase.journal_records import Exchange, JournalEntry, JournalFilter
from mock_runbase.ratelimit import RateLimit
from mock_runbase.redis_pipeline import Script, commands_for
from mock_runbase.rules import Rule, RuleContext, rule_from_body
from mock_runbase.runs import Run, new_token, polled
from mock_runbase.store import (
    DEFAULT_RUN_TTL_MS,
    AccountState,
    PendingRefund,
    RunNameTaken,
    Snapshot,
    StoredState,
    pending_refund,
    wall_ms,
)

__all__ = [
    "RedisStore",
    "SharedVirtualClock",
    "StoreUnreachable",
    "redacted_url",
    "wait_until_answering",
]

log = logging.getLogger("mock_runbase.redis")

DEFAULT_PREFIX = "mock-runbase:"
MAX_CONNECTIONS = 64  # per process
POOL_WAIT_S = 10
VIRTUAL_CLOCK_IDLE_TTL_MS = DEFAULT_RUN_TTL_MS  # a virtual window outlives real time
STARTUP_WAIT_S = 5.0  # how long start-up waits for Redis to answer
STARTUP_RETRY_S = 0.25
RUN_FIELDS = [f.name for f in fields(Run)]

SETTLE_FUNCTION = """
local function settle(refunds, ledger, now)
  local due = redis.call('ZRANGEBYSCORE', refunds, '-inf', now)
  for _, member in ipairs(due) do
    local cost, key = string.match(member, '^(%d+):[^:]+:(.*)$')
    redis.call('HINCRBY', ledger, 'refunded', cost)
    redis.call('HINCRBY', ledger, 'refunded:' .. key, cost)
  end
  if #due > 0 then redis.call('ZREMRANGEBYSCORE', refunds, '-inf', now) end
  return #due
end
"""

SETTLE = SETTLE_FUNCTION + "return settle(KEYS[1], KEYS[2], ARGV[1])"

# Settle, check (the run's names are free, then as accounts.check_charge: quota, key spend
# limit, balance), then charge and store the run, all in one atomic step. KEYS: ledger,
# refunds, accounts, run, file, runs index, account's runs index. ARGV: now, key, cost, quota,
# spend limit (micro-USD; '' for none), starting balance, account, run id, run JSON, TTL ms,
# stored at, refund member, fails at
CREATE = (
    SETTLE_FUNCTION
    + """
local ledger, key, cost = KEYS[1], ARGV[2], tonumber(ARGV[3])
settle(KEYS[2], ledger, ARGV[1])
if redis.call('EXISTS', KEYS[4], KEYS[5]) > 0 then return {'taken'} end
local function get(name) return tonumber(redis.call('HGET', ledger, name) or '0') end
if ARGV[4] ~= '' and get('runs:' .. key) >= tonumber(ARGV[4]) then return {'quota'} end
local key_spent = get('charged:' .. key) - get('refunded:' .. key)
if ARGV[5] ~= '' and key_spent >= tonumber(ARGV[5]) then return {'spend'} end
local balance = tonumber(ARGV[6]) - (get('charged') - get('refunded'))
if balance < cost then return {'balance', balance} end
for _, suffix in ipairs({'', ':' .. key}) do
  redis.call('HINCRBY', ledger, 'charged' .. suffix, cost)
  redis.call('HINCRBY', ledger, 'runs' .. suffix, 1)
end
redis.call('SADD', KEYS[3], ARGV[7])
redis.call('SET', KEYS[4], ARGV[9], 'PX', ARGV[10])
redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[10])
local stored_at = tonumber(ARGV[11])
for _, index in ipairs({KEYS[6], KEYS[7]}) do
  redis.call('ZADD', index, stored_at, ARGV[8])
  redis.call('ZREMRANGEBYSCORE', index, '-inf', stored_at - tonumber(ARGV[10]))
end
if ARGV[12] ~= '' then redis.call('ZADD', KEYS[2], ARGV[13], ARGV[12]) end
return {'ok'}
"""
)

RATE_LIMIT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local count = redis.call('LLEN', KEYS[1])
while count > 0 and tonumber(redis.call('LINDEX', KEYS[1], -1)) <= now - window do
  redis.call('RPOP', KEYS[1])
  count = count - 1
end
if count >= limit then
  return tonumber(redis.call('LINDEX', KEYS[1], -1)) + window - now
end
redis.call('LPUSH', KEYS[1], now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return -1
"""

FIRE_RULE = """
local matches = redis.call('HINCRBY', KEYS[1], 'matches', 1)
local hits = tonumber(redis.call('HGET', KEYS[1], 'hits') or '0')
if ARGV[1] ~= '' and hits >= tonumber(ARGV[1]) then return 0 end
if ARGV[2] ~= '' and matches % tonumber(ARGV[2]) ~= 0 then return 0 end
if ARGV[3] ~= '' then
  local digest = redis.sha1hex(ARGV[4] .. ':' .. ARGV[5] .. ':' .. matches)
  if tonumber(string.sub(digest, 1, 13), 16) / 4503599627370496 >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HINCRBY', KEYS[1], 'hits', 1)
return 1
"""

JOURNAL_APPEND = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'seq', seq, 'entry', ARGV[2])
return seq
"""

CLOCK_READ = """
local now = redis.call('GET', KEYS[1])
if not now then redis.call('SET', KEYS[1], ARGV[1]); now = ARGV[1] end
return tonumber(now)
"""

CLOCK_MOVE = """
local now = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local target = now + tonumber(ARGV[2])
if ARGV[3] ~= '' then target = tonumber(ARGV[3]) end
if target < now then return redis.error_reply('a virtual clock only moves forward') end
redis.call('SET', KEYS[1], target)
return target
"""

SETTLE_SCRIPT, CREATE_SCRIPT, RATE_LIMIT_SCRIPT = Script(SETTLE), Script(CREATE), Script(RATE_LIMIT)
FIRE_RULE_SCRIPT, JOURNAL_APPEND_SCRIPT = Script(FIRE_RULE), Script(JOURNAL_APPEND)
CLOCK_READ_SCRIPT, CLOCK_MOVE_SCRIPT = Script(CLOCK_READ), Script(CLOCK_MOVE)


class RedisStore:
    unavailable_errors: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
    shared = True
    list_page = 500  # runs read at a time when a filtered listing pages back through the index

    def __init__(
        self,
        url: str,
        rate_limit: RateLimit | None,
        journal_size: int = 1000,
        *,
        run_ttl_ms: int = DEFAULT_RUN_TTL_MS,
        prefix: str = DEFAULT_PREFIX,
        wall_clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.url = url
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,  # a burst waits for a connection, not a 503
            timeout=POOL_WAIT_S,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            # a few quick retries ride out a dropped connection; then answer 503 at once
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=3),
        )
        # Any: redis-py types every reply as bytes | str | ..., whatever decode_responses says
        self.redis: Any = redis.Redis(connection_pool=pool)
        self.rate_limit = rate_limit
        self.journal_size = journal_size
        self.run_ttl_ms = run_ttl_ms
        self.prefix = prefix
        self.wall_clock = wall_clock
        # the hot path's single commands and scripts: pipelined, a few us each (redis_pipeline)
        self.commands = commands_for(url, self.redis)
        self.version_keys = (self.k("overrides", "version"), self.k("rules", "version"))
        self._directory: tuple[Directory, str | None, Directory] | None = None
        self._rules: tuple[str | None, list[Rule]] = ("", [])

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def ping(self) -> None:
        await self.redis.ping()

    def wait_until_reachable(self, timeout_s: float = STARTUP_WAIT_S) -> None:
        """Block until Redis answers a PING, retrying for up to ``timeout_s`` while it cannot
        be reached; then ``StoreUnreachable``. A refused password fails at once.

        Blocking on purpose: it runs once, in ``create_app``, before anything is served."""
        client = BlockingRedis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        where = redacted_url(self.url)

        def waiting(error: Exception) -> None:
            log.warning(
                "waiting up to %g s for the store %s to answer: %s", timeout_s, where, error
            )

        try:
            wait_until_answering(
                client.ping, timeout_s=timeout_s, retry_s=STARTUP_RETRY_S, on_retry=waiting
            )
        except RedisError as error:
            retried = "" if is_refusal(error) else f" (retried for {timeout_s:g} s)"
            reason = " ".join(str(error).split()) or type(error).__name__
            raise StoreUnreachable(f"cannot use the store {where}{retried}: {reason}") from None
        finally:
            client.close()

    async def close(self) -> None:
        await self.commands.close()
        await self.redis.aclose(close_connection_pool=True)

    # --- accounts ------------------------------------------------------------------------------

    async def snapshot(self, base: Directory) -> Snapshot:
        """One round trip when nothing changed: both version tokens, compared with the
        caches; what changed is read again."""
        versions = await self.commands.call("MGET", *self.version_keys)
        return await self.snapshot_at(base, versions)

    async def snapshot_with_run(self, base: Directory, run_id: str) -> tuple[Snapshot, Run | None]:
        """A poll's reads in one round trip: the version tokens and the run."""
        versions, run = await self.commands.calls(
            ("MGET", *self.version_keys), ("GET", self.k("run", run_id))
        )
        return await self.snapshot_at(base, versions), load_run(run)

    async def snapshot_at(self, base: Directory, versions: list[str | None]) -> Snapshot:
        directory_version, rules_version = versions
        cached = self._directory
        if cached is None or cached[0] is not base or cached[1] != directory_version:
            directory = await self.read_directory(base)
        else:
            directory = cached[2]
        rules = self._rules[1] if self._rules[0] == rules_version else await self.read_rules()
        return Snapshot(directory, rules)

    async def read_directory(self, base: Directory) -> Directory:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.k("overrides", "version"))
            pipe.hgetall(self.k("overrides"))
            version, raw = await pipe.execute()
        directory = with_overrides(base, parse_overrides(raw))
        self._directory = (base, version, directory)
        return directory

    async def put_account(self, base: Directory, name: str, override: AccountOverride) -> None:
        async def attempt(pipe: Any) -> None:
            overrides = parse_overrides(await pipe.hgetall(self.k("overrides")))
            merged = merged_override(overrides.get(name), override)
            with_overrides(base, {**overrides, name: merged})  # raises on a key conflict
            pipe.multi()
            pipe.hset(self.k("overrides"), name, orjson.dumps(merged.to_data()))
            pipe.set(self.k("overrides", "version"), new_token())

        await self.transaction(attempt, self.k("overrides"))

    async def hit_rate_limit(self, key: str, now_ms: int) -> float | None:
        limit = self.rate_limit
        if limit is None:
            return None
        expiry = max(limit.window_ms, VIRTUAL_CLOCK_IDLE_TTL_MS)
        wait = await self.commands.run(
            RATE_LIMIT_SCRIPT,
            [self.k("rate", key)],
            [now_ms, limit.window_ms, limit.requests, expiry],
        )
        return None if int(wait) < 0 else int(wait) / 1000

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        self.rate_limit = rate_limit

    async def next_run_number(self) -> int:
        return int(await self.commands.call("INCR", self.k("run_numbers")))

    async def create_run(
        self, run: Run, key: KeySettings, account: AccountSettings, now_ms: int
    ) -> None:
        refund = pending_refund(run)
        optional = [key.usage_quota, spend_limit_micro(key)]
        outcome = await self.commands.run(
            CREATE_SCRIPT,
            [
                self.k("ledger", account.name),
                self.k("refunds", account.name),
                self.k("accounts"),
                self.k("run", run.id),
                self.k("file", run.file_name),
                self.k("runs"),
                self.k("runs", account.name),
            ],
            [
                now_ms,
                key.key,
                run.cost_usd,
                *("" if limit is None else limit for limit in optional),
                account.starting_balance_usd,
                account.name,
                run.id,
                dump_run(run),
                self.run_ttl_ms,
                self.wall_clock(),
                "" if refund is None else refund_member(run),
                "" if refund is None else refund.fails_at_ms,
            ],
        )
        if outcome[0] == "taken":
            raise RunNameTaken(run.id)
        if outcome[0] == "quota":
            raise usage_exceeded()
        if outcome[0] == "spend":
            raise spend_limit_exceeded()
        if outcome[0] == "balance":
            raise insufficient_balance(run.cost_usd, int(outcome[1]))

    async def replace_run(self, run: Run, now_ms: int) -> None:
        await self.settle(run.account, now_ms)
        async with self.redis.pipeline(transaction=True) as pipe:
            self.queue_replacement(pipe, run)
            await pipe.execute()

    async def force_run(
        self, run_id: str, move: Callable[[Run], Run | None], now_ms: int
    ) -> Run | None:
        """Read, move and write back under WATCH of the run (as ``count_poll``): a move that
        raced another process's change of the run (a poll counted, another move, a reset)
        is worked out again from the run as it is then."""
        before = await self.get_run(run_id)
        if before is None:
            return None
        await self.settle(before.account, now_ms)  # a run's account never changes
        key = self.k("run", run_id)
        moved: Run | None = None

        async def attempt(pipe: Any) -> None:
            nonlocal moved
            run = load_run(await pipe.get(key))
            moved = None if run is None else move(run)
            pipe.multi()
            if moved is not None:
                self.queue_replacement(pipe, moved)

        await self.transaction(attempt, key)
        return moved

    def queue_replacement(self, pipe: Any, run: Run) -> None:
        """The writes that put ``run`` in place of its stored self (if it is still stored),
        with its pending refund."""
        refund = pending_refund(run)
        pipe.set(self.k("run", run.id), dump_run(run), xx=True, keepttl=True)
        if refund is None:
            pipe.zrem(self.k("refunds", run.account), refund_member(run))
        else:
            pipe.zadd(self.k("refunds", run.account), {refund_member(run): refund[0]})

    async def count_poll(self, run_id: str, now_ms: int) -> Run | None:
        """Read, count and write back under WATCH of the run: a process whose poll raced
        another's reads the run again, so no count is lost or doubled. Its refund changes with
        it (a run that moved had not failed yet: no refund of it was due to be settled)."""
        key = self.k("run", run_id)
        counted: Run | None = None

        async def attempt(pipe: Any) -> None:
            nonlocal counted
            run = load_run(await pipe.get(key))
            counted = None if run is None else polled(run, now_ms)
            pipe.multi()
            if run is None or counted is None or counted is run:
                return  # gone, or timed by the clock: nothing to write
            pipe.set(key, dump_run(counted), xx=True, keepttl=True)
            refund = pending_refund(counted)
            if refund != pending_refund(run):
                refunds, member = self.k("refunds", run.account), refund_member(run)
                if refund is None:
                    pipe.zrem(refunds, member)
                else:
                    pipe.zadd(refunds, {member: refund.fails_at_ms})

        await self.transaction(attempt, key)
        return counted

    async def get_run(self, run_id: str) -> Run | None:
        return load_run(await self.commands.call("GET", self.k("run", run_id)))

    async def get_run_by_file(self, file_name: str) -> Run | None:
        run_id = await self.commands.call("GET", self.k("file", file_name))
        return await self.get_run(run_id) if run_id else None

    async def list_runs(
        self, account: str | None, limit: int, keep: Callable[[Run], bool] | None = None
    ) -> list[Run]:
        """Pages of the index, newest first, until ``limit`` runs are kept. A run created
        meanwhile moves the older ones down a rank: a page may repeat a run, never skip one."""
        index = self.k("runs") if account is None else self.k("runs", account)
        page = limit if keep is None else max(limit, self.list_page)
        found: dict[str, Run] = {}
        start = 0
        while len(found) < limit:
            ids = await self.redis.zrevrange(index, start, start + page - 1)
            for run in await self.load_runs(ids):
                if run is not None and run.id not in found and (keep is None or keep(run)):
                    found[run.id] = run
            if len(ids) < page:
                break
            start += page
        return list(found.values())[:limit]

    async def ledgers(self, account: str, now_ms: int) -> AccountState:
        await self.settle(account, now_ms)
        return account_state(await self.redis.hgetall(self.k("ledger", account)))

    async def account_names(self) -> list[str]:
        return sorted(await self.redis.smembers(self.k("accounts")))

    async def settle(self, account: str, now_ms: int) -> None:
        """Refund the account's runs that have failed by ``now_ms``, each once."""
        await self.commands.run(
            SETTLE_SCRIPT, [self.k("refunds", account), self.k("ledger", account)], [now_ms]
        )

    # --- rules ---------------------------------------------------------------------------------

    async def add_rule(self, body: dict[str, Any], seed: int) -> Rule:
        number = await self.redis.incr(self.k("rules", "next"))
        rule = rule_from_body(body, number, seed)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.k("rules"), rule.id, orjson.dumps({"body": body, "seed": rule.seed}))
            pipe.set(self.k("rules", "version"), new_token())
            await pipe.execute()
        return rule

    async def add_rules_once(self, bodies: list[dict[str, Any]], seed: int) -> None:
        if await self.redis.set(self.k("rules", "seeded"), 1, nx=True):
            for body in bodies:
                await self.add_rule(dict(body), seed)

    async def rules(self, account: str | None) -> list[Rule]:
        rules = await self.read_rules()
        async with self.redis.pipeline(transaction=False) as pipe:
            for rule in rules:
                pipe.hgetall(self.k("rule", rule.id))
            counts = await pipe.execute()
        found = []
        for rule, count in zip(rules, counts, strict=True):
            if account is None or rule.account == account:
                fresh = rule_from_body(rule.body, rule.number, rule.seed)
                fresh.matches = int(count.get("matches", 0))
                fresh.hits = int(count.get("hits", 0))
                found.append(fresh)
        return found

    async def first_firing(self, rules: list[Rule], context: RuleContext) -> Rule | None:
        for rule in rules:
            if not rule.applies_to(context):
                continue
            budget = [rule.times, rule.every, rule.probability]
            args = ["" if a is None else repr(a) for a in budget] + [str(rule.seed), rule.identity]
            fired = await self.commands.run(FIRE_RULE_SCRIPT, [self.k("rule", rule.id)], args)
            if fired:
                return rule
        return None

    async def delete_rules(self, account: str | None, rule_id: str | None) -> int:
        doomed = [
            rule.id
            for rule in await self.read_rules()
            if (account is None or rule.account == account) and rule_id in (None, rule.id)
        ]
        if not doomed:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.k("rules"), *doomed)
            pipe.delete(*(self.k("rule", rule) for rule in doomed))
            pipe.set(self.k("rules", "version"), new_token())
            deleted, *_ = await pipe.execute()
        return int(deleted)

    async def read_rules(self) -> list[Rule]:
        """Every rule, in the order added, with the version token it was read at."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.k("rules", "version"))
            pipe.hgetall(self.k("rules"))
            version, raw = await pipe.execute()
        rules = []
        for rule_id, text in raw.items():
            stored = orjson.loads(text)
            number = int(rule_id.removeprefix("rule_"))
            rules.append(rule_from_body(stored["body"], number, stored["seed"]))
        rules.sort(key=lambda rule: rule.number)
        self._rules = (version, rules)
        return rules

    # --- the journal ---------------------------------------------------------------------------

    def record_soon(self, exchange: Exchange) -> Awaitable[None]:
        return self.record(exchange)

    async def record(self, exchange: Exchange) -> None:
        """Append one exchange; a journal entry lost to an outage never fails the request."""
        entry = exchange.entry(0)
        data = {name: getattr(entry, name) for name in JOURNAL_FIELDS}
        try:
            await self.commands.run(
                JOURNAL_APPEND_SCRIPT,
                [self.k("journal"), self.k("journal", "seq")],
                [self.journal_size, orjson.dumps(data)],
            )
        except self.unavailable_errors as error:
            log.warning("journal entry lost, Redis unavailable: %s", error)

    async def journal(self, selection: JournalFilter) -> list[JournalEntry]:
        return selection.select([entry for _, entry in await self.journal_entries()])

    async def clear_journal(self, account: str | None) -> None:
        if account is None:
            await self.redis.delete(self.k("journal"))
            return
        doomed = [
            stream_id
            for stream_id, entry in await self.journal_entries()
            if entry.account == account
        ]
        if doomed:
            await self.redis.xdel(self.k("journal"), *doomed)

    async def journal_entries(self) -> list[tuple[str, JournalEntry]]:
        found = await self.redis.xrange(self.k("journal"))
        return [
            (stream_id, JournalEntry(seq=int(data["seq"]), **orjson.loads(data["entry"])))
            for stream_id, data in found
        ]

    # --- reset ---------------------------------------------------------------------------------

    async def reset(self, account: str | None = None) -> None:
        if account is None:
            await self.forget_everything()
            return
        run_ids = await self.redis.zrange(self.k("runs", account), 0, -1)
        runs = [run for run in await self.load_runs(run_ids) if run is not None]
        ledger = await self.redis.hgetall(self.k("ledger", account))
        keys = {field.partition(":")[2] for field in ledger if ":" in field}
        async with self.redis.pipeline(transaction=True) as pipe:
            if run_ids:
                pipe.zrem(self.k("runs"), *run_ids)
                pipe.delete(*(self.k("run", run_id) for run_id in run_ids))
            for run in runs:
                pipe.delete(self.k("file", run.file_name))
            for key in keys:
                pipe.delete(self.k("rate", key))
            for name in ("runs", "ledger", "refunds"):
                pipe.delete(self.k(name, account))
            pipe.srem(self.k("accounts"), account)
            await pipe.execute()
        await self.delete_rules(account, None)
        await self.clear_journal(account)

    async def forget_everything(self) -> None:
        """Delete every key of this mock, then change the version tokens (never deleted, so a
        process holding a cache from before the reset cannot mistake it for a current one)."""
        versions = {self.k("overrides", "version"), self.k("rules", "version")}
        doomed = [key async for key in self.redis.scan_iter(match=self.prefix + "*", count=1000)]
        doomed = [key for key in doomed if key not in versions]
        async with self.redis.pipeline(transaction=True) as pipe:
            for start in range(0, len(doomed), 1000):
                pipe.unlink(*doomed[start : start + 1000])
            for version in versions:
                pipe.set(version, new_token())
            await pipe.execute()

    # --- the state as one document ---------------------------------------------------------

    async def export_state(self, now_ms: int) -> StoredState:
        """Read piece by piece, not in one transaction: take it while the mock is quiet."""
        names = await self.account_names()
        for name in names:
            await self.settle(name, now_ms)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self.k("runs"), 0, -1)
            pipe.hgetall(self.k("overrides"))
            pipe.get(self.k("run_numbers"))
            pipe.get(self.k("rules", "next"))
            for name in names:
                pipe.hgetall(self.k("ledger", name))
                pipe.zrange(self.k("refunds", name), 0, -1, withscores=True)
            run_ids, overrides, run_numbers, rule_numbers, *per_account = await pipe.execute()
        refunds = {}
        for name, pending in zip(names, per_account[1::2], strict=True):
            for member, fails_at in pending:
                cost, run_id, key = member.split(":", 2)
                refunds[run_id] = PendingRefund(int(fails_at), name, key, int(cost))
        return StoredState(
            runs=[run for run in await self.load_runs(run_ids) if run is not None],
            overrides=parse_overrides(overrides),
            ledgers={
                name: account_state(raw) for name, raw in zip(names, per_account[::2], strict=True)
            },
            refunds=refunds,
            rules=await self.rules(None),
            run_numbers=int(run_numbers or 0),
            rule_numbers=int(rule_numbers or 0),
        )

    async def import_state(self, state: StoredState) -> None:
        """One transaction: every key of the mock but the journal's and the clock's is replaced.
        The runs' index scores (their time of storing) are now, a millisecond apart, in order."""
        kept = {self.k("journal"), self.k("journal", "seq"), self.k("clock")}
        versions = {self.k("overrides", "version"), self.k("rules", "version")}
        doomed = [
            key
            async for key in self.redis.scan_iter(match=self.prefix + "*", count=1000)
            if key not in kept | versions
        ]
        now = self.wall_clock()
        async with self.redis.pipeline(transaction=True) as pipe:
            for start in range(0, len(doomed), 1000):
                pipe.unlink(*doomed[start : start + 1000])
            for version in versions:
                pipe.set(version, new_token())
            for name, override in state.overrides.items():
                pipe.hset(self.k("overrides"), name, orjson.dumps(override.to_data()))
            for name, ledger in state.ledgers.items():
                pipe.hset(self.k("ledger", name), mapping=ledger_fields(ledger))
                pipe.sadd(self.k("accounts"), name)
            for age, run in enumerate(reversed(state.runs)):
                stored_at = now - age
                pipe.set(self.k("run", run.id), dump_run(run), px=self.run_ttl_ms)
                pipe.set(self.k("file", run.file_name), run.id, px=self.run_ttl_ms)
                for index in (self.k("runs"), self.k("runs", run.account)):
                    pipe.zadd(index, {run.id: stored_at})
            for run_id, refund in state.refunds.items():
                member = member_of(run_id, refund.cost_usd, refund.key)
                pipe.zadd(self.k("refunds", refund.account), {member: refund.fails_at_ms})
            for rule in state.rules:
                stored = orjson.dumps({"body": rule.body, "seed": rule.seed})
                pipe.hset(self.k("rules"), rule.id, stored)
                counts = {"matches": rule.matches, "hits": rule.hits}
                pipe.hset(self.k("rule", rule.id), mapping=counts)
            pipe.set(self.k("rules", "seeded"), 1)
            pipe.set(self.k("rules", "next"), state.rule_numbers)
            pipe.set(self.k("run_numbers"), state.run_numbers)
            await pipe.execute()

    async def load_runs(self, run_ids: list[str]) -> list[Run | None]:
        if not run_ids:
            return []
        found = await self.redis.mget([self.k("run", run_id) for run_id in run_ids])
        return [load_run(text) for text in found]

    async def transaction(self, attempt: Callable[[Any], Awaitable[None]], watched: str) -> None:
        """Run ``attempt`` (reads, then ``pipe.multi()`` and writes) under WATCH until no other
        process changed ``watched`` in between."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(watched)
                    await attempt(pipe)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    def virtual_clock(self, start: str | int) -> SharedVirtualClock:
        return SharedVirtualClock(self, start)


class StoreUnreachable(ConnectionError):
    """The store did not answer at start-up. A ``ConnectionError`` (an ``OSError``), so
    ``mock-runbase serve`` prints its one line and exits 2."""


def is_refusal(error: Exception) -> bool:
    """Redis answered, and said no (a wrong password or user): waiting will not help."""
    return isinstance(error, AuthenticationError | AuthorizationError)


def wait_until_answering(
    ping: Callable[[], object],
    *,
    timeout_s: float,
    retry_s: float,
    on_retry: Callable[[Exception], None] = lambda error: None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``ping`` until it returns; retry every ``retry_s`` while Redis cannot be reached
    (``on_retry`` told of the first failure), raise its error once ``timeout_s`` is spent.
    Any other error (a refusal, a reply that is not Redis') is raised at once."""
    deadline = monotonic() + timeout_s
    told = False
    while True:
        try:
            ping()
            return
        except (RedisConnectionError, RedisTimeoutError) as error:
            if is_refusal(error) or monotonic() + retry_s > deadline:
                raise
            if not told:
                on_retry(error)
                told = True
        sleep(retry_s)


USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")
PASSWORD_PARAMETER = re.compile(r"(?i)([?&]password=)[^&#]*")


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the user part or a query parameter),
    fit for a log line or an error message."""

    def userinfo(match: re.Match[str]) -> str:
        user, has_password, _ = match[2].partition(":")
        return f"{match[1]}{user}:***@" if has_password else f"{match[1]}***@"

    return PASSWORD_PARAMETER.sub(r"\1***", USERINFO.sub(userinfo, url, count=1))


class SharedVirtualClock:
    """The virtual clock of every process sharing a ``RedisStore``: one key in Redis."""

    virtual = True

    def __init__(self, store: RedisStore, start: str | int) -> None:
        self.redis = store.redis
        self.commands = store.commands
        self.start_ms = parse_timestamp(start) if isinstance(start, str) else start
        self.key = store.k("clock")

    async def now(self) -> int:
        return int(await self.commands.run(CLOCK_READ_SCRIPT, [self.key], [self.start_ms]))

    async def move_by(self, seconds: float) -> int:
        if not seconds >= 0:
            raise ValueError("a virtual clock only moves forward")
        return await self.move(round(seconds * 1000), "")

    async def move_to(self, when_ms: int) -> int:
        return await self.move(0, str(when_ms))

    async def move(self, delta_ms: int, target: str) -> int:
        try:
            moved = await self.commands.run(
                CLOCK_MOVE_SCRIPT, [self.key], [self.start_ms, delta_ms, target]
            )
        except redis.ResponseError as error:
            raise ValueError(str(error)) from None
        return int(moved)

    async def rewind(self) -> None:
        await self.redis.set(self.key, self.start_ms)

    async def restore(self, when_ms: int) -> None:
        await self.redis.set(self.key, when_ms)


JOURNAL_FIELDS = [f.name for f in fields(JournalEntry) if f.name != "seq"]


def dump_run(run: Run) -> bytes:
    return orjson.dumps({name: getattr(run, name) for name in RUN_FIELDS})


def load_run(text: str | None) -> Run | None:
    return None if text is None else Run(**orjson.loads(text))


def refund_member(run: Run) -> str:
    return member_of(run.id, run.cost_usd, run.key)


def member_of(run_id: str, cost_usd: int, key: str) -> str:
    """cost:run_id:key (the key last: it is the only part that may contain a colon)."""
    return f"{cost_usd}:{run_id}:{key}"


def parse_overrides(raw: dict[str, str]) -> dict[str, AccountOverride]:
    return {name: AccountOverride.from_data(orjson.loads(text)) for name, text in raw.items()}


def ledger_fields(state: AccountState) -> dict[str, int]:
    """The ledger hash of ``state`` (``account_state`` reads it back)."""
    fields = {"charged": state.ledger.charged, "refunded": state.ledger.refunded}
    fields["runs"] = state.ledger.runs
    for key, ledger in state.keys.items():
        fields |= {f"charged:{key}": ledger.charged, f"refunded:{key}": ledger.refunded}
        fields[f"runs:{key}"] = ledger.runs
    return fields


def account_state(raw: dict[str, str]) -> AccountState:
    """A ledger hash (``charged``, ``refunded``, ``runs``; ``<field>:<key>`` per key)."""
    state = AccountState()
    for name, value in raw.items():
        field_name, _, key = name.partition(":")
        ledger = state.ledger if not key else state.keys.setdefault(key, Ledger())
        setattr(ledger, field_name, int(value))
    return state
