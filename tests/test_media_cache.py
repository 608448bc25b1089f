"""The byte-bounded LRU cache of rendered media (mock_runbase.media.cache)."""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_runbase.media.cache import MediaCache


def test_cache_returns_cached_bytes_without_rendering_again() -> None:
    cache = MediaCache(max_bytes=100)
    calls: list[str] = []

    def render() -> bytes:
        calls.append("x")
        return b"png"

    assert cache.get("k") is None
    assert cache.get_or_render("k", render) == b"png"
    assert cache.get_or_render("k", render) == b"png"
    assert cache.get("k") == b"png"
    assert calls == ["x"]
    assert (len(cache), cache.current_bytes, cache.max_bytes) == (1, 3, 100)


def test_cache_evicts_least_recently_used_first() -> None:
    cache = MediaCache(max_bytes=30)
    for key in "abc":
        cache.get_or_render(key, lambda: b"0123456789")
    cache.get_or_render("d", lambda: b"0123456789")
    assert [k for k in "abcd" if cache.get(k) is not None] == ["b", "c", "d"]
    assert cache.current_bytes == 30


def test_cache_get_marks_an_item_recently_used() -> None:
    cache = MediaCache(max_bytes=30)
    for key in "abc":
        cache.get_or_render(key, lambda: b"0123456789")
    assert cache.get("a") is not None  # now "b" is the least recently used
    cache.get_or_render("d", lambda: b"0123456789")
    assert cache.get("b") is None
    assert all(cache.get(k) is not None for k in "acd")


def test_cache_evicts_as_many_items_as_needed() -> None:
    cache = MediaCache(max_bytes=30)
    for key in "abc":
        cache.get_or_render(key, lambda: b"0123456789")
    cache.get_or_render("big", lambda: b"x" * 25)
    assert [k for k in ("a", "b", "c", "big") if cache.get(k) is not None] == ["big"]
    assert cache.current_bytes == 25


def test_cache_does_not_keep_an_item_larger_than_the_bound() -> None:
    cache = MediaCache(max_bytes=10)
    cache.get_or_render("small", lambda: b"12345")
    assert cache.get_or_render("huge", lambda: b"x" * 11) == b"x" * 11
    assert cache.get("huge") is None
    assert cache.get("small") == b"12345"  # and nothing was evicted to make room for it
    assert (len(cache), cache.current_bytes) == (1, 5)


def test_cache_clear_empties_it() -> None:
    cache = MediaCache(max_bytes=100)
    cache.get_or_render("a", lambda: b"abc")
    cache.get_or_render("b", lambda: b"def")
    cache.clear()
    assert (len(cache), cache.current_bytes) == (0, 0)
    assert cache.get("a") is None and cache.get("b") is None


def test_cache_rejects_a_negative_bound() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MediaCache(max_bytes=-1)


CACHE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcdefgh"), st.integers(0, 120)),
        st.tuples(st.just("get"), st.sampled_from("abcdefgh"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(max_bytes=st.integers(0, 200), ops=CACHE_OPS)
def test_cache_matches_an_lru_model_and_never_exceeds_its_bound(
    max_bytes: int, ops: list[tuple[str, str, int]]
) -> None:
    # Puts go through get_or_render with a renderer that returns fresh bytes; the model is a
    # plain LRU list bounded by total size.
    cache = MediaCache(max_bytes=max_bytes)
    model: OrderedDict[str, bytes] = OrderedDict()
    for op, key, size in ops:
        if op == "get":
            expected = model.get(key)
            if expected is not None:
                model.move_to_end(key)
            assert cache.get(key) == expected
            continue
        data = key.encode() * size
        expected = model.get(key, data)
        assert cache.get_or_render(key, partial(bytes, data)) == expected
        if key not in model and len(data) <= max_bytes:
            model[key] = data
            while sum(map(len, model.values())) > max_bytes:
                model.popitem(last=False)
        elif key in model:
            model.move_to_end(key)
        assert cache.current_bytes == sum(map(len, model.values())) <= max_bytes
        assert len(cache) == len(model)


def test_cache_stays_within_its_bound_under_concurrent_use() -> None:
    cache = MediaCache(max_bytes=1000)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(2000):
                key = str(rng.randrange(50))
                data = cache.get_or_render(key, partial(bytes, key.encode() * 30))
                assert data == key.encode() * 30
                assert cache.current_bytes <= 1000
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert cache.current_bytes == sum(
        len(k.encode()) * 30 for k in map(str, range(50)) if cache.get(k)
    )
