"""Verdicts on a client, from the mock's journal of what it sent and what it was answered.

    judge_client(entries, Conduct(min_poll_interval=0.1), spec) -> [ClientViolation, ...]

``entries`` are journal entries as ``GET /_mock/requests`` lists them (oldest first), of one
client doing one job. Each rule has a basis: ``documented`` (Runbase's docs say so),
``inferred`` (the mock's marked choice, e.g. ``Retry-After``) or ``advice`` (the docs advise
it, or robustness asks it); ``Conduct`` switches rules off, by name or every advice rule.
Time between two requests is the longer of the machine's and the mock's: a client that
sleeps for real, and one whose sleep advances a virtual clock, both wait.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mock_runbase.client_checks.plan import Plan
from mock_runbase.conformance import Judge
from mock_runbase.spec import Spec

__all__ = [
    "CLIENT_RULES",
    "ClientRule",
    "ClientViolation",
    "Conduct",
    "exchange_line",
    "judge_client",
]

Basis = Literal["documented", "inferred", "advice"]
JSON = dict[str, Any]


@dataclass(frozen=True)
class ClientRule:
    name: str
    basis: Basis
    rule: str  # what a client must do, in a line


CLIENT_RULES: dict[str, ClientRule] = {
    rule.name: rule
    for rule in (
        ClientRule("no-requests", "documented",
                   "use the API: RUNBASE_BASE_URL and RUNBASE_API_KEY point at the mock"),
        ClientRule("request-rejected", "documented", "send only requests the spec accepts"),
        ClientRule("retried-non-retryable", "documented",
                   "never send again a request answered 400, 401, 402, 403 or 404: the same "
                   "request gets the same answer"),
        ClientRule("polled-finished-run", "documented",
                   "stop polling a run once it has succeeded or failed: it never changes again"),
        ClientRule("run-abandoned", "documented",
                   "poll a run it created until it ends: a create only answers pending"),
        ClientRule("retry-after-ignored", "inferred",
                   "after a 429, wait its Retry-After before asking again with that key (the "
                   "header is inferred; the docs ask for exponential back-off)"),
        ClientRule("polled-too-fast", "advice",
                   "poll a run no faster than the minimum interval (the docs advise every "
                   "1-2 s)"),
        ClientRule("polled-for-ever", "advice",
                   "give up on a run that does not end after a bounded number of polls"),
        ClientRule("gave-up-on-transient", "advice",
                   "ask again after a transient failure (500, 429 RATE_LIMITED, a broken "
                   "connection, a file not there yet) instead of stopping on it"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Conduct:
    """What the client is held to. ``min_poll_interval``: seconds between two polls of a run
    (0: no minimum); ``max_polls``: polls of one run before it counts as polling for ever;
    ``off``: rule names not applied; ``advice``: False leaves out every advice rule."""

    min_poll_interval: float = 1.0
    max_polls: int = 30
    off: frozenset[str] = frozenset()
    advice: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.off) - set(CLIENT_RULES))
        if unknown:
            raise ValueError(f"off: {', '.join(unknown)} not among {', '.join(CLIENT_RULES)}")
        if self.min_poll_interval < 0:
            raise ValueError(f"min_poll_interval must be 0 or more, not {self.min_poll_interval}")
        if self.max_polls < 1:
            raise ValueError(f"max_polls must be 1 or more, not {self.max_polls}")

    def applies(self, rule: str) -> bool:
        return rule not in self.off and (self.advice or CLIENT_RULES[rule].basis != "advice")


@dataclass(frozen=True)
class ClientViolation:
    rule: str
    message: str
    exchange: JSON | None = field(default=None, compare=False)  # the journal entry at fault

    @property
    def basis(self) -> Basis:
        return CLIENT_RULES[self.rule].basis

    def text(self) -> str:
        where = f"\n      at {exchange_line(self.exchange)}" if self.exchange else ""
        return f"{self.rule} ({self.basis}): {self.message}{where}"


RUN_PATH = re.compile(r"^(?P<prefix>/(?:api/)?v1)/runs(?:/(?P<run>[^/]+))?$")
FILES_PREFIX = "/files/generated/"
NOT_RETRYABLE = frozenset({400, 401, 402, 403, 404})
TERMINAL = frozenset({"succeeded", "failed"})


def kind_of(entry: Mapping[str, Any]) -> str:
    """``create``, ``poll``, ``file`` or ``other``."""
    found = RUN_PATH.match(entry["path"])
    if found is not None:
        if entry["method"] == "POST" and found["run"] is None:
            return "create"
        if entry["method"] == "GET" and found["run"] is not None:
            return "poll"
    if entry["path"].startswith(FILES_PREFIX) and entry["method"] in ("GET", "HEAD"):
        return "file"
    return "other"


def transient(entry: Mapping[str, Any]) -> bool:
    """Whether the answer was a failure that asking again can get past."""
    status = entry["status"]
    if status is None or status >= 500:
        return True
    if status == 429:
        return entry.get("errorCode") == "RATE_LIMITED"
    return status == 404 and kind_of(entry) == "file"


def moment_ms(entry: Mapping[str, Any], field_name: str) -> float:
    text = entry.get(field_name)
    if not text:
        return 0.0
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000


def waited_s(before: Mapping[str, Any], after: Mapping[str, Any]) -> float:
    """Seconds between two requests: the longer of the machine's time and the mock's."""
    wall = moment_ms(after, "wallAt") - moment_ms(before, "wallAt")
    mocked = moment_ms(after, "at") - moment_ms(before, "at")
    return max(wall, mocked) / 1000


def exchange_line(entry: Mapping[str, Any] | None) -> str:
    """``#3 POST /v1/runs -> 429 RATE_LIMITED (Retry-After 1)``: one entry, as a line."""
    if entry is None:
        return "(none)"
    status = entry.get("status")
    answer = "no answer (connection broken)" if status is None else str(status)
    details = [entry.get("errorCode") or entry.get("runStatus") or ""]
    if entry.get("retryAfter"):
        details.append(f"(Retry-After {entry['retryAfter']})")
    tail = " ".join(part for part in details if part)
    return f"#{entry.get('seq', '?')} {entry['method']} {entry['path']} -> {answer} {tail}".rstrip()


def judge_client(
    entries: Iterable[Mapping[str, Any]], conduct: Conduct, spec: Spec, plan: Plan | None = None
) -> list[ClientViolation]:
    """Every rule of ``conduct`` the client broke. With the ``plan`` the mock followed: a
    client facing a run that never ends has to stop, so where it stops is not judged."""
    judged = [entry for entry in entries if entry["path"] != "/favicon.ico"]
    found: list[ClientViolation] = []
    if not judged:
        found.append(ClientViolation("no-requests", "the client sent no request to the mock"))
    found += rejected_requests(judged, judge_of(spec))
    found += non_retryable_retries(judged)
    found += poll_conduct(judged, conduct)
    found += retry_after_waits(judged)
    never_ends = plan is not None and any(life.stuck for life in plan.lifecycles())
    found += abandoned(judged, judge_last=not never_ends)
    return [violation for violation in found if conduct.applies(violation.rule)]


_JUDGES: dict[int, tuple[Spec, Judge]] = {}


def judge_of(spec: Spec) -> Judge:
    """The spec's ``Judge``, compiled once per spec (a property test judges many journals)."""
    kept = _JUDGES.get(id(spec))
    if kept is None or kept[0] is not spec:
        kept = _JUDGES[id(spec)] = (spec, Judge(spec))
    return kept[1]


def rejected_requests(entries: list[Mapping[str, Any]], judge: Judge) -> list[ClientViolation]:
    found = []
    for entry in entries:
        kind = kind_of(entry)
        if kind == "file":
            continue
        if kind == "other":
            message = f"{entry['method']} {entry['path']} is not an operation of Runbase's API"
            found.append(ClientViolation("request-rejected", message, dict(entry)))
            continue
        headers = {name.lower(): value for name, value in entry["headers"].items()}
        shown = headers.get("authorization")
        if shown is not None and shown.startswith("Bearer ****"):
            headers["authorization"] = "Bearer sk-" + shown.removeprefix("Bearer ****")
        _, problems = judge.request(entry["method"], entry["path"], headers, entry["body"].encode())
        for problem in problems:
            found.append(ClientViolation("request-rejected", problem.message, dict(entry)))
    return found


def non_retryable_retries(entries: list[Mapping[str, Any]]) -> list[ClientViolation]:
    refused: dict[tuple[str, str, str, str | None], Mapping[str, Any]] = {}
    reported: set[tuple[str, str, str, str | None]] = set()
    found = []
    for entry in entries:
        if kind_of(entry) not in ("create", "poll"):
            continue
        same = (entry["method"], entry["path"], entry["body"], entry.get("keyLast4"))
        first = refused.get(same)
        if first is not None and same not in reported:
            reported.add(same)
            message = (
                f"sent again a request answered {first['status']} {first.get('errorCode')} "
                f"({exchange_line(first)}), which is not retryable"
            )
            found.append(ClientViolation("retried-non-retryable", message, dict(entry)))
        if entry["status"] in NOT_RETRYABLE:
            refused.setdefault(same, entry)
    return found


def poll_conduct(entries: list[Mapping[str, Any]], conduct: Conduct) -> list[ClientViolation]:
    """Per run: no poll after its end was seen, none too soon after the last, not for ever."""
    last_poll: dict[str, Mapping[str, Any]] = {}
    ended: dict[str, Mapping[str, Any]] = {}
    counts: dict[str, int] = {}
    reported: set[tuple[str, str]] = set()
    found = []

    def once(rule: str, run: str, message: str, entry: Mapping[str, Any]) -> None:
        if (rule, run) not in reported:
            reported.add((rule, run))
            found.append(ClientViolation(rule, message, dict(entry)))

    for entry in entries:
        if kind_of(entry) != "poll":
            continue
        run = entry["path"].rsplit("/", 1)[1]
        counts[run] = counts.get(run, 0) + 1
        if run in ended:
            once("polled-finished-run", run, f"polled run {run} again after it had "
                 f"{ended[run]['runStatus']} ({exchange_line(ended[run])})", entry)  # fmt: skip
        previous = last_poll.get(run)
        if previous is not None and conduct.min_poll_interval > 0:
            waited = waited_s(previous, entry)
            if waited < conduct.min_poll_interval:
                once("polled-too-fast", run, f"polled run {run} {waited:.3f} s after the last "
                     f"poll (at least {conduct.min_poll_interval:g} s)", entry)  # fmt: skip
        if counts[run] > conduct.max_polls:
            once("polled-for-ever", run, f"polled run {run} more than {conduct.max_polls} "
                 "times without giving up", entry)  # fmt: skip
        last_poll[run] = entry
        if entry["status"] == 200 and entry.get("runStatus") in TERMINAL:
            ended.setdefault(run, entry)
    return found


def retry_after_waits(entries: list[Mapping[str, Any]]) -> list[ClientViolation]:
    waiting: dict[str | None, tuple[Mapping[str, Any], float]] = {}
    found = []
    for entry in entries:
        if kind_of(entry) not in ("create", "poll"):
            continue
        key = entry.get("keyLast4")
        limited = waiting.pop(key, None)
        if limited is not None:
            answer, seconds = limited
            waited = waited_s(answer, entry)
            if waited < seconds:
                message = (f"asked again {waited:.3f} s after a 429 with Retry-After "
                           f"{answer['retryAfter']} ({exchange_line(answer)})")  # fmt: skip
                found.append(ClientViolation("retry-after-ignored", message, dict(entry)))
        retry_after = entry.get("retryAfter")
        if entry["status"] == 429 and retry_after and str(retry_after).isdigit():
            waiting[key] = (entry, float(retry_after))
    return found


def abandoned(entries: list[Mapping[str, Any]], judge_last: bool) -> list[ClientViolation]:
    """Runs created and never polled; a job stopped on a transient failure (the last
    request)."""
    found = []
    polled = {entry["path"].rsplit("/", 1)[1] for entry in entries if kind_of(entry) == "poll"}
    for entry in entries:
        run = entry.get("runId")
        if kind_of(entry) == "create" and entry["status"] == 200 and run and run not in polled:
            message = f"created run {run} and never asked how it ended"
            found.append(ClientViolation("run-abandoned", message, dict(entry)))
    last = entries[-1] if entries else None
    if judge_last and last is not None and kind_of(last) != "other" and transient(last):
        found.append(ClientViolation("gave-up-on-transient", "stopped after a transient failure "
                                     "without asking again", dict(last)))  # fmt: skip
    return found
