"""Moving an MP4's moov box first (mock_runbase.media.faststart)."""

from __future__ import annotations

import io
import random
import struct

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_runbase.media.faststart import faststart

FTYP_PAYLOAD = b"isom\x00\x00\x02\x00isomiso2avc1mp41"


def box(kind: bytes, payload: bytes, large: bool = False) -> bytes:
    if large:  # a 64-bit size after the type
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def chunk_offsets(kind: bytes, offsets: list[int]) -> bytes:
    entry = ">Q" if kind == b"co64" else ">I"
    entries = b"".join(struct.pack(entry, offset) for offset in offsets)
    return box(kind, b"\x00\x00\x00\x00" + struct.pack(">I", len(offsets)) + entries)


def moov(tracks: list[tuple[bytes, list[int]]]) -> bytes:
    """A moov with one trak per (table kind, offsets), the table deep where players find it."""
    traks = b"".join(
        box(
            b"trak",
            box(b"tkhd", bytes(20))
            + box(b"mdia", box(b"minf", box(b"stbl", box(b"stsz", bytes(12)) + chunk_offsets(*t)))),
        )
        for t in tracks
    )
    return box(b"moov", box(b"mvhd", bytes(100)) + traks)


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    kinds=st.lists(st.sampled_from([b"stco", b"co64"]), min_size=1, max_size=3),
    free=st.booleans(),
    large_mdat=st.booleans(),
    rnd=st.randoms(use_true_random=False),
)
def test_moov_moves_before_the_media_and_every_offset_follows_its_data(
    data: bytes, kinds: list[bytes], free: bool, large_mdat: bool, rnd: random.Random
) -> None:
    # Built twice: as a muxer writes it (moov last) and as it should come out (moov first,
    # offsets grown by moov's size); the two moovs have the same size.
    head = box(b"ftyp", FTYP_PAYLOAD) + (box(b"free", b"") if free else b"")
    mdat = box(b"mdat", data, large=large_mdat)
    start = len(head) + (16 if large_mdat else 8)  # of the media data, in the muxer's file
    positions = [[rnd.randrange(len(data)) for _ in range(rnd.randrange(1, 6))] for _ in kinds]
    before = moov([(k, [start + p for p in ps]) for k, ps in zip(kinds, positions, strict=True)])
    shift = len(before)
    after = moov(
        [(k, [start + shift + p for p in ps]) for k, ps in zip(kinds, positions, strict=True)]
    )
    written = head + mdat + before
    fast = faststart(written)
    assert fast == head + after + mdat
    for ps in positions:  # each offset still points at the byte it pointed at
        for p in ps:
            assert fast[start + shift + p] == written[start + p] == data[p]
    assert faststart(fast) == fast  # already first: unchanged


def test_a_file_with_moov_first_is_returned_unchanged() -> None:
    mp4 = box(b"ftyp", FTYP_PAYLOAD) + moov([(b"stco", [100])]) + box(b"mdat", b"x" * 10)
    assert faststart(mp4) is mp4


def test_an_offset_pushed_past_4_gib_is_refused() -> None:
    mp4 = box(b"ftyp", FTYP_PAYLOAD) + box(b"mdat", b"x") + moov([(b"stco", [0xFFFFFFF0])])
    with pytest.raises(ValueError, match="4 GiB"):
        faststart(mp4)


@pytest.mark.parametrize(
    "mp4",
    [
        b"",
        box(b"ftyp", FTYP_PAYLOAD),  # neither moov nor mdat
        box(b"ftyp", FTYP_PAYLOAD) + box(b"mdat", b"x"),  # no moov
        box(b"moov", b"") + box(b"mdat", b"x") + box(b"moov", b""),  # two
        box(b"mdat", b"x") + box(b"moov", b"")[:6],  # truncated header
        box(b"mdat", b"x") + struct.pack(">I4s", 4, b"moov"),  # size below the header
        box(b"mdat", b"x") + struct.pack(">I4s", 99, b"moov"),  # size past the end
        box(b"mdat", b"x") + box(b"moov", box(b"trak", struct.pack(">I4s", 3, b"mdia"))),
        box(b"mdat", b"x") + box(b"moov", chunk_offsets(b"stco", [1])[:-4]),  # count > room
    ],
)
def test_a_malformed_file_is_refused(mp4: bytes) -> None:
    with pytest.raises(ValueError):
        faststart(mp4)


def test_a_real_file_decodes_to_the_same_frames_and_sound() -> None:
    out = io.BytesIO()  # moov last, as FFmpeg writes an MP4 without +faststart
    with av.open(out, mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=48_000)
        for index in range(24):
            frame = av.VideoFrame.from_ndarray(
                np.full((72, 64), index * 10, dtype=np.uint8), format="yuv420p"
            )
            frame.pts = index
            container.mux(video.encode(frame))
        wave = np.sin(np.arange(48_000, dtype=np.float32) / 10)[None, :].astype(np.float32)
        block = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        block.sample_rate, block.pts = 48_000, 0
        container.mux(sound.encode(block))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))
    written = out.getvalue()
    fast = faststart(written)
    assert written.index(b"mdat") < written.index(b"moov")
    assert fast.index(b"moov") < fast.index(b"mdat")
    assert len(fast) == len(written)

    def decoded(mp4: bytes) -> tuple[list[bytes], list[bytes]]:
        with av.open(io.BytesIO(mp4), mode="r") as container:
            frames = [f.to_ndarray().tobytes() for f in container.decode(video=0)]
        with av.open(io.BytesIO(mp4), mode="r") as container:
            sound = [f.to_ndarray().tobytes() for f in container.decode(audio=0)]
        return frames, sound

    pictures, samples = decoded(fast)
    assert (pictures, samples) == decoded(written)
    assert len(pictures) == 24 and samples
