"""What a request asks of the mock: ``X-Mock-Scenario`` (creates and polls) and prompt tags.

Nothing asked is dropped silently: a scenario is applied, or the answer carries an
``X-Mock-Warning`` saying why not, or (for a parameter the scenario cannot use) the request
is refused with 400 ``invalid_mock_scenario`` and changes nothing.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.errors import RunbaseError
from mock_runbase.scenario_choice import NOTHING_ASKED, requested_scenario
from mock_runbase.scenarios import DEFAULT, MAX_LATENCY_MS, SCENARIOS, Effect, Params
from mock_runbase.service import NO_EFFECT
from tests.conftest import KEY, Mock
from tests.test_app import error_of

POLL_SCENARIOS = sorted(name for name, entry in SCENARIOS.items() if "get" in entry.endpoints)
CREATE_ONLY = sorted(
    name for name, entry in SCENARIOS.items() if entry.creates_only and name != "succeed"
)
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(params=["memory", "redis"])
def mock_store(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both stores."""
    param: str = request.param
    return param


def poll(mock: Mock, run_id: str, scenario: str, prefix: str = "/v1") -> httpx.Response:
    headers = {**AUTH, "X-Mock-Scenario": scenario}
    return mock.client.get(f"{prefix}/runs/{run_id}", headers=headers)


def delays(mock: Mock) -> list[float]:
    """The latency delays the mock sleeps from now on (recorded, not slept)."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    mock.client.app.service.sleep = sleep  # type: ignore[attr-defined]
    return slept


def rule_counts(mock: Mock) -> list[tuple[int, int]]:
    rules = mock.client.get("/_mock/rules").json()["rules"]
    return [(rule["matches"], rule["hits"]) for rule in rules]


# --- on polls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [("error-500", 500, "internal_error"), ("rate-limit", 429, "RATE_LIMITED")],
)
def test_the_header_applies_its_error_to_a_poll(
    mock: Mock, prefix: str, scenario: str, status: int, code: str
) -> None:
    run_id = mock.create().json()["id"]
    assert error_of(poll(mock, run_id, scenario, prefix)) == (status, code)
    assert poll(mock, run_id, "succeed", prefix).status_code == 200


def test_the_header_drops_a_poll(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    with pytest.raises(ConnectionResetError):
        poll(mock, run_id, "drop")
    assert mock.get(run_id).status_code == 200


def test_the_header_delays_a_poll_by_its_ms(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    slept = delays(mock)
    assert poll(mock, run_id, "latency; ms=250").status_code == 200
    assert poll(mock, run_id, "latency").status_code == 200
    assert poll(mock, run_id, "latency;ms=0").status_code == 200
    assert slept == [0.25, 1.0]


def test_every_scenario_the_readme_says_works_on_polls_does() -> None:
    assert POLL_SCENARIOS == [
        "drop",
        "empty-response",
        "error-500",
        "garbage",
        "invalid-api-key",
        "ip-not-allowed",
        "latency",
        "malformed-chunk",
        "rate-limit",
        "reset",
        "run-not-found",
        "truncated",
    ]


@pytest.mark.parametrize("scenario", CREATE_ONLY)
def test_a_scenario_of_creates_on_a_poll_answers_normally_with_a_warning(
    mock: Mock, scenario: str
) -> None:
    run_id = mock.create().json()["id"]
    mock.advance(60)
    response = poll(mock, run_id, scenario)
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    warning = response.headers["x-mock-warning"]
    assert scenario in warning and "creates only" in warning


def test_succeed_on_a_poll_is_what_a_poll_does_anyway(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    response = poll(mock, run_id, "succeed")
    assert response.status_code == 200
    assert "x-mock-warning" not in response.headers


def test_a_poll_that_fails_still_carries_the_warning(mock: Mock) -> None:
    response = poll(mock, "run_missing", "stuck")
    assert error_of(response) == (404, "run_not_found")
    assert "stuck" in response.headers["x-mock-warning"]


def test_a_rule_wins_over_the_header_and_says_so(mock: Mock) -> None:
    run_id = mock.create().json()["id"]
    rule = {"match": {"endpoint": "get"}, "effect": {"scenario": "rate-limit"}, "times": 1}
    assert mock.client.post("/_mock/rules", json=rule).status_code == 201
    response = poll(mock, run_id, "error-500")
    assert error_of(response) == (429, "RATE_LIMITED")
    assert "error-500 not applied" in response.headers["x-mock-warning"]
    assert "rule_1" in response.headers["x-mock-warning"]


# --- parameters -------------------------------------------------------------------------------


def test_latency_ms_in_the_header_and_the_tag_of_a_create(mock: Mock) -> None:
    slept = delays(mock)
    assert mock.create(scenario="latency; ms=40").status_code == 200
    assert mock.create(prompt="a cat [mock:latency; ms=70]").status_code == 200
    assert mock.create(prompt="a cat [mock:latency]").status_code == 200
    assert slept == [0.04, 0.07, 1.0]


def test_fail_takes_its_code_and_message_from_the_header(mock: Mock) -> None:
    run_id = mock.create(scenario="fail; code=content_policy; message=Prompt rejected").json()
    mock.advance(60)
    run = mock.get(run_id["id"]).json()
    assert run["error"] == {"message": "Prompt rejected", "code": "content_policy"}


BAD_PARAMETERS = [
    ("latency; ms=abc", "'abc'"),
    ("latency; ms=-1", "'-1'"),
    ("latency; ms=2.5", "'2.5'"),
    (f"latency; ms={MAX_LATENCY_MS + 1}", str(MAX_LATENCY_MS + 1)),
    ("latency; msec=5", "'msec'"),
    ("latency; ms", "'ms'"),
    ("latency; ms=", "ms needs a value"),
    ("latency; ms=1; ms=2", "ms is given twice"),
    ("fail; ms=5", "'ms'"),
    ("slow; code=x", "slow takes no parameters"),
    ("stuck; code=x", "stuck takes pending_polls, not 'code'"),
    ("stuck; processing_polls=2", "stuck takes pending_polls, not 'processing_polls'"),
    ("slow; pending_polls=2", "slow takes no parameters, not 'pending_polls'"),
    ("fail; pending_polls=-1", "pending_polls is a whole number of polls from 0 to 1000"),
    ("succeed; processing_polls=1001", "not '1001'"),
    ("fail; pending_polls=two", "not 'two'"),
]


@pytest.mark.parametrize(("asked", "named"), BAD_PARAMETERS)
def test_a_parameter_the_scenario_cannot_use_is_refused_and_changes_nothing(
    mock: Mock, asked: str, named: str
) -> None:
    run_id = mock.create().json()["id"]
    rule = {"effect": {"scenario": "slow"}, "match": {"key": "sk-nobody"}}
    assert mock.client.post("/_mock/rules", json=rule).status_code == 201
    before, counts = mock.account(), rule_counts(mock)
    for response in (
        mock.create(scenario=asked),
        mock.create(prompt=f"a cat [mock:{asked}]"),
        poll(mock, run_id, asked),
    ):
        assert error_of(response) == (400, "invalid_mock_scenario")
        message = response.json()["error"]["message"]
        assert named in message, message
        assert "X-Mock-Scenario" in message or "prompt tag" in message
    assert mock.account() == before
    assert rule_counts(mock) == counts


# --- case and several requests at once --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "prompt"),
    [("FAIL", "a cat"), ("Fail", "a cat"), (None, "a cat [MOCK:FAIL]"), (None, "[Mock:fail] x")],
)
def test_names_are_case_insensitive_in_headers_and_tags(
    mock: Mock, header: str | None, prompt: str
) -> None:
    response = mock.create(scenario=header, prompt=prompt)
    assert "x-mock-warning" not in response.headers
    mock.advance(60)
    assert mock.get(response.json()["id"]).json()["status"] == "failed"


def test_parameter_names_are_case_insensitive(mock: Mock) -> None:
    slept = delays(mock)
    assert mock.create(scenario="LATENCY; MS=30").status_code == 200
    assert mock.create(prompt="[MOCK:Latency; Ms=20]").status_code == 200
    assert slept == [0.03, 0.02]


@pytest.mark.parametrize("prompt", ["a cat [MOCK:FIAL]", "a cat [mock:fial]", "[Mock: fial ]"])
def test_an_unknown_tag_in_any_case_warns(mock: Mock, prompt: str) -> None:
    response = mock.create(prompt=prompt)
    assert response.status_code == 200
    assert "unknown scenario 'fial'" in response.headers["x-mock-warning"]


def test_the_header_wins_over_a_tag_and_says_so(mock: Mock) -> None:
    response = mock.create(scenario="stuck", prompt="a cat [mock:fail]")
    assert "prompt tag '[mock:fail]' ignored" in response.headers["x-mock-warning"]
    mock.advance(60)
    assert mock.get(response.json()["id"]).json()["status"] == "processing"


def test_only_the_first_tag_counts_and_the_others_warn(mock: Mock) -> None:
    response = mock.create(prompt="[mock:fail] then [mock:stuck]")
    assert "'[mock:stuck]' ignored" in response.headers["x-mock-warning"]
    mock.advance(60)
    assert mock.get(response.json()["id"]).json()["status"] == "failed"


def test_a_rule_wins_over_a_tag_and_says_so(mock: Mock) -> None:
    rule = {"effect": {"scenario": "slow"}, "times": 1}
    assert mock.client.post("/_mock/rules", json=rule).status_code == 201
    response = mock.create(prompt="a cat [mock:fail]")
    assert "fail not applied, rule rule_1 fired (slow)" in response.headers["x-mock-warning"]


# --- the parser alone -------------------------------------------------------------------------


def random_case(data: st.DataObject, text: str) -> str:
    flips = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@given(st.data(), st.integers(0, MAX_LATENCY_MS), st.sampled_from(["create", "get"]))
def test_latency_with_any_ms_in_range_is_applied_in_any_case(
    data: st.DataObject, ms: int, endpoint: str
) -> None:
    spaces = st.sampled_from(["", " ", "  "])
    header = f"{random_case(data, 'latency')}{data.draw(spaces)};{data.draw(spaces)}"
    header += f"{random_case(data, 'ms')}={ms}{data.draw(spaces)}"
    choice = requested_scenario(header, None, endpoint)
    assert (choice.name, choice.params, choice.warnings) == ("latency", Params(ms=ms), ())
    tagged = requested_scenario(None, f"x [{random_case(data, 'mock')}:{header}]", endpoint)
    assert (tagged.name, tagged.params) == ("latency", Params(ms=ms))


@given(
    header=st.none() | st.text(max_size=40),
    prompt=st.none() | st.text(max_size=60),
    endpoint=st.sampled_from(["create", "get"]),
)
def test_any_header_or_prompt_is_chosen_warned_about_or_refused_with_a_400(
    header: str | None, prompt: str | None, endpoint: str
) -> None:
    try:
        choice = requested_scenario(header, prompt, endpoint)
    except RunbaseError as error:
        assert (error.status, error.code) == (400, "invalid_mock_scenario")
        return
    assert choice.name in SCENARIOS
    assert choice.name == "succeed" or endpoint in SCENARIOS[choice.name].endpoints
    if choice.warning is not None:  # it goes in a header: ASCII, one line
        assert choice.warning.isascii() and "\r" not in choice.warning
        assert "\n" not in choice.warning
    if header is not None and header.strip():  # never silently ignored: applied, or warned
        named = header.split(";")[0].strip().lower()
        assert choice.name == named or choice.warning is not None
    elif not (prompt and "[mock:" in prompt.lower()):
        assert choice == requested_scenario(None, None, endpoint)


def test_a_request_that_asks_nothing_gets_the_default_scenario_whose_effect_is_none() -> None:
    """A create that names no scenario skips building the default's effect (the service's
    NO_EFFECT): both must stay the same thing."""
    assert requested_scenario(None, "a lighthouse at dawn", "create") is NOTHING_ASKED
    assert NOTHING_ASKED.name == DEFAULT
    assert SCENARIOS[DEFAULT].build(NOTHING_ASKED.params) == NO_EFFECT == Effect()
    assert not NO_EFFECT.touches_exchange


@given(prompt=st.text(alphabet="[]mock:abcdefilnorstu;= ", max_size=30))
def test_a_prompt_tag_is_found_whatever_else_the_prompt_holds(prompt: str) -> None:
    tagged = requested_scenario(None, f"{prompt} [MOCK:fail]", "create")
    assert tagged.name == "fail" or tagged.warnings  # an earlier tag in the prompt wins
    untagged = requested_scenario(None, prompt.replace("[", "("), "create")
    assert untagged.name == "succeed" and not untagged.warnings
