"""Deterministic placeholder PNGs.

PNGs are encoded here rather than by Pillow's PNG plugin, which spends most of its time on an
adaptive per-row filter search (~80-130 ms at 3840x2160, compress_level=1): every row gets the
"Up" filter via ImageChops, in ~1 MB bands so memory is reused rather than page-faulted in, then
zlib level 1. That roughly halves the encode time.
"""

from __future__ import annotations

import colorsys
import random
import struct
import unicodedata
import zlib
from collections.abc import Sequence

from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = ["render_picture", "render_png"]

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
_RGB = tuple[int, int, int]

_ELLIPSIS = "\u2026"
# Control, format, surrogate, private-use, unassigned; non-spacing/enclosing marks can stack,
# and the bundled font (ASCII plus a few symbols) lacks them, so after NFKD they strip accents.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me"})
_MAX_WRAP = 3  # wrapped lines per input line
_MAX_LINES = 12  # lines in total
_TALL_SAMPLE = "|()[]{}gjpqy\u00c5"  # tallest glyphs and descenders, to size a line
_BAND_BYTES = 1 << 20  # Pillow image memory per band (RGB takes 4 bytes a pixel)


def render_png(*, width: int, height: int, seed: int, lines: Sequence[str]) -> bytes:
    """A deterministic `width` x `height` RGB PNG of `render_picture`. Same arguments give the
    same bytes for a given Pillow and zlib."""
    return _encode_png(render_picture(width=width, height=height, seed=seed, lines=lines))


def render_picture(*, width: int, height: int, seed: int, lines: Sequence[str]) -> Image.Image:
    """A deterministic `width` x `height` RGB picture: a gradient and translucent shapes derived
    from `seed`, and `lines` of text in a translucent box at the bottom left (wrapped, or cut
    with an ellipsis, so it stays inside the image). Control characters are dropped; glyphs the
    bundled font lacks render as boxes. The PNGs show it as is; the MP4s animate over it."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    rng = random.Random(seed)
    base = rng.random()  # palette: three neighbouring hues and an accent
    hues = [base, base + rng.uniform(0.06, 0.18), base - rng.uniform(0.06, 0.18)]
    palette: list[_RGB] = []
    for hue in [*hues, base + 0.5 + rng.uniform(-0.08, 0.08)]:
        r, g, b = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.45, 0.9), rng.uniform(0.5, 0.95))
        palette.append((round(r * 255), round(g * 255), round(b * 255)))
    img = _background(width, height, palette, rng)
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(rng.randint(3, 6)):  # translucent discs, rounded squares and rings
        tint, mix = rng.choice((255, 0)), rng.uniform(0.2, 0.6)  # lighten or darken
        fill = (*(round(c + (tint - c) * mix) for c in rng.choice(palette)), rng.randint(50, 120))
        radius = max(1, round(min(width, height) * rng.uniform(0.06, 0.28)))
        cx, cy = rng.randrange(width), rng.randrange(height)  # ints: floats leave corner seams
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            draw.rounded_rectangle(box, radius=radius // 3, fill=fill)
        else:
            draw.ellipse(box, outline=fill, width=max(1, round(radius / 8)))
    _caption(draw, width, height, [lines] if isinstance(lines, str) else lines)
    return img


def _ramp(colours: Sequence[_RGB], size: tuple[int, int], weight: float) -> Image.Image:
    """A 1-pixel-thick ramp through `colours` times `weight`; `size` is (n, 1) or (1, n)."""
    shape = (len(colours), 1) if size[1] == 1 else (1, len(colours))
    tiny = Image.frombytes("RGB", shape, bytes(c for colour in colours for c in colour))
    tiny = tiny.point([int(v * weight) for v in range(256)] * 3)
    return tiny.resize(size, Image.Resampling.BILINEAR)


def _background(width: int, height: int, palette: list[_RGB], rng: random.Random) -> Image.Image:
    """A weighted sum of a horizontal and a vertical multi-stop gradient, built in bands. Weights
    are applied to the ramps (floored: no overflow), so the sum is exact and each row differs
    from the one above by a constant, which the "Up" filter turns into runs that deflate fast."""
    across = rng.sample(palette, k=rng.randint(2, 3))
    down = rng.sample(palette, k=rng.randint(2, 3))
    weight = rng.uniform(0.35, 0.65)
    step = max(1, _BAND_BYTES // (4 * width))
    img = _ramp(down, (1, height), 1 - weight).resize((width, height), Image.Resampling.NEAREST)
    band = _ramp(across, (width, 1), weight).resize((width, step), Image.Resampling.NEAREST)
    for top in range(0, height, step):
        box = (0, top, width, min(top + step, height))
        img.paste(ImageChops.add_modulo(img.crop(box), band.crop((0, 0, width, box[3] - top))), box)
    return img


def _caption(draw: ImageDraw.ImageDraw, width: int, height: int, lines: Sequence[str]) -> None:
    """Draw `lines` in a translucent box at the bottom left, all sized to the image."""
    short = min(width, height)
    size = max(6, round(short / 28))
    font = ImageFont.load_default(size=size)
    margin, pad = max(1, short // 25), max(1, size // 2)
    line_height = int(font.getbbox(_TALL_SAMPLE)[3]) + max(1, size // 5)
    max_width = width - 2 * (margin + pad)
    max_lines = min(_MAX_LINES, (height - 2 * (margin + pad)) // line_height)
    if max_width < 1 or max_lines < 1:
        return
    # No glyph of the bundled font is narrower than 0.2 em, so longer text cannot fit: cutting
    # it first keeps measuring cheap for huge inputs.
    limit = _MAX_WRAP * (max_width * 5 // size + 2)
    if not (shown := _layout(font, lines, max_width, max_lines, limit)):
        return
    top = height - margin - 2 * pad - len(shown) * line_height
    right = margin + 2 * pad + max(_width(font, line) for line in shown) - 1
    draw.rounded_rectangle((margin, top, right, height - margin - 1), pad, fill=(0, 0, 0, 150))
    for i, line in enumerate(shown):
        xy = (margin + pad, top + pad + i * line_height)
        draw.text(xy, line, font=font, fill=(255, 255, 255, 255), anchor="la")


def _layout(
    font: _Font, lines: Sequence[str], max_width: int, max_lines: int, limit: int
) -> list[str]:
    """Clean (NFKD, whitespace runs to one space, unrenderables dropped), word-wrap (breaking
    over-long words) and cut `lines` to at most `max_lines` lines at most `max_width` wide; an
    ellipsis marks any cut. Each input line is first capped at `limit` characters."""
    out: list[str] = []
    for raw in lines:
        text = "".join(" " if c.isspace() else c for c in raw[: 2 * limit])
        text = unicodedata.normalize("NFKD", text)  # "é" -> "e" + U+0301, a dropped mark
        text = " ".join("".join(c for c in text if unicodedata.category(c) not in _DROPPED).split())
        if not text:
            continue
        if len(out) >= max_lines:
            _end_with_ellipsis(font, out, max_width)
            break
        first, cut, text = len(out), len(raw) > 2 * limit or len(text) > limit, text[:limit]
        while text and len(out) < min(first + _MAX_WRAP, max_lines):
            n = len(text) if _width(font, text) <= max_width else _fit(font, text, max_width)
            if n < len(text) and (space := text.rfind(" ", 1, n + 1)) > 0:
                n = space
            if n == 0:
                break
            out.append(text[:n].rstrip())
            text = text[n:].lstrip()
        if len(out) > first and (cut or text):
            _end_with_ellipsis(font, out, max_width)
    return out


def _width(font: _Font, text: str) -> int:
    return int(font.getbbox(text)[2])  # right edge, including the advance of trailing spaces


def _fit(font: _Font, text: str, max_width: int, suffix: str = "") -> int:
    """The largest n with text[:n] + suffix at most `max_width` wide (0 if none fits)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _width(font, text[:mid] + suffix) <= max_width else (lo, mid - 1)
    return lo


def _end_with_ellipsis(font: _Font, out: list[str], max_width: int) -> None:
    last = out.pop()  # dropped if not even the ellipsis fits
    if not last.endswith(_ELLIPSIS):
        last = last[: _fit(font, last, max_width, _ELLIPSIS)].rstrip() + _ELLIPSIS
    if _width(font, last) <= max_width:
        out.append(last)


def _encode_png(img: Image.Image) -> bytes:
    """An 8-bit RGB PNG of `img`, every scanline "Up"-filtered, deflated at level 1."""
    width, height = img.size
    stride, step = 3 * width, max(1, _BAND_BYTES // (4 * width))
    compressor = zlib.compressobj(1)
    idat = []
    for y in range(0, height, step):
        end = min(y + step, height)
        above = img.crop((0, y - 1, width, end - 1))  # row -1 comes out black, as PNG wants
        raw = memoryview(ImageChops.subtract_modulo(img.crop((0, y, width, end)), above).tobytes())
        starts = range(0, len(raw), stride)
        rows = b"".join(p for i in starts for p in (b"\x02", raw[i : i + stride]))
        idat.append(compressor.compress(rows))
    idat.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    idat_chunk = _chunk(b"IDAT", b"".join(idat))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + idat_chunk + _chunk(b"IEND")


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
