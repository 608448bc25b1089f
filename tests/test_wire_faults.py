"""Connection faults (``reset``, ``empty-response``, ``garbage``, ``truncated``,
``malformed-chunk``, and ``drop``): on creates, polls and files, by header, prompt tag or rule.

Over a real socket each breaks the exchange the way its name says, and an HTTP client raises
(never reads an answer); in process (no socket) the caller gets a ``ConnectionResetError``
naming the fault. Faults that strike instead of an answer leave a create undone; the two that
break the answer on its way (``truncated``, ``malformed-chunk``) strike a handled request, so
a create made its run and charged it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import h11
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_runbase.wire_faults import WIRE_FAULTS, RawAnswer, answer_fault
from tests.conftest import GPT, KEY, Mock
from tests.redis_server import RedisServer
from tests.served import Server

INSTEAD = sorted(name for name, fault in WIRE_FAULTS.items() if not fault.breaks_answer)
ON_THE_ANSWER = sorted(name for name, fault in WIRE_FAULTS.items() if fault.breaks_answer)
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"model": GPT, "input": {"prompt": "a lighthouse at dawn"}}


def test_the_faults_are_the_documented_ones() -> None:
    assert INSTEAD == ["drop", "empty-response", "garbage", "reset"]
    assert ON_THE_ANSWER == ["malformed-chunk", "truncated"]


def test_the_scenarios_listing_says_what_a_create_hit_by_each_did(mock: Mock) -> None:
    listed = mock.client.get("/_mock/scenarios").json()["scenarios"]
    for name in INSTEAD:
        assert "a create creates nothing" in listed[name], name
    for name in ON_THE_ANSWER:
        assert "a create made its run and charged it" in listed[name], name
    assert "404 file_not_found" in listed["cdn-lag"]


# --- the bytes on the wire: no HTTP client can read an answer from them ------------------------

HEADER_NAMES = st.sampled_from([b"content-type", b"etag", b"x-mock-warning", b"retry-after"])
HEADER_VALUES = st.binary(min_size=1, max_size=20).map(
    lambda value: bytes(b for b in value if 0x20 < b < 0x7F) or b"x"
)


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, RawAnswer]:
    """An answer as ``BrokenAnswer`` sees it, and the method of the request it answers."""
    method = draw(st.sampled_from(["GET", "HEAD", "POST"]))
    status = draw(st.sampled_from([200, 206, 304, 400, 401, 404, 416, 429, 500]))
    content = draw(st.binary(max_size=3000))
    has_body = method != "HEAD" and status != 304
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
    headers.append((b"content-length", b"%d" % len(content)))
    return method, RawAnswer(status, headers, content if has_body else b"", has_body)


def client_reads(method: str, wire: bytes) -> list[Any]:
    """What h11 (httpx's parser) reads from ``wire`` and then the connection's end."""
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method=method, target="/", headers=[("Host", "mock")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(wire)
    connection.receive_data(b"")
    events: list[Any] = []
    while True:
        event = connection.next_event()
        if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
            return events
        events.append(event)


@pytest.mark.parametrize("fault", sorted(WIRE_FAULTS))
@given(answers())
def test_no_client_reads_a_whole_answer_from_what_a_fault_sends(
    fault: str, answer: tuple[str, RawAnswer]
) -> None:
    method, raw = answer
    wire = WIRE_FAULTS[fault].wire_bytes(raw)
    try:
        events = client_reads(method, wire)
    except h11.RemoteProtocolError:
        return  # the client fails loudly: what the fault is for
    assert not any(isinstance(event, h11.EndOfMessage) for event in events), (wire, events)


@given(answers())
def test_truncated_sends_the_answers_head_and_half_its_body(answer: tuple[str, RawAnswer]) -> None:
    _, raw = answer
    wire = WIRE_FAULTS["truncated"].wire_bytes(raw)
    if not raw.body:
        assert b"\r\n\r\n" not in wire and raw.head().startswith(wire)
        return
    head, _, sent = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % raw.status)
    assert b"content-length: %d" % len(raw.body) in head.split(b"\r\n")
    assert sent == raw.body[: len(raw.body) // 2]


def test_a_malformed_chunk_follows_a_chunked_head_without_a_length() -> None:
    raw = RawAnswer(200, [(b"content-length", b"4"), (b"content-type", b"x")], b"abcd", True)
    wire = WIRE_FAULTS["malformed-chunk"].wire_bytes(raw)
    assert wire == (
        b"HTTP/1.1 200 OK\r\ncontent-type: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nab\r\nnot-a-chunk-size\r\n"
    )


def test_garbage_is_the_same_bytes_every_time_and_no_status_line() -> None:
    wire = WIRE_FAULTS["garbage"].wire_bytes(None)
    assert wire == WIRE_FAULTS["garbage"].wire_bytes(None)
    assert not wire.startswith(b"HTTP/") and wire.endswith(b"\r\n\r\n")
    with pytest.raises(h11.RemoteProtocolError, match="illegal status line"):
        client_reads("GET", wire)


def test_only_the_faults_on_the_answer_are_passed_on_to_it() -> None:
    assert [answer_fault(name) for name in sorted(WIRE_FAULTS)] == [
        None,
        None,
        None,
        "malformed-chunk",
        None,
        "truncated",
    ]
    assert answer_fault(None) is None


# --- in process: the caller fails loudly, and what a create did depends on when it struck --------


def succeeded_file(mock: Mock) -> tuple[str, str]:
    """A run that succeeded, and its file's path."""
    run_id = mock.create().json()["id"]
    mock.advance(60)
    url = mock.get(run_id).json()["output"]["urls"][0]
    return run_id, url.removeprefix("http://mock.test")


def request_to(mock: Mock, endpoint: str, headers: dict[str, str]) -> httpx.Response:
    run_id, path = succeeded_file(mock)
    if endpoint == "create":
        return mock.client.post("/v1/runs", json=BODY, headers={**AUTH, **headers})
    if endpoint == "get":
        return mock.client.get(f"/v1/runs/{run_id}", headers={**AUTH, **headers})
    return mock.client.get(path, headers=headers)


@pytest.mark.parametrize("endpoint", ["create", "get", "file"])
@pytest.mark.parametrize("fault", sorted(WIRE_FAULTS))
def test_in_process_the_header_fails_the_caller_naming_the_fault(
    mock: Mock, fault: str, endpoint: str
) -> None:
    with pytest.raises(ConnectionResetError, match=rf"mock-runbase \({fault}\)"):
        request_to(mock, endpoint, {"X-Mock-Scenario": fault})
    assert request_to(mock, endpoint, {}).status_code == 200


@pytest.mark.parametrize("endpoint", ["create", "get", "file"])
@pytest.mark.parametrize("fault", sorted(WIRE_FAULTS))
def test_a_rule_breaks_the_connection_the_next_time_only(
    mock: Mock, fault: str, endpoint: str
) -> None:
    rule = {"match": {"endpoint": endpoint}, "effect": {"scenario": fault}, "times": 1}
    run_id, path = succeeded_file(mock)
    assert mock.client.post("/_mock/rules", json=rule).status_code == 201
    send = {
        "create": lambda: mock.client.post("/v1/runs", json=BODY, headers=AUTH),
        "get": lambda: mock.get(run_id),
        "file": lambda: mock.client.get(path),
    }[endpoint]
    with pytest.raises(ConnectionResetError, match=rf"\({fault}\)"):
        send()
    assert send().status_code == 200
    [listed] = mock.client.get("/_mock/rules").json()["rules"]
    assert (listed["matches"], listed["hits"]) == (2, 1)


@pytest.mark.parametrize("fault", sorted(WIRE_FAULTS))
def test_a_prompt_tag_breaks_a_create(mock: Mock, fault: str) -> None:
    body = {"model": GPT, "input": {"prompt": f"a lighthouse [mock:{fault}]"}}
    with pytest.raises(ConnectionResetError, match=rf"\({fault}\)"):
        mock.client.post("/v1/runs", json=body, headers=AUTH)


@pytest.mark.parametrize("fault", INSTEAD)
def test_a_fault_instead_of_an_answer_creates_and_charges_nothing(mock: Mock, fault: str) -> None:
    before = mock.account()
    with pytest.raises(ConnectionResetError):
        mock.create(scenario=fault)
    assert mock.account() == before
    assert mock.client.get("/_mock/runs").json()["runs"] == []
    [entry] = mock.client.get("/_mock/requests").json()["requests"]
    assert (entry["status"], entry["dropped"], entry["runId"]) == (None, True, None)


@pytest.mark.parametrize("fault", ON_THE_ANSWER)
def test_a_fault_on_the_answer_leaves_the_create_done_and_charged(mock: Mock, fault: str) -> None:
    before = mock.balance()
    with pytest.raises(ConnectionResetError):
        mock.create(scenario=fault)
    [run] = mock.client.get("/_mock/runs").json()["runs"]
    assert run["mock"]["scenario"] == fault  # the run itself goes on as usual
    assert mock.balance() == before - run["costUsd"]
    [entry] = mock.client.get("/_mock/requests").json()["requests"]
    assert (entry["status"], entry["dropped"], entry["runId"]) == (None, True, run["id"])
    mock.advance(60)
    assert mock.get(run["id"]).json()["status"] == "succeeded"


@pytest.mark.parametrize("fault", ON_THE_ANSWER)
def test_a_fault_on_the_answer_breaks_an_error_answer_too(mock: Mock, fault: str) -> None:
    with pytest.raises(ConnectionResetError, match=rf"\({fault}\)"):
        mock.client.get("/v1/runs/run_missing", headers={**AUTH, "X-Mock-Scenario": fault})
    with pytest.raises(ConnectionResetError, match=rf"\({fault}\)"):
        mock.client.get("/files/generated/missing.png", headers={"X-Mock-Scenario": fault})
    [poll, file] = mock.client.get("/_mock/requests").json()["requests"]
    assert poll["errorCode"] == "run_not_found" and poll["dropped"] is True
    assert file["dropped"] is True


def test_through_httpx_asgi_transport_too(mock: Mock) -> None:
    app = mock.client.app

    async def attempts() -> list[str]:
        transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
        failed = []
        async with httpx.AsyncClient(transport=transport, base_url="http://mock.test") as client:
            for fault in sorted(WIRE_FAULTS):
                try:
                    await client.post(
                        "/v1/runs", json=BODY, headers={**AUTH, "X-Mock-Scenario": fault}
                    )
                except ConnectionResetError as error:
                    failed.append(str(error))
        return failed

    failed = anyio.run(attempts)
    assert [message.split(")")[0] for message in failed] == [
        f"mock-runbase ({fault}" for fault in sorted(WIRE_FAULTS)
    ]


# --- over a real socket: what an HTTP client raises ------------------------------------------

RAISED = {  # fault -> what httpx raises, and words of its message
    "drop": (httpx.RemoteProtocolError, "without sending a response"),
    "empty-response": (httpx.RemoteProtocolError, "without sending a response"),
    "reset": (httpx.ReadError, "reset by peer"),
    "garbage": (httpx.RemoteProtocolError, "illegal status line"),
    "truncated": (httpx.RemoteProtocolError, "without sending complete message body"),
    "malformed-chunk": (httpx.RemoteProtocolError, "illegal chunk header"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = Server("--clock", "virtual", "--timing", "instant", "--no-rate-limit")
    yield running
    running.stop()


class Client:
    """One key's run on a served mock, and the three requests a fault may strike."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.run_id = httpx.post(f"{base}/v1/runs", json=BODY, headers=self.headers).json()["id"]
        polled = httpx.get(f"{base}/v1/runs/{self.run_id}", headers=self.headers).json()
        self.file_url = polled["output"]["urls"][0]

    def send(self, endpoint: str, scenario: str | None = None) -> httpx.Response:
        extra = {"X-Mock-Scenario": scenario} if scenario else {}
        if endpoint == "create":
            url = f"{self.base}/v1/runs"
            return httpx.post(url, json=BODY, headers={**self.headers, **extra})
        if endpoint == "get":
            return httpx.get(
                f"{self.base}/v1/runs/{self.run_id}", headers={**self.headers, **extra}
            )
        return httpx.get(self.file_url, headers=extra)

    def account(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.base}/_mock/account", headers=self.headers).json()
        return body


@pytest.mark.parametrize("endpoint", ["create", "get", "file"])
@pytest.mark.parametrize("fault", sorted(RAISED))
def test_over_a_socket_httpx_raises_for_each_fault(
    server: Server, fault: str, endpoint: str
) -> None:
    client = Client(server.base, f"sk-wire-{fault}-{endpoint}")
    raised, words = RAISED[fault]
    with pytest.raises(raised, match=words):
        client.send(endpoint, fault)
    assert client.send(endpoint).status_code == 200  # the next connection is served
    creates = endpoint == "create"
    expected = 1 + creates + (creates and fault in ON_THE_ANSWER)
    assert client.account()["runs"] == expected, "only a fault on the answer lets a create be"


def test_over_a_socket_a_truncated_file_carries_its_first_half(server: Server) -> None:
    client = Client(server.base, "sk-wire-half")
    whole = client.send("file").content
    with httpx.stream("GET", client.file_url, headers={"X-Mock-Scenario": "truncated"}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(len(whole))
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in answer.iter_raw():
                received += chunk
    assert bytes(received) == whole[: len(whole) // 2]


def test_over_a_socket_a_rule_on_a_file_head_cuts_its_head(server: Server) -> None:
    client = Client(server.base, "sk-wire-head")
    rule = {
        "match": {"endpoint": "file", "key": "sk-wire-head"},
        "effect": {"scenario": "truncated"},
    }
    assert httpx.post(f"{server.base}/_mock/rules", json=rule).status_code == 201
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.head(client.file_url)
    assert client.send("get").status_code == 200  # a file rule leaves polls alone


def test_on_a_shared_store_too(redis_server: RedisServer) -> None:
    """Its answers carry X-Mock-Worker: the fault is done on the socket all the same."""
    redis_server.flush()
    running = Server("--store", redis_server.url, "--timing", "instant", "--no-rate-limit")
    try:
        client = Client(running.base, "sk-wire-shared")
        assert "x-mock-worker" in client.send("get").headers
        for fault, (raised, words) in RAISED.items():
            with pytest.raises(raised, match=words):
                client.send("get", fault)
    finally:
        code, output = running.stop()
    assert code == 0
    assert "Traceback" not in output and "ERROR" not in output, output
