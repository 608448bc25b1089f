"""A run's life as polls see it: states only move forward and end for good, a succeeded run's
URL serves the file the catalog describes (a PNG of its size, or an MP4 of its frame size,
length and sound), and no other account can see the run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import given, reject
from hypothesis import strategies as st

from . import expect
from .facts import facts
from .options import options
from .registry import contract, note, violation
from .strategies import valid_bodies, with_every_media_variant
from .target import Exchange, Target

LIVE = options().live
RANK = {"pending": 0, "processing": 1, "succeeded": 2, "failed": 2}
LIFECYCLE = "pending* -> processing* -> one terminal state (succeeded or failed), never back"
STEPS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0]  # seconds between polls
STABLE = ("status", "id", "model", "costUsd", "createdAt", "completedAt", "output", "error")
MEDIA_SOURCES = sorted(
    {m.extension["outputSize"].get("x-runbase-source", "documented") for m in facts().catalog}
    | {m.video.get("x-runbase-source", "documented") for m in facts().catalog if m.video}
)


def instant(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")


def statuses(polls: list[Exchange]) -> list[Any]:
    return [p.data.get("status") if isinstance(p.data, dict) else p.status for p in polls]


@contract(
    "polling_is_monotonic",
    rule=f"polls show {LIFECYCLE}; a terminal run stays as it is; completedAt >= createdAt",
    creates_runs=True,
    examples=25,
)
@given(
    body=valid_bodies(cheapest=LIVE, references=False),
    steps=st.lists(st.sampled_from(STEPS), max_size=12),
)
def test_polling_is_monotonic(target: Target, body: dict[str, Any], steps: list[float]) -> None:
    key = target.keys.key()
    run = expect.created(target.create(body, key), facts().price(body))
    polls = expect.finished(target, run, key, steps)
    target.pause(steps[-1] if steps else 1.0)
    polls += [target.get_run(run["id"], key), target.get_run(run["id"], key)]
    previous = run
    for poll in polls:
        seen = expect.run_body(poll, facts().get)
        before, now = previous["status"], seen["status"]
        went_back = RANK[now] < RANK[before] or (RANK[before] == 2 and now != before)
        changed = [f for f in STABLE if RANK[before] == 2 and seen.get(f) != previous.get(f)]
        changed += [f for f in ("id", "model", "costUsd") if seen.get(f) != run.get(f)]
        if went_back or changed:
            raise violation(
                f"run went from {before} to {now}" if went_back else f"{changed} changed",
                received=f"{statuses(polls)}; last {poll.shown()}",
                documented=LIFECYCLE + "; a terminal run never changes",
                curl=poll.curl(),
            )
        if "completedAt" in seen and instant(seen["completedAt"]) < instant(seen["createdAt"]):
            raise violation(
                "completedAt is before createdAt",
                received=poll.shown(),
                documented="completedAt >= createdAt",
                curl=poll.curl(),
            )
        previous = seen


@contract(
    "succeeded_run_serves_media_of_catalog_size",
    rule="a succeeded run's output URL serves the catalog's file: a PNG of its pixel size, or "
    "an MP4 of its frame size, length (to 0.1 s) and frame rate, with sound exactly where the "
    "catalog says (tried on each model's smallest file of each kind, then on random inputs "
    "that prefer small, short files: half from a model's cheapest quarter of options)",
    source="sizes and lengths " + "/".join(MEDIA_SOURCES),
    creates_runs=True,
    examples=10,
)
@with_every_media_variant
@given(body=valid_bodies(cheapest=LIVE, references=False, cheap_media=True))
def test_succeeded_run_serves_media_of_catalog_size(target: Target, body: dict[str, Any]) -> None:
    key = target.keys.key()
    price = facts().price(body)
    run = expect.created(target.create(body, key), price)
    final = expect.run_body(expect.finished(target, run, key, [])[-1], facts().get)
    if final["status"] != "succeeded":
        note("some runs failed; only succeeded runs have files to check")
        reject()
    for url in final["output"]["urls"]:
        expect.media_of_catalog(target.fetch(url), price)


@contract(
    "run_is_invisible_to_another_key",
    rule="a run is visible to its own account only: another account's key gets 404 run_not_found",
    creates_runs=True,
    examples=5,
)
@given(body=valid_bodies(cheapest=LIVE, references=False))
def test_run_is_invisible_to_another_key(
    target: Target, other_key: str, body: dict[str, Any]
) -> None:
    key = target.keys.key()
    run = expect.created(target.create(body, key), facts().price(body))
    expect.error(target.get_run(run["id"], other_key), facts().get, "run_not_found")
    own = expect.run_body(target.get_run(run["id"], key), facts().get)
    if own["id"] != run["id"]:
        raise violation(
            "the owner's GET returned another run",
            received=str(own),
            documented=f"the run {run['id']}",
        )
