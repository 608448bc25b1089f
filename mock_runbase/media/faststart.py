"""Move an MP4's `moov` box in front of its media data ("faststart"), as qt-faststart does.

FFmpeg's own `-movflags +faststart` re-opens the output by name for a second pass, which an
in-memory output (PyAV writing to a BytesIO) does not have; so the MP4 is written with `moov`
last and rearranged here. Every chunk offset (`stco`, `co64`) that points past the moved
`moov` grows by its size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["faststart"]

# The boxes on the way from moov to the chunk offset tables.
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})
_MEDIA = frozenset({b"mdat", b"moof"})


def faststart(mp4: bytes) -> bytes:
    """`mp4` with its `moov` box moved before the first media data box, offsets patched.
    Unchanged if `moov` already comes first. Raises ValueError on a malformed file."""
    boxes = list(_boxes(mp4, 0, len(mp4)))
    moovs = [box for box in boxes if box[0] == b"moov"]
    first_media = next((i for i, box in enumerate(boxes) if box[0] in _MEDIA), None)
    if len(moovs) != 1 or first_media is None:
        raise ValueError("an MP4 needs exactly one moov box and a media data box")
    _, moov_start, moov_end = moovs[0]
    media_start = boxes[first_media][1]
    if moov_start < media_start:
        return mp4
    moov = bytearray(mp4[moov_start:moov_end])
    _shift_offsets(moov, 0, len(moov), len(moov), media_start)
    return b"".join([mp4[:media_start], moov, mp4[media_start:moov_start], mp4[moov_end:]])


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each box between `start` and `end`."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"truncated box header at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:  # a 64-bit size follows the type
            if end - pos < 16:
                raise ValueError(f"truncated box header at byte {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        elif size == 0:  # to the end
            size = end - pos
        if size < 8 or pos + size > end:
            raise ValueError(f"box {kind!r} at byte {pos} has a bad size {size}")
        yield kind, pos, pos + size
        pos += size


def _shift_offsets(moov: bytearray, start: int, end: int, shift: int, threshold: int) -> None:
    """Add `shift` to every chunk offset at or after `threshold`, in the boxes of `moov`
    between `start` and `end` (in place)."""
    for kind, box_start, box_end in _boxes(moov, start, end):
        header = 16 if struct.unpack_from(">I", moov, box_start)[0] == 1 else 8
        if kind in _CONTAINERS:
            _shift_offsets(moov, box_start + header, box_end, shift, threshold)
        elif kind in (b"stco", b"co64"):
            wide = kind == b"co64"
            fmt, width = (">Q", 8) if wide else (">I", 4)
            # full box: version and flags (4 bytes), entry count (4 bytes), entries
            (count,) = struct.unpack_from(">I", moov, box_start + header + 4)
            table = box_start + header + 8
            if table + count * width > box_end:
                raise ValueError(f"{kind.decode()} has {count} entries but no room for them")
            for at in range(table, table + count * width, width):
                (offset,) = struct.unpack_from(fmt, moov, at)
                if offset >= threshold:
                    offset += shift
                    if not wide and offset > 0xFFFFFFFF:
                        raise ValueError("a chunk offset passes 4 GiB: stco would need co64")
                    struct.pack_into(fmt, moov, at, offset)
