"""The mock's own control API: rules, journal, accounts, forced states, clock, scopes, token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mock_runbase.control_spec import load_control_spec
from tests.conftest import KEY, OTHER_KEY, Mock, MockFactory
from tests.test_app import error_of


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both stores."""
    param: str = request.param
    return param


def add_rule(mock: Mock, body: dict[str, Any], **params: str) -> dict[str, Any]:
    response = mock.client.post("/_mock/rules", json=body, params=params)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def rules(mock: Mock, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = mock.client.get("/_mock/rules", params=params).json()["rules"]
    return found


def journal(mock: Mock, **params: Any) -> list[dict[str, Any]]:
    response = mock.client.get("/_mock/requests", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


# --- rules ------------------------------------------------------------------------------------


def test_fail_rule_with_a_chosen_error_fails_the_next_n_matching_creates(mock: Mock) -> None:
    add_rule(
        mock,
        {
            "match": {"endpoint": "create", "resolution": "2K"},
            "effect": {"scenario": "fail", "code": "content_policy", "message": "Rejected"},
            "times": 2,
        },
    )
    ids = [mock.create(resolution=r).json()["id"] for r in ["2K", "1K", "2K", "2K"]]
    mock.advance(60)
    runs = [mock.get(run_id).json() for run_id in ids]
    assert [r["status"] for r in runs] == ["failed", "succeeded", "failed", "succeeded"]
    assert runs[0]["error"] == {"message": "Rejected", "code": "content_policy"}
    [rule] = rules(mock)
    assert (rule["matches"], rule["hits"], rule["exhausted"]) == (3, 2, True)


def test_every_nth_match(mock: Mock) -> None:
    add_rule(
        mock, {"match": {"endpoint": "create"}, "effect": {"scenario": "error-500"}, "every": 3}
    )
    statuses = [mock.create().status_code for _ in range(7)]
    assert statuses == [200, 200, 500, 200, 200, 500, 200]
    assert mock.account()["runs"] == 5


def outcomes_with_probability(make_mock: MockFactory, seed: int) -> list[int]:
    mock = make_mock(seed=seed)
    add_rule(mock, {"effect": {"scenario": "rate-limit"}, "probability": 0.5})
    return [mock.create().status_code for _ in range(40)]


def test_probability_is_seeded_and_reproducible(make_mock: MockFactory) -> None:
    first = outcomes_with_probability(make_mock, seed=7)
    assert first == outcomes_with_probability(make_mock, seed=7)
    assert 5 < first.count(429) < 35
    assert first != outcomes_with_probability(make_mock, seed=8)


def test_a_seeded_rule_draws_the_same_whatever_rules_were_added_before_it(
    make_mock: MockFactory,
) -> None:
    def outcomes(others: int) -> list[int]:
        mock = make_mock(seed=7)
        for n in range(others):
            add_rule(mock, {"match": {"key": f"sk-other-{n}"}, "effect": {"scenario": "stuck"}})
        add_rule(mock, {"effect": {"scenario": "rate-limit"}, "probability": 0.5})
        return [mock.create().status_code for _ in range(40)]

    assert outcomes(3) == outcomes(0)


@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [
        ("rate-limit", 429, "RATE_LIMITED"),
        ("usage-exceeded", 429, "USAGE_EXCEEDED"),
        ("insufficient-balance", 402, "insufficient_balance"),
        ("spend-limit-exceeded", 403, "api_key_spend_limit_exceeded"),
        ("invalid-api-key", 401, "invalid_api_key"),
        ("ip-not-allowed", 403, "ip_not_allowed"),
        ("error-500", 500, "internal_error"),
    ],
)
def test_error_rules_answer_the_documented_error_and_create_nothing(
    mock: Mock, scenario: str, status: int, code: str
) -> None:
    add_rule(mock, {"effect": {"scenario": scenario}, "times": 1})
    before = mock.account()
    response = mock.create()
    assert error_of(response) == (status, code)
    if code == "RATE_LIMITED":
        assert response.headers["retry-after"] == "1"
    assert mock.account() == before
    assert mock.create().status_code == 200


def test_a_run_not_found_rule_answers_polls_404_and_leaves_the_run(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    add_rule(mock, {"match": {"endpoint": "get"}, "effect": {"scenario": "run-not-found"},
                    "times": 1})  # fmt: skip
    assert error_of(mock.get(run_id)) == (404, "run_not_found")
    assert mock.get(run_id).json()["id"] == run_id


def test_error_rules_of_polls_answer_the_documented_error(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    for scenario, error in [
        ("invalid-api-key", (401, "invalid_api_key")),
        ("ip-not-allowed", (403, "ip_not_allowed")),
        ("rate-limit", (429, "RATE_LIMITED")),
    ]:
        add_rule(mock, {"match": {"endpoint": "get"}, "effect": {"scenario": scenario},
                        "times": 1})  # fmt: skip
        assert error_of(mock.get(run_id)) == error
    assert mock.get(run_id).status_code == 200


def test_every_with_times_one_fires_on_that_match_only(mock: Mock) -> None:
    add_rule(mock, {"effect": {"scenario": "error-500"}, "every": 3, "times": 1})
    assert [mock.create().status_code for _ in range(7)] == [200, 200, 500, 200, 200, 200, 200]


def test_stuck_and_slow_rules(mock: Mock) -> None:
    add_rule(mock, {"match": {"prompt_regex": "^stuck"}, "effect": {"scenario": "stuck"}})
    add_rule(mock, {"match": {"aspect_ratio": "9:16"}, "effect": {"scenario": "slow"}})
    stuck = mock.create(prompt="stuck forever").json()["id"]
    slow = mock.create(prompt="tall", aspect_ratio="9:16").json()["id"]
    normal = mock.create(prompt="a stuck truck").json()["id"]
    mock.advance(10)
    assert [mock.get(i).json()["status"] for i in (stuck, slow, normal)] == [
        "processing",
        "processing",
        "succeeded",
    ]


def test_get_rules_apply_to_polls_only(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    add_rule(mock, {"match": {"endpoint": "get"}, "effect": {"scenario": "error-500"}, "times": 1})
    assert mock.create().status_code == 200
    assert error_of(mock.get(run_id)) == (500, "internal_error")
    assert mock.get(run_id).status_code == 200


def test_rules_match_key_and_model(tmp_path: Path, make_mock: MockFactory) -> None:
    mock = make_mock()
    add_rule(mock, {"match": {"key": OTHER_KEY}, "effect": {"scenario": "rate-limit"}})
    add_rule(
        mock, {"match": {"model": "google/nano-banana-2"}, "effect": {"scenario": "error-500"}}
    )
    assert mock.create().status_code == 200
    assert error_of(mock.create(key=OTHER_KEY)) == (429, "RATE_LIMITED")
    banana = mock.client.post(
        "/v1/runs",
        json={"model": "google/nano-banana-2", "input": {"prompt": "x"}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert error_of(banana) == (500, "internal_error")


def test_drop_in_process_raises_connection_reset(mock: Mock) -> None:
    add_rule(mock, {"effect": {"scenario": "drop"}, "times": 1})
    before = mock.account()
    with pytest.raises(ConnectionResetError):
        mock.create()
    assert mock.account() == before
    [entry] = [e for e in journal(mock) if e["method"] == "POST"]
    assert entry["dropped"] is True and entry["status"] is None


def test_rule_listing_and_deletion(mock: Mock) -> None:
    first = add_rule(mock, {"effect": {"scenario": "slow"}})
    second = add_rule(mock, {"effect": {"scenario": "stuck"}})
    assert [r["id"] for r in rules(mock)] == [first["id"], second["id"]]
    assert first["effect"] == {"scenario": "slow"}
    assert mock.client.delete(f"/_mock/rules/{first['id']}").json() == {"deleted": 1}
    assert error_of(mock.client.delete(f"/_mock/rules/{first['id']}")) == (404, "rule_not_found")
    assert mock.client.delete("/_mock/rules").json() == {"deleted": 1}
    assert rules(mock) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"effect": {"scenario": "explode"}},
        {"effect": {"scenario": "fail"}, "times": 0},
        {"effect": {"scenario": "fail"}, "probability": 1.5},
        {"effect": {"scenario": "latency", "ms": -1}},
        {"effect": {"scenario": "fail"}, "match": {"prompt_regex": "("}},
        {"effect": {"scenario": "fail"}, "match": {"endpoint": "get"}},
        {"effect": {"scenario": "fail"}, "match": {"colour": "red"}},
        [],
    ],
)
def test_invalid_rules_are_rejected_and_add_nothing(mock: Mock, body: Any) -> None:
    assert error_of(mock.client.post("/_mock/rules", json=body)) == (400, "invalid_request")
    assert rules(mock) == []


def test_rules_from_the_config_file_load_at_start_and_after_reset(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("rules:\n  - {match: {resolution: 2K}, effect: {scenario: error-500}}\n")
    mock = make_mock(config=config)
    assert error_of(mock.create(resolution="2K")) == (500, "internal_error")
    assert mock.create().status_code == 200
    mock.client.post("/_mock/reset")
    assert [r["effect"]["scenario"] for r in rules(mock)] == ["error-500"]


def test_an_invalid_config_rule_stops_start_up(tmp_path: Path, make_mock: MockFactory) -> None:
    from mock_runbase.accounts import ConfigError

    config = tmp_path / "mock.yaml"
    config.write_text("rules:\n  - {effect: {scenario: explode}}\n")
    with pytest.raises(ConfigError, match=r"rules\[0\]"):
        make_mock(config=config)


# --- journal ----------------------------------------------------------------------------------


def test_journal_records_exchanges_with_the_key_redacted(mock: Mock) -> None:
    created = mock.create(resolution="2K").json()
    mock.get("run_unknown")
    mock.client.get("/_mock/clock")  # control calls are not recorded
    entries = journal(mock)
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/v1/runs", 200),
        ("GET", "/v1/runs/run_unknown", 404),
    ]
    post, get = entries
    assert post["runId"] == created["id"]
    assert '"resolution": "2K"' in post["body"] or '"resolution":"2K"' in post["body"]
    assert post["headers"]["authorization"] == "Bearer ****lice"
    assert get["errorCode"] == "run_not_found"
    assert post["keyLast4"] == "lice"
    assert all(KEY not in str(entry) for entry in entries)
    assert post["durationMs"] >= 0 and post["at"] == "2026-06-01T12:00:00.000Z"


def test_journal_filters(mock: Mock) -> None:
    mock.create()
    mock.advance(5)
    mock.create(key=OTHER_KEY)
    mock.get("run_x")
    assert len(journal(mock, key=OTHER_KEY)) == 1
    assert len(journal(mock, key=KEY[-4:])) == 2
    assert [e["status"] for e in journal(mock, status=404)] == [404]
    assert len(journal(mock, path="/v1/runs/")) == 1
    assert len(journal(mock, since="2026-06-01T12:00:05.000Z")) == 2
    assert error_of(mock.client.get("/_mock/requests", params={"status": "abc"})) == (
        400,
        "invalid_request",
    )


def test_journal_is_bounded_and_clearable(make_mock: MockFactory) -> None:
    mock = make_mock(journal_size=5)
    for _ in range(8):
        mock.get("run_x")
    assert len(journal(mock)) == 5
    assert mock.client.delete("/_mock/requests").json() == {"cleared": True}
    assert journal(mock) == []


# --- scoping and the admin token ----------------------------------------------------------


def test_calls_with_a_key_are_scoped_to_its_account(mock: Mock) -> None:
    mine = {"Authorization": f"Bearer {KEY}"}
    theirs = {"Authorization": f"Bearer {OTHER_KEY}"}
    mock.create()
    other_run = mock.create(key=OTHER_KEY).json()["id"]
    mock.client.post("/_mock/rules", json={"effect": {"scenario": "stuck"}}, headers=theirs)
    assert len(mock.client.get("/_mock/requests", headers=mine).json()["requests"]) == 1
    assert mock.client.get("/_mock/rules", headers=mine).json()["rules"] == []
    assert len(mock.client.get("/_mock/runs", headers=mine).json()["runs"]) == 1
    # The other account's rule does not touch my runs.
    mine_run = mock.create().json()["id"]
    mock.advance(10)
    assert mock.get(mine_run).json()["status"] == "succeeded"
    # A scoped reset forgets my account only.
    assert mock.client.post("/_mock/reset", headers=mine).json()["account"] is not None
    assert mock.account()["runs"] == 0
    assert mock.get(other_run, key=OTHER_KEY).status_code == 200
    assert len(mock.client.get("/_mock/rules", headers=theirs).json()["rules"]) == 1
    other_account = mock.account(OTHER_KEY)["account"]
    assert error_of(
        mock.client.get("/_mock/runs", params={"account": other_account}, headers=mine)
    ) == (403, "forbidden_account")
    assert error_of(mock.client.get(f"/_mock/accounts/{other_account}", headers=mine)) == (
        403,
        "forbidden_account",
    )


def test_admin_token_guards_every_control_call(make_mock: MockFactory) -> None:
    mock = make_mock(admin_token="s3cret")
    for method, path in [
        ("GET", "/_mock/rules"),
        ("POST", "/_mock/reset"),
        ("GET", "/_mock/clock"),
    ]:
        assert error_of(mock.client.request(method, path)) == (401, "admin_token_required")
        wrong = mock.client.request(method, path, headers={"X-Mock-Admin-Token": "nope"})
        assert error_of(wrong) == (401, "admin_token_required")
        right = mock.client.request(method, path, headers={"X-Mock-Admin-Token": "s3cret"})
        assert right.status_code == 200
    assert mock.create().status_code == 200  # the documented API needs no admin token


# --- accounts at run time ---------------------------------------------------------------------


def test_put_balance_to_one_cent_gives_402(mock: Mock) -> None:
    name = mock.account()["account"]
    mock.create()
    view = mock.client.put(f"/_mock/accounts/{name}", json={"balanceUsd": 10_000}).json()
    assert view["balanceUsd"] == 10_000
    assert mock.balance() == 10_000
    assert error_of(mock.create()) == (402, "insufficient_balance")


def test_put_keys_sets_a_spend_limit_at_run_time(mock: Mock) -> None:
    response = mock.client.put(
        "/_mock/accounts/team",
        json={"balanceUsd": 5_000_000, "keys": [{"key": "sk-team-1", "spendLimitCents": 5}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["keys"][0]["spendLimitCents"] == 5
    assert mock.create(key="sk-team-1").status_code == 200
    assert error_of(mock.create(key="sk-team-1")) == (403, "api_key_spend_limit_exceeded")
    assert mock.client.get("/_mock/accounts/team").json()["balanceUsd"] == 4_950_000


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"balanceUsd": -1},
        {"balanceUsd": "1"},
        {"keys": [{"key": "pk-1"}]},
        {"keys": [{"key": "sk-1", "ipAllowList": ["1.1.1.1"] * 11}]},
        {"keys": [{"key": "sk-1", "ipAllowList": ["not-an-ip"]}]},
    ],
)
def test_invalid_account_updates_change_nothing(mock: Mock, body: Any) -> None:
    response = mock.client.put("/_mock/accounts/team", json=body)
    assert error_of(response) == (400, "invalid_request")
    assert error_of(mock.client.get("/_mock/accounts/team")) == (404, "account_not_found")
    mock.create()
    name = mock.account()["account"]
    before = mock.client.get(f"/_mock/accounts/{name}").json()
    assert before["runs"] == 1
    assert error_of(mock.client.put(f"/_mock/accounts/{name}", json=body)) == (
        400,
        "invalid_request",
    )
    assert mock.client.get(f"/_mock/accounts/{name}").json() == before


def test_keys_dropped_by_a_put_stop_working_and_are_no_longer_listed(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("accounts:\n  team:\n    keys: [sk-team-old]\n")
    mock = make_mock(config=config)
    run_id = mock.create(key="sk-team-old").json()["id"]

    def put_keys(*keys: str) -> dict[str, Any]:
        body = {"keys": [{"key": key} for key in keys]}
        response = mock.client.put("/_mock/accounts/team", json=body)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def refused(key: str) -> bool:
        own = {"Authorization": f"Bearer {key}"}
        answers = [
            mock.create(key=key),
            mock.get(run_id, key=key),
            mock.client.get("/_mock/account", headers=own),
        ]
        return all(error_of(answer) == (401, "invalid_api_key") for answer in answers)

    view = put_keys("sk-team-new")
    assert [key["last4"] for key in view["keys"]] == ["-new"]
    assert refused("sk-team-old")
    team = mock.client.get("/_mock/accounts/team").json()
    assert [key["last4"] for key in team["keys"]] == ["-new"]
    assert (team["runs"], team["spentUsd"]) == (1, 50_000)  # its history stays the account's
    listed = mock.client.get("/_mock/accounts").json()["accounts"]
    assert [a["account"] for a in listed] == ["team"]  # no implicit account for the old key
    assert [key["last4"] for key in listed[0]["keys"]] == ["-new"]
    put_keys("sk-team-third")  # a key given by a PUT and taken by the next one, too
    assert refused("sk-team-new") and refused("sk-team-old")
    put_keys("sk-team-old", "sk-team-third")  # given back, it works again
    assert mock.create(key="sk-team-old").status_code == 200
    assert refused("sk-team-new")
    mock.client.post("/_mock/reset")  # back to the config: the config's key only
    assert mock.create(key="sk-team-old").status_code == 200
    assert mock.create(key="sk-team-new").json()["id"]  # undeclared again: an implicit key


def test_a_key_of_another_account_cannot_be_taken(mock: Mock) -> None:
    mock.client.put("/_mock/accounts/a", json={"keys": [{"key": "sk-shared"}]})
    taken = mock.client.put("/_mock/accounts/b", json={"keys": [{"key": "sk-shared"}]})
    assert error_of(taken) == (409, "key_in_use")


# --- forcing runs -------------------------------------------------------------------------------


def force(mock: Mock, run_id: str, status: str, **extra: Any) -> Any:
    return mock.client.post(f"/_mock/runs/{run_id}/state", json={"status": status, **extra})


def test_force_processing_holds_then_succeeded_now(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    assert force(mock, run_id, "processing").json()["status"] == "processing"
    mock.advance(3600)
    assert mock.get(run_id).json()["status"] == "processing"
    done = force(mock, run_id, "succeeded").json()
    assert done["status"] == "succeeded"
    assert done["completedAt"] == "2026-06-01T13:00:00.000Z"
    assert mock.get(run_id).json()["output"]["urls"]


def test_force_failed_refunds_once_even_if_it_was_going_to_fail(mock: Mock) -> None:
    start = mock.balance()
    run_id = mock.create(scenario="fail").json()["id"]
    forced = force(mock, run_id, "failed", error={"message": "GPU on fire", "code": "gpu"}).json()
    assert forced["error"] == {"message": "GPU on fire", "code": "gpu"}
    assert mock.balance() == start
    mock.advance(60)  # past the failure it was planned to have
    assert mock.balance() == start


def test_a_terminal_run_cannot_be_moved(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    mock.advance(10)
    assert error_of(force(mock, run_id, "failed")) == (409, "invalid_transition")
    assert error_of(force(mock, "run_nope", "failed")) == (404, "run_not_found")
    assert error_of(force(mock, run_id, "pending")) == (400, "invalid_request")


def test_list_runs_with_filters(mock: Mock) -> None:
    first = mock.create().json()["id"]
    second = mock.create(scenario="stuck").json()["id"]
    mock.advance(10)
    listed = mock.client.get("/_mock/runs").json()["runs"]
    assert [r["id"] for r in listed] == [second, first]
    assert listed[0]["mock"]["scenario"] == "stuck"
    only = mock.client.get("/_mock/runs", params={"status": "processing"}).json()["runs"]
    assert [r["id"] for r in only] == [second]
    assert len(mock.client.get("/_mock/runs", params={"limit": 1}).json()["runs"]) == 1


# --- clock --------------------------------------------------------------------------------------


def test_clock_set_moves_forward_only(mock: Mock) -> None:
    moved = mock.client.post("/_mock/clock/set", json={"now": "2026-06-02T00:00:00Z"})
    assert moved.json()["now"] == "2026-06-02T00:00:00.000Z"
    back = mock.client.post("/_mock/clock/set", json={"now": "2026-06-01T00:00:00Z"})
    assert error_of(back) == (409, "clock_backwards")
    assert error_of(mock.client.post("/_mock/clock/set", json={"now": "soon"})) == (
        400,
        "invalid_request",
    )
    assert mock.client.get("/_mock/clock").json() == {
        "now": "2026-06-02T00:00:00.000Z",
        "virtual": True,
    }


def test_scenarios_are_listed_with_descriptions(mock: Mock) -> None:
    listed = mock.client.get("/_mock/scenarios").json()["scenarios"]
    assert {"fail", "stuck", "slow", "error-500", "latency", "drop", "rate-limit"} <= set(listed)
    assert all(listed.values())


def test_spec_rule_enum_lists_every_registered_scenario() -> None:
    from mock_runbase.control_spec import load_control_spec
    from mock_runbase.rule_checks import RULE_ENDPOINTS, rule_endpoints
    from mock_runbase.scenarios import SCENARIOS

    document = load_control_spec().document
    enum = document["components"]["schemas"]["MockRuleInput"]["properties"]["effect"]["properties"][
        "scenario"
    ]["enum"]
    assert set(enum) == set(SCENARIOS)
    rule_schema = document["components"]["schemas"]["MockRuleInput"]
    stated = {}
    for condition in rule_schema["allOf"]:
        effect = condition["if"]["properties"]["effect"]
        if "scenario" not in effect.get("properties", {}):
            continue  # a condition on another effect field (media)
        named = effect["properties"]["scenario"]["enum"]
        endpoint = condition["then"]["properties"]["match"]["properties"]["endpoint"]
        stated.update(dict.fromkeys(named, endpoint.get("enum") or [endpoint.get("const")]))
    narrowed = {
        name: rule_endpoints(entry.endpoints)
        for name, entry in SCENARIOS.items()
        if rule_endpoints(entry.endpoints) != list(RULE_ENDPOINTS)
    }
    assert stated == narrowed


def test_list_accounts(tmp_path: Path, make_mock: MockFactory) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("accounts:\n  declared:\n    balance_usd: 1\n    keys: [sk-declared]\n")
    mock = make_mock(config=config)
    mock.create()
    accounts = mock.client.get("/_mock/accounts").json()["accounts"]
    by_name = {a["account"]: a for a in accounts}
    mine = mock.account()["account"]
    assert set(by_name) == {"declared", mine}
    assert by_name[mine]["keys"][0]["last4"] == KEY[-4:]
    assert by_name[mine]["spentUsd"] == 50_000
    scoped = mock.client.get("/_mock/accounts", headers={"Authorization": f"Bearer {KEY}"})
    assert [a["account"] for a in scoped.json()["accounts"]] == [mine]


def test_an_unknown_account_is_a_404_naming_the_known_ones(
    tmp_path: Path, make_mock: MockFactory
) -> None:
    config = tmp_path / "mock.yaml"
    config.write_text("accounts:\n  team:\n    keys: [sk-team-1]\n")
    mock = make_mock(config=config)
    response = mock.client.get("/_mock/accounts/tema")
    assert error_of(response) == (404, "account_not_found")
    message = response.json()["error"]["message"]
    assert "'tema'" in message and "did you mean 'team'?" in message, message
    assert message.endswith("Known: team"), message
    assert mock.client.get("/_mock/accounts", params={"account": "tema"}).json() == {"accounts": []}
    assert mock.client.get("/_mock/accounts/team").status_code == 200
    assert mock.client.put("/_mock/accounts/fresh", json={"balanceUsd": 5}).status_code == 200
    assert mock.client.get("/_mock/accounts/fresh").json()["balanceUsd"] == 5


def test_an_implicit_account_is_found_once_its_key_has_created_a_run(mock: Mock) -> None:
    own = {"Authorization": f"Bearer {KEY}"}
    name = mock.account()["account"]  # acct_<hash of the key>
    assert name.startswith("acct_")
    assert error_of(mock.client.get(f"/_mock/accounts/{name}")) == (404, "account_not_found")
    assert mock.client.get("/_mock/accounts", params={"account": name}).json()["accounts"] == []
    by_key = mock.client.get(f"/_mock/accounts/{name}", headers=own)  # its key knows it
    assert by_key.status_code == 200 and by_key.json()["runs"] == 0
    assert mock.client.get("/_mock/accounts", headers=own).json()["accounts"][0]["account"] == name
    mock.create()
    found = mock.client.get(f"/_mock/accounts/{name}")
    assert found.status_code == 200 and found.json()["runs"] == 1
    assert [key["last4"] for key in found.json()["keys"]] == [KEY[-4:]]


def test_a_balance_beyond_the_documented_maximum_is_refused_and_changes_nothing(
    mock: Mock,
) -> None:
    name = mock.account()["account"]
    before = mock.account()
    for balance in (2**64, 10**15 + 1):
        response = mock.client.put(f"/_mock/accounts/{name}", json={"balanceUsd": balance})
        assert error_of(response) == (400, "invalid_request")
        assert "balanceUsd" in response.json()["error"]["message"]
    assert mock.account() == before


# --- query parameters -------------------------------------------------------------------------

CONTROL = load_control_spec()
CONTROL_OPERATIONS = sorted(
    (path, method)
    for path, method in CONTROL.queries
    if path.startswith("/_mock/") and path != "/_mock/ui"  # the page: a browser's, ?token=
)


def whole_state(mock: Mock) -> tuple[Any, ...]:
    state = mock.client.get("/_mock/state")
    assert state.status_code == 200, state.text
    clock = mock.client.get("/_mock/clock").json()
    return state.json(), clock, len(journal(mock))


@pytest.mark.parametrize(("path", "method"), CONTROL_OPERATIONS)
@pytest.mark.parametrize("name", ["acount", "bogus"])
def test_every_control_call_refuses_an_undeclared_query_parameter_and_changes_nothing(
    mock: Mock, path: str, method: str, name: str
) -> None:
    """A misspelt parameter is never dropped: ``POST /_mock/reset?acount=a`` would reset every
    account, ``DELETE /_mock/rules?acount=a`` delete every rule."""
    mock.create()
    add_rule(mock, {"match": {"key": "sk-other"}, "effect": {"scenario": "fail"}})
    before = whole_state(mock)
    concrete = path.replace("{account}", "acct").replace("{rule_id}", "rule_1")
    concrete = concrete.replace("{run_id}", "run_x")
    body = {} if method in ("post", "put") else None
    answer = mock.client.request(method.upper(), concrete, params={name: "a"}, json=body)
    assert answer.status_code == 400, answer.text
    assert error_of(answer) == (400, "invalid_request")
    assert f"unknown query parameter {name!r}" in answer.json()["error"]["message"]
    assert whole_state(mock) == before
    assert "400" in CONTROL.document["paths"][path][method]["responses"]  # and documented


def test_a_head_of_a_control_get_checks_the_gets_query(mock: Mock) -> None:
    assert mock.client.head("/_mock/requests", params={"status": "4xx"}).status_code == 200
    assert mock.client.head("/_mock/runs", params={"limit": "2"}).status_code == 200
    refused = mock.client.head("/_mock/requests", params={"sinse": "x"})
    assert refused.status_code == 400  # it was a 500: the HEAD had no operation of its own
    assert refused.content == b""
