"""Forced outcomes and faults, by name: the registry behind headers, prompt tags and rules.

A client picks one with the header ``X-Mock-Scenario: fail`` (on a create, a poll or a
generated file's GET) or, on a create when it cannot set headers, with a tag in the prompt:
``[mock:fail]`` (``scenario_choice`` reads both); a rule (``/_mock/rules``) picks one for
every request it matches. Each scenario names the endpoints it applies to: ``create``,
``get`` (a poll) and ``file`` (``GET``/``HEAD /files/generated/...``). Both may pass the parameters
a scenario declares (an error code, a delay). Each scenario is a registered function from
``Params`` to an ``Effect``; the control API and CLI list the registry, and nothing branches
on scenario names elsewhere.

``succeed``, ``fail`` and ``stuck`` also take ``pending_polls`` (and the first two
``processing_polls``): the run they make is timed by polls (``runs.PollPlan``), whatever the
timing profile; the one given alone has the other's default (0 pending, 1 processing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mock_runbase.errors import RunbaseError
from mock_runbase.runs import MAX_POLLS, PollPlan

__all__ = [
    "DEFAULT",
    "ENDPOINTS",
    "INTEGER_PARAMS",
    "MAX_LATENCY_MS",
    "MAX_POLLS",
    "PARAMS",
    "POLL_PARAMS",
    "SCENARIOS",
    "Effect",
    "Params",
    "Scenario",
    "scenario",
]

DEFAULT = "succeed"
CREATE = frozenset({"create"})
BOTH = frozenset({"create", "get"})
EVERYWHERE = frozenset({"create", "get", "file"})
FILES = frozenset({"file"})
ENDPOINTS = ("create", "get", "file")  # as rules name them; a rule's "any" is create and get
ENDPOINT_NOUNS = {"create": "creates", "get": "polls", "file": "files"}
# the fields of Params, as rules and headers spell them
PARAMS = ("code", "message", "ms", "pending_polls", "processing_polls")
POLL_PARAMS = ("pending_polls", "processing_polls")
MAX_LATENCY_MS = 600_000
INTEGER_PARAMS = {"ms": MAX_LATENCY_MS, "pending_polls": MAX_POLLS, "processing_polls": MAX_POLLS}
DEFAULT_CDN_LAG_MS = 5000


@dataclass(frozen=True)
class Params:
    """What a rule may tune: the error of ``fail``, the delay of ``latency``, the lag of
    ``cdn-lag``, the polls a run of ``succeed``, ``fail`` or ``stuck`` takes."""

    code: str | None = None
    message: str | None = None
    ms: int | None = None
    pending_polls: int | None = None
    processing_polls: int | None = None

    def poll_plan(self) -> PollPlan | None:
        """The run's plan if either poll parameter is given (the other's default: 0 pending
        polls, 1 processing poll); None: the run is timed as its profile says."""
        if self.pending_polls is None and self.processing_polls is None:
            return None
        processing = 1 if self.processing_polls is None else self.processing_polls
        return PollPlan(self.pending_polls or 0, processing)


@dataclass(frozen=True)
class Effect:
    """What a scenario does: to the run (outcome, pace), to the HTTP exchange itself (a
    delay, an error, a connection fault of ``wire_faults``) or to a generated file (how long
    after its run completed it stays 404)."""

    outcome: str = "succeeded"
    error: dict[str, str] | None = None
    slowdown: float = 1.0
    never_finishes: bool = False
    poll_plan: PollPlan | None = None  # timed by polls with this plan (``stuck``'s: for ever)
    http_error: RunbaseError | None = None
    delay_ms: int = 0
    wire_fault: str | None = None
    file_lag_ms: int = 0

    @property
    def touches_exchange(self) -> bool:
        """Whether it delays, breaks or errs the HTTP exchange (``apply_to_exchange``)."""
        return bool(self.delay_ms) or self.wire_fault is not None or self.http_error is not None


@dataclass(frozen=True)
class Scenario:
    name: str
    endpoints: frozenset[str]
    build: Callable[[Params], Effect]
    params: tuple[str, ...] = ()  # the ones it uses: any other given is refused, not ignored

    @property
    def creates_only(self) -> bool:
        return self.endpoints == CREATE

    def applies_to(self) -> str:
        """Where it applies, in words: ``creates only``, ``creates, polls and files``."""
        nouns = [ENDPOINT_NOUNS[e] for e in ENDPOINTS if e in self.endpoints]
        if len(nouns) == 1:
            return f"{nouns[0]} only"
        return f"{', '.join(nouns[:-1])} and {nouns[-1]}"

    def takes(self) -> str:
        return ", ".join(self.params) if self.params else "no parameters"

    @property
    def description(self) -> str:
        return " ".join((self.build.__doc__ or "").split())  # one line, as the listing shows it


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, endpoints: frozenset[str] = CREATE, params: tuple[str, ...] = ()
) -> Callable[[Callable[[Params], Effect]], Callable[[Params], Effect]]:
    def register(function: Callable[[Params], Effect]) -> Callable[[Params], Effect]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is already registered")
        if not set(params) <= set(PARAMS):
            raise ValueError(f"scenario {name!r}: parameters are among {PARAMS}")
        SCENARIOS[name] = Scenario(name, endpoints, function, params)
        return function

    return register


@scenario("succeed", params=POLL_PARAMS)
def succeed(params: Params) -> Effect:
    """The run goes pending -> processing -> succeeded (the default); with `pending_polls`
    and/or `processing_polls`, one state per answered poll."""
    plan = params.poll_plan()
    return SUCCEEDS if plan is None else Effect(poll_plan=plan)


SUCCEEDS = Effect()


@scenario("fail", params=("code", "message", *POLL_PARAMS))
def fail(params: Params) -> Effect:
    """The run goes pending -> processing -> failed with an error (code and message may be
    chosen by a rule); its cost is refunded when it fails. With `pending_polls` and/or
    `processing_polls`, one state per answered poll."""
    return Effect(
        outcome="failed",
        error={
            "message": params.message or "The provider could not generate the image",
            "code": params.code or "generation_failed",
        },
        poll_plan=params.poll_plan(),
    )


@scenario("stuck", params=("pending_polls",))
def stuck(params: Params) -> Effect:
    """The run stays processing for ever (test your client's timeout); with `pending_polls`,
    after that many answered polls pending."""
    plan = None if params.pending_polls is None else PollPlan(params.pending_polls, None)
    return Effect(never_finishes=True, poll_plan=plan)


@scenario("slow")
def slow(params: Params) -> Effect:
    """The run takes ten times longer than the timing profile says."""
    return Effect(slowdown=10.0)


@scenario("error-500", EVERYWHERE, params=("message",))
def error_500(params: Params) -> Effect:
    """The request answers 500 internal_error; a create creates nothing."""
    message = params.message or "Internal server error"
    return Effect(http_error=RunbaseError(500, "internal_error", message))


@scenario("latency", EVERYWHERE, params=("ms",))
def latency(params: Params) -> Effect:
    """The answer is delayed by `ms` milliseconds of real time (default 1000)."""
    return Effect(delay_ms=params.ms if params.ms is not None else 1000)


@scenario("drop", EVERYWHERE)
def drop(params: Params) -> Effect:
    """The connection is closed without an answer; a create creates nothing."""
    return Effect(wire_fault="drop")


@scenario("reset", EVERYWHERE)
def reset(params: Params) -> Effect:
    """The connection is reset (TCP RST) instead of an answer; a create creates nothing."""
    return Effect(wire_fault="reset")


@scenario("empty-response", EVERYWHERE)
def empty_response(params: Params) -> Effect:
    """The connection is closed cleanly without a byte of answer; a create creates nothing."""
    return Effect(wire_fault="empty-response")


@scenario("garbage", EVERYWHERE)
def garbage(params: Params) -> Effect:
    """Bytes that are not HTTP instead of an answer, then the connection is closed; a create
    creates nothing."""
    return Effect(wire_fault="garbage")


@scenario("truncated", EVERYWHERE)
def truncated(params: Params) -> Effect:
    """The answer is cut off mid-body (its Content-Length the whole) and the connection
    closed; the request was handled: a create made its run and charged it."""
    return Effect(wire_fault="truncated")


@scenario("malformed-chunk", EVERYWHERE)
def malformed_chunk(params: Params) -> Effect:
    """The answer's status and headers, chunked, then a chunk that is not one, and the
    connection closed; the request was handled: a create made its run and charged it."""
    return Effect(wire_fault="malformed-chunk")


@scenario("cdn-lag", FILES, params=("ms",))
def cdn_lag(params: Params) -> Effect:
    """The file answers 404 file_not_found until `ms` milliseconds (default 5000) after its
    run succeeded, on the mock's clock, like a CDN that has not caught up yet."""
    return Effect(file_lag_ms=params.ms if params.ms is not None else DEFAULT_CDN_LAG_MS)


@scenario("rate-limit", BOTH)
def rate_limit(params: Params) -> Effect:
    """The request answers 429 RATE_LIMITED, as if the key's window were full."""
    error = RunbaseError(429, "RATE_LIMITED", "Rate limit exceeded", headers={"Retry-After": "1"})
    return Effect(http_error=error)


@scenario("usage-exceeded")
def usage_exceeded(params: Params) -> Effect:
    """The create answers 429 USAGE_EXCEEDED and creates nothing."""
    return Effect(
        http_error=RunbaseError(429, "USAGE_EXCEEDED", "Usage quota exceeded for this API key")
    )


@scenario("insufficient-balance")
def insufficient_balance(params: Params) -> Effect:
    """The create answers 402 insufficient_balance and creates nothing."""
    return Effect(
        http_error=RunbaseError(402, "insufficient_balance", "Insufficient balance for this run")
    )


@scenario("spend-limit-exceeded")
def spend_limit_exceeded(params: Params) -> Effect:
    """The create answers 403 api_key_spend_limit_exceeded, as if the key had spent its
    lifetime limit, and creates nothing."""
    return Effect(
        http_error=RunbaseError(403, "api_key_spend_limit_exceeded", "API key spend limit exceeded")
    )


@scenario("invalid-api-key", BOTH)
def invalid_api_key(params: Params) -> Effect:
    """The request answers 401 invalid_api_key, as if the key had been disabled or had
    expired; a create creates nothing."""
    return Effect(
        http_error=RunbaseError(401, "invalid_api_key", "API key is invalid, disabled or expired")
    )


@scenario("ip-not-allowed", BOTH)
def ip_not_allowed(params: Params) -> Effect:
    """The request answers 403 ip_not_allowed, as if the caller's IP were not in the key's
    allow-list; a create creates nothing."""
    return Effect(
        http_error=RunbaseError(
            403, "ip_not_allowed", "This IP address is not allowed for this API key"
        )
    )


@scenario("run-not-found", frozenset({"get"}))
def run_not_found(params: Params) -> Effect:
    """The poll answers 404 run_not_found, whatever run it asks for."""
    return Effect(
        http_error=RunbaseError(404, "run_not_found", "No run with this id for this account")
    )


@scenario("file-not-found", FILES)
def file_not_found(params: Params) -> Effect:
    """The file answers 404 file_not_found this time (a rule's `times` says how many times),
    like a CDN that has not got it yet; unlike cdn-lag, counted in requests, not time."""
    return Effect(http_error=RunbaseError(404, "file_not_found", "File not found"))


def describe() -> dict[str, str]:
    return {name: entry.description for name, entry in SCENARIOS.items()}
