"""What a placeholder video's frames show, drawn straight into YUV 4:2:0 planes.

The static part is `images.render_picture` (the PNG's gradient, shapes and caption) plus the
track of a progress bar along the top edge and a grey box at the top right. A `Stage` holds it,
converted once to yuv420p, and the geometry of what moves; it is read-only, so parts of one
video may be drawn by several threads at once. A `Painter` (one per thread) draws frames in its
own buffer: it restores from the stage only the rectangles the previous frame drew on, then
fills the progress bar, writes the timecode and frame counter in the box, and composites a disc
that crosses from left to right, bobbing once up and down.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image, ImageDraw, ImageFont

__all__ = ["Painter", "Plane", "Stage", "timecode", "to_yuv420"]

Plane = npt.NDArray[np.uint8]
_Weights = npt.NDArray[np.uint16]
_Planes = tuple[Plane, Plane, Plane]
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

_WHITE = (235, 128, 128)  # Y, U, V (limited range)
_TRACK = (0, 0, 0, 110)  # the progress bar's track, translucent black
_BOX = (24, 24, 24)  # the timecode's box: opaque grey, so white text on it has neutral chroma
_RING = (20, 20, 20)  # the disc's outline
_SUPERSAMPLE = 4  # the disc is drawn this much larger, then scaled down (anti-aliased edge)
_SCALES = (1, 2, 2)  # of the Y, U and V planes: chroma has half the rows and columns


def to_yuv420(img: Image.Image) -> Plane:
    """`img` (RGB, even size) as one yuv420p array of shape (height * 3 / 2, width): the Y rows,
    then U, then V, as `av.VideoFrame.from_ndarray` takes it (BT.709, limited range)."""
    frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24").reformat(
        format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
    )
    return np.asarray(frame.to_ndarray(), dtype=np.uint8)


def _planes(buffer: Plane) -> _Planes:
    """Views of the Y, U and V planes of a yuv420p array (the chroma planes are laid out by
    bytes, not rows: with an odd number of chroma rows one ends half-way along a row)."""
    height, width = buffer.shape[0] * 2 // 3, buffer.shape[1]
    flat, luma, chroma = buffer.reshape(-1), height * width, height * width // 4
    u = flat[luma : luma + chroma].reshape(height // 2, width // 2)
    v = flat[luma + chroma :].reshape(height // 2, width // 2)
    return buffer[:height], u, v


def _even(value: float) -> int:
    return 2 * math.floor(value / 2)


@dataclass(frozen=True)
class _Box:
    """A rectangle with even corners, so it maps exactly onto the chroma planes."""

    x: int
    y: int
    width: int
    height: int

    def area(self, plane: Plane, scale: int) -> Plane:
        rows = slice(self.y // scale, (self.y + self.height) // scale)
        return plane[rows, self.x // scale : (self.x + self.width) // scale]


@dataclass(frozen=True)
class _Sprite:
    """The disc: its Y, U and V colours and 0-256 weights at full and at chroma resolution."""

    side: int
    colour: _Planes
    weights: tuple[_Weights, _Weights, _Weights]

    @staticmethod
    def disc(side: int, fill: tuple[int, int, int]) -> _Sprite:
        big = side * _SUPERSAMPLE
        mask = Image.new("L", (big, big))
        ImageDraw.Draw(mask).ellipse((0, 0, big - 1, big - 1), fill=255)
        rgb = Image.new("RGB", (big, big), fill)
        ring = max(_SUPERSAMPLE, big // 14)
        ImageDraw.Draw(rgb).ellipse((0, 0, big - 1, big - 1), outline=_RING, width=ring)
        colour = _planes(to_yuv420(rgb.resize((side, side), Image.Resampling.BOX)))

        def weights(size: int) -> _Weights:
            alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.uint16)
            return (alpha * 256 + 127) // 255

        full, half = weights(side), weights(side // 2)
        own = (colour[0].copy(), colour[1].copy(), colour[2].copy())
        return _Sprite(side, own, (full, half, half))


@dataclass(frozen=True)
class Stage:
    """The static frame (yuv420p, read-only) and the geometry of what moves over it."""

    width: int
    height: int
    frames: int
    fps: int
    background: Plane
    bar: _Box  # the progress bar along the top edge
    clock: _Box | None  # where the timecode text goes; None if the frame is too small for it
    font_size: int
    sprite: _Sprite

    @staticmethod
    def build(picture: Image.Image, seed: int, frames: int, fps: int) -> Stage:
        """The stage over `picture` (RGB, even size, not modified) for `frames` at `fps`."""
        width, height = picture.size
        short = min(width, height)
        picture = picture.copy()
        draw = ImageDraw.Draw(picture, "RGBA")
        bar = _Box(0, 0, width, max(2, _even(short / 90)))
        draw.rectangle((0, 0, width - 1, bar.height - 1), fill=_TRACK)
        font_size = max(8, round(short / 28))
        font = ImageFont.load_default(size=font_size)
        clock = _clock_box(draw, font, width, height, bar.height, timecode(frames, frames, fps))
        rng = random.Random(f"mp4 {seed}")
        r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.5), 1.0)
        fill = (round(r * 255), round(g * 255), round(b * 255))
        sprite = _Sprite.disc(max(4, _even(short / 5)), fill)
        background = to_yuv420(picture)
        background.flags.writeable = False
        return Stage(width, height, frames, fps, background, bar, clock, font_size, sprite)


class Painter:
    """Draws frames of one stage in a buffer of its own (one painter per thread)."""

    def __init__(self, stage: Stage) -> None:
        self._stage = stage
        self._buffer = stage.background.copy()
        self._font = ImageFont.load_default(size=stage.font_size)  # FreeType faces: not shared
        self._dirty: list[_Box] = []  # drawn on by the previous frame

    def frame(self, index: int) -> Plane:
        """The yuv420p buffer showing frame `index` (0-based), valid until the next call."""
        planes, background = _planes(self._buffer), _planes(self._stage.background)
        for box in self._dirty:
            for plane, source, scale in zip(planes, background, _SCALES, strict=True):
                box.area(plane, scale)[:] = box.area(source, scale)
        self._dirty = []
        self._progress(planes, index)
        if self._stage.clock is not None:
            self._clock(planes[0], self._stage.clock, index)
        self._disc(planes, index)
        return self._buffer

    def _progress(self, planes: _Planes, index: int) -> None:
        bar = self._stage.bar
        done = _Box(0, 0, _even(bar.width * (index + 1) / self._stage.frames), bar.height)
        for plane, value, scale in zip(planes, _WHITE, _SCALES, strict=True):
            done.area(plane, scale)[:] = value

    def _clock(self, luma: Plane, box: _Box, index: int) -> None:
        """White text over the opaque grey box: only luma changes, the chroma stays neutral."""
        text = Image.new("L", (box.width, box.height))
        stage = self._stage
        label = timecode(index + 1, stage.frames, stage.fps)
        ImageDraw.Draw(text).text((0, 0), label, fill=255, font=self._font)
        ink = np.asarray(text, dtype=np.uint16)
        area = box.area(luma, 1)
        area[:] = (area.astype(np.uint16) * (255 - ink) + _WHITE[0] * ink + 127) // 255
        self._dirty.append(box)

    def _disc(self, planes: _Planes, index: int) -> None:
        """Left to right over the clip, bobbing once up and down; always inside the frame."""
        sprite, stage = self._stage.sprite, self._stage
        progress = index / (stage.frames - 1)
        span_x, span_y = stage.width - sprite.side, stage.height - sprite.side
        y = span_y / 2 + span_y / 4 * math.sin(2 * math.pi * progress)
        box = _Box(_even(span_x * progress), _even(y), sprite.side, sprite.side)
        for plane, colour, weight, scale in zip(
            planes, sprite.colour, sprite.weights, _SCALES, strict=True
        ):
            area = box.area(plane, scale)
            mixed = area.astype(np.uint16) * (256 - weight) + colour.astype(np.uint16) * weight
            area[:] = mixed >> 8
        self._dirty.append(box)


def timecode(number: int, frames: int, fps: int) -> str:
    """'MM:SS.ss  N/FRAMES' for frame `number` (1-based), at the time it starts."""
    minutes, seconds = divmod((number - 1) / fps, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}  {number:0{len(str(frames))}d}/{frames}"


def _clock_box(
    draw: ImageDraw.ImageDraw, font: _Font, width: int, height: int, top: int, sample: str
) -> _Box | None:
    """Draw the timecode's box at the top right, below `top`, sized for `sample` (the widest
    text: the bundled font's digits share one width), and give where its text goes; None,
    drawing nothing, if it would not fit in the top quarter of the frame."""
    short = min(width, height)
    margin, pad = max(2, _even(short / 25)), max(2, _even(short / 56))
    right, bottom = draw.textbbox((0, 0), sample, font=font)[2:]
    text = _Box(0, 0, _even(right + 2), _even(bottom + 2))
    x, y = width - margin - pad - text.width, top + margin + pad
    if x - pad < margin or y + text.height + pad > height // 4:
        return None
    outer = (x - pad, y - pad, x + text.width + pad - 1, y + text.height + pad - 1)
    draw.rounded_rectangle(outer, radius=pad, fill=_BOX)
    return _Box(x, y, text.width, text.height)
