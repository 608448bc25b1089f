"""Hypothesis strategies of what Runbase may answer, for property tests of clients.

    from hypothesis import given
    from mock_runbase.strategies import runbase_behaviours

    @given(plan=runbase_behaviours(max_faults=2))
    def test_my_client_copes(runbase_mock, plan):
        runbase_mock.behave(plan)
        my_client.generate("a lighthouse", base_url=runbase_mock.base_url, ...)
        runbase_mock.assert_client_conformed(min_poll_interval=0)

Each example is a ``Plan`` (``client_checks.plan``): faults on the next creates, polls and
file downloads, and the lifecycle, in polls, of the run the client makes. Examples shrink
toward fewer faults, shorter lifecycles, runs that succeed and answers as usual, so a failure
ends on the smallest plan that still breaks the client. Needs hypothesis (``pip install
mock-runbase[contract]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import strategies as st

from mock_runbase.client_checks.plan import FAULTS, Fault, Lifecycle, Plan

__all__ = ["Fault", "Lifecycle", "Plan", "runbase_behaviours"]

ENDPOINTS = ("create", "get", "file")
OUTCOMES = ("succeeded", "failed", "stuck")
DEFAULT_ERROR_CODE = "generation_failed"
MAX_LIST = 12  # polls or downloads a plan reaches
TRANSIENT_WEIGHT = 2


def runbase_behaviours(
    *,
    endpoints: Iterable[str] = ENDPOINTS,
    max_faults: int = 3,
    faults: Iterable[str] | None = None,
    models: Sequence[str] | None = None,
    outcomes: Iterable[str] = OUTCOMES,
    state_polls: int = 4,
    max_latency_ms: int = 300,
) -> st.SearchStrategy[Plan]:
    """Plans of at most ``max_faults`` faults, drawn from ``faults`` (scenario names of
    ``FAULTS``; default all) on ``endpoints`` (``create``, ``get``: polls, ``file``), and one run
    whose lifecycle ends as one of ``outcomes`` (``succeeded``, ``failed``, ``stuck``) after at
    most ``state_polls`` polls in each state. ``models``: the creates the plan's rules match
    (one drawn per plan; default any model). A bad option is a ValueError naming it."""
    chosen_endpoints = checked_names("endpoints", endpoints, ENDPOINTS)
    chosen_faults = checked_names("faults", FAULTS if faults is None else faults, tuple(FAULTS))
    chosen_outcomes = checked_names("outcomes", outcomes, OUTCOMES)
    for name, value, least in (("max_faults", max_faults, 0), ("state_polls", state_polls, 0),
                               ("max_latency_ms", max_latency_ms, 1)):  # fmt: skip
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number from {least}, not {value!r}")
    if not chosen_outcomes:
        raise ValueError("outcomes: give at least one of " + ", ".join(OUTCOMES))
    reachable = [n for n in chosen_faults if FAULTS[n].endpoints & set(chosen_endpoints)]
    if faults is not None and chosen_faults and not reachable:
        raise ValueError(
            f"faults: none of {', '.join(chosen_faults)} happens on "
            f"{', '.join(chosen_endpoints) or 'no endpoint'}: no plan would hold a fault"
        )
    if models is not None and (isinstance(models, str) or not models):
        raise ValueError("models: give a list of model ids (or None for any model)")

    def faults_of(endpoint: str) -> st.SearchStrategy[Fault] | None:
        names = [n for n in chosen_faults if endpoint in FAULTS[n].endpoints]
        if endpoint not in chosen_endpoints or not names:
            return None
        latency = st.integers(min_value=1, max_value=max_latency_ms)
        # A refusal (401-404, USAGE_EXCEEDED) ends the client's job: the rest of the plan is
        # never reached. Transient faults are drawn twice as often, so most plans get
        # as far as their run's lifecycle.
        transient = [n for n in names if FAULTS[n].transient]
        weighted = transient * TRANSIENT_WEIGHT + [n for n in names if not FAULTS[n].transient]
        return st.sampled_from(weighted).flatmap(
            lambda name: st.builds(
                Fault, st.just(name), latency if name == "latency" else st.none()
            )
        )

    lifecycle = lifecycles(chosen_outcomes, state_polls)
    model = st.none() if models is None else st.sampled_from(list(models))

    @st.composite
    def plans(draw: st.DrawFn) -> Plan:
        budget = max_faults
        create_faults: list[Fault] = []
        poll_steps: tuple[Fault | None, ...] = ()
        file_steps: tuple[Fault | None, ...] = ()
        on_creates, on_polls, on_files = faults_of("create"), faults_of("get"), faults_of("file")
        if on_creates is not None:
            create_faults = draw(st.lists(on_creates, max_size=budget))
            budget -= len(create_faults)
        if on_polls is not None:
            poll_steps = draw(placed(on_polls, budget))
            budget -= sum(step is not None for step in poll_steps)
        if on_files is not None:
            file_steps = draw(placed(on_files, budget))
        return Plan(
            creates=(*create_faults, draw(lifecycle)),
            polls=poll_steps,
            files=file_steps,
            model=draw(model),
        )

    return plans()


def placed(
    faults: st.SearchStrategy[Fault], budget: int
) -> st.SearchStrategy[tuple[Fault | None, ...]]:
    """At most ``budget`` faults, each after a gap of requests answered as usual."""
    gaps = st.lists(st.tuples(st.integers(0, 3), faults), max_size=budget)

    def spread(pairs: list[tuple[int, Fault]]) -> tuple[Fault | None, ...]:
        steps: list[Fault | None] = []
        for gap, fault in pairs:
            steps.extend([None] * gap)
            steps.append(fault)
        return tuple(steps[:MAX_LIST])

    return gaps.map(spread)


def lifecycles(outcomes: Sequence[str], state_polls: int) -> st.SearchStrategy[Lifecycle]:
    """A run's lifecycle; only what its outcome uses is drawn (a stuck run has no processing
    polls, a run that succeeds no error), so shrinking spends no tries on the rest."""
    polls = st.integers(0, state_polls)
    error_code = st.just(DEFAULT_ERROR_CODE) | st.from_regex(r"\A[a-z][a-z_]{2,23}\Z")
    message = st.none() | st.text(min_size=1, max_size=60).filter(str.strip)
    by_outcome = {
        "succeeded": st.builds(Lifecycle, polls, polls),
        "failed": st.builds(Lifecycle, polls, polls, st.just("failed"), error_code, message),
        "stuck": st.builds(Lifecycle, polls, st.none()),
    }
    return st.one_of([by_outcome[outcome] for outcome in outcomes])


def checked_names(option: str, given: Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(given, str):
        raise ValueError(f"{option}: give a list of names, not the string {given!r}")
    names = tuple(given)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(
            f"{option}: {', '.join(map(repr, unknown))} not among {', '.join(allowed)}"
        )
    return names
