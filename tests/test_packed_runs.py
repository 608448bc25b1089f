"""Runs packed into bytes (the memory store's cold runs), or written to Redis, come back exactly
as they were, and a store holding many runs keeps only its hot ones as objects."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace

import orjson
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.accounts import AccountSettings, KeySettings
from mock_runbase.packed_runs import packed_run, unpacked_run
from mock_runbase.redis_store import dump_run, load_run
from mock_runbase.runs import Run
from mock_runbase.store import MemoryStore

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
TEXT = st.text(min_size=1, max_size=40)
SIZES = st.integers(min_value=1, max_value=16_384)
RUNS = st.builds(
    Run,
    id=TEXT.map(lambda text: f"run_{text}"),
    account=TEXT,
    key=TEXT,
    model=TEXT,
    input=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6),
    cost_usd=st.integers(min_value=0, max_value=10**15),
    created_ms=st.integers(min_value=0, max_value=2**53),
    pending_ms=st.integers(min_value=0, max_value=2**44),
    processing_ms=st.none() | st.integers(min_value=0, max_value=2**44),
    outcome=st.sampled_from(["succeeded", "failed"]),
    error=st.none() | st.dictionaries(st.sampled_from(["code", "message"]), st.text()),
    width=SIZES,
    height=SIZES,
    file_name=TEXT,
    image_seed=st.integers(min_value=0, max_value=2**64 - 1),
    scenario=TEXT,
    media=st.none() | TEXT,
    polls=st.none() | st.integers(min_value=0, max_value=2**53),  # None: timed by the clock
    pending_polls=st.integers(min_value=0, max_value=1000),
    processing_polls=st.none() | st.integers(min_value=0, max_value=1000),
)


def stored_run(n: int, **fields: object) -> Run:
    run = Run(
        id=f"run_{n}",
        account="acct",
        key="sk-a",
        model="openai/gpt-image-2",
        input={"prompt": f"picture {n}", "resolution": "1K"},
        cost_usd=50_000,
        created_ms=1_780_000_000_000 + n,
        pending_ms=10,
        processing_ms=40,
        outcome="succeeded",
        error=None,
        width=1024,
        height=1024,
        file_name=f"file{n}.png",
        image_seed=2**63 + n,
        scenario="succeed",
    )
    return replace(run, **fields)  # type: ignore[arg-type]


def create(store: MemoryStore, run: Run) -> None:
    key = KeySettings("sk-a", "acct")
    asyncio.run(store.create_run(run, key, AccountSettings("acct", 10**18), 0))


@given(RUNS)
def test_a_packed_run_unpacks_to_the_same_run(run: Run) -> None:
    packed = packed_run(run)
    assert isinstance(packed, bytes)
    assert unpacked_run(run.id, packed) == run


@given(RUNS)
def test_a_run_stored_in_redis_loads_back_the_same_run(run: Run) -> None:
    assert load_run(dump_run(run).decode()) == run


def test_a_run_stored_before_runs_were_timed_by_polls_loads_as_timed_by_the_clock() -> None:
    run = stored_run(0)
    older = {k: v for k, v in orjson.loads(dump_run(run)).items() if "polls" not in k}
    assert load_run(orjson.dumps(older).decode()) == run
    assert run.polls is None


def test_a_run_that_cannot_be_packed_exactly_stays_an_object() -> None:
    odd = stored_run(0, input={"prompt": "x", "n": 2**70})  # beyond 64 bits: not JSON here
    assert packed_run(odd) is None
    store = MemoryStore(None, hot_runs=1)
    create(store, odd)
    other = stored_run(1)
    create(store, other)
    asyncio.run(store.get_run(other.id))  # read: hot, pushing the odd one out of the hot ones
    assert isinstance(store.runs[other.id], Run)
    assert store.runs[odd.id] is odd
    assert asyncio.run(store.get_run(odd.id)) == odd


def test_runs_are_stored_packed_and_only_the_hot_ones_are_objects_the_collector_walks() -> None:
    store = MemoryStore(None, hot_runs=10)
    runs = [stored_run(n) for n in range(100)]
    for run in runs:
        create(store, run)
    packed = [value for value in store.runs.values() if isinstance(value, bytes)]
    assert len(packed) == 100  # packed as stored: none is an object until it is read
    assert not any(gc.is_tracked(value) for value in packed)
    assert [asyncio.run(store.get_run(run.id)) for run in runs] == runs  # read: hot again
    assert sum(isinstance(value, Run) for value in store.runs.values()) == 10
    assert asyncio.run(store.list_runs(None, 100)) == runs[::-1]
    assert list(store.runs) == [run.id for run in runs]  # the order of storing is kept


ACCOUNTS = ["acct", 'a"quoted', "back\\slash", "ünï", "ctl\x01", "acct2"]


@given(
    runs=st.lists(
        st.tuples(RUNS, st.sampled_from(ACCOUNTS)).map(lambda p: replace(p[0], account=p[1])),
        max_size=25,
        unique_by=(lambda run: run.id, lambda run: run.file_name),
    ),
    hot=st.integers(min_value=1, max_value=6),
    limit=st.integers(min_value=1, max_value=30),
)
def test_listing_an_accounts_runs_finds_them_packed_or_hot(
    runs: list[Run], hot: int, limit: int
) -> None:
    """Packed runs of other accounts are skipped by their bytes: none of the account's own is
    missed, whatever its name holds (quotes, backslashes, control characters)."""
    store = MemoryStore(None, hot_runs=hot)
    for run in runs:
        create(store, run)
    for account in [*ACCOUNTS, "nobody", "acc"]:
        expected = [run for run in runs[::-1] if run.account == account][:limit]
        assert asyncio.run(store.list_runs(account, limit)) == expected
        failed = [run for run in runs[::-1] if run.account == account and run.outcome == "failed"]
        listed = asyncio.run(store.list_runs(account, limit, lambda run: run.outcome == "failed"))
        assert listed == failed[:limit]
    assert asyncio.run(store.list_runs(None, limit)) == runs[::-1][:limit]
