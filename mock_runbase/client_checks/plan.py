"""A plan: what the mock answers a client's next requests, as data.

    Plan(creates=(Fault("rate-limit"), Lifecycle(pending_polls=1, processing_polls=2)),
         polls=(None, Fault("error-500")),
         files=(Fault("file-not-found"),))

reads: the first create answers 429, the second makes a run that is pending for one poll,
processing for two, then succeeds; the second poll answers 500; the first download of a file
answers 404. Creates after the listed ones, and every request not listed, are answered as
the mock's settings say. A plan becomes rules of the control API (``rules()``): each step
one rule, in order, so the same plan can be put on any running mock by hand, and it reads as
steps (``steps()``).

Which outcomes a plan may hold is the spec's: every error the runs operations document that
a valid request can get (a 400 answers a request the spec rejects: the client's mistake, not
a behaviour of the server), latency, the connection faults, a file missing for a moment,
and run lifecycles counted in polls (``--timing polls``, the effect's ``pending_polls`` and
``processing_polls``) that end succeeded, failed with an error, or never.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FAULTS",
    "PERMANENT",
    "TRANSIENT",
    "Fault",
    "FaultKind",
    "Lifecycle",
    "Plan",
]


@dataclass(frozen=True)
class FaultKind:
    scenario: str
    endpoints: frozenset[str]  # "create", "get", "file"
    transient: bool  # asking again can succeed: a robust client retries it
    what: str  # as a step reads: "answers 429 RATE_LIMITED (Retry-After: 1)"


CREATE, GET, FILE = "create", "get", "file"
API = frozenset({CREATE, GET})
ALL = frozenset({CREATE, GET, FILE})
ONLY_CREATE = frozenset({CREATE})
SPEND_LIMIT = "api_key_spend_limit_exceeded"
ONLY_CREATE = frozenset({CREATE})

FAULTS: dict[str, FaultKind] = {
    kind.scenario: kind
    for kind in (
        FaultKind("error-500", ALL, True, "answers 500 internal_error"),
        FaultKind("rate-limit", API, True, "answers 429 RATE_LIMITED with Retry-After: 1"),
        FaultKind("latency", ALL, True, "answers {ms} ms late"),
        FaultKind("drop", ALL, True, "closes the connection without an answer"),
        FaultKind("reset", ALL, True, "resets the connection (TCP RST)"),
        FaultKind("empty-response", ALL, True, "closes the connection without a byte"),
        FaultKind("garbage", ALL, True, "sends bytes that are not HTTP and closes"),
        FaultKind("truncated", ALL, True, "is handled, but its answer is cut off mid-body"),
        FaultKind("malformed-chunk", ALL, True, "is handled, but its answer's chunks are broken"),
        FaultKind("file-not-found", frozenset({FILE}), True, "answers 404 file_not_found"),
        FaultKind("invalid-api-key", API, False, "answers 401 invalid_api_key"),
        FaultKind("ip-not-allowed", API, False, "answers 403 ip_not_allowed"),
        FaultKind("insufficient-balance", ONLY_CREATE, False, "answers 402 insufficient_balance"),
        FaultKind("spend-limit-exceeded", ONLY_CREATE, False, "answers 403 " + SPEND_LIMIT),
        FaultKind("usage-exceeded", ONLY_CREATE, False, "answers 429 USAGE_EXCEEDED"),
        FaultKind("run-not-found", frozenset({GET}), False, "answers 404 run_not_found"),
    )
}
TRANSIENT = frozenset(name for name, kind in FAULTS.items() if kind.transient)
PERMANENT = frozenset(FAULTS) - TRANSIENT
ENDPOINT_NOUNS = {CREATE: "create", GET: "poll", FILE: "file download"}


@dataclass(frozen=True)
class Fault:
    """One request's answer other than the usual: a scenario of ``FAULTS`` (``ms``: latency's)."""

    scenario: str
    ms: int | None = None

    def __post_init__(self) -> None:
        if self.scenario not in FAULTS:
            raise ValueError(f"{self.scenario!r} is not a fault of a plan: {', '.join(FAULTS)}")
        if (self.ms is not None) != (self.scenario == "latency"):
            raise ValueError("ms goes with latency, and latency needs ms")

    @property
    def transient(self) -> bool:
        return FAULTS[self.scenario].transient

    def effect(self) -> dict[str, Any]:
        effect: dict[str, Any] = {"scenario": self.scenario}
        if self.ms is not None:
            effect["ms"] = self.ms
        return effect

    def step(self) -> str:
        return FAULTS[self.scenario].what.format(ms=self.ms)


@dataclass(frozen=True)
class Lifecycle:
    """A run a create makes, in polls: pending for ``pending_polls`` answered polls, processing
    for ``processing_polls`` (None: for ever), then ``outcome`` (failed: with ``code`` and
    ``message``, refunded)."""

    pending_polls: int = 0
    processing_polls: int | None = 1
    outcome: Literal["succeeded", "failed"] = "succeeded"
    code: str | None = None
    message: str | None = None

    @property
    def stuck(self) -> bool:
        return self.processing_polls is None

    def effect(self) -> dict[str, Any]:
        if self.processing_polls is None:
            return {"scenario": "stuck", "pending_polls": self.pending_polls}
        effect: dict[str, Any] = {
            "scenario": "fail" if self.outcome == "failed" else "succeed",
            "pending_polls": self.pending_polls,
            "processing_polls": self.processing_polls,
        }
        if self.outcome == "failed":
            effect.update({k: v for k, v in (("code", self.code), ("message", self.message)) if v})
        return effect

    def step(self) -> str:
        phases = [f"pending for {polls(self.pending_polls)}"] if self.pending_polls else []
        if self.processing_polls is None:
            return "makes a run that is " + ", ".join([*phases, "then processing for ever"])
        if self.processing_polls:
            phases.append(f"processing for {polls(self.processing_polls)}")
        end: str = self.outcome
        if self.outcome == "failed":
            given = (("code", self.code), ("message", self.message))
            error = ", ".join(f"{name} {value!r}" for name, value in given if value)
            end += f" (error {error or 'the mock default'}; refunded)"
        if not phases:
            return f"makes a run that has {end} by the first poll"
        return "makes a run that is " + ", ".join([*phases, f"then {end}"])


def polls(count: int) -> str:
    return f"{count} poll" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class Plan:
    """What the mock answers: the n-th create, poll and file download (``None``: as usual).
    ``model``: the creates the plan's rules match (None: any model)."""

    creates: tuple[Fault | Lifecycle, ...] = ()
    polls: tuple[Fault | None, ...] = ()
    files: tuple[Fault | None, ...] = ()
    model: str | None = None

    def __post_init__(self) -> None:
        for endpoint, steps in ((CREATE, self.creates), (GET, self.polls), (FILE, self.files)):
            for step in steps:
                if isinstance(step, Fault) and endpoint not in FAULTS[step.scenario].endpoints:
                    noun = ENDPOINT_NOUNS[endpoint]
                    raise ValueError(f"{step.scenario} is not an answer to a {noun}")
                if isinstance(step, Lifecycle) and endpoint != CREATE:
                    raise ValueError("a lifecycle is what a create makes")

    def faults(self) -> list[Fault]:
        return [s for s in (*self.creates, *self.polls, *self.files) if isinstance(s, Fault)]

    def lifecycles(self) -> list[Lifecycle]:
        return [step for step in self.creates if isinstance(step, Lifecycle)]

    def kinds(self) -> Counter[str]:
        """What the plan holds, by kind: each fault's scenario, and the runs' ends."""
        found: Counter[str] = Counter(fault.scenario for fault in self.faults())
        for life in self.lifecycles():
            found["stuck run" if life.stuck else f"{life.outcome} run"] += 1
        return found

    def rules(self) -> list[dict[str, Any]]:
        """The plan as rule bodies for ``POST /_mock/rules``, in order.

        Every create step is a rule that fires once, in turn. A poll or file step at the n-th
        request fires once on its rule's ``every``-th match: a rule is not asked once a rule
        before it has fired, so the k-th step of an endpoint sees the n-th request as its
        match ``n - (k - 1)``."""
        found: list[dict[str, Any]] = []
        create_match: dict[str, Any] = {"endpoint": CREATE}
        if self.model is not None:
            create_match["model"] = self.model
        for create in self.creates:
            found.append({"match": dict(create_match), "effect": create.effect(), "times": 1})
        for endpoint, steps in ((GET, self.polls), (FILE, self.files)):
            placed = 0
            for number, step in enumerate(steps, start=1):
                if step is None:
                    continue
                body = {
                    "match": {"endpoint": endpoint},
                    "effect": step.effect(),
                    "every": number - placed,
                    "times": 1,
                }
                found.append(body)
                placed += 1
        return found

    def steps(self) -> list[str]:
        """The plan as a person reads it, one line a step; the rest is as usual."""
        lines = []
        for number, create in enumerate(self.creates, start=1):
            lines.append(f"create {number} {create.step()}")
        for endpoint, steps in ((GET, self.polls), (FILE, self.files)):
            noun = ENDPOINT_NOUNS[endpoint]
            for number, fault in enumerate(steps, start=1):
                if fault is not None:
                    lines.append(f"{noun} {number} {fault.step()}")
        if not lines:
            lines.append("every request answered as usual")
        if self.model is not None:
            lines.append(f"(the create steps match {self.model} only)")
        return lines

    def text(self) -> str:
        return "\n".join(f"  {line}" for line in self.steps())
