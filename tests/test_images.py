"""Placeholder PNG rendering and the byte-bounded LRU image cache."""

from __future__ import annotations

import io
import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from mock_runbase.images import ImageCache, _encode_png, render_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LINES = ["a lighthouse at dawn, volumetric light, 35mm", "1536x864", "openai/gpt-image-2"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, lone surrogates included, and long strings that must wrap or be cut.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)
LONG_TEXT = st.text(st.sampled_from("ab c\u00e9\u2014\u0301\t\n\x00"), min_size=300, max_size=3000)
LINE_LISTS = st.lists(st.one_of(ANY_TEXT, LONG_TEXT), max_size=20)


def decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


@pytest.mark.parametrize(
    ("width", "height"),
    [(1, 1), (16, 16), (3, 700), (1024, 1024), (1536, 864), (864, 1536), (3840, 1648)],
)
def test_renders_a_png_of_exactly_the_requested_size(width: int, height: int) -> None:
    png = render_png(width=width, height=height, seed=7, lines=LINES)
    assert png.startswith(PNG_SIGNATURE)
    img = decode(png)
    assert (img.format, img.size, img.mode) == ("PNG", (width, height), "RGB")


def test_same_arguments_give_identical_bytes() -> None:
    first = render_png(width=640, height=360, seed=42, lines=LINES)
    assert render_png(width=640, height=360, seed=42, lines=list(LINES)) == first


def test_seed_changes_the_picture() -> None:
    pngs = {render_png(width=320, height=200, seed=seed, lines=LINES) for seed in range(8)}
    assert len(pngs) == 8


def test_lines_change_the_picture() -> None:
    base = render_png(width=320, height=200, seed=1, lines=LINES)
    assert render_png(width=320, height=200, seed=1, lines=[*LINES[:2], "other/model"]) != base
    assert render_png(width=320, height=200, seed=1, lines=[]) != base


def test_picture_has_colour_and_is_smooth_not_noise() -> None:
    img = decode(render_png(width=256, height=256, seed=3, lines=[]))
    assert len(img.getcolors(maxcolors=256 * 256) or []) > 50  # a gradient, not a flat fill
    assert len(render_png(width=256, height=256, seed=3, lines=[])) < 256 * 256  # compressible


def test_text_box_changes_only_the_bottom_of_a_large_image() -> None:
    plain = decode(render_png(width=1024, height=1024, seed=5, lines=[]))
    captioned = decode(render_png(width=1024, height=1024, seed=5, lines=LINES))
    box = ImageChops.difference(plain, captioned).getbbox()
    assert box is not None
    left, top, right, bottom = box
    assert 0 < left < 100 and top > 500 and right < 1024 and bottom < 1024


@pytest.mark.parametrize(
    "lines",
    [
        ["\x00\x07\x1b[31m\r\n\t\x7f\u0085"],
        ["\ud800 lone surrogate \udfff", "\u202eright-to-left override\u200b\ufeff"],
        ["Z\u0351\u0353\u0355\u0300\u0301" * 200, "\U0001f600 \u65e5\u672c\u8a9e \uffff"],
        ["x" * 100_000, " " * 10_000, "word " * 10_000],
        ["line"] * 500,
        ["", "", ""],
        "a plain string, not a list",
    ],
)
def test_awkward_text_never_raises(lines: Sequence[str]) -> None:
    img = decode(render_png(width=300, height=120, seed=0, lines=lines))
    assert img.size == (300, 120)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, -1)])
def test_non_positive_size_is_rejected(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        render_png(width=width, height=height, seed=0, lines=[])


@FAST
@given(
    width=st.integers(16, 512),
    height=st.integers(16, 512),
    seed=st.integers(-(2**63), 2**63),
    lines=LINE_LISTS,
)
def test_any_text_renders_at_the_right_size_inside_the_margins(
    width: int, height: int, seed: int, lines: list[str]
) -> None:
    png = render_png(width=width, height=height, seed=seed, lines=lines)
    captioned = decode(png)
    assert (captioned.size, captioned.mode) == ((width, height), "RGB")
    # The caption (all that `lines` changes) stays off the image's 1-pixel border: it was
    # wrapped or cut to fit rather than clipped at the edge.
    plain = decode(render_png(width=width, height=height, seed=seed, lines=[]))
    box = ImageChops.difference(plain, captioned).getbbox()
    if box is not None:
        left, top, right, bottom = box
        assert left >= 1 and top >= 1 and right <= width - 1 and bottom <= height - 1


@FAST
@given(width=st.integers(1, 1500), height=st.integers(1, 300), seed=st.integers(0, 2**32))
@example(width=1500, height=300, seed=1)
def test_encoder_round_trips_any_pixels(width: int, height: int, seed: int) -> None:
    # Noise defeats the gradient's runs; widths up to 1500 give bands of 174+ rows, so taller
    # images cross band boundaries, where the "Up" filter must see the real row above.
    data = random.Random(seed).randbytes(3 * width * height)
    img = Image.frombytes("RGB", (width, height), data)
    assert decode(_encode_png(img)).tobytes() == data


# --- ImageCache


def test_cache_returns_cached_bytes_without_rendering_again() -> None:
    cache = ImageCache(max_bytes=100)
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
    cache = ImageCache(max_bytes=30)
    for key in "abc":
        cache.get_or_render(key, lambda: b"0123456789")
    cache.get_or_render("d", lambda: b"0123456789")
    assert [k for k in "abcd" if cache.get(k) is not None] == ["b", "c", "d"]
    assert cache.current_bytes == 30


def test_cache_get_marks_an_item_recently_used() -> None:
    cache = ImageCache(max_bytes=30)
    for key in "abc":
        cache.get_or_render(key, lambda: b"0123456789")
    assert cache.get("a") is not None  # now "b" is the least recently used
    cache.get_or_render("d", lambda: b"0123456789")
    assert cache.get("b") is None
    assert all(cache.get(k) is not None for k in "acd")


def test_cache_evicts_as_many_items_as_needed() -> None:
    cache = ImageCache(max_bytes=30)
    for key in "abc":
        cache.get_or_render(key, lambda: b"0123456789")
    cache.get_or_render("big", lambda: b"x" * 25)
    assert [k for k in ("a", "b", "c", "big") if cache.get(k) is not None] == ["big"]
    assert cache.current_bytes == 25


def test_cache_does_not_keep_an_item_larger_than_the_bound() -> None:
    cache = ImageCache(max_bytes=10)
    cache.get_or_render("small", lambda: b"12345")
    assert cache.get_or_render("huge", lambda: b"x" * 11) == b"x" * 11
    assert cache.get("huge") is None
    assert cache.get("small") == b"12345"  # and nothing was evicted to make room for it
    assert (len(cache), cache.current_bytes) == (1, 5)


def test_cache_clear_empties_it() -> None:
    cache = ImageCache(max_bytes=100)
    cache.get_or_render("a", lambda: b"abc")
    cache.get_or_render("b", lambda: b"def")
    cache.clear()
    assert (len(cache), cache.current_bytes) == (0, 0)
    assert cache.get("a") is None and cache.get("b") is None


def test_cache_rejects_a_negative_bound() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        ImageCache(max_bytes=-1)


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
    cache = ImageCache(max_bytes=max_bytes)
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
    cache = ImageCache(max_bytes=1000)
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
