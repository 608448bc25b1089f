"""Random tokens (run ids, file names on a real clock) come from the OS CSPRNG through a pool:
each byte handed out once, any length, and a forked child never reuses its parent's bytes."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.runs import RandomPool, new_token, new_token_pair


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=50))
def test_the_pool_hands_out_each_byte_once_whatever_the_lengths(counts: list[int]) -> None:
    pool = RandomPool(size=64)
    spans: list[tuple[bytes, int, int]] = []  # (the pool's bytes, start, end) of each take
    for count in counts:
        taken = pool.take(count)
        source, end = pool.pool, pool.used
        assert len(taken) == count and source[end - count : end] == taken
        for other, other_start, other_end in spans:
            if other is source:  # the same fetch of the OS: the spans never overlap
                assert end - count >= other_end or end <= other_start
        spans.append((source, end - count, end))


def test_a_request_larger_than_the_pool_is_served_whole() -> None:
    assert len(RandomPool(size=16).take(100)) == 100


def test_tokens_are_base62_of_the_length_asked_and_differ() -> None:
    tokens = {new_token(22) for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == 22 and t.isalnum() and t.isascii() for t in tokens)


@given(st.integers(1, 40), st.integers(1, 40))
def test_a_pair_of_tokens_has_the_lengths_asked_and_never_repeats(first: int, second: int) -> None:
    pairs = [new_token_pair(first, second) for _ in range(50)]
    assert all(len(a) == first and len(b) == second for a, b in pairs)
    assert all((a + b).isalnum() and (a + b).isascii() for a, b in pairs)
    if first + second >= 12:  # 71+ bits: a repeat would be the pool handing bytes out twice
        assert len({a + b for a, b in pairs}) == len(pairs)


def test_a_forked_child_draws_other_tokens_than_its_parent() -> None:
    new_token(22)  # the pool holds bytes now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next token, to the parent
        os.write(write, new_token(22).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    assert len(from_child) == 22
    assert from_child != new_token(22)
