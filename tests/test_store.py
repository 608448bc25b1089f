"""The store's contract, run against both implementations: in-memory and Redis (a real
redis-server). Whatever the mock's behaviour depends on is checked here, so the two stores
cannot drift apart."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_runbase.accounts import (
    AccountOverride,
    AccountSettings,
    ConfigError,
    Directory,
    KeySettings,
)
from mock_runbase.errors import RunbaseError
from mock_runbase.journal_records import JournalEntry, JournalFilter
from mock_runbase.ratelimit import MovingWindowLimiter, RateLimit
from mock_runbase.redis_store import RedisStore, dump_run
from mock_runbase.rules import Rule, RuleContext, fires_at, rule_from_body
from mock_runbase.runs import (
    PollPlan,
    Run,
    completed_ms,
    forced,
    new_token,
    poll_status,
    status_at,
    until_polled,
)
from mock_runbase.store import MemoryStore, PendingRefund, RunNameTaken, Store
from tests.redis_server import RedisServer

T = TypeVar("T")
# One store per test, shared by its examples: each example uses a fresh key or rule.
shared_store = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
START = 1_780_000_000_000
COST = 30_000
LIMIT = RateLimit(requests=5, window_ms=10_000)


class Harness:
    """One store (and, for Redis, a second client of the same data, as a second process
    would be) on one event loop, driven from sync tests and hypothesis."""

    def __init__(self, kind: str, redis_url: str | None) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.loop = asyncio.new_event_loop()
        self.wall_ms = START
        self.prefix = f"test-{new_token(8)}:"
        self.store = self.new_store()

    def new_store(self, rate_limit: RateLimit | None = LIMIT, **options: Any) -> Store:
        wall = {"wall_clock": lambda: self.wall_ms}
        if self.kind == "memory":
            return MemoryStore(rate_limit, **{**wall, **options})
        if self.kind == "packed":  # all but the last run stored or read kept packed
            return MemoryStore(rate_limit, **{**wall, "hot_runs": 1, **options})
        assert self.redis_url is not None
        return RedisStore(self.redis_url, rate_limit, prefix=self.prefix, **{**wall, **options})

    def peer(self) -> Store:
        """Another process' view of the same state (the same store itself, in memory)."""
        return self.new_store() if self.kind == "redis" else self.store

    def run(self, step: Awaitable[T]) -> T:
        return self.loop.run_until_complete(step)

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


@pytest.fixture(params=["memory", "packed", "redis"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    made = Harness(request.param, url)
    yield made
    made.close()


def make_run(
    account: str = "acct_a",
    key: str = "sk-a",
    *,
    outcome: str = "succeeded",
    created_ms: int = START,
    processing_ms: int | None = 1000,
    cost: int = COST,
) -> Run:
    return Run(
        id="run_" + new_token(),
        account=account,
        key=key,
        model="openai/gpt-image-2",
        input={"prompt": "a lighthouse at dawn", "resolution": "1K"},
        cost_usd=cost,
        created_ms=created_ms,
        pending_ms=500,
        processing_ms=processing_ms,
        outcome=outcome,  # type: ignore[arg-type]
        error={"message": "failed", "code": "x"} if outcome == "failed" else None,
        width=1024,
        height=1024,
        file_name=new_token(20),
        image_seed=1,
        scenario="succeed",
    )


def settings_for(balance: int, account: str = "acct_a") -> AccountSettings:
    return AccountSettings(name=account, starting_balance_usd=balance)


def key_for(token: str = "sk-a", account: str = "acct_a", **limits: Any) -> KeySettings:
    return KeySettings(key=token, account=account, **limits)


def create(h: Harness, run: Run, balance: int = 10 * COST, **limits: Any) -> None:
    key = key_for(run.key, run.account, **limits)
    h.run(h.store.create_run(run, key, settings_for(balance, run.account), run.created_ms))


def balance_of(h: Harness, account: str = "acct_a", now: int = START) -> tuple[int, int, int]:
    state = h.run(h.store.ledgers(account, now))
    return state.ledger.charged, state.ledger.refunded, state.ledger.runs


# --- runs and money ----------------------------------------------------------------------------


def test_a_created_run_is_charged_and_found_by_id_and_file(harness: Harness) -> None:
    run = make_run()
    create(harness, run)
    peer = harness.peer()
    assert harness.run(peer.get_run(run.id)) == run
    assert harness.run(peer.get_run_by_file(run.file_name)) == run
    assert harness.run(peer.get_run("run_missing")) is None
    assert balance_of(harness) == (COST, 0, 1)
    state = harness.run(peer.ledgers("acct_a", START))
    assert state.key("sk-a").charged == COST and state.key("sk-a").runs == 1
    assert harness.run(peer.account_names()) == ["acct_a"]


@pytest.mark.parametrize(
    ("limits", "balance", "code"),
    [
        ({"usage_quota": 1}, 10 * COST, "USAGE_EXCEEDED"),
        ({"spend_limit_cents": COST // 10_000}, 10 * COST, "api_key_spend_limit_exceeded"),
        ({}, COST + COST // 2, "insufficient_balance"),
    ],
)
def test_a_rejected_charge_changes_nothing(
    harness: Harness, limits: dict[str, Any], balance: int, code: str
) -> None:
    create(harness, make_run(), balance, **limits)
    refused = make_run()
    with pytest.raises(RunbaseError) as raised:
        create(harness, refused, balance, **limits)
    assert raised.value.code == code
    assert harness.run(harness.store.get_run(refused.id)) is None
    assert balance_of(harness) == (COST, 0, 1)


def test_a_failed_run_is_refunded_once_at_the_instant_it_fails(harness: Harness) -> None:
    run = make_run(outcome="failed")  # fails at START + 1500
    create(harness, run)
    assert balance_of(harness, now=START + 1499) == (COST, 0, 1)
    assert balance_of(harness, now=START + 1500) == (COST, COST, 1)
    assert balance_of(harness, now=START + 9999) == (COST, COST, 1)
    assert harness.run(harness.peer().ledgers("acct_a", START + 9999)).key("sk-a").refunded == COST


def test_a_changed_fate_moves_or_cancels_the_refund(harness: Harness) -> None:
    doomed, saved = make_run(outcome="failed"), make_run(outcome="failed")
    create(harness, doomed)
    create(harness, saved)
    now = START + 600  # both processing
    harness.run(harness.store.replace_run(forced(doomed, "failed", now, None), now))
    harness.run(harness.store.replace_run(forced(saved, "succeeded", now, None), now))
    assert balance_of(harness, now=now) == (2 * COST, COST, 2)
    assert balance_of(harness, now=START + 10_000) == (2 * COST, COST, 2)


def test_a_balance_never_goes_below_zero_under_concurrent_creates(harness: Harness) -> None:
    stores = [harness.store, harness.peer(), harness.peer()]
    balance = 7 * COST
    outcomes: list[str] = []

    async def one(store: Store, index: int) -> None:
        run = make_run(key=f"sk-{index}", outcome="failed" if index % 5 == 0 else "succeeded")
        try:
            await store.create_run(run, key_for(run.key), settings_for(balance), START)
            outcomes.append(run.outcome)
        except RunbaseError as error:
            outcomes.append(error.code)

    async def race() -> None:
        await asyncio.gather(*(one(stores[i % 3], i) for i in range(40)))

    harness.run(race())
    assert outcomes.count("insufficient_balance") == 40 - 7
    charged, refunded, runs = balance_of(harness, now=START)
    assert (charged, refunded, runs) == (7 * COST, 0, 7)
    failed = outcomes.count("failed")
    assert balance_of(harness, now=START + 10_000) == (7 * COST, failed * COST, 7)


def timed_by_polls(run: Run, pending: int, processing: int | None) -> Run:
    pending_ms, processing_ms = until_polled(PollPlan(pending, processing))
    return replace(
        run,
        pending_ms=pending_ms,
        processing_ms=processing_ms,
        polls=0,
        pending_polls=pending,
        processing_polls=processing,
    )


def test_polls_are_counted_once_each_under_concurrent_processes(harness: Harness) -> None:
    run = timed_by_polls(make_run(outcome="failed"), 10, 10)
    create(harness, run)
    create(harness, make_run())  # the packed store: the run timed by polls is packed now
    stores = [harness.store, harness.peer(), harness.peer()]
    now = START + 1000

    async def race() -> list[Run | None]:
        return await asyncio.gather(*(stores[i % 3].count_poll(run.id, now) for i in range(30)))

    counted = [found for found in harness.run(race()) if found is not None]
    assert sorted(found.polls or 0 for found in counted) == list(range(1, 31))
    for found in counted:  # each the run after its own poll
        assert status_at(found, now) == poll_status(found, found.polls or 0)
    stored = harness.run(harness.peer().get_run(run.id))
    assert stored is not None and stored.polls == 30 and status_at(stored, now) == "failed"
    assert completed_ms(stored) == now
    assert balance_of(harness, now=now) == (2 * COST, COST, 2)  # refunded once
    assert balance_of(harness, now=START + 10**9) == (2 * COST, COST, 2)


def test_a_poll_counted_of_a_run_timed_by_the_clock_or_of_none_changes_nothing(
    harness: Harness,
) -> None:
    run = make_run(outcome="failed")
    create(harness, run)
    assert harness.run(harness.store.count_poll(run.id, START + 600)) == run
    assert harness.run(harness.peer().get_run(run.id)) == run
    assert harness.run(harness.store.count_poll("run_missing", START)) is None
    assert balance_of(harness, now=START + 1500) == (COST, COST, 1)


def test_a_poll_that_moves_a_run_on_schedules_or_cancels_its_refund(harness: Harness) -> None:
    ends_now = timed_by_polls(make_run(outcome="failed"), 0, 1)
    failing_later = make_run(outcome="failed")  # pending until START + 500, fails at + 1500...
    held = replace(failing_later, polls=0, pending_polls=0, processing_polls=None)
    create(harness, ends_now)
    create(harness, held)  # ...unless a poll holds it processing first
    now = START + 400
    for _ in range(2):
        harness.run(harness.store.count_poll(ends_now.id, now))
    harness.run(harness.store.count_poll(held.id, now))
    assert balance_of(harness, now=now) == (2 * COST, COST, 2)
    assert balance_of(harness, now=START + 10**9) == (2 * COST, COST, 2)
    stored = harness.run(harness.peer().get_run(held.id))
    assert stored is not None and status_at(stored, START + 10**9) == "processing"


def test_runs_are_listed_newest_first_per_account(harness: Harness) -> None:
    made = []
    for index in range(5):
        harness.wall_ms = START + index
        run = make_run(account="acct_a" if index % 2 == 0 else "acct_b")
        create(harness, run)
        made.append(run)
    ids = [run.id for run in harness.run(harness.peer().list_runs(None, 10))]
    assert ids == [run.id for run in reversed(made)]
    only_a = harness.run(harness.store.list_runs("acct_a", 2))
    assert [run.id for run in only_a] == [made[4].id, made[2].id]


@given(
    outcomes=st.lists(st.sampled_from(["succeeded", "failed"]), max_size=12),
    limit=st.integers(1, 5),
)
@shared_store
def test_a_filtered_listing_is_the_newest_kept_runs_across_pages(
    harness: Harness, outcomes: list[str], limit: int
) -> None:
    if isinstance(harness.store, RedisStore):
        harness.store.list_page = 3  # several pages for a dozen runs
    account = f"acct_{new_token(8)}"
    made = []
    for outcome in outcomes:
        harness.wall_ms += 1
        run = make_run(account=account, key=f"sk-{account}", outcome=outcome)
        create(harness, run, balance=100 * COST)
        made.append(run)
    failed_newest_first = [run.id for run in reversed(made) if run.outcome == "failed"]
    listed = harness.run(
        harness.store.list_runs(account, limit, lambda run: run.outcome == "failed")
    )
    assert [run.id for run in listed] == failed_newest_first[:limit]
    unfiltered = harness.run(harness.store.list_runs(account, limit))
    assert [run.id for run in unfiltered] == [run.id for run in reversed(made)][:limit]


def test_runs_are_forgotten_after_their_ttl_but_their_money_is_not(harness: Harness) -> None:
    harness.store = harness.new_store(run_ttl_ms=60_000)
    old = make_run(outcome="failed", processing_ms=None)  # stuck: never refunded by itself
    create(harness, old)
    harness.wall_ms += 60_001
    create(harness, make_run())
    if harness.kind == "redis":  # Redis expires keys on its own clock: check the deadline
        store = harness.store
        assert isinstance(store, RedisStore)
        ttl = harness.run(store.redis.pttl(store.k("run", old.id)))
        assert 0 < ttl <= 60_000
        harness.run(store.redis.delete(store.k("run", old.id), store.k("file", old.file_name)))
    assert harness.run(harness.store.get_run(old.id)) is None
    assert harness.run(harness.store.get_run_by_file(old.file_name)) is None
    assert [run.id for run in harness.run(harness.store.list_runs(None, 10))] != [old.id]
    assert len(harness.run(harness.store.list_runs(None, 10))) == 1
    assert balance_of(harness) == (2 * COST, 0, 2)


def pass_the_ttl(h: Harness, run: Run, stored_at: int, ttl_ms: int) -> None:
    """Make ``run`` (stored at wall time ``stored_at``) exactly ``ttl_ms`` old. Redis expires
    keys on its own clock, which a test cannot move: check that its deadline is set, then
    do what Redis does at the deadline."""
    h.wall_ms = stored_at + ttl_ms
    if h.kind == "redis":
        store = h.store
        assert isinstance(store, RedisStore)
        for key in (store.k("run", run.id), store.k("file", run.file_name)):
            assert 0 < h.run(store.redis.pttl(key)) <= ttl_ms
        h.run(store.redis.delete(store.k("run", run.id), store.k("file", run.file_name)))


def test_a_run_past_its_ttl_is_gone_for_every_read_before_any_create(harness: Harness) -> None:
    harness.store = harness.new_store(run_ttl_ms=60_000)
    old = make_run(outcome="failed", processing_ms=None)
    create(harness, old)
    harness.wall_ms += 30_000
    young = make_run(created_ms=START + 30_000)
    create(harness, young)
    assert harness.run(harness.store.get_run(old.id)) == old
    pass_the_ttl(harness, old, START, 60_000)
    store = harness.store
    assert harness.run(store.get_run(old.id)) is None
    assert harness.run(store.get_run_by_file(old.file_name)) is None
    for account in (None, "acct_a"):
        assert harness.run(store.list_runs(account, 10)) == [young]
        assert harness.run(store.list_runs(account, 10, lambda run: True)) == [young]
    harness.run(store.replace_run(forced(old, "failed", START + 1, None), START + 1))
    assert harness.run(store.get_run(old.id)) is None  # a forced state brings nothing back
    assert harness.run(store.get_run(young.id)) == young
    assert balance_of(harness, now=START + 2) == (2 * COST, COST, 2)  # the money stays


@given(
    gaps=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=12),
    ttl_ms=st.integers(min_value=1, max_value=100),
    read_after=st.integers(min_value=0, max_value=150),
    hot_runs=st.integers(min_value=1, max_value=5),
)
def test_memory_reads_agree_with_the_sweep_at_every_instant(
    gaps: list[int], ttl_ms: int, read_after: int, hot_runs: int
) -> None:
    """A run is readable exactly while it is younger than the TTL, whether or not a create
    has swept the expired ones out since (the Redis store cannot run this: its keys expire on
    Redis' own clock)."""
    wall = [START]
    store = MemoryStore(None, run_ttl_ms=ttl_ms, wall_clock=lambda: wall[0], hot_runs=hot_runs)
    stored: list[tuple[int, Run]] = []
    for gap in gaps:
        wall[0] += gap
        run = make_run(created_ms=wall[0])
        asyncio.run(store.create_run(run, key_for(), settings_for(10**12), wall[0]))
        stored.append((wall[0], run))
    wall[0] += read_after
    kept = [run for at, run in reversed(stored) if wall[0] - at < ttl_ms]

    def readable() -> list[Run]:
        by_id = [run for _, run in reversed(stored) if asyncio.run(store.get_run(run.id))]
        by_file = [
            run for _, run in reversed(stored) if asyncio.run(store.get_run_by_file(run.file_name))
        ]
        assert by_id == by_file == asyncio.run(store.list_runs(None, 100))
        return by_id

    assert readable() == kept
    sweeper = make_run(created_ms=wall[0])
    asyncio.run(store.create_run(sweeper, key_for(), settings_for(10**12), wall[0]))
    stored.append((wall[0], sweeper))
    assert readable() == [sweeper, *kept]


# --- rate limit --------------------------------------------------------------------------------


@shared_store
@given(gaps=st.lists(st.integers(min_value=0, max_value=4_000), min_size=1, max_size=30))
def test_the_rate_limit_is_the_moving_window_of_the_reference(
    harness: Harness, gaps: list[int]
) -> None:
    reference = MovingWindowLimiter(LIMIT)
    key = "sk-" + new_token(8)
    peer = harness.peer()
    now = START
    for index, gap in enumerate(gaps):
        now += gap
        store = harness.store if index % 2 == 0 else peer
        assert harness.run(store.hit_rate_limit(key, now)) == reference.hit(key, now)


def test_no_rate_limit_allows_everything(harness: Harness) -> None:
    harness.store = harness.new_store(rate_limit=None)
    assert all(harness.run(harness.store.hit_rate_limit("sk-a", START)) is None for _ in range(50))


# --- rules -------------------------------------------------------------------------------------


@shared_store
@given(
    times=st.none() | st.integers(min_value=0, max_value=6),
    every=st.none() | st.integers(min_value=1, max_value=4),
    probability=st.none() | st.floats(min_value=0, max_value=1),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_rules_fire_exactly_as_the_pure_model_says(
    harness: Harness, times: int | None, every: int | None, probability: float | None, seed: int
) -> None:
    body: dict[str, Any] = {"effect": {"scenario": "fail"}, "match": {"key": "sk-" + new_token(8)}}
    for name, value in (("times", times), ("every", every), ("probability", probability)):
        if value is not None:
            body[name] = value
    rule = harness.run(harness.store.add_rule(body, seed))
    context = RuleContext("create", body["match"]["key"], "acct_a", "openai/gpt-image-2", {})
    model = rule_from_body(body, rule.number, seed)
    expected, fired, hits = [], [], 0
    stores = [harness.store, harness.peer()]
    for matches in range(1, 13):
        would = fires_at(model, matches, hits)
        hits += would
        expected.append(would)
        store = stores[matches % 2]
        snapshot = harness.run(store.snapshot(Directory()))
        found = harness.run(store.first_firing(snapshot.rules, context))
        fired.append(found is not None and found.id == rule.id)
    assert fired == expected
    listed = [r for r in harness.run(harness.store.rules(None)) if r.id == rule.id]
    assert (listed[0].matches, listed[0].hits) == (12, hits)
    harness.run(harness.store.delete_rules(None, rule.id))


def test_a_rules_budget_is_never_overspent_by_concurrent_processes(harness: Harness) -> None:
    key = "sk-" + new_token(8)
    body = {"effect": {"scenario": "fail"}, "match": {"key": key}, "times": 5}
    rule = harness.run(harness.store.add_rule(body, 1))
    stores = [harness.store, harness.peer(), harness.peer()]
    context = RuleContext("create", key, "acct_a", "openai/gpt-image-2", {})

    async def one(store: Store) -> bool:
        snapshot = await store.snapshot(Directory())
        return await store.first_firing(snapshot.rules, context) is not None

    async def race() -> list[bool]:
        return await asyncio.gather(*(one(stores[i % 3]) for i in range(30)))

    assert sum(harness.run(race())) == 5
    listed = [r for r in harness.run(harness.store.rules(None)) if r.id == rule.id]
    assert (listed[0].matches, listed[0].hits) == (30, 5)
    harness.run(harness.store.delete_rules(None, rule.id))


def test_a_seeded_rule_draws_the_same_sequence_whatever_rules_come_before_it(
    harness: Harness,
) -> None:
    body = {"effect": {"scenario": "fail"}, "match": {"key": "sk-drawn"}, "probability": 0.5}
    context = RuleContext("create", "sk-drawn", "acct_a", "openai/gpt-image-2", {})

    def fired_after(others: int) -> list[bool]:
        harness.run(harness.store.reset())
        for n in range(others):
            harness.run(
                harness.store.add_rule({"effect": {"scenario": "stuck"}, "times": n + 1}, 7)
            )
        harness.run(harness.store.add_rule(dict(body), 7))
        fired = []
        for _ in range(40):
            rules = harness.run(harness.store.snapshot(Directory())).rules
            fired.append(
                harness.run(harness.store.first_firing(rules[others:], context)) is not None
            )
        return fired

    alone = fired_after(0)
    assert fired_after(3) == alone
    assert 5 < alone.count(True) < 35


def test_file_rules_fire_on_files_only_counted_alike_by_every_process(harness: Harness) -> None:
    api = harness.run(harness.store.add_rule({"effect": {"scenario": "error-500"}}, 0))
    files = harness.run(
        harness.store.add_rule(
            {"match": {"endpoint": "file", "account": "acct_a"}, "effect": {"scenario": "reset"}},
            0,
        )
    )
    run = make_run()
    contexts = {
        "create": RuleContext("create", run.key, run.account, run.model, run.input),
        "get": RuleContext("get", run.key, run.account),
        "file": RuleContext("file", run.key, run.account, run.model, run.input),
        "other file": RuleContext("file", "sk-b", "acct_b", run.model, run.input),
    }
    stores = [harness.store, harness.peer()]
    fired = {}
    for n, (name, context) in enumerate(contexts.items()):
        store = stores[n % 2]
        rules = harness.run(store.snapshot(Directory())).rules
        found = harness.run(store.first_firing(rules, context))
        fired[name] = None if found is None else found.id
    assert fired == {"create": api.id, "get": api.id, "file": files.id, "other file": None}
    listed = {r.id: (r.matches, r.hits) for r in harness.run(harness.peer().rules(None))}
    assert listed == {api.id: (2, 2), files.id: (1, 1)}


def test_rules_are_listed_in_order_scoped_and_deleted(harness: Harness) -> None:
    a = harness.run(harness.store.add_rule({"effect": {"scenario": "fail"}}, 0))
    b = harness.run(
        harness.store.add_rule({"effect": {"scenario": "stuck"}, "match": {"account": "x"}}, 0)
    )
    peer = harness.peer()
    assert [r.id for r in harness.run(peer.rules(None))] == [a.id, b.id]
    assert [r.id for r in harness.run(peer.rules("x"))] == [b.id]
    assert harness.run(peer.delete_rules("x", None)) == 1
    assert [r.id for r in harness.run(harness.store.rules(None))] == [a.id]
    assert harness.run(harness.store.delete_rules(None, "rule_999")) == 0


def test_a_media_rule_and_its_runs_are_kept_alike(harness: Harness) -> None:
    """``effect.media`` survives the store (a shared one keeps the rule's body), matches
    creates of models of its file's kind only, and the run keeps the file it serves."""
    body = {"effect": {"scenario": "succeed", "media": "pets/cat.png"}, "match": {"key": "sk-m"}}
    added = harness.run(harness.store.add_rule(body, 0))
    [listed] = [r for r in harness.run(harness.peer().rules(None)) if r.id == added.id]
    assert listed.media == "pets/cat.png" and listed.view()["effect"] == body["effect"]
    rules = harness.run(harness.peer().snapshot(Directory())).rules
    video = RuleContext("create", "sk-m", "acct_a", "hailuo/pro", {}, "video")
    image = RuleContext("create", "sk-m", "acct_a", "openai/gpt-image-2", {}, "image")
    assert harness.run(harness.peer().first_firing(rules, video)) is None
    assert harness.run(harness.peer().first_firing(rules, image)) is not None
    run = replace(make_run(), media="pets/cat.png", file_name=new_token(20) + ".png")
    create(harness, run)
    assert harness.run(harness.peer().get_run_by_file(run.file_name)) == run


# --- accounts ----------------------------------------------------------------------------------


def test_account_overrides_are_shared_and_keep_keys_not_replaced(harness: Harness) -> None:
    base = Directory(keys={"sk-config": key_for("sk-config", "team")})
    store, peer = harness.store, harness.peer()
    harness.run(store.put_account(base, "team", AccountOverride(5 * COST)))
    seen = harness.run(peer.snapshot(base)).directory
    assert seen.account("team").starting_balance_usd == 5 * COST
    assert [k.key for k in seen.keys_of("team")] == ["sk-config"]
    new_keys = (key_for("sk-new", "team", usage_quota=3),)
    harness.run(peer.put_account(base, "team", AccountOverride(6 * COST, new_keys)))
    harness.run(store.put_account(base, "team", AccountOverride(7 * COST)))
    seen = harness.run(store.snapshot(base)).directory
    assert seen.account("team").starting_balance_usd == 7 * COST
    assert seen.keys_of("team") == list(new_keys)
    assert "sk-config" not in seen.keys


def test_a_polls_snapshot_and_run_are_read_together_and_never_stale(harness: Harness) -> None:
    base = Directory(keys={"sk-config": key_for("sk-config", "team")})
    store, peer = harness.store, harness.peer()
    run = make_run(account="team", key="sk-config")
    create(harness, run)
    snapshot, found = harness.run(peer.snapshot_with_run(base, run.id))
    assert found == run and snapshot.directory.account("team").starting_balance_usd != 5 * COST
    harness.run(store.put_account(base, "team", AccountOverride(5 * COST)))  # peer's cache: old
    snapshot, found = harness.run(peer.snapshot_with_run(base, "run_missing"))
    assert found is None
    assert snapshot.directory.account("team").starting_balance_usd == 5 * COST
    harness.run(store.add_rule({"effect": {"scenario": "fail"}}, 0))
    snapshot, found = harness.run(peer.snapshot_with_run(base, run.id))
    assert found == run and [rule.scenario for rule in snapshot.rules] == ["fail"]


def test_keys_dropped_by_a_put_are_revoked_for_every_process(harness: Harness) -> None:
    base = Directory(keys={"sk-config": key_for("sk-config", "team")})
    store, peer = harness.store, harness.peer()

    def refused(directory: Directory, token: str) -> bool:
        with pytest.raises(RunbaseError) as raised:
            directory.authenticate(f"Bearer {token}", START)
        return (
            raised.value.code == "invalid_api_key"
            and directory.account_of(f"Bearer {token}") == "team"
        )

    harness.run(store.put_account(base, "team", AccountOverride(COST, (key_for("sk-a", "team"),))))
    harness.run(peer.put_account(base, "team", AccountOverride(COST, (key_for("sk-b", "team"),))))
    harness.run(store.put_account(base, "team", AccountOverride(2 * COST)))  # balance only
    seen = harness.run(peer.snapshot(base)).directory
    assert [key.key for key in seen.keys_of("team")] == ["sk-b"]
    assert refused(seen, "sk-config") and refused(seen, "sk-a")
    assert seen.listed_keys("team", ["sk-config", "sk-a", "sk-b"]) == seen.keys_of("team")
    back = (key_for("sk-a", "team"),)
    harness.run(store.put_account(base, "team", AccountOverride(COST, back)))
    seen = harness.run(harness.peer().snapshot(base)).directory
    assert seen.authenticate("Bearer sk-a", START).account == "team"
    assert refused(seen, "sk-b") and refused(seen, "sk-config")
    other = (key_for("sk-b", "other"),)  # a revoked key may be given to another account
    harness.run(peer.put_account(base, "other", AccountOverride(COST, other)))
    seen = harness.run(store.snapshot(base)).directory
    assert seen.authenticate("Bearer sk-b", START).account == "other"


def test_a_key_held_by_another_account_is_refused(harness: Harness) -> None:
    base = Directory(keys={"sk-config": key_for("sk-config", "team")})
    with pytest.raises(ConfigError):
        harness.run(
            harness.store.put_account(
                base, "other", AccountOverride(COST, (key_for("sk-config", "other"),))
            )
        )
    assert harness.run(harness.peer().snapshot(base)).directory.keys["sk-config"].account == "team"


# --- journal and reset -------------------------------------------------------------------------


class FakeExchange:
    """What the journal middleware hands the store."""

    counter = itertools.count()

    def __init__(self, account: str | None, path: str = "/v1/runs") -> None:
        self.account = account
        self.path = path
        self.number = next(self.counter)

    def entry(self, seq: int) -> JournalEntry:
        return JournalEntry(
            seq=seq,
            at_ms=START + self.number,
            method="POST",
            path=self.path,
            query="",
            headers={"authorization": "Bearer ****abcd"},
            body="{}",
            status=200,
            error_code=None,
            run_id=None,
            duration_ms=1.5,
            key_last4="abcd",
            account=self.account,
            dropped=False,
        )


def test_the_journal_is_capped_ordered_and_cleared_per_account(harness: Harness) -> None:
    harness.store = harness.new_store(journal_size=4)
    for account in ["a", "b", "a", "b", "a", "b"]:
        harness.run(harness.store.record(FakeExchange(account)))  # type: ignore[arg-type]
    entries = harness.run(harness.peer().journal(JournalFilter()))
    assert [e.seq for e in entries] == [3, 4, 5, 6]
    assert [e.account for e in harness.run(harness.store.journal(JournalFilter(account="a")))] == [
        "a",
        "a",
    ]
    harness.run(harness.store.clear_journal("a"))
    assert {e.account for e in harness.run(harness.store.journal(JournalFilter()))} == {"b"}
    harness.run(harness.store.clear_journal(None))
    assert harness.run(harness.store.journal(JournalFilter())) == []


def test_reset_of_one_account_leaves_the_others(harness: Harness) -> None:
    mine, theirs = make_run("acct_a", "sk-a"), make_run("acct_b", "sk-b")
    create(harness, mine)
    create(harness, theirs)
    for _ in range(LIMIT.requests):
        harness.run(harness.store.hit_rate_limit("sk-a", START))
        harness.run(harness.store.hit_rate_limit("sk-b", START))
    harness.run(harness.store.reset("acct_a"))
    peer = harness.peer()
    assert harness.run(peer.get_run(mine.id)) is None
    assert harness.run(peer.get_run(theirs.id)) == theirs
    assert balance_of(harness, "acct_a") == (0, 0, 0)
    assert balance_of(harness, "acct_b") == (COST, 0, 1)
    assert harness.run(peer.hit_rate_limit("sk-a", START)) is None
    assert harness.run(peer.hit_rate_limit("sk-b", START)) is not None
    harness.run(harness.store.reset(None))
    assert harness.run(peer.get_run(theirs.id)) is None
    assert harness.run(peer.account_names()) == []


def test_run_numbers_are_handed_out_once_and_start_again_after_a_global_reset(
    harness: Harness,
) -> None:
    stores = [harness.store, harness.peer(), harness.peer()]

    async def take(count: int) -> list[int]:
        return list(await asyncio.gather(*(stores[i % 3].next_run_number() for i in range(count))))

    assert sorted(harness.run(take(30))) == list(range(1, 31))
    harness.run(harness.store.reset("acct_a"))  # one account's reset keeps the sequence
    assert harness.run(harness.peer().next_run_number()) == 31
    harness.run(harness.store.reset(None))
    assert harness.run(harness.peer().next_run_number()) == 1


@pytest.mark.parametrize("taken", ["id", "file_name"])
def test_a_run_name_already_taken_is_refused_and_changes_nothing(
    harness: Harness, taken: str
) -> None:
    first = make_run()
    create(harness, first)
    second = replace(make_run(), **{taken: getattr(first, taken)})
    with pytest.raises(RunNameTaken):
        create(harness, second)
    peer = harness.peer()
    assert harness.run(peer.get_run(first.id)) == first
    assert harness.run(peer.get_run_by_file(first.file_name)) == first
    assert harness.run(peer.get_run(second.id)) == (first if taken == "id" else None)
    assert balance_of(harness) == (COST, 0, 1)


def test_an_expired_runs_name_is_free_again(harness: Harness) -> None:
    harness.store = harness.new_store(run_ttl_ms=60_000)
    first = make_run()
    create(harness, first)
    pass_the_ttl(harness, first, START, 60_000)
    again = replace(make_run(), id=first.id, file_name=first.file_name)
    create(harness, again)
    assert harness.run(harness.peer().get_run(first.id)) == again


def test_journal_numbers_start_again_after_a_global_reset(harness: Harness) -> None:
    for account in ["a", "b"]:
        harness.run(harness.store.record(FakeExchange(account)))  # type: ignore[arg-type]
    harness.run(harness.store.reset("a"))
    harness.run(harness.store.record(FakeExchange("b")))  # type: ignore[arg-type]
    assert [e.seq for e in harness.run(harness.peer().journal(JournalFilter()))] == [2, 3]
    harness.run(harness.store.reset(None))
    harness.run(harness.store.record(FakeExchange("a")))  # type: ignore[arg-type]
    assert [e.seq for e in harness.run(harness.peer().journal(JournalFilter()))] == [1]


# --- the state as a whole ----------------------------------------------------------------------


def a_history(h: Harness) -> tuple[list[Run], int]:
    """Runs of two accounts (one failed already, one failing later, one stuck), an override,
    rules part-way through their budgets, run numbers taken; and the instant it is as of."""
    runs = [
        make_run(outcome="failed"),  # fails at START + 1500
        make_run("acct_b", "sk-b", outcome="failed", created_ms=START + 2000),  # at + 3500
        make_run(processing_ms=None),
        make_run("acct_b", "sk-b:with:colons"),
    ]
    for run in runs:
        create(h, run)
        h.wall_ms += 1  # one millisecond apart, so both stores list them in one order
    base = Directory()
    keys = (key_for("sk-team", "team", spend_limit_cents=5),)
    h.run(h.store.put_account(base, "team", AccountOverride(4 * COST, keys)))
    every = h.run(h.store.add_rule({"effect": {"scenario": "fail"}, "every": 2}, 0))
    drawn = {"effect": {"scenario": "fail"}, "probability": 0.5}
    h.run(h.store.add_rule(drawn, 9))
    h.run(h.store.delete_rules(None, h.run(h.store.add_rule(drawn, 0)).id))
    context = RuleContext("create", "sk-a", "acct_a")
    for _ in range(3):
        rules = h.run(h.store.snapshot(base)).rules
        h.run(h.store.first_firing(rules, context))
    assert every.id == "rule_1"
    for _ in range(5):
        h.run(h.store.next_run_number())
    return runs, START + 2500


def test_both_stores_export_the_same_state_for_the_same_history(harness: Harness) -> None:
    runs, now = a_history(harness)
    state = harness.run(harness.peer().export_state(now))
    assert state.runs == runs
    assert state.overrides == {
        "team": AccountOverride(4 * COST, (key_for("sk-team", "team", spend_limit_cents=5),))
    }
    assert {
        name: (s.ledger.charged, s.ledger.refunded, s.ledger.runs)
        for name, s in state.ledgers.items()
    } == {
        "acct_a": (2 * COST, COST, 2),
        "acct_b": (2 * COST, 0, 2),
    }
    assert state.ledgers["acct_b"].keys["sk-b:with:colons"].runs == 1
    assert state.refunds == {runs[1].id: PendingRefund(START + 3500, "acct_b", "sk-b", COST)}
    assert [(r.id, r.seed, r.matches, r.hits) for r in state.rules] == [
        ("rule_1", 0, 3, 1),
        ("rule_2", 9, 2, hits_in(state.rules[1], 2)),  # matched when rule_1 did not fire
    ]
    assert (state.run_numbers, state.rule_numbers) == (5, 3)


def hits_in(rule: Rule, matches: int) -> int:
    """How often ``rule`` fires in its first ``matches`` matches (its draws, its budget)."""
    hits = 0
    for match in range(1, matches + 1):
        hits += fires_at(rule, match, hits)
    return hits


def test_an_imported_state_is_the_whole_state_for_every_process(harness: Harness) -> None:
    runs, now = a_history(harness)
    exported = harness.run(harness.store.export_state(now))
    harness.run(harness.store.record(FakeExchange("acct_a")))  # type: ignore[arg-type]
    for _ in range(LIMIT.requests):
        harness.run(harness.store.hit_rate_limit("sk-a", now))
    harness.run(harness.store.reset("acct_b"))
    create(harness, make_run("acct_c", "sk-c"))
    harness.run(harness.store.import_state(exported))
    peer = harness.peer()
    assert harness.run(peer.export_state(now)) == exported
    assert harness.run(peer.list_runs(None, 10)) == runs[::-1]
    assert harness.run(peer.get_run_by_file(runs[3].file_name)) == runs[3]
    assert harness.run(peer.account_names()) == ["acct_a", "acct_b"]
    assert harness.run(peer.hit_rate_limit("sk-a", now)) is None  # windows start empty
    assert len(harness.run(peer.journal(JournalFilter()))) == 1  # the journal is not state
    assert harness.run(peer.next_run_number()) == 6
    assert harness.run(peer.add_rule({"effect": {"scenario": "slow"}}, 0)).id == "rule_4"
    harness.run(peer.add_rules_once([{"effect": {"scenario": "stuck"}}], 0))  # not added again
    assert len(harness.run(peer.rules(None))) == 3
    assert balance_of(harness, "acct_b", now=START + 3500) == (2 * COST, COST, 2)
    with pytest.raises(RunNameTaken):
        create(harness, replace(make_run(), id=runs[0].id))


def test_a_redis_store_shares_one_virtual_clock(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        first = RedisStore(redis_server.url, None, prefix=f"clock-{new_token(8)}:")
        second = RedisStore(redis_server.url, None, prefix=first.prefix)
        clock_a, clock_b = first.virtual_clock(START), second.virtual_clock(START)
        assert await clock_b.now() == START
        await clock_a.move_by(2.5)
        assert await clock_b.now() == START + 2500
        with pytest.raises(ValueError, match="forward"):
            await clock_b.move_to(START)
        await clock_b.move_to(START + 10_000)
        assert await clock_a.now() == START + 10_000
        await clock_a.rewind()
        assert await clock_b.now() == START
        await first.close()
        await second.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_is_reported_as_unavailable() -> None:
    from tests.redis_server import free_port

    async def scenario() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", None)
        with pytest.raises(store.unavailable_errors):
            await store.ping()
        await store.close()

    asyncio.run(scenario())


def test_the_store_settings_reach_the_redis_store(redis_server: RedisServer) -> None:
    from mock_runbase.app import create_app
    from mock_runbase.settings import MockSettings

    app = create_app(MockSettings(store=redis_server.url, run_ttl_s=90))
    store = app.state.service.store
    assert isinstance(store, RedisStore) and store.run_ttl_ms == 90_000
    with pytest.raises(ValueError, match="redis://"):
        create_app(MockSettings(store="postgres://nope"))


def test_mocks_with_their_own_prefix_share_a_database_apart(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from mock_runbase.app import create_app
    from mock_runbase.serve_options import SettingsError, load_serve_options
    from mock_runbase.settings import MockSettings

    def settings(*flags: str) -> MockSettings:
        given = {"store": redis_server.url}
        if flags:
            given["store_prefix"] = flags[1]
        return load_serve_options(given).mock_settings()

    assert settings().store_prefix is None
    assert settings("--store-prefix", "ci-a").store_prefix == "ci-a"
    monkeypatch.setenv("MOCK_RUNBASE_STORE_PREFIX", "a*")
    with pytest.raises(SettingsError, match="MOCK_RUNBASE_STORE_PREFIX='a\\*'"):
        settings()  # a pattern character would let a reset reach another mock's keys
    monkeypatch.delenv("MOCK_RUNBASE_STORE_PREFIX")

    redis_server.flush()
    auth = {"Authorization": "Bearer sk-test-alice"}
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "a lighthouse"}}
    apps = [create_app(settings("--store-prefix", name)) for name in ("ci-a", "ci-b")]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        run_id = first.post("/v1/runs", json=body, headers=auth).json()["id"]
        other_id = second.post("/v1/runs", json=body, headers=auth).json()["id"]
        assert second.get(f"/v1/runs/{run_id}", headers=auth).status_code == 404
        assert first.post("/_mock/reset").status_code == 200
        assert first.get(f"/v1/runs/{run_id}", headers=auth).status_code == 404
        assert second.get(f"/v1/runs/{other_id}", headers=auth).status_code == 200
        assert second.get("/_mock/account", headers=auth).json()["spentUsd"] > 0


def test_a_forced_move_is_stored_with_its_refund_and_none_for_a_missing_run(
    harness: Harness,
) -> None:
    run = make_run()
    create(harness, run)
    now = START + 600  # processing
    moved = harness.run(
        harness.store.force_run(run.id, lambda r: forced(r, "failed", now, None), now)
    )
    assert moved is not None and moved.outcome == "failed"
    assert harness.run(harness.peer().get_run(run.id)) == moved
    assert balance_of(harness, now=now) == (COST, COST, 1)  # failed now: refunded
    assert harness.run(harness.store.force_run("run_missing", lambda r: r, now)) is None
    assert harness.run(harness.store.force_run(run.id, lambda r: None, now)) is None  # not yours
    with pytest.raises(ValueError, match="already failed"):
        harness.run(
            harness.store.force_run(run.id, lambda r: forced(r, "succeeded", now, None), now)
        )
    assert harness.run(harness.peer().get_run(run.id)) == moved  # a refused move writes nothing
    assert balance_of(harness, now=now) == (COST, COST, 1)


def test_two_processes_forcing_one_run_never_both_end_it(harness: Harness) -> None:
    """Another process ends the run between this one's read and write: this one's move is
    worked out again from the ended run, and refused (WATCH; in one process nothing comes
    between a move and its write)."""
    if harness.kind != "redis":
        pytest.skip("one process: a move and its write are never apart")
    store = harness.store
    assert isinstance(store, RedisStore)
    run = make_run()
    create(harness, run)
    now = START + 600
    ended = forced(run, "succeeded", now, None)
    other = redis.Redis.from_url(str(harness.redis_url))  # another process's connection
    seen: list[str] = []

    def move(stored: Run) -> Run | None:
        seen.append(status_at(stored, now))
        if len(seen) == 1:  # the other process's move lands in between
            other.set(store.k("run", run.id), dump_run(ended), xx=True, keepttl=True)
        return forced(stored, "failed", now, None)

    with pytest.raises(ValueError, match="already succeeded"):
        harness.run(store.force_run(run.id, move, now))
    other.close()
    assert seen == ["processing", "succeeded"]
    assert harness.run(harness.peer().get_run(run.id)) == ended
    assert balance_of(harness, now=START + 10_000) == (COST, 0, 1)  # never refunded
