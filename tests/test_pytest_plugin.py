"""The pytest plugin, used as a user's suite would use it (through ``pytester``)."""

from __future__ import annotations

import pytest

APP = '''
import httpx


class RunFailed(Exception):
    pass


class ImageApp:
    """A small app under test: it creates a run and polls it, retrying a dropped connection."""

    def __init__(self, base_url, api_key, wait):
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"})
        self.wait = wait

    def call(self, method, path, **kwargs):
        for attempt in range(3):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.RemoteProtocolError:
                continue
            response.raise_for_status()
            return response.json()
        raise ConnectionError("gave up")

    def generate(self, prompt, **options):
        body = {"model": "openai/gpt-image-2", "input": {"prompt": prompt, **options}}
        run = self.call("POST", "/runs", json=body)
        while run["status"] in ("pending", "processing"):
            self.wait(1.5)
            run = self.call("GET", f"/runs/{run['id']}")
        if run["status"] == "failed":
            raise RunFailed(run["error"]["code"])
        return run["output"]["urls"][0]
'''

USER_TESTS = """
import io
import os

import httpx
import pytest
from PIL import Image

from image_app import ImageApp, RunFailed


def make_app(mock):
    return ImageApp(mock.base_url, mock.api_key, wait=mock.clock.advance)


def test_success_gives_a_png_of_the_catalog_size(runbase_mock):
    url = make_app(runbase_mock).generate("a fox", aspect_ratio="16:9", resolution="2K")
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (2048, 1152)
    runbase_mock.assert_requested("POST", "/v1/runs", status=200)


@pytest.mark.runbase(timing="realistic")
def test_failure_surfaces_the_error(runbase_mock):
    runbase_mock.add_rule("fail", times=1, code="content_policy")
    with pytest.raises(RunFailed, match="content_policy"):
        make_app(runbase_mock).generate("a fox")
    assert runbase_mock.account.balance == 100_000_000  # refunded


def test_a_rule_times_its_runs_by_polls(runbase_mock):
    runbase_mock.add_rule("fail", times=1, pending_polls=2, processing_polls=1)
    auth = {"Authorization": f"Bearer {runbase_mock.api_key}"}
    body = {"model": "openai/gpt-image-2", "input": {"prompt": "a fox"}}
    run_id = httpx.post(f"{runbase_mock.base_url}/runs", json=body, headers=auth).json()["id"]
    seen = [
        httpx.get(f"{runbase_mock.base_url}/runs/{run_id}", headers=auth).json()["status"]
        for _ in range(4)
    ]
    assert seen == ["pending", "pending", "processing", "failed"]


def test_insufficient_balance_is_402(runbase_mock):
    runbase_mock.account.set_balance(10_000)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        make_app(runbase_mock).generate("a fox")
    assert caught.value.response.status_code == 402
    assert caught.value.response.json()["error"]["code"] == "insufficient_balance"


@pytest.mark.runbase(rate_limit="2/10")
def test_rate_limit_is_429(runbase_mock):
    app = make_app(runbase_mock)
    app.generate("one")  # a create and a poll: the window is full
    with pytest.raises(httpx.HTTPStatusError) as caught:
        app.generate("two")
    assert caught.value.response.status_code == 429
    assert caught.value.response.json()["error"]["code"] == "RATE_LIMITED"
    runbase_mock.clock.advance(10)
    assert app.generate("three")


def test_a_dropped_connection_is_retried(runbase_mock):
    runbase_mock.add_rule("drop", times=1, endpoint="create")
    assert make_app(runbase_mock).generate("a fox")
    assert [r["dropped"] for r in runbase_mock.requests][:2] == [True, False]
    assert len(runbase_mock.runs) == 1


def test_a_cut_download_then_a_lagging_cdn(runbase_mock):
    runbase_mock.add_rule("truncated", endpoint="file", times=1, prompt_regex="^a fox")
    runbase_mock.add_rule("cdn-lag", endpoint="file", ms=2000)  # once the first is spent
    url = make_app(runbase_mock).generate("a fox")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).status_code == 404  # the CDN has not caught up yet
    runbase_mock.clock.advance(2)
    assert httpx.get(url).content.startswith(b"\\x89PNG")
    with pytest.raises(ValueError, match="cdn-lag applies to files only"):
        runbase_mock.add_rule("cdn-lag", ms=2000)


def test_a_reset_connection_raises_what_httpx_raises(runbase_mock):
    runbase_mock.add_rule("reset", times=1, endpoint="create")
    with pytest.raises(httpx.ReadError):
        make_app(runbase_mock).generate("a fox")
    assert runbase_mock.runs == []


@pytest.mark.runbase(env=True)
def test_env_is_set_for_the_test(runbase_mock):
    assert os.environ["RUNBASE_BASE_URL"] == runbase_mock.base_url
    assert os.environ["RUNBASE_API_KEY"] == runbase_mock.api_key


def test_each_test_starts_fresh(runbase_mock):
    assert runbase_mock.runs == []
    assert runbase_mock.requests == []
    assert runbase_mock.clock.now == "2026-06-01T12:00:00.000Z"


def test_in_process_app(runbase_asgi_app):
    import anyio

    async def create():
        transport = httpx.ASGITransport(runbase_asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
            body = {"model": "openai/gpt-image-2", "input": {"prompt": "x"}}
            headers = {"Authorization": "Bearer sk-a"}
            response = await client.post("/v1/runs", json=body, headers=headers)
            return response.json()["status"]

    assert anyio.run(create) == "pending"


def test_assert_requested_lists_what_was_received(runbase_mock):
    make_app(runbase_mock).generate("a fox")
    with pytest.raises(AssertionError, match="received:\\\\n  POST /v1/runs -> 200"):
        runbase_mock.assert_requested("POST", "/v1/runs", count=2)
"""


@pytest.fixture
def user_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(image_app=APP, test_user_suite=USER_TESTS)
    return pytester


def test_a_users_suite_passes_with_the_plugin(user_suite: pytest.Pytester) -> None:
    result = user_suite.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=12)


def test_parallel_workers_never_see_each_others_runs(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_parallel="""
        import httpx
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_isolated(runbase_mock, n):
            headers = {"Authorization": f"Bearer {runbase_mock.api_key}"}
            body = {"model": "openai/gpt-image-2", "input": {"prompt": f"worker run {n}"}}
            httpx.post(f"{runbase_mock.base_url}/runs", json=body, headers=headers)
            assert [r["mock"]["input"]["prompt"] for r in runbase_mock.runs] == [f"worker run {n}"]
            assert len(runbase_mock.requests) == 1
        """
    )
    result = user_suite.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-n", "2")
    result.assert_outcomes(passed=20)


def test_the_mark_rejects_unknown_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.runbase(timming="fast")
        def test_typo(runbase_mock):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-q")
    result.stdout.fnmatch_lines(["*unknown options*timming*"])


def test_serve_context_manager_for_plain_scripts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        script="""
        import httpx
        import mock_runbase

        with mock_runbase.serve(timing="realistic") as mock:
            headers = {"Authorization": f"Bearer {mock.api_key}"}
            body = {"model": "openai/gpt-image-2", "input": {"prompt": "x"}}
            run = httpx.post(f"{mock.base_url}/runs", json=body, headers=headers).json()
            mock.clock.advance(10)
            done = httpx.get(f"{mock.base_url}/runs/{run['id']}", headers=headers).json()
            print("STATUS", done["status"])
        """
    )
    result = pytester.run("python", "script.py")
    result.stdout.fnmatch_lines(["STATUS succeeded"])
    assert result.ret == 0


def test_a_state_saved_by_one_test_is_loaded_by_another(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_scenario="""
        import json
        import pathlib

        import httpx

        SCENARIO = pathlib.Path(__file__).with_name("scenario.json")
        ACME = {"Authorization": "Bearer sk-acme-ci"}
        BODY = {"model": "openai/gpt-image-2", "input": {"prompt": "a lighthouse"}}


        def test_a_scenario_is_recorded(runbase_mock):
            http = httpx.Client(base_url=runbase_mock.origin)
            keys = {"keys": [{"key": "sk-acme-ci"}], "balanceUsd": 1_000_000}
            http.put("/_mock/accounts/acme", json=keys).raise_for_status()
            http.post("/v1/runs", json=BODY, headers=ACME).raise_for_status()
            SCENARIO.write_text(json.dumps(runbase_mock.state(), indent=2))


        def test_it_is_resumed(runbase_mock):
            assert runbase_mock.runs == []  # a fresh mock, as every test gets
            state = json.loads(SCENARIO.read_text())
            assert runbase_mock.load_state(state)["imported"]["runs"] == 1
            run_id = state["runs"][0]["id"]
            polled = httpx.get(f"{runbase_mock.base_url}/runs/{run_id}", headers=ACME).json()
            assert polled["status"] == "succeeded"
            account = httpx.get(f"{runbase_mock.origin}/_mock/account", headers=ACME).json()
            assert account["balanceUsd"] == 1_000_000 - polled["costUsd"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def test_a_test_sees_the_same_whole_answers_in_every_test_and_every_session(
    user_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_suite.makepyfile(
        test_snapshot="""
        import json
        import os

        import httpx
        import pytest

        SEEN = []

        def first_run(mock):
            headers = {"Authorization": f"Bearer {mock.api_key}"}
            body = {"model": "openai/gpt-image-2", "input": {"prompt": "a snapshot"}}
            created = httpx.post(f"{mock.base_url}/runs", json=body, headers=headers).json()
            mock.clock.advance(60)
            polled = httpx.get(f"{mock.base_url}/runs/{created['id']}", headers=headers).json()
            return [created, polled]

        @pytest.mark.parametrize("n", range(2))
        def test_the_same_answers(runbase_mock, n):
            SEEN.append(first_run(runbase_mock))
            assert SEEN[0] == SEEN[-1]
            with open(os.environ["SNAPSHOT_OUT"], "w") as out:  # the port is the session's
                out.write(json.dumps(SEEN[0]).replace(runbase_mock.origin, "ORIGIN"))

        @pytest.mark.runbase(seed=5)
        def test_another_seed_other_ids(runbase_mock):
            created, polled = first_run(runbase_mock)
            assert created["id"] != SEEN[0][0]["id"]
            assert polled["output"]["urls"] != SEEN[0][1]["output"]["urls"]
            assert created["createdAt"] == SEEN[0][0]["createdAt"]
        """
    )
    answers = []
    for session in ("first", "second"):
        out = user_suite.path / f"{session}.json"
        monkeypatch.setenv("SNAPSHOT_OUT", str(out))
        ran = user_suite.runpytest_subprocess("-p", "no:cacheprovider", "-q", "test_snapshot.py")
        ran.assert_outcomes(passed=3)
        answers.append(out.read_text())
    assert answers[0] == answers[1]
    assert '"status": "succeeded"' in answers[0]
    assert '"urls": ["ORIGIN/files/generated/' in answers[0]
