"""A run record, and its status at any instant as a pure function of the record and time.

A run never stores its status. It stores when it was created, how long it waits
(``pending_ms``) and works (``processing_ms``; ``None`` for a run that never finishes) and how
it ends (``outcome``); ``status_at(run, now_ms)`` derives the rest, so polling is a lookup,
states never go backwards and ``completedAt`` is the same on every poll.

A run *timed by polls* (``polls`` not None: ``--timing polls``, or a rule's ``pending_polls``
and ``processing_polls``) moves one state per answered poll instead of by the clock. Its status
is still ``status_at`` of its times: it is created held in its first state (``until_polled``),
and the poll that is due to show a later state moves its times to it, at that instant
(``polled``, the same move as the control API's ``forced``), so every reader of runs sees it as
any other run.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal, NamedTuple

import orjson

from mock_runbase.catalog import Timing
from mock_runbase.clock import format_ms

__all__ = [
    "FILES_PATH",
    "MAX_POLLS",
    "TIMING_PROFILES",
    "UNTIL_POLLED_MS",
    "PollPlan",
    "Run",
    "Status",
    "TimingProfile",
    "completed_ms",
    "created_view",
    "failed_by",
    "file_path",
    "forced",
    "input_seed",
    "new_token",
    "new_token_pair",
    "plan_timing",
    "planned_polls",
    "poll_status",
    "polled",
    "run_view",
    "seeded_token",
    "status_at",
    "timing_for",
    "until_polled",
]

Status = Literal["pending", "processing", "succeeded", "failed"]
DEFAULT_RUN_ERROR = {
    "message": "The run was failed through the mock's control API",
    "code": "forced_failure",
}
Outcome = Literal["succeeded", "failed"]
MAX_POLLS = 1000  # the most polls a run may be planned to spend pending, or processing
# How long a run timed by polls waits in its first state: until a poll moves it (500 years,
# the most a state document holds, so it round-trips; a virtual clock moved further would
# find it processing).
UNTIL_POLLED_MS = 500 * 365 * 24 * 3600 * 1000


class PollPlan(NamedTuple):
    """How a run timed by polls moves: its answered polls ``1..pending`` show ``pending``, the
    next ``processing`` (None: every later one) show ``processing``, every later one its
    outcome. The create's answer is ``pending`` whatever the plan."""

    pending: int
    processing: int | None


@dataclass(frozen=True)
class TimingProfile:
    pending_ms: int
    processing_ms: int
    jitter: float  # each phase varies by up to this fraction, seeded
    per_model: bool = False  # the model's own timing (the catalog's) instead of the two above
    polls: PollPlan | None = None  # timed by polls with this plan instead of the clock


TIMING_PROFILES: dict[str, TimingProfile] = {
    # Each model as long as the catalog says (images seconds, videos minutes).
    "realistic": TimingProfile(pending_ms=0, processing_ms=0, jitter=0.25, per_model=True),
    "fast": TimingProfile(pending_ms=10, processing_ms=40, jitter=0.25),
    # Terminal at the first read: the create answers pending, the first poll is final.
    "instant": TimingProfile(pending_ms=0, processing_ms=0, jitter=0.0),
    # One state per answered poll: the create answers pending, poll 1 processing, poll 2 final.
    "polls": TimingProfile(pending_ms=0, processing_ms=0, jitter=0.0, polls=PollPlan(0, 1)),
}


@cache  # a handful of (profile, model) pairs: no new profile per create
def timing_for(profile: TimingProfile, model: Timing) -> TimingProfile:
    """The profile a run of a model with ``model`` timing follows."""
    if not profile.per_model:
        return profile
    return TimingProfile(model.pending_ms, model.processing_ms, profile.jitter)


@dataclass(slots=True)  # not frozen: a frozen one took 3 us to build, a tenth of a create
class Run:
    """A run as stored. Treated as immutable: a change is a new one (``dataclasses.replace``)."""

    id: str
    account: str
    key: str
    model: str
    input: dict[str, Any]
    cost_usd: int
    created_ms: int
    pending_ms: int
    processing_ms: int | None
    outcome: Outcome
    error: dict[str, str] | None
    width: int
    height: int
    file_name: str
    image_seed: int
    scenario: str
    media: str | None = None  # a file of --media-dir served instead of a rendered one
    polls: int | None = None  # None: timed by the clock; else timed by polls, these answered
    pending_polls: int = 0  # a run timed by polls: its plan (``PollPlan``)
    processing_polls: int | None = 0  # None: processing for ever

    @property
    def processing_from_ms(self) -> int:
        return self.created_ms + self.pending_ms


def completed_ms(run: Run) -> int | None:
    if run.processing_ms is None:
        return None
    return run.created_ms + run.pending_ms + run.processing_ms


def status_at(run: Run, now_ms: int) -> Status:
    if now_ms < run.processing_from_ms:
        return "pending"
    done = completed_ms(run)
    if done is None or now_ms < done:
        return "processing"
    return run.outcome


def failed_by(run: Run, now_ms: int) -> bool:
    """True once the run has failed, which is also when its cost is refunded."""
    return status_at(run, now_ms) == "failed"


def created_view(run: Run) -> dict[str, Any]:
    """What ``POST /runs`` answers: the run as created, always ``pending``."""
    return {
        "id": run.id,
        "model": run.model,
        "status": "pending",
        "costUsd": run.cost_usd,
        "createdAt": format_ms(run.created_ms),
    }


FILES_PATH = "/files/generated"


def file_path(file_name: str) -> str:
    """Where a generated file is served: the CDN path of the Quickstart's output URL."""
    return f"{FILES_PATH}/{file_name}"


def run_view(run: Run, now_ms: int, file_url: Callable[[str], str]) -> dict[str, Any]:
    """The run as ``GET /runs/{id}`` shows it at ``now_ms`` (camelCase, like Runbase)."""
    status = status_at(run, now_ms)
    view: dict[str, Any] = {
        "id": run.id,
        "model": run.model,
        "status": status,
        "costUsd": run.cost_usd,
        "createdAt": format_ms(run.created_ms),
    }
    done = completed_ms(run)
    if status == "succeeded":
        view["output"] = {"urls": [file_url(run.file_name)]}
    elif status == "failed":
        view["error"] = run.error
    if done is not None and status in ("succeeded", "failed"):
        view["completedAt"] = format_ms(done)
    return view


def input_seed(seed: int, model: str, full_input: dict[str, Any]) -> int:
    """A stable 64-bit seed for one model and input: same input and seed, same run."""
    canonical = orjson.dumps([seed, model, full_input], option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(canonical, digest_size=8).digest(), "big")


HALF_SEED_MASK = 0xFFFF_FFFF
HALF_SEED_RANGE = HALF_SEED_MASK + 1


def plan_timing(profile: TimingProfile, seed: int, slowdown: float = 1.0) -> tuple[int, int]:
    """(pending_ms, processing_ms) for one run, each phase jittered by one half of ``seed``.

    ``seed`` is a 64-bit hash (``input_seed``): its two 32-bit halves are two uniform draws,
    so no random generator has to be built for each run.
    """

    jitter = profile.jitter
    first = ((seed >> 32) & HALF_SEED_MASK) / HALF_SEED_RANGE  # each in [0, 1)
    second = (seed & HALF_SEED_MASK) / HALF_SEED_RANGE
    return (  # written out, not a helper called twice: this runs on every create
        max(0, round(profile.pending_ms * (1 + jitter * (2 * first - 1)) * slowdown)),
        max(0, round(profile.processing_ms * (1 + jitter * (2 * second - 1)) * slowdown)),
    )


_ALPHABET = (string.digits + string.ascii_letters).encode()
# byte -> base62 character; 256 is not a multiple of 62, so 8 characters come up 5/256 of the
# time instead of 4/256: 5.95 bits a character instead of 5.954
_BYTE_TO_CHAR = bytes(_ALPHABET[byte % len(_ALPHABET)] for byte in range(256))


def new_token(length: int = 22) -> str:
    """An opaque, unguessable base62 token of ``length`` characters (22 carry ~131 bits)."""
    return _POOL.take(length).translate(_BYTE_TO_CHAR).decode("ascii")


def new_token_pair(first: int, second: int) -> tuple[str, str]:
    """Two ``new_token`` of these lengths from one read of the pool (a create needs two)."""
    both = _POOL.take(first + second).translate(_BYTE_TO_CHAR).decode("ascii")
    return both[:first], both[first:]


class RandomPool:
    """Bytes of the operating system's CSPRNG (``os.urandom``), fetched a few KB at a time
    rather than with a system call per token; each byte is handed out once. A forked child
    starts with an empty pool, never with its parent's bytes."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.pool = b""
        self.used = 0

    def take(self, count: int) -> bytes:
        if self.used + count > len(self.pool):
            self.pool, self.used = os.urandom(max(self.size, count)), 0
        start, self.used = self.used, self.used + count
        return self.pool[start : self.used]

    def forget(self) -> None:
        self.pool, self.used = b"", 0


_POOL = RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def seeded_token(seed: int, purpose: str, number: int, length: int = 22) -> str:
    """A token shaped like ``new_token``'s, but a pure function of its arguments: the
    ``number``-th name of a ``purpose`` (a run's id, its file) under ``seed``."""
    digest = hashlib.blake2b(f"{seed}:{purpose}:{number}".encode(), digest_size=length).digest()
    return digest.translate(_BYTE_TO_CHAR).decode("ascii")


def forced(run: Run, status: str, now_ms: int, error: dict[str, str] | None) -> Run:
    """The run moved to ``status`` at ``now_ms``, keeping every state it already showed.

    ``processing`` holds it there until moved again; ``succeeded`` and ``failed`` end it now.
    A run already in a terminal state cannot move (its result has been seen).
    """
    current = status_at(run, now_ms)
    if current in ("succeeded", "failed"):
        raise ValueError(f"run {run.id} is already {current}")
    if status == current == "processing":
        return replace(run, processing_ms=None)
    elapsed = now_ms - run.created_ms
    pending_ms = min(run.pending_ms, elapsed)
    if status == "processing":
        return replace(run, pending_ms=pending_ms, processing_ms=None)
    if status not in ("succeeded", "failed"):
        raise ValueError(f"a run cannot be moved to {status!r}")
    return replace(
        run,
        pending_ms=pending_ms,
        processing_ms=elapsed - pending_ms,
        outcome="failed" if status == "failed" else "succeeded",
        error=(error or DEFAULT_RUN_ERROR) if status == "failed" else None,
    )


# --- runs timed by polls -----------------------------------------------------------------------

STATE_ORDER = {"pending": 0, "processing": 1, "succeeded": 2, "failed": 2}


def planned_polls(
    profile: TimingProfile, chosen: PollPlan | None, slowdown: float, never_finishes: bool
) -> PollPlan | None:
    """A new run's plan: the one its scenario ``chosen`` (a rule's or a header's
    ``pending_polls``/``processing_polls``), else its profile's (``--timing polls``) with each
    phase ``slowdown`` times as many polls (``slow``); None for a run timed by the clock. A run
    that never finishes (``stuck``) processes for ever once its pending polls are answered."""
    plan = chosen
    if plan is None and profile.polls is not None:
        plan = PollPlan(
            round(profile.polls.pending * slowdown),
            None
            if profile.polls.processing is None
            else round(profile.polls.processing * slowdown),
        )
    if plan is not None and never_finishes:
        plan = plan._replace(processing=None)
    return plan


def until_polled(plan: PollPlan) -> tuple[int, int | None]:
    """(pending_ms, processing_ms) of a new run timed by ``plan``: held for ever in the state its
    first poll is due to show (pending; else processing; else its outcome, at once)."""
    if plan.pending > 0:
        return UNTIL_POLLED_MS, None
    if plan.processing != 0:
        return 0, None
    return 0, 0


def poll_status(run: Run, poll: int) -> Status:
    """What a run timed by polls is due to show on its ``poll``-th answered poll (1, 2, ...)."""
    if poll <= run.pending_polls:
        return "pending"
    if run.processing_polls is None or poll <= run.pending_polls + run.processing_polls:
        return "processing"
    return run.outcome


def polled(run: Run, now_ms: int) -> Run:
    """``run`` after one more answered poll at ``now_ms``: counted and, if that poll is due to
    show a later state than the run is in, moved to it now (``forced``: held in processing, or
    ended with ``completedAt`` now). Never moved back (the control API may have moved it
    further). A run timed by the clock is returned as it is."""
    if run.polls is None:
        return run
    polls = run.polls + 1
    counted = replace(run, polls=polls)
    due = poll_status(run, polls)
    if STATE_ORDER[due] <= STATE_ORDER[status_at(run, now_ms)]:
        return counted
    return forced(counted, due, now_ms, run.error)
