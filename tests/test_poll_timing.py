"""Runs timed by polls: one state per answered poll instead of by the clock.

A rule's (or a header's) ``pending_polls``/``processing_polls``, or ``--timing polls``, make a
run that shows ``pending`` on its first ``pending_polls`` answered polls, then ``processing``
on the next ``processing_polls`` (``stuck``: for ever), then its outcome; whatever the clock
does meanwhile. Only a poll answered 200 with the run counts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mock_runbase.runs import (
    TIMING_PROFILES,
    UNTIL_POLLED_MS,
    PollPlan,
    Run,
    forced,
    planned_polls,
    poll_status,
    polled,
    status_at,
    until_polled,
)
from tests.conftest import KEY, OTHER_KEY, Mock, MockFactory

COST = 50_000  # gpt-image-2 at 1K
fresh_mocks = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def add_rule(mock: Mock, effect: dict[str, Any], **more: Any) -> dict[str, Any]:
    body = {"match": {"endpoint": "create"}, "effect": effect, **more}
    rule: dict[str, Any] = ok(mock.client.post("/_mock/rules", json=body))
    return rule


def statuses(mock: Mock, run_id: str, polls: int, key: str = KEY) -> list[str]:
    return [ok(mock.get(run_id, key=key))["status"] for _ in range(polls)]


def expected(pending: int, processing: int | None, outcome: str, polls: int) -> list[str]:
    """The model: poll k shows pending up to ``pending``, then processing up to
    ``pending + processing`` (None: for ever), then the outcome."""
    shown = []
    for k in range(1, polls + 1):
        if k <= pending:
            shown.append("pending")
        elif processing is None or k <= pending + processing:
            shown.append("processing")
        else:
            shown.append(outcome)
    return shown


ORDER = {"pending": 0, "processing": 1, "succeeded": 2, "failed": 2}


# --- through HTTP: any plan, any scenario, any clock ------------------------------------------


@fresh_mocks
@example(pending=0, processing=0, scenario="fail", advances=[0] * 10)  # ended at its creation
@example(pending=3, processing=3, scenario="stuck", advances=[3600] * 10)
@given(
    pending=st.integers(0, 3),
    processing=st.integers(0, 3),
    scenario=st.sampled_from(["succeed", "fail", "stuck"]),
    advances=st.lists(st.sampled_from([0, 0, 1, 5, 3600]), min_size=10, max_size=10),
)
def test_a_rules_run_moves_one_state_per_answered_poll(
    make_mock: MockFactory, pending: int, processing: int, scenario: str, advances: list[int]
) -> None:
    mock = make_mock()  # realistic timing: the clock would move a run timed by it
    effect: dict[str, Any] = {"scenario": scenario, "pending_polls": pending}
    if scenario != "stuck":
        effect["processing_polls"] = processing
    add_rule(mock, effect)
    balance = mock.balance()
    created = ok(mock.create())
    assert created["status"] == "pending"
    ended_at_once = scenario == "fail" and pending == processing == 0  # refunded at once
    assert mock.balance() == balance - (0 if ended_at_once else COST)
    polls = pending + processing + 3
    outcome = {"succeed": "succeeded", "fail": "failed", "stuck": "processing"}[scenario]
    want = expected(pending, None if scenario == "stuck" else processing, outcome, polls)
    answers = []
    for step in range(polls):
        mock.advance(advances[step % len(advances)])
        answers.append(ok(mock.get(created["id"])))
    assert [answer["status"] for answer in answers] == want
    ranks = [ORDER[answer["status"]] for answer in answers]
    assert ranks == sorted(ranks)  # never back
    terminal = [answer for answer in answers if answer["status"] in ("succeeded", "failed")]
    assert len({answer["completedAt"] for answer in terminal}) <= 1  # the same on every poll
    for answer in terminal:
        assert answer["completedAt"] >= answer["createdAt"]
        if answer["status"] == "succeeded":
            assert answer["output"]["urls"][0].endswith(".png")
        else:
            assert answer["error"]["code"] == "generation_failed"
    assert mock.balance() == balance - (0 if outcome == "failed" else COST)


def test_completed_at_is_the_instant_of_the_poll_that_ended_it(mock: Mock) -> None:
    add_rule(mock, {"scenario": "fail", "pending_polls": 1, "processing_polls": 1})
    run_id = ok(mock.create())["id"]
    mock.advance(3600)
    assert statuses(mock, run_id, 2) == ["pending", "processing"]
    mock.advance(7.5)
    ended = ok(mock.get(run_id))
    assert ended["completedAt"] == mock.client.get("/_mock/clock").json()["now"]
    mock.advance(60)
    assert ok(mock.get(run_id))["completedAt"] == ended["completedAt"]


def test_both_counts_zero_ends_the_run_at_its_creation(mock: Mock) -> None:
    add_rule(mock, {"scenario": "fail", "pending_polls": 0, "processing_polls": 0})
    balance = mock.balance()
    created = ok(mock.create())
    assert created["status"] == "pending"
    assert mock.balance() == balance  # refunded at once, as an instant run
    ended = ok(mock.get(created["id"]))
    assert (ended["status"], ended["completedAt"]) == ("failed", created["createdAt"])


def test_one_count_given_takes_the_others_default(mock: Mock) -> None:
    add_rule(mock, {"scenario": "succeed", "pending_polls": 2}, times=1)
    add_rule(mock, {"scenario": "succeed", "processing_polls": 2}, times=1)
    first, second = ok(mock.create())["id"], ok(mock.create())["id"]
    assert statuses(mock, first, 4) == ["pending", "pending", "processing", "succeeded"]
    assert statuses(mock, second, 3) == ["processing", "processing", "succeeded"]


def test_the_header_and_the_prompt_tag_take_the_counts_too(mock: Mock) -> None:
    by_header = ok(mock.create(scenario="fail; pending_polls=1; processing_polls=2"))["id"]
    by_tag = ok(mock.create(prompt="a cat [mock:stuck; pending_polls=2]"))["id"]
    assert statuses(mock, by_header, 5) == [
        "pending",
        "processing",
        "processing",
        "failed",
        "failed",
    ]
    assert statuses(mock, by_tag, 4) == ["pending", "pending", "processing", "processing"]


def test_a_poll_header_asking_for_counts_is_not_applied_and_says_so(mock: Mock) -> None:
    run_id = ok(mock.create())["id"]
    answer = mock.client.get(
        f"/v1/runs/{run_id}",
        headers={"Authorization": f"Bearer {KEY}", "X-Mock-Scenario": "succeed; pending_polls=3"},
    )
    assert answer.status_code == 200
    assert (
        "succeed applies to creates only; not applied to a poll" in answer.headers["X-Mock-Warning"]
    )


def test_the_rule_shows_its_counts(mock: Mock) -> None:
    rule = add_rule(mock, {"scenario": "fail", "pending_polls": 2, "processing_polls": 0})
    assert rule["effect"] == {"scenario": "fail", "pending_polls": 2, "processing_polls": 0}
    listed = mock.client.get("/_mock/rules").json()["rules"][0]
    assert listed["effect"] == rule["effect"]


def test_the_control_apis_run_view_shows_the_count_and_plan(mock: Mock) -> None:
    run_id = ok(mock.create(scenario="stuck; pending_polls=2"))["id"]
    timed = ok(mock.create())["id"]
    mock.get(run_id)
    views = {run["id"]: run["mock"] for run in ok(mock.client.get("/_mock/runs"))["runs"]}
    seen = views[run_id]
    assert (seen["polls"], seen["pendingPolls"], seen["processingPolls"]) == (1, 2, None)
    assert "polls" not in views[timed]


# --- --timing polls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "shown"),
    [
        (None, ["processing", "succeeded", "succeeded"]),
        ("fail", ["processing", "failed", "failed"]),
        ("stuck", ["processing"] * 12),
        ("slow", ["processing"] * 10 + ["succeeded", "succeeded"]),
    ],
)
def test_timing_polls_moves_every_run_one_state_per_poll(
    make_mock: MockFactory, scenario: str | None, shown: list[str]
) -> None:
    mock = make_mock(timing="polls")
    created = ok(mock.create(scenario=scenario))
    assert created["status"] == "pending"
    mock.advance(10**6)  # the clock does not move them
    assert statuses(mock, created["id"], len(shown)) == shown


def test_a_rules_counts_win_over_timing_polls(make_mock: MockFactory) -> None:
    mock = make_mock(timing="polls")
    add_rule(mock, {"scenario": "succeed", "pending_polls": 2, "processing_polls": 0})
    assert statuses(mock, ok(mock.create())["id"], 3) == ["pending", "pending", "succeeded"]


# --- which polls count ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effect", "status"),
    [({"scenario": "error-500"}, 500), ({"scenario": "rate-limit"}, 429)],
)
def test_a_poll_answered_by_a_rules_error_does_not_count(
    mock: Mock, effect: dict[str, Any], status: int
) -> None:
    run_id = ok(mock.create(scenario="succeed; pending_polls=1; processing_polls=1"))["id"]
    ok(
        mock.client.post(
            "/_mock/rules", json={"match": {"endpoint": "get"}, "effect": effect, "times": 1}
        )
    )
    assert mock.get(run_id).status_code == status
    assert statuses(mock, run_id, 3) == ["pending", "processing", "succeeded"]


def test_a_poll_whose_connection_is_dropped_does_not_count(mock: Mock) -> None:
    run_id = ok(mock.create(scenario="succeed; pending_polls=1; processing_polls=1"))["id"]
    with pytest.raises(ConnectionResetError):
        mock.client.get(
            f"/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {KEY}", "X-Mock-Scenario": "drop"},
        )
    assert statuses(mock, run_id, 3) == ["pending", "processing", "succeeded"]


@pytest.mark.parametrize("fault", ["truncated", "malformed-chunk"])
def test_a_poll_broken_on_its_way_was_answered_and_counts(mock: Mock, fault: str) -> None:
    run_id = ok(mock.create(scenario="succeed; pending_polls=1; processing_polls=1"))["id"]
    with pytest.raises(ConnectionResetError):
        mock.client.get(
            f"/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {KEY}", "X-Mock-Scenario": fault},
        )
    assert statuses(mock, run_id, 2) == ["processing", "succeeded"]


def test_a_poll_by_another_account_does_not_count(mock: Mock) -> None:
    run_id = ok(mock.create(scenario="succeed; pending_polls=1; processing_polls=1"))["id"]
    assert mock.get(run_id, key=OTHER_KEY).status_code == 404
    assert statuses(mock, run_id, 3) == ["pending", "processing", "succeeded"]


def test_a_run_timed_by_the_clock_never_counts_a_poll(mock: Mock) -> None:
    store = mock.client.app.state.service.store  # type: ignore[attr-defined]
    counted: list[str] = []
    count_poll = store.count_poll

    async def counting(run_id: str, now_ms: int) -> Run | None:
        counted.append(run_id)
        return await count_poll(run_id, now_ms)

    store.count_poll = counting
    timed = ok(mock.create())["id"]
    by_polls = ok(mock.create(scenario="succeed; processing_polls=1"))["id"]
    mock.get(timed)
    mock.get(by_polls)
    assert counted == [by_polls]


def test_the_control_api_moves_a_run_further_and_polls_never_move_it_back(mock: Mock) -> None:
    run_id = ok(mock.create(scenario="fail; pending_polls=3; processing_polls=3"))["id"]
    assert statuses(mock, run_id, 1) == ["pending"]
    ok(mock.client.post(f"/_mock/runs/{run_id}/state", json={"status": "processing"}))
    assert (
        statuses(mock, run_id, 5) == ["processing"] * 5
    )  # polls 2..6: due pending, then processing
    balance = mock.balance()
    assert statuses(mock, run_id, 1) == ["failed"]  # poll 7
    assert mock.balance() == balance + COST
    forced_run = ok(mock.create(scenario="succeed; pending_polls=3"))["id"]
    ended = ok(mock.client.post(f"/_mock/runs/{forced_run}/state", json={"status": "succeeded"}))
    assert statuses(mock, forced_run, 6) == ["succeeded"] * 6
    assert ok(mock.get(forced_run))["completedAt"] == ended["completedAt"]


# --- the state document -----------------------------------------------------------------------


@pytest.mark.parametrize("mock_store", ["memory", "redis"])
def test_a_loaded_run_carries_on_counting(make_mock: MockFactory) -> None:
    original = make_mock()
    run_id = ok(original.create(scenario="fail; pending_polls=2; processing_polls=2"))["id"]
    assert statuses(original, run_id, 3) == ["pending", "pending", "processing"]
    document = ok(original.client.get("/_mock/state"))
    [entry] = document["runs"]
    assert (entry["polls"], entry["pendingPolls"], entry["processingPolls"]) == (3, 2, 2)
    copy_of_it = make_mock()
    ok(copy_of_it.client.put("/_mock/state", json=document))
    assert ok(copy_of_it.client.get("/_mock/state")) == document
    balance = copy_of_it.balance()
    assert statuses(copy_of_it, run_id, 3) == ["processing", "failed", "failed"]
    assert copy_of_it.balance() == balance + COST


def test_a_run_timed_by_the_clock_has_no_poll_fields_in_the_state(mock: Mock) -> None:
    ok(mock.create())
    [entry] = ok(mock.client.get("/_mock/state"))["runs"]
    assert not {"polls", "pendingPolls", "processingPolls"} & set(entry)


# --- the pure functions -----------------------------------------------------------------------


def a_run(**fields: Any) -> Run:
    run = Run(
        id="run_1",
        account="a",
        key=KEY,
        model="openai/gpt-image-2",
        input={"prompt": "x"},
        cost_usd=COST,
        created_ms=1_000,
        pending_ms=0,
        processing_ms=None,
        outcome="succeeded",
        error=None,
        width=1024,
        height=1024,
        file_name="f.png",
        image_seed=1,
        scenario="succeed",
    )
    return replace(run, **fields)


PLANS = st.builds(PollPlan, st.integers(0, 4), st.none() | st.integers(0, 4))


@given(
    plan=PLANS,
    outcome=st.sampled_from(["succeeded", "failed"]),
    gaps=st.lists(st.integers(0, 10**9), min_size=12, max_size=12),
)
def test_polled_shows_what_each_poll_is_due_and_keeps_status_a_function_of_time(
    plan: PollPlan, outcome: str, gaps: list[int]
) -> None:
    pending_ms, processing_ms = until_polled(plan)
    run = a_run(
        pending_ms=pending_ms,
        processing_ms=processing_ms,
        outcome=outcome,
        polls=0,
        pending_polls=plan.pending,
        processing_polls=plan.processing,
    )
    now = run.created_ms
    for k, gap in enumerate(gaps, start=1):
        now += gap
        instants = [t for t in (run.created_ms, now - 1) if run.created_ms <= t < now]
        past = [status_at(run, instant) for instant in instants]
        run = polled(run, now)
        assert run.polls == k
        assert status_at(run, now) == poll_status(run, k)
        assert [status_at(run, instant) for instant in instants] == past  # the past is kept
        assert status_at(run, now + 10**9) == status_at(run, now)  # held until polled


def test_a_run_timed_by_the_clock_is_not_polled() -> None:
    run = a_run(pending_ms=10, processing_ms=10)
    assert polled(run, 5) is run


def test_the_first_state_is_held_for_ever_until_polled() -> None:
    assert until_polled(PollPlan(1, 1)) == (UNTIL_POLLED_MS, None)
    assert until_polled(PollPlan(0, None)) == (0, None)
    assert until_polled(PollPlan(0, 1)) == (0, None)
    assert until_polled(PollPlan(0, 0)) == (0, 0)


def test_the_plan_comes_from_the_scenario_else_the_profile_scaled_by_slow() -> None:
    polls, realistic = TIMING_PROFILES["polls"], TIMING_PROFILES["realistic"]
    assert planned_polls(realistic, None, 1.0, False) is None
    assert planned_polls(realistic, PollPlan(2, 3), 1.0, False) == PollPlan(2, 3)
    assert planned_polls(polls, None, 1.0, False) == PollPlan(0, 1)
    assert planned_polls(polls, None, 10.0, False) == PollPlan(0, 10)
    assert planned_polls(polls, None, 1.0, True) == PollPlan(0, None)
    assert planned_polls(polls, PollPlan(2, 3), 1.0, False) == PollPlan(2, 3)


def test_polled_never_moves_a_forced_run_back() -> None:
    run = a_run(
        pending_ms=UNTIL_POLLED_MS, polls=0, pending_polls=5, processing_polls=5, outcome="failed"
    )
    ended = forced(run, "succeeded", 2_000, None)
    assert polled(ended, 3_000) == replace(ended, polls=1)


# --- the pytest plugin ------------------------------------------------------------------------

PLUGIN_CONFTEST = """
import dataclasses

import pytest

from mock_runbase.testing import TEST_DEFAULTS


@pytest.fixture(scope="session")
def runbase_settings():
    return dataclasses.replace(TEST_DEFAULTS, timing="polls")
"""

PLUGIN_SUITE = """
import httpx
import pytest


def statuses(mock, polls):
    headers = {"Authorization": f"Bearer {mock.api_key}"}
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "a fox"}}
    created = httpx.post(f"{mock.base_url}/runs", json=body, headers=headers).json()
    url = f"{mock.base_url}/runs/{created['id']}"
    return [created["status"]] + [
        httpx.get(url, headers=headers).json()["status"] for _ in range(polls)
    ]


def test_the_session_settings(runbase_mock):
    assert statuses(runbase_mock, 3) == ["pending", "processing", "succeeded", "succeeded"]


@pytest.mark.runbase(timing="instant")
def test_a_marker_instead(runbase_mock):
    assert statuses(runbase_mock, 1) == ["pending", "succeeded"]


@pytest.mark.runbase(timing="polls")
def test_a_marker_of_polls(runbase_mock):
    assert statuses(runbase_mock, 2) == ["pending", "processing", "succeeded"]
"""


def test_the_pytest_plugin_takes_timing_polls(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(test_user_suite=PLUGIN_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
