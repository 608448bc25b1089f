"""Runs kept as bytes: how the memory store holds all but its most recent runs.

A ``Run`` object costs about 1 KB with its input and is one more object for the cyclic
garbage collector to walk on every full pass, so a mock holding a million runs would need
over a gigabyte and pause for a second now and then. Packed, a run is one ``bytes`` (its
fields as a JSON array, its id left to the key it is stored under): about 350 bytes, and
invisible to the collector. Packing is exact: every field is a string, an integer (within
64 bits), None or JSON that came from JSON, so ``unpacked_run(run.id, packed_run(run)) == run``.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter

import orjson

from mock_runbase.runs import Run

__all__ = ["packed_run", "unpacked_run"]

PACKED_FIELDS = tuple(field.name for field in fields(Run) if field.name != "id")
_fields_of = attrgetter(*PACKED_FIELDS)


def packed_run(run: Run) -> bytes | None:
    """The run's fields but its id as bytes; None for one that cannot be packed exactly."""
    try:
        written = orjson.dumps(_fields_of(run))
    except orjson.JSONEncodeError:  # not JSON (a value a test built by hand): kept as it is
        return None
    # A copy of exactly its size: orjson's own answer keeps the capacity of its write buffer
    # (kilobytes: as much again as the whole run), which a long-lived value must not hold.
    return bytes(memoryview(written))


def unpacked_run(run_id: str, packed: bytes) -> Run:
    return Run(run_id, *orjson.loads(packed))
