"""Placeholder MP4 rendering: what a player sees (decoded with PyAV), determinism, bad sizes."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mock_runbase.media.video import MIN_SIDE, SAMPLE_RATE, frame_count, render_mp4

TITLE = ["a lighthouse at dawn, volumetric light", "google/veo-3", "64x48 · 1.0 s · 24 fps"]
FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Luma = npt.NDArray[np.uint8]


@dataclass
class Decoded:
    codec: str
    pix_fmt: str
    size: tuple[int, int]
    frames: list[Luma]  # the Y plane of each frame, in order
    duration_s: float  # of the video stream, from the container
    audio_codec: str | None
    audio_duration_s: float  # of the audio stream, from the container (0 without one)
    audio_decoded_s: float  # samples decoded / rate (0 without audio)
    top_level_boxes: list[bytes]


def decode(mp4: bytes) -> Decoded:
    with av.open(io.BytesIO(mp4), mode="r") as container:
        assert len(container.streams.video) == 1
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        assert len(container.streams.audio) <= 1
        assert video.duration is not None and video.time_base is not None
        frames = [
            np.asarray(f.to_ndarray(format="gray"), np.uint8) for f in container.decode(video=0)
        ]
        audio_s = 0.0
        if audio is not None and audio.duration is not None and audio.time_base is not None:
            audio_s = float(audio.duration * audio.time_base)
        decoded = Decoded(
            codec=video.codec_context.name,
            pix_fmt=str(video.codec_context.pix_fmt),
            size=(video.codec_context.width, video.codec_context.height),
            frames=frames,
            duration_s=float(video.duration * video.time_base),
            audio_codec=audio.codec_context.name if audio else None,
            audio_duration_s=audio_s,
            audio_decoded_s=0.0,
            top_level_boxes=boxes(mp4),
        )
    if audio is not None:
        with av.open(io.BytesIO(mp4), mode="r") as container:
            samples = sum(int(f.samples) for f in container.decode(audio=0))
            decoded.audio_decoded_s = samples / SAMPLE_RATE
    return decoded


def boxes(mp4: bytes) -> list[bytes]:
    """The types of the file's top-level boxes, in order."""
    found, pos = [], 0
    while pos < len(mp4):
        size, kind = struct.unpack_from(">I4s", mp4, pos)
        size = struct.unpack_from(">Q", mp4, pos + 8)[0] if size == 1 else size
        found.append(kind)
        pos += size or len(mp4) - pos
    return found


def render(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "width": 64,
        "height": 48,
        "duration_s": 1.0,
        "fps": 24,
        "audio": False,
        "title_lines": TITLE,
        "seed": 7,
    } | overrides
    return render_mp4(**args)  # type: ignore[arg-type]


def check_playable(
    mp4: bytes, width: int, height: int, duration_s: float, fps: int, audio: bool
) -> Decoded:
    """What any render must be, for any arguments."""
    got = decode(mp4)
    frames = round(duration_s * fps)
    assert (got.codec, got.pix_fmt, got.size) == ("h264", "yuv420p", (width, height))
    assert len(got.frames) == frames > 1
    assert got.duration_s == pytest.approx(frames / fps, abs=1e-3)
    assert abs(got.duration_s - duration_s) <= 0.5 / fps + 1e-9  # duration to half a frame
    # moov before the media data: a player can start before the whole file has arrived
    assert got.top_level_boxes[0] == b"ftyp"
    assert got.top_level_boxes.index(b"moov") < got.top_level_boxes.index(b"mdat")
    if audio:
        assert got.audio_codec == "aac"
        assert got.audio_duration_s == pytest.approx(got.duration_s, abs=0.05)
        assert got.audio_decoded_s == pytest.approx(got.duration_s, abs=0.1)
    else:
        assert got.audio_codec is None
    return got


# --- what a player sees


def test_a_480p_clip_with_audio_plays_at_its_size_length_and_rate() -> None:
    mp4 = render(width=864, height=480, duration_s=4.0, fps=24, audio=True)
    got = check_playable(mp4, 864, 480, 4.0, 24, audio=True)
    assert len(got.frames) == 96
    assert len(mp4) < 500_000  # static content compresses: ~60 KB at the time of writing


@FEW
@example(width=16, height=16, fps=5, duration_s=1.5, audio=False, seed=0, title_lines=[])
@given(
    width=st.integers(MIN_SIDE // 2, 48).map(lambda n: 2 * n),
    height=st.integers(MIN_SIDE // 2, 48).map(lambda n: 2 * n),
    fps=st.integers(5, 60),
    duration_s=st.floats(0.1, 1.5),
    audio=st.booleans(),
    seed=st.integers(-(2**63), 2**63),
    title_lines=st.lists(st.text(max_size=40), max_size=4),
)
def test_any_small_clip_plays_at_its_size_length_and_rate(
    width: int,
    height: int,
    fps: int,
    duration_s: float,
    audio: bool,
    seed: int,
    title_lines: list[str],
) -> None:
    if round(duration_s * fps) < 2:
        with pytest.raises(ValueError, match="2 frames"):
            frame_count(width=width, height=height, duration_s=duration_s, fps=fps)
        return
    mp4 = render_mp4(
        width=width,
        height=height,
        duration_s=duration_s,
        fps=fps,
        audio=audio,
        title_lines=title_lines,
        seed=seed,
    )
    got = check_playable(mp4, width, height, duration_s, fps, audio)
    # to half a frame (0.1 s at 5 fps), give or take a float's rounding: 1.5 s at 5 fps is 8
    # frames, 1.6 s, and 1.6 - 1.5 is 0.10000000000000009
    assert abs(got.duration_s - duration_s) <= 0.1 + 1e-9
    # Something moves: the first, middle and last frames all differ.
    first, middle, last = got.frames[0], got.frames[len(got.frames) // 2], got.frames[-1]
    assert not np.array_equal(first, last)
    assert not np.array_equal(first, middle) or len(got.frames) == 2


def test_the_disc_crosses_from_left_to_right() -> None:
    got = decode(render(width=320, height=180, duration_s=2.0, fps=24))
    first, last = (f.astype(np.int16) for f in (got.frames[0], got.frames[-1]))
    middle_rows = slice(70, 110)  # the disc (36 px) is there at both ends of the clip
    change = np.abs(first[middle_rows] - last[middle_rows]).mean(axis=0)
    assert change[:30].mean() > 20 and change[-30:].mean() > 20  # it left; it arrived
    assert change[130:190].mean() < 5  # the middle of the frame is the same at both ends


def test_every_frame_differs_from_the_one_before() -> None:
    # The frame counter at the top right changes every frame.
    frames = decode(render(width=320, height=180, duration_s=1.0, fps=30)).frames
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))


def test_a_clip_lasting_just_two_frames_plays() -> None:
    check_playable(render(duration_s=0.1, fps=20, audio=True), 64, 48, 0.1, 20, audio=True)


# --- determinism


def test_same_arguments_give_identical_bytes() -> None:
    assert render(audio=True) == render(audio=True, title_lines=list(TITLE))


def test_seed_and_title_change_the_bytes() -> None:
    base = render()
    assert render(seed=8) != base
    assert render(title_lines=[*TITLE[:2], "other"]) != base


def test_two_threads_rendering_at_once_get_the_serial_bytes() -> None:
    expected = render(width=160, height=90, duration_s=4.0, audio=True)
    results: list[bytes] = []

    def work() -> None:
        results.append(render(width=160, height=90, duration_s=4.0, audio=True))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected, expected]


def test_the_bytes_do_not_depend_on_the_number_of_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3 GOPs at 5 fps, cut into two parts: encoded at once on 2 cores, one after the other on 1.
    args: dict[str, object] = {"width": 96, "height": 64, "duration_s": 5.0, "fps": 5}
    on_this_machine = render(**args, audio=True)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert render(**args, audio=True) == on_this_machine
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert render(**args, audio=True) == on_this_machine


SUBPROCESS = """
import hashlib, sys
from mock_runbase.media.video import render_mp4
mp4 = render_mp4(width=160, height=90, duration_s=4.5, fps=24, audio=True,
                 title_lines=["a fox", "kling/kling-3.0"], seed=11)
sys.stdout.write(hashlib.sha256(mp4).hexdigest())
"""


def test_two_processes_render_identical_bytes() -> None:
    # Different hash seeds too: nothing may depend on set or dict order of str.
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SUBPROCESS],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        digests.add(done.stdout)
    here = render_mp4(
        width=160,
        height=90,
        duration_s=4.5,
        fps=24,
        audio=True,
        title_lines=["a fox", "kling/kling-3.0"],
        seed=11,
    )
    assert digests == {hashlib.sha256(here).hexdigest()}


# --- arguments that cannot make a video


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 63}, "width must be an even number"),
        ({"height": 47}, "height must be an even number"),
        ({"width": 14}, "width must be an even number of pixels >= 16"),
        ({"height": 0}, "height must be"),
        ({"width": -2}, "width must be"),
        ({"fps": 0}, "fps must be a positive"),
        ({"duration_s": 0.0}, "duration_s must be a positive"),
        ({"duration_s": float("nan")}, "duration_s must be a positive"),
        ({"duration_s": float("inf")}, "duration_s must be a positive"),
        ({"duration_s": 0.05, "fps": 24}, "2 frames or more"),
    ],
)
def test_arguments_that_cannot_make_a_video_are_rejected_by_name(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render(**overrides)


def test_frame_count_is_the_rounded_product() -> None:
    assert frame_count(width=3840, height=2160, duration_s=15, fps=60) == 900
    assert frame_count(width=864, height=480, duration_s=4, fps=24) == 96
    assert frame_count(width=64, height=48, duration_s=0.52, fps=24) == 12
