"""Placeholder PNG rendering (mock_runbase.media.images)."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from mock_runbase.media.images import _encode_png, render_png

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
