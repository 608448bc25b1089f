"""The state as one document: ``GET /_mock/state`` exports it, ``PUT /_mock/state`` brings it
back (checked whole, or refused changing nothing), on both stores; the pytest handle."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mock_runbase
from mock_runbase.control_spec import load_control_spec
from mock_runbase.runs import seeded_token
from mock_runbase.spec import compile_pointer
from tests.conftest import GPT, KEY, OTHER_KEY, Mock, MockFactory

Document = dict[str, Any]
ACME_KEY = "sk-acme-ci"


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both stores."""
    param: str = request.param
    return param


def state_of(mock: Mock) -> Document:
    response = mock.client.get("/_mock/state")
    assert response.status_code == 200, response.text
    document: Document = response.json()
    return document


def load(mock: Mock, document: Any) -> Any:
    return mock.client.put("/_mock/state", json=document)


def ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def history(mock: Mock) -> None:
    """Something of everything a state holds: declared keys and a dropped one, a balance,
    rules part-way through their budgets, runs done, failed (refunded), failing later (a
    refund due), stuck and held, on two accounts, with the clock moved between them."""
    ok(mock.client.put("/_mock/accounts/acme", json={"keys": [{"key": "sk-acme-old"}]}))
    acme = {
        "balanceUsd": 2_000_000,
        "keys": [{"key": ACME_KEY, "spendLimitCents": 150, "expiresAt": "2027-01-01T00:00:00Z"}],
    }
    ok(mock.client.put("/_mock/accounts/acme", json=acme))
    every_third = {"match": {"endpoint": "create"}, "effect": {"scenario": "fail"}, "every": 3}
    ok(mock.client.post("/_mock/rules", json=every_third))
    flaky = {
        "match": {"endpoint": "get"},
        "effect": {"scenario": "error-500"},
        "probability": 0.3,
        "seed": 11,
    }
    ok(mock.client.post("/_mock/rules", json=flaky))
    ids = [ok(mock.create(prompt=f"run {n}"))["id"] for n in range(3)]  # the 3rd fails
    ids.append(ok(mock.create(key=OTHER_KEY, scenario="stuck"))["id"])
    ids.append(ok(mock.create(key=ACME_KEY, prompt="acme's"))["id"])
    ids.append(ok(mock.create(prompt="run 5"))["id"])  # fails
    mock.advance(1)
    ok(mock.client.post(f"/_mock/runs/{ids[1]}/state", json={"status": "processing"}))
    mock.advance(6)  # both failures refunded
    ids.append(ok(mock.create(key=OTHER_KEY, scenario="fail", prompt="later"))["id"])  # due
    for run_id in ids[:3]:
        mock.get(run_id)


def what_a_client_sees(mock: Mock) -> list[Any]:
    runs = mock.client.get("/_mock/runs").json()["runs"]
    seen = [
        [mock.get(run["id"], key=key).json() for run in runs] for key in (KEY, OTHER_KEY, ACME_KEY)
    ]
    return [
        *seen,
        runs,
        mock.client.get("/_mock/accounts").json(),
        mock.client.get("/_mock/rules").json(),
        mock.client.get("/_mock/clock").json(),
    ]


def more_requests(mock: Mock) -> list[Any]:
    """What comes next: the rules carry on from their counts, refunds fall due."""
    answers = [mock.create(prompt=f"next {n}").json() for n in range(4)]
    mock.advance(30)
    return answers + what_a_client_sees(mock)


def test_an_export_reset_and_import_gives_the_same_state_back(mock: Mock) -> None:
    history(mock)
    document = state_of(mock)
    assert ok(mock.client.post("/_mock/reset"))["reset"]
    assert state_of(mock)["runs"] == []
    loaded = ok(load(mock, document))
    assert loaded["imported"] == {
        "runs": 7,
        "accounts": 1,
        "ledgers": 3,
        "rules": 2,
        "pendingRefunds": 1,
    }
    assert loaded["clock"] == {"now": document["clock"]["now"], "virtual": True}
    assert state_of(mock) == document


def test_a_loaded_state_answers_and_carries_on_as_the_original(make_mock: MockFactory) -> None:
    original = make_mock(seed=5)
    history(original)
    document = state_of(original)
    before = what_a_client_sees(original)
    copy_of_it = make_mock(seed=5)
    ok(load(copy_of_it, document))
    assert what_a_client_sees(copy_of_it) == before
    assert more_requests(copy_of_it) == more_requests(original)
    for mock in (original, copy_of_it):  # 7 matches and 2 hits when exported; fired on the 9th
        every_third = mock.client.get("/_mock/rules").json()["rules"][0]
        assert (every_third["matches"], every_third["hits"]) == (11, 3)


def test_a_pending_refund_is_paid_when_its_run_fails_after_the_import(mock: Mock) -> None:
    history(mock)
    document = state_of(mock)
    spent = mock.account(OTHER_KEY)["spentUsd"]
    ok(mock.client.post("/_mock/reset"))
    ok(load(mock, document))
    assert mock.account(OTHER_KEY)["spentUsd"] == spent
    mock.advance(60)
    assert mock.account(OTHER_KEY)["spentUsd"] == spent - 50_000  # the failed run's cost back


def test_new_seeded_ids_never_repeat_a_loaded_runs_id(mock: Mock) -> None:
    history(mock)
    document = state_of(mock)
    taken = {run["id"] for run in document["runs"]}
    document["counters"]["runs"] = 0  # as if the document had been edited by hand
    ok(load(mock, document))
    created = ok(mock.create(prompt="a new one"))["id"]
    assert created not in taken
    assert created == "run_" + seeded_token(0, "run", len(taken) + 1)
    assert {run["id"] for run in state_of(mock)["runs"]} == taken | {created}


def test_an_import_leaves_the_journal_alone(mock: Mock) -> None:
    history(mock)
    document = state_of(mock)
    journal = mock.client.get("/_mock/requests").json()["requests"]
    assert not {"requests", "journal"} & set(document)
    assert len(journal) == 10
    ok(mock.client.post("/_mock/reset"))
    mock.create()
    before = mock.client.get("/_mock/requests").json()["requests"]
    ok(load(mock, document))
    assert mock.client.get("/_mock/requests").json()["requests"] == before
    assert [entry["path"] for entry in before] == ["/v1/runs"]


def test_the_state_is_the_whole_mocks_only(mock: Mock) -> None:
    history(mock)
    document = state_of(mock)
    scoped: list[dict[str, Any]] = [
        {"headers": {"Authorization": f"Bearer {KEY}"}},
        {"params": {"account": "acme"}},
    ]
    for how in scoped:
        for method, body in (("GET", None), ("PUT", document)):
            answer = mock.client.request(method, "/_mock/state", json=body, **how)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["code"] == "forbidden_account"
            assert "without a key and without ?account=" in answer.json()["error"]["message"]
    assert state_of(mock) == document


def test_a_virtual_clocks_state_is_refused_by_a_real_clock(make_mock: MockFactory) -> None:
    virtual = make_mock()
    history(virtual)
    document = state_of(virtual)
    real = make_mock(clock="real")
    real.create()
    before = state_of(real)
    answer = load(real, document)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "clock_not_virtual"
    assert "--clock virtual" in answer.json()["error"]["message"]
    assert state_of(real)["runs"] == before["runs"]


def test_a_real_clocks_state_sets_a_virtual_clock_to_its_instant(make_mock: MockFactory) -> None:
    real = make_mock(clock="real")
    run_id = ok(real.create(scenario="slow"))["id"]  # pending for seconds, even under load
    document = state_of(real)
    virtual = make_mock()
    virtual.advance(10**6)  # far ahead: the clock goes back to the document's instant
    ok(load(virtual, document))
    assert virtual.client.get("/_mock/clock").json()["now"] == document["clock"]["now"]
    assert virtual.get(run_id).json()["status"] == real.get(run_id).json()["status"] == "pending"


def rule(document: Document) -> Document:
    found: Document = document["rules"][0]
    return found


# a change to a good document (in place, or a document returned instead) -> words of the 400
BAD_DOCUMENTS: list[tuple[str, Callable[[Document], Any], list[str]]] = [
    ("not an object", lambda d: [d], ["a JSON object"]),
    ("no version", lambda d: d.__delitem__("version"), ["version: missing", "reads version 1"]),
    ("a later version", lambda d: d.update(version=2), ["version: 2", "reads version 1"]),
    ("no runs", lambda d: d.__delitem__("runs"), ["runs", "required"]),
    ("a stray field", lambda d: d.update(journal=[]), ["journal", "not allowed"]),
    ("a bad time", lambda d: d["clock"].update(now="yesterday"), ["clock.now", "yesterday"]),
    (
        "a time out of range",
        lambda d: d["clock"].update(now="0999-12-31T23:59:59Z"),
        ["clock.now", "0999-12-31T23:59:59Z"],
    ),
    ("an unknown model", lambda d: d["runs"][0].update(model="x/y"), ["runs[0].model", "x/y"]),
    (
        "an input the model refuses",
        lambda d: d["runs"][1]["input"].update(resolution="8K"),
        ["runs[1].input", "resolution", "8K"],
    ),
    ("a file of no kind served", lambda d: d["runs"][0].update(fileName="a.gif"), ["fileName"]),
    ("a size too large", lambda d: d["runs"][0].update(width=100_000), ["runs[0].width"]),
    (
        "a failed run without its error",
        lambda d: d["runs"][0].update(outcome="failed"),
        ["runs[0].error"],
    ),
    (
        "a run that would end after 9999",
        lambda d: d["runs"][0].update(createdAt="9999-12-31T23:59:59.000Z"),
        ["runs[0].createdAt", "9999-12-31"],
    ),
    (
        "a time with an offset",
        lambda d: d["runs"][0].update(createdAt="2026-06-01T12:00:00+02:00"),
        ["runs[0].createdAt"],
    ),
    ("an unknown scenario", lambda d: d["runs"][0].update(scenario="boom"), ["runs[0].scenario"]),
    (
        "a poll count without its plan",
        lambda d: d["runs"][0].update(polls=1),
        ["runs[0].polls", "pendingPolls, processingPolls missing"],
    ),
    (
        "a poll plan without its count",
        lambda d: d["runs"][0].update(pendingPolls=1, processingPolls=None),
        ["runs[0].pendingPolls", "polls missing"],
    ),
    (
        "a negative poll count",
        lambda d: d["runs"][0].update(polls=-1, pendingPolls=0, processingPolls=1),
        ["runs[0].polls", "-1"],
    ),
    (
        "too many processing polls",
        lambda d: d["runs"][0].update(polls=0, pendingPolls=0, processingPolls=1001),
        ["runs[0].processingPolls", "1001"],
    ),
    (
        "a rule that can never match",
        lambda d: rule(d)["rule"]["match"].update(resolution="8K"),
        ["rules[0].rule.match.resolution", "8K"],
    ),
    (
        "a misspelled rule field",
        lambda d: rule(d)["rule"].update(tims=2),
        ["rules[0].rule.tims", "did you mean 'times'"],
    ),
    (
        "a key that is no key",
        lambda d: d["accounts"]["acme"]["keys"][0].update(key="pk-nope"),
        ["accounts.acme.keys[0].key", "pk-nope"],
    ),
    (
        "a negative ledger",
        lambda d: next(iter(d["ledgers"].values())).update(charged=-1),
        ["ledgers", "charged", "-1"],
    ),
]


def refund_of(document: Document) -> Document:
    return {
        "runId": document["runs"][0]["id"],
        "account": "a",
        "key": KEY,
        "costUsd": 1,
        "failsAt": "2026-06-01T13:00:00.000Z",
    }


# a document at odds with itself, which no schema can say -> words of the 409
CONFLICTING_DOCUMENTS: list[tuple[str, Callable[[Document], Any], list[str]]] = [
    ("a run id twice", lambda d: d["runs"][2].update(id=d["runs"][0]["id"]), ["runs[2].id"]),
    (
        "a file twice",
        lambda d: d["runs"][2].update(fileName=d["runs"][0]["fileName"]),
        ["runs[2].fileName", "given twice"],
    ),
    ("a rule id twice", lambda d: d["rules"][1].update(id="rule_1"), ["rules[1].id", "twice"]),
    (
        "a key of two accounts",
        lambda d: d["accounts"].update(
            other={"startingBalanceUsd": 1, "keys": [{"key": ACME_KEY}], "droppedKeys": []}
        ),
        ["accounts", "belongs to account"],
    ),
    (
        "a pending refund of a kept run",
        lambda d: d["pendingRefunds"].append(refund_of(d)),
        ["pendingRefunds[0].runId", "follows from it"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "words", "status", "code"),
    [
        *(
            pytest.param(mutate, words, 400, "invalid_request", id=name)
            for name, mutate, words in BAD_DOCUMENTS
        ),
        *(
            pytest.param(mutate, words, 409, "state_conflict", id=name)
            for name, mutate, words in CONFLICTING_DOCUMENTS
        ),
    ],
)
def test_a_bad_document_is_refused_naming_the_problem_and_changes_nothing(
    mock: Mock, mutate: Callable[[Document], Any], words: list[str], status: int, code: str
) -> None:
    history(mock)
    document = state_of(mock)
    bad = copy.deepcopy(document)
    instead = mutate(bad)
    answer = load(mock, bad if instead is None else instead)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"]
    assert state_of(mock) == document


def test_a_rule_counter_below_a_rules_number_is_raised_to_it(mock: Mock) -> None:
    history(mock)
    document = state_of(mock)
    document["counters"]["rules"] = 0
    ok(load(mock, document))
    assert state_of(mock)["counters"]["rules"] == 2
    added = ok(mock.client.post("/_mock/rules", json={"effect": {"scenario": "slow"}}))
    assert added["id"] == "rule_3"


def test_a_body_that_is_not_json_is_refused(mock: Mock) -> None:
    answer = mock.client.put("/_mock/state", content=b"{not json")
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]["message"]


def test_a_long_document_is_named_in_a_short_message(mock: Mock) -> None:
    answer = load(mock, {"version": 1, "runs": "x" * 10_000})
    assert answer.status_code == 400 and len(answer.json()["error"]["message"]) < 400


def test_the_export_is_a_document_of_its_schema(mock: Mock) -> None:
    history(mock)
    control = load_control_spec()
    validator = compile_pointer(control.document, "#/components/schemas/MockState")
    assert list(validator.iter_errors(state_of(mock))) == []


# Anything a client and the control API can do, then export, reset, import: the same state.
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("create"),
            st.sampled_from([KEY, OTHER_KEY]),
            st.sampled_from(
                [
                    *[None, "fail", "stuck", "slow", "error-500"],
                    *["fail; pending_polls=1; processing_polls=2", "stuck; pending_polls=1"],
                    "succeed; processing_polls=0",
                ]
            ),
        ),
        st.tuples(st.just("advance"), st.integers(0, 120)),
        st.tuples(
            st.just("force"),
            st.integers(0, 20),
            st.sampled_from(["processing", "succeeded", "failed"]),
        ),
        st.tuples(st.just("rule"), st.integers(1, 4)),
        st.tuples(st.just("balance"), st.integers(0, 10**7)),
        st.tuples(st.just("poll"), st.integers(0, 20)),
    ),
    max_size=25,
)


@pytest.mark.parametrize("mock_store", ["memory"])
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_any_history_survives_an_export_and_an_import(
    make_mock: MockFactory, mock_store: str, steps: list[tuple[Any, ...]]
) -> None:
    mock = make_mock()
    ids: list[str] = []
    for step in steps:
        if step[0] == "create":
            answer = mock.create(key=step[1], scenario=step[2])
            ids += [answer.json()["id"]] if answer.status_code == 200 else []
        elif step[0] == "advance":
            mock.advance(step[1])
        elif step[0] == "force" and ids:
            run_id = ids[step[1] % len(ids)]
            mock.client.post(f"/_mock/runs/{run_id}/state", json={"status": step[2]})
        elif step[0] == "rule":
            body = {"match": {"endpoint": "create"}, "effect": {"scenario": "fail"}}
            mock.client.post("/_mock/rules", json={**body, "every": step[1]})
        elif step[0] == "balance":
            mock.client.put("/_mock/accounts/team", json={"balanceUsd": step[1]})
        elif step[0] == "poll" and ids:
            mock.get(ids[step[1] % len(ids)])
    document = state_of(mock)
    ok(mock.client.post("/_mock/reset"))
    ok(load(mock, document))
    assert state_of(mock) == document


def test_the_handle_exports_and_loads_the_state() -> None:
    with mock_runbase.serve() as mock:
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        body = {"model": GPT, "input": {"prompt": "a lighthouse"}}
        run = httpx.post(f"{mock.base_url}/runs", json=body, headers=headers).json()
        document = mock.state()
        assert [r["id"] for r in document["runs"]] == [run["id"]]
        mock.clock.advance(10)
        assert mock.load_state(document)["imported"]["runs"] == 1
        assert mock.clock.now == document["clock"]["now"]
        polled = httpx.get(f"{mock.base_url}/runs/{run['id']}", headers=headers).json()
        assert polled["status"] == "succeeded"  # instant timing: final at the first poll
        with pytest.raises(ValueError, match="version: 2: this mock reads version 1"):
            mock.load_state({**document, "version": 2})
