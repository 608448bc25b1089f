"""Deterministic placeholder MP4s: H.264 video and, if asked, AAC audio, encoded in memory with
PyAV (which bundles FFmpeg with libx264 and its AAC encoder: no ffmpeg binary).

What the frames show is `scene`'s business: the PNG's picture for the seed and title lines,
with a progress bar, a timecode and a moving disc over it. The soundtrack is `tone`'s.

Speed: libx264 at preset ultrafast, constant QP, a keyframe every 2 seconds. The clip is cut
at a keyframe into two halves, each encoded by an encoder of its own in a thread of its own
(libx264 and PyAV release the GIL), and the packets are muxed in order afterwards: on 2 cores
that is ~1.8 times as fast as one encoder, where libx264's own frame threads gain ~1.4. The
cut is fixed, not the number of cores: one core encodes the halves one after the other, into
the same bytes. The MP4 is then rearranged with `moov` first.

Determinism: the same arguments give the same bytes for a given PyAV build, numpy and Pillow
on a given CPU (AAC is floating point): bitexact flags on the muxer and both codecs (no library
versions, no creation time), one libx264 thread per encoder (its default, one per core, would
change the bitstream with the machine), fixed keyframes with scene-cut detection off, and
frames and audio computed from the frame and sample indices. A render shares nothing with
another (each builds its own stage, buffers, fonts, encoders and container), so threads may
render at once.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
from av.audio.stream import AudioStream
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

from mock_runbase.media.faststart import faststart
from mock_runbase.media.images import render_picture
from mock_runbase.media.scene import Painter, Stage
from mock_runbase.media.tone import tone

__all__ = ["MIN_SIDE", "SAMPLE_RATE", "frame_count", "render_mp4"]

MIN_SIDE = 16  # pixels; width and height must also be even (4:2:0 chroma halves both)
SAMPLE_RATE = 48_000  # Hz; the audio is mono AAC
_AUDIO_BIT_RATE = 64_000
_AAC_FRAME = 1024  # samples per AAC frame
_GOP_SECONDS = 2  # a keyframe every 2 s: seeking stays cheap, static frames stay small
_QP = 26  # constant quantiser: no rate control to run, sharp enough text
_PARTS = 2  # encoded at once (see the module docstring); one encoder each, ~100 MB at 4K
_AVCOL_BT709 = 1  # AVCOL_PRI_BT709, AVCOL_TRC_BT709 and AVCOL_SPC_BT709
_AVCOL_RANGE_MPEG = 1  # limited ("TV") range


def frame_count(*, width: int, height: int, duration_s: float, fps: int) -> int:
    """The number of frames `render_mp4` encodes: round(duration_s * fps), at least 2. Raises
    ValueError naming the argument when the arguments cannot make a video."""
    for name, side in (("width", width), ("height", height)):
        if side < MIN_SIDE or side % 2:
            raise ValueError(f"{name} must be an even number of pixels >= {MIN_SIDE}, got {side}")
    if fps < 1:
        raise ValueError(f"fps must be a positive whole number, got {fps}")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s}")
    frames = round(duration_s * fps)
    if frames < 2:
        raise ValueError(f"duration_s * fps must round to 2 frames or more, got {frames}")
    return frames


def render_mp4(
    *,
    width: int,
    height: int,
    duration_s: float,
    fps: int,
    audio: bool,
    title_lines: Sequence[str],
    seed: int,
) -> bytes:
    """A deterministic MP4, `moov` first: H.264 (yuv420p, BT.709) `width` x `height` (even, at
    least MIN_SIDE), `frame_count(...)` frames at `fps`, and if `audio` a quiet mono AAC track
    of the same length. `title_lines` (prompt, model, size...) are the caption, as on the PNGs.
    Synchronous and CPU-bound: callers on an event loop run it in a thread."""
    frames = frame_count(width=width, height=height, duration_s=duration_s, fps=fps)
    picture = render_picture(width=width, height=height, seed=seed, lines=title_lines)
    stage = Stage.build(picture, seed, frames, fps)
    gop = _GOP_SECONDS * fps
    per_part = math.ceil(math.ceil(frames / gop) / _PARTS) * gop  # whole GOPs
    parts = [range(start, min(start + per_part, frames)) for start in range(0, frames, per_part)]
    threads = min(len(parts), os.cpu_count() or 1)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=fps)
        _configure(video.codec_context, stage)
        sound = container.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        # The stream's own encoder takes the first part; the others make theirs.
        encoders: list[VideoCodecContext | None] = [video.codec_context]
        encoders += [None] * (len(parts) - 1)
        with ThreadPoolExecutor(threads, thread_name_prefix="mp4-part") as pool:
            jobs = [pool.submit(_encode, stage, *job) for job in zip(parts, encoders, strict=True)]
            packets = _audio(sound, round(frames * SAMPLE_RATE / fps), seed) if sound else []
            encoded = [job.result() for job in jobs]
        for extradata, part in encoded:
            if extradata != video.codec_context.extradata:
                raise RuntimeError("the encoders of the parts disagree on the parameter sets")
            for packet in part:
                packet.stream = video
                packets.append(packet)
        packets.sort(key=lambda packet: (packet.dts or 0) * packet.time_base)
        for packet in packets:
            container.mux_one(packet)
    return faststart(out.getvalue())


def _configure(encoder: VideoCodecContext, stage: Stage) -> None:
    """The same settings for every encoder of a video, so their parameter sets match."""
    encoder.width, encoder.height, encoder.pix_fmt = stage.width, stage.height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, stage.fps), Fraction(stage.fps)
    # Tagged BT.709, limited range, as scene.to_yuv420 converts (PyAV names these enums only
    # from version 17; the numbers are FFmpeg's, fixed by the H.264 VUI they map to).
    encoder.color_range = _AVCOL_RANGE_MPEG
    encoder.colorspace = encoder.color_primaries = encoder.color_trc = _AVCOL_BT709
    gop = _GOP_SECONDS * stage.fps
    encoder.options = {
        "preset": "ultrafast",
        "flags": "+bitexact+global_header",  # global header: SPS/PPS in avcC, as MP4 wants
        "threads": "1",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:qp={_QP}",
    }


def _encode(
    stage: Stage, frames: range, encoder: VideoCodecContext | None
) -> tuple[bytes | None, list[av.Packet[Stream]]]:
    """(extradata, packets) of `frames` (whole GOPs) encoded by `encoder`, or a new one."""
    if encoder is None:
        made = av.CodecContext.create("libx264", "w")
        assert isinstance(made, VideoCodecContext)
        encoder = made
        _configure(encoder, stage)
    painter, packets = Painter(stage), []
    for index in frames:
        # No copy: libx264 copies each picture it is sent before `encode` returns, so the
        # painter may draw the next frame into the same buffer.
        frame = av.VideoFrame.from_numpy_buffer(painter.frame(index), format="yuv420p")
        frame.pts = index
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return encoder.extradata, packets


def _audio(sound: AudioStream, samples: int, seed: int) -> list[av.Packet[Stream]]:
    """The packets of `samples` samples of `tone`, encoded by `sound`'s AAC encoder."""
    encoder = sound.codec_context
    encoder.layout, encoder.bit_rate = "mono", _AUDIO_BIT_RATE
    encoder.options = {"flags": "+bitexact"}
    wave, packets = tone(samples=samples, sample_rate=SAMPLE_RATE, seed=seed), []
    for start in range(0, samples, _AAC_FRAME):
        chunk = wave[None, start : start + _AAC_FRAME]
        block = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        block.sample_rate, block.pts = SAMPLE_RATE, start
        packets += sound.encode(block)
    packets += sound.encode(None)
    return packets
