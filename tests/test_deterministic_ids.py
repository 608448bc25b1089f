"""Deterministic ids: on the virtual clock, run ids, file names and times follow from --seed and
the requests, so two fresh mocks given the same requests answer the same bytes; on a real clock
ids stay random."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mock_runbase.app import create_app
from mock_runbase.cassette import Cassette, Recorded
from mock_runbase.runs import new_token, seeded_token
from mock_runbase.settings import MockSettings
from tests.conftest import GPT, KEY, OTHER_KEY
from tests.redis_server import RedisServer
from tests.served import Server

PUBLIC_URL = "http://mock.test"  # output URLs name it, whatever port each server listens on
CREATES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    (KEY, {"model": GPT, "input": {"prompt": "a lighthouse", "resolution": "1K"}}, {}),
    (KEY, {"model": "google/nano-banana", "input": {"prompt": "a fox"}}, {}),
    (OTHER_KEY, {"model": "bytedance/seedance-1-lite", "input": {"prompt": "waves"}}, {}),
    (KEY, {"model": GPT, "input": {"prompt": "doomed by the rule"}}, {}),
    (KEY, {"model": GPT, "input": {"prompt": "told to fail"}}, {"X-Mock-Scenario": "fail"}),
    (KEY, {"model": GPT, "input": {"prompt": "x", "resolution": "8K"}}, {}),  # 400, no run
    (OTHER_KEY, {"model": GPT, "input": {"prompt": "stuck"}}, {"X-Mock-Scenario": "stuck"}),
]


def served(*args: str) -> Iterator[Server]:
    server = Server("--clock", "virtual", "--no-rate-limit", "--public-url", PUBLIC_URL, *args)
    yield server
    server.stop()


@pytest.fixture
def seven() -> Iterator[Server]:
    yield from served("--seed", "7")


@pytest.fixture
def seven_again() -> Iterator[Server]:
    yield from served("--seed", "7")


@pytest.fixture
def eight() -> Iterator[Server]:
    yield from served("--seed", "8")


class Session:
    """One client's requests to a server, and everything each answered."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base, timeout=30)
        self.answers: list[tuple[str, int, Any]] = []

    def call(self, method: str, path: str, key: str | None = None, **options: Any) -> Any:
        headers = dict(options.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = self.http.request(method, path, headers=headers, **options)
        body = response.json() if "json" in response.headers["content-type"] else response.content
        self.answers.append((f"{method} {path}", response.status_code, body))
        return body

    def file(self, url: str) -> bytes:
        content: bytes = self.call("GET", url.removeprefix(PUBLIC_URL))
        return content


def the_same_requests(server: Server) -> Session:
    """Creates of several models (one failed by a rule, one by a header, one refused), polls
    as the clock moves, a rule, the control API's views, and the files of two outputs."""
    session = Session(server)
    rule = {
        "match": {"endpoint": "create", "prompt_regex": "^doomed"},
        "effect": {"scenario": "fail", "code": "content_policy"},
        "times": 1,
    }
    session.call("POST", "/_mock/rules", json=rule)
    created = [
        (key, session.call("POST", "/v1/runs", key, json=body, headers=headers))
        for key, body, headers in CREATES
    ]
    runs = [(key, answer["id"]) for key, answer in created if "id" in answer]
    for seconds in (0, 2, 900):
        session.call("POST", "/_mock/clock/advance", json={"seconds": seconds})
        polled = [session.call("GET", f"/v1/runs/{run_id}", key) for key, run_id in runs]
    for path in ("/_mock/runs", "/_mock/rules", "/_mock/accounts", "/_mock/state"):
        session.call("GET", path)
    journal = session.call("GET", "/_mock/requests")["requests"]
    # The journal's ids and times; its Host headers and durations differ by nature.
    facts = [(e["seq"], e["at"], e["runId"], e["status"]) for e in journal]
    session.answers[-1] = ("journal", 200, facts)
    outputs = [poll["output"]["urls"][0] for poll in polled if poll["status"] == "succeeded"]
    assert [url.rsplit(".", 1)[1] for url in outputs] == ["png", "png", "mp4"]
    for url in outputs[0], outputs[2]:
        session.file(url)
    return session


def test_two_fresh_mocks_with_one_seed_answer_the_same_requests_alike(
    seven: Server, seven_again: Server
) -> None:
    first, second = the_same_requests(seven), the_same_requests(seven_again)
    assert len(first.answers) == len(second.answers) == 36
    for mine, theirs in zip(first.answers, second.answers, strict=True):
        assert mine == theirs
    last_polls = [body for what, _, body in first.answers[23:29]]
    assert [poll["status"] for poll in last_polls] == [
        *["succeeded"] * 3,
        *["failed"] * 2,
        "processing",
    ]


def ids_and_times(session: Session) -> tuple[list[str], list[str]]:
    created = [body for what, code, body in session.answers[1:8] if code == 200]
    return [body["id"] for body in created], [body["createdAt"] for body in created]


def test_another_seed_gives_other_ids_and_file_names_at_the_same_times(
    seven: Server, eight: Server
) -> None:
    first, other = the_same_requests(seven), the_same_requests(eight)
    (ids, times), (other_ids, other_times) = ids_and_times(first), ids_and_times(other)
    assert len(ids) == len(other_ids) == 6 and not set(ids) & set(other_ids)
    assert times == other_times
    files, other_files = (
        [b for _, _, b in s.answers if isinstance(b, bytes)] for s in (first, other)
    )
    assert len(files) == 2 and files != other_files  # media is seeded too


def created_ids(settings: MockSettings, count: int) -> list[str]:
    client = TestClient(create_app(settings))
    body = {"model": GPT, "input": {"prompt": "a lighthouse"}}
    headers = {"Authorization": f"Bearer {KEY}"}
    return [client.post("/v1/runs", json=body, headers=headers).json()["id"] for _ in range(count)]


def test_on_a_real_clock_ids_are_random_whatever_the_seed() -> None:
    real = MockSettings(clock="real", seed=7, rate_limit=None)
    first, second = created_ids(real, 3), created_ids(real, 3)
    assert len(set(first) | set(second)) == 6
    virtual = MockSettings(clock="virtual", seed=7, rate_limit=None)
    assert created_ids(virtual, 3) == created_ids(virtual, 3)
    assert created_ids(virtual, 3) == [
        "run_" + seeded_token(7, "run", number) for number in (1, 2, 3)
    ]


def test_a_reset_starts_the_sequence_again(make_mock: Any) -> None:
    mock = make_mock(seed=3)
    before = [mock.create().json()["id"] for _ in range(2)]
    assert mock.client.post("/_mock/reset").status_code == 200
    assert [mock.create().json()["id"] for _ in range(2)] == before


def test_names_a_replayed_cassette_answers_for_are_never_a_new_runs(make_mock: Any) -> None:
    first = "run_" + seeded_token(0, "run", 1)
    answer = b'{"id": "%s", "output": {"urls": ["http://x/files/generated/Ab1.png"]}}' % (
        first.encode()
    )
    poll = Recorded("GET", f"/v1/runs/{first}", "", {}, b"", 200, {}, answer)
    cassette = Cassette("http://x", [poll])
    assert cassette.run_names() == {first, "Ab1.png"}
    mock = make_mock()
    mock.client.app.state.service.reserved_names = cassette.run_names()
    assert mock.create().json()["id"] == "run_" + seeded_token(0, "run", 2)


def test_workers_sharing_one_redis_store_never_hand_out_the_same_id(
    redis_server: RedisServer,
) -> None:
    redis_server.flush()
    settings = MockSettings(clock="virtual", seed=5, rate_limit=None, store=redis_server.url)
    apps = [create_app(settings) for _ in range(3)]
    body = {"model": GPT, "input": {"prompt": "a lighthouse"}}
    headers = {"Authorization": f"Bearer {KEY}"}

    async def race() -> list[str]:
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://mock.test")
            for app in apps
        ]
        try:
            answers = await asyncio.gather(
                *(clients[i % 3].post("/v1/runs", json=body, headers=headers) for i in range(45))
            )
        finally:
            for client in clients:
                await client.aclose()
            for app in apps:
                await app.state.service.store.close()
        return [answer.json()["id"] for answer in answers]

    ids = asyncio.run(race())
    assert sorted(ids) == sorted("run_" + seeded_token(5, "run", n) for n in range(1, 46))


@given(seed=st.integers(0, 2**63 - 1), number=st.integers(1, 2**40), length=st.integers(1, 40))
def test_seeded_tokens_are_shaped_like_random_ones_and_pure(
    seed: int, number: int, length: int
) -> None:
    token = seeded_token(seed, "run", number, length)
    assert len(token) == len(new_token(length)) == length and token.isalnum() and token.isascii()
    assert token == seeded_token(seed, "run", number, length)


@given(
    seed=st.integers(0, 2**63 - 1),
    numbers=st.lists(st.integers(1, 2**40), min_size=2, max_size=50, unique=True),
)
def test_seeded_tokens_of_different_numbers_seeds_and_purposes_differ(
    seed: int, numbers: list[int]
) -> None:
    names = {seeded_token(seed, purpose, n) for n in numbers for purpose in ("run", "file")}
    names |= {seeded_token(seed + 1, "run", n) for n in numbers}
    assert len(names) == 3 * len(numbers)
