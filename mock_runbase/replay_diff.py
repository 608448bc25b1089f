"""How far a request is from each recorded one, and the closest, told in words.

``--replay-strict`` answers a request the cassette does not hold with the recorded request
nearest to it, as WireMock's near misses do: same method first, then the closest path (the
API prefix aside), then the fewest differences of body (JSON compared field by field) and of
whether a key was sent. Pure functions over plain values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Asked", "NearMiss", "body_differences", "closest"]

MAX_DIFFERENCES = 5
MAX_SHOWN = 40  # characters of a value quoted in a difference
MISSING = object()


@dataclass(frozen=True)
class Asked:
    """A request, recorded or sent: its method, path without the API prefix, and body."""

    method: str
    path: str
    body: bytes
    keyed: bool


@dataclass(frozen=True)
class NearMiss:
    seq: int  # the recorded exchange's place in the cassette, from 1
    method: str
    path: str  # as recorded
    status: int
    differences: list[str]

    def view(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "differences": self.differences,
        }

    def told(self) -> str:
        differences = "; ".join(self.differences) or "no difference"
        return f"#{self.seq} {self.method} {self.path} ({differences})"


def closest(sent: Asked, recorded: Iterable[tuple[int, Asked, str, int]]) -> NearMiss | None:
    """The recorded request nearest to ``sent``; ``recorded`` holds (seq, request, path as
    recorded, status) of each candidate."""
    best: tuple[tuple[float, ...], NearMiss] | None = None
    for seq, candidate, shown_path, status in recorded:
        differences = request_differences(sent, candidate)
        ratio = difflib.SequenceMatcher(None, sent.path, candidate.path).ratio()
        distance = (
            float(sent.method != candidate.method),
            float(sent.path != candidate.path),
            1 - ratio,
            float(len(differences)),
        )
        if best is None or distance < best[0]:
            best = distance, NearMiss(seq, candidate.method, shown_path, status, differences)
    return None if best is None else best[1]


def request_differences(sent: Asked, recorded: Asked) -> list[str]:
    found = []
    if sent.method != recorded.method:
        found.append(f"method {recorded.method} recorded, {sent.method} sent")
    if sent.path != recorded.path:
        found.append(f"path {recorded.path} recorded, {sent.path} sent")
    found += body_differences(sent.body, recorded.body)
    if sent.keyed != recorded.keyed:
        found.append(
            "recorded with an Authorization header, sent without"
            if recorded.keyed
            else "recorded without an Authorization header, sent with one"
        )
    return found


def body_differences(sent: bytes, recorded: bytes) -> list[str]:
    """What differs between two bodies: JSON field by field (``input.prompt``), else sizes."""
    if sent == recorded:
        return []
    try:
        sent_value, recorded_value = (
            orjson.loads(sent or b"null"),
            orjson.loads(recorded or b"null"),
        )
    except orjson.JSONDecodeError:
        return [f"body of {len(recorded)} bytes recorded, {len(sent)} sent (not both JSON)"]
    sent_fields, recorded_fields = dict(flat(sent_value)), dict(flat(recorded_value))
    found = []
    for name in sorted(sent_fields.keys() | recorded_fields.keys()):
        mine, theirs = sent_fields.get(name, MISSING), recorded_fields.get(name, MISSING)
        if mine is not MISSING and theirs is not MISSING and same(mine, theirs):
            continue
        where = name or "body"
        if theirs is MISSING:
            found.append(f"{where} only sent ({shown(mine)})")
        elif mine is MISSING:
            found.append(f"{where} only recorded ({shown(theirs)})")
        else:
            found.append(f"{where} {shown(theirs)} recorded, {shown(mine)} sent")
    if len(found) > MAX_DIFFERENCES:
        found = [*found[:MAX_DIFFERENCES], f"and {len(found) - MAX_DIFFERENCES} more"]
    return found  # none: the same JSON, spelled differently (which matches a recording)


def same(one: Any, other: Any) -> bool:
    """Equal as JSON: ``1`` and ``true`` differ, though Python says ``1 == True``."""
    return orjson.dumps(one, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        other, option=orjson.OPT_SORT_KEYS
    )


def flat(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """``{"input": {"prompt": "x"}}`` as ``("input.prompt", "x")``; lists by index."""
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from flat(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for index, inner in enumerate(value):
            yield from flat(inner, f"{prefix}[{index}]")
    else:
        yield prefix, value


def shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."
