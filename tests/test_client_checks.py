"""Contracts for clients in process: plans land where they say, the verdicts, the plugin.

A plan's steps must hit exactly the requests they name (property tests over plans); the
sample client (tests/clients/sample_client.py) copes with every plan drawn, on the virtual
clock (its sleeps advance it); a flaw is found and shrunk to a plan naming it (the other flaws,
and the client in a process of its own: tests/test_check_client.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from mock_runbase.client_checks.plan import FAULTS, Fault, Lifecycle, Plan
from mock_runbase.client_checks.verdicts import CLIENT_RULES, Conduct, judge_client
from mock_runbase.spec import load_spec
from mock_runbase.strategies import runbase_behaviours
from mock_runbase.testing import RunbaseMock
from tests.clients.sample_client import Client

FIXTURE_PER_EXAMPLE = settings(  # every example resets the test's account: behave(plan)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
    database=None,
    max_examples=30,  # each is a handful of HTTP exchanges with the served mock
)
ERROR_STATUS = {
    "error-500": 500,
    "rate-limit": 429,
    "run-not-found": 404,
    "invalid-api-key": 401,
    "ip-not-allowed": 403,
    "insufficient-balance": 402,
    "spend-limit-exceeded": 403,
    "usage-exceeded": 429,
}
QUICK = {"max_latency_ms": 5}  # latency is real time: keep it short here


def create(mock: RunbaseMock) -> httpx.Response:
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "a plan test"}}
    return mock.control.post("/v1/runs", json=body)  # the test's key, the shared connection


def poll(mock: RunbaseMock, run_id: str) -> httpx.Response:
    return mock.control.get(f"/v1/runs/{run_id}")


def sample_client(mock: RunbaseMock, flaw: str | None = None) -> Client:
    """The sample client, its waits on the mock's virtual clock, its output kept quiet."""
    return Client(
        mock.base_url,
        mock.api_key,
        flaw=flaw,
        poll_interval=1.0,
        sleep=mock.clock.advance,
        out=lambda line: None,
    )


# --- plans land where they say ---------------------------------------------------------------


@FIXTURE_PER_EXAMPLE
@given(
    polls=st.lists(
        st.none() | st.sampled_from(["error-500", "rate-limit", "run-not-found"]), max_size=8
    )
)
def test_each_poll_step_answers_exactly_the_poll_it_names(
    runbase_mock: RunbaseMock, polls: list[str | None]
) -> None:
    plan = Plan(
        creates=(Lifecycle(0, None),),  # processing for ever: every answered poll is a 200
        polls=tuple(None if name is None else Fault(name) for name in polls),
    )
    runbase_mock.behave(plan)
    run_id = create(runbase_mock).json()["id"]
    statuses = [poll(runbase_mock, run_id).status_code for _ in range(len(polls) + 2)]
    assert statuses == [200 if name is None else ERROR_STATUS[name] for name in polls] + [200] * 2


@FIXTURE_PER_EXAMPLE
@given(
    faults=st.lists(
        st.sampled_from(["error-500", "rate-limit", "insufficient-balance"]), max_size=4
    ),
    pending=st.integers(0, 3),
    processing=st.integers(0, 3),
    failed=st.booleans(),
)
def test_creates_answer_their_faults_in_turn_then_the_run_lives_its_polls(
    runbase_mock: RunbaseMock, faults: list[str], pending: int, processing: int, failed: bool
) -> None:
    outcome = "failed" if failed else "succeeded"
    life = Lifecycle(pending, processing, outcome, "content_policy" if failed else None)
    runbase_mock.behave(Plan(creates=(*map(Fault, faults), life)))
    assert [create(runbase_mock).status_code for _ in faults] == [ERROR_STATUS[f] for f in faults]
    created = create(runbase_mock).json()
    seen = [poll(runbase_mock, created["id"]).json() for _ in range(pending + processing + 2)]
    expected = ["pending"] * pending + ["processing"] * processing + [outcome] * 2
    assert [run["status"] for run in seen] == expected
    if failed:
        assert seen[-1]["error"]["code"] == "content_policy"
    else:
        assert seen[-1]["output"]["urls"]


@given(plan=runbase_behaviours())
def test_every_plan_reads_as_steps_and_rules_the_control_document_accepts(plan: Plan) -> None:
    schema = rule_schema()
    for rule in plan.rules():
        assert not list(schema.iter_errors(rule)), rule
    assert len(plan.steps()) >= 1
    assert sum(plan.kinds().values()) == len(plan.faults()) + len(plan.lifecycles())


def rule_schema() -> Any:
    from mock_runbase.control_spec import load_control_spec

    control = load_control_spec()
    return control.compile("#/components/schemas/MockRuleInput")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"faults": ["explode"]}, "'explode' not among"),
        ({"faults": "drop"}, "a list of names"),
        ({"endpoints": ["poll"]}, "'poll' not among create, get, file"),
        ({"outcomes": []}, "at least one"),
        ({"max_faults": -1}, "max_faults must be a whole number from 0"),
        ({"models": []}, "models: give a list"),
        ({"faults": ["run-not-found"], "endpoints": ["create"]}, "none of run-not-found happens"),
    ],
)
def test_a_bad_option_of_the_strategy_is_a_value_error_naming_it(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        runbase_behaviours(**options)


@given(plan=runbase_behaviours(max_faults=2, faults=["drop", "rate-limit"], endpoints=["get"]))
def test_the_strategy_keeps_to_its_options(plan: Plan) -> None:
    assert len(plan.faults()) <= 2
    assert {fault.scenario for fault in plan.faults()} <= {"drop", "rate-limit"}
    assert not any(isinstance(step, Fault) for step in plan.creates)
    assert not plan.files


def test_a_plan_refuses_a_fault_where_it_cannot_happen() -> None:
    with pytest.raises(ValueError, match="run-not-found is not an answer to a create"):
        Plan(creates=(Fault("run-not-found"),))
    with pytest.raises(ValueError, match="not a fault of a plan"):
        Fault("explode")
    with pytest.raises(ValueError, match="ms goes with latency"):
        Fault("drop", ms=5)


def test_a_plan_the_mock_refuses_fails_loudly_naming_the_rule(runbase_mock: RunbaseMock) -> None:
    with pytest.raises(ValueError, match=r"rule 1 .* was refused: .*no/such-model"):
        runbase_mock.behave(Plan(creates=(Lifecycle(),), model="no/such-model"))


# --- verdicts ---------------------------------------------------------------------------------


CREATE_BODY = '{"model": "openai/gpt-image-2", "input": {"prompt": "p"}}'


def entry(seq: int, method: str, path: str, status: int | None, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "seq": seq,
        "method": method,
        "path": path,
        "headers": {"authorization": "Bearer ****test", "content-type": "application/json"},
        "body": '{"model": "openai/gpt-image-2", "input": {"prompt": "p"}}'
        if method == "POST"
        else "",
        "status": status,
        "errorCode": None,
        "runId": None,
        "runStatus": None,
        "retryAfter": None,
        "keyLast4": "test",
        "at": f"2026-06-01T12:00:{seq:02d}.000Z",
        "wallAt": f"2026-12-03T10:00:{seq:02d}.000Z",
    }
    return {**base, **fields}


CREATED = entry(1, "POST", "/v1/runs", 200, runId="run_a", runStatus="pending")


def done(seq: int, status: str = "succeeded") -> dict[str, Any]:
    return entry(seq, "GET", "/v1/runs/run_a", 200, runId="run_a", runStatus=status)


JOURNALS: dict[str, list[dict[str, Any]]] = {
    "no-requests": [],
    "request-rejected": [
        entry(1, "POST", "/v1/runs", 400, body='{"input": {}}', errorCode="missing_model")
    ],
    "retried-non-retryable": [
        entry(1, "POST", "/v1/runs", 402, errorCode="insufficient_balance"),
        entry(2, "POST", "/v1/runs", 402, errorCode="insufficient_balance"),
    ],
    "polled-finished-run": [CREATED, done(2), done(3)],
    "run-abandoned": [CREATED],
    "retry-after-ignored": [
        entry(
            1,
            "POST",
            "/v1/runs",
            429,
            errorCode="RATE_LIMITED",
            retryAfter="2",
            wallAt="2026-12-03T10:00:01.000Z",
            at="2026-06-01T12:00:01.000Z",
        ),
        {
            **CREATED,
            "seq": 2,
            "wallAt": "2026-12-03T10:00:02.500Z",
            "at": "2026-06-01T12:00:01.000Z",
        },
        done(5),
    ],
    "polled-too-fast": [
        CREATED,
        done(2, "processing"),
        {**done(3), "wallAt": done(2)["wallAt"], "at": done(2)["at"]},
    ],
    "polled-for-ever": [CREATED] + [done(n, "processing") for n in range(2, 40)],
    "gave-up-on-transient": [CREATED, entry(2, "GET", "/v1/runs/run_a", 500)],
}


@pytest.mark.parametrize("rule", sorted(JOURNALS))
def test_each_client_rule_is_broken_by_its_journal_and_only_it(rule: str) -> None:
    found = judge_client(JOURNALS[rule], Conduct(max_polls=30), load_spec())
    assert [violation.rule for violation in found] == [rule]
    assert found[0].basis == CLIENT_RULES[rule].basis


def test_a_clean_journal_breaks_nothing() -> None:
    journal = [
        CREATED,
        done(2, "processing"),
        done(3),
        entry(4, "GET", "/files/generated/a.png", 200),
    ]
    assert judge_client(journal, Conduct(), load_spec()) == []


def test_waiting_by_either_clock_counts() -> None:
    """A client that sleeps for real, or advances the virtual clock, has waited."""
    limited = entry(1, "POST", "/v1/runs", 429, errorCode="RATE_LIMITED", retryAfter="1")
    by_mock = {**CREATED, "seq": 2, "wallAt": limited["wallAt"], "at": "2026-06-01T12:00:09.000Z"}
    by_wall = {**CREATED, "seq": 2, "at": limited["at"], "wallAt": "2026-12-03T10:00:09.000Z"}
    for again in (by_mock, by_wall):
        assert judge_client([limited, again, done(12)], Conduct(), load_spec()) == []


def test_advice_rules_switch_off_together_or_by_name() -> None:
    journal = JOURNALS["polled-too-fast"]
    assert judge_client(journal, Conduct(advice=False), load_spec()) == []
    assert judge_client(journal, Conduct(off=frozenset({"polled-too-fast"})), load_spec()) == []
    with pytest.raises(ValueError, match="off: explode not among"):
        Conduct(off=frozenset({"explode"}))


def test_stopping_on_a_transient_failure_is_fine_when_the_run_never_ends() -> None:
    journal = JOURNALS["gave-up-on-transient"]
    stuck = Plan(creates=(Lifecycle(0, None),))
    assert judge_client(journal, Conduct(), load_spec(), stuck) == []


# --- the plugin: the sample client against drawn plans ---------------------------------------


@FIXTURE_PER_EXAMPLE
@given(plan=runbase_behaviours(**QUICK))
def test_the_robust_sample_client_copes_with_every_plan(
    runbase_mock: RunbaseMock, plan: Plan
) -> None:
    runbase_mock.behave(plan)
    assert sample_client(runbase_mock).generate("a lighthouse") == 0
    runbase_mock.assert_client_conformed()


def smallest_breaking_plan(mock: RunbaseMock, flaw: str, **options: Any) -> Plan:
    def breaks(plan: Plan) -> bool:
        mock.behave(plan)
        try:
            sample_client(mock, flaw).generate("a lighthouse")
        except Exception:
            return True
        return bool(mock.client_violations())

    found: Plan = find(
        runbase_behaviours(**QUICK, **options),
        breaks,
        settings=settings(FIXTURE_PER_EXAMPLE, max_examples=300, derandomize=True),
    )
    return found


def test_shrinking_leaves_one_429_for_a_client_that_ignores_retry_after(
    runbase_mock: RunbaseMock,
) -> None:
    # faults on creates (check-client's test shrinks the whole strategy): one 429 is left
    plan = smallest_breaking_plan(runbase_mock, "ignores-retry-after", endpoints=["create"])
    assert plan.faults() == [Fault("rate-limit")]  # on a create or a poll: one 429, no other
    rules = {v.rule for v in client_violations_of(runbase_mock, plan, "ignores-retry-after")}
    assert "retry-after-ignored" in rules
    assert rules <= {"retry-after-ignored", "polled-too-fast"}  # a 429 on a poll: a poll too


def client_violations_of(mock: RunbaseMock, plan: Plan, flaw: str) -> list[Any]:
    mock.behave(plan)
    sample_client(mock, flaw).generate("a lighthouse")
    return mock.client_violations()


def test_every_fault_of_a_plan_is_a_scenario_of_the_mock(runbase_mock: RunbaseMock) -> None:
    scenarios = runbase_mock.control.get("/_mock/scenarios").json()["scenarios"]
    assert set(FAULTS) <= set(scenarios)
