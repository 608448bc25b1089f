"""HTTP ``Range: bytes=...`` for the generated files: players and download tools seek with it.

One range is answered with 206 and ``Content-Range``; a range past the end with 416; several
ranges, or a header this does not understand, with the whole file (RFC 9110 allows a server
to ignore ``Range``).
"""

from __future__ import annotations

import re

__all__ = ["NOT_SATISFIABLE", "requested_range"]

NOT_SATISFIABLE = (-1, -1)
SINGLE = re.compile(r"bytes=(\d*)-(\d*)")


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a ``Range`` header asks for, ``None`` for the whole
    file, or ``NOT_SATISFIABLE``."""
    if header is None:
        return None
    match = SINGLE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, another unit, or malformed: send everything
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            return NOT_SATISFIABLE
        return max(0, size - length), size - 1
    start = int(first)
    if start >= size:
        return NOT_SATISFIABLE
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None
    return start, end
